//! S3 access control lists, kept as the OM's ACL entries (Ozone's rights on a user, a group or
//! the world), so that the OM, not the gateway, decides every access.
//!
//! S3's permissions mean different things on a bucket and on an object, and so become
//! different rights:
//!
//! | S3 permission | on a bucket | on an object |
//! |---|---|---|
//! | READ | LIST (list its objects; not read them) | READ |
//! | WRITE | WRITE, DELETE (create, overwrite, delete objects) | WRITE (kept, as S3 keeps it: it grants nothing on an object) |
//! | READ_ACP | READ_ACL | READ_ACL |
//! | WRITE_ACP | WRITE_ACL | WRITE_ACL |
//! | FULL_CONTROL | all four | all four |
//!
//! Grantees: a canonical user (its ID is the user's name, as ListBuckets shows it), the
//! AllUsers group (WORLD: anonymous callers too) and the AuthenticatedUsers group (the OM's
//! group [`AclEntry::AUTHENTICATED`], which every caller but the anonymous one is in). An
//! object is owned by its writer or by its bucket's owner, as the bucket's object ownership
//! says (the gateway decides; docs/s3.md): the canned ACLs `bucket-owner-read` and
//! `bucket-owner-full-control` grant the bucket's owner READ or FULL_CONTROL beside an object
//! owner who is another user, and are `private` where the two are one (and on a bucket).
//!
//! A bucket or key with no entries at all has only its owner's grant (what a bucket or key
//! made without an ACL shows). An ACL set with no grants keeps one entry, the owner's, with no
//! rights, so that it reads back as no grants (the owner still may do everything, as in S3).

use stratos_client::{AclEntry, AclKind};

use crate::error::S3Error;
use crate::xml::{Element, Writer};

pub const ALL_USERS: &str = "http://acs.amazonaws.com/groups/global/AllUsers";
pub const AUTHENTICATED_USERS: &str = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers";

// Ozone's rights bits (the OM's `rights`).
pub const READ: u16 = 1;
pub const WRITE: u16 = 1 << 1;
const CREATE: u16 = 1 << 2;
pub const LIST: u16 = 1 << 3;
pub const DELETE: u16 = 1 << 4;
const READ_ACL: u16 = 1 << 5;
const WRITE_ACL: u16 = 1 << 6;

/// Most grants one ACL may list (the OM keeps at most 32 entries, one per grantee).
const GRANTS_MAX: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum On {
    Bucket,
    Object,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    Read,
    Write,
    ReadAcp,
    WriteAcp,
    FullControl,
}

const EACH: [Permission; 4] = [Permission::Read, Permission::Write, Permission::ReadAcp, Permission::WriteAcp];

