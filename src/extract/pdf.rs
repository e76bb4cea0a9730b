//! PDF text: the text layer page by page (the library is chosen by `make bench-pdf`), then what
//! a reader would call the text: running headers, footers and page numbers that repeat on most
//! pages dropped, words hyphenated at line ends joined, lines joined into paragraphs.
//! Encrypted PDFs and PDFs without a text layer (scans) are `unsupported_content` that says so.

use crate::error::{DocError, ErrorClass};
use crate::extract::Extracted;

/// Text and metadata of a PDF.
pub fn extract(bytes: &[u8], source: &str) -> Result<Extracted, DocError> {
    let unsupported =
        |why: String| DocError::new(ErrorClass::UnsupportedContent, format!("{source}: {why}"));
    let mut doc = pdf_extract::Document::load_mem(bytes)
        .map_err(|e| unsupported(format!("not a readable PDF ({e})")))?;
    // Many PDFs are encrypted with an empty password (permissions only): those are read.
    if doc.is_encrypted() && doc.decrypt("").is_err() {
        return Err(unsupported(
            "the PDF is encrypted and needs a password; save an unencrypted copy to summarize it"
                .into(),
        ));
    }
    // One pass: fonts are read once per document (vendor/pdf-extract), and one unreadable
    // page does not sink the others.
    let mut texts = Vec::new();
    pdf_extract::output_doc_by_page(&doc, &mut |n, page| match page {
        Ok(text) => texts.push(text),
        Err(e) => {
            tracing::debug!(source, page = n, error = %e, "a page of the PDF could not be read");
            texts.push(String::new());
        }
    });
    let text = clean_pages(&texts);
    if crate::text::word_count(&text) == 0 {
        return Err(unsupported(format!(
            "no text layer (scanned?): {} pages without text; OCR it first (for example with ocrmypdf)",
            texts.len()
        )));
    }
    let meta = info(&doc);
    Ok(Extracted {
        title: meta.title,
        author: meta.author,
        date: meta.date,
        text,
        ..Extracted::default()
    })
}

/// The document information dictionary's title, author and date.
#[derive(Debug, Default, PartialEq)]
struct Info {
    title: Option<String>,
    author: Option<String>,
    date: Option<String>,
}

fn info(doc: &pdf_extract::Document) -> Info {
    let dict = doc.trailer.get(b"Info").ok().and_then(|o| match o {
        pdf_extract::Object::Reference(id) => doc.get_dictionary(*id).ok(),
        pdf_extract::Object::Dictionary(d) => Some(d),
        _ => None,
    });
    let field = |key: &[u8]| -> Option<String> {
        let value = match dict?.get(key).ok()? {
            pdf_extract::Object::Reference(id) => doc.get_object(*id).ok()?,
            other => other,
        };
        let pdf_extract::Object::String(bytes, _) = value else {
            return None;
        };
        let text = text_string(bytes);
        let text = text.trim();
        (!text.is_empty()).then(|| text.to_string())
    };
    Info {
        title: field(b"Title"),
        author: field(b"Author"),
        date: field(b"CreationDate").map(|d| pdf_date(&d)),
    }
}

/// A PDF text string: UTF-16BE with a BOM, else PDFDocEncoding (Latin-1 near enough).
fn text_string(bytes: &[u8]) -> String {
    if let Some(utf16) = bytes.strip_prefix(&[0xfe, 0xff]) {
        let units: Vec<u16> = utf16
            .chunks(2)
            .map(|p| u16::from_be_bytes([p[0], *p.get(1).unwrap_or(&0)]))
            .collect();
        return String::from_utf16_lossy(&units);
    }
    bytes.iter().map(|&b| b as char).collect()
}

