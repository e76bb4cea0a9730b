//! Arbitrary bytes → decode (as HTML, Markdown and plain text) → extract, with and without a
//! fixed `--select`/`--exclude` pair. Errors are fine; panics, hangs and OOMs are not.
#![no_main]

use libfuzzer_sys::fuzz_target;
use summarize::config::ExtractConfig;
use summarize::decode::{decode, DocKind};
use summarize::extract::{extract, Extracted};

fuzz_target!(|data: &[u8]| {
    // trafilatura and html5ever are slow on huge inputs; keep executions short.
    if data.len() > 64 * 1024 {
        return;
    }
    let plain = ExtractConfig::default();
    let selected = ExtractConfig {
        select: Some("article, main, div.content > p".to_string()),
        exclude: Some("nav, aside, .promo, footer".to_string()),
        ..ExtractConfig::default()
    };
    for kind in [DocKind::Html, DocKind::Markdown, DocKind::Text] {
        let (text, _enc) = decode(data, None, kind);
        if let Ok(out) = extract(&text, kind, &plain, "fuzz") {
            check(&out);
        }
        if kind == DocKind::Html {
            if let Ok(out) = extract(&text, kind, &selected, "fuzz") {
                check(&out);
            }
        }
    }
});

/// What `extract` promises: its text, title and author are sanitized (no controls but `\n`/`\t`).
fn check(out: &Extracted) {
    let fields = [Some(&out.text), out.title.as_ref(), out.author.as_ref()];
    for c in fields.into_iter().flatten().flat_map(|s| s.chars()) {
        assert!(
            !(c.is_control() && c != '\n' && c != '\t'),
            "control character {c:?} in extracted text"
        );
    }
}
