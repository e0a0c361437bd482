//! Parsing and printing of byte sizes (`64MiB`, `4G`, `4096`) and of
//! transfer rates in network units (`1G` = `1Gbit/s`, `125MB/s`, `500MiB/s`;
//! see [`parse_rate`]).

/// Parses a byte size: a number with an optional binary suffix
/// (`K`/`KiB`, `M`/`MiB`, `G`/`GiB`, `T`/`TiB`; `B` alone is bytes).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, suffix) = t.split_at(split);
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("'{text}' is not a size: expected a number such as 64MiB or 4G"))?;
    let shift = match suffix.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        other => {
            return Err(format!(
                "'{text}': unknown size unit '{other}'; use K, M, G or T (binary, e.g. 64MiB)"
            ));
        }
    };
    number
        .checked_mul(1u64 << shift)
        .ok_or_else(|| format!("'{text}' is too large"))
}

/// The rate forms [`parse_rate`] accepts, as its errors, `--help`, the
/// README and `docs/protocol.md` name them.
pub const RATE_FORMS: &str = "a number and a unit: bits per second as 1G, 1Gbit/s, 10Gbps or \
     500Mbit (K, M, G, T = 10^3, 10^6, 10^9, 10^12 bits), or bytes per second as 125MB/s \
     (10^6 bytes) or 100MiB/s (2^20 bytes)";

/// The one-line form of [`RATE_FORMS`] for a `--bandwidth`-style option's
/// `--help`.
pub const RATE_HELP: &str = "Rate cap in network units, a unit required: 1G = 1Gbit/s = \
     1Gbps = 10^9 bits/s (K, M, G, T prefixes); bytes as 125MB/s (10^6) or 100MiB/s (2^20)";

/// Parses a transfer rate into bytes per second, in network units:
///
/// | form | meaning | example |
/// |---|---|---|
/// | `<n><p>`, `<n><p>bit`, `<n><p>bps` | `n` × 10^(3p) **bits**/s | `1G` = `1Gbit/s` = `1Gbps` = 125 000 000 bytes/s |
/// | `<n><p>B`, `<n><p>Bps` | `n` × 10^(3p) bytes/s | `125MB/s` = 125 000 000 bytes/s |
/// | `<n><p>iB` | `n` × 2^(10p) bytes/s | `100MiB/s` = 104 857 600 bytes/s |
///
/// `p` is one of `K`, `M`, `G`, `T` (any case; none with `bit`/`B`: plain
/// bits or bytes); `/s` may follow any form; `n` may have a fraction
/// (`1.5Gbit`). A bare number is refused: whether it meant bits or bytes
/// is exactly the confusion this parser exists to end. Every error names
/// the text and [`RATE_FORMS`].
pub fn parse_rate(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let refuse = |what: &str| format!("'{text}' {what}; give a rate as {RATE_FORMS}");
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    if number.is_empty() || number.starts_with('.') || number.ends_with('.') {
        return Err(refuse("is not a rate"));
    }
    let value: f64 = number.parse().map_err(|_| refuse("is not a rate"))?;
    let unit = unit.trim();
    if unit.is_empty() {
        return Err(refuse("has no unit"));
    }
    let unit = unit.strip_suffix("/s").unwrap_or(unit);
    // The unit is matched case-sensitively (`bit`/`bps` against `B`/`Bps`),
    // the prefix case-insensitively. A bare prefix is bits (`1G`).
    let (prefix, bytes_per_unit, binary) = if let Some(p) = unit
        .strip_suffix("bit")
        .or_else(|| unit.strip_suffix("bps"))
    {
        (p, 0.125, false)
    } else if let Some(p) = unit.strip_suffix("iB") {
        (p, 1.0, true)
    } else if let Some(p) = unit.strip_suffix("Bps").or_else(|| unit.strip_suffix('B')) {
        (p, 1.0, false)
    } else if unit.len() == 1 {
        (unit, 0.125, false)
    } else {
        return Err(refuse(&format!("has an unknown unit '{unit}'")));
    };
    let power = match prefix.to_ascii_lowercase().as_str() {
        "" if !binary => 0,
        "k" => 1,
        "m" => 2,
        "g" => 3,
        "t" => 4,
        _ => return Err(refuse(&format!("has an unknown unit '{unit}'"))),
    };
    let scale = if binary {
        (1u64 << (10 * power)) as f64
    } else {
        1000f64.powi(power)
    };
    let bytes_per_second = value * scale * bytes_per_unit;
    if bytes_per_second >= u64::MAX as f64 {
        return Err(refuse("is too large"));
    }
    if bytes_per_second < 1.0 {
        return Err(refuse("is below one byte per second"));
    }
    Ok(bytes_per_second.round() as u64)
}

