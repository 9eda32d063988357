//! Helpers shared by the command tests: run the built binary, read its output, make a fresh
//! temporary folder.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};

/// Runs `cnn ARGS` (the binary this test was built with), without backtraces.
pub(crate) fn cnn(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cnn"))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("runs")
}

/// Standard output then standard error, as text.
pub(crate) fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// An empty folder under the system's temporary folder, unique to this test process.
pub(crate) fn tempdir(suite: &str, name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("cnn-{suite}-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}
