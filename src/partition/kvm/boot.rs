//! Loading a multiboot v1 kernel the way QEMU's `-kernel` does, and the
//! machine state the Multiboot Specification (0.6.96, section 3.2)
//! defines at its entry.
//!
//! * Flag bit 16 set: a flat load from the header's address fields
//!   ([`crate::partition::guest::multiboot::Header::flat_load`]); otherwise the image
//!   must be ELF32 and its `PT_LOAD` segments go to their physical
//!   addresses.
//! * The multiboot information structure at [`INFO_ADDR`] (flags bit 0:
//!   `mem_lower`/`mem_upper`, the latter up to the 3 GiB hole only; bit 2:
//!   the command line at [`CMDLINE_ADDR`]; bit 6: the memory map at
//!   [`MMAP_ADDR`]: RAM at 0..640 KiB, 1 MiB..the hole, and 4 GiB.. when
//!   the guest has more than 3 GiB). The kernel loads below the hole.
//! * BSP: EAX = `0x2BADB002`, EBX = [`INFO_ADDR`], flat 4 GiB 32-bit code
//!   and data segments, CR0.PE = 1, paging off, EFLAGS.IF = 0. The APs
//!   stay in KVM's wait-for-SIPI state (the in-kernel LAPIC runs
//!   INIT-SIPI-SIPI).

use super::memory::GuestRam;
use crate::partition::PartitionError;
use crate::partition::guest::multiboot::{FLAG_ADDRESSES, Header, LOADER_MAGIC};
use kvm_bindings::{kvm_regs, kvm_segment, kvm_sregs};

/// Guest-physical address of the multiboot information structure.
pub const INFO_ADDR: u64 = 0x9000;
/// Guest-physical address of the NUL-terminated command line.
pub const CMDLINE_ADDR: u64 = 0x9800;
/// Longest command line (it must fit below 0xA000).
pub const MAX_CMDLINE: usize = 0x7ff;
/// Guest-physical address of the multiboot memory map (after the info).
pub const MMAP_ADDR: u64 = INFO_ADDR + 0x100;

fn bad(why: impl Into<String>) -> PartitionError {
    PartitionError::BadConfig {
        why: format!("kernel image: {}", why.into()),
    }
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Loads `image` into `ram`; returns the entry point.
pub fn load(ram: &GuestRam, image: &[u8]) -> Result<u32, PartitionError> {
    let header = Header::find(image).map_err(|e| bad(e.to_string()))?;
    let mem = ram.low_bytes();
    let fits = |addr: u64, len: u64| addr.checked_add(len).is_some_and(|end| end <= mem);
    if header.flags & FLAG_ADDRESSES != 0 {
        let flat = header
            .flat_load(image.len())
            .map_err(|e| bad(e.to_string()))?;
        let bytes = &image[flat.file_start..flat.file_end];
        let load = u64::from(flat.load_addr);
        let bss_end = u64::from(flat.bss_end_addr).max(load + bytes.len() as u64);
        if !fits(load, bss_end - load) {
            return Err(bad(format!(
                "it loads at {load:#x}..{bss_end:#x}, beyond guest memory ({mem:#x})"
            )));
        }
        ram.write_bytes(load, bytes)?;
        let zeros = vec![0u8; (bss_end - load) as usize - bytes.len()];
        ram.write_bytes(load + bytes.len() as u64, &zeros)?;
        return Ok(flat.entry);
    }
    // ELF32, little-endian, i386.
    if image.get(0..4) != Some(b"\x7fELF") || image.get(4) != Some(&1) || image.get(5) != Some(&1) {
        return Err(bad(
            "no multiboot address fields (flag bit 16) and not an ELF32 file",
        ));
    }
    let entry = u32_at(image, 24).ok_or_else(|| bad("ELF header cut short"))?;
    let phoff = u32_at(image, 28).ok_or_else(|| bad("ELF header cut short"))? as usize;
    let phentsize = u16_at(image, 42).ok_or_else(|| bad("ELF header cut short"))? as usize;
    let phnum = u16_at(image, 44).ok_or_else(|| bad("ELF header cut short"))? as usize;
    if phentsize < 32 || phnum > 64 {
        return Err(bad("ELF program headers are malformed"));
    }
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        let field = |o: usize| u32_at(image, ph + o).ok_or_else(|| bad("ELF program header cut"));
        if field(0)? != 1 {
            continue; // not PT_LOAD
        }
        let (offset, paddr) = (field(4)? as usize, u64::from(field(12)?));
        let (filesz, memsz) = (field(16)? as usize, u64::from(field(20)?));
        let bytes = image
            .get(offset..offset + filesz)
            .ok_or_else(|| bad("an ELF segment runs past the end of the file"))?;
        if memsz < filesz as u64 || !fits(paddr, memsz) {
            return Err(bad(format!(
                "ELF segment at {paddr:#x} (+{memsz:#x}) does not fit guest memory"
            )));
        }
        ram.write_bytes(paddr, bytes)?;
        ram.write_bytes(
            paddr + filesz as u64,
            &vec![0u8; (memsz - filesz as u64) as usize],
        )?;
    }
    Ok(entry)
}

