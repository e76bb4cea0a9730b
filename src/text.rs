//! Plain-text utilities shared by the crate: sentence splitting, word counting and
//! normalised word tokens.
//!
//! Everything here is pure, allocation-light and language-agnostic apart from a small
//! English abbreviation list. This module must not know about summarization policy
//! (scoring, stop words, length targets) and must not do I/O.

/// Characters that may end a sentence.
const TERMINATORS: [char; 4] = ['.', '!', '?', '…'];

/// Characters that may trail a terminator and still belong to the sentence it ends.
const CLOSERS: [char; 8] = ['"', '\'', '”', '’', ')', ']', '»', '}'];

/// Characters that may precede the first letter of a sentence.
const OPENERS: [char; 7] = ['"', '\'', '“', '‘', '(', '[', '«'];

/// Lower-cased abbreviations that never end a sentence: titles before a name.
const TITLES: &[&str] = &[
    "adm", "capt", "cmdr", "col", "det", "dr", "gen", "gov", "hon", "insp", "jr", "lt", "messrs",
    "mr", "mrs", "ms", "mt", "pres", "prof", "rep", "rev", "sen", "sgt", "sr", "st", "supt", "v",
    "vs",
];

/// Abbreviations that continue the sentence when a number follows ("No. 5", "Jan. 12").
const BEFORE_NUMBERS: &[&str] = &[
    "apr", "art", "aug", "ch", "dec", "feb", "fig", "figs", "jan", "jul", "jun", "mar", "no",
    "nos", "nov", "oct", "p", "para", "pp", "sec", "sep", "sept", "vol",
];

/// Abbreviations that may also close a sentence, so they only continue it when the
/// next word is lower case ("Apple Inc. said" vs "worked at Apple Inc. The").
const TRAILING: &[&str] = &[
    "al", "approx", "ave", "blvd", "bros", "cf", "co", "corp", "dept", "est", "etc", "inc", "ltd",
    "rd",
];

/// Words that commonly open a sentence; after an initialism such as "U.S." a
/// capitalised word from this list signals a real sentence break rather than a name.
const SENTENCE_STARTERS: &[&str] = &[
    "a", "after", "an", "and", "as", "at", "but", "for", "he", "her", "his", "however", "i", "if",
    "in", "it", "its", "now", "on", "one", "our", "she", "so", "some", "that", "the", "their",
    "then", "there", "these", "they", "this", "those", "we", "when", "while", "you",
];

/// Splits `text` into sentence spans borrowed from it, in order and without overlap.
///
/// Newlines are hard breaks. Within a line a sentence ends at `.`, `!`, `?` or `…`
/// (plus any closing quotes or brackets) followed by whitespace or the end of the
/// line, unless the period belongs to an abbreviation, an initialism or an ellipsis
/// that continues in lower case. Spans are trimmed; spans without any letter or digit
/// are dropped.
pub fn split_sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    for line in text.split('\n') {
        split_line(line, &mut out);
    }
    out
}

fn split_line<'a>(line: &'a str, out: &mut Vec<&'a str>) {
    let mut start = 0;
    let mut chars = line.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if !TERMINATORS.contains(&c) {
            continue;
        }
        let mut end = i + c.len_utf8();
        let mut periods_only = c == '.';
        let mut run = 1;
        while let Some(&(j, d)) = chars.peek() {
            if TERMINATORS.contains(&d) {
                periods_only &= d == '.';
                run += 1;
            } else if !CLOSERS.contains(&d) {
                break;
            }
            end = j + d.len_utf8();
            chars.next();
        }
        let rest = &line[end..];
        if !rest.is_empty() && !rest.starts_with(char::is_whitespace) {
            continue;
        }
        let next = next_word(rest);
        let is_break = if c == '…' || (periods_only && run > 1) {
            // An ellipsis only ends a sentence when the next one starts afresh.
            next.is_none_or(starts_upper)
        } else if periods_only {
            !period_continues(&line[start..i], next)
        } else {
            true
        };
        if is_break {
            push_span(line, start, end, out);
            start = end;
        }
    }
    push_span(line, start, line.len(), out);
}

fn push_span<'a>(line: &'a str, start: usize, end: usize, out: &mut Vec<&'a str>) {
    let span = line[start..end].trim();
    if span.chars().any(char::is_alphanumeric) {
        out.push(span);
    }
}

/// The word after a candidate break, without leading whitespace or opening quotes.
fn next_word(rest: &str) -> Option<&str> {
    let word = rest.split_whitespace().next()?;
    let word = word.trim_start_matches(OPENERS);
    (!word.is_empty()).then_some(word)
}

fn starts_upper(word: &str) -> bool {
    word.chars()
        .next()
        .is_some_and(|c| c.is_uppercase() || c.is_numeric())
}

