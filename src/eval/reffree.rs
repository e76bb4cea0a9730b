//! Reference-free checks of one (source, summary) pair: how extractive and how compressed the
//! summary is (Grusky et al. 2018, "Newsroom"), how many of its bigrams are new, which of its
//! numbers the source never mentions, and whether both are in the same language.
//!
//! Pure functions over two strings. This module must not judge quality or combine the checks
//! into a score: each value is reported as is, and deciding what counts as a bad summary is the
//! caller's business. It must not do I/O or call models.

use std::collections::{HashMap, HashSet};

/// Reference-free measurements of a summary against its source.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct RefFree {
    /// Source words per summary word; 0 when the summary has no words.
    pub compression: f64,
    /// Share of summary words inside extractive fragments (Newsroom coverage), in [0, 1].
    pub coverage: f64,
    /// Mean squared fragment length per summary word (Newsroom density): about the length of
    /// the copied spans, so 1 is word-level reuse and 20 is sentence copying.
    pub density: f64,
    /// Share of summary bigram occurrences that never occur in the source, in [0, 1].
    pub novel_bigrams: f64,
    /// Numbers in the summary, as written there, whose value appears nowhere in the source.
    pub unsupported_numbers: Vec<String>,
    /// ISO 639-1 code of the source language (639-3 where there is none); None when unsure.
    pub source_lang: Option<String>,
    /// Same for the summary.
    pub summary_lang: Option<String>,
    /// Whether both languages were detected and agree; None when either is unknown.
    pub lang_match: Option<bool>,
}

/// Runs every reference-free check on `summary` against `source`.
pub fn check(source: &str, summary: &str) -> RefFree {
    let mut vocab = HashMap::new();
    let source_words = word_ids(source, &mut vocab);
    let summary_words = word_ids(summary, &mut vocab);
    let (coverage, density) = coverage_density(&source_words, &summary_words, vocab.len());
    let source_lang = detect_language(source);
    let summary_lang = detect_language(summary);
    let lang_match = match (&source_lang, &summary_lang) {
        (Some(a), Some(b)) => Some(a == b),
        _ => None,
    };
    RefFree {
        compression: if summary_words.is_empty() {
            0.0
        } else {
            source_words.len() as f64 / summary_words.len() as f64
        },
        coverage,
        density,
        novel_bigrams: novel_bigrams(&source_words, &summary_words),
        unsupported_numbers: unsupported_numbers(source, summary),
        source_lang,
        summary_lang,
        lang_match,
    }
}

/// Lowercased words (maximal runs of Unicode letters and digits) as ids shared by both texts,
/// so fragment matching compares integers.
fn word_ids(text: &str, vocab: &mut HashMap<String, u32>) -> Vec<u32> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| {
            let next = vocab.len() as u32;
            *vocab.entry(w.to_lowercase()).or_insert(next)
        })
        .collect()
}

/// Newsroom's greedy fragment matching (`Fragments._match`): at each summary position take the
/// longest source match (the first one on ties), skip past it, or move one word on when there
/// is none. Like the original, after a match the source scan resumes at the match's end, so
/// matches starting inside it are not tried.
fn coverage_density(source: &[u32], summary: &[u32], vocab_len: usize) -> (f64, f64) {
    if summary.is_empty() {
        return (0.0, 0.0);
    }
    let mut positions = vec![Vec::new(); vocab_len];
    for (i, &w) in source.iter().enumerate() {
        positions[w as usize].push(i);
    }
    let (mut covered, mut squared) = (0usize, 0usize);
    let mut start = 0;
    while start < summary.len() {
        let mut best = 0;
        let mut resume = 0;
        for &at in &positions[summary[start] as usize] {
            if at < resume {
                continue;
            }
            let length = summary[start..]
                .iter()
                .zip(&source[at..])
                .take_while(|(a, b)| a == b)
                .count();
            best = best.max(length);
            resume = at + length;
        }
        if best == 0 {
            start += 1;
        } else {
            covered += best;
            squared += best * best;
            start += best;
        }
    }
    let n = summary.len() as f64;
    (covered as f64 / n, squared as f64 / n)
}

