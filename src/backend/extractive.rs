//! The `extractive` backend: picks whole sentences from the input, no model involved.
//!
//! It owns sentence cleaning (transcript speaker labels, annotation markers, fillers),
//! sentence scoring and selection. It must stay deterministic and fast, and must not
//! do I/O or depend on which corpus a text came from.

use std::collections::BTreeMap;

use crate::text;

pub const SHORT_WORDS: usize = 45;
pub const MEDIUM_WORDS: usize = 85;
pub const LONG_WORDS: usize = 160;

#[derive(Clone, Debug)]
pub struct Params {
    pub min_words: usize,
    pub min_terms: usize,
    pub pos_tau: f64,
    pub w_lo: f64,
    pub w_hi: f64,
    pub r_lo: f64,
    pub r_hi: f64,
    pub lead_n: usize,
    pub lambda: f64,
    pub dup: f64,
    pub len_pow: f64,
    pub strip_fillers: bool,
    pub mode: u32,
    pub n0: f64,
    pub max_words: usize,
    pub top_k: usize,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            min_words: 6,
            min_terms: 3,
            pos_tau: 3.0,
            w_lo: 0.0,
            w_hi: 0.8,
            r_lo: 0.8,
            r_hi: 1.3,
            lead_n: 3,
            lambda: 0.7,
            dup: 0.7,
            len_pow: 0.0,
            strip_fillers: true,
            mode: 0,
            n0: 1e9,
            max_words: 1000,
            top_k: 0,
        }
    }
}

pub fn summarize(text: &str, target_words: usize) -> String {
    summarize_with(text, target_words, &Params::default()).0
}

struct Sentence {
    text: String,
    words: usize,
    vec: Vec<(u32, f64)>,
}

pub struct Diag {
    pub ratio: f64,
    pub weight: f64,
    pub n: usize,
}

pub fn summarize_with(text: &str, target_words: usize, p: &Params) -> (String, Diag) {
    let sentences = sentences(text, p);
    let mut diag = Diag {
        ratio: 0.0,
        weight: 0.0,
        n: sentences.len(),
    };
    if sentences.is_empty() {
        return (String::new(), diag);
    }
    let mut cand: Vec<usize> = (0..sentences.len())
        .filter(|&i| {
            let s = &sentences[i];
            let end = s.text.trim_end_matches(['"', '\'', '”', '’', ')']);
            let declarative = end.ends_with(['.', '!', '…']);
            s.words >= p.min_words
                && s.words <= p.max_words
                && s.vec.len() >= p.min_terms
                && (p.mode & 4 == 0 || declarative)
        })
        .collect();
    if cand.is_empty() {
        cand = (0..sentences.len()).collect();
    }

    // Centroid of all sentence vectors; each sentence is compared with the centroid of
    // the others so that short documents do not reward self-similarity.
    let mut centroid: BTreeMap<u32, f64> = BTreeMap::new();
    for s in &sentences {
        for &(t, w) in &s.vec {
            *centroid.entry(t).or_insert(0.0) += w;
        }
    }
    if p.top_k > 0 && centroid.len() > p.top_k {
        let mut ws: Vec<f64> = centroid.values().copied().collect();
        ws.sort_by(|a, b| b.total_cmp(a));
        let cut = ws[p.top_k - 1];
        for w in centroid.values_mut() {
            if *w < cut {
                *w = 0.0;
            }
        }
    }
    let c_norm2: f64 = centroid.values().map(|w| w * w).sum();
    let centrality: Vec<f64> = sentences
        .iter()
        .map(|s| {
            let dot: f64 = s.vec.iter().map(|(t, w)| w * centroid[t]).sum();
            let self_norm2: f64 = s.vec.iter().map(|(_, w)| w * w).sum();
            let other = (c_norm2 - 2.0 * dot + self_norm2).max(1e-12).sqrt();
            ((dot - self_norm2) / other).max(0.0)
        })
        .collect();

    let max_c = cand
        .iter()
        .map(|&i| centrality[i])
        .fold(0.0_f64, f64::max)
        .max(1e-12);
    let mean_all = cand.iter().map(|&i| centrality[i]).sum::<f64>() / cand.len() as f64;
    let lead: Vec<usize> = cand.iter().copied().take(p.lead_n).collect();
    let mean_lead = lead.iter().map(|&i| centrality[i]).sum::<f64>() / lead.len() as f64;
    let ratio = if p.mode & 2 == 2 {
        let mut lv: BTreeMap<u32, f64> = BTreeMap::new();
        for &i in &lead {
            for &(t, w) in &sentences[i].vec {
                *lv.entry(t).or_insert(0.0) += w;
            }
        }
        let ln2: f64 = lv.values().map(|w| w * w).sum();
        let dot: f64 = lv.iter().map(|(t, w)| w * centroid[t]).sum();
        let rest2 = (c_norm2 - 2.0 * dot + ln2).max(1e-12);
        (dot - ln2) / (ln2.sqrt() * rest2.sqrt()).max(1e-12)
    } else {
        mean_lead / mean_all.max(1e-12)
    };
    let t = ((ratio - p.r_lo) / (p.r_hi - p.r_lo)).clamp(0.0, 1.0);
    let weight = (p.w_lo + (p.w_hi - p.w_lo) * t) * if p.mode & 8 == 8 {
            1.0 / (1.0 + (cand.len() as f64 / p.n0).powi(2))
        } else {
            p.n0 / (p.n0 + cand.len() as f64)
        };
    diag.ratio = ratio;
    diag.weight = weight;

    let score: Vec<f64> = cand
        .iter()
        .enumerate()
        .map(|(rank, &i)| {
            let pos = (-(rank as f64) / p.pos_tau).exp();
            let lenf = (sentences[i].words as f64).powf(p.len_pow);
            ((1.0 - weight) * centrality[i] / max_c + weight * pos) * lenf
        })
        .collect();

    let mut chosen: Vec<usize> = Vec::new();
    let mut total = 0;
    let mut used = vec![false; cand.len()];
    while total < target_words.max(1) {
        let mut best: Option<(usize, f64)> = None;
        for (k, &i) in cand.iter().enumerate() {
            if used[k] {
                continue;
            }
            let red = chosen
                .iter()
                .map(|&j| cosine(&sentences[i].vec, &sentences[j].vec))
                .fold(0.0, f64::max);
            if red > p.dup {
                continue;
            }
            let v = p.lambda * score[k] - (1.0 - p.lambda) * red;
            if best.is_none_or(|(_, b)| v > b) {
                best = Some((k, v));
            }
        }
        let Some((k, _)) = best else { break };
        let w = sentences[cand[k]].words;
        if p.mode & 1 == 1 && !chosen.is_empty() && (total + w) as f64 - target_words as f64 > (target_words - total) as f64 {
            break;
        }
        used[k] = true;
        chosen.push(cand[k]);
        total += sentences[cand[k]].words;
    }
    chosen.sort_unstable();
    let out = chosen
        .iter()
        .map(|&i| sentences[i].text.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    (out, diag)
}

fn cosine(a: &[(u32, f64)], b: &[(u32, f64)]) -> f64 {
    let (mut i, mut j, mut dot) = (0, 0, 0.0);
    while i < a.len() && j < b.len() {
        match a[i].0.cmp(&b[j].0) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                dot += a[i].1 * b[j].1;
                i += 1;
                j += 1;
            }
        }
    }
    dot
}