/// `D:20231114221320+01'00'` → `2023-11-14T22:13:20+01:00` (the parts that are there).
fn pdf_date(d: &str) -> String {
    let d = d.trim().trim_start_matches("D:");
    let digits: String = d.chars().take_while(char::is_ascii_digit).collect();
    let part = |a: usize, b: usize| digits.get(a..b);
    let mut out = match (part(0, 4), part(4, 6), part(6, 8)) {
        (Some(y), Some(m), Some(day)) => format!("{y}-{m}-{day}"),
        (Some(y), Some(m), None) => format!("{y}-{m}"),
        (Some(y), None, None) => y.to_string(),
        _ => return d.to_string(),
    };
    if let (Some(h), Some(min)) = (part(8, 10), part(10, 12)) {
        out.push_str(&format!("T{h}:{min}:{}", part(12, 14).unwrap_or("00")));
        let zone = &d[digits.len()..];
        if zone.starts_with('Z') {
            out.push('Z');
        } else if zone.starts_with(['+', '-']) {
            let z: String = zone.chars().filter(|c| c.is_ascii_digit()).collect();
            if z.len() >= 4 {
                out.push_str(&format!("{}{}:{}", &zone[..1], &z[..2], &z[2..4]));
            }
        }
    }
    out
}

/// A line's shape for spotting furniture: digits as `#`, spaces squeezed, lowercased.
fn shape(line: &str) -> String {
    line.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_digit() { '#' } else { c })
        .collect()
}

/// A line that is only a page number: `7`, `- 7 -`, `vii`, `Page 7`, `Page 7 of 12`, `7/12`.
fn page_number(line: &str) -> bool {
    let l = line
        .trim()
        .trim_matches(|c: char| c == '-' || c == '–' || c.is_whitespace());
    let l = l.to_lowercase();
    let l = l.strip_prefix("page").map_or(l.as_str(), str::trim);
    if l.is_empty() {
        return false;
    }
    let numeric = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
    let roman = !l.is_empty() && l.len() <= 6 && l.chars().all(|c| "ivxlc".contains(c));
    numeric(l)
        || roman
        || l.split_once(" of ")
            .is_some_and(|(a, b)| numeric(a.trim()) && numeric(b.trim()))
        || l.split_once('/')
            .is_some_and(|(a, b)| numeric(a.trim()) && numeric(b.trim()))
}

/// Lines at the top and at the bottom of a page that are checked for furniture: up to 3, and
/// never more than a quarter of a short page's lines.
const EDGE: usize = 3;

fn edge_lines(n: usize) -> usize {
    EDGE.min(n / 4).max(1)
}

/// The pages' text as paragraphs, furniture dropped.
pub fn clean_pages(pages: &[String]) -> String {
    let lines: Vec<Vec<&str>> = pages
        .iter()
        .map(|p| p.lines().map(str::trim_end).collect())
        .collect();
    // Shapes seen at the top or bottom of pages, counted once per page.
    let mut counts: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for page in &lines {
        let nonblank: Vec<&&str> = page.iter().filter(|l| !l.trim().is_empty()).collect();
        let mut seen = std::collections::HashSet::new();
        let n = nonblank.len();
        let edge = edge_lines(n);
        for (i, l) in nonblank.iter().enumerate() {
            if i < edge || i + edge >= n {
                let s = shape(l);
                if seen.insert(s.clone()) {
                    *counts.entry(s).or_default() += 1;
                }
            }
        }
    }
    let repeated = |l: &str| {
        pages.len() >= 3
            && counts
                .get(&shape(l))
                .is_some_and(|&c| c * 2 >= pages.len() && c >= 3)
    };
    let mut body: Vec<&str> = Vec::new();
    for page in &lines {
        let nonblank: Vec<usize> = (0..page.len())
            .filter(|&i| !page[i].trim().is_empty())
            .collect();
        let n = nonblank.len();
        let width = edge_lines(n);
        let edge: std::collections::HashSet<usize> = nonblank
            .iter()
            .enumerate()
            .filter(|(k, _)| *k < width || k + width >= n)
            .map(|(_, &i)| i)
            .collect();
        for (i, l) in page.iter().enumerate() {
            if edge.contains(&i) && (repeated(l) || page_number(l)) {
                continue;
            }
            body.push(l);
        }
        body.push(""); // a page ends a paragraph only if the text says so (see below)
    }
    paragraphs(&body)
}

