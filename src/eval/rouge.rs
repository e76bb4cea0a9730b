//! ROUGE-1, ROUGE-2, ROUGE-L and ROUGE-Lsum, reimplemented to give the same numbers as Google
//! rouge-score 0.1.2 (`RougeScorer(..., use_stemmer)`, `split_summaries=False`), so scores
//! here compare with published results and with Python tooling to the last bit.
//!
//! This module owns tokenization and scoring of one (reference, candidate) pair. It must not
//! aggregate over a corpus (see `stats`), split sentences (rougeLsum takes lines as given, as
//! rouge-score does), or deviate from rouge-score even where rouge-score is odd: the value of
//! these numbers is that they match everyone else's.

use super::porter;

/// Precision, recall and F1 of one ROUGE variant, each in [0, 1].
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Prf {
    pub precision: f64,
    pub recall: f64,
    pub fmeasure: f64,
}

/// The four ROUGE variants rouge-score reports, named as rouge-score names them in JSON.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct RougeScores {
    pub rouge1: Prf,
    pub rouge2: Prf,
    #[serde(rename = "rougeL")]
    pub rouge_l: Prf,
    #[serde(rename = "rougeLsum")]
    pub rouge_lsum: Prf,
}

impl Prf {
    fn from_counts(hits: usize, candidate_total: usize, reference_total: usize) -> Prf {
        let precision = hits as f64 / candidate_total as f64;
        let recall = hits as f64 / reference_total as f64;
        // Same operation order as rouge-score's `scoring.fmeasure`, for bit-identical results.
        let fmeasure = if precision + recall > 0.0 {
            2.0 * precision * recall / (precision + recall)
        } else {
            0.0
        };
        Prf {
            precision,
            recall,
            fmeasure,
        }
    }
}

/// rouge-score's tokenizer (`tokenize.tokenize`), the one `score` uses: Python `str.lower()`,
/// every run of characters outside `[a-z0-9]` becomes a separator, and with `stem` tokens
/// longer than 3 characters go through NLTK's Porter stemmer.
pub fn tokenize(text: &str, stem: bool) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut stemmed = Vec::new();
    scan(text, |piece| {
        if let Piece::Token(raw) = piece {
            let token = if stem && raw.len() > 3 {
                porter::stem_into(raw, &mut stemmed);
                &stemmed[..]
            } else {
                raw
            };
            tokens.push(String::from_utf8(token.to_vec()).expect("tokens are ASCII"));
        }
    });
    tokens
}

/// Scores `candidate` against `reference` exactly as rouge-score's
/// `RougeScorer(["rouge1", "rouge2", "rougeL", "rougeLsum"], use_stemmer=stem)
/// .score(target=reference, prediction=candidate)` does. rougeLsum treats each `\n`-separated
/// line as a sentence.
pub fn score(reference: &str, candidate: &str, stem: bool) -> RougeScores {
    let mut vocab = Vocab::new(stem);
    let reference = vocab.tokenize(reference);
    let candidate = vocab.tokenize(candidate);
    let reference_counts = counts(&reference.ids, vocab.len());
    let candidate_counts = counts(&candidate.ids, vocab.len());
    RougeScores {
        rouge1: rouge1(
            &reference_counts,
            &candidate_counts,
            reference.ids.len(),
            candidate.ids.len(),
        ),
        rouge2: rouge2(&reference.ids, &candidate.ids),
        rouge_l: rouge_l(&reference.ids, &candidate.ids, vocab.len()),
        rouge_lsum: rouge_lsum(
            &reference,
            &candidate,
            vocab.len(),
            reference_counts,
            candidate_counts,
        ),
    }
}

fn rouge1(
    reference_counts: &[u32],
    candidate_counts: &[u32],
    reference_len: usize,
    candidate_len: usize,
) -> Prf {
    let hits: usize = reference_counts
        .iter()
        .zip(candidate_counts)
        .map(|(&r, &c)| r.min(c) as usize)
        .sum();
    Prf::from_counts(hits, candidate_len.max(1), reference_len.max(1))
}

