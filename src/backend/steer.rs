//! Copy-aware decoding for the local model: what the next token may be, decided from the
//! logits the model produced, the tokens so far and the document being summarized.
//!
//! It owns four rules, applied in this order at every step of greedy decoding:
//! 1. a repetition penalty over the last `repeat_last_n` tokens (llama.cpp's), so the small
//!    model does not loop;
//! 2. no repeated n-gram: a token that would write a `no_repeat_ngram`-token sequence the
//!    summary already contains is banned (as BART and PEGASUS decode CNN/DM);
//! 3. a copy bonus: tokens that continue a span of the document (the longest suffix of what was
//!    written that also occurs in the document) get `copy_bonus` added, scaled by the length of
//!    the match, so the model reuses the document's words, names and figures instead of making
//!    up its own;
//! 4. a sentence stop: once the summary has `stop_words` words and a sentence has just ended,
//!    the only token left is end-of-reply, so a summary stops at the requested length on a
//!    sentence boundary instead of running to the token limit.
//!
//! Tokens that can only write the prompt's scaffolding (`<<<`, `>>>`) or a link the document
//! does not contain are banned outright. Everything here is pure and deterministic: the same
//! logits and tokens give the same result. It must not know about mistral.rs or tensors.

use std::sync::{Arc, Mutex};

/// The model's vocabulary as text, built once per run.
#[derive(Debug)]
pub struct Vocab {
    /// The text each token writes (byte-level pieces of a multibyte character decode to U+FFFD).
    pieces: Vec<String>,
    /// Ids that end a reply (banned while the reply is too short).
    eos: Vec<u32>,
    /// The ids the engine surely stops on, the only ones allowed once the reply should stop.
    stop: Vec<u32>,
    /// Ids banned in every summary: pieces of the fence markers.
    scaffolding: Vec<u32>,
    /// Ids that start a link, banned where the document has none.
    links: Vec<u32>,
}

impl Vocab {
    pub fn new(pieces: Vec<String>, eos: Vec<u32>) -> Vocab {
        let find = |pred: &dyn Fn(&str) -> bool| -> Vec<u32> {
            pieces
                .iter()
                .enumerate()
                .filter(|(_, p)| pred(p))
                .map(|(i, _)| i as u32)
                .collect()
        };
        let scaffolding = find(&|p| p.contains("<<") || p.contains(">>"));
        let links = find(&|p| {
            let p = p.trim_start().to_ascii_lowercase();
            p.starts_with("http") || p.starts_with("www") || p.contains("://")
        });
        Vocab {
            pieces,
            stop: eos.clone(),
            eos,
            scaffolding,
            links,
        }
    }

    /// Narrows the forced stop to `stop` (the model file's own end token), when it is known:
    /// another end-like token the engine does not stop on would let the reply run on.
    pub fn with_stop(mut self, stop: Option<u32>) -> Vocab {
        if let Some(id) = stop {
            self.stop = vec![id];
        }
        self
    }

    pub fn len(&self) -> usize {
        self.pieces.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pieces.is_empty()
    }

    fn piece(&self, id: u32) -> &str {
        self.pieces.get(id as usize).map_or("", String::as_str)
    }
}

/// How one request is steered.
#[derive(Debug, Clone, PartialEq)]
pub struct SteerConfig {
    /// CTRL repetition penalty (1.0 = off).
    pub repeat_penalty: f32,
    /// Tokens the repetition penalty looks back over.
    pub repeat_last_n: usize,
    /// Length in tokens of the n-grams that may not repeat (0 = off).
    pub no_repeat_ngram: usize,
    /// Logit bonus for a token that continues a span of the document (0 = off).
    pub copy_bonus: f32,
    /// Longest document span, in tokens, that the bonus grows with.
    pub copy_span: usize,
    /// Logit bonus for opening the summary with the document's first token (its lead).
    pub lead_bonus: f32,
    /// Words after which the first sentence end stops the summary (`None` = never).
    pub stop_words: Option<usize>,
    /// Words before which the reply may not end (0 = no minimum).
    pub min_words: usize,
}

/// The state of one request: the document's tokens and where the reply starts.
pub struct Steer {
    vocab: Arc<Vocab>,
    config: SteerConfig,
    source: Vec<u32>,
    banned: Vec<u32>,
    /// Length of the context at the first step: everything after it is the reply.
    prompt_len: Mutex<Option<usize>>,
}

impl Steer {
    /// `source` is the document as the model's tokenizer encodes it; `source_text` decides
    /// whether links are allowed.
    pub fn new(
        vocab: Arc<Vocab>,
        config: SteerConfig,
        source: Vec<u32>,
        source_text: &str,
    ) -> Steer {
        let lower = source_text.to_ascii_lowercase();
        let mut banned = vocab.scaffolding.clone();
        if !(lower.contains("http") || lower.contains("www") || lower.contains("://")) {
            banned.extend(&vocab.links);
        }
        Steer {
            vocab,
            config,
            source,
            banned,
            prompt_len: Mutex::new(None),
        }
    }

