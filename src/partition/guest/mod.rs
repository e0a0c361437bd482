//! The built-in guest: a small multiboot v1 kernel (source in `guests/`,
//! built by `build.rs` with gcc and ld) that runs the `sim` program
//! vocabulary on real (or emulated) x86 vCPUs.
//!
//! [`IMAGE`] is its ELF32 file. It boots as ELF or, through the multiboot
//! header's address fields (flag bit 16), as a flat binary, loaded at
//! 1 MiB, under any multiboot v1 loader (the KVM backend, `qemu -kernel`).
//!
//! What it promises (specified in `guests/README.md` and checked by
//! `tests/guest_qemu.rs`):
//! * the program is the last space-separated word of its multiboot command
//!   line ([`program_of_cmdline`]), in `sim`'s vocabulary
//!   ([`crate::partition::sim::program::ProgramSpec`]); text it does not
//!   understand gives one `lpar-guest error: …` line on COM1 and a halt;
//! * COM1 carries a boot line and per-vCPU heartbeats ([`console`]);
//! * the mailbox page at guest-physical [`mailbox::ADDR`] carries its
//!   counters, and the VMM's power button ([`mailbox`]);
//! * every write is a pure function of the vCPU's state in the mailbox
//!   page, and the same page and bytes `sim` writes for that state.
//!
//! This module sits beside `partition` (whose KVM backend boots it) and
//! uses only `partition::sim::program` from it.

pub mod console;
pub mod mailbox;
pub mod multiboot;

use crate::partition::PartitionError;
use crate::partition::sim::program::{Content, Opcode, ProgramSpec};

/// The guest kernel, an ELF32 file with a multiboot v1 header.
pub const IMAGE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/lpar-guest.elf"));

/// Guest-physical address where the guest's work area starts; it never
/// writes program pages below it.
pub const WORK_AREA_START: u64 = 4 << 20;

/// The most vCPUs the guest runs on (more are left halted).
pub const MAX_CPUS: usize = 32;

/// The program a multiboot command line asks for: its last space-separated
/// word (boot loaders such as QEMU and GRUB put the kernel's path first);
/// `idle` when the line is empty.
pub fn program_of_cmdline(cmdline: &str) -> &str {
    cmdline
        .split(' ')
        .rfind(|w| !w.is_empty())
        .unwrap_or("idle")
}

/// Parses a command line as the guest does.
pub fn parse_cmdline(cmdline: &str) -> Result<ProgramSpec, PartitionError> {
    ProgramSpec::parse(program_of_cmdline(cmdline))
}

/// The command line that makes the guest run `spec` (options the guest
/// takes by default are left out).
pub fn format_cmdline(spec: &ProgramSpec) -> String {
    let mut text = match spec.opcode {
        Opcode::Idle => "idle".to_string(),
        Opcode::Hot => format!("hot:{}KiB", spec.hot_pages * 4),
        Opcode::Sweep => "sweep".to_string(),
        Opcode::Skewed => "skewed".to_string(),
    };
    if spec.rate != 0 {
        text.push_str(&format!(",rate={}", spec.rate));
    }
    match spec.content {
        Content::Zero => text.push_str(",content=zero"),
        Content::Text => text.push_str(",content=text"),
        Content::Random => {}
    }
    if spec.writes != 0 {
        text.push_str(&format!(",writes={}", spec.writes));
    }
    if spec.ignore_shutdown {
        text.push_str(",shutdown=ignore");
    }
    if spec.resident_pages != 0 {
        // The built-in guest answers this with its error line: it is the
        // sim's only.
        text.push_str(&format!(",resident={}KiB", spec.resident_pages * 4));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_program_is_the_last_word() {
        assert_eq!(program_of_cmdline("/tmp/guest.elf hot:4MiB"), "hot:4MiB");
        assert_eq!(program_of_cmdline("sweep,rate=10"), "sweep,rate=10");
        assert_eq!(program_of_cmdline("  k  idle  "), "idle");
        assert_eq!(program_of_cmdline(""), "idle");
        assert_eq!(program_of_cmdline("   "), "idle");
    }

    #[test]
    fn format_round_trips_through_parse() {
        for text in [
            "idle",
            "hot:4096KiB,rate=2000,content=zero",
            "sweep,content=text,writes=7",
            "skewed,shutdown=ignore",
        ] {
            let spec = parse_cmdline(text).unwrap();
            assert_eq!(format_cmdline(&spec), text);
            assert_eq!(parse_cmdline(&format_cmdline(&spec)).unwrap(), spec);
        }
    }

    proptest::proptest! {
        #[test]
        fn any_program_formats_to_a_command_line_that_parses_back(
            head in 0..4u8,
            hot_pages in 1..1u64 << 40,
            rate in proptest::option::of(1..u64::MAX),
            content in 0..3u8,
            writes in proptest::option::of(1..u64::MAX),
            ignore_shutdown: bool,
            path in proptest::option::of("/[a-z/]{1,20}"),
        ) {
            let spec = ProgramSpec {
                opcode: [Opcode::Idle, Opcode::Hot, Opcode::Sweep, Opcode::Skewed][head as usize],
                hot_pages: if head == 1 { hot_pages } else { 0 },
                rate: rate.unwrap_or(0),
                content: [Content::Zero, Content::Text, Content::Random][content as usize],
                writes: writes.unwrap_or(0),
                ignore_shutdown,
                // The sim's only: the built-in guest does not load data.
                resident_pages: 0,
            };
            let text = format_cmdline(&spec);
            let line = match path {
                Some(p) => format!("{p} {text}"),
                None => text,
            };
            proptest::prop_assert_eq!(parse_cmdline(&line).unwrap(), spec);
        }
    }

    #[test]
    fn bad_command_lines_are_refused() {
        assert!(parse_cmdline("kernel warm:1G").is_err());
        assert!(parse_cmdline("hot:4MiB,content=purple").is_err());
    }
}