fn rouge2(reference: &[u32], candidate: &[u32]) -> Prf {
    let mut reference_bigrams = bigrams(reference);
    let mut candidate_bigrams = bigrams(candidate);
    reference_bigrams.sort_unstable();
    candidate_bigrams.sort_unstable();
    // Clipped counts: in a merge of the two sorted lists, each equal pair is one hit.
    let (mut i, mut j, mut hits) = (0, 0, 0);
    while i < reference_bigrams.len() && j < candidate_bigrams.len() {
        match reference_bigrams[i].cmp(&candidate_bigrams[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                hits += 1;
                i += 1;
                j += 1;
            }
        }
    }
    Prf::from_counts(
        hits,
        candidate_bigrams.len().max(1),
        reference_bigrams.len().max(1),
    )
}

fn bigrams(ids: &[u32]) -> Vec<u64> {
    ids.windows(2)
        .map(|w| (u64::from(w[0]) << 32) | u64::from(w[1]))
        .collect()
}

fn rouge_l(reference: &[u32], candidate: &[u32], vocab_len: usize) -> Prf {
    if reference.is_empty() || candidate.is_empty() {
        return Prf::default();
    }
    Prf::from_counts(
        lcs_len(reference, candidate, vocab_len),
        candidate.len(),
        reference.len(),
    )
}

/// LCS length; only the length matters here, so the bits run over the reference (usually the
/// shorter text) and only one row is kept.
fn lcs_len(reference: &[u32], candidate: &[u32], vocab_len: usize) -> usize {
    let mut masks = MatchMasks::new(vocab_len);
    masks.load(reference);
    let mut row = vec![u64::MAX; masks.words];
    for &token in candidate {
        if let Some(mask) = masks.get(token) {
            advance_row(&mut row, mask);
        }
    }
    reference.len() - ones_below(&row, reference.len())
}

/// Summary-level LCS (ROUGE paper section 3.2) as rouge-score implements it: per reference
/// line, the union of one LCS against each candidate line, then hits capped by each token's
/// count in both whole texts so a token matched from several lines is not counted twice.
fn rouge_lsum(
    reference: &Tokens,
    candidate: &Tokens,
    vocab_len: usize,
    mut reference_budget: Vec<u32>,
    mut candidate_budget: Vec<u32>,
) -> Prf {
    if reference.ids.is_empty() || candidate.ids.is_empty() {
        return Prf::default();
    }
    // A union is order-independent, so candidate lines can be the outer loop and each line's
    // match masks are built once.
    let mut in_union = vec![false; reference.ids.len()];
    let mut masks = MatchMasks::new(vocab_len);
    let mut rows = Vec::new();
    for line in candidate.lines().filter(|l| !l.is_empty()) {
        masks.load(line);
        let mut start = 0;
        for reference_line in reference.lines() {
            let end = start + reference_line.len();
            if !reference_line.is_empty() {
                mark_lcs(
                    reference_line,
                    line,
                    &masks,
                    &mut rows,
                    &mut in_union[start..end],
                );
            }
            start = end;
        }
    }
    // rouge-score spends budgets line by line in position order, which is token order.
    let mut hits = 0;
    for (&token, _) in reference.ids.iter().zip(&in_union).filter(|(_, &u)| u) {
        let t = token as usize;
        if candidate_budget[t] > 0 && reference_budget[t] > 0 {
            hits += 1;
            candidate_budget[t] -= 1;
            reference_budget[t] -= 1;
        }
    }
    Prf::from_counts(hits, candidate.ids.len(), reference.ids.len())
}

/// Marks the reference positions of the one LCS that rouge-score's backtrack picks; which LCS
/// it picks changes the union, so the tie-break (left only when strictly better) must match.
///
/// rouge-score fills the full DP table `T[i][j]` (reference prefix i, candidate prefix j).
/// Here row i is kept as a bit vector (Hyyrö 2004, "Bit-parallel LCS-length computation
/// revisited"): bit j is 0 exactly when `T[i][j + 1] = T[i][j] + 1`, so
/// `T[i][j] = j - (ones among bits < j)`. The table is the same, only 64 cells per word.
fn mark_lcs(
    reference: &[u32],
    candidate: &[u32],
    masks: &MatchMasks,
    rows: &mut Vec<u64>,
    marks: &mut [bool],
) {
    let words = masks.words;
    rows.clear();
    rows.resize((reference.len() + 1) * words, u64::MAX);
    for (i, &token) in reference.iter().enumerate() {
        let (done, rest) = rows.split_at_mut((i + 1) * words);
        let row = &mut rest[..words];
        row.copy_from_slice(&done[i * words..]);
        if let Some(mask) = masks.get(token) {
            advance_row(row, mask);
        }
    }
    let row = |i: usize| &rows[i * words..(i + 1) * words];
    let cell = |i: usize, j: usize| j - ones_below(row(i), j);
    let (mut i, mut j) = (reference.len(), candidate.len());
    let mut here = cell(i, j);
    while i > 0 && j > 0 {
        if reference[i - 1] == candidate[j - 1] {
            marks[i - 1] = true;
            i -= 1;
            j -= 1;
            here -= 1;
            continue;
        }
        let bit = (row(i)[(j - 1) / 64] >> ((j - 1) % 64)) & 1;
        let left = here - (1 - bit as usize);
        let up = cell(i - 1, j);
        if left > up {
            j -= 1;
            here = left;
        } else {
            i -= 1;
            here = up;
        }
    }
}

