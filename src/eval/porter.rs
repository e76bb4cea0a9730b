//! Porter stemmer, ported from NLTK's `PorterStemmer()` in its default `NLTK_EXTENSIONS` mode
//! (nltk 3.x, `nltk/stem/porter.py`, Apache-2.0), because Google rouge-score stems with exactly
//! that stemmer and ROUGE numbers only compare when the stems are identical.
//!
//! This module owns the stemming rules and nothing else: it must not tokenize, lowercase
//! Unicode, or "improve" on NLTK (no Porter2/Snowball rules, no original-paper variants), since
//! every deviation shifts ROUGE scores away from the published tooling.

/// Words NLTK maps by table before running the rules; the rules get all of them wrong.
const IRREGULAR_FORMS: &[(&str, &str)] = &[
    ("sky", "sky"),
    ("skies", "sky"),
    ("dying", "die"),
    ("lying", "lie"),
    ("tying", "tie"),
    ("news", "news"),
    ("innings", "inning"),
    ("inning", "inning"),
    ("outings", "outing"),
    ("outing", "outing"),
    ("cannings", "canning"),
    ("canning", "canning"),
    ("howe", "howe"),
    ("proceed", "proceed"),
    ("exceed", "exceed"),
    ("succeed", "succeed"),
];

/// Stems one word the way NLTK's default `PorterStemmer().stem(word)` does.
///
/// Meant for the `[a-z0-9]` tokens rouge-score produces; ASCII capitals are lowercased as NLTK
/// does. A word with non-ASCII characters is returned unchanged: the rules here index bytes,
/// while NLTK indexes characters, so stemming it would not match NLTK anyway.
pub fn stem(word: &str) -> String {
    if !word.is_ascii() {
        return word.to_string();
    }
    let mut out = Vec::with_capacity(word.len() + 2);
    stem_into(word.as_bytes(), &mut out);
    // The rules only ever append ASCII letters to an ASCII word.
    String::from_utf8(out).expect("stemming ASCII yields ASCII")
}

/// Stems an ASCII word into `out` (cleared first), without allocating a `String`; the ROUGE
/// tokenizer calls this once per distinct token.
pub(crate) fn stem_into(word: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.extend(word.iter().map(u8::to_ascii_lowercase));
    if let Some((_, irregular)) = IRREGULAR_FORMS
        .iter()
        .find(|(w, _)| w.as_bytes() == &out[..])
    {
        out.clear();
        out.extend_from_slice(irregular.as_bytes());
        return;
    }
    // NLTK leaves one- and two-letter words alone in its extended modes.
    if out.len() <= 2 {
        return;
    }
    step1a(out);
    step1b(out);
    step1c(out);
    step2(out);
    step3(out);
    step4(out);
    step5a(out);
    step5b(out);
}

fn is_vowel(b: u8) -> bool {
    matches!(b, b'a' | b'e' | b'i' | b'o' | b'u')
}

/// A 'y' is a consonant when the letter before it is a vowel or it starts the word, so a run
/// of 'y's alternates; everything that is not a vowel or 'y' (digits included) is a consonant.
fn is_consonant(word: &[u8], mut i: usize) -> bool {
    if is_vowel(word[i]) {
        return false;
    }
    if word[i] != b'y' {
        return true;
    }
    // Walk back over the run of 'y's instead of recursing; each one flips the answer.
    let mut negate = false;
    while i > 0 && word[i] == b'y' {
        negate = !negate;
        i -= 1;
    }
    // Here word[i] is the letter before the run, or a leading 'y' (a consonant).
    is_vowel(word[i]) == negate
}

/// Porter's m: the number of vowel-to-consonant transitions, computed in one pass.
fn measure(stem: &[u8]) -> usize {
    let mut m = 0;
    let mut prev_consonant = true;
    let mut prev_vowel = false;
    for (i, &b) in stem.iter().enumerate() {
        let consonant = if is_vowel(b) {
            false
        } else if b == b'y' {
            i == 0 || !prev_consonant
        } else {
            true
        };
        if consonant && prev_vowel {
            m += 1;
        }
        prev_vowel = !consonant;
        prev_consonant = consonant;
    }
    m
}

fn contains_vowel(stem: &[u8]) -> bool {
    (0..stem.len()).any(|i| !is_consonant(stem, i))
}

fn ends_double_consonant(word: &[u8]) -> bool {
    let n = word.len();
    n >= 2 && word[n - 1] == word[n - 2] && is_consonant(word, n - 1)
}

