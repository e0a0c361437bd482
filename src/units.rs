//! Parsing and printing of byte sizes (`64MiB`, `4G`, `4096`) and of
//! transfer rates (`125MB/s`, `10Gbit`, `500MiB/s`).

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

/// Parses a transfer rate into bytes per second. Rates follow the network
/// convention: `KB`, `MB`, `GB`, `TB` (and bare `K`, `M`, `G`, `T`) are
/// decimal (10^3…10^12 bytes), `KiB`…`TiB` binary, `kbit`…`Tbit` decimal
/// bits; `/s` may follow, or `bps`/`Bps` stand for bits/bytes per second
/// (`125MB/s`, `1Gbit/s`, `10Gbps`).
/// A plain number is bytes per second. Fractions are allowed (`1.5Gbit`).
pub fn parse_rate(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let bad_number =
        || format!("'{text}' is not a rate: expected a number such as 125MB/s or 10Gbit");
    if number.is_empty() || number.starts_with('.') || number.ends_with('.') {
        return Err(bad_number());
    }
    let value: f64 = number.parse().map_err(|_| bad_number())?;
    let unit = unit.trim();
    let unit = if let Some(p) = unit.strip_suffix("bps") {
        format!("{p}bit")
    } else if let Some(p) = unit.strip_suffix("Bps") {
        format!("{p}B")
    } else {
        unit.strip_suffix("/s").unwrap_or(unit).to_string()
    };
    // The unit is matched case-sensitively (`bit` against `B`), the prefix
    // case-insensitively.
    let unit = unit.as_str();
    let (prefix, per_unit) = if let Some(p) = unit.strip_suffix("bit") {
        (p, 0.125)
    } else if let Some(p) = unit.strip_suffix("iB") {
        (p, -1.0)
    } else if let Some(p) = unit.strip_suffix('B') {
        (p, 1.0)
    } else {
        (unit, 1.0)
    };
    let power = match prefix.to_ascii_lowercase().as_str() {
        "" => 0,
        "k" => 1,
        "m" => 2,
        "g" => 3,
        "t" => 4,
        _ => {
            return Err(format!(
                "'{text}': unknown rate unit '{unit}'; use MB/s, MiB/s or Gbit/s (e.g. 125MB/s, 10Gbit)"
            ));
        }
    };
    let bytes_per_second = if per_unit < 0.0 {
        if power == 0 {
            return Err(format!("'{text}': 'iB' needs a prefix such as MiB"));
        }
        value * (1u64 << (10 * power)) as f64
    } else {
        value * 1000f64.powi(power) * per_unit
    };
    if bytes_per_second >= u64::MAX as f64 {
        return Err(format!("'{text}' is too large"));
    }
    if bytes_per_second < 1.0 {
        return Err(format!("'{text}' is below one byte per second"));
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
        assert_eq!(parse_rate("125MB"), Ok(125_000_000));
        assert_eq!(parse_rate("125MB/s"), Ok(125_000_000));
        assert_eq!(parse_rate("1Gbit/s"), Ok(125_000_000));
        assert_eq!(parse_rate("10Gbit"), Ok(1_250_000_000));
        assert_eq!(parse_rate("10Gbps"), Ok(1_250_000_000));
        assert_eq!(parse_rate("100MBps"), Ok(100_000_000));
        assert_eq!(parse_rate("500MiB/s"), Ok(500 << 20));
        assert_eq!(parse_rate("1.5Gbit/s"), Ok(187_500_000));
        assert_eq!(parse_rate("4096"), Ok(4096));
        assert_eq!(parse_rate("2G"), Ok(2_000_000_000));
        assert!(
            parse_rate("12 parsecs")
                .unwrap_err()
                .contains("unknown rate unit")
        );
        assert!(parse_rate("MB/s").is_err());
        assert!(parse_rate("1.2.3MB").is_err());
        assert!(parse_rate("0").unwrap_err().contains("below one byte"));
        assert!(
            parse_rate("99999999999999Tbit")
                .unwrap_err()
                .contains("too large")
        );
    }

    proptest::proptest! {
        #[test]
        fn rates_scale_by_their_unit(n in 1u64..1_000_000, unit in 0usize..12, per_second in 0usize..2) {
            const UNITS: [(&str, u64); 12] = [
                ("", 1), ("B", 1), ("KB", 1_000), ("MB", 1_000_000), ("GB", 1_000_000_000),
                ("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30),
                ("kbit", 125), ("Mbit", 125_000), ("Gbit", 125_000_000), ("M", 1_000_000),
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
            }
        }
    }
}
