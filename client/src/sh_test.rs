//! `stratos sh`'s parsing, and its JSON: the typed values must print byte for byte what the
//! command printed when it made the JSON straight from the Cap'n Proto replies.

use super::*;

/// The JSON as `stratos sh` made it straight from the Cap'n Proto reply before the client
/// answered typed values (kept verbatim): the typed path must print the same bytes.
mod before {
    use serde_json::{Value, json};
    use stratos_schema::om_capnp;

    fn text(t: capnp::Result<capnp::text::Reader<'_>>) -> capnp::Result<String> {
        Ok(t?.to_string()?)
    }

    fn quota(q: u64) -> Value {
        if q == u64::MAX { json!(-1) } else { json!(q) }
    }

    fn replication(r: Result<om_capnp::Replication, capnp::NotInSchema>) -> &'static str {
        match r {
            Ok(om_capnp::Replication::RatisOne) => "RATIS/ONE",
            Ok(om_capnp::Replication::RatisThree) => "RATIS/THREE",
            Err(_) => "UNKNOWN",
        }
    }

    fn metadata(l: capnp::Result<capnp::struct_list::Reader<'_, om_capnp::metadata_pair::Owned>>) -> capnp::Result<Value> {
        let mut m = serde_json::Map::new();
        for p in l?.iter() {
            m.insert(text(p.get_key())?, Value::String(text(p.get_value())?));
        }
        Ok(Value::Object(m))
    }

    pub fn volume(v: om_capnp::volume_info::Reader<'_>) -> capnp::Result<Value> {
        Ok(json!({
            "name": text(v.get_name())?, "owner": text(v.get_owner())?, "admin": text(v.get_admin())?,
            "creationTime": v.get_created_ms(), "modificationTime": v.get_modified_ms(),
            "quotaInBytes": quota(v.get_quota_bytes()), "quotaInNamespace": quota(v.get_quota_namespace()),
            "usedBytes": v.get_used_bytes(), "usedNamespace": v.get_buckets(), "objectID": v.get_object_id(),
            "updateID": v.get_update_id(), "metadata": metadata(v.get_metadata())?,
        }))
    }

    pub fn bucket(b: om_capnp::bucket_info::Reader<'_>) -> capnp::Result<Value> {
        Ok(json!({
            "volumeName": text(b.get_volume())?, "name": text(b.get_name())?, "owner": text(b.get_owner())?,
            "creationTime": b.get_created_ms(), "modificationTime": b.get_modified_ms(),
            "versioning": b.get_versioning(), "replication": replication(b.get_replication()),
            "quotaInBytes": quota(b.get_quota_bytes()), "quotaInNamespace": quota(b.get_quota_namespace()),
            "usedBytes": b.get_used_bytes(), "usedNamespace": b.get_keys(), "openKeys": b.get_open_keys(),
            "bucketLayout": "OBJECT_STORE", "objectID": b.get_object_id(), "updateID": b.get_update_id(),
            "metadata": metadata(b.get_metadata())?,
        }))
    }

    pub fn key(k: om_capnp::key_info::Reader<'_>) -> capnp::Result<Value> {
        let mut blocks = Vec::new();
        for b in k.get_blocks()?.iter() {
            blocks.push(json!({"containerID": b.get_container_id(), "localID": b.get_local_id(), "pipelineID": b.get_pipeline_id(), "length": b.get_length()}));
        }
        Ok(json!({
            "volumeName": text(k.get_volume())?, "bucketName": text(k.get_bucket())?, "name": text(k.get_name())?,
            "dataSize": k.get_data_size(), "replication": replication(k.get_replication()),
            "creationTime": k.get_created_ms(), "modificationTime": k.get_modified_ms(),
            "objectID": k.get_object_id(), "updateID": k.get_update_id(), "blocks": blocks,
            "metadata": metadata(k.get_metadata())?,
        }))
    }
}

fn set_metadata(mut l: capnp::struct_list::Builder<'_, om_capnp::metadata_pair::Owned>, pairs: &[(&str, &str)]) {
    for (i, (k, v)) in pairs.iter().enumerate() {
        let mut p = l.reborrow().get(i as u32);
        p.set_key(*k);
        p.set_value(*v);
    }
}

