//! The crate layout the README states: dependencies between the workspace's crates point one
//! way, and a role crate (om, scm, datanode, s3g) never depends on another role crate. Read from the
//! manifests, so a new `stratos-*` dependency that breaks a rule fails here, and every workspace
//! member appears in the README's layout table.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("server/ has a parent").to_path_buf()
}

fn manifest(dir: &str) -> toml::Table {
    let path = root().join(dir).join("Cargo.toml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.parse().unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The workspace crates `dir`'s package depends on (normal dependencies, not dev).
fn stratos_deps(dir: &str) -> BTreeSet<String> {
    let m = manifest(dir);
    m.get("dependencies").and_then(toml::Value::as_table).map_or_else(BTreeSet::new, |t| t.keys().filter(|k| k.starts_with("stratos-")).cloned().collect())
}

/// Each crate, and the workspace crates it may depend on (README, "Layout").
const RULES: [(&str, &[&str]); 12] = [
    ("wal", &[]),
    ("shard", &[]),
    ("schema", &[]),
    ("tuning", &[]),
    ("client", &["stratos-schema"]),
    ("server/common", &["stratos-schema", "stratos-client"]),
    ("server/raft", &["stratos-wal", "stratos-shard", "stratos-schema", "stratos-common"]),
    ("server/om", &["stratos-wal", "stratos-shard", "stratos-schema", "stratos-common", "stratos-raft", "stratos-tuning"]),
    ("server/scm", &["stratos-wal", "stratos-schema", "stratos-common"]),
    // The block log is a stratos-wal log; chained writes and repairs make a datanode a client
    // of other datanodes.
    ("server/datanode", &["stratos-schema", "stratos-common", "stratos-wal", "stratos-client"]),
    // The gateway will be a client of the OM and the datanodes, like any other.
    ("server/s3g", &["stratos-schema", "stratos-common", "stratos-client"]),
    ("bench", &["stratos-client", "stratos-schema", "stratos-wal", "stratos-shard", "stratos-tuning", "stratos-s3g"]),
];

#[test]
fn dependencies_point_one_way_and_no_role_crate_depends_on_another() {
    for (dir, allowed) in RULES {
        let allowed: BTreeSet<String> = allowed.iter().map(|s| s.to_string()).collect();
        let extra: Vec<String> = stratos_deps(dir).difference(&allowed).cloned().collect();
        assert!(extra.is_empty(), "{dir} depends on {extra:?}, which the layout forbids (allowed: {allowed:?})");
    }
}

#[test]
fn every_workspace_member_has_a_rule_and_a_row_in_the_readme() {
    let workspace = manifest(".");
    let members: Vec<String> = workspace["workspace"]["members"].as_array().expect("members").iter().map(|m| m.as_str().expect("a path").to_string()).collect();
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    for m in &members {
        assert!(m == "server" || RULES.iter().any(|(dir, _)| dir == m), "workspace member {m} has no dependency rule in this test");
        assert!(readme.contains(&format!("| `{m}/` |")), "workspace member {m} has no row in the README's layout table");
    }
    assert_eq!(members.len(), RULES.len() + 1, "a rule names a crate that is not a workspace member");
}
