//! What the OM's reads answer, as plain values: [`VolumeInfo`], [`BucketInfo`], [`KeyInfo`] (with
//! its [`Block`]s) and a [`Page`] of them from a listing.
//!
//! Each is read out of the Cap'n Proto reply in full (`of`), so it outlives the reply and can be
//! kept, compared and sent to another thread. Times are milliseconds since the Unix epoch, as the
//! OM's leader stamped them. The `stratos sh` JSON of each (Ozone's field names) is made in
//! [`crate::sh`], from these values alone.

use stratos_schema::om_capnp;

use crate::Block;

fn text(t: capnp::Result<capnp::text::Reader<'_>>) -> capnp::Result<String> {
    Ok(t?.to_string()?)
}

/// The wire's quota: `u64::MAX` is unlimited.
fn quota(q: u64) -> Option<u64> {
    (q != u64::MAX).then_some(q)
}

fn metadata(l: capnp::Result<capnp::struct_list::Reader<'_, om_capnp::metadata_pair::Owned>>) -> capnp::Result<Vec<(String, String)>> {
    l?.iter().map(|p| Ok((text(p.get_key())?, text(p.get_value())?))).collect()
}

/// One ACL entry of a volume or bucket: who (a user, a group, or everyone) and which rights.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclEntry {
    pub kind: AclKind,
    /// The user or group; empty for [`AclKind::World`].
    pub name: String,
    /// READ 1, WRITE 2, CREATE 4, LIST 8, DELETE 16, READ_ACL 32, WRITE_ACL 64.
    pub rights: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AclKind {
    User,
    Group,
    World,
}

impl AclEntry {
    /// The group every authenticated caller is in (S3's `AuthenticatedUsers`), as the OM
    /// names it (`stratos_shard::command::AUTHENTICATED`: the S3 suite's authenticated-read
    /// check, through a real OM, fails if the two differ).
    pub const AUTHENTICATED: &'static str = ":authenticated";

    /// Writes `acls` into a message's list (an operation's `acls`).
    pub fn write_all(mut list: capnp::struct_list::Builder<'_, om_capnp::acl::Owned>, acls: &[AclEntry]) {
        for (i, a) in acls.iter().enumerate() {
            let mut e = list.reborrow().get(i as u32);
            e.set_kind(match a.kind {
                AclKind::User => om_capnp::acl::Kind::User,
                AclKind::Group => om_capnp::acl::Kind::Group,
                AclKind::World => om_capnp::acl::Kind::World,
            });
            e.set_name(&a.name);
            e.set_rights(a.rights);
        }
    }

    /// The rights by Ozone's names (`ALL` when every one is granted).
    pub fn right_names(&self) -> Vec<&'static str> {
        const NAMES: [(u16, &str); 7] = [(1, "READ"), (2, "WRITE"), (4, "CREATE"), (8, "LIST"), (16, "DELETE"), (32, "READ_ACL"), (64, "WRITE_ACL")];
        if self.rights & 127 == 127 {
            return vec!["ALL"];
        }
        NAMES.iter().filter(|(bit, _)| self.rights & bit != 0).map(|(_, n)| *n).collect()
    }
}

fn acls(l: capnp::Result<capnp::struct_list::Reader<'_, om_capnp::acl::Owned>>) -> capnp::Result<Vec<AclEntry>> {
    l?.iter()
        .map(|a| {
            let kind = match a.get_kind()? {
                om_capnp::acl::Kind::User => AclKind::User,
                om_capnp::acl::Kind::Group => AclKind::Group,
                om_capnp::acl::Kind::World => AclKind::World,
            };
            Ok(AclEntry { kind, name: text(a.get_name())?, rights: a.get_rights() })
        })
        .collect()
}

fn blocks(l: capnp::Result<capnp::struct_list::Reader<'_, om_capnp::block_location::Owned>>) -> capnp::Result<Vec<Block>> {
    l?.iter().map(Block::of).collect()
}

/// How many copies of a bucket's or key's data the datanodes keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Replication {
    /// One copy (one datanode per pipeline).
    RatisOne,
    /// Three copies, one on each of a pipeline's three datanodes.
    RatisThree,
    /// A value this client does not know (an OM newer than the client): the wire's number.
    Unknown(u16),
}

