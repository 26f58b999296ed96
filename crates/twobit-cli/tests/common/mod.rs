//! Helpers shared by the CLI's integration tests.
#![allow(dead_code)] // each test binary uses a subset

use std::path::Path;
use std::process::{Command, Output};

/// Runs the built `twobit` with `args`, under RUST_BACKTRACE=1 as on the project's machines.
pub fn twobit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_twobit"))
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("run twobit")
}

/// A path as `&str` (test paths are UTF-8).
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}
