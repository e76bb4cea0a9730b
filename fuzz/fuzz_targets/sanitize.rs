//! `clean_text` output never holds ESC, a C0 control other than `\n`/`\t`, or a bidi
//! embedding/override/isolate (U+202A..U+202E, U+2066..U+2069).
#![no_main]

use libfuzzer_sys::fuzz_target;
use summarize::sanitize::clean_text;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let out = clean_text(s);
    for c in out.chars() {
        let bad = c == '\u{1b}'
            || (c < '\u{20}' && c != '\n' && c != '\t')
            || c == '\u{7f}'
            || ('\u{80}'..='\u{9f}').contains(&c)
            || ('\u{202a}'..='\u{202e}').contains(&c)
            || ('\u{2066}'..='\u{2069}').contains(&c);
        assert!(!bad, "clean_text left {c:?} in {out:?} (input {s:?})");
    }
    // Idempotent: cleaning clean text changes nothing.
    assert_eq!(clean_text(&out), out, "clean_text is not idempotent on {s:?}");
});