fn sentences(text: &str, p: &Params) -> Vec<Sentence> {
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let labelled = lines.iter().filter(|l| speaker_label(l).is_some()).count();
    let transcript = labelled >= 3 && labelled * 2 >= lines.len();
    let mut raw: Vec<(String, Vec<String>)> = Vec::new();
    for line in lines {
        let body = if transcript {
            speaker_label(line).map_or(line, |n| &line[n..])
        } else {
            line
        };
        for span in text::split_sentences(body) {
            let cleaned = clean(span, p.strip_fillers);
            if text::word_count(&cleaned) == 0 {
                continue;
            }
            let terms: Vec<String> = text::tokens(&cleaned)
                .filter(|t| t.chars().count() > 1 && !is_stop(t))
                .map(|t| stem(&t))
                .collect();
            raw.push((cleaned, terms));
        }
    }
    let mut vocab: BTreeMap<String, u32> = BTreeMap::new();
    let mut df: Vec<u32> = Vec::new();
    let ids: Vec<Vec<u32>> = raw
        .iter()
        .map(|(_, terms)| {
            let mut ids: Vec<u32> = terms
                .iter()
                .map(|t| {
                    let next = vocab.len() as u32;
                    *vocab.entry(t.clone()).or_insert(next)
                })
                .collect();
            ids.sort_unstable();
            let mut uniq = ids.clone();
            uniq.dedup();
            for &id in &uniq {
                if id as usize >= df.len() {
                    df.resize(id as usize + 1, 0);
                }
                df[id as usize] += 1;
            }
            ids
        })
        .collect();
    let n = raw.len() as f64;
    raw.into_iter()
        .zip(ids)
        .map(|((text, _), ids)| {
            let mut vec: Vec<(u32, f64)> = Vec::new();
            for id in ids {
                match vec.last_mut() {
                    Some((t, tf)) if *t == id => *tf += 1.0,
                    _ => vec.push((id, 1.0)),
                }
            }
            for (t, w) in &mut vec {
                let idf = ((n + 1.0) / (df[*t as usize] as f64 + 0.5)).ln().max(0.0);
                *w = (1.0 + w.ln()) * idf;
            }
            let norm = vec.iter().map(|(_, w)| w * w).sum::<f64>().sqrt();
            if norm > 0.0 {
                for (_, w) in &mut vec {
                    *w /= norm;
                }
            }
            vec.retain(|(_, w)| *w > 0.0);
            let words = text::word_count(&text);
            Sentence { text, words, vec }
        })
        .collect()
}