fn novel_bigrams(source: &[u32], summary: &[u32]) -> f64 {
    if summary.len() < 2 {
        return 0.0;
    }
    let known: HashSet<(u32, u32)> = source.windows(2).map(|w| (w[0], w[1])).collect();
    let novel = summary
        .windows(2)
        .filter(|w| !known.contains(&(w[0], w[1])))
        .count();
    novel as f64 / (summary.len() - 1) as f64
}

/// Distinct number values written in digits in `text`.
pub fn number_count(text: &str) -> usize {
    numbers(text).map(|(_, v)| v).collect::<HashSet<_>>().len()
}

/// Summary numbers whose normalised value is not among the source's numbers, once each, in
/// order of first appearance and as written in the summary.
pub fn unsupported_numbers(source: &str, summary: &str) -> Vec<String> {
    let mut known: HashSet<String> = numbers(source).map(|(_, value)| value).collect();
    known.extend(
        source
            .split(|c: char| !c.is_alphabetic())
            .filter_map(|w| number_word(&w.to_lowercase()).map(str::to_string)),
    );
    let mut reported = HashSet::new();
    numbers(summary)
        .filter(|(_, value)| !known.contains(value) && reported.insert(value.clone()))
        .map(|(written, _)| written.to_string())
        .collect()
}

/// Every number in `text` as (written form, normalised value). A number is ASCII digits with
/// single '.' or ',' between digit groups, so "1,000" and "3.5" are one number while "2015."
/// or "1, 2" end at the punctuation.
fn numbers(text: &str) -> impl Iterator<Item = (&str, String)> {
    let bytes = text.as_bytes();
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < bytes.len() && !bytes[i].is_ascii_digit() {
            i += 1;
        }
        if i == bytes.len() {
            return None;
        }
        let start = i;
        while i < bytes.len() {
            if bytes[i].is_ascii_digit() {
                i += 1;
            } else if matches!(bytes[i], b'.' | b',')
                && bytes.get(i + 1).is_some_and(u8::is_ascii_digit)
            {
                i += 2;
            } else {
                break;
            }
        }
        // Only ASCII bytes were consumed, so both ends are char boundaries.
        let written = &text[start..i];
        Some((written, normalise_number(written)))
    })
}

/// "1,000" -> "1000" and "3.50" -> "3.5": commas are read as thousands separators and a
/// single '.' as the decimal point. Anything with several dots (versions, dates) is kept
/// literally because it is not one quantity.
fn normalise_number(written: &str) -> String {
    let digits: String = written.chars().filter(|&c| c != ',').collect();
    match digits.split_once('.') {
        Some((whole, fraction)) if !fraction.contains('.') => {
            let fraction = fraction.trim_end_matches('0');
            if fraction.is_empty() {
                whole.to_string()
            } else {
                format!("{whole}.{fraction}")
            }
        }
        _ => digits,
    }
}

/// Spelled-out numbers a source commonly uses where a summary writes digits ("three" -> 3).
fn number_word(word: &str) -> Option<&'static str> {
    const WORDS: &[(&str, &str)] = &[
        ("zero", "0"),
        ("one", "1"),
        ("two", "2"),
        ("three", "3"),
        ("four", "4"),
        ("five", "5"),
        ("six", "6"),
        ("seven", "7"),
        ("eight", "8"),
        ("nine", "9"),
        ("ten", "10"),
        ("eleven", "11"),
        ("twelve", "12"),
        ("thirteen", "13"),
        ("fourteen", "14"),
        ("fifteen", "15"),
        ("sixteen", "16"),
        ("seventeen", "17"),
        ("eighteen", "18"),
        ("nineteen", "19"),
        ("twenty", "20"),
        ("thirty", "30"),
        ("forty", "40"),
        ("fifty", "50"),
        ("sixty", "60"),
        ("seventy", "70"),
        ("eighty", "80"),
        ("ninety", "90"),
        ("hundred", "100"),
        ("thousand", "1000"),
        ("dozen", "12"),
    ];
    WORDS.iter().find(|(w, _)| *w == word).map(|&(_, n)| n)
}

