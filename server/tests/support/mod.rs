//! What the end-to-end tests that start `stratos` processes share: a process on OS-chosen
//! ports, known by its `ready` line and killed when dropped.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_stratos");

pub struct Proc {
    pub child: Child,
    pub line: String,
}

impl Proc {
    pub fn start(args: &[&str]) -> Proc {
        let mut child = Command::new(BIN).args(args).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().expect("start stratos");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("ready line");
        assert!(line.contains("ready"), "{args:?}: no ready line: {line:?}");
        Proc { child, line }
    }

    pub fn word_after(&self, w: &str) -> String {
        self.line.split_whitespace().skip_while(|x| *x != w).nth(1).unwrap_or_else(|| panic!("no {w} in {:?}", self.line)).to_string()
    }

    /// Kills the process as kill -9 does (no clean stop) and reaps it.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// `stratos sh --om OM --user root ARGS`: whether it succeeded, its stdout and its stderr.
#[allow(dead_code)] // not every test binary drives the CLI
pub fn sh(om: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN).arg("sh").args(["--om", om, "--user", "root"]).args(args).output().expect("run stratos sh");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// A path as a command-line argument.
pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}
