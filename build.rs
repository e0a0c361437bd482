//! Embeds the build identity (crate version, git commit, wire-protocol
//! version) that two agents compare during validation.

use std::process::Command;

include!("src/wire/version.rs");

fn main() {
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=LPAR_MOVER_GIT_COMMIT={commit}");
    println!("cargo:rustc-env=LPAR_MOVER_WIRE_PROTOCOL={PROTOCOL_VERSION}");
    println!("cargo:rerun-if-changed=src/wire/version.rs");
    // A new commit moves HEAD or the branch it points to.
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
}
