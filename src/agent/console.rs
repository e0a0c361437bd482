//! What is backend-specific about an LPAR as an operator sees it: its
//! serial console (`lpar-console`) and the image it boots (`lpar-create
//! --kernel/--cmdline`).
//!
//! A `kvm` LPAR's COM1 output is appended by its VMM to a log file
//! ([`Partition::console_log`](crate::partition::Partition::console_log)); `lpar-console` reads it from a byte
//! offset, at most [`CONSOLE_CHUNK`] bytes a reply, so a client follows it
//! by asking again from `next_offset`. A `sim` LPAR has no console: its
//! guest is a program whose state is its registers, and `lpar-show`
//! reports what it did.
//!
//! | refusal | phase, cause | when |
//! |---|---|---|
//! | no console | `0x0020`, `0x30` | the LPAR's backend emulates no serial port (`sim`) |
//! | kernel on sim | `0x0030`, `0x31` | `kernel` or `cmdline` given to a `sim` agent |
//! | kernel unreadable | `0x0030`, `0x32` | `kernel` is not an absolute path to a readable file |

use super::inventory::Inventory;
use crate::control::CONSOLE_CHUNK;
use crate::control::reply::Console;
use crate::emg::{Emg, Module, phase};
use crate::partition::LparConfig;
use std::io::{Read, Seek, SeekFrom};

/// `lpar-console`: the console bytes of `name` from `offset` on.
pub fn read(inv: &Inventory, host: &str, name: &str, offset: u64) -> Result<Console, Emg> {
    let lpar = inv.lpar(name)?;
    let Some(path) = lpar.console_log() else {
        return Err(Emg::new(
            Module::Management,
            phase::INFORMATION,
            0x30,
            format!(
                "LPAR '{name}' on host {host} has no console: the {} backend emulates no serial \
                 port (its guest is a program; lpar show reports its writes).",
                inv.backend().kind()
            ),
            "Use moverctl lpar show for what the guest did; serial consoles exist on agents \
             started with moverd serve --backend kvm.",
        ));
    };
    let unreadable = |e: std::io::Error| {
        Emg::new(
            Module::Management,
            phase::INFORMATION,
            0x33,
            format!(
                "cannot read the console of LPAR '{name}' ({}): {e}",
                path.display()
            ),
            "Check the agent's state directory; the LPAR's files may have been removed.",
        )
    };
    let mut file = match std::fs::File::open(&path) {
        Ok(f) => f,
        // Nothing printed yet.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Console {
                name: name.to_string(),
                offset,
                next_offset: offset,
                size: 0,
                text: String::new(),
            });
        }
        Err(e) => return Err(unreadable(e)),
    };
    let size = file.metadata().map_err(unreadable)?.len();
    let start = offset.min(size);
    file.seek(SeekFrom::Start(start)).map_err(unreadable)?;
    let mut bytes = Vec::new();
    file.take(CONSOLE_CHUNK)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    Ok(Console {
        name: name.to_string(),
        offset: start,
        next_offset: start + bytes.len() as u64,
        size,
        text: String::from_utf8_lossy(&bytes).into_owned(),
    })
}

/// Refuses a `kernel` or `cmdline` that `backend` cannot boot, before
/// anything is defined.
pub fn check_image(config: &LparConfig, backend: &str, host: &str) -> Result<(), Emg> {
    if config.kernel.is_none() && config.cmdline.is_none() {
        return Ok(());
    }
    if backend != "kvm" {
        return Err(Emg::new(
            Module::Management,
            phase::DEFINE,
            0x31,
            format!(
                "LPAR '{}': a kernel image and command line need a kvm agent; host {host} runs \
                 the {backend} backend, whose guests are programs (--program).",
                config.name
            ),
            "Drop --kernel and --cmdline and give --program, or create the LPAR on an agent \
             started with moverd serve --backend kvm.",
        ));
    }
    let Some(kernel) = &config.kernel else {
        return Ok(());
    };
    let path = std::path::Path::new(kernel);
    let readable = path.is_absolute()
        && std::fs::File::open(path).is_ok_and(|f| f.metadata().is_ok_and(|m| m.is_file()));
    if !readable {
        return Err(Emg::new(
            Module::Management,
            phase::DEFINE,
            0x32,
            format!(
                "LPAR '{}': the kernel {} is not a readable file on host {host}.",
                config.name,
                kernel.escape_debug()
            ),
            "Give the absolute path of a multiboot v1 image (ELF, or flat with the header's \
             address fields) on the agent's host.",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kernel_is_refused_on_sim_and_must_be_a_readable_absolute_file_on_kvm() {
        let mut c = LparConfig::default_lpar();
        check_image(&c, "sim", "h").unwrap();
        c.cmdline = Some("idle".into());
        let e = check_image(&c, "sim", "h").unwrap_err();
        assert_eq!((e.phase, e.cause), (phase::DEFINE, 0x31));
        assert!(e.message.contains("runs the sim backend"), "{e}");
        check_image(&c, "kvm", "h").unwrap();
        c.kernel = Some("relative.elf".into());
        assert_eq!(check_image(&c, "kvm", "h").unwrap_err().cause, 0x32);
        c.kernel = Some("/nonexistent/k.elf".into());
        assert_eq!(check_image(&c, "kvm", "h").unwrap_err().cause, 0x32);
        let f = tempfile::NamedTempFile::new().unwrap();
        c.kernel = Some(f.path().display().to_string());
        check_image(&c, "kvm", "h").unwrap();
        assert_eq!(check_image(&c, "sim", "h").unwrap_err().cause, 0x31);
    }
}