impl Permission {
    fn parse(s: &str) -> Option<Permission> {
        Some(match s {
            "READ" => Permission::Read,
            "WRITE" => Permission::Write,
            "READ_ACP" => Permission::ReadAcp,
            "WRITE_ACP" => Permission::WriteAcp,
            "FULL_CONTROL" => Permission::FullControl,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Permission::Read => "READ",
            Permission::Write => "WRITE",
            Permission::ReadAcp => "READ_ACP",
            Permission::WriteAcp => "WRITE_ACP",
            Permission::FullControl => "FULL_CONTROL",
        }
    }

    /// The rights this permission grants (the table above).
    pub fn rights(self, on: On) -> u16 {
        match (self, on) {
            (Permission::Read, On::Bucket) => LIST,
            (Permission::Read, On::Object) => READ,
            (Permission::Write, On::Bucket) => WRITE | DELETE,
            (Permission::Write, On::Object) => WRITE,
            (Permission::ReadAcp, _) => READ_ACL,
            (Permission::WriteAcp, _) => WRITE_ACL,
            (Permission::FullControl, on) => EACH.iter().fold(0, |r, p| r | p.rights(on)),
        }
    }

    /// The rights whose any one shows this permission when an ACL is read: an entry made
    /// natively (`READ` on a bucket lets its keys be read, more than S3's READ) still shows.
    fn shown_by(self, on: On) -> u16 {
        match (self, on) {
            (Permission::Read, On::Bucket) => LIST | READ,
            (Permission::Write, On::Bucket) => WRITE | DELETE | CREATE,
            (p, on) => p.rights(on),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grantee {
    User(String),
    AllUsers,
    AuthenticatedUsers,
}

impl Grantee {
    fn entry(&self, rights: u16) -> AclEntry {
        match self {
            Grantee::User(id) => AclEntry { kind: AclKind::User, name: id.clone(), rights },
            Grantee::AllUsers => AclEntry { kind: AclKind::World, name: String::new(), rights },
            Grantee::AuthenticatedUsers => AclEntry { kind: AclKind::Group, name: AclEntry::AUTHENTICATED.into(), rights },
        }
    }

    /// A user ID as a grant names it: a user's name (no `:`, which only the OM's own
    /// principals hold, and no control characters).
    fn user(id: &str) -> Result<Grantee, S3Error> {
        let id = id.trim();
        if id.is_empty() || id.len() > 256 || id.contains(':') || id.chars().any(char::is_control) {
            return Err(S3Error::invalid_argument(format!("Invalid id: {id:?} is not a user")));
        }
        Ok(Grantee::User(id.to_string()))
    }

    fn group(uri: &str) -> Result<Grantee, S3Error> {
        match uri.trim() {
            ALL_USERS => Ok(Grantee::AllUsers),
            AUTHENTICATED_USERS => Ok(Grantee::AuthenticatedUsers),
            other => Err(S3Error::invalid_argument(format!("the grantee group {other:?} (AllUsers and AuthenticatedUsers are)"))),
        }
    }
}

/// An ACL as a request gives it: (grantee, permission) pairs, in the order given.
pub type Grants = Vec<(Grantee, Permission)>;

/// The grants of a canned ACL (`x-amz-acl`) on a bucket or object owned by `owner`, in a
/// bucket owned by `bucket_owner` (a bucket's own: the same).
pub fn canned(name: &str, owner: &str, bucket_owner: &str) -> Result<Grants, S3Error> {
    let mut g = vec![(Grantee::User(owner.to_string()), Permission::FullControl)];
    let other_bucket_owner = (owner != bucket_owner).then(|| Grantee::User(bucket_owner.to_string()));
    match name.trim() {
        "private" => {}
        "bucket-owner-read" => g.extend(other_bucket_owner.map(|b| (b, Permission::Read))),
        "bucket-owner-full-control" => g.extend(other_bucket_owner.map(|b| (b, Permission::FullControl))),
        "public-read" => g.push((Grantee::AllUsers, Permission::Read)),
        "public-read-write" => g.extend([(Grantee::AllUsers, Permission::Read), (Grantee::AllUsers, Permission::Write)]),
        "authenticated-read" => g.push((Grantee::AuthenticatedUsers, Permission::Read)),
        "aws-exec-read" | "log-delivery-write" => return Err(S3Error::not_implemented(&format!("the canned ACL {name} (its grantees do not exist here)"))),
        other => return Err(S3Error::invalid_argument(format!("the canned ACL {other:?} is not one of S3's"))),
    }
    Ok(g)
}

/// The `x-amz-grant-*` headers' names and permissions.
const GRANT_HEADERS: [(&str, Permission); 5] = [
    ("x-amz-grant-read", Permission::Read),
    ("x-amz-grant-write", Permission::Write),
    ("x-amz-grant-read-acp", Permission::ReadAcp),
    ("x-amz-grant-write-acp", Permission::WriteAcp),
    ("x-amz-grant-full-control", Permission::FullControl),
];

/// One grant header's grantees: `id="alice", uri="http://acs.amazonaws.com/groups/global/AllUsers"`.
fn header_grantees(value: &str) -> Result<Vec<Grantee>, S3Error> {
    let mut out = Vec::new();
    for item in value.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (kind, v) = item.split_once('=').ok_or_else(|| S3Error::invalid_argument(format!("the grantee {item:?} is not type=value")))?;
        let v = v.trim().trim_matches('"');
        out.push(match kind.trim().to_ascii_lowercase().as_str() {
            "id" => Grantee::user(v)?,
            "uri" => Grantee::group(v)?,
            "emailaddress" => return Err(unresolvable_email(v)),
            other => return Err(S3Error::invalid_argument(format!("the grantee type {other:?} (id, uri or emailAddress)"))),
        });
    }
    Ok(out)
}

fn unresolvable_email(email: &str) -> S3Error {
    S3Error::new("UnresolvableGrantByEmailAddress", 400, format!("{email:?}: users are not known here by email address (grant by id)"))
}

/// The grants a request asks for: a canned ACL (`x-amz-acl`), grant headers
/// (`x-amz-grant-*`), or (`body`, PutBucketAcl/PutObjectAcl) an `AccessControlPolicy`
/// document; None where it asks for none. Only one of the three. `owner` owns the bucket or
/// object, `bucket_owner` the bucket (a canned ACL's `bucket-owner-*`).
pub fn requested(header: &dyn Fn(&str) -> Option<String>, body: Option<&[u8]>, owner: &str, bucket_owner: &str) -> Result<Option<Grants>, S3Error> {
    let canned_acl = header("x-amz-acl");
    let mut from_headers: Option<Grants> = None;
    for (name, p) in GRANT_HEADERS {
        if let Some(v) = header(name) {
            from_headers.get_or_insert_with(Vec::new).extend(header_grantees(&v)?.into_iter().map(|g| (g, p)));
        }
    }
    let body = body.filter(|b| !b.iter().all(u8::is_ascii_whitespace));
    match (canned_acl, from_headers, body) {
        (None, None, None) => Ok(None),
        (Some(c), None, None) => canned(&c, owner, bucket_owner).map(Some),
        (None, Some(g), None) => Ok(Some(g)),
        (None, None, Some(b)) => document_grants(b).map(Some),
        (Some(_), Some(_), _) => Err(S3Error::invalid_request("Specifying both Canned ACLs and Header Grants is not allowed")),
        _ => Err(S3Error::new("UnexpectedContent", 400, "This request does not support content beside an ACL header")),
    }
}

/// The grants of an `AccessControlPolicy` document.
fn document_grants(body: &[u8]) -> Result<Grants, S3Error> {
    let root = crate::xml::document(body, "AccessControlPolicy")?;
    let mut out = Vec::new();
    let Some(list) = root.child("AccessControlList") else { return Ok(out) };
    for g in list.children_named("Grant") {
        if out.len() == GRANTS_MAX {
            return Err(S3Error::malformed_xml(format!("more than {GRANTS_MAX} grants")));
        }
        let p = g.child("Permission").map(|p| p.text.trim()).ok_or_else(|| S3Error::malformed_xml("a Grant without a Permission"))?;
        let p = Permission::parse(p).ok_or_else(|| S3Error::malformed_xml(format!("the permission {p:?}")))?;
        let who = g.child("Grantee").ok_or_else(|| S3Error::malformed_xml("a Grant without a Grantee"))?;
        out.push((grantee_of(who)?, p));
    }
    Ok(out)
}

fn grantee_of(who: &Element) -> Result<Grantee, S3Error> {
    if let Some(id) = who.child("ID") {
        Grantee::user(&id.text)
    } else if let Some(uri) = who.child("URI") {
        Grantee::group(&uri.text)
    } else if let Some(email) = who.child("EmailAddress") {
        Err(unresolvable_email(&email.text))
    } else {
        Err(S3Error::malformed_xml("a Grantee with none of ID, URI or EmailAddress"))
    }
}

/// The OM's entries for `grants`: one per grantee, in the order first named, with the rights
/// of all its permissions. No grants keep the owner's entry without rights (module doc).
pub fn entries(grants: &Grants, owner: &str, on: On) -> Result<Vec<AclEntry>, S3Error> {
    let mut out: Vec<(Grantee, u16)> = Vec::new();
    for (g, p) in grants {
        match out.iter_mut().find(|(h, _)| h == g) {
            Some((_, r)) => *r |= p.rights(on),
            None => out.push((g.clone(), p.rights(on))),
        }
    }
    if out.is_empty() {
        out.push((Grantee::User(owner.to_string()), 0));
    }
    if out.len() > 32 {
        return Err(S3Error::invalid_argument(format!("{} grantees, at most 32", out.len())));
    }
    Ok(out.iter().map(|(g, r)| g.entry(*r)).collect())
}

/// The entries of the canned ACL `private`: the owner's FULL_CONTROL alone (what a bucket or
/// key without entries shows).
pub fn private(owner: &str, on: On) -> Vec<AclEntry> {
    vec![Grantee::User(owner.to_string()).entry(Permission::FullControl.rights(on))]
}

/// The users (other than `owner`) that `entries` name: each must exist.
pub fn users_named<'a>(entries: &'a [AclEntry], owner: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    entries.iter().filter(move |e| e.kind == AclKind::User && e.name != owner).map(|e| e.name.as_str())
}

/// Whether an entry is a public one (S3's AllUsers or AuthenticatedUsers), which a bucket's
/// public access block refuses or ignores.
pub fn is_public(e: &AclEntry) -> bool {
    e.kind == AclKind::World || (e.kind == AclKind::Group && e.name == AclEntry::AUTHENTICATED)
}

/// Whether `user` (empty: anonymous) holds every one of `rights` by `entries` or as `owner`.
pub fn allows(entries: &[AclEntry], owner: &str, user: &str, rights: u16) -> bool {
    (!user.is_empty() && user == owner)
        || entries.iter().any(|e| {
            e.rights & rights == rights
                && match e.kind {
                    AclKind::World => true,
                    AclKind::User => !user.is_empty() && e.name == user,
                    AclKind::Group => e.name == AclEntry::AUTHENTICATED && !user.is_empty(),
                }
        })
}

/// Entries as one metadata value (a multipart upload keeps its object's ACL so until it
/// completes): a line per entry, `KIND RIGHTS NAME` (u, g or w; the rights' bits in decimal;
/// the name last and whole, as names may hold any character but control characters).
pub fn encode(entries: &[AclEntry]) -> String {
    let line = |e: &AclEntry| {
        let kind = match e.kind {
            AclKind::User => 'u',
            AclKind::Group => 'g',
            AclKind::World => 'w',
        };
        format!("{kind} {} {}", e.rights, e.name)
    };
    entries.iter().map(line).collect::<Vec<_>>().join("\n")
}

/// What [`encode`] made.
pub fn decode(s: &str) -> Result<Vec<AclEntry>, String> {
    s.split('\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            let mut f = l.splitn(3, ' ');
            let kind = match f.next() {
                Some("u") => AclKind::User,
                Some("g") => AclKind::Group,
                Some("w") => AclKind::World,
                _ => return Err(format!("{l:?} is no ACL entry")),
            };
            let rights = f.next().and_then(|r| r.parse::<u16>().ok()).ok_or_else(|| format!("{l:?} has no rights"))?;
            Ok(AclEntry { kind, name: f.next().unwrap_or("").to_string(), rights })
        })
        .collect()
}

/// The rights S3's WRITE_ACP and READ_ACP hold (on a bucket or an object alike).
pub const WRITE_ACP: u16 = WRITE_ACL;
pub const READ_ACP: u16 = READ_ACL;

/// `entries` in one order (the document shows groups first, whatever order they were set in).
pub fn sorted(mut entries: Vec<AclEntry>) -> Vec<AclEntry> {
    entries.sort_by(|a, b| (a.kind as u8, &a.name).cmp(&(b.kind as u8, &b.name)));
    entries
}

/// The `AccessControlPolicy` document of a bucket or key with `entries`, owned by `owner`:
/// group grants first, then users' (the order S3 shows and clients compare in).
pub fn document(owner: &str, entries: &[AclEntry], on: On) -> String {
    let mut w = Writer::new("AccessControlPolicy");
    w.user("Owner", owner);
    w.open("AccessControlList");
    if entries.is_empty() {
        grant(&mut w, &Grantee::User(owner.to_string()), Permission::FullControl);
    }
    let groups = entries.iter().filter(|e| e.kind != AclKind::User);
    for e in groups.chain(entries.iter().filter(|e| e.kind == AclKind::User)) {
        let g = match e.kind {
            AclKind::User => Grantee::User(e.name.clone()),
            AclKind::World => Grantee::AllUsers,
            AclKind::Group if e.name == AclEntry::AUTHENTICATED => Grantee::AuthenticatedUsers,
            // A group of the native API's: S3 has no grantee for it.
            AclKind::Group => continue,
        };
        for p in permissions(e.rights, on) {
            grant(&mut w, &g, p);
        }
    }
    w.close("AccessControlList");
    w.finish("AccessControlPolicy")
}

/// The permissions `rights` show: FULL_CONTROL where they hold all of its rights.
fn permissions(rights: u16, on: On) -> Vec<Permission> {
    let full = Permission::FullControl.rights(on);
    if rights & full == full {
        return vec![Permission::FullControl];
    }
    EACH.into_iter().filter(|p| rights & p.shown_by(on) != 0).collect()
}

fn grant(w: &mut Writer, g: &Grantee, p: Permission) {
    w.open("Grant");
    match g {
        Grantee::User(id) => {
            w.open("Grantee xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xsi:type=\"CanonicalUser\"");
            w.elem("ID", id).elem("DisplayName", id);
        }
        Grantee::AllUsers | Grantee::AuthenticatedUsers => {
            w.open("Grantee xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xsi:type=\"Group\"");
            w.elem("URI", if *g == Grantee::AllUsers { ALL_USERS } else { AUTHENTICATED_USERS });
        }
    }
    w.close("Grantee").elem("Permission", p.name()).close("Grant");
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn grantee() -> impl Strategy<Value = Grantee> {
        prop_oneof!["[a-z]{1,3}".prop_map(Grantee::User), Just(Grantee::AllUsers), Just(Grantee::AuthenticatedUsers)]
    }

    fn permission() -> impl Strategy<Value = Permission> {
        prop_oneof![Just(Permission::Read), Just(Permission::Write), Just(Permission::ReadAcp), Just(Permission::WriteAcp), Just(Permission::FullControl)]
    }

    proptest! {
        /// Whatever grants are set, the document the gateway shows for them, given back as an
        /// ACL (as `aws s3api get-bucket-acl` then `put-bucket-acl` do), sets the same entries.
        #[test]
        fn an_acl_shown_and_given_back_is_the_same(grants in proptest::collection::vec((grantee(), permission()), 0..12), object in any::<bool>()) {
            let on = if object { On::Object } else { On::Bucket };
            let set = entries(&grants, "own", on).expect("entries");
            let shown = document("own", &set, on);
            let again = requested(&|_| None, Some(shown.as_bytes()), "own", "own").expect("parses").expect("an ACL");
            prop_assert_eq!(sorted(entries(&again, "own", on).expect("entries")), sorted(set.clone()), "{}", shown);
            // And kept as a metadata value while a multipart upload is in progress.
            prop_assert_eq!(decode(&encode(&set)).expect("decodes"), set);
        }
    }

    fn h<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |n| pairs.iter().find(|(k, _)| *k == n).map(|(_, v)| v.to_string())
    }