/// What may follow a sentence's final mark: closing quotes and brackets, Markdown emphasis.
pub const CLOSING: [char; 9] = ['"', '\'', '”', '’', ')', ']', '»', '*', '_'];

/// Whether `text` ends in a sentence mark (`.`, `!`, `?`, `…`) and only [`CLOSING`] after it,
/// whatever word the mark closes.
pub fn has_final_mark(text: &str) -> bool {
    text.trim_end()
        .trim_end_matches(CLOSING)
        .ends_with(['.', '!', '?', '…'])
}

/// Whether `text` ends a sentence: a terminator, then only closing quotes or brackets, and not
/// a title abbreviation ("Dr.") or an initial ("J.") that a name continues.
pub fn ends_sentence(text: &str) -> bool {
    if !has_final_mark(text) {
        return false;
    }
    let t = text.trim_end().trim_end_matches(CLOSING);
    if !t.ends_with('.') {
        return true;
    }
    let last = t
        .rsplit(char::is_whitespace)
        .next()
        .unwrap_or("")
        .trim_start_matches(['"', '\'', '“', '‘', '(']);
    let word = last.trim_end_matches('.').to_ascii_lowercase();
    let initial = word.chars().count() == 1 && word.chars().all(char::is_alphabetic);
    !(initial || is_title_abbreviation(&word))
}

/// Whether `word` (lower case, without its period) is a title such as "dr" or "mr" that a name
/// always follows.
pub fn is_title_abbreviation(word: &str) -> bool {
    TITLES.contains(&word)
}

/// Whether a single period closing `before` (the sentence so far, without the period)
/// is part of a token rather than the end of the sentence.
fn period_continues(before: &str, next: Option<&str>) -> bool {
    let Some(next) = next else {
        return false;
    };
    let token = before
        .rsplit(char::is_whitespace)
        .next()
        .unwrap_or("")
        .trim_start_matches(OPENERS);
    if token.is_empty() || !token.chars().any(char::is_alphabetic) {
        // Tokenised text (" .") and numbers ("in 2015.") end sentences.
        return false;
    }
    let lower = token.to_lowercase();
    let lower = lower.as_str();
    let next_first = next.chars().next().unwrap_or(' ');
    if TITLES.contains(&lower)
        || (BEFORE_NUMBERS.contains(&lower) && next_first.is_ascii_digit())
        || (TRAILING.contains(&lower) && next_first.is_lowercase())
    {
        return true;
    }
    let is_initialism = token.contains('.')
        && token
            .split('.')
            .all(|part| part.chars().count() <= 2 && part.chars().all(char::is_alphabetic));
    if is_initialism {
        let starter = next.trim_end_matches(|c: char| !c.is_alphanumeric());
        return !(next_first.is_uppercase()
            && SENTENCE_STARTERS.contains(&starter.to_lowercase().as_str()));
    }
    let single_capital = token.chars().count() == 1 && token.chars().all(char::is_uppercase);
    if single_capital && next_first.is_uppercase() {
        // A middle initial ("John F. Kennedy").
        return token != "I";
    }
    next_first.is_lowercase() && token.chars().count() <= 3
}

/// The length of a list marker opening `line`, with the space after it: a bullet ("- ", "* ",
/// "• ") or a number ("1. ", "2) "). `None` for any other line.
pub fn list_marker_len(line: &str) -> Option<usize> {
    let body = line.trim_start();
    let indent = line.len() - body.len();
    let marker = if body.starts_with(['-', '*', '•']) {
        body.chars().next().map_or(0, char::len_utf8)
    } else {
        let digits = body.len() - body.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 || digits > 3 || !body[digits..].starts_with(['.', ')']) {
            return None;
        }
        digits + 1
    };
    let rest = &body[marker..];
    let space = rest.len() - rest.trim_start().len();
    (space > 0 || rest.is_empty()).then_some(indent + marker + space)
}

/// Whitespace-separated words that contain at least one letter or digit, so that
/// tokenised punctuation (" ,", " .") and dashes do not count as words.
pub fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split_whitespace()
        .filter(|w| w.chars().any(char::is_alphanumeric))
}

/// The number of [`words`] in `text`.
pub fn word_count(text: &str) -> usize {
    words(text).count()
}

