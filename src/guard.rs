//! The faithfulness guard: what a model wrote, checked against the document it summarizes,
//! before it reaches the report.
//!
//! Two steps. `clean` strips what is never summary text and says how much it removed: label
//! lines ("Title:", "Summary:"), the fence marker lines of the prompt, preambles ("Here is a
//! summary:"), and markdown headings. `check` then reads the cleaned summary sentence by
//! sentence and finds: numbers, links, e-mail addresses and capitalised names that appear
//! nowhere in the source; sentences that repeat the prompt's own instructions; repetition loops;
//! and, for the whole summary, a language other than the source's and a length outside 0.5–1.5×
//! the requested one. What happens next is the `--guard` mode: `repair` drops the offending
//! sentences (and trims an overlong summary at a sentence end) and falls back to the extractive
//! summary of the same document when too little is left; `fallback` falls back on any finding;
//! `flag` only records the findings; `off` skips the checks.
//!
//! Pure: no I/O, no model calls. A fallback is never hidden: the verdict says so, with reasons.

use std::collections::HashSet;

use crate::config::Language;
use crate::eval::reffree;
use crate::text;

/// What the guard does with its findings (`--guard`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuardMode {
    /// Drop offending sentences; fall back to the extractive summary when too little is left.
    Repair,
    /// Any finding replaces the summary with the extractive one.
    Fallback,
    /// Record findings, change nothing.
    Flag,
    /// No checks.
    Off,
}

impl GuardMode {
    pub fn parse(s: &str) -> Result<GuardMode, String> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "repair" => GuardMode::Repair,
            "fallback" => GuardMode::Fallback,
            "flag" => GuardMode::Flag,
            "off" => GuardMode::Off,
            _ => {
                return Err(format!(
                    "invalid --guard '{s}': use repair, fallback, flag or off"
                ))
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            GuardMode::Repair => "repair",
            GuardMode::Fallback => "fallback",
            GuardMode::Flag => "flag",
            GuardMode::Off => "off",
        }
    }
}

/// What the guard did to one summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing found.
    Passed,
    /// Offending sentences were dropped or an overlong summary trimmed.
    Repaired,
    /// The summary was replaced by the extractive summary of the same document.
    Fallback,
    /// Findings recorded, summary unchanged (`--guard flag`).
    Flagged,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Passed => "passed",
            Outcome::Repaired => "repaired",
            Outcome::Fallback => "fallback",
            Outcome::Flagged => "flagged",
        }
    }
}

/// A finding, as reported in `guard_reasons`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    UnsupportedNumber,
    UnsupportedLink,
    UnsupportedName,
    PromptEcho,
    Repetition,
    LanguageMismatch,
    TooLong,
    TooShort,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::UnsupportedNumber => "unsupported_number",
            Reason::UnsupportedLink => "unsupported_link",
            Reason::UnsupportedName => "unsupported_name",
            Reason::PromptEcho => "prompt_echo",
            Reason::Repetition => "repetition",
            Reason::LanguageMismatch => "language_mismatch",
            Reason::TooLong => "too_long",
            Reason::TooShort => "too_short",
        }
    }
}

/// The guard's decision about one summary.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub outcome: Outcome,
    /// Distinct findings, in a fixed order.
    pub reasons: Vec<Reason>,
    /// The summary to report.
    pub text: String,
    /// Sentences the repair removed.
    pub dropped: Vec<String>,
}

/// What a summary is checked against.
pub struct Context<'a> {
    /// The whole extracted document.
    pub source: &'a str,
    /// Requested words.
    pub words: usize,
    /// Requested language.
    pub language: &'a Language,
    /// Prompt text the model must not repeat (system prompt, instructions).
    pub prompt: &'a [&'a str],
}

/// A summary with the non-summary lines removed.
#[derive(Debug, Clone, PartialEq)]
pub struct Cleaned {
    pub text: String,
    /// Label lines, fence markers, preambles and headings removed.
    pub stripped: usize,
}

