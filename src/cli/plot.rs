//! A hand-written SVG of a migration's rounds: the dirty bytes still to
//! send after each round (log scale, top panel) and the bandwidth each
//! round reached (bottom panel), one point per round.
//!
//! ```text
//! ┌ title ───────────────────────────────┐
//! │ remaining dirty bytes (log)  ●─●─●   │  circle class="dirty"
//! │ bandwidth MB/s               ●─●─●   │  circle class="bandwidth"
//! └ round 0 … n ─────────────────────────┘
//! ```

use crate::partition::PAGE_SIZE;
use std::fmt::Write;

/// One round of a migration as the plot shows it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RoundPoint {
    pub round: u32,
    /// Dirty bytes left to send when the round ended: the next round's
    /// pages, or after the last round the pages copied while suspended.
    pub remaining_bytes: u64,
    /// Wire bytes per second during the round.
    pub bandwidth: f64,
}

/// The points of a source report (`engine::report::MigrationReport` as JSON).
pub fn points(report: &serde_json::Value) -> Vec<RoundPoint> {
    let rounds = report["rounds"]
        .as_array()
        .map_or(&[][..], |r| r.as_slice());
    let final_pages = report["suspension"]["final_pages"].as_u64().unwrap_or(0);
    rounds
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let next_pages = rounds
                .get(i + 1)
                .map_or(final_pages, |n| n["pages"].as_u64().unwrap_or(0));
            RoundPoint {
                round: r["round"].as_u64().unwrap_or(i as u64) as u32,
                remaining_bytes: next_pages * PAGE_SIZE as u64,
                bandwidth: r["bandwidth"].as_f64().unwrap_or(0.0),
            }
        })
        .collect()
}

const WIDTH: f64 = 720.0;
const LEFT: f64 = 90.0;
const RIGHT: f64 = 20.0;
const PANEL: f64 = 170.0;
const TOP: [f64; 2] = [50.0, 280.0];

/// Escapes text for an SVG text node or attribute.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A power of ten of bytes as a label: `10 MB`, `1 GB`.
fn decimal_bytes(bytes: f64) -> String {
    match bytes {
        b if b >= 1e9 => format!("{:.0} GB", b / 1e9),
        b if b >= 1e6 => format!("{:.0} MB", b / 1e6),
        b if b >= 1e3 => format!("{:.0} kB", b / 1e3),
        b => format!("{b:.0} B"),
    }
}

/// Draws `points` under `title`.
pub fn svg(title: &str, points: &[RoundPoint]) -> String {
    let height = TOP[1] + PANEL + 50.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">
<rect width="{WIDTH}" height="{height}" fill="white"/>
<text x="{}" y="24" text-anchor="middle" font-size="14">{}</text>"#,
        WIDTH / 2.0,
        escape(title)
    );
    let last = points.len().saturating_sub(1).max(1) as f64;
    let x = |i: usize| LEFT + (WIDTH - LEFT - RIGHT) * i as f64 / last;
    // Remaining dirty bytes: log10, from one page up to the largest value.
    let max_bytes = points
        .iter()
        .map(|p| p.remaining_bytes)
        .max()
        .unwrap_or(0)
        .max(PAGE_SIZE as u64 * 10) as f64;
    let (lo, hi) = ((PAGE_SIZE as f64).log10(), max_bytes.log10().ceil());
    let y_dirty = |b: u64| {
        let v = (b.max(1) as f64).log10().max(lo);
        TOP[0] + PANEL * (1.0 - (v - lo) / (hi - lo))
    };
    let max_bw = points
        .iter()
        .map(|p| p.bandwidth)
        .fold(0.0, f64::max)
        .max(1.0);
    let y_bw = |b: f64| TOP[1] + PANEL * (1.0 - b.max(0.0) / max_bw);
    panel(
        &mut s,
        TOP[0],
        "remaining dirty bytes",
        &decimal_bytes(10f64.powf(hi)),
        "4 KiB",
    );
    panel(
        &mut s,
        TOP[1],
        "bandwidth",
        &format!("{:.0} MB/s", max_bw / 1e6),
        "0",
    );
    series(
        &mut s,
        "dirty",
        "#c0392b",
        points
            .iter()
            .enumerate()
            .map(|(i, p)| (x(i), y_dirty(p.remaining_bytes))),
    );
    series(
        &mut s,
        "bandwidth",
        "#2471a3",
        points
            .iter()
            .enumerate()
            .map(|(i, p)| (x(i), y_bw(p.bandwidth))),
    );
    for (i, p) in points.iter().enumerate() {
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{}</text>"#,
            x(i),
            TOP[1] + PANEL + 18.0,
            p.round
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">round</text>
</svg>"#,
        WIDTH / 2.0,
        TOP[1] + PANEL + 40.0
    );
    s
}

/// A panel's frame, label and the values at its top and bottom.
fn panel(s: &mut String, top: f64, label: &str, high: &str, low: &str) {
    let inner = WIDTH - LEFT - RIGHT;
    let _ = writeln!(
        s,
        r#"<rect x="{LEFT}" y="{top}" width="{inner}" height="{PANEL}" fill="none" stroke="grey"/>
<text x="{LEFT}" y="{}">{}</text>
<text x="{}" y="{}" text-anchor="end">{}</text>
<text x="{}" y="{}" text-anchor="end">{}</text>"#,
        top - 6.0,
        escape(label),
        LEFT - 6.0,
        top + 12.0,
        escape(high),
        LEFT - 6.0,
        top + PANEL,
        escape(low)
    );
}