/// Condition *o, plus NLTK's extension that a two-letter vowel-consonant stem also counts.
fn ends_cvc(word: &[u8]) -> bool {
    let n = word.len();
    (n >= 3
        && is_consonant(word, n - 3)
        && !is_consonant(word, n - 2)
        && is_consonant(word, n - 1)
        && !matches!(word[n - 1], b'w' | b'x' | b'y'))
        || (n == 2 && !is_consonant(word, 0) && is_consonant(word, 1))
}

type Condition = fn(&[u8]) -> bool;

fn always(_: &[u8]) -> bool {
    true
}

fn m_gt0(stem: &[u8]) -> bool {
    measure(stem) > 0
}

fn m_gt1(stem: &[u8]) -> bool {
    measure(stem) > 1
}

/// NLTK's `_apply_rule_list`: the first rule whose suffix matches decides, and a failed
/// condition stops the search instead of falling through to shorter suffixes.
fn apply_rules(word: &mut Vec<u8>, rules: &[(&[u8], &[u8], Condition)]) {
    for &(suffix, replacement, condition) in rules {
        if word.ends_with(suffix) {
            let stem_len = word.len() - suffix.len();
            if condition(&word[..stem_len]) {
                word.truncate(stem_len);
                word.extend_from_slice(replacement);
            }
            return;
        }
    }
}

fn step1a(word: &mut Vec<u8>) {
    // NLTK: 'dies' -> 'die' while 'flies' -> 'fli'.
    if word.len() == 4 && word.ends_with(b"ies") {
        word.truncate(3);
        return;
    }
    apply_rules(
        word,
        &[
            (b"sses", b"ss", always),
            (b"ies", b"i", always),
            (b"ss", b"ss", always),
            (b"s", b"", always),
        ],
    );
}

fn step1b(word: &mut Vec<u8>) {
    // NLTK: 'died' -> 'die' while 'spied' -> 'spi'.
    if word.ends_with(b"ied") {
        let keep_e = word.len() == 4;
        word.truncate(word.len() - 3);
        word.extend_from_slice(if keep_e { b"ie" } else { b"i" });
        return;
    }
    if word.ends_with(b"eed") {
        if measure(&word[..word.len() - 3]) > 0 {
            word.pop();
        }
        return;
    }
    let mut stripped = false;
    for suffix in [&b"ed"[..], b"ing"] {
        if word.ends_with(suffix) && contains_vowel(&word[..word.len() - suffix.len()]) {
            word.truncate(word.len() - suffix.len());
            stripped = true;
            break;
        }
    }
    if !stripped {
        return;
    }
    if word.ends_with(b"at") || word.ends_with(b"bl") || word.ends_with(b"iz") {
        word.push(b'e');
        return;
    }
    if ends_double_consonant(word) {
        if !matches!(word[word.len() - 1], b'l' | b's' | b'z') {
            word.pop();
        }
        return;
    }
    if measure(word) == 1 && ends_cvc(word) {
        word.push(b'e');
    }
}

fn step1c(word: &mut [u8]) {
    // NLTK: y -> i only after a consonant that is not the whole stem ('happy' -> 'happi',
    // 'enjoy' and 'by' stay).
    if let Some((&b'y', stem)) = word.split_last() {
        if stem.len() > 1 && is_consonant(stem, stem.len() - 1) {
            let n = word.len();
            word[n - 1] = b'i';
        }
    }
}

/// NLTK measures 'logi' stems with the 'l' kept, so 'geo-logi' behaves like 'archaeo-logi'.
fn logi_condition(stem: &[u8]) -> bool {
    let mut with_l = stem.to_vec();
    with_l.push(b'l');
    measure(&with_l) > 0
}