/// One DP row step for a reference token whose candidate positions are `mask`
/// (Crochemore et al. 2001): `V' = (V + (V & M)) | (V & !M)`, with the carry crossing words.
fn advance_row(row: &mut [u64], mask: &[u64]) {
    let mut carry = false;
    for (v, &m) in row.iter_mut().zip(mask) {
        let (sum, c1) = v.overflowing_add(*v & m);
        let (sum, c2) = sum.overflowing_add(u64::from(carry));
        carry = c1 || c2;
        *v = sum | (*v & !m);
    }
}

/// Number of set bits among bits `0..j` of a multi-word bit vector.
fn ones_below(row: &[u64], j: usize) -> usize {
    let full: u32 = row[..j / 64].iter().map(|w| w.count_ones()).sum();
    let partial = match j % 64 {
        0 => 0,
        r => (row[j / 64] & ((1u64 << r) - 1)).count_ones(),
    };
    (full + partial) as usize
}

/// Per-token bit masks of the positions where each token occurs in one sequence, built for
/// the tokens present only, so long texts with large vocabularies stay cheap.
struct MatchMasks {
    words: usize,
    slot: Vec<u32>,
    loaded: Vec<u32>,
    masks: Vec<u64>,
}

impl MatchMasks {
    const ABSENT: u32 = u32::MAX;

    fn new(vocab_len: usize) -> MatchMasks {
        MatchMasks {
            words: 0,
            slot: vec![Self::ABSENT; vocab_len],
            loaded: Vec::new(),
            masks: Vec::new(),
        }
    }

    fn load(&mut self, sequence: &[u32]) {
        for &token in &self.loaded {
            self.slot[token as usize] = Self::ABSENT;
        }
        self.loaded.clear();
        self.masks.clear();
        self.words = sequence.len().div_ceil(64);
        for (j, &token) in sequence.iter().enumerate() {
            let t = token as usize;
            if self.slot[t] == Self::ABSENT {
                self.slot[t] = self.loaded.len() as u32;
                self.loaded.push(token);
                self.masks.resize(self.masks.len() + self.words, 0);
            }
            let at = self.slot[t] as usize * self.words + j / 64;
            self.masks[at] |= 1 << (j % 64);
        }
    }

    fn get(&self, token: u32) -> Option<&[u64]> {
        match self.slot[token as usize] {
            Self::ABSENT => None,
            s => Some(&self.masks[s as usize * self.words..(s as usize + 1) * self.words]),
        }
    }
}

fn counts(ids: &[u32], vocab_len: usize) -> Vec<u32> {
    let mut counts = vec![0; vocab_len];
    for &id in ids {
        counts[id as usize] += 1;
    }
    counts
}

/// One text as token ids, with where each `\n`-separated line starts.
struct Tokens {
    ids: Vec<u32>,
    line_starts: Vec<usize>,
}

impl Tokens {
    /// Token ids of each line. Tokenizing line by line gives the same tokens as tokenizing the
    /// whole text, because '\n' is itself a separator; lines without tokens add nothing.
    fn lines(&self) -> impl Iterator<Item = &[u32]> {
        let ends = self.line_starts[1..]
            .iter()
            .copied()
            .chain(std::iter::once(self.ids.len()));
        self.line_starts
            .iter()
            .zip(ends)
            .map(|(&start, end)| &self.ids[start..end])
    }
}

/// Maps token strings to dense ids for one `score` call, so scoring compares integers and
/// stems each distinct word once.
struct Vocab {
    stem: bool,
    forms: Interner,
    /// With stemming: each distinct raw token, and the id of its stemmed form in `forms`.
    raw: Interner,
    raw_form: Vec<u32>,
    stem_buf: Vec<u8>,
}