/// Lines into paragraphs: a blank line, or a short line that ends a sentence, ends one; a word
/// hyphenated across lines (`exam-` / `ple`) is joined.
fn paragraphs(lines: &[&str]) -> String {
    let widths: Vec<usize> = lines
        .iter()
        .map(|l| l.trim().chars().count())
        .filter(|&w| w > 0)
        .collect();
    let typical = {
        let mut w = widths.clone();
        w.sort_unstable();
        w.get(w.len() * 3 / 4).copied().unwrap_or(0)
    };
    let mut out = String::new();
    let mut current = String::new();
    let mut blank_run = false;
    for raw in lines {
        let line = raw.trim();
        if line.is_empty() {
            blank_run = true;
            continue;
        }
        let ends_sentence = |s: &str| {
            s.trim_end_matches(['"', '\'', ')', '”', '’'])
                .ends_with(['.', '!', '?', ':'])
        };
        if blank_run && !current.is_empty() && ends_sentence(&current) {
            flush(&mut out, &mut current);
        }
        blank_run = false;
        if current.is_empty() {
            current.push_str(line);
        } else if current.ends_with('-')
            && current[..current.len() - 1]
                .chars()
                .last()
                .is_some_and(char::is_alphabetic)
            && line.chars().next().is_some_and(char::is_lowercase)
        {
            current.pop();
            current.push_str(line);
        } else {
            current.push(' ');
            current.push_str(line);
        }
        let short = line.chars().count() * 10 < typical * 7;
        if short && ends_sentence(line) {
            flush(&mut out, &mut current);
        }
    }
    flush(&mut out, &mut current);
    out
}

