//! Scraped text is hostile: it may carry terminal escape sequences, control characters and bidi
//! overrides that rewrite what a person sees in a terminal or a spreadsheet. This module strips
//! them from titles, text and summaries before anything is printed or written. Pure functions.

/// Removes ANSI escape sequences, C0/C1 control characters (keeping `\n` and `\t`) and Unicode
/// bidi embedding/override/isolate characters; CRLF and lone CR become `\n`.
pub fn clean_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => skip_escape(&mut chars),
            '\r' => {
                if chars.peek() != Some(&'\n') {
                    out.push('\n');
                }
            }
            '\n' | '\t' => out.push(c),
            c if c.is_control() => {}
            '\u{202a}'..='\u{202e}'
            | '\u{2066}'..='\u{2069}'
            | '\u{200e}'
            | '\u{200f}'
            | '\u{061c}' => {}
            c => out.push(c),
        }
    }
    out
}

/// Skips the rest of an escape sequence whose ESC was just read (CSI, OSC, or a two-byte form).
fn skip_escape(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    match chars.next() {
        Some('[') => {
            // CSI: parameters and intermediates, then one final byte in @..~.
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        }
        Some(']') | Some('P') | Some('_') | Some('^') => {
            // OSC/DCS/APC/PM: up to BEL or ST (ESC \).
            while let Some(c) = chars.next() {
                if c == '\u{7}' {
                    break;
                }
                if c == '\u{1b}' && chars.peek() == Some(&'\\') {
                    chars.next();
                    break;
                }
            }
        }
        _ => {}
    }
}

/// One line for stderr: control characters out, newlines folded into spaces.
pub fn one_line(s: &str) -> String {
    clean_text(s)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_escapes_controls_and_bidi() {
        let hostile =
            "Title\u{1b}[2J\u{1b}[31mred\u{1b}[0m \u{1b}]0;pwned\u{7}ok\u{202e}evil\u{0}\r\nnext";
        assert_eq!(clean_text(hostile), "Titlered okevil\nnext");
    }

    #[test]
    fn keeps_ordinary_text() {
        let s = "Grüße, 世界 — tabs\tand\nnewlines";
        assert_eq!(clean_text(s), s);
        assert_eq!(one_line("a\n b\t c"), "a b c");
    }
}
