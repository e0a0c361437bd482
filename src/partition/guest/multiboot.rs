//! The multiboot v1 header of a kernel image, found and checked the way a
//! loader does (Multiboot Specification 0.6.96, section 3.1).
//!
//! The header is a 4-byte aligned structure within the image's first
//! 8192 bytes: magic `0x1BADB002`, flags, checksum (the three sum to 0
//! mod 2^32); with flag bit 16 the address fields follow and tell a loader
//! how to load the image as a flat binary, without reading it as ELF.

/// The header's magic.
pub const HEADER_MAGIC: u32 = 0x1BAD_B002;
/// EAX at the kernel's entry.
pub const LOADER_MAGIC: u32 = 0x2BAD_B002;
/// How far into the image the header may start.
pub const SEARCH_LIMIT: usize = 8192;
/// Flag bit 16: the address fields are valid.
pub const FLAG_ADDRESSES: u32 = 1 << 16;

/// The header's address fields (flag bit 16).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Addresses {
    /// Where the header is loaded.
    pub header_addr: u32,
    /// Where the text segment is loaded.
    pub load_addr: u32,
    /// End of the data to load (0: to the end of the file).
    pub load_end_addr: u32,
    /// End of the BSS (0: none).
    pub bss_end_addr: u32,
    /// The entry point.
    pub entry_addr: u32,
}

/// A multiboot v1 header found in an image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Where it starts in the image file.
    pub offset: usize,
    /// The header's flags.
    pub flags: u32,
    /// With flag bit 16.
    pub addresses: Option<Addresses>,
}

/// A flat load, from the address fields: copy `file[file_start..file_end]`
/// to guest-physical `load_addr`, zero up to `bss_end_addr`, enter at `entry`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlatLoad {
    /// First byte of the image to load.
    pub file_start: usize,
    /// End of the bytes to load.
    pub file_end: usize,
    /// Guest-physical load address.
    pub load_addr: u32,
    /// End of the zeroed BSS.
    pub bss_end_addr: u32,
    /// The entry point.
    pub entry: u32,
}

/// Why an image is not a loadable multiboot v1 kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// No multiboot header in the first [`SEARCH_LIMIT`] bytes.
    NotFound,
    /// The image ends inside the header.
    Truncated {
        /// Where the header starts.
        offset: usize,
    },
    /// The address fields are inconsistent.
    BadAddresses(String),
}

impl std::fmt::Display for HeaderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeaderError::NotFound => write!(
                f,
                "no multiboot v1 header (magic 0x1BADB002 with a valid checksum, 4-byte aligned) \
                 in the first {SEARCH_LIMIT} bytes"
            ),
            HeaderError::Truncated { offset } => {
                write!(
                    f,
                    "the multiboot header at offset {offset} is cut short by the end of the file"
                )
            }
            HeaderError::BadAddresses(why) => write!(f, "multiboot address fields: {why}"),
        }
    }
}