/// Fields added since (issue 19): ISO-8601 times beside the epoch milliseconds, and ACLs.
const ADDED: [&str; 3] = ["creationTimeIso", "modificationTimeIso", "acls"];

/// Prints `value` as `stratos sh` does, both ways, and checks they are the same bytes but for
/// the fields added since, which must be there.
fn same(old: Value, new: Value) -> String {
    let mut trimmed = new.clone();
    let m = trimmed.as_object_mut().expect("an object");
    for f in ADDED.iter().filter(|f| new.get("blocks").is_none() || **f != "acls") {
        assert!(m.remove(*f).is_some(), "{f} is printed");
    }
    assert_eq!(pretty(&old), pretty(&trimmed), "the typed path prints different JSON");
    pretty(&new)
}

fn volume_message(quota_bytes: u64, metadata: &[(&str, &str)]) -> capnp::message::Builder<capnp::message::HeapAllocator> {
    let mut m = capnp::message::Builder::new_default();
    let mut v = m.init_root::<om_capnp::volume_info::Builder<'_>>();
    v.set_name("vol1");
    v.set_owner("alice");
    v.set_admin("root");
    v.set_created_ms(1_700_000_000_123);
    v.set_modified_ms(1_700_000_000_456);
    v.set_quota_bytes(quota_bytes);
    v.set_quota_namespace(u64::MAX);
    v.set_used_bytes(12_345);
    v.set_buckets(3);
    v.set_object_id(1 << 40);
    v.set_update_id(77);
    set_metadata(v.init_metadata(metadata.len() as u32), metadata);
    m
}

#[test]
fn volume_json_is_what_sh_printed_before() {
    for (quota, metadata) in [(10u64 << 30, &[][..]), (u64::MAX, &[("team", "storage"), ("a", "1")][..]), (0, &[("k", "")][..])] {
        let m = volume_message(quota, metadata);
        let r = m.get_root_as_reader::<om_capnp::volume_info::Reader<'_>>().expect("reader");
        let typed = VolumeInfo::of(r).expect("typed");
        same(before::volume(r).expect("old JSON"), volume_json(&typed));
    }
    // The shape itself, as scripts and the end-to-end tests read it.
    let m = volume_message(u64::MAX, &[("team", "storage")]);
    let typed = VolumeInfo::of(m.get_root_as_reader().expect("reader")).expect("typed");
    assert_eq!((typed.quota_bytes, typed.quota_namespace, typed.buckets), (None, None, 3));
    let v = volume_json(&typed);
    assert_eq!(v["quotaInBytes"], -1);
    assert_eq!(v["usedNamespace"], 3);
    assert_eq!(v["creationTime"], 1_700_000_000_123u64);
    assert_eq!(v["metadata"]["team"], "storage");
    assert_eq!(v["creationTimeIso"], "2023-11-14T22:13:20.123Z");
}