impl Vocab {
    fn new(stem: bool) -> Vocab {
        Vocab {
            stem,
            forms: Interner::default(),
            raw: Interner::default(),
            raw_form: Vec::new(),
            stem_buf: Vec::new(),
        }
    }

    fn len(&self) -> usize {
        self.forms.len()
    }

    fn tokenize(&mut self, text: &str) -> Tokens {
        let mut tokens = Tokens {
            ids: Vec::with_capacity(text.len() / 5),
            line_starts: vec![0],
        };
        scan(text, |piece| match piece {
            Piece::Token(raw) => {
                let id = self.id(raw);
                tokens.ids.push(id);
            }
            Piece::LineBreak => tokens.line_starts.push(tokens.ids.len()),
        });
        tokens
    }

    fn id(&mut self, raw: &[u8]) -> u32 {
        if !self.stem {
            return self.forms.intern(raw).0;
        }
        let (raw_id, is_new) = self.raw.intern(raw);
        if !is_new {
            return self.raw_form[raw_id as usize];
        }
        let form = if raw.len() > 3 {
            porter::stem_into(raw, &mut self.stem_buf);
            self.forms.intern(&self.stem_buf).0
        } else {
            self.forms.intern(raw).0
        };
        self.raw_form.push(form);
        form
    }
}

/// Open-addressing string interner over one byte arena: a `HashMap<Vec<u8>, u32>` spent most
/// of the scoring time allocating one key per distinct token.
#[derive(Default)]
struct Interner {
    bytes: Vec<u8>,
    ends: Vec<usize>,
    /// Linear-probing table of `id + 1`, 0 marking a free slot; its length is a power of two.
    slots: Vec<u32>,
}

impl Interner {
    fn len(&self) -> usize {
        self.ends.len()
    }

    fn token(&self, id: usize) -> &[u8] {
        let start = if id == 0 { 0 } else { self.ends[id - 1] };
        &self.bytes[start..self.ends[id]]
    }

    /// The id of `token`, and whether it was new.
    fn intern(&mut self, token: &[u8]) -> (u32, bool) {
        if 2 * (self.len() + 1) > self.slots.len() {
            self.grow();
        }
        let mask = self.slots.len() - 1;
        let mut at = hash(token) & mask;
        loop {
            match self.slots[at] {
                0 => {
                    let id = u32::try_from(self.len()).expect("fewer than 2^32 distinct tokens");
                    self.bytes.extend_from_slice(token);
                    self.ends.push(self.bytes.len());
                    self.slots[at] = id + 1;
                    return (id, true);
                }
                slot if self.token(slot as usize - 1) == token => return (slot - 1, false),
                _ => at = (at + 1) & mask,
            }
        }
    }

    fn grow(&mut self) {
        let size = (self.slots.len() * 2).max(256);
        let mut slots = vec![0u32; size];
        for id in 0..self.len() {
            let mut at = hash(self.token(id)) & (size - 1);
            while slots[at] != 0 {
                at = (at + 1) & (size - 1);
            }
            slots[at] = id as u32 + 1;
        }
        self.slots = slots;
    }
}

/// FxHash (as in rustc) with a final fold so the low bits used for the slot index mix in the
/// high bits; the keys are words of one document pair, so DoS resistance buys nothing.
fn hash(bytes: &[u8]) -> usize {
    const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
    let add = |h: u64, word: u64| (h.rotate_left(5) ^ word).wrapping_mul(K);
    let mut chunks = bytes.chunks_exact(8);
    let mut h = bytes.len() as u64;
    for chunk in &mut chunks {
        h = add(
            h,
            u64::from_le_bytes(chunk.try_into().expect("8-byte chunk")),
        );
    }
    let mut tail = [0u8; 8];
    tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    h = add(h, u64::from_le_bytes(tail));
    (h ^ (h >> 32)) as usize
}

enum Piece<'a> {
    Token(&'a [u8]),
    LineBreak,
}