impl Replication {
    /// Ozone's name: `RATIS/ONE`, `RATIS/THREE`, or `UNKNOWN`.
    pub fn name(self) -> &'static str {
        match self {
            Replication::RatisOne => "RATIS/ONE",
            Replication::RatisThree => "RATIS/THREE",
            Replication::Unknown(_) => "UNKNOWN",
        }
    }

    /// The wire's value, as a reply carries it.
    pub fn of(r: Result<om_capnp::Replication, capnp::NotInSchema>) -> Replication {
        match r {
            Ok(om_capnp::Replication::RatisOne) => Replication::RatisOne,
            Ok(om_capnp::Replication::RatisThree) => Replication::RatisThree,
            Err(capnp::NotInSchema(n)) => Replication::Unknown(n),
        }
    }
}

impl std::fmt::Display for Replication {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A volume (`volumeInfo`, `listVolumes`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeInfo {
    pub name: String,
    pub owner: String,
    pub admin: String,
    pub created_ms: u64,
    pub modified_ms: u64,
    /// None: unlimited.
    pub quota_bytes: Option<u64>,
    /// The most buckets the volume may hold; None: unlimited.
    pub quota_namespace: Option<u64>,
    pub used_bytes: u64,
    /// Buckets in the volume (Ozone's `usedNamespace`).
    pub buckets: u64,
    pub object_id: u64,
    pub update_id: u64,
    pub acls: Vec<AclEntry>,
    /// (key, value) pairs, in the OM's order.
    pub metadata: Vec<(String, String)>,
}

impl VolumeInfo {
    pub fn of(v: om_capnp::volume_info::Reader<'_>) -> capnp::Result<VolumeInfo> {
        Ok(VolumeInfo {
            name: text(v.get_name())?,
            owner: text(v.get_owner())?,
            admin: text(v.get_admin())?,
            created_ms: v.get_created_ms(),
            modified_ms: v.get_modified_ms(),
            quota_bytes: quota(v.get_quota_bytes()),
            quota_namespace: quota(v.get_quota_namespace()),
            used_bytes: v.get_used_bytes(),
            buckets: v.get_buckets(),
            object_id: v.get_object_id(),
            update_id: v.get_update_id(),
            acls: acls(v.get_acls())?,
            metadata: metadata(v.get_metadata())?,
        })
    }
}

/// A bucket (`bucketInfo`, `listBuckets`). Its used bytes and key counts are summed over the
/// key shards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketInfo {
    pub volume: String,
    pub name: String,
    pub owner: String,
    pub created_ms: u64,
    pub modified_ms: u64,
    pub versioning: bool,
    pub replication: Replication,
    /// None: unlimited.
    pub quota_bytes: Option<u64>,
    /// The most keys the bucket may hold; None: unlimited.
    pub quota_namespace: Option<u64>,
    pub used_bytes: u64,
    /// Committed keys in the bucket (Ozone's `usedNamespace`).
    pub keys: u64,
    /// Keys opened and neither committed nor expired yet.
    pub open_keys: u64,
    pub object_id: u64,
    pub update_id: u64,
    pub acls: Vec<AclEntry>,
    /// (key, value) pairs, in the OM's order.
    pub metadata: Vec<(String, String)>,
}

impl BucketInfo {
    /// Every Stratos bucket is an object store (flat key names; `/` is an ordinary character).
    pub const LAYOUT: &'static str = "OBJECT_STORE";

    pub fn of(b: om_capnp::bucket_info::Reader<'_>) -> capnp::Result<BucketInfo> {
        Ok(BucketInfo {
            volume: text(b.get_volume())?,
            name: text(b.get_name())?,
            owner: text(b.get_owner())?,
            created_ms: b.get_created_ms(),
            modified_ms: b.get_modified_ms(),
            versioning: b.get_versioning(),
            replication: Replication::of(b.get_replication()),
            quota_bytes: quota(b.get_quota_bytes()),
            quota_namespace: quota(b.get_quota_namespace()),
            used_bytes: b.get_used_bytes(),
            keys: b.get_keys(),
            open_keys: b.get_open_keys(),
            object_id: b.get_object_id(),
            update_id: b.get_update_id(),
            acls: acls(b.get_acls())?,
            metadata: metadata(b.get_metadata())?,
        })
    }

    /// Ozone's bucket layout: always [`Self::LAYOUT`].
    pub fn layout(&self) -> &'static str {
        Self::LAYOUT
    }
}