/// Label words that small models echo from prompts as line prefixes.
const LABELS: &[&str] = &[
    "abstract",
    "answer",
    "article",
    "assistant",
    "document",
    "key points",
    "output",
    "summary",
    "text",
    "title",
    "tl;dr",
    "tldr",
    "user",
];

/// Strips what is never summary text. A "Summary:" label loses only the label; a "Title:"
/// line, a fence marker, a heading or a preamble ending in ':' is removed whole.
pub fn clean(summary: &str) -> Cleaned {
    let mut stripped = 0;
    let mut lines = Vec::new();
    for line in summary.lines() {
        let trimmed = line.trim();
        let bare =
            trimmed.trim_matches(|c: char| c == '*' || c == '#' || c == '_' || c.is_whitespace());
        if trimmed.is_empty() {
            lines.push(String::new());
            continue;
        }
        if is_marker_line(trimmed) || is_heading(trimmed) || is_preamble(bare) {
            stripped += 1;
            continue;
        }
        match split_label(bare) {
            Some((label, rest)) => {
                stripped += 1;
                if label == "title" || label == "document" || label == "article" || label == "user"
                {
                    continue;
                }
                if !rest.is_empty() {
                    lines.push(rest.to_string());
                }
            }
            // Empty, or a label standing alone as a heading ("**Summary**").
            None if bare.is_empty() || LABELS.contains(&bare.to_lowercase().as_str()) => {
                stripped += 1
            }
            None => lines.push(line.trim_end().to_string()),
        }
    }
    // Markers can also sit inside a line; cut them out.
    let mut text = lines.join("\n");
    while let Some(at) = text.find("<<<") {
        let end = text[at..].find(">>>").map_or(text.len(), |e| at + e + 3);
        text.replace_range(at..end, "");
        stripped += 1;
    }
    let text = text
        .split("\n\n")
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("\n\n");
    Cleaned { text, stripped }
}

/// A Markdown heading: "#" marks and a space, or marks alone (not "#1 priority").
fn is_heading(line: &str) -> bool {
    let rest = line.trim_start_matches('#');
    rest.len() < line.len() && (rest.is_empty() || rest.starts_with(char::is_whitespace))
}

fn is_marker_line(line: &str) -> bool {
    let upper = line.to_ascii_uppercase();
    line.contains("<<<")
        || line.contains(">>>")
        || upper
            .split_whitespace()
            .collect::<Vec<_>>()
            .windows(2)
            .any(|w| w[0].ends_with("DOCUMENT") && is_hex_tag(w[1]))
}

fn is_hex_tag(word: &str) -> bool {
    let w = word.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    w.len() >= 8 && w.chars().all(|c| c.is_ascii_hexdigit() || c == 'X')
}

/// "Here is a summary of the document:" and friends.
fn is_preamble(line: &str) -> bool {
    let lower = line.to_lowercase();
    lower.ends_with(':')
        && [
            "here is",
            "here's",
            "here are",
            "sure",
            "below is",
            "the following",
        ]
        .iter()
        .any(|p| lower.starts_with(p))
}

/// A leading label such as "Summary:" (lower-cased label, rest of the line).
fn split_label(line: &str) -> Option<(String, &str)> {
    let (head, rest) = line.split_once(':')?;
    let label = head
        .trim()
        .trim_matches(|c: char| c == '*' || c == '_')
        .to_lowercase();
    LABELS
        .contains(&label.as_str())
        .then(|| (label, rest.trim().trim_start_matches(['*', '_']).trim()))
}

/// One line of a summary, split into sentences; the prefix keeps a bullet ("- ") in place.
struct Line<'a> {
    prefix: &'a str,
    sentences: Vec<&'a str>,
}

