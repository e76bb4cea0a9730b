//! Bytes to text: which kind of document a body is (HTML, Markdown, plain text, or not text at
//! all) and which charset it is in (BOM, then the declared charset, then an HTML `<meta>` tag,
//! then UTF-8 validity, then statistical sniffing with chardetng). Pure functions, no I/O.

use encoding_rs::Encoding;

use crate::error::{DocError, ErrorClass};

/// The kinds of document the extractor understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocKind {
    Html,
    Markdown,
    Text,
    /// Bytes, not text: read by `extract::pdf`.
    Pdf,
}

/// The media type without parameters, lowercased, from a `Content-Type` value.
pub fn mime_essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// The `charset=` parameter of a `Content-Type` value.
pub fn charset_param(content_type: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| v.trim().trim_matches(['"', '\'']).to_string())
    })
}

/// Whether a declared media type is one we can summarize. `None` means nothing was declared.
pub fn supported_mime(essence: &str) -> bool {
    essence.is_empty()
        || essence.starts_with("text/")
        || matches!(
            essence,
            "application/xhtml+xml"
                | "application/xml"
                | "application/markdown"
                // Feeds are fetched to say what they are (see expand.rs), not summarized.
                | "application/pdf"
                | "application/rss+xml"
                | "application/atom+xml"
                | "application/rdf+xml"
        )
}

/// Decides the document kind from the declared type, the name (URL path or file name) and the body.
pub fn doc_kind(essence: &str, name: &str, body: &[u8]) -> DocKind {
    let name = name.to_ascii_lowercase();
    let name = name.split(['?', '#']).next().unwrap_or("");
    if essence == "text/html" || essence == "application/xhtml+xml" {
        return DocKind::Html;
    }
    if essence.contains("markdown") || name.ends_with(".md") || name.ends_with(".markdown") {
        return DocKind::Markdown;
    }
    if name.ends_with(".html")
        || name.ends_with(".htm")
        || name.ends_with(".xhtml")
        || sniff_html(body)
    {
        return DocKind::Html;
    }
    DocKind::Text
}

fn sniff_html(body: &[u8]) -> bool {
    let head = &body[..body.len().min(512)];
    let head = String::from_utf8_lossy(head)
        .trim_start_matches('\u{feff}')
        .trim_start()
        .to_ascii_lowercase();
    [
        "<!doctype html",
        "<html",
        "<head",
        "<body",
        "<!--",
        "<meta",
        "<title",
    ]
    .iter()
    .any(|p| head.starts_with(p))
}

