//! The committed generated code is what capnpc makes of the schemas today.
//!
//! With `STRATOS_REGEN=1` (see `schema/regen.sh`) this writes the generated files instead of
//! comparing. Without the `capnp` tool it cannot check anything: it says so on stderr (past the
//! test harness's capture) and passes, except where the environment variable `CI` is set
//! (`.ci/run` sets it and installs capnp), where the check is required and its absence fails.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn capnp_available() -> bool {
    Command::new("capnp").arg("--version").output().is_ok_and(|o| o.status.success())
}

/// Runs `capnp compile -o-` (the code generator request) and capnpc's Rust generator on it.
fn generate_into(out: &Path) -> Vec<(PathBuf, PathBuf)> {
    let dir = crate_dir();
    let schemas: Vec<&str> = stratos_schema::SCHEMAS.iter().map(|(s, _)| *s).collect();
    let request = Command::new("capnp")
        .current_dir(&dir)
        .args(["compile", "-o-", "--src-prefix=capnp"])
        .args(&schemas)
        .output()
        .expect("running capnp");
    assert!(request.status.success(), "capnp compile failed: {}", String::from_utf8_lossy(&request.stderr));
    capnpc::codegen::CodeGenerationCommand::new()
        .output_directory(out)
        .run(&request.stdout[..])
        .expect("capnpc code generation");
    stratos_schema::SCHEMAS
        .iter()
        .map(|(schema, committed)| {
            let stem = Path::new(schema).file_stem().and_then(|s| s.to_str()).expect("schema file name");
            (out.join(format!("{stem}_capnp.rs")), dir.join(committed))
        })
        .collect()
}

/// Whether this runs in CI (`CI` set to anything but empty, `false` or `0`).
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

#[test]
fn generated_is_current() {
    if !capnp_available() {
        let line = "generated_is_current: SKIPPED: the capnp tool is not installed, so nothing checked that schema/src/generated matches the schemas (install capnproto)";
        assert!(!in_ci(), "{line}; CI is set, and there this check is required");
        // Straight to the process's stderr: libtest captures eprintln! of a passing test, and a
        // skip nobody sees is a check everybody believes ran.
        let _ = writeln!(std::io::stderr(), "{line}");
        return;
    }
    let out = tempfile::tempdir().expect("temp dir");
    let regen = std::env::var_os("STRATOS_REGEN").is_some();
    for (fresh, committed) in generate_into(out.path()) {
        let fresh_bytes = std::fs::read(&fresh).unwrap_or_else(|e| panic!("reading {}: {e}", fresh.display()));
        if regen {
            std::fs::write(&committed, &fresh_bytes).unwrap_or_else(|e| panic!("writing {}: {e}", committed.display()));
            eprintln!("wrote {}", committed.display());
            continue;
        }
        let committed_bytes = std::fs::read(&committed).unwrap_or_default();
        assert!(
            fresh_bytes == committed_bytes,
            "{} is not what the schemas generate today: run schema/regen.sh and commit the result",
            committed.display()
        );
    }
}