/// Fewer letters than this give whatlang too little to go on, whatever confidence it reports.
const MIN_LETTERS: usize = 20;
/// Language identity shows in the first few thousand characters; reading a whole meeting
/// transcript would only cost time.
const MAX_DETECT_BYTES: usize = 10_000;

/// The language of `text` as an ISO 639-1 code ("en"), or whatlang's ISO 639-3 code for the
/// few languages without one; None when the text is too short or whatlang is not confident.
pub fn detect_language(text: &str) -> Option<String> {
    let mut end = text.len().min(MAX_DETECT_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let text = &text[..end];
    // The guard and the quality checks ask about the same source and summary one after the
    // other on one thread: detection is the costliest step of a record, so remember the last
    // few answers (keyed by the text itself, compared in full on a hit).
    thread_local! {
        static RECENT: std::cell::RefCell<std::collections::VecDeque<(String, Option<String>)>> =
            const { std::cell::RefCell::new(std::collections::VecDeque::new()) };
    }
    if let Some(hit) =
        RECENT.with_borrow(|r| r.iter().find(|(t, _)| t == text).map(|(_, l)| l.clone()))
    {
        return hit;
    }
    let lang = detect_uncached(text);
    RECENT.with_borrow_mut(|r| {
        if r.len() == 4 {
            r.pop_back();
        }
        r.push_front((text.to_string(), lang.clone()));
    });
    lang
}

fn detect_uncached(text: &str) -> Option<String> {
    if text.chars().filter(|c| c.is_alphabetic()).count() < MIN_LETTERS {
        return None;
    }
    let info = whatlang::detect(text).filter(whatlang::Info::is_reliable)?;
    let code = info.lang().code();
    Some(iso639_1(code).unwrap_or(code).to_string())
}

fn iso639_1(code: &str) -> Option<&'static str> {
    const CODES: &[(&str, &str)] = &[
        ("afr", "af"),
        ("aka", "ak"),
        ("amh", "am"),
        ("ara", "ar"),
        ("aze", "az"),
        ("bel", "be"),
        ("ben", "bn"),
        ("bul", "bg"),
        ("cat", "ca"),
        ("ces", "cs"),
        ("cmn", "zh"),
        ("cym", "cy"),
        ("dan", "da"),
        ("deu", "de"),
        ("ell", "el"),
        ("eng", "en"),
        ("epo", "eo"),
        ("est", "et"),
        ("fin", "fi"),
        ("fra", "fr"),
        ("guj", "gu"),
        ("heb", "he"),
        ("hin", "hi"),
        ("hrv", "hr"),
        ("hun", "hu"),
        ("hye", "hy"),
        ("ind", "id"),
        ("ita", "it"),
        ("jav", "jv"),
        ("jpn", "ja"),
        ("kan", "kn"),
        ("kat", "ka"),
        ("khm", "km"),
        ("kor", "ko"),
        ("lat", "la"),
        ("lav", "lv"),
        ("lit", "lt"),
        ("mal", "ml"),
        ("mar", "mr"),
        ("mkd", "mk"),
        ("mya", "my"),
        ("nep", "ne"),
        ("nld", "nl"),
        ("nob", "nb"),
        ("ori", "or"),
        ("pan", "pa"),
        ("pes", "fa"),
        ("pol", "pl"),
        ("por", "pt"),
        ("ron", "ro"),
        ("rus", "ru"),
        ("sin", "si"),
        ("slk", "sk"),
        ("slv", "sl"),
        ("sna", "sn"),
        ("spa", "es"),
        ("srp", "sr"),
        ("swe", "sv"),
        ("tam", "ta"),
        ("tel", "te"),
        ("tgl", "tl"),
        ("tha", "th"),
        ("tuk", "tk"),
        ("tur", "tr"),
        ("ukr", "uk"),
        ("urd", "ur"),
        ("uzb", "uz"),
        ("vie", "vi"),
        ("yid", "yi"),
        ("zul", "zu"),
    ];
    CODES.iter().find(|(c, _)| *c == code).map(|&(_, iso)| iso)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fragments(source: &str, summary: &str) -> (f64, f64) {
        let mut vocab = HashMap::new();
        let source = word_ids(source, &mut vocab);
        let summary = word_ids(summary, &mut vocab);
        coverage_density(&source, &summary, vocab.len())
    }

    #[test]
    fn fragments_follow_the_newsroom_greedy_match() {
        // Fragments "the cat sat" (3) and "mat" (1); "slept" is novel: coverage 4/5 and
        // density (9 + 1) / 5.
        assert_eq!(
            fragments("The cat sat on the mat.", "the cat sat slept mat"),
            (0.8, 2.0)
        );
        // The longest match wins over the first one: "a b c" (3) rather than "a b" (2).
        assert_eq!(fragments("a b x a b c", "a b c"), (1.0, 3.0));
        // After a match the source scan resumes at its end, so "a a b" starting inside the
        // first "a a" is missed and the summary splits into "a a" + "b", exactly as in
        // Newsroom's implementation.
        assert_eq!(fragments("a a a b", "a a b"), (1.0, 5.0 / 3.0));
        assert_eq!(fragments("source words", ""), (0.0, 0.0));
    }

    #[test]
    fn check_reports_compression_and_novel_bigrams() {
        let r = check(
            "The council approved the budget on Monday after a long debate.",
            "The council approved a budget.",
        );
        assert_eq!(r.compression, 11.0 / 5.0);
        // Bigrams: "the council", "council approved" are copied; "approved a", "a budget"
        // are new.
        assert_eq!(r.novel_bigrams, 0.5);
        assert_eq!(r.coverage, 1.0);
        assert_eq!(r.density, (9.0 + 1.0 + 1.0) / 5.0);
        let empty = check("Some source text.", "");
        assert_eq!((empty.compression, empty.novel_bigrams), (0.0, 0.0));
    }

    #[test]
    fn numbers_are_normalised_before_comparison() {
        let source = "Sales rose 3.50% to 1,000 units in 2015, three times the 1.2.3 plan.";
        let summary = "Sales rose 3.5% to 1000 units in 2015 and 2016, 3 times 1.2.4 or 7.0; 2016!";
        assert_eq!(
            unsupported_numbers(source, summary),
            ["2016", "1.2.4", "7.0"]
        );
        assert!(check(source, "Up 3.5 percent in 2015.")
            .unsupported_numbers
            .is_empty());
    }

    #[test]
    fn number_scanner_stops_at_sentence_punctuation() {
        let found: Vec<(&str, String)> = numbers("In 2015. Items 1, 2 and 1,234,567.89.").collect();
        let written: Vec<&str> = found.iter().map(|(w, _)| *w).collect();
        assert_eq!(written, ["2015", "1", "2", "1,234,567.89"]);
        assert_eq!(found[3].1, "1234567.89");
    }

    #[test]
    fn languages_are_detected_only_when_reliable() {
        let english = "The committee met on Tuesday to discuss the new budget proposal and \
                       agreed to postpone the final vote until next month.";
        let german = "Der Ausschuss traf sich am Dienstag, um den neuen Haushaltsentwurf zu \
                      besprechen, und vertagte die endgültige Abstimmung auf nächsten Monat.";
        assert_eq!(detect_language(english).as_deref(), Some("en"));
        assert_eq!(detect_language(german).as_deref(), Some("de"));
        assert_eq!(detect_language("Hello there"), None);
        assert_eq!(detect_language("12345 67890 !!!"), None);
        let r = check(english, german);
        assert_eq!(r.lang_match, Some(false));
        assert_eq!(check(english, english).lang_match, Some(true));
        assert_eq!(check(english, "Ok.").lang_match, None);
    }
}