/// The tokenizer's single pass: lowercases like Python `str.lower()` (full Unicode mapping,
/// so 'İ' gives "i" + U+0307 and the Kelvin sign gives "k"), emits each maximal `[a-z0-9]`
/// run, and reports every '\n' so rougeLsum can split lines without a second pass.
fn scan(text: &str, mut emit: impl FnMut(Piece<'_>)) {
    fn end_token(current: &mut Vec<u8>, emit: &mut impl FnMut(Piece<'_>)) {
        if !current.is_empty() {
            emit(Piece::Token(current));
            current.clear();
        }
    }
    let mut current: Vec<u8> = Vec::with_capacity(32);
    for c in text.chars() {
        if c.is_ascii() {
            if c.is_ascii_alphanumeric() {
                current.push(c.to_ascii_lowercase() as u8);
                continue;
            }
            end_token(&mut current, &mut emit);
            if c == '\n' {
                emit(Piece::LineBreak);
            }
        } else {
            for lower in c.to_lowercase() {
                if lower.is_ascii_lowercase() || lower.is_ascii_digit() {
                    current.push(lower as u8);
                } else {
                    end_token(&mut current, &mut emit);
                }
            }
        }
    }
    end_token(&mut current, &mut emit);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_prf(got: Prf, precision: f64, recall: f64) {
        let fmeasure = if precision + recall > 0.0 {
            2.0 * precision * recall / (precision + recall)
        } else {
            0.0
        };
        let want = Prf {
            precision,
            recall,
            fmeasure,
        };
        for (g, w) in [
            (got.precision, want.precision),
            (got.recall, want.recall),
            (got.fmeasure, want.fmeasure),
        ] {
            assert!((g - w).abs() < 1e-12, "got {got:?}, want {want:?}");
        }
    }

    #[test]
    fn tokenizer_lowercases_like_python_and_splits_on_non_alphanumerics() {
        assert_eq!(
            tokenize(
                "İstanbul café, don't 3.5% \u{212A}ELVIN\tA\r\nB 東京 😀x",
                false
            ),
            ["i", "stanbul", "caf", "don", "t", "3", "5", "kelvin", "a", "b", "x"]
        );
    }

    #[test]
    fn tokenizer_stems_only_words_longer_than_three_characters() {
        assert_eq!(
            tokenize("The skies were dying; cats ran", true),
            ["the", "sky", "were", "die", "cat", "ran"]
        );
    }

    #[test]
    fn hand_computed_ngram_and_lcs_scores() {
        let s = score("the cat sat on the mat", "the cat on the mat", false);
        assert_prf(s.rouge1, 1.0, 5.0 / 6.0);
        assert_prf(s.rouge2, 3.0 / 4.0, 3.0 / 5.0);
        assert_prf(s.rouge_l, 1.0, 5.0 / 6.0);
        assert_prf(s.rouge_lsum, 1.0, 5.0 / 6.0);
    }

    #[test]
    fn identical_texts_score_one_and_empty_candidates_score_zero() {
        let text = "Police said the man was arrested.\nHe will appear in court on Monday.";
        let same = score(text, text, true);
        for prf in [same.rouge1, same.rouge2, same.rouge_l, same.rouge_lsum] {
            assert_prf(prf, 1.0, 1.0);
        }
        assert_eq!(score(text, "", true), RougeScores::default());
        assert_eq!(score(text, "?! ...", false), RougeScores::default());
    }

    #[test]
    fn rouge_lsum_takes_the_union_of_per_line_lcs() {
        // The example of ROUGE paper section 3.2: union LCS of w1..w5 against the two
        // candidate lines is w1 w2 w3 w5.
        let s = score("w1 w2 w3 w4 w5", "w1 w2 w6 w7 w8\nw1 w3 w8 w9 w5", false);
        assert_prf(s.rouge_lsum, 4.0 / 10.0, 4.0 / 5.0);
        // Line order does not matter to the union, while it caps the whole-text LCS.
        let s = score("a b c d", "c d\na b", false);
        assert_prf(s.rouge_lsum, 1.0, 1.0);
        assert_prf(s.rouge_l, 2.0 / 4.0, 2.0 / 4.0);
    }

    #[test]
    fn rouge_lsum_does_not_count_a_token_twice() {
        // Both reference lines match the single candidate line, but its two tokens can only
        // be credited once.
        let s = score("x y\nx y", "x y", false);
        assert_prf(s.rouge_lsum, 1.0, 2.0 / 4.0);
    }

    /// rouge-score's own full table and backtrack, the oracle for the bit-parallel rows.
    fn table_lcs_marks(reference: &[u32], candidate: &[u32]) -> (usize, Vec<bool>) {
        let (m, n) = (reference.len(), candidate.len());
        let mut t = vec![vec![0usize; n + 1]; m + 1];
        for i in 1..=m {
            for j in 1..=n {
                t[i][j] = if reference[i - 1] == candidate[j - 1] {
                    t[i - 1][j - 1] + 1
                } else {
                    t[i - 1][j].max(t[i][j - 1])
                };
            }
        }
        let mut marks = vec![false; m];
        let (mut i, mut j) = (m, n);
        while i > 0 && j > 0 {
            if reference[i - 1] == candidate[j - 1] {
                marks[i - 1] = true;
                i -= 1;
                j -= 1;
            } else if t[i][j - 1] > t[i - 1][j] {
                j -= 1;
            } else {
                i -= 1;
            }
        }
        (t[m][n], marks)
    }

    #[test]
    fn bit_parallel_lcs_matches_the_plain_table_and_backtrack() {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = |bound: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % bound
        };
        // Small alphabets make many ties, which is where the backtrack's choice shows; lengths
        // cross the 64-bit word boundaries.
        for _ in 0..3000 {
            let alphabet = 1 + next(6);
            let reference: Vec<u32> = (0..next(150)).map(|_| next(alphabet) as u32).collect();
            let candidate: Vec<u32> = (0..next(200)).map(|_| next(alphabet) as u32).collect();
            let (want_len, want_marks) = table_lcs_marks(&reference, &candidate);
            assert_eq!(lcs_len(&reference, &candidate, alphabet as usize), want_len);
            let mut masks = MatchMasks::new(alphabet as usize);
            masks.load(&candidate);
            let mut marks = vec![false; reference.len()];
            mark_lcs(&reference, &candidate, &masks, &mut Vec::new(), &mut marks);
            assert_eq!(marks, want_marks, "{reference:?} vs {candidate:?}");
        }
    }

    #[test]
    fn scores_serialize_under_rouge_score_names() {
        let json = serde_json::to_value(score("a b", "a b", false)).unwrap();
        assert_eq!(json["rougeL"]["fmeasure"], 1.0);
        assert_eq!(json["rougeLsum"]["recall"], 1.0);
        assert_eq!(json["rouge2"]["precision"], 1.0);
    }

    #[test]
    fn matches_rouge_score_vectors() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/data/summarization/rouge-vectors.jsonl"
        );
        let Ok(text) = std::fs::read_to_string(path) else {
            eprintln!("skipping: {path} not found (only present in the shared workplace)");
            return;
        };
        let mut checked_values = 0;
        let mut max_error: f64 = 0.0;
        let mut pairs = 0;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let record: serde_json::Value = serde_json::from_str(line).unwrap();
            if record.get("_meta").is_some() {
                continue;
            }
            pairs += 1;
            let id = record["id"].as_str().unwrap();
            let reference = record["reference"].as_str().unwrap();
            let candidate = record["candidate"].as_str().unwrap();
            for (mode, stem) in [("stem", true), ("nostem", false)] {
                for (side, text) in [("reference", reference), ("candidate", candidate)] {
                    let want: Vec<&str> = record["tokens"][mode][side]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|t| t.as_str().unwrap())
                        .collect();
                    assert_eq!(tokenize(text, stem), want, "{id} {mode} {side} tokens");
                }
                let got = score(reference, candidate, stem);
                let expected = &record["scores"][mode];
                for (name, prf) in [
                    ("rouge1", got.rouge1),
                    ("rouge2", got.rouge2),
                    ("rougeL", got.rouge_l),
                    ("rougeLsum", got.rouge_lsum),
                ] {
                    for (field, value) in [
                        ("precision", prf.precision),
                        ("recall", prf.recall),
                        ("fmeasure", prf.fmeasure),
                    ] {
                        let want = expected[name][field].as_f64().unwrap();
                        let error = (value - want).abs();
                        assert!(
                            error < 1e-6,
                            "{id} {mode} {name} {field}: {value} vs {want}"
                        );
                        max_error = max_error.max(error);
                        checked_values += 1;
                    }
                }
            }
        }
        assert_eq!(pairs, 50, "vector file should hold 50 pairs");
        assert_eq!(checked_values, 50 * 2 * 4 * 3);
        eprintln!(
            "checked {checked_values} values over {pairs} pairs, max abs error {max_error:e}"
        );
    }
}
