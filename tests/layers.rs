//! The layer rule, checked on the source: no module uses one of a higher
//! layer, and no two folders use each other (directly or round a circle).
//!
//! The layers are the rows of the table in `src/lib.rs`'s doc, lowest
//! first (`//! | [`partition`] | … |`); `src/bin/` sits above them all.
//! Every `crate::<module>…` path in the code of `src/**/*.rs` (comment
//! lines excluded, `use` groups such as `crate::{a::X, b::{c::Y}}`
//! expanded) is resolved to the layer and the folder it names:
//!
//! * a path into a layer after the file's own is an **upward import**,
//!   reported with its file and line;
//! * a path from one folder into another that is neither its ancestor nor
//!   its descendant (`agent/migration` → `agent/validation`) is an edge
//!   between folders, and a circle of such edges is reported with one
//!   file:line per edge.
//!
//! Modules outside the table (`emg`, `units`, …) stand beside the layers
//! and are not ranked.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// One `crate::` path found in a file.
#[derive(Debug)]
struct Use {
    file: String,
    line: usize,
    segments: Vec<String>,
}

/// The layers named in the table of `lib_rs`'s doc, lowest first.
fn layer_table(lib_rs: &str) -> Vec<String> {
    lib_rs
        .lines()
        .filter_map(|l| l.trim().strip_prefix("//! | [`"))
        .filter_map(|rest| rest.split_once("`]").map(|(name, _)| name.to_string()))
        .collect()
}

/// Every `.rs` file under `dir`, as (path relative to `root`, text).
fn rust_files(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(root, &path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            out.push((rel, std::fs::read_to_string(&path).unwrap()));
        }
    }
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The paths in `text` from `at` on (just after a `::`): one per leaf of a
/// `{…}` group, each as its segments (`prefix` first) and the offset of
/// its last segment.
fn paths_at(
    text: &[char],
    mut at: usize,
    prefix: Vec<String>,
    out: &mut Vec<(Vec<String>, usize)>,
) {
    let mut segments = prefix;
    let mut leaf = at;
    loop {
        while at < text.len() && text[at].is_whitespace() {
            at += 1;
        }
        if at < text.len() && text[at] == '{' {
            // Split the group at its top-level commas.
            let mut depth = 0;
            let mut start = at + 1;
            for i in at..text.len() {
                match text[i] {
                    '{' => depth += 1,
                    '}' | ',' if depth == 1 => {
                        paths_at(text, start, segments.clone(), out);
                        start = i + 1;
                        if text[i] == '}' {
                            return;
                        }
                    }
                    '}' => depth -= 1,
                    _ => {}
                }
            }
            return;
        }
        let end = (at..text.len())
            .find(|&i| !is_ident(text[i]))
            .unwrap_or(text.len());
        if end == at {
            break;
        }
        segments.push(text[at..end].iter().collect());
        leaf = at;
        if text.get(end) == Some(&':') && text.get(end + 1) == Some(&':') {
            at = end + 2;
        } else {
            break;
        }
    }
    segments.retain(|s| s != "self");
    if !segments.is_empty() {
        out.push((segments, leaf));
    }
}