    #[test]
    fn canned_acls_become_entries_and_read_back_as_s3_shows_them() {
        let g = requested(&h(&[("x-amz-acl", "public-read")]), None, "alice", "alice").expect("ok").expect("some");
        let e = entries(&g, "alice", On::Bucket).expect("entries");
        assert_eq!(e, vec![
            AclEntry { kind: AclKind::User, name: "alice".into(), rights: LIST | WRITE | DELETE | READ_ACL | WRITE_ACL },
            AclEntry { kind: AclKind::World, name: String::new(), rights: LIST },
        ]);
        assert_eq!(entries(&canned("private", "alice", "alice").expect("ok"), "alice", On::Bucket).expect("entries"), private("alice", On::Bucket));
        let doc = document("alice", &e, On::Bucket);
        let all_users = doc.find(ALL_USERS).expect("AllUsers");
        assert!(all_users < doc.find("<ID>alice</ID><DisplayName>alice</DisplayName></Grantee><Permission>FULL_CONTROL").expect("owner"), "{doc}");
        assert_eq!(doc.matches("<Grant>").count(), 2, "{doc}");
        // Public read-write on an object: READ and WRITE to everyone, one entry.
        let g = canned("public-read-write", "alice", "alice").expect("ok");
        let e = entries(&g, "alice", On::Object).expect("entries");
        assert_eq!(e[1], AclEntry { kind: AclKind::World, name: String::new(), rights: READ | WRITE });
        let doc = document("alice", &e, On::Object);
        assert!(doc.contains("<Permission>READ</Permission>") && doc.contains("<Permission>WRITE</Permission>"), "{doc}");
        assert!(canned("bogus", "alice", "alice").is_err());
    }