/// Byte length of a leading "Speaker Name:" label, including the colon.
fn speaker_label(line: &str) -> Option<usize> {
    let colon = line.find(':')?;
    let label = &line[..colon];
    let ok = colon <= 80
        && line[colon + 1..].chars().next().is_none_or(char::is_whitespace)
        && label.chars().next().is_some_and(char::is_uppercase)
        && label.split_whitespace().count() <= 10
        && !label.contains(['?', '!', '"', '“']);
    ok.then_some(colon + 1)
}

const FILLERS: &[&str] = &[
    "um", "uh", "umm", "uhm", "hmm", "mm", "mmm", "mm-hmm", "uh-huh", "um-hmm", "er", "erm",
    "ah", "eh", "huh",
];

fn clean(span: &str, strip_fillers: bool) -> String {
    let mut toks: Vec<&str> = Vec::new();
    let mut dropped = false;
    for tok in span.split_whitespace() {
        let is_marker = tok.starts_with('{') && tok.ends_with('}');
        let bare = tok.trim_end_matches([',', '.']).to_lowercase();
        let is_filler = strip_fillers && FILLERS.contains(&bare.as_str());
        if is_marker || is_filler {
            dropped = true;
            continue;
        }
        if dropped && (tok == "," || tok == "-" || tok == "--") {
            continue;
        }
        dropped = false;
        toks.push(tok);
    }
    // Restarts ("it 's {disfmarker} it 's") read as stutters once markers are gone.
    let mut n = 4;
    while n >= 1 {
        let mut i = 0;
        while i + 2 * n <= toks.len() {
            let same = (0..n).all(|k| toks[i + k].eq_ignore_ascii_case(toks[i + n + k]));
            if same && toks[i..i + n].iter().any(|t| t.chars().any(char::is_alphanumeric)) {
                toks.drain(i + n..i + 2 * n);
            } else {
                i += 1;
            }
        }
        n -= 1;
    }
    while toks
        .first()
        .is_some_and(|t| !t.chars().any(char::is_alphanumeric))
    {
        toks.remove(0);
    }
    let mut out = String::new();
    for tok in toks {
        let attach = !out.is_empty()
            && (tok.chars().all(|c| ",.;:?!%)".contains(c))
                || tok.starts_with('\'') && tok.len() <= 3 && tok.len() > 1
                || tok == "n't");
        if !out.is_empty() && !attach {
            out.push(' ');
        }
        out.push_str(tok);
    }
    let mut chars = out.chars();
    match chars.next() {
        Some(c) if c.is_lowercase() => c.to_uppercase().chain(chars).collect(),
        _ => out,
    }
}

const STOP: &[&str] = &[
    "a", "about", "above", "after", "again", "against", "all", "also", "am", "an", "and", "any",
    "are", "aren", "as", "at", "be", "because", "been", "before", "being", "below", "between",
    "both", "but", "by", "can", "could", "couldn", "did", "didn", "do", "does", "doesn", "doing",
    "don", "down", "during", "each", "few", "for", "from", "further", "had", "has", "have",
    "having", "he", "her", "here", "hers", "herself", "him", "himself", "his", "how", "i", "if",
    "in", "into", "is", "isn", "it", "its", "itself", "just", "ll", "me", "more", "most", "my",
    "myself", "no", "nor", "not", "now", "of", "off", "on", "once", "only", "or", "other", "our",
    "ours", "ourselves", "out", "over", "own", "re", "same", "she", "should", "so", "some",
    "such", "than", "that", "the", "their", "theirs", "them", "themselves", "then", "there",
    "these", "they", "this", "those", "through", "to", "too", "under", "until", "up", "ve",
    "very", "was", "wasn", "we", "were", "weren", "what", "when", "where", "which", "while",
    "who", "whom", "why", "will", "with", "won", "would", "wouldn", "you", "your", "yours",
    "yourself", "said", "says", "say", "yeah", "yes", "okay", "ok", "oh", "um", "uh", "mm",
    "hmm", "like", "know", "think", "mean", "right", "well", "really", "actually", "gonna",
    "get", "got", "go", "going", "one", "thing", "things", "kind", "sort", "something", "maybe",
    "lot", "let", "see", "want", "need", "way", "much", "many", "even", "still", "make", "would",
    "could", "might", "must", "shall", "may", "us", "mr", "mrs", "ms",
];

fn is_stop(t: &str) -> bool {
    STOP.contains(&t)
}

fn stem(t: &str) -> String {
    let n = t.len();
    let cut = |suffix: &str, min: usize| n >= suffix.len() + min && t.ends_with(suffix);
    if cut("ies", 2) {
        return format!("{}y", &t[..n - 3]);
    }
    if cut("sses", 1) {
        return t[..n - 2].to_string();
    }
    if cut("ing", 3) {
        return t[..n - 3].to_string();
    }
    if cut("ed", 3) {
        return t[..n - 2].to_string();
    }
    if cut("ly", 3) {
        return t[..n - 2].to_string();
    }
    if cut("s", 3) && !t.ends_with("ss") && !t.ends_with("us") && !t.ends_with("is") {
        return t[..n - 1].to_string();
    }
    t.to_string()
}