    /// Adjusts `logits` (one value per vocabulary id) for the step after `context` (prompt and
    /// reply so far).
    pub fn apply(&self, logits: &mut [f32], context: &[u32]) {
        let start = {
            let mut p = self.prompt_len.lock().unwrap_or_else(|e| e.into_inner());
            *p.get_or_insert(context.len())
        };
        let reply = &context[start.min(context.len())..];

        self.repeat_penalty(logits, context);
        // The reply as text, once per step, for the length rules.
        let needs_text = self.config.stop_words.is_some() || self.config.min_words > 0;
        let text: String = if needs_text {
            reply.iter().map(|&t| self.vocab.piece(t)).collect()
        } else {
            String::new()
        };
        let words = crate::text::word_count(&text);
        if self.should_stop(&text, words) {
            for (id, l) in logits.iter_mut().enumerate() {
                if !self.vocab.stop.contains(&(id as u32)) {
                    *l = f32::NEG_INFINITY;
                }
            }
            return;
        }
        if reply.is_empty() {
            // The first token of the reply: the document's own opening (its lead).
            if let Some(l) = self
                .source
                .first()
                .and_then(|&t| logits.get_mut(t as usize))
            {
                *l += self.config.lead_bonus;
            }
        }
        self.copy_bonus(logits, reply);
        if words < self.config.min_words {
            for &id in &self.vocab.eos {
                if let Some(l) = logits.get_mut(id as usize) {
                    *l = f32::NEG_INFINITY;
                }
            }
        }
        for &id in &self.banned {
            if let Some(l) = logits.get_mut(id as usize) {
                *l = f32::NEG_INFINITY;
            }
        }
        self.ban_repeated_ngrams(logits, reply);
    }

    fn repeat_penalty(&self, logits: &mut [f32], context: &[u32]) {
        let penalty = self.config.repeat_penalty;
        if penalty == 1.0 || context.is_empty() {
            return;
        }
        let window = &context[context.len().saturating_sub(self.config.repeat_last_n)..];
        let mut seen = std::collections::HashSet::with_capacity(window.len());
        for &token in window {
            if seen.insert(token) {
                if let Some(l) = logits.get_mut(token as usize) {
                    *l = if *l > 0.0 { *l / penalty } else { *l * penalty };
                }
            }
        }
    }

    /// Whether the reply (`text`, `words` long) has reached its length and just finished a
    /// sentence.
    fn should_stop(&self, text: &str, words: usize) -> bool {
        match self.config.stop_words {
            Some(stop) => !text.is_empty() && words >= stop && crate::text::ends_sentence(text),
            None => false,
        }
    }

    fn copy_bonus(&self, logits: &mut [f32], reply: &[u32]) {
        let bonus = self.config.copy_bonus;
        if bonus == 0.0 || self.source.is_empty() {
            return;
        }
        let span = self.config.copy_span.max(1);
        // Best match length of the reply's suffix ending at each source position; the token
        // after that position continues the span.
        let mut best: Vec<(u32, usize)> = Vec::new();
        if let Some(&last) = reply.last() {
            for (i, &t) in self.source.iter().enumerate() {
                if t != last || i + 1 >= self.source.len() {
                    continue;
                }
                let mut k = 1;
                while k < span
                    && k < reply.len()
                    && k <= i
                    && self.source[i - k] == reply[reply.len() - 1 - k]
                {
                    k += 1;
                }
                best.push((self.source[i + 1], k));
            }
        } else {
            // The first token: the lead bonus above, no span to continue yet.
            return;
        }
        best.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        best.dedup_by_key(|(t, _)| *t);
        for (t, k) in best {
            if let Some(l) = logits.get_mut(t as usize) {
                *l += bonus * k as f32 / span as f32;
            }
        }
    }

