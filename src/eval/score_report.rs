//! `summarize eval`: scores a finished JSONL report against references without re-running
//! anything, and checks the means against CI gates. Records that failed count as zero, so a
//! run that breaks cannot pass a gate by scoring only its survivors.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use serde::Serialize;

use super::references::References;
use super::rouge::{self, Prf};
use super::{sentence_lines, MeanCi};

/// Metrics in the order they are printed.
pub const METRICS: [&str; 4] = ["rouge1", "rouge2", "rougeL", "rougeLsum"];

/// One report record's scores.
#[derive(Debug, Clone, Serialize)]
pub struct RecordScore {
    pub id: String,
    /// `scored`, `failed` (the record is an error: scores 0) or `no_reference`.
    pub status: &'static str,
    pub rouge1: Option<Prf>,
    pub rouge2: Option<Prf>,
    #[serde(rename = "rougeL")]
    pub rouge_l: Option<Prf>,
    #[serde(rename = "rougeLsum")]
    pub rouge_lsum: Option<Prf>,
}

/// Precision, recall and F of one metric over the run; the interval is on F, the number gated on.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MetricSummary {
    pub precision: f64,
    pub recall: f64,
    pub fmeasure: MeanCi,
}

/// The whole evaluation.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Aggregate {
    pub records: usize,
    pub scored: usize,
    pub failed: usize,
    pub no_reference: usize,
    pub stemmed: bool,
    /// Summaries were split one sentence per line before rougeLsum (`--split-summaries`).
    pub split_summaries: bool,
    pub metrics: BTreeMap<String, MetricSummary>,
    /// Gates that failed, as `metric mean < threshold` lines.
    pub gate_failures: Vec<String>,
}

/// Minimum mean F-measures; a value above 1 is read as a percentage.
#[derive(Debug, Clone, Default)]
pub struct Gates {
    pub min: BTreeMap<String, f64>,
}

fn prf_of(scores: &rouge::RougeScores, metric: &str) -> Prf {
    match metric {
        "rouge1" => scores.rouge1,
        "rouge2" => scores.rouge2,
        "rougeL" => scores.rouge_l,
        _ => scores.rouge_lsum,
    }
}

/// Scores every record of a JSONL report that has an id. Like rouge-score's default, rougeLsum
/// takes the summary's lines as written; `split_summaries` first puts one sentence per line (as
/// rouge-score's `split_summaries=True`, and as the run itself scores).
pub fn score(
    report: &str,
    refs: &References,
    stem: bool,
    split_summaries: bool,
    gates: &Gates,
) -> Result<(Vec<RecordScore>, Aggregate)> {
    let mut out = Vec::new();
    let mut agg = Aggregate {
        stemmed: stem,
        split_summaries,
        ..Aggregate::default()
    };
    let mut per_metric: BTreeMap<&str, [Vec<f64>; 3]> =
        METRICS.iter().map(|m| (*m, Default::default())).collect();
    // Parse in order, score in parallel: scoring is the CPU work, and records are independent.
    let mut parsed = Vec::new();
    for (i, line) in report.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        #[derive(serde::Deserialize)]
        struct Line {
            #[serde(default)]
            id: serde_json::Value,
            #[serde(default)]
            status: Option<String>,
            #[serde(default)]
            summary: Option<String>,
        }
        let rec: Line = serde_json::from_str(line).with_context(|| {
            format!(
                "report line {}: not JSON (is this a JSONL report from summarize?)",
                i + 1
            )
        })?;
        let Some(id) = crate::input::id_from_json(&rec.id) else {
            anyhow::bail!("report line {}: no \"id\" field", i + 1)
        };
        let ok = rec.status.as_deref() != Some("error");
        parsed.push((id, ok, rec.summary.unwrap_or_default()));
    }
    let scored: Vec<Option<rouge::RougeScores>> = {
        use rayon::prelude::*;
        parsed
            .par_iter()
            .map(|(id, ok, summary)| {
                refs.get(id).map(|reference| {
                    if *ok && split_summaries {
                        rouge::score(reference, &sentence_lines(summary), stem)
                    } else if *ok {
                        rouge::score(reference, summary, stem)
                    } else {
                        rouge::RougeScores::default()
                    }
                })
            })
            .collect()
    };
    for ((id, ok, _), scores) in parsed.into_iter().zip(scored) {
        agg.records += 1;
        let Some(scores) = scores else {
            agg.no_reference += 1;
            out.push(RecordScore {
                id,
                status: "no_reference",
                rouge1: None,
                rouge2: None,
                rouge_l: None,
                rouge_lsum: None,
            });
            continue;
        };
        if ok {
            agg.scored += 1;
        } else {
            agg.failed += 1;
        }
        for m in METRICS {
            let p = prf_of(&scores, m);
            let v = per_metric.get_mut(m).expect("all metrics present");
            v[0].push(p.precision);
            v[1].push(p.recall);
            v[2].push(p.fmeasure);
        }
        out.push(RecordScore {
            id,
            status: if ok { "scored" } else { "failed" },
            rouge1: Some(scores.rouge1),
            rouge2: Some(scores.rouge2),
            rouge_l: Some(scores.rouge_l),
            rouge_lsum: Some(scores.rouge_lsum),
        });
    }
    let f_columns: Vec<&[f64]> = per_metric.values().map(|[_, _, f]| f.as_slice()).collect();
    let intervals = super::stats::bootstrap_ci95_paired(&f_columns, super::BOOTSTRAP_RESAMPLES, 0);
    for ((m, [p, r, f]), (lo, hi)) in per_metric.iter().zip(intervals) {
        agg.metrics.insert(
            m.to_string(),
            MetricSummary {
                precision: super::stats::mean(p),
                recall: super::stats::mean(r),
                fmeasure: MeanCi {
                    n: f.len(),
                    mean: super::stats::mean(f),
                    ci95_low: lo,
                    ci95_high: hi,
                },
            },
        );
    }
    for (metric, min) in &gates.min {
        let threshold = if *min > 1.0 { min / 100.0 } else { *min };
        let mean = agg
            .metrics
            .get(metric)
            .map(|s| s.fmeasure.mean)
            .unwrap_or(f64::NAN);
        // A NaN mean (nothing scored) fails the gate too.
        if mean.is_nan() || mean < threshold {
            agg.gate_failures.push(format!(
                "{metric} mean F {:.2} is below the required {:.2}",
                mean * 100.0,
                threshold * 100.0
            ));
        }
    }
    Ok((out, agg))
}

