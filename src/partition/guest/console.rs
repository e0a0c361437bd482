//! The guest's COM1 lines, and a parser for them (the console is outside
//! input: a guest image may print anything).
//!
//! ```text
//! lpar-guest boot cpus=<n> program=<program>
//! lpar-guest info tsc_hz=<hz> memory_end=<bytes> region_start=<bytes> region_bytes=<bytes>
//! hb cpu=<i> writes=<n> tsc=<tsc>          at least every second of guest TSC time, per vCPU
//! lpar-guest error: <what is wrong>        the program could not run; the guest halted
//! lpar-guest warning: <what>
//! lpar-guest halted                        every vCPU obeyed the power button
//! ```
//!
//! Numbers are decimal; `writes` is that vCPU's own count.

/// One console line, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Line {
    /// `lpar-guest boot`: the guest started.
    Boot {
        /// vCPUs the guest brought up.
        cpus: u32,
        /// The program it runs.
        program: String,
    },
    /// `lpar-guest info`: what the guest measured at boot.
    Info {
        /// TSC frequency in Hz.
        tsc_hz: u64,
        /// End of RAM, bytes.
        memory_end: u64,
        /// Work area start, bytes.
        region_start: u64,
        /// Work area size, bytes.
        region_bytes: u64,
    },
    /// A heartbeat line.
    Heartbeat(Heartbeat),
    /// `lpar-guest error`: the program failed.
    Error(String),
    /// `lpar-guest warning`.
    Warning(String),
    /// `lpar-guest halted`: every vCPU obeyed the power button.
    Halted,
    /// Anything else (a boot loader's or another kernel's output).
    Other(String),
}

/// A heartbeat: vCPU `cpu` had done `writes` writes when its TSC read `tsc`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Heartbeat {
    /// The vCPU.
    pub cpu: u32,
    /// Its writes so far.
    pub writes: u64,
    /// Its TSC then.
    pub tsc: u64,
}

/// The value of `key=` in space-separated `fields`, in order.
fn fields<'a, const N: usize>(text: &'a str, keys: [&str; N]) -> Option<[&'a str; N]> {
    let mut words = text.split(' ');
    let mut out = [""; N];
    for (slot, key) in out.iter_mut().zip(keys) {
        *slot = words.next()?.strip_prefix(key)?.strip_prefix('=')?;
    }
    words.next().is_none().then_some(out)
}

fn numbers<const N: usize>(text: &str, keys: [&str; N]) -> Option<[u64; N]> {
    let values = fields(text, keys)?;
    let mut out = [0u64; N];
    for (slot, v) in out.iter_mut().zip(values) {
        if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *slot = v.parse().ok()?;
    }
    Some(out)
}

/// Decodes one line (without its newline; a trailing `\r` is ignored).
pub fn parse_line(line: &str) -> Line {
    let text = line.strip_suffix('\r').unwrap_or(line);
    let other = || Line::Other(text.to_string());
    if let Some(rest) = text.strip_prefix("hb ") {
        return match numbers(rest, ["cpu", "writes", "tsc"]) {
            Some([cpu, writes, tsc]) => match u32::try_from(cpu) {
                Ok(cpu) => Line::Heartbeat(Heartbeat { cpu, writes, tsc }),
                Err(_) => other(),
            },
            None => other(),
        };
    }
    let Some(rest) = text.strip_prefix("lpar-guest ") else {
        return other();
    };
    if rest == "halted" {
        return Line::Halted;
    }
    if let Some(msg) = rest.strip_prefix("error: ") {
        return Line::Error(msg.to_string());
    }
    if let Some(msg) = rest.strip_prefix("warning: ") {
        return Line::Warning(msg.to_string());
    }
    if let Some(boot) = rest.strip_prefix("boot ") {
        return match fields(boot, ["cpus", "program"]) {
            Some([cpus, program])
                if !cpus.is_empty() && cpus.bytes().all(|b| b.is_ascii_digit()) =>
            {
                match cpus.parse() {
                    Ok(cpus) => Line::Boot {
                        cpus,
                        program: program.to_string(),
                    },
                    Err(_) => other(),
                }
            }
            _ => other(),
        };
    }
    if let Some(info) = rest.strip_prefix("info ")
        && let Some([tsc_hz, memory_end, region_start, region_bytes]) = numbers(
            info,
            ["tsc_hz", "memory_end", "region_start", "region_bytes"],
        )
    {
        return Line::Info {
            tsc_hz,
            memory_end,
            region_start,
            region_bytes,
        };
    }
    other()
}

/// Every line of a console log, decoded (a last line without its newline
/// is still being written and is left out).
pub fn parse_log(log: &str) -> Vec<Line> {
    let complete = match log.rfind('\n') {
        Some(end) => &log[..end],
        None => return Vec::new(),
    };
    complete.split('\n').map(parse_line).collect()
}

/// The heartbeats in a console log, in order.
pub fn heartbeats(log: &str) -> Vec<Heartbeat> {
    parse_log(log)
        .into_iter()
        .filter_map(|line| match line {
            Line::Heartbeat(hb) => Some(hb),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_of_line_parses() {
        assert_eq!(
            parse_line("lpar-guest boot cpus=2 program=hot:4MiB,rate=10"),
            Line::Boot {
                cpus: 2,
                program: "hot:4MiB,rate=10".into()
            }
        );
        assert_eq!(
            parse_line("hb cpu=1 writes=42 tsc=123456789\r"),
            Line::Heartbeat(Heartbeat {
                cpu: 1,
                writes: 42,
                tsc: 123456789
            })
        );
        assert_eq!(
            parse_line("lpar-guest info tsc_hz=3 memory_end=4 region_start=5 region_bytes=6"),
            Line::Info {
                tsc_hz: 3,
                memory_end: 4,
                region_start: 5,
                region_bytes: 6
            }
        );
        assert_eq!(
            parse_line("lpar-guest error: unknown program 'x'"),
            Line::Error("unknown program 'x'".into())
        );
        assert_eq!(parse_line("lpar-guest halted"), Line::Halted);
    }

    #[test]
    fn malformed_lines_are_other() {
        for bad in [
            "hb cpu=1 writes=42",
            "hb cpu=1 writes=42 tsc=1 extra=2",
            "hb cpu=x writes=42 tsc=1",
            "hb cpu=+1 writes=42 tsc=1",
            "hb cpu=99999999999 writes=42 tsc=1",
            "hb cpu=1 writes=99999999999999999999999 tsc=1",
            "hb writes=1 cpu=1 tsc=1",
            "lpar-guest boot cpus= program=idle",
            "SeaBIOS (version 1.16)",
        ] {
            assert!(matches!(parse_line(bad), Line::Other(_)), "{bad}");
        }
    }

    #[test]
    fn a_partial_last_line_is_left_out() {
        let log = "lpar-guest boot cpus=1 program=idle\nhb cpu=0 writes=0 tsc=5\nhb cpu=0 wr";
        assert_eq!(parse_log(log).len(), 2);
        assert_eq!(
            heartbeats(log),
            vec![Heartbeat {
                cpu: 0,
                writes: 0,
                tsc: 5
            }]
        );
        assert!(parse_log("no newline yet").is_empty());
    }
}