/// Writes the multiboot information structure and the command line.
pub fn write_info(ram: &GuestRam, cmdline: &str) -> Result<(), PartitionError> {
    if cmdline.len() > MAX_CMDLINE || cmdline.contains('\0') {
        return Err(bad(format!(
            "the command line must be at most {MAX_CMDLINE} bytes without NUL"
        )));
    }
    let low = ram.low_bytes();
    let mut info = [0u8; 88];
    // mem_*, cmdline, mmap
    info[0..4].copy_from_slice(&(1u32 | 1 << 2 | 1 << 6).to_le_bytes());
    info[4..8].copy_from_slice(&640u32.to_le_bytes());
    let upper_kib = (low.saturating_sub(1 << 20) / 1024).min(u64::from(u32::MAX)) as u32;
    info[8..12].copy_from_slice(&upper_kib.to_le_bytes());
    info[16..20].copy_from_slice(&(CMDLINE_ADDR as u32).to_le_bytes());
    let mut map = Vec::new();
    let mut ram_range = |base: u64, len: u64| {
        if len > 0 {
            map.extend_from_slice(&20u32.to_le_bytes()); // entry size after this field
            map.extend_from_slice(&base.to_le_bytes());
            map.extend_from_slice(&len.to_le_bytes());
            map.extend_from_slice(&1u32.to_le_bytes()); // available RAM
        }
    };
    ram_range(0, low.min(640 << 10));
    ram_range(1 << 20, low.saturating_sub(1 << 20));
    for s in &ram.slots()[1..] {
        ram_range(s.guest_phys, s.len);
    }
    info[44..48].copy_from_slice(&(map.len() as u32).to_le_bytes());
    info[48..52].copy_from_slice(&(MMAP_ADDR as u32).to_le_bytes());
    ram.write_bytes(MMAP_ADDR, &map)?;
    ram.write_bytes(INFO_ADDR, &info)?;
    let mut line = cmdline.as_bytes().to_vec();
    line.push(0);
    ram.write_bytes(CMDLINE_ADDR, &line)
}

fn flat(selector: u16, type_: u8) -> kvm_segment {
    kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector,
        type_,
        present: 1,
        dpl: 0,
        db: 1,
        s: 1,
        l: 0,
        g: 1,
        avl: 0,
        unusable: 0,
        padding: 0,
    }
}

/// The BSP's registers at the kernel's entry.
pub fn entry_state(entry: u32, mut sregs: kvm_sregs) -> (kvm_regs, kvm_sregs) {
    let regs = kvm_regs {
        rax: u64::from(LOADER_MAGIC),
        rbx: INFO_ADDR,
        rip: u64::from(entry),
        rflags: 0x2,
        ..Default::default()
    };
    sregs.cs = flat(0x10, 0xb);
    for s in [
        &mut sregs.ds,
        &mut sregs.es,
        &mut sregs.fs,
        &mut sregs.gs,
        &mut sregs.ss,
    ] {
        *s = flat(0x18, 0x3);
    }
    sregs.cr0 = (sregs.cr0 | 0x1) & !0x8000_0000;
    (regs, sregs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::partition::kvm::memory::{HIGH_BASE, HOLE_START};

    fn ram(bytes: u64) -> GuestRam {
        let file = tempfile::tempfile().unwrap();
        file.set_len(bytes).unwrap(); // sparse
        GuestRam::map(file, std::path::Path::new("test")).unwrap()
    }

    fn u32_at(ram: &GuestRam, addr: u64) -> u32 {
        let mut b = [0u8; 4];
        ram.read_bytes(addr, &mut b).unwrap();
        u32::from_le_bytes(b)
    }

    /// (base, len, type) of each memory-map entry.
    fn memory_map(ram: &GuestRam) -> Vec<(u64, u64, u32)> {
        assert_ne!(
            u32_at(ram, INFO_ADDR) & 1 << 6,
            0,
            "flags bit 6: mmap valid"
        );
        let (len, addr) = (u32_at(ram, INFO_ADDR + 44), u32_at(ram, INFO_ADDR + 48));
        let mut out = Vec::new();
        let mut at = u64::from(addr);
        while at < u64::from(addr) + u64::from(len) {
            let size = u32_at(ram, at);
            let mut e = [0u8; 20];
            ram.read_bytes(at + 4, &mut e).unwrap();
            out.push((
                u64::from_le_bytes(e[0..8].try_into().unwrap()),
                u64::from_le_bytes(e[8..16].try_into().unwrap()),
                u32::from_le_bytes(e[16..20].try_into().unwrap()),
            ));
            at += 4 + u64::from(size);
        }
        out
    }

    #[test]
    fn the_memory_map_lists_ram_on_both_sides_of_the_hole() {
        let ram = ram(5 << 30);
        write_info(&ram, "lpar-guest idle").unwrap();
        assert_eq!(
            memory_map(&ram),
            vec![
                (0, 640 << 10, 1),
                (1 << 20, HOLE_START - (1 << 20), 1),
                (HIGH_BASE, (5 << 30) - HOLE_START, 1),
            ]
        );
        let upper = u32_at(&ram, INFO_ADDR + 8);
        assert_eq!(
            u64::from(upper) * 1024,
            HOLE_START - (1 << 20),
            "mem_upper stops at the hole"
        );
    }

    #[test]
    fn a_small_guest_has_one_region() {
        let ram = ram(16 << 20);
        write_info(&ram, "x").unwrap();
        assert_eq!(
            memory_map(&ram),
            vec![(0, 640 << 10, 1), (1 << 20, 15 << 20, 1)]
        );
    }
}