fn lines(summary: &str) -> Vec<Line<'_>> {
    summary
        .lines()
        .map(|line| {
            // A bullet or a list number ("2. ") is kept in place, not checked as a number.
            let (prefix, body) = line.split_at(text::list_marker_len(line).unwrap_or(0));
            Line {
                prefix,
                sentences: text::split_sentences(body),
            }
        })
        .collect()
}

/// The words of `source` as a lower-case set, for support checks.
struct Support {
    words: HashSet<String>,
    lower: String,
    prompt_shingles: HashSet<Vec<String>>,
}

/// Words in a row that count as repeating the prompt.
const ECHO_SHINGLE: usize = 5;

impl Support {
    fn new(ctx: &Context<'_>) -> Support {
        let mut words: HashSet<String> = HashSet::new();
        for w in text::words(ctx.source).map(normal_word) {
            // "Louis-Dreyfus" supports "Dreyfus" too.
            if w.contains(['-', '/', '–']) {
                words.extend(w.split(['-', '/', '–']).map(normal_word));
            }
            words.insert(w);
        }
        let source_shingles: HashSet<Vec<String>> = shingles(ctx.source).collect();
        let prompt_shingles = ctx
            .prompt
            .iter()
            .flat_map(|p| shingles(p).collect::<Vec<_>>())
            .filter(|s| !source_shingles.contains(s))
            .collect();
        Support {
            words,
            lower: ctx.source.to_lowercase(),
            prompt_shingles,
        }
    }

    /// A name is supported when the source has the word, or a word sharing its stem-like
    /// prefix ("British" / "Britain", "Americans" / "America").
    fn has_name(&self, word: &str) -> bool {
        let w = normal_word(word);
        if self.words.contains(&w) || w.chars().count() < 2 {
            return true;
        }
        let n = w.chars().count();
        let keep = (n.saturating_sub(3)).max(4);
        if n <= keep {
            return false;
        }
        let prefix: String = w.chars().take(keep).collect();
        self.words.iter().any(|s| s.starts_with(&prefix))
    }
}

fn normal_word(word: &str) -> String {
    let w = word
        .trim_matches(|c: char| !c.is_alphanumeric())
        .to_lowercase();
    w.strip_suffix("'s")
        .or_else(|| w.strip_suffix("’s"))
        .unwrap_or(&w)
        .to_string()
}

fn shingles(text: &str) -> impl Iterator<Item = Vec<String>> {
    let words: Vec<String> = text::words(text)
        .map(|w| {
            w.trim_matches(|c: char| !c.is_alphanumeric())
                .to_lowercase()
        })
        .filter(|w| !w.is_empty())
        .collect();
    let n = words.len().saturating_sub(ECHO_SHINGLE - 1);
    (0..n).map(move |i| words[i..i + ECHO_SHINGLE].to_vec())
}

/// Common words that may be capitalised at the start of a sentence without being names.
#[rustfmt::skip]
const COMMON: &[&str] = &[
    "a", "according", "additionally", "after", "all", "also", "although", "an", "and",
    "another", "any", "are", "as", "at", "because", "before", "both", "but", "by", "currently",
    "despite", "during", "each", "earlier", "eight", "even", "every", "finally", "first",
    "five", "for", "four", "from", "he", "her", "here", "his", "how", "however", "i", "if",
    "in", "instead", "is", "it", "its", "last", "later", "many", "meanwhile", "more", "most",
    "my", "nine", "no", "not", "now", "of", "on", "once", "one", "only", "other", "our",
    "over", "overall", "previously", "recently", "second", "seven", "several", "she", "since",
    "six", "so", "some", "still", "such", "ten", "that", "the", "their", "then", "there",
    "these", "they", "third", "this", "those", "though", "three", "thus", "to", "today", "two",
    "under", "until", "was", "we", "were", "what", "when", "where", "which", "while", "who",
    "why", "with", "yesterday", "yet", "you",
];