    /// `bucket-owner-read` and `bucket-owner-full-control` on an object another user owns give
    /// the bucket's owner READ or every right beside the object's owner; on an object the
    /// bucket's owner owns (and on a bucket) they are `private`.
    #[test]
    fn bucket_owner_canned_acls_grant_the_bucket_owner_beside_another_owner() {
        let e = |name: &str, owner: &str| entries(&canned(name, owner, "alice").expect("ok"), owner, On::Object).expect("entries");
        let full = READ | WRITE | READ_ACL | WRITE_ACL;
        let user = |name: &str, rights: u16| AclEntry { kind: AclKind::User, name: name.into(), rights };
        assert_eq!(e("bucket-owner-read", "bob"), vec![user("bob", full), user("alice", READ)]);
        assert_eq!(e("bucket-owner-full-control", "bob"), vec![user("bob", full), user("alice", full)]);
        assert_eq!(e("private", "bob"), private("bob", On::Object));
        for name in ["bucket-owner-read", "bucket-owner-full-control"] {
            assert_eq!(e(name, "alice"), private("alice", On::Object), "{name}");
        }
        let doc = document("bob", &e("bucket-owner-read", "bob"), On::Object);
        assert!(doc.contains("<Owner><ID>bob</ID>"), "{doc}");
        assert!(doc.find("<ID>bob</ID><DisplayName>bob</DisplayName></Grantee><Permission>FULL_CONTROL") < doc.find("<ID>alice</ID><DisplayName>alice</DisplayName></Grantee><Permission>READ<"), "{doc}");
    }