/// Prints a byte count with the largest binary unit that keeps it readable.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else if value.fract() == 0.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// `at + by`, or a century later when that overflows: a deadline from
/// outside must never panic (the protocol edge bounds them too).
pub fn later(at: std::time::Instant, by: std::time::Duration) -> std::time::Instant {
    const FAR: std::time::Duration = std::time::Duration::from_secs(100 * 365 * 86_400);
    at.checked_add(by)
        .or_else(|| at.checked_add(FAR))
        .unwrap_or(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_suffixes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("4G"), Ok(4 << 30));
        assert_eq!(parse_size("1gib"), Ok(1 << 30));
        assert!(
            parse_size("12 parsecs")
                .unwrap_err()
                .contains("unknown size unit")
        );
        assert!(parse_size("MiB").is_err());
        assert!(
            parse_size("99999999999T")
                .unwrap_err()
                .contains("too large")
        );
    }

    #[test]
    fn sizes_print_readably() {
        assert_eq!(format_size(4 << 30), "4 GiB");
        assert_eq!(format_size(1536), "1.5 KiB");
        assert_eq!(format_size(12), "12 B");
    }

    #[test]
    fn rates_parse_in_network_units() {
        for (text, bytes) in [
            ("1G", 125_000_000),
            ("1g", 125_000_000),
            ("1G/s", 125_000_000),
            ("1Gbit/s", 125_000_000),
            ("1Gbps", 125_000_000),
            ("10Gbit", 1_250_000_000),
            ("500Mbit", 62_500_000),
            ("8000bit/s", 1000),
            ("125MB", 125_000_000),
            ("125MB/s", 125_000_000),
            ("100MBps", 100_000_000),
            ("1000B/s", 1000),
            ("500MiB/s", 500 << 20),
            ("128MiB", 128 << 20),
            ("1.5Gbit/s", 187_500_000),
            (" 2 T ", 250_000_000_000),
        ] {
            assert_eq!(parse_rate(text), Ok(bytes), "{text}");
        }
    }

    #[test]
    fn bad_rates_name_the_accepted_forms() {
        for (text, words) in [
            ("4096", "has no unit"),
            ("12 parsecs", "unknown unit 'parsecs'"),
            ("MB/s", "is not a rate"),
            ("1.2.3MB", "is not a rate"),
            ("5iB", "unknown unit"),
            ("5Mb", "unknown unit"),
            ("0G", "below one byte"),
            ("4bit", "below one byte"),
            ("99999999999999Tbit", "too large"),
        ] {
            let e = parse_rate(text).unwrap_err();
            assert!(e.contains(words), "{text}: {e}");
            assert!(e.contains(&format!("'{text}'")), "{text}: {e}");
            assert!(e.contains(RATE_FORMS), "{text}: {e}");
        }
    }

    proptest::proptest! {
        #[test]
        fn rates_scale_by_their_unit(n in 1u64..1_000_000, unit in 0usize..12, per_second in 0usize..2) {
            const UNITS: [(&str, u64); 12] = [
                ("K", 125), ("B", 1), ("KB", 1_000), ("MB", 1_000_000), ("GB", 1_000_000_000),
                ("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30),
                ("kbit", 125), ("Mbps", 125_000), ("Gbit", 125_000_000), ("M", 125_000),
            ];
            let (name, scale) = UNITS[unit];
            let suffix = ["", "/s"][per_second];
            proptest::prop_assert_eq!(parse_rate(&format!("{n}{name}{suffix}")), Ok(n * scale));
        }

        #[test]
        fn any_text_parses_or_explains(text in "\\PC{0,16}") {
            if let Err(e) = parse_rate(&text) {
                let quoted = format!("'{}'", text);
                proptest::prop_assert!(e.contains(&quoted), "{}", e);
                proptest::prop_assert!(e.contains(RATE_FORMS), "{}", e);
            }
        }
    }
}
