//! Token-budget chunking. Text is split at paragraph breaks, then line breaks, then sentence
//! ends, then spaces, then (for a run with no spaces at all) characters, and the pieces are
//! packed greedily into chunks that each fit the budget. Chunks are contiguous slices of the
//! input: concatenated, they are the input, so nothing is ever dropped. Pure; the token counter
//! is passed in, so the same code serves every backend's tokenizer.

/// Boundary kinds, coarsest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    Paragraph,
    Line,
    Sentence,
    Word,
    Char,
}

impl Level {
    fn finer(self) -> Option<Level> {
        match self {
            Level::Paragraph => Some(Level::Line),
            Level::Line => Some(Level::Sentence),
            Level::Sentence => Some(Level::Word),
            Level::Word => Some(Level::Char),
            Level::Char => None,
        }
    }
}

/// Splits `text` into chunks of at most `budget` tokens as counted by `count`.
/// A single character that alone exceeds the budget still becomes its own chunk.
pub fn chunk<'a>(text: &'a str, budget: usize, count: &dyn Fn(&str) -> usize) -> Vec<&'a str> {
    let budget = budget.max(1);
    if text.is_empty() {
        return Vec::new();
    }
    if count(text) <= budget {
        return vec![text];
    }
    let mut atoms = Vec::new();
    split_to_fit(text, 0, Level::Paragraph, budget, count, &mut atoms);
    pack(text, &atoms, budget, count)
}

/// Appends byte ranges (start, end, tokens) of pieces that each fit the budget.
fn split_to_fit(
    text: &str,
    offset: usize,
    level: Level,
    budget: usize,
    count: &dyn Fn(&str) -> usize,
    out: &mut Vec<(usize, usize, usize)>,
) {
    for (start, end) in split_at(text, level) {
        let piece = &text[start..end];
        let tokens = count(piece);
        match level.finer() {
            Some(finer) if tokens > budget => {
                split_to_fit(piece, offset + start, finer, budget, count, out)
            }
            _ => out.push((offset + start, offset + end, tokens)),
        }
    }
}

/// Greedy packing: consecutive pieces join while the joined text still fits.
fn pack<'a>(
    text: &'a str,
    atoms: &[(usize, usize, usize)],
    budget: usize,
    count: &dyn Fn(&str) -> usize,
) -> Vec<&'a str> {
    let mut chunks = Vec::new();
    let mut i = 0;
    while i < atoms.len() {
        let start = atoms[i].0;
        let mut end = atoms[i].1;
        let mut estimate = atoms[i].2;
        let mut j = i + 1;
        while j < atoms.len() && estimate + atoms[j].2 <= budget {
            // Token counts are nearly additive across a boundary; confirm with a real count.
            if count(&text[start..atoms[j].1]) > budget {
                break;
            }
            estimate += atoms[j].2;
            end = atoms[j].1;
            j += 1;
        }
        chunks.push(&text[start..end]);
        i = j;
    }
    chunks
}

/// Splits into pieces at one boundary level; separators stay with the piece before them.
fn split_at(text: &str, level: Level) -> Vec<(usize, usize)> {
    let bytes = text.as_bytes();
    let mut cuts = Vec::new();
    match level {
        Level::Paragraph | Level::Line => {
            let mut i = 0;
            while i < bytes.len() {
                if bytes[i] == b'\n' {
                    let mut j = i + 1;
                    let mut newlines = 1;
                    while j < bytes.len() && bytes[j].is_ascii_whitespace() {
                        newlines += (bytes[j] == b'\n') as usize;
                        j += 1;
                    }
                    if level == Level::Line || newlines >= 2 {
                        cuts.push(j);
                    }
                    i = j;
                } else {
                    i += 1;
                }
            }
        }
        Level::Sentence => {
            let mut chars = text.char_indices().peekable();
            while let Some((_, c)) = chars.next() {
                if matches!(c, '.' | '!' | '?' | '。' | '！' | '？') {
                    while let Some(&(_, q)) = chars.peek() {
                        if matches!(q, '"' | '\'' | ')' | ']' | '”' | '’' | '.' | '!' | '?') {
                            chars.next();
                        } else {
                            break;
                        }
                    }
                    let mut saw_space = false;
                    while let Some(&(_, w)) = chars.peek() {
                        if w.is_whitespace() {
                            saw_space = true;
                            chars.next();
                        } else {
                            break;
                        }
                    }
                    let at = chars.peek().map_or(text.len(), |&(i, _)| i);
                    if saw_space || matches!(c, '。' | '！' | '？') {
                        cuts.push(at);
                    }
                }
            }
        }
        Level::Word => {
            let mut in_space = false;
            for (i, c) in text.char_indices() {
                if c.is_whitespace() {
                    in_space = true;
                } else if in_space {
                    cuts.push(i);
                    in_space = false;
                }
            }
        }
        Level::Char => {
            cuts.extend(text.char_indices().map(|(i, _)| i).skip(1));
        }
    }
    let mut pieces = Vec::with_capacity(cuts.len() + 1);
    let mut start = 0;
    for cut in cuts {
        if cut > start && cut < text.len() {
            pieces.push((start, cut));
            start = cut;
        }
    }
    pieces.push((start, text.len()));
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn words(s: &str) -> usize {
        s.split_whitespace().count()
    }

    #[test]
    fn short_text_is_one_chunk() {
        assert_eq!(chunk("a b c", 10, &words), vec!["a b c"]);
        assert!(chunk("", 10, &words).is_empty());
    }

    #[test]
    fn prefers_paragraph_then_sentence_boundaries() {
        let text = "One two three. Four five six.\n\nSeven eight nine. Ten eleven twelve.";
        let chunks = chunk(text, 6, &words);
        assert_eq!(
            chunks,
            vec![
                "One two three. Four five six.\n\n",
                "Seven eight nine. Ten eleven twelve."
            ]
        );
        let chunks = chunk(text, 3, &words);
        assert_eq!(chunks[0], "One two three. ");
        assert_eq!(chunks.concat(), text);
    }

    #[test]
    fn a_run_without_spaces_is_split_by_characters() {
        let long = "x".repeat(50);
        let chunks = chunk(&long, 8, &|s: &str| s.chars().count());
        assert!(chunks.iter().all(|c| c.chars().count() <= 8));
        assert_eq!(chunks.concat(), long);
    }

    proptest! {
        #[test]
        fn chunks_rebuild_the_text_and_fit(text in "[a-zé .!?\n世]{0,400}", budget in 1usize..40) {
            let count = |s: &str| s.chars().count();
            let chunks = chunk(&text, budget, &count);
            prop_assert_eq!(chunks.concat(), text.clone());
            for c in &chunks {
                prop_assert!(count(c) <= budget, "chunk {:?} over budget {}", c, budget);
                prop_assert!(!c.is_empty());
            }
        }

        #[test]
        fn word_budget_chunks_fit(text in "([a-z]{1,8}[ .\n]{1,3}){0,200}", budget in 1usize..30) {
            let chunks = chunk(&text, budget, &words);
            prop_assert_eq!(chunks.concat(), text.clone());
            for c in &chunks {
                prop_assert!(words(c) <= budget);
            }
        }
    }
}