/// One line through the points, and a circle of `class` on each.
fn series(s: &mut String, class: &str, colour: &str, at: impl Iterator<Item = (f64, f64)>) {
    let at: Vec<(f64, f64)> = at.collect();
    let line: Vec<String> = at.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
    let _ = writeln!(
        s,
        r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
        line.join(" ")
    );
    for (x, y) in at {
        let _ = writeln!(
            s,
            r#"<circle class="{class}" cx="{x:.1}" cy="{y:.1}" r="3" fill="{colour}"/>"#
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks that `xml` is well-formed enough for any SVG reader: every
    /// element closes in order, attributes are quoted, text has no raw `<`
    /// or stray `&`. Returns the start tags, in order.
    fn well_formed(xml: &str) -> Result<Vec<String>, String> {
        let mut open: Vec<String> = Vec::new();
        let mut tags = Vec::new();
        let mut rest = xml;
        while let Some(lt) = rest.find('<') {
            check_text(&rest[..lt])?;
            let gt = rest[lt..].find('>').ok_or("unclosed tag")? + lt;
            let tag = &rest[lt + 1..gt];
            rest = &rest[gt + 1..];
            if tag.starts_with('?') {
                if !tag.ends_with('?') {
                    return Err(format!("bad declaration <{tag}>"));
                }
            } else if let Some(name) = tag.strip_prefix('/') {
                match open.pop() {
                    Some(o) if o == name => {}
                    other => return Err(format!("</{name}> closes {other:?}")),
                }
            } else {
                let self_closing = tag.ends_with('/');
                let body = tag.trim_end_matches('/');
                let name = body.split_whitespace().next().ok_or("empty tag")?;
                check_attributes(&body[name.len()..])?;
                tags.push(body.to_string());
                if !self_closing {
                    open.push(name.to_string());
                }
            }
            if open.is_empty() && !tags.is_empty() && !rest.trim().is_empty() {
                return Err("content after the root element".into());
            }
        }
        check_text(rest)?;
        if let Some(o) = open.pop() {
            return Err(format!("<{o}> never closed"));
        }
        Ok(tags)
    }

    fn check_text(text: &str) -> Result<(), String> {
        for (i, _) in text.match_indices('&') {
            let entity = &text[i..];
            if !["&amp;", "&lt;", "&gt;", "&quot;"]
                .iter()
                .any(|e| entity.starts_with(e))
            {
                return Err(format!("stray & in {text:?}"));
            }
        }
        Ok(())
    }

    fn check_attributes(mut attrs: &str) -> Result<(), String> {
        loop {
            attrs = attrs.trim_start();
            if attrs.is_empty() {
                return Ok(());
            }
            let eq = attrs
                .find('=')
                .ok_or(format!("attribute without value: {attrs}"))?;
            let name = &attrs[..eq];
            if name.is_empty() || name.contains(char::is_whitespace) {
                return Err(format!("bad attribute name {name:?}"));
            }
            let value = attrs[eq + 1..]
                .strip_prefix('"')
                .ok_or(format!("unquoted attribute {name}"))?;
            let end = value.find('"').ok_or(format!("unterminated {name}"))?;
            check_text(&value[..end])?;
            attrs = &value[end + 1..];
        }
    }

    fn report() -> serde_json::Value {
        serde_json::json!({
            "rounds": [
                {"round": 0, "pages": 65536, "bandwidth": 2.0e9},
                {"round": 1, "pages": 4000, "bandwidth": 1.5e9},
                {"round": 2, "pages": 300, "bandwidth": 0.9e9},
            ],
            "suspension": {"final_pages": 12},
        })
    }

    #[test]
    fn points_carry_what_each_round_left_behind() {
        let p = points(&report());
        assert_eq!(p.len(), 3);
        assert_eq!(p[0].remaining_bytes, 4000 * PAGE_SIZE as u64);
        assert_eq!(p[1].remaining_bytes, 300 * PAGE_SIZE as u64);
        assert_eq!(p[2].remaining_bytes, 12 * PAGE_SIZE as u64);
        assert_eq!(p[1].bandwidth, 1.5e9);
    }

    #[test]
    fn svg_is_well_formed_with_one_point_per_round() {
        let svg = svg("4 GiB <hot:256MiB> & friends", &points(&report()));
        let tags = well_formed(&svg).unwrap_or_else(|e| panic!("{e}\n{svg}"));
        assert!(tags[0].starts_with("svg xmlns"), "{tags:?}");
        let count = |class: &str| {
            tags.iter()
                .filter(|t| t.starts_with(&format!("circle class=\"{class}\"")))
                .count()
        };
        assert_eq!(count("dirty"), 3);
        assert_eq!(count("bandwidth"), 3);
        assert!(svg.contains("4 GiB &lt;hot:256MiB&gt; &amp; friends"));
        // Lower remaining bytes sit lower in the panel (larger y).
        let cy: Vec<f64> = tags
            .iter()
            .filter(|t| t.starts_with("circle class=\"dirty\""))
            .map(|t| {
                let v = &t[t.find("cy=\"").unwrap() + 4..];
                v[..v.find('"').unwrap()].parse().unwrap()
            })
            .collect();
        assert!(cy[0] < cy[1] && cy[1] < cy[2], "{cy:?}");
    }

    #[test]
    fn the_checker_rejects_broken_svg() {
        assert!(well_formed("<svg><g></svg>").is_err());
        assert!(well_formed("<svg a=1/>").is_err());
        assert!(well_formed("<svg>a & b</svg>").is_err());
        assert!(well_formed("<svg/><svg/>").is_err());
    }

    #[test]
    fn a_single_round_and_no_rounds_still_draw() {
        let one = [RoundPoint {
            round: 0,
            remaining_bytes: 0,
            bandwidth: 0.0,
        }];
        for p in [&one[..], &[]] {
            let svg = svg("t", p);
            well_formed(&svg).unwrap();
            assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
        }
    }
}
