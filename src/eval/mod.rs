//! Evaluation: ROUGE against references, reference-free checks, corpus statistics, and the
//! scoring of finished reports (`summarize eval`). Metrics are pure functions; only
//! `references` and `score_report` read files.

pub mod compare;
pub mod porter;
pub mod references;
pub mod reffree;
pub mod rouge;
pub mod score_report;
pub mod stats;

use serde::Serialize;

/// Bootstrap resamples behind every reported confidence interval.
pub const BOOTSTRAP_RESAMPLES: usize = 1000;

/// A summary as rouge-score's users feed it for ROUGE-Lsum: one sentence per line.
pub fn sentence_lines(summary: &str) -> String {
    summary
        .lines()
        .flat_map(crate::text::split_sentences)
        .collect::<Vec<_>>()
        .join("\n")
}

/// ROUGE F-measures of a summary against a reference (stemmed, as the literature reports them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct RougeF {
    pub rouge1: f64,
    pub rouge2: f64,
    #[serde(rename = "rougeL")]
    pub rouge_l: f64,
    #[serde(rename = "rougeLsum")]
    pub rouge_lsum: f64,
}

pub fn rouge_f(reference: &str, summary: &str) -> RougeF {
    let s = rouge::score(reference, &sentence_lines(summary), true);
    RougeF {
        rouge1: s.rouge1.fmeasure,
        rouge2: s.rouge2.fmeasure,
        rouge_l: s.rouge_l.fmeasure,
        rouge_lsum: s.rouge_lsum.fmeasure,
    }
}

/// Every score of one summary: ROUGE when there is a reference, the reference-free checks,
/// and whether its length is within half to one and a half times the requested length.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SummaryScores {
    pub rouge: Option<RougeF>,
    pub quality: reffree::RefFree,
    /// Distinct numbers the summary writes in digits.
    pub numbers: usize,
    pub length_ok: bool,
}

pub fn score_summary(
    source: &str,
    summary: &str,
    reference: Option<&str>,
    length_words: usize,
) -> SummaryScores {
    let ratio = crate::text::word_count(summary) as f64 / length_words.max(1) as f64;
    SummaryScores {
        rouge: reference.map(|r| rouge_f(r, summary)),
        quality: reffree::check(source, summary),
        numbers: reffree::number_count(summary),
        length_ok: (0.5..=1.5).contains(&ratio),
    }
}

/// A mean with its 95% percentile-bootstrap interval.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct MeanCi {
    pub n: usize,
    pub mean: f64,
    pub ci95_low: f64,
    pub ci95_high: f64,
}

impl MeanCi {
    pub fn of(xs: &[f64]) -> MeanCi {
        let (lo, hi) = stats::bootstrap_ci95(xs, BOOTSTRAP_RESAMPLES, 0);
        MeanCi {
            n: xs.len(),
            mean: stats::mean(xs),
            ci95_low: lo,
            ci95_high: hi,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsum_sees_one_sentence_per_line() {
        assert_eq!(
            sentence_lines("One thing. Two things.\nThree."),
            "One thing.\nTwo things.\nThree."
        );
        let f = rouge_f("The cat sat.\nThe dog ran.", "The dog ran. The cat sat.");
        assert!((f.rouge_lsum - 1.0).abs() < 1e-12);
        assert!(f.rouge_l < 1.0);
    }

    #[test]
    fn mean_ci_brackets_the_mean() {
        let m = MeanCi::of(&[0.1, 0.2, 0.3, 0.4, 0.5]);
        assert!((m.mean - 0.3).abs() < 1e-12);
        assert!(m.ci95_low <= m.mean && m.mean <= m.ci95_high);
        assert_eq!(m.n, 5);
    }
}
