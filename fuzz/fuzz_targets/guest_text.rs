//! What the built-in guest's host side reads from outside: command lines
//! (parse, then format and parse again gives the same program), console
//! logs and mailbox pages (never panic; bounded results).
#![no_main]

use libfuzzer_sys::fuzz_target;
use lpar_mover::partition::guest::console::{self, Line};
use lpar_mover::partition::guest::mailbox::Mailbox;
use lpar_mover::partition::guest::{MAX_CPUS, format_cmdline, parse_cmdline};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    match selector % 3 {
        0 => {
            let Ok(text) = std::str::from_utf8(rest) else { return };
            if let Ok(spec) = parse_cmdline(text) {
                let again = parse_cmdline(&format_cmdline(&spec)).expect("a formatted command line parses");
                assert_eq!(again, spec);
            }
        }
        1 => {
            let text = String::from_utf8_lossy(rest);
            for line in console::parse_log(&text) {
                if let Line::Heartbeat(hb) = line {
                    let again = format!("hb cpu={} writes={} tsc={}", hb.cpu, hb.writes, hb.tsc);
                    assert_eq!(console::parse_line(&again), Line::Heartbeat(hb));
                }
            }
        }
        _ => {
            if let Some(mb) = Mailbox::decode(rest) {
                assert!(mb.cpus.len() <= MAX_CPUS);
            }
        }
    }
});