fn flush(out: &mut String, current: &mut String) {
    if current.trim().is_empty() {
        return;
    }
    if !out.is_empty() {
        out.push_str("\n\n");
    }
    out.push_str(current.trim());
    current.clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hand-written content-stream reader (vendor/pdf-extract/src/fastcontent.rs) against
    /// lopdf's, on 50,000 streams of operations drawn from the grammar's tricky operands and
    /// separators, with now and then a token or byte that stops a reader (a fixed seed): where
    /// it reads to the end it must give lopdf's operations, and where it stops, lopdf's first
    /// ones.
    #[test]
    fn content_reader_reads_like_lopdf() {
        const OPERANDS: &[&str] = &[
            "0",
            "-.5",
            "5.",
            "+3",
            "-0",
            "007",
            "16777217.5",
            "0.00000000001",
            "123456789.25",
            "-16777216.0",
            "1.5",
            "/F1",
            "/A#20B",
            "/",
            "/a#4",
            "(a)",
            "(a\\)b)",
            "((nested) (twice))",
            "(\\101\\7\\777)",
            "(line\\\ncontinued)",
            "(cr\rlf\r\n)",
            "(\\n\\r\\t\\b\\f\\q)",
            "<48 65 6c>",
            "<4>",
            "<>",
            "< 4 1 >",
            "[1 0 R true false null (s) <41> /N [2] 1 0R % note\n 3]",
            "[]",
            "[ ]",
            "<</A 1 /B [2 3] /C <</D (e)>> /E 5 0 R>>",
            "<<>>",
            "<</A/B/C[1]>>",
            "null",
            "true",
            "false",
            "nullx",
            "truefalse",
        ];
        const OPERATORS: &[&str] = &[
            "Tj", "TJ", "BT", "ET", "Td", "T*", "'", "\"", "Tf", "BDC", "EMC", "d0", "q", "Q",
            "cm", "re", "f*", "ID", "EI", "Do",
        ];
        // Each stops a reader somewhere (lopdf cuts the page short, or reads on where the
        // hand-written reader leaves it: an inline image).
        const ODD: &[&str] = &[
            "1.2.3",
            "99999999999999999999",
            "-",
            ".",
            "+.",
            "/#",
            "/x#zz",
            "(unterminated",
            "(\\",
            "<zz>",
            "[",
            "]",
            "<<",
            ">>",
            "<</A>>",
            "{",
            "}",
            "%c",
            "%\r",
            "\0",
            "\x0C",
            "BI /W 1 /H 1 /BPC 1 /IM true ID \x00 EI",
            "BI /W 1 ID x EI",
            "\u{e9}",
        ];
        const SEPARATORS: &[&str] = &[" ", " ", " ", "\n", "\r", "\r\n", "\t", "  ", "", "\n% c\n"];
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = move |n: usize| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n as u64) as usize
        };
        let (mut whole, mut stopped, mut operations) = (0, 0, 0);
        for _ in 0..50_000 {
            let mut stream = Vec::new();
            for _ in 0..1 + next(12) {
                for _ in 0..next(4) {
                    let token = match next(60) {
                        0 => ODD[next(ODD.len())],
                        _ => OPERANDS[next(OPERANDS.len())],
                    };
                    stream.extend_from_slice(token.as_bytes());
                    stream.extend_from_slice(SEPARATORS[next(SEPARATORS.len())].as_bytes());
                }
                if next(200) == 0 {
                    stream.push(next(256) as u8);
                }
                stream.extend_from_slice(OPERATORS[next(OPERATORS.len())].as_bytes());
                stream.extend_from_slice(SEPARATORS[next(SEPARATORS.len())].as_bytes());
            }
            match pdf_extract::compare_content_readers(&stream) {
                Ok((n, to_the_end)) => {
                    operations += n;
                    if to_the_end {
                        whole += 1;
                    } else {
                        stopped += 1;
                    }
                }
                Err(e) => panic!("{e}\nstream: {:?}", String::from_utf8_lossy(&stream)),
            }
        }
        eprintln!("{whole} streams read to the end, {stopped} stopped, {operations} operations");
        // Both paths are exercised, not only the one where the reader gives up.
        assert!(
            whole > 12_000 && stopped > 5_000,
            "{whole} read to the end, {stopped} stopped"
        );
        assert!(operations > 120_000, "{operations} operations");
    }

    #[test]
    fn running_headers_page_numbers_and_hyphens() {
        let page = |n: usize, body: &str| {
            format!("Daily Report Volume 7 Running Header    {n}\n{body}\n{n}\n")
        };
        let pages = vec![
            page(1, "The council met on Monday to discuss the budget. It voted to exam-\nine the harbour plans in detail\nnext month."),
            page(2, "Residents welcomed the decision.\n\nA second paragraph starts here and goes on\nfor a while."),
            page(3, "The end of the story."),
        ];
        let text = clean_pages(&pages);
        assert!(!text.contains("Running Header"), "{text}");
        assert!(!text.lines().any(|l| l.trim() == "2"), "{text}");
        assert!(text.contains("examine the harbour plans"), "{text}");
        assert!(
            text.contains("\n\nA second paragraph starts here and goes on for a while."),
            "{text}"
        );
    }

    #[test]
    fn page_numbers_in_their_usual_shapes() {
        for l in ["7", "- 7 -", "vii", "Page 7", "Page 7 of 12", "7/12"] {
            assert!(page_number(l), "{l}");
        }
        for l in ["7 days later", "The end.", "I"] {
            assert!(!page_number(l) || l == "I", "{l}");
        }
    }

    #[test]
    fn text_strings_and_dates() {
        assert_eq!(text_string(&[0xfe, 0xff, 0, b'J', 0, b'o']), "Jo");
        assert_eq!(text_string(b"caf\xe9"), "café");
        assert_eq!(
            pdf_date("D:20231114221320+01'00'"),
            "2023-11-14T22:13:20+01:00"
        );
        assert_eq!(pdf_date("D:20231114221320Z"), "2023-11-14T22:13:20Z");
        assert_eq!(pdf_date("D:2023"), "2023");
    }
}
