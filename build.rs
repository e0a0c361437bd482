//! Embeds the build identity (crate version, git commit, wire-protocol
//! version) that two agents compare during validation, and builds the
//! built-in guest kernel (guests/) into OUT_DIR for `guest::IMAGE`.

use std::path::{Path, PathBuf};
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
    build_guest();
}

/// The guest's sources, compiled in this order and linked with guest.ld.
const GUEST_SOURCES: [&str; 4] = ["boot.S", "lib.c", "program.c", "main.c"];

/// Flags from guests/README.md: 32-bit, freestanding, no PIC, no SSE/x87
/// (nothing saves FPU state), no CET instructions (an emulator may not
/// know ENDBR32), no unwind tables.
const GUEST_CFLAGS: [&str; 15] = [
    "-m32",
    "-march=i686",
    "-ffreestanding",
    "-nostdlib",
    "-fno-pic",
    "-fno-pie",
    "-O2",
    "-fno-stack-protector",
    "-fcf-protection=none",
    "-fno-asynchronous-unwind-tables",
    "-mgeneral-regs-only",
    "-fno-builtin",
    "-std=gnu11",
    "-Wall",
    "-Werror",
];

/// Builds guests/*.{S,c} into OUT_DIR/lpar-guest.elf with gcc and ld.
fn build_guest() {
    let src = Path::new("guests");
    println!("cargo:rerun-if-changed=guests");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let cc = std::env::var("LPAR_GUEST_CC").unwrap_or_else(|_| "gcc".to_string());
    let ld = std::env::var("LPAR_GUEST_LD").unwrap_or_else(|_| "ld".to_string());
    println!("cargo:rerun-if-env-changed=LPAR_GUEST_CC");
    println!("cargo:rerun-if-env-changed=LPAR_GUEST_LD");
    let mut objects = Vec::new();
    for file in GUEST_SOURCES {
        let object = out.join(format!("guest-{file}.o"));
        let mut cmd = Command::new(&cc);
        cmd.args(GUEST_CFLAGS)
            .arg("-c")
            .arg(src.join(file))
            .arg("-o")
            .arg(&object);
        run(cmd, &cc, "gcc");
        objects.push(object);
    }
    let image = out.join("lpar-guest.elf");
    let mut cmd = Command::new(&ld);
    cmd.args([
        "-m",
        "elf_i386",
        "-nostdlib",
        "--no-warn-rwx-segments",
        "-T",
    ])
    .arg(src.join("guest.ld"))
    .arg("-o")
    .arg(&image)
    .args(&objects);
    run(cmd, &ld, "binutils");
}

/// Runs a guest build step; a missing tool or a failure stops the build
/// with what to install or fix.
fn run(mut cmd: Command, tool: &str, package: &str) {
    let shown = format!("{cmd:?}");
    let failure = match cmd.output() {
        Err(err) => format!(
            "running '{tool}' failed: {err}.\n\
             The guest kernel is compiled with gcc -m32 and linked with ld -m elf_i386.\n\
             What to do: install the '{package}' package (Debian/Ubuntu: apt-get install gcc binutils),\n\
             or point LPAR_GUEST_CC / LPAR_GUEST_LD at a gcc and an ld that can build 32-bit x86 code."
        ),
        Ok(output) if !output.status.success() => format!(
            "{shown} failed ({}):\n{}{}\n\
             What to do: fix the guest source, or if the error is about -m32 or elf_i386, \
             install a gcc/binutils that target 32-bit x86 (Debian/Ubuntu: apt-get install gcc binutils).",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
        ),
        Ok(_) => return,
    };
    eprintln!("lpar-mover build: cannot build the built-in guest (guests/): {failure}");
    std::process::exit(1);
}