impl Aggregate {
    /// The table printed on stderr, in points (×100) as papers report ROUGE.
    pub fn render(&self) -> String {
        let mut out = format!(
            "{} records: {} scored, {} failed (scored 0), {} without a reference; {}\n",
            self.records,
            self.scored,
            self.failed,
            self.no_reference,
            if self.stemmed {
                "Porter stemming"
            } else {
                "no stemming"
            }
        );
        out.push_str("metric        P       R       F   F 95% CI\n");
        for m in METRICS {
            if let Some(s) = self.metrics.get(m) {
                out.push_str(&format!(
                    "{m:<10} {:>6.2}  {:>6.2}  {:>6.2}   [{:.2}, {:.2}]\n",
                    s.precision * 100.0,
                    s.recall * 100.0,
                    s.fmeasure.mean * 100.0,
                    s.fmeasure.ci95_low * 100.0,
                    s.fmeasure.ci95_high * 100.0
                ));
            }
        }
        for g in &self.gate_failures {
            out.push_str(&format!("gate failed: {g}\n"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_failures_as_zero_and_gates() {
        let refs: References = [
            ("a".to_string(), "the cat sat on the mat".to_string()),
            ("b".to_string(), "dogs bark".to_string()),
        ]
        .into_iter()
        .collect();
        let report = "{\"id\":\"a\",\"status\":\"ok\",\"summary\":\"the cat sat on the mat\"}\n{\"id\":\"b\",\"status\":\"error\",\"summary\":null}\n{\"id\":\"c\",\"status\":\"ok\",\"summary\":\"x\"}\n";
        let mut gates = Gates::default();
        gates.min.insert("rouge1".into(), 40.0);
        let (recs, agg) = score(report, &refs, true, false, &gates).unwrap();
        assert_eq!(recs.len(), 3);
        assert_eq!((agg.scored, agg.failed, agg.no_reference), (1, 1, 1));
        assert!((agg.metrics["rouge1"].fmeasure.mean - 0.5).abs() < 1e-12);
        assert!(agg.gate_failures.is_empty());
        gates.min.insert("rouge2".into(), 0.6);
        let (_, agg) = score(report, &refs, true, false, &gates).unwrap();
        assert_eq!(agg.gate_failures.len(), 1);
        assert!(agg.render().contains("gate failed: rouge2"));
    }

    /// Issue 9: rougeLsum takes lines as written unless asked to split sentences.
    #[test]
    fn issue9_lsum_splits_only_when_asked() {
        let refs: References = [("a".to_string(), "The dog ran and the cat sat.".to_string())]
            .into_iter()
            .collect();
        let report =
            "{\"id\":\"a\",\"status\":\"ok\",\"summary\":\"The cat sat. The dog ran and.\"}\n";
        let lsum = |split| {
            let (_, agg) = score(report, &refs, true, split, &Gates::default()).unwrap();
            agg.metrics["rougeLsum"].fmeasure.mean
        };
        assert!((lsum(true) - 1.0).abs() < 1e-12, "{}", lsum(true));
        assert!(lsum(false) < 0.99, "{}", lsum(false));
    }
}
