//! URL/path lists and JSONL records: never panic, and `parse_list` yields at most one source per
//! non-comment line. Lines that name an existing path are skipped (a directory would expand to
//! many sources, and the result would depend on the machine's files rather than the input).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use summarize::input::{jsonl_source, looks_like_list, parse_list, Source};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // The same line splitting and comment rule parse_list documents; drop lines naming real paths.
    let mut kept = String::new();
    let mut entries = 0usize;
    for raw in text.lines() {
        let line = raw.split(" #").next().unwrap_or("");
        let line = line.trim().trim_start_matches('\u{feff}');
        if !line.is_empty() && Path::new(line).exists() {
            continue;
        }
        if !line.is_empty() && !line.starts_with('#') {
            entries += 1;
        }
        kept.push_str(raw);
        kept.push('\n');
    }
    let mut out: Vec<Source> = Vec::new();
    parse_list(&kept, "fuzz", &mut out);
    assert!(
        out.len() <= entries,
        "parse_list made {} sources from {entries} entry lines",
        out.len()
    );
    // Also: every non-comment line is *some* record (bad ones become Invalid sources).
    assert_eq!(out.len(), entries, "parse_list dropped a line");
    let _ = looks_like_list(&kept);
    let base = Path::new("/nonexistent-fuzz-base");
    for (i, line) in text.lines().enumerate() {
        let _ = jsonl_source(line, &format!("fuzz:{}", i + 1), base);
    }
});