/// Every `crate::` path in the code of `text` (comment lines skipped).
fn crate_paths(file: &str, text: &str) -> Vec<Use> {
    let code: String = text
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("//") {
                ""
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let chars: Vec<char> = code.chars().collect();
    let mut uses = Vec::new();
    let needle: Vec<char> = "crate::".chars().collect();
    let line_of = |at: usize| 1 + chars[..at].iter().filter(|&&c| c == '\n').count();
    for i in 0..chars.len() {
        let starts = chars[i..].starts_with(&needle);
        if starts && (i == 0 || !is_ident(chars[i - 1])) {
            let mut found = Vec::new();
            paths_at(&chars, i + needle.len(), Vec::new(), &mut found);
            uses.extend(found.into_iter().map(|(segments, at)| Use {
                file: file.to_string(),
                line: line_of(at),
                segments,
            }));
        }
    }
    uses
}

/// The folder of `src/` that a path names: the longest run of its
/// segments that is a folder.
fn folder_of(segments: &[String], folders: &BTreeSet<String>) -> Option<String> {
    (1..=segments.len())
        .rev()
        .map(|k| segments[..k].join("/"))
        .find(|f| folders.contains(f))
}

/// The folder a file sits in, relative to `src/` ("" for the top).
fn own_folder(file: &str) -> String {
    Path::new(file)
        .parent()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn related(a: &str, b: &str) -> bool {
    a.is_empty() || b.is_empty() || a == b || {
        let (short, long) = if a.len() < b.len() { (a, b) } else { (b, a) };
        long.starts_with(short) && long[short.len()..].starts_with('/')
    }
}

/// Checks `files` (paths relative to `src/`, texts) against `layers`
/// (lowest first); every violation as one line.
fn violations(layers: &[String], files: &[(String, String)]) -> Vec<String> {
    let rank = |name: &str| layers.iter().position(|l| l == name);
    let folders: BTreeSet<String> = files
        .iter()
        .flat_map(|(f, _)| {
            Path::new(f)
                .ancestors()
                .skip(1)
                .map(|p| p.to_string_lossy().into_owned())
        })
        .filter(|f| !f.is_empty())
        .collect();
    let mut found = Vec::new();
    // folder → folder → the first use that makes the edge.
    let mut edges: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (file, text) in files {
        let top = file.split('/').next().unwrap_or("");
        let own_rank = if top == "bin" {
            Some(layers.len())
        } else {
            rank(top)
        };
        let here = own_folder(file);
        for u in crate_paths(file, text) {
            let at = format!(
                "src/{}:{}: crate::{}",
                u.file,
                u.line,
                u.segments.join("::")
            );
            if let (Some(own), Some(target)) = (own_rank, rank(&u.segments[0]))
                && target > own
            {
                found.push(format!(
                    "{at}: upward import: {} (layer {own}) uses {} (layer {target})",
                    if top == "bin" { "bin" } else { top },
                    u.segments[0]
                ));
            }
            if let Some(there) = folder_of(&u.segments, &folders)
                && !related(&here, &there)
            {
                edges
                    .entry(here.clone())
                    .or_default()
                    .entry(there)
                    .or_insert(at);
            }
        }
    }
    found.extend(circles(&edges));
    found
}

/// Every circle in the folder graph, once, as its edges' first uses.
fn circles(edges: &BTreeMap<String, BTreeMap<String, String>>) -> Vec<String> {
    let mut found = BTreeSet::new();
    for start in edges.keys() {
        // Depth-first from `start`, looking for a way back to it.
        let mut stack = vec![(start.clone(), vec![start.clone()])];
        let mut seen = BTreeSet::new();
        while let Some((node, trail)) = stack.pop() {
            for next in edges.get(&node).into_iter().flat_map(|m| m.keys()) {
                if next == start {
                    let mut ring = trail.clone();
                    let min = ring.iter().min().unwrap().clone();
                    let turn = ring.iter().position(|f| *f == min).unwrap();
                    ring.rotate_left(turn);
                    found.insert(ring);
                } else if seen.insert(next.clone()) {
                    let mut t = trail.clone();
                    t.push(next.clone());
                    stack.push((next.clone(), t));
                }
            }
        }
    }
    found
        .into_iter()
        .map(|ring| {
            let hops: Vec<String> = ring
                .iter()
                .zip(ring.iter().cycle().skip(1))
                .map(|(a, b)| format!("  {a} → {b}: {}", edges[a][b]))
                .collect();
            format!(
                "circle between folders {}:\n{}",
                ring.join(" → "),
                hops.join("\n")
            )
        })
        .collect()
}

#[test]
fn no_module_uses_a_higher_layer_and_no_folders_use_each_other() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let layers = layer_table(&std::fs::read_to_string(src.join("lib.rs")).unwrap());
    assert_eq!(
        layers,
        [
            "state",
            "partition",
            "wire",
            "transport",
            "engine",
            "control",
            "agent",
            "cli"
        ],
        "the layer table in src/lib.rs"
    );
    let mut files = Vec::new();
    rust_files(&src, &src, &mut files);
    assert!(files.len() > 50, "read {} files", files.len());
    let found = violations(&layers, &files);
    assert!(found.is_empty(), "{}", found.join("\n"));
}

fn fake_tree(files: &[(&str, &str)]) -> Vec<String> {
    let layers: Vec<String> = ["state", "control", "agent"].map(String::from).to_vec();
    let files: Vec<(String, String)> = files
        .iter()
        .map(|(f, t)| (f.to_string(), t.to_string()))
        .collect();
    violations(&layers, &files)
}

#[test]
fn an_upward_import_is_reported_with_its_file_and_line() {
    let found = fake_tree(&[
        (
            "control/mod.rs",
            "//! crate::agent in a comment is no import\nuse crate::state::X;\n",
        ),
        (
            "control/messages.rs",
            "use std::fmt;\nuse crate::{\n    state::Y,\n    agent::validation::{Mode, HostFacts},\n};\n",
        ),
        ("agent/validation/mod.rs", "use crate::control::Z;\n"),
        (
            "state/mod.rs",
            "fn f() -> crate::control::Reply { todo!() }\n",
        ),
    ]);
    let upward: Vec<&String> = found.iter().filter(|f| f.contains("upward")).collect();
    assert_eq!(upward.len(), 3, "{found:#?}");
    // Each upward import between layers is also a circle of folders here.
    assert_eq!(found.len(), 5, "{found:#?}");
    assert!(
        found[0].starts_with("src/control/messages.rs:4: crate::agent::validation::Mode"),
        "{found:#?}"
    );
    assert!(
        found[0].contains("control (layer 1) uses agent (layer 2)"),
        "{found:#?}"
    );
    assert!(
        found[2].starts_with("src/state/mod.rs:1: crate::control::Reply"),
        "{found:#?}"
    );
}

#[test]
fn a_circle_between_sibling_folders_is_reported() {
    let found = fake_tree(&[
        ("agent/mod.rs", "use crate::agent::migration::A;\n"),
        (
            "agent/migration/mod.rs",
            "use crate::agent::{inventory::I, validation::V};\n",
        ),
        (
            "agent/validation/mod.rs",
            "\n\nuse crate::agent::migration::source::S;\n",
        ),
        ("agent/inventory.rs", ""),
    ]);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].contains("agent/migration → agent/validation"),
        "{found:#?}"
    );
    assert!(
        found[0].contains("src/agent/validation/mod.rs:3"),
        "{found:#?}"
    );
    // A folder and its parent may use each other.
    assert!(
        fake_tree(&[
            ("agent/mod.rs", "use crate::agent::migration::A;\n"),
            ("agent/migration/mod.rs", "use crate::agent::I;\n"),
        ])
        .is_empty()
    );
}