fn step2(word: &mut Vec<u8>) {
    // NLTK applies ALLI -> AL before the other rules and then runs step 2 again.
    if word.ends_with(b"alli") && measure(&word[..word.len() - 4]) > 0 {
        word.truncate(word.len() - 2);
        step2(word);
        return;
    }
    apply_rules(
        word,
        &[
            (b"ational", b"ate", m_gt0),
            (b"tional", b"tion", m_gt0),
            (b"enci", b"ence", m_gt0),
            (b"anci", b"ance", m_gt0),
            (b"izer", b"ize", m_gt0),
            (b"bli", b"ble", m_gt0),
            (b"alli", b"al", m_gt0),
            (b"entli", b"ent", m_gt0),
            (b"eli", b"e", m_gt0),
            (b"ousli", b"ous", m_gt0),
            (b"ization", b"ize", m_gt0),
            (b"ation", b"ate", m_gt0),
            (b"ator", b"ate", m_gt0),
            (b"alism", b"al", m_gt0),
            (b"iveness", b"ive", m_gt0),
            (b"fulness", b"ful", m_gt0),
            (b"ousness", b"ous", m_gt0),
            (b"aliti", b"al", m_gt0),
            (b"iviti", b"ive", m_gt0),
            (b"biliti", b"ble", m_gt0),
            (b"fulli", b"ful", m_gt0),
            (b"logi", b"log", logi_condition),
        ],
    );
}

fn step3(word: &mut Vec<u8>) {
    apply_rules(
        word,
        &[
            (b"icate", b"ic", m_gt0),
            (b"ative", b"", m_gt0),
            (b"alize", b"al", m_gt0),
            (b"iciti", b"ic", m_gt0),
            (b"ical", b"ic", m_gt0),
            (b"ful", b"", m_gt0),
            (b"ness", b"", m_gt0),
        ],
    );
}

fn ion_condition(stem: &[u8]) -> bool {
    measure(stem) > 1 && matches!(stem.last(), Some(b's' | b't'))
}

fn step4(word: &mut Vec<u8>) {
    apply_rules(
        word,
        &[
            (b"al", b"", m_gt1),
            (b"ance", b"", m_gt1),
            (b"ence", b"", m_gt1),
            (b"er", b"", m_gt1),
            (b"ic", b"", m_gt1),
            (b"able", b"", m_gt1),
            (b"ible", b"", m_gt1),
            (b"ant", b"", m_gt1),
            (b"ement", b"", m_gt1),
            (b"ment", b"", m_gt1),
            (b"ent", b"", m_gt1),
            (b"ion", b"", ion_condition),
            (b"ou", b"", m_gt1),
            (b"ism", b"", m_gt1),
            (b"ate", b"", m_gt1),
            (b"iti", b"", m_gt1),
            (b"ous", b"", m_gt1),
            (b"ive", b"", m_gt1),
            (b"ize", b"", m_gt1),
        ],
    );
}

fn step5a(word: &mut Vec<u8>) {
    // Unlike the rule lists, both E rules are tried here (NLTK infers this from the paper's
    // examples), so this cannot go through `apply_rules`.
    if let Some((&b'e', stem)) = word.split_last() {
        let m = measure(stem);
        if m > 1 || (m == 1 && !ends_cvc(stem)) {
            word.pop();
        }
    }
}

fn step5b(word: &mut Vec<u8>) {
    // NLTK measures the word minus one 'l' here, not the stem minus 'll'.
    if word.ends_with(b"ll") && measure(&word[..word.len() - 1]) > 1 {
        word.pop();
    }
}

#[cfg(test)]
mod tests {
    use super::stem;

    #[test]
    fn matches_nltk_on_known_words() {
        let cases = [
            ("dying", "die"),
            ("skies", "sky"),
            ("generously", "gener"),
            ("fairly", "fairli"),
            ("caresses", "caress"),
            ("ponies", "poni"),
            ("dies", "die"),
            ("died", "die"),
            ("spied", "spi"),
            ("agreed", "agre"),
            ("feed", "feed"),
            ("plastered", "plaster"),
            ("motoring", "motor"),
            ("conflated", "conflat"),
            ("hopping", "hop"),
            ("falling", "fall"),
            ("filing", "file"),
            ("happy", "happi"),
            ("enjoy", "enjoy"),
            ("relational", "relat"),
            ("conditional", "condit"),
            ("radically", "radic"),
            ("geology", "geolog"),
            ("hopefulness", "hope"),
            ("electrical", "electr"),
            ("adoption", "adopt"),
            ("controlling", "control"),
            ("probate", "probat"),
            ("cease", "ceas"),
            ("news", "news"),
            ("succeed", "succeed"),
            ("innings", "inning"),
            ("yyyy", "yyyi"),
            ("at", "at"),
            ("1990s", "1990"),
        ];
        for (word, want) in cases {
            assert_eq!(stem(word), want, "stem({word:?})");
        }
    }

    #[test]
    fn lowercases_ascii_and_leaves_non_ascii_alone() {
        assert_eq!(stem("Running"), "run");
        assert_eq!(stem("café"), "café");
    }
}