/// Findings in one sentence.
fn sentence_reasons(sentence: &str, support: &Support, ctx: &Context<'_>) -> Vec<Reason> {
    let mut out = Vec::new();
    if !reffree::unsupported_numbers(ctx.source, sentence).is_empty() {
        out.push(Reason::UnsupportedNumber);
    }
    // A summary asked for in a named language may translate, and capitalise words ("La",
    // "Die Bibliothek") that the source cannot support: names are checked in the source's own
    // language only.
    let check_names = matches!(ctx.language, Language::Auto);
    for (i, raw) in sentence.split_whitespace().enumerate() {
        let token = raw.trim_matches(|c: char| "()[]{}\"'“”‘’,;:!?".contains(c));
        let token = token.trim_end_matches('.');
        let lower = token.to_lowercase();
        if lower.contains("://") || lower.starts_with("www.") || is_email(&lower) {
            if !support.lower.contains(&lower) {
                out.push(Reason::UnsupportedLink);
            }
            continue;
        }
        let Some(first) = token.chars().next().filter(|_| check_names) else {
            continue;
        };
        if !first.is_uppercase() || !token.chars().any(char::is_alphabetic) {
            continue;
        }
        let common = COMMON.contains(&normal_word(token).as_str());
        if (i == 0 && common) || support.has_name(token) {
            continue;
        }
        // Parts of a hyphenated name ("Louis-Dreyfus") are checked one by one.
        if token.contains('-')
            && token
                .split('-')
                .all(|p| p.is_empty() || support.has_name(p))
        {
            continue;
        }
        out.push(Reason::UnsupportedName);
    }
    if shingles(sentence).any(|s| support.prompt_shingles.contains(&s)) {
        out.push(Reason::PromptEcho);
    }
    if loops(sentence) {
        out.push(Reason::Repetition);
    }
    out.sort_unstable();
    out.dedup();
    out
}

fn is_email(token: &str) -> bool {
    match token.split_once('@') {
        Some((user, host)) => !user.is_empty() && host.contains('.') && !host.starts_with('.'),
        None => false,
    }
}

/// A sentence that goes round in circles: some three words in a row occur three times.
fn loops(sentence: &str) -> bool {
    let words: Vec<String> = text::words(sentence).map(normal_word).collect();
    let mut counts: std::collections::HashMap<&[String], usize> = Default::default();
    for w in words.windows(3) {
        let c = counts.entry(w).or_default();
        *c += 1;
        if *c >= 3 {
            return true;
        }
    }
    false
}

/// Share of `a`'s distinct words also in `b`.
fn overlap(a: &str, b: &str) -> f64 {
    let aw: HashSet<String> = text::words(a).map(normal_word).collect();
    let bw: HashSet<String> = text::words(b).map(normal_word).collect();
    if aw.is_empty() {
        return 1.0;
    }
    aw.intersection(&bw).count() as f64 / aw.len() as f64
}

/// A sentence that says again what an earlier one said counts as a repetition.
const REPEAT_OVERLAP: f64 = 0.8;