/// Rejects binary data that claims to be text (a disguised executable, an image served as HTML).
pub fn check_text_like(body: &[u8], source: &str) -> Result<(), DocError> {
    let head = &body[..body.len().min(8192)];
    if Encoding::for_bom(head).is_some_and(|(enc, _)| enc != encoding_rs::UTF_8) {
        return Ok(()); // UTF-16 legitimately holds NUL bytes.
    }
    let controls = head
        .iter()
        .filter(|&&b| b == 0 || (b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r' | 0x0c | 0x1b)))
        .count();
    if head.contains(&0) || controls * 20 > head.len().max(1) {
        return Err(DocError::new(
            ErrorClass::UnsupportedContent,
            format!("{source}: binary data, not a text document"),
        ));
    }
    Ok(())
}

/// Decodes a body to text. `declared` is the charset from the `Content-Type` header, if any.
pub fn decode(body: &[u8], declared: Option<&str>, kind: DocKind) -> (String, &'static Encoding) {
    if let Some((enc, bom_len)) = Encoding::for_bom(body) {
        let (text, _) = enc.decode_without_bom_handling(&body[bom_len..]);
        return (text.into_owned(), enc);
    }
    let enc = declared
        .and_then(|l| Encoding::for_label(l.as_bytes()))
        .or_else(|| {
            (kind == DocKind::Html)
                .then(|| meta_charset(body))
                .flatten()
        })
        .unwrap_or_else(|| sniff(body));
    // A page declaring UTF-16 in ASCII-compatible bytes is lying; WHATWG says read it as UTF-8.
    let enc = if enc == encoding_rs::UTF_16LE || enc == encoding_rs::UTF_16BE {
        encoding_rs::UTF_8
    } else {
        enc
    };
    let (text, had_errors) = enc.decode_without_bom_handling(body);
    if had_errors {
        // The declared charset is wrong (a Latin-1 page served as UTF-8 is the classic):
        // trust the bytes instead.
        let guessed = sniff(body);
        if guessed != enc {
            let (text, _) = guessed.decode_without_bom_handling(body);
            return (text.into_owned(), guessed);
        }
    }
    (text.into_owned(), enc)
}

fn sniff(body: &[u8]) -> &'static Encoding {
    if std::str::from_utf8(body).is_ok() {
        return encoding_rs::UTF_8;
    }
    let mut detector = chardetng::EncodingDetector::new(chardetng::Iso2022JpDetection::Deny);
    detector.feed(body, true);
    detector.guess(None, chardetng::Utf8Detection::Allow)
}

/// The charset an HTML document declares in its first 1024 bytes, as the HTML spec's prescan does.
fn meta_charset(body: &[u8]) -> Option<&'static Encoding> {
    let head = &body[..body.len().min(1024)];
    let lower: Vec<u8> = head.iter().map(|b| b.to_ascii_lowercase()).collect();
    let mut from = 0;
    while let Some(pos) = find(&lower[from..], b"<meta") {
        let start = from + pos;
        let end = lower[start..]
            .iter()
            .position(|&b| b == b'>')
            .map_or(lower.len(), |e| start + e);
        let tag = &lower[start..end];
        if let Some(cs) = find(tag, b"charset") {
            let rest = &tag[cs + 7..];
            let rest = rest
                .iter()
                .skip_while(|b| b.is_ascii_whitespace())
                .copied()
                .collect::<Vec<_>>();
            if let Some(rest) = rest.strip_prefix(b"=") {
                let label: Vec<u8> = rest
                    .iter()
                    .skip_while(|b| b.is_ascii_whitespace() || **b == b'"' || **b == b'\'')
                    .take_while(|b| {
                        !(b.is_ascii_whitespace()
                            || matches!(**b, b'"' | b'\'' | b';' | b'/' | b'>'))
                    })
                    .copied()
                    .collect();
                if let Some(enc) = Encoding::for_label(&label) {
                    return Some(enc);
                }
            }
        }
        from = end.max(start + 5);
        if from >= lower.len() {
            break;
        }
    }
    None
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_1252_from_header_meta_and_sniffing() {
        let body = b"<html><body><p>caf\xe9 \x93quoted\x94</p></body></html>";
        let (t, _) = decode(body, Some("windows-1252"), DocKind::Html);
        assert!(t.contains("café “quoted”"), "{t}");
        let with_meta = b"<html><head><meta http-equiv=\"Content-Type\" content=\"text/html; charset=windows-1252\"></head><body>caf\xe9</body></html>";
        let (t, enc) = decode(with_meta, None, DocKind::Html);
        assert_eq!(enc, encoding_rs::WINDOWS_1252);
        assert!(t.contains("café"));
        let (t, _) = decode(b"<meta charset='iso-8859-1'>na\xefve", None, DocKind::Html);
        assert!(t.contains("naïve"));
    }

    #[test]
    fn a_wrong_declared_charset_falls_back_to_sniffing() {
        let body = "<p>Le caf\u{e9} o\u{f9} l'on d\u{e9}jeune, pr\u{e8}s de la gare, est ferm\u{e9} le lundi.</p>";
        let (latin1, _, _) = encoding_rs::WINDOWS_1252.encode(body);
        let (t, enc) = decode(&latin1, Some("utf-8"), DocKind::Html);
        assert_eq!(enc, encoding_rs::WINDOWS_1252);
        assert!(t.contains("café où"), "{t}");
    }

    #[test]
    fn utf8_and_bom() {
        let (t, enc) = decode("héllo".as_bytes(), None, DocKind::Text);
        assert_eq!((t.as_str(), enc), ("héllo", encoding_rs::UTF_8));
        let (t, _) = decode(b"\xef\xbb\xbfhi", Some("windows-1252"), DocKind::Text);
        assert_eq!(t, "hi");
    }

    #[test]
    fn content_type_parsing() {
        assert_eq!(mime_essence("Text/HTML; charset=UTF-8"), "text/html");
        assert_eq!(
            charset_param("text/html; charset=\"ISO-8859-1\"").as_deref(),
            Some("ISO-8859-1")
        );
        assert!(supported_mime("application/pdf"));
        assert!(!supported_mime("image/png"));
        assert!(supported_mime("text/markdown"));
    }

    #[test]
    fn binary_is_rejected() {
        assert!(check_text_like(b"\x7fELF\x02\x01\x01\x00\x00\x00", "x").is_err());
        assert!(check_text_like(b"<html>fine</html>", "x").is_ok());
    }

    #[test]
    fn kind_detection() {
        assert_eq!(doc_kind("", "notes.md", b"# hi"), DocKind::Markdown);
        assert_eq!(
            doc_kind("text/plain", "x", b"<!DOCTYPE html><html>"),
            DocKind::Html
        );
        assert_eq!(doc_kind("text/plain", "x", b"plain words"), DocKind::Text);
    }
}