fn word(image: &[u8], at: usize) -> Option<u32> {
    let bytes = image.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

impl Header {
    /// Finds the first valid header in `image`.
    pub fn find(image: &[u8]) -> Result<Header, HeaderError> {
        let limit = image.len().min(SEARCH_LIMIT);
        let mut offset = 0;
        while offset + 12 <= limit {
            let (Some(magic), Some(flags), Some(checksum)) = (
                word(image, offset),
                word(image, offset + 4),
                word(image, offset + 8),
            ) else {
                break;
            };
            if magic == HEADER_MAGIC && magic.wrapping_add(flags).wrapping_add(checksum) == 0 {
                let addresses = if flags & FLAG_ADDRESSES != 0 {
                    let field = |i: usize| {
                        word(image, offset + 12 + 4 * i).ok_or(HeaderError::Truncated { offset })
                    };
                    Some(Addresses {
                        header_addr: field(0)?,
                        load_addr: field(1)?,
                        load_end_addr: field(2)?,
                        bss_end_addr: field(3)?,
                        entry_addr: field(4)?,
                    })
                } else {
                    None
                };
                return Ok(Header {
                    offset,
                    flags,
                    addresses,
                });
            }
            offset += 4;
        }
        Err(HeaderError::NotFound)
    }

    /// How to load `image` (of `image_len` bytes) as a flat binary from the
    /// address fields, checked against the file and each other.
    pub fn flat_load(&self, image_len: usize) -> Result<FlatLoad, HeaderError> {
        let bad = |why: String| Err(HeaderError::BadAddresses(why));
        let Some(a) = self.addresses else {
            return bad("flag bit 16 is clear: the image has no address fields".into());
        };
        if a.header_addr < a.load_addr {
            return bad(format!(
                "header_addr {:#x} is below load_addr {:#x}",
                a.header_addr, a.load_addr
            ));
        }
        let into_load = (a.header_addr - a.load_addr) as usize;
        let Some(file_start) = self.offset.checked_sub(into_load) else {
            return bad(format!(
                "header_addr - load_addr ({into_load:#x}) is more than the header's file offset ({:#x})",
                self.offset
            ));
        };
        let file_end = if a.load_end_addr == 0 {
            image_len
        } else {
            if a.load_end_addr <= a.load_addr {
                return bad(format!(
                    "load_end_addr {:#x} is not above load_addr {:#x}",
                    a.load_end_addr, a.load_addr
                ));
            }
            match file_start.checked_add((a.load_end_addr - a.load_addr) as usize) {
                Some(end) if end <= image_len => end,
                _ => {
                    return bad(format!(
                        "the loaded bytes run past the end of the {image_len}-byte file"
                    ));
                }
            }
        };
        let loaded_end = u64::from(a.load_addr) + (file_end - file_start) as u64;
        if loaded_end > u64::from(u32::MAX) {
            return bad(format!(
                "the loaded bytes end at {loaded_end:#x}, above 4 GiB"
            ));
        }
        if a.bss_end_addr != 0 && u64::from(a.bss_end_addr) < loaded_end {
            return bad(format!(
                "bss_end_addr {:#x} is below the end of the loaded bytes {loaded_end:#x}",
                a.bss_end_addr
            ));
        }
        if u64::from(a.entry_addr) < u64::from(a.load_addr) || u64::from(a.entry_addr) >= loaded_end
        {
            return bad(format!(
                "entry_addr {:#x} is outside the loaded bytes {:#x}..{loaded_end:#x}",
                a.entry_addr, a.load_addr
            ));
        }
        Ok(FlatLoad {
            file_start,
            file_end,
            load_addr: a.load_addr,
            bss_end_addr: a.bss_end_addr.max(loaded_end as u32),
            entry: a.entry_addr,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_guest_has_a_flat_loadable_header() {
        let image = super::super::IMAGE;
        assert_eq!(&image[..4], b"\x7fELF");
        let header = Header::find(image).unwrap();
        assert_eq!(header.flags & FLAG_ADDRESSES, FLAG_ADDRESSES);
        assert_eq!(
            header.flags & 2,
            2,
            "asks for the memory map (mem_lower/mem_upper)"
        );
        let load = header.flat_load(image.len()).unwrap();
        assert_eq!(load.load_addr, 0x10_0000);
        assert!(load.bss_end_addr < 2 << 20, "the image stays below 2 MiB");
        // The ELF entry point and the header's agree.
        let elf_entry = u32::from_le_bytes(image[24..28].try_into().unwrap());
        assert_eq!(elf_entry, load.entry);
    }

    fn header(flags: u32, fields: [u32; 5]) -> Vec<u8> {
        let mut image = vec![0u8; 64];
        let mut words = vec![
            HEADER_MAGIC,
            flags,
            0u32.wrapping_sub(HEADER_MAGIC.wrapping_add(flags)),
        ];
        words.extend(fields);
        for (i, w) in words.iter().enumerate() {
            image[16 + 4 * i..20 + 4 * i].copy_from_slice(&w.to_le_bytes());
        }
        image
    }

    #[test]
    fn flat_loads_are_checked() {
        let ok = header(
            FLAG_ADDRESSES,
            [0x10_0010, 0x10_0000, 0x10_0040, 0x10_1000, 0x10_0020],
        );
        let load = Header::find(&ok).unwrap().flat_load(ok.len()).unwrap();
        assert_eq!(
            (load.file_start, load.file_end, load.entry),
            (0, 64, 0x10_0020)
        );
        let past_end = header(
            FLAG_ADDRESSES,
            [0x10_0010, 0x10_0000, 0x10_0080, 0, 0x10_0020],
        );
        assert!(Header::find(&past_end).unwrap().flat_load(64).is_err());
        let entry_out = header(FLAG_ADDRESSES, [0x10_0010, 0x10_0000, 0, 0, 0x20_0000]);
        assert!(Header::find(&entry_out).unwrap().flat_load(64).is_err());
        let no_fields = header(0, [0; 5]);
        assert!(Header::find(&no_fields).unwrap().addresses.is_none());
    }

    #[test]
    fn a_bad_checksum_or_misalignment_is_no_header() {
        let mut bad = header(0, [0; 5]);
        bad[24] ^= 1;
        assert_eq!(Header::find(&bad), Err(HeaderError::NotFound));
        let mut shifted = vec![0u8; 2];
        shifted.extend(header(0, [0; 5]));
        assert_eq!(Header::find(&shifted), Err(HeaderError::NotFound));
        assert_eq!(Header::find(&[]), Err(HeaderError::NotFound));
    }
}