/// Lower-cased maximal runs of letters and digits, the unit on which sentences are
/// compared ("Don't" gives "don" and "t", "3.5%" gives "3" and "5").
pub fn tokens(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(str::to_lowercase)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_markers_are_bullets_and_short_numbers() {
        assert_eq!(list_marker_len("- item"), Some(2));
        assert_eq!(list_marker_len("  • item"), Some(2 + '•'.len_utf8() + 1));
        assert_eq!(list_marker_len("2. Fixed Y"), Some(3));
        assert_eq!(list_marker_len("10) Tenth"), Some(4));
        assert_eq!(list_marker_len("2."), Some(2));
        assert_eq!(list_marker_len("2.5 million people"), None);
        assert_eq!(list_marker_len("1887. A year"), None);
        assert_eq!(list_marker_len("The end."), None);
        assert_eq!(list_marker_len("-3 degrees"), None);
    }

    #[test]
    fn sentence_ends() {
        assert!(ends_sentence("The cat sat."));
        assert!(ends_sentence("He said \"no.\" "));
        assert!(ends_sentence("Really?"));
        assert!(!ends_sentence("The cat sat"));
        assert!(!ends_sentence("They met Dr."));
        assert!(!ends_sentence("signed by J."));
        assert!(ends_sentence("in the U.S."));
    }

    #[test]
    fn splits_plain_sentences() {
        assert_eq!(
            split_sentences("One two. Three four! Five six? Seven"),
            vec!["One two.", "Three four!", "Five six?", "Seven"]
        );
    }

    #[test]
    fn keeps_abbreviations_and_decimals() {
        assert_eq!(
            split_sentences("Mr. Smith met Dr. Jones at 3.5 p.m. today. It rained."),
            vec!["Mr. Smith met Dr. Jones at 3.5 p.m. today.", "It rained."]
        );
        assert_eq!(
            split_sentences("Use tools, e.g. hammers. Then stop."),
            vec!["Use tools, e.g. hammers.", "Then stop."]
        );
    }

    #[test]
    fn initialisms_break_only_before_sentence_starters() {
        assert_eq!(
            split_sentences("The U.S. Army left the U.S. The war ended."),
            vec!["The U.S. Army left the U.S.", "The war ended."]
        );
        assert_eq!(
            split_sentences("John F. Kennedy spoke."),
            vec!["John F. Kennedy spoke."]
        );
    }

    #[test]
    fn ambiguous_abbreviations_depend_on_the_next_word() {
        assert_eq!(
            split_sentences("See No. 5 first. I said no. Then I left."),
            vec!["See No. 5 first.", "I said no.", "Then I left."]
        );
        assert_eq!(
            split_sentences("Apple Inc. said so. He joined Apple Inc. The end."),
            vec!["Apple Inc. said so.", "He joined Apple Inc.", "The end."]
        );
    }

    #[test]
    fn runs_of_terminators_end_one_sentence() {
        assert_eq!(
            split_sentences("It cost $3.5 million. Hello!!! What?! At 9 p.m. The end."),
            vec![
                "It cost $3.5 million.",
                "Hello!!!",
                "What?!",
                "At 9 p.m.",
                "The end."
            ]
        );
    }

    #[test]
    fn quotes_after_the_period_stay_with_the_sentence() {
        assert_eq!(
            split_sentences("He said \"Stop.\" She left. ‘Fine.’ Done"),
            vec!["He said \"Stop.\"", "She left.", "‘Fine.’", "Done"]
        );
    }

    #[test]
    fn ellipses_break_only_before_a_capital() {
        assert_eq!(
            split_sentences("Wait... and see. Well... Maybe not… Fine"),
            vec!["Wait... and see.", "Well...", "Maybe not…", "Fine"]
        );
    }

    #[test]
    fn newlines_are_hard_breaks_and_empty_spans_vanish() {
        assert_eq!(
            split_sentences("Title line\n\n  Body one . Body two ?\r\n . \n"),
            vec!["Title line", "Body one .", "Body two ?"]
        );
        assert!(split_sentences("").is_empty());
        assert!(split_sentences(" \n ... \n").is_empty());
    }

    #[test]
    fn no_break_without_following_space() {
        assert_eq!(
            split_sentences("Visit example.com today.It works."),
            vec!["Visit example.com today.It works."]
        );
    }

    #[test]
    fn spans_are_ordered_and_disjoint() {
        let text = "A b. C d? \"E f.\" G h\nI j. K. L m... n o.";
        let mut last_end = 0;
        for s in split_sentences(text) {
            let start = s.as_ptr() as usize - text.as_ptr() as usize;
            assert!(start >= last_end);
            last_end = start + s.len();
        }
    }

    #[test]
    fn counts_words_not_punctuation() {
        assert_eq!(word_count("I 'm here , ok ? -- yes"), 5);
        assert_eq!(words("a , b").collect::<Vec<_>>(), vec!["a", "b"]);
        assert_eq!(word_count(""), 0);
    }

    #[test]
    fn tokens_are_lowercase_alphanumeric_runs() {
        assert_eq!(
            tokens("Don't pay 3.5%, Café!").collect::<Vec<_>>(),
            vec!["don", "t", "pay", "3", "5", "café"]
        );
    }
}