/// Checks `summary` (already cleaned) and applies `mode`. `fallback` makes the extractive
/// summary when one is needed.
pub fn guard(
    summary: &str,
    ctx: &Context<'_>,
    mode: GuardMode,
    fallback: &dyn Fn() -> String,
) -> Option<Verdict> {
    if mode == GuardMode::Off {
        return None;
    }
    let support = Support::new(ctx);
    let mut reasons: Vec<Reason> = Vec::new();
    let mut dropped: Vec<String> = Vec::new();
    let mut kept_lines: Vec<(String, Vec<String>)> = Vec::new();
    let mut kept_so_far: Vec<String> = Vec::new();
    for line in lines(summary) {
        let mut kept = Vec::new();
        for sentence in line.sentences {
            let mut found = sentence_reasons(sentence, &support, ctx);
            if kept_so_far
                .iter()
                .any(|k| overlap(sentence, k) >= REPEAT_OVERLAP)
            {
                found.push(Reason::Repetition);
            }
            if found.is_empty() {
                kept.push(sentence.to_string());
                kept_so_far.push(sentence.to_string());
            } else {
                reasons.extend(found);
                dropped.push(sentence.to_string());
            }
        }
        kept_lines.push((line.prefix.to_string(), kept));
    }

    // The length band is relative to what the document can give.
    let source_words = text::word_count(ctx.source);
    let expected = ctx.words.min(source_words.max(1));
    let max_words = ctx.words * 3 / 2;
    let words_of = |lines: &[(String, Vec<String>)]| -> usize {
        lines
            .iter()
            .flat_map(|(_, s)| s)
            .map(|s| text::word_count(s))
            .sum()
    };
    if words_of(&kept_lines) > max_words {
        reasons.push(Reason::TooLong);
        // Trim whole sentences from the end, keeping at least one.
        while words_of(&kept_lines) > max_words
            && kept_lines.iter().map(|(_, s)| s.len()).sum::<usize>() > 1
        {
            if let Some((_, last)) = kept_lines.iter_mut().rev().find(|(_, s)| !s.is_empty()) {
                if let Some(s) = last.pop() {
                    dropped.push(s);
                }
            }
        }
    }
    let kept_words = words_of(&kept_lines);
    if kept_words * 2 < expected {
        reasons.push(Reason::TooShort);
    }
    let mismatch = matches!(ctx.language, Language::Auto)
        && matches!(
            (reffree::detect_language(ctx.source), reffree::detect_language(summary)),
            (Some(a), Some(b)) if a != b
        );
    if mismatch {
        reasons.push(Reason::LanguageMismatch);
    }
    reasons.sort_unstable();
    reasons.dedup();

    let repaired_text = kept_lines
        .iter()
        .filter(|(_, s)| !s.is_empty())
        .map(|(prefix, s)| format!("{prefix}{}", s.join(" ")))
        .collect::<Vec<_>>()
        .join("\n");
    let fall = |reasons: Vec<Reason>| Verdict {
        outcome: Outcome::Fallback,
        reasons,
        text: fallback(),
        dropped: Vec::new(),
    };
    Some(match mode {
        _ if reasons.is_empty() => Verdict {
            outcome: Outcome::Passed,
            reasons,
            text: summary.to_string(),
            dropped: Vec::new(),
        },
        GuardMode::Flag | GuardMode::Off => Verdict {
            outcome: Outcome::Flagged,
            reasons,
            text: summary.to_string(),
            dropped: Vec::new(),
        },
        GuardMode::Fallback => fall(reasons),
        GuardMode::Repair => {
            if reasons.contains(&Reason::TooShort)
                || reasons.contains(&Reason::LanguageMismatch)
                || repaired_text.trim().is_empty()
            {
                fall(reasons)
            } else {
                Verdict {
                    outcome: Outcome::Repaired,
                    reasons,
                    text: repaired_text,
                    dropped,
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOURCE: &str = "The Riverside library now lends 140 tools, from drills to ladders. \
        Librarian Ana Costa said members borrowed tools 2,300 times in the first year. \
        The scheme costs the city $12,000 a year and is funded by a grant from the Hale Trust. \
        Members can reserve tools online at https://riverside.example/tools and collect them \
        on Saturdays. The library plans to add gardening tools next spring, after a survey of \
        members found strong demand for lawnmowers and hedge trimmers.";

    fn ctx<'a>(prompt: &'a [&'a str]) -> Context<'a> {
        Context {
            source: SOURCE,
            words: 40,
            language: &Language::Auto,
            prompt,
        }
    }

    fn run(summary: &str, mode: GuardMode) -> Verdict {
        let prompt = ["Report only what the document says and do not add facts, numbers or names."];
        guard(summary, &ctx(&prompt), mode, &|| "EXTRACTIVE".to_string()).unwrap()
    }

    #[test]
    fn a_faithful_summary_passes() {
        let s = "The Riverside library now lends 140 tools, from drills to ladders. Members borrowed tools 2,300 times in the first year, librarian Ana Costa said.";
        let v = run(s, GuardMode::Repair);
        assert_eq!(v.outcome, Outcome::Passed, "{v:?}");
        assert_eq!(v.text, s);
    }

    #[test]
    fn repair_drops_invented_numbers_names_and_links() {
        let s = "The Riverside library now lends 140 tools, from drills to ladders. \
                 It has a repair budget of $18,000 a year. \
                 The scheme was praised by Mayor Bloomberg. \
                 Watch it at https://stream.example/video. \
                 Members borrowed tools 2,300 times in the first year, said Ana Costa.";
        let v = run(s, GuardMode::Repair);
        assert_eq!(v.outcome, Outcome::Repaired, "{v:?}");
        assert_eq!(
            v.reasons,
            vec![
                Reason::UnsupportedNumber,
                Reason::UnsupportedLink,
                Reason::UnsupportedName
            ]
        );
        assert!(
            !v.text.contains("18,000")
                && !v.text.contains("Bloomberg")
                && !v.text.contains("stream")
        );
        assert!(v.text.contains("140 tools") && v.text.contains("Ana Costa"));
        assert_eq!(v.dropped.len(), 3);
    }

    /// Review findings: list numbers are not numbers, sentence openers are not names, and a
    /// summary in another requested language is not read as invented names.
    #[test]
    fn list_numbers_openers_and_translations_are_not_findings() {
        let s = "1. The Riverside library now lends 140 tools, from drills to ladders.\n\
                 2. Overall, members borrowed tools 2,300 times in the first year.";
        let v = run(s, GuardMode::Fallback);
        assert_eq!(v.outcome, Outcome::Passed, "{v:?}");
        // An invented number inside an item is still one.
        let v = run("1. The library lends 170 tools to members every week, from drills to ladders and more.", GuardMode::Flag);
        assert!(v.reasons.contains(&Reason::UnsupportedNumber), "{v:?}");
        assert!(!v.reasons.contains(&Reason::UnsupportedName), "{v:?}");
        let french =
            "La bibliothèque Riverside prête désormais 140 outils, des perceuses aux échelles. \
                      Les membres ont emprunté des outils 2,300 fois la première année.";
        let named = Language::Named("fr".into());
        let prompt: [&str; 0] = [];
        let c = Context {
            language: &named,
            ..ctx(&prompt)
        };
        let v = guard(french, &c, GuardMode::Repair, &|| "EXTRACTIVE".into()).unwrap();
        assert_eq!(v.outcome, Outcome::Passed, "{v:?}");
        let invented = "La bibliothèque prête 999 outils aux membres, des perceuses aux échelles, chaque semaine.";
        let v = guard(invented, &c, GuardMode::Flag, &|| "EXTRACTIVE".into()).unwrap();
        assert!(v.reasons.contains(&Reason::UnsupportedNumber), "{v:?}");
        assert!(!v.reasons.contains(&Reason::UnsupportedName), "{v:?}");
    }

    #[test]
    fn too_little_left_falls_back_and_says_so() {
        let v = run(
            "The library was founded in 1887 by Mayor Bloomberg.",
            GuardMode::Repair,
        );
        assert_eq!(v.outcome, Outcome::Fallback);
        assert_eq!(v.text, "EXTRACTIVE");
        assert!(v.reasons.contains(&Reason::TooShort));
    }

    #[test]
    fn flag_keeps_the_text_and_fallback_replaces_it() {
        let s = "The library lends 140 tools and 99 ladders to members of the public every week.";
        let v = run(s, GuardMode::Flag);
        assert_eq!((v.outcome, v.text.as_str()), (Outcome::Flagged, s));
        assert!(v.reasons.contains(&Reason::UnsupportedNumber));
        assert_eq!(run(s, GuardMode::Fallback).outcome, Outcome::Fallback);
        let prompt: [&str; 0] = [];
        assert!(guard(s, &ctx(&prompt), GuardMode::Off, &String::new).is_none());
    }

    #[test]
    fn prompt_echo_and_loops_are_dropped() {
        let s = "The Riverside library now lends 140 tools, from drills to ladders. \
                 Report only what the document says and do not add facts. \
                 Members can reserve tools online and collect them on Saturdays. \
                 The tools the tools the tools the tools are free. \
                 The Riverside library now lends 140 tools from drills to ladders.";
        let v = run(s, GuardMode::Repair);
        assert_eq!(v.outcome, Outcome::Repaired, "{v:?}");
        assert!(v.reasons.contains(&Reason::PromptEcho));
        assert!(v.reasons.contains(&Reason::Repetition));
        assert_eq!(v.dropped.len(), 3, "{v:?}");
    }

    #[test]
    fn overlong_summaries_are_trimmed_at_a_sentence() {
        let sentence = "Members can reserve tools online and collect them on Saturdays.";
        let long = [
            "The Riverside library now lends 140 tools, from drills to ladders.",
            "Librarian Ana Costa said members borrowed tools 2,300 times in the first year.",
            "The scheme costs the city $12,000 a year and is funded by a grant from the Hale Trust.",
            sentence,
            "The library plans to add gardening tools next spring.",
        ]
        .join(" ");
        let v = run(&long, GuardMode::Repair);
        assert_eq!(v.outcome, Outcome::Repaired, "{v:?}");
        assert_eq!(v.reasons, vec![Reason::TooLong]);
        assert!(text::word_count(&v.text) <= 60);
        assert!(v.text.ends_with('.'));
    }

    #[test]
    fn language_mismatch_falls_back() {
        let s = "La biblioteca de Riverside presta herramientas gratuitas a todos los miembros de la comunidad cada semana del año.";
        let v = run(s, GuardMode::Repair);
        assert!(v.reasons.contains(&Reason::LanguageMismatch), "{v:?}");
        assert_eq!(v.outcome, Outcome::Fallback);
    }

    #[test]
    fn clean_strips_labels_markers_and_preambles() {
        let raw = "Here is a summary of the document:\n\
                   Title: Tool library\n\
                   <<<DOCUMENT 3eead2c81f0a>>>\n\
                   Summary: The library lends 140 tools.\n\
                   ## Key facts\n\
                   - Members borrow tools.\n\
                   DOCUMENT 526F917D855A";
        let c = clean(raw);
        assert_eq!(
            c.text,
            "The library lends 140 tools.\n- Members borrow tools."
        );
        assert_eq!(c.stripped, 6);
        // A bold label standing alone is a heading; "#1" opening prose is not.
        let c = clean("**Summary**\n#1 priority is safety, the librarian said.");
        assert_eq!(c.text, "#1 priority is safety, the librarian said.");
        assert_eq!(c.stripped, 1);
        let plain = clean("The library lends 140 tools. Update: it opens Sundays.");
        assert_eq!(plain.stripped, 0);
        assert_eq!(
            plain.text,
            "The library lends 140 tools. Update: it opens Sundays."
        );
    }

    #[test]
    fn bullets_keep_their_markers_when_repaired() {
        let s = "- The Riverside library now lends 140 tools, from drills to ladders.\n- It was opened by Mayor Bloomberg.\n- Members borrowed tools 2,300 times in the first year.";
        let v = run(s, GuardMode::Repair);
        assert_eq!(v.outcome, Outcome::Repaired);
        assert_eq!(
            v.text,
            "- The Riverside library now lends 140 tools, from drills to ladders.\n- Members borrowed tools 2,300 times in the first year."
        );
    }

    #[test]
    fn mode_names_round_trip() {
        for m in [
            GuardMode::Repair,
            GuardMode::Fallback,
            GuardMode::Flag,
            GuardMode::Off,
        ] {
            assert_eq!(GuardMode::parse(m.as_str()).unwrap(), m);
        }
        assert!(GuardMode::parse("maybe").is_err());
    }
}