    fn ban_repeated_ngrams(&self, logits: &mut [f32], reply: &[u32]) {
        let n = self.config.no_repeat_ngram;
        if n < 2 || reply.len() < n {
            return;
        }
        let prefix = &reply[reply.len() - (n - 1)..];
        for w in reply.windows(n) {
            if &w[..n - 1] == prefix {
                if let Some(l) = logits.get_mut(w[n - 1] as usize) {
                    *l = f32::NEG_INFINITY;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A toy vocabulary: id = index.
    fn vocab() -> Arc<Vocab> {
        let pieces = [
            "<eos>", " The", " cat", " sat", ".", " on", " the", " mat", " Dr", " <<<", " http",
            " dog",
        ];
        Arc::new(Vocab::new(
            pieces.iter().map(|s| s.to_string()).collect(),
            vec![0],
        ))
    }

    fn config() -> SteerConfig {
        SteerConfig {
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            no_repeat_ngram: 0,
            copy_bonus: 0.0,
            copy_span: 3,
            lead_bonus: 0.0,
            stop_words: None,
            min_words: 0,
        }
    }

    const PROMPT: [u32; 2] = [1, 2];

    fn argmax(l: &[f32]) -> usize {
        (0..l.len()).max_by(|&a, &b| l[a].total_cmp(&l[b])).unwrap()
    }

    #[test]
    fn bans_scaffolding_and_links_unless_the_document_has_links() {
        let steer = Steer::new(vocab(), config(), vec![], "no links here");
        let mut l = vec![0.0; 12];
        steer.apply(&mut l, &PROMPT);
        assert_eq!(l[9], f32::NEG_INFINITY);
        assert_eq!(l[10], f32::NEG_INFINITY);
        let steer = Steer::new(vocab(), config(), vec![], "see http://example.org");
        let mut l = vec![0.0; 12];
        steer.apply(&mut l, &PROMPT);
        assert_eq!(l[9], f32::NEG_INFINITY);
        assert_eq!(l[10], 0.0);
    }

    #[test]
    fn copy_bonus_follows_the_longest_document_span() {
        // Document: "The cat sat on the mat." The reply so far: "The cat".
        let source = vec![1, 2, 3, 5, 6, 7, 4];
        let steer = Steer::new(
            vocab(),
            SteerConfig {
                copy_bonus: 3.0,
                ..config()
            },
            source,
            "The cat sat on the mat.",
        );
        let mut l = vec![0.0; 12];
        steer.apply(&mut l, &PROMPT); // the first step fixes where the reply starts
        let mut l = vec![0.0; 12];
        l[11] = 1.5; // the model prefers " dog"
        steer.apply(&mut l, &[1, 2, 1, 2]);
        assert_eq!(argmax(&l), 3, "{l:?}"); // " sat" continues the span
        assert!((l[3] - 2.0).abs() < 1e-6, "two tokens matched of three");
    }

    #[test]
    fn stops_at_the_first_sentence_end_after_the_length() {
        let steer = Steer::new(
            vocab(),
            SteerConfig {
                stop_words: Some(3),
                ..config()
            },
            vec![],
            "",
        );
        let mut l = vec![0.0; 12];
        steer.apply(&mut l, &PROMPT);
        // "The cat." has two words: go on.
        let mut l = vec![1.0; 12];
        steer.apply(&mut l, &[1, 2, 1, 2, 4]);
        assert_eq!(l[1], 1.0);
        // "The cat sat on" has four words but no sentence end: go on.
        let mut l = vec![1.0; 12];
        steer.apply(&mut l, &[1, 2, 1, 2, 3, 5]);
        assert_eq!(l[1], 1.0);
        // "The cat sat on the mat." : only end-of-reply is left.
        let mut l = vec![1.0; 12];
        steer.apply(&mut l, &[1, 2, 1, 2, 3, 5, 6, 7, 4]);
        assert_eq!(argmax(&l), 0);
        assert!(l[1..].iter().all(|v| *v == f32::NEG_INFINITY));
    }

    #[test]
    fn the_reply_cannot_end_before_its_minimum_and_may_open_with_the_lead() {
        let steer = Steer::new(
            vocab(),
            SteerConfig {
                min_words: 3,
                copy_bonus: 1.0,
                lead_bonus: 5.0,
                ..config()
            },
            vec![1, 2, 3, 4],
            "The cat sat.",
        );
        // The first step: " The" (the document's first token) gets the lead bonus.
        let mut l = vec![0.0; 12];
        l[11] = 2.0;
        steer.apply(&mut l, &PROMPT);
        assert_eq!(argmax(&l), 1, "{l:?}");
        assert_eq!(l[0], f32::NEG_INFINITY, "no end of reply before 3 words");
        // "The cat sat" has three words: the reply may end.
        let mut l = vec![0.0; 12];
        l[0] = 9.0;
        steer.apply(&mut l, &[1, 2, 1, 2, 3]);
        assert_eq!(argmax(&l), 0);
    }

    #[test]
    fn repeated_ngrams_are_banned() {
        let steer = Steer::new(
            vocab(),
            SteerConfig {
                no_repeat_ngram: 3,
                ..config()
            },
            vec![],
            "",
        );
        let mut l = vec![0.0; 12];
        steer.apply(&mut l, &PROMPT);
        // Reply "The cat sat The cat": "sat" would repeat "The cat sat".
        let mut l = vec![0.0; 12];
        steer.apply(&mut l, &[1, 2, 1, 2, 3, 1, 2]);
        assert_eq!(l[3], f32::NEG_INFINITY);
        assert_eq!(l[5], 0.0);
    }

    #[test]
    fn repetition_penalty_scales_recent_tokens() {
        let steer = Steer::new(
            vocab(),
            SteerConfig {
                repeat_penalty: 2.0,
                ..config()
            },
            vec![],
            "",
        );
        let mut l = vec![4.0; 12];
        l[2] = -1.0;
        steer.apply(&mut l, &[1, 2]);
        assert_eq!((l[1], l[2], l[3]), (2.0, -2.0, 4.0));
    }
}