    #[test]
    fn no_entries_is_the_owner_alone_and_no_grants_read_back_as_none() {
        assert_eq!(document("bob", &[], On::Bucket).matches("<Grant>").count(), 1);
        let none = entries(&Vec::new(), "bob", On::Bucket).expect("entries");
        assert_eq!(none, vec![AclEntry { kind: AclKind::User, name: "bob".into(), rights: 0 }]);
        assert_eq!(document("bob", &none, On::Bucket).matches("<Grant>").count(), 0);
    }

    #[test]
    fn grant_headers_and_documents_name_users_and_groups() {
        let g = requested(&h(&[("x-amz-grant-read", "id=\"carol\", uri=\"http://acs.amazonaws.com/groups/global/AuthenticatedUsers\""), ("x-amz-grant-write-acp", "id=carol")]), None, "alice", "alice")
            .expect("ok")
            .expect("some");
        let e = entries(&g, "alice", On::Object).expect("entries");
        assert_eq!(e, vec![
            AclEntry { kind: AclKind::User, name: "carol".into(), rights: READ | WRITE_ACL },
            AclEntry { kind: AclKind::Group, name: AclEntry::AUTHENTICATED.into(), rights: READ },
        ]);
        assert!(allows(&e, "alice", "carol", READ) && allows(&e, "alice", "dave", READ) && !allows(&e, "alice", "", READ));
        assert!(allows(&e, "alice", "alice", WRITE_ACL) && !allows(&e, "alice", "dave", WRITE_ACL));
        let both = requested(&h(&[("x-amz-acl", "private"), ("x-amz-grant-read", "id=carol")]), None, "alice", "alice");
        assert_eq!(both.expect_err("both").status, 400);
        let email = requested(&h(&[("x-amz-grant-read", "emailAddress=\"c@example.com\"")]), None, "alice", "alice");
        assert_eq!(email.expect_err("email").code, "UnresolvableGrantByEmailAddress");
        let doc = br#"<AccessControlPolicy><Owner><ID>alice</ID></Owner><AccessControlList>
            <Grant><Grantee xsi:type="CanonicalUser"><ID>carol</ID></Grantee><Permission>FULL_CONTROL</Permission></Grant>
            <Grant><Grantee xsi:type="Group"><URI>http://acs.amazonaws.com/groups/global/AllUsers</URI></Grantee><Permission>READ</Permission></Grant>
            </AccessControlList></AccessControlPolicy>"#;
        let g = requested(&h(&[]), Some(doc), "alice", "alice").expect("ok").expect("some");
        assert_eq!(g, vec![(Grantee::User("carol".into()), Permission::FullControl), (Grantee::AllUsers, Permission::Read)]);
        assert!(requested(&h(&[]), Some(b"<AccessControlPolicy><AccessControlList><Grant><Grantee><ID>x</ID></Grantee><Permission>ALL</Permission></Grant></AccessControlList></AccessControlPolicy>"), "a", "a").is_err());
        assert!(requested(&h(&[]), Some(b"<AccessControlPolicy><AccessControlList><Grant><Grantee><ID>a:b</ID></Grantee><Permission>READ</Permission></Grant></AccessControlList></AccessControlPolicy>"), "a", "a").is_err());
        assert_eq!(requested(&h(&[]), Some(b"  "), "a", "a").expect("ok"), None);
    }
}