#[test]
fn iso_times_are_utc_civil_dates() {
    assert_eq!(iso_time(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(iso_time(951_782_400_000), "2000-02-29T00:00:00.000Z");
    assert_eq!(iso_time(1_796_211_599_999), "2026-12-02T11:39:59.999Z");
    assert_eq!(iso_time(4_102_444_800_000), "2100-01-01T00:00:00.000Z");
}

#[test]
fn acls_print_with_ozone_s_names() {
    let mut m = volume_message(1, &[]);
    {
        let mut l = m.get_root::<om_capnp::volume_info::Builder<'_>>().expect("root").init_acls(2);
        let mut a = l.reborrow().get(0);
        a.set_kind(om_capnp::acl::Kind::User);
        a.set_name("alice");
        a.set_rights(127);
        let mut a = l.get(1);
        a.set_kind(om_capnp::acl::Kind::Group);
        a.set_name("ops");
        a.set_rights(1 | 8);
    }
    let v = volume_json(&VolumeInfo::of(m.get_root_as_reader().expect("reader")).expect("typed"));
    assert_eq!(v["acls"], serde_json::json!([
        {"type": "USER", "name": "alice", "aclScope": "ACCESS", "aclList": ["ALL"]},
        {"type": "GROUP", "name": "ops", "aclScope": "ACCESS", "aclList": ["READ", "LIST"]},
    ]));
}

#[test]
fn acls_parse_as_ozone_s_shell_writes_them() {
    use crate::{AclEntry, AclKind};
    let e = parse_acls("user:bob:rw, group:ops:l[ACCESS],world::a,user:bob:x").expect("parses");
    assert_eq!(e, vec![
        AclEntry { kind: AclKind::User, name: "bob".into(), rights: 1 | 2 | 32 },
        AclEntry { kind: AclKind::Group, name: "ops".into(), rights: 8 },
        AclEntry { kind: AclKind::World, name: String::new(), rights: 127 },
    ]);
    assert_eq!(parse_acls("").expect("none"), vec![]);
    for bad in ["user:bob", "world:bob:r", "user::r", "robot:x:r", "user:bob:q", "user:bob:r[DEFAULT]"] {
        let e = parse_acls(bad).expect_err(bad);
        assert!(e.contains(bad), "{bad}: {e}");
    }
}

#[test]
fn bucket_json_is_what_sh_printed_before() {
    for (replication, versioning, quota) in [(om_capnp::Replication::RatisOne, false, u64::MAX), (om_capnp::Replication::RatisThree, true, 5 << 20)] {
        let mut m = capnp::message::Builder::new_default();
        let mut b = m.init_root::<om_capnp::bucket_info::Builder<'_>>();
        b.set_volume("vol1");
        b.set_name("bkt1");
        b.set_owner("alice");
        b.set_created_ms(1);
        b.set_modified_ms(2);
        b.set_versioning(versioning);
        b.set_replication(replication);
        b.set_quota_bytes(quota);
        b.set_quota_namespace(1000);
        b.set_used_bytes(4096);
        b.set_keys(5);
        b.set_open_keys(2);
        b.set_object_id(9);
        b.set_update_id(10);
        set_metadata(b.init_metadata(1), &[("x", "y")]);
        let r = m.get_root_as_reader::<om_capnp::bucket_info::Reader<'_>>().expect("reader");
        let typed = BucketInfo::of(r).expect("typed");
        let printed = same(before::bucket(r).expect("old JSON"), bucket_json(&typed));
        let v: Value = serde_json::from_str(&printed).expect("JSON");
        assert_eq!(v["usedNamespace"], 5, "{printed}");
        assert_eq!(v["replication"], if versioning { "RATIS/THREE" } else { "RATIS/ONE" });
        assert_eq!(v["bucketLayout"], "OBJECT_STORE");
    }
}

#[test]
fn key_json_is_what_sh_printed_before() {
    let mut m = capnp::message::Builder::new_default();
    let mut k = m.init_root::<om_capnp::key_info::Builder<'_>>();
    k.set_volume("vol1");
    k.set_bucket("bkt1");
    k.set_name("dir/a");
    k.set_data_size(3 << 20);
    k.set_replication(om_capnp::Replication::RatisThree);
    k.set_created_ms(5);
    k.set_modified_ms(6);
    k.set_object_id(7);
    k.set_update_id(8);
    {
        let mut l = k.reborrow().init_blocks(2);
        for i in 0..2u32 {
            let mut b = l.reborrow().get(i);
            b.set_container_id(100 + u64::from(i));
            b.set_local_id(200 + u64::from(i));
            b.set_pipeline_id(300);
            b.set_length(if i == 0 { 2 << 20 } else { 1 << 20 });
            // Tokens and datanodes come with lookups; the JSON leaves them out.
            b.set_token(&[1, 2, 3]);
            let mut d = b.init_datanodes(1).get(0);
            d.set_id(4);
            d.set_address("127.0.0.1:9000");
        }
    }
    set_metadata(k.init_metadata(2), &[("content-type", "text/plain"), ("etag", "abc")]);
    let r = m.get_root_as_reader::<om_capnp::key_info::Reader<'_>>().expect("reader");
    let typed = KeyInfo::of(r).expect("typed");
    assert_eq!(typed.blocks[1].datanodes, vec![(4, "127.0.0.1:9000".to_string())]);
    assert_eq!(typed.blocks[0].token, vec![1, 2, 3]);
    let printed = same(before::key(r).expect("old JSON"), key_json(&typed));
    let v: Value = serde_json::from_str(&printed).expect("JSON");
    assert_eq!(v["blocks"][0]["containerID"], 100);
    assert_eq!(v["blocks"][0].as_object().expect("block").len(), 4, "no token or datanodes: {printed}");
    assert_eq!(v["dataSize"], 3u64 << 20);
    // An empty key (no blocks, no metadata) too.
    let mut m = capnp::message::Builder::new_default();
    m.init_root::<om_capnp::key_info::Builder<'_>>().set_name("empty");
    let r = m.get_root_as_reader::<om_capnp::key_info::Reader<'_>>().expect("reader");
    same(before::key(r).expect("old JSON"), key_json(&KeyInfo::of(r).expect("typed")));
}

#[test]
fn a_list_prints_an_array_of_the_items_json() {
    let m = volume_message(1, &[]);
    let v = VolumeInfo::of(m.get_root_as_reader().expect("reader")).expect("typed");
    let printed = list_json(&[v.clone(), VolumeInfo { name: "vol2".into(), ..v.clone() }], volume_json).expect("printed");
    assert_eq!(printed, pretty(&Value::Array(vec![volume_json(&v), volume_json(&VolumeInfo { name: "vol2".into(), ..v })])));
    assert_eq!(list_json::<VolumeInfo>(&[], volume_json).as_deref(), Some("[]"));
}

#[test]
fn addresses_and_sizes_parse() {
    assert_eq!(parse_address("o3://h:1/v/b/k/x").expect("parse"), Address { om: Some("h:1".into()), parts: vec!["v".into(), "b".into(), "k/x".into()] });
    assert_eq!(parse_address("/v").expect("parse").parts, vec!["v".to_string()]);
    assert!(parse_address("/v//k").is_err());
    // Ozone's forms: no port (the default one), a trailing slash after a volume or bucket.
    assert_eq!(parse_address("o3://h/v/").expect("parse"), Address { om: Some("h:9862".into()), parts: vec!["v".into()] });
    assert_eq!(parse_address("o3://[::1]/v/b/").expect("parse"), Address { om: Some("[::1]:9862".into()), parts: vec!["v".into(), "b".into()] });
    assert_eq!(parse_address("o3://[::1]:7/v").expect("parse").om.as_deref(), Some("[::1]:7"));
    assert_eq!(parse_address("O3://h/v").expect("parse").om.as_deref(), Some("h:9862"));
    assert!(parse_address("ofs://h/v").expect_err("unknown scheme").contains("unknown scheme ofs://"));
    assert_eq!(with_default_port("h"), "h:9862");
    assert_eq!(with_default_port("h:1"), "h:1");
    assert_eq!(with_default_port("[::1]"), "[::1]:9862");
    // A key's trailing slash is part of its name.
    assert_eq!(parse_address("/v/b/dir/").expect("parse").parts, vec!["v".to_string(), "b".into(), "dir/".into()]);
    assert_eq!(parse_size("10MB"), Ok(10 << 20));
    assert_eq!(parse_size("7"), Ok(7));
    assert_eq!(parse_size("1PB"), Ok(1 << 50));
    assert_eq!(parse_size("7eb"), Ok(7 << 60));
    assert!(parse_size("8EB").expect_err("above 2^63 - 1").contains("too large"));
    assert!(parse_size("ten").is_err());
    assert!(parse_size("0").is_err());
    assert!(parse_size("18446744073709551615").expect_err("u64::MAX would clear the quota").contains("too large"));
    assert_eq!(parse_size("9223372036854775807"), Ok(i64::MAX as u64));
}