/// A committed key (`lookupKey`, `lookupKeys`, `listKeys`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    pub volume: String,
    pub bucket: String,
    pub name: String,
    /// The key's length in bytes: the sum of its blocks' lengths.
    pub data_size: u64,
    pub replication: Replication,
    pub created_ms: u64,
    pub modified_ms: u64,
    pub object_id: u64,
    pub update_id: u64,
    /// The key's data, in order. From `lookupKey`/`lookupKeys` of an OM with a data path, each
    /// carries a read token and its datanodes (what [`crate::data::get_key`] reads with); a
    /// listing leaves them empty.
    pub blocks: Vec<Block>,
    /// (key, value) pairs, in the OM's order.
    pub metadata: Vec<(String, String)>,
    /// The key's own ACL entries (`setAcls`), beside its bucket's; most keys have none.
    pub acls: Vec<AclEntry>,
}

impl KeyInfo {
    pub fn of(k: om_capnp::key_info::Reader<'_>) -> capnp::Result<KeyInfo> {
        Ok(KeyInfo {
            volume: text(k.get_volume())?,
            bucket: text(k.get_bucket())?,
            name: text(k.get_name())?,
            data_size: k.get_data_size(),
            replication: Replication::of(k.get_replication()),
            created_ms: k.get_created_ms(),
            modified_ms: k.get_modified_ms(),
            object_id: k.get_object_id(),
            update_id: k.get_update_id(),
            blocks: blocks(k.get_blocks())?,
            metadata: metadata(k.get_metadata())?,
            acls: acls(k.get_acls())?,
        })
    }
}

/// One page of a listing, in name order.
///
/// A struct rather than `(Vec<T>, bool)`: the flag's meaning is in its name at every use.
/// To read the next page, list again with `start` = the last item's name (the continuation
/// token); [`Page::next_start`] gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// More items follow the last one (the listing stopped at its limit).
    pub truncated: bool,
}

impl<T> Default for Page<T> {
    fn default() -> Self {
        Page { items: Vec::new(), truncated: false }
    }
}

/// What a listing is ordered and continued by.
pub trait Named {
    fn name(&self) -> &str;
}

impl Named for VolumeInfo {
    fn name(&self) -> &str {
        &self.name
    }
}

impl Named for BucketInfo {
    fn name(&self) -> &str {
        &self.name
    }
}

impl Named for KeyInfo {
    fn name(&self) -> &str {
        &self.name
    }
}

impl<T: Named> Page<T> {
    /// The `start` of the next page's listing: the last name, if the listing was truncated.
    pub fn next_start(&self) -> Option<&str> {
        if self.truncated { self.items.last().map(Named::name) } else { None }
    }
}

impl<T> IntoIterator for Page<T> {
    type Item = T;
    type IntoIter = std::vec::IntoIter<T>;

    fn into_iter(self) -> Self::IntoIter {
        self.items.into_iter()
    }
}

impl<'a, T> IntoIterator for &'a Page<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.items.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replication_names_are_ozone_s() {
        assert_eq!(Replication::of(Ok(om_capnp::Replication::RatisOne)).name(), "RATIS/ONE");
        assert_eq!(Replication::of(Ok(om_capnp::Replication::RatisThree)).to_string(), "RATIS/THREE");
        assert_eq!(Replication::of(Err(capnp::NotInSchema(7))), Replication::Unknown(7));
        assert_eq!(Replication::Unknown(7).name(), "UNKNOWN");
    }

    #[test]
    fn a_page_continues_after_its_last_name_only_when_truncated() {
        let key = |name: &str| KeyInfo {
            volume: "v".into(),
            bucket: "b".into(),
            name: name.into(),
            data_size: 0,
            replication: Replication::RatisOne,
            created_ms: 0,
            modified_ms: 0,
            object_id: 0,
            update_id: 0,
            blocks: vec![],
            metadata: vec![],
            acls: vec![],
        };
        let page = Page { items: vec![key("a"), key("b")], truncated: true };
        assert_eq!(page.next_start(), Some("b"));
        assert_eq!(Page { truncated: false, ..page.clone() }.next_start(), None);
        assert_eq!(Page::<KeyInfo>::default().next_start(), None);
        assert_eq!((&page).into_iter().map(|k| k.name.as_str()).collect::<Vec<_>>(), ["a", "b"]);
    }
}
