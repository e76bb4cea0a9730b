//! `summarize compare A.jsonl B.jsonl`: two runs over the same inputs (an old and a new model,
//! prompt or setting), record by record.
//!
//! Records are paired by `id` (the last record of an id wins, as after `--resume`). For each
//! metric present in both records of a pair: the means of A and B, the mean difference B − A
//! with a paired bootstrap 95% interval (the same resampled documents for every metric), and
//! how many documents got better, stayed the same or got worse. `--max-drop METRIC=X` turns a
//! worsening of more than X (in the units shown: ROUGE in points) into exit status 1, for CI.
//! Pure: it reads two parsed reports and returns numbers; `main.rs` prints them.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use serde::Serialize;
use serde_json::Value;

use super::stats::{bootstrap_ci95_paired, mean};

/// Which way is better for a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Better {
    Higher,
    Lower,
    /// Neither (length, compression): changes are reported, never judged.
    Neither,
}

/// A column of the report that can be compared.
pub struct Metric {
    pub name: &'static str,
    pub better: Better,
    /// Multiplier from the record's value to the unit shown (ROUGE F 0-1 → points).
    pub scale: f64,
    what: &'static str,
}

/// Every comparable column, in the order shown.
pub const METRICS: &[Metric] = &[
    Metric {
        name: "ok",
        better: Better::Higher,
        scale: 100.0,
        what: "share of inputs with status ok, %",
    },
    Metric {
        name: "rouge1",
        better: Better::Higher,
        scale: 100.0,
        what: "ROUGE-1 F, points",
    },
    Metric {
        name: "rouge2",
        better: Better::Higher,
        scale: 100.0,
        what: "ROUGE-2 F, points",
    },
    Metric {
        name: "rougeL",
        better: Better::Higher,
        scale: 100.0,
        what: "ROUGE-L F, points",
    },
    Metric {
        name: "rougeLsum",
        better: Better::Higher,
        scale: 100.0,
        what: "ROUGE-Lsum F, points",
    },
    Metric {
        name: "coverage",
        better: Better::Higher,
        scale: 1.0,
        what: "share of summary words found in the source",
    },
    Metric {
        name: "unsupported_numbers",
        better: Better::Lower,
        scale: 1.0,
        what: "numbers found nowhere in the source, per summary",
    },
    Metric {
        name: "length_ok",
        better: Better::Higher,
        scale: 100.0,
        what: "summaries within 0.5-1.5x the length, %",
    },
    Metric {
        name: "lang_match",
        better: Better::Higher,
        scale: 100.0,
        what: "summaries in the source's language, %",
    },
    Metric {
        name: "novel_bigrams",
        better: Better::Neither,
        scale: 1.0,
        what: "share of summary bigrams not in the source",
    },
    Metric {
        name: "density",
        better: Better::Neither,
        scale: 1.0,
        what: "extractive fragment density",
    },
    Metric {
        name: "compression",
        better: Better::Neither,
        scale: 1.0,
        what: "source words per summary word",
    },
    Metric {
        name: "summary_words",
        better: Better::Neither,
        scale: 1.0,
        what: "words per summary",
    },
    Metric {
        name: "tokens_out",
        better: Better::Neither,
        scale: 1.0,
        what: "generated tokens per document",
    },
    Metric {
        name: "summarize_ms",
        better: Better::Lower,
        scale: 1.0,
        what: "model time per document, ms",
    },
    Metric {
        name: "total_ms",
        better: Better::Lower,
        scale: 1.0,
        what: "time per document, ms",
    },
];

/// The numeric value of `metric` in a record, in the unit shown; `None` when absent.
fn value(metric: &Metric, record: &Value) -> Option<f64> {
    let v = match metric.name {
        "ok" => Some(if record["status"] == "ok" { 1.0 } else { 0.0 }),
        "unsupported_numbers" => record[metric.name].as_array().map(|a| a.len() as f64),
        _ => match &record[metric.name] {
            Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
            v => v.as_f64(),
        },
    }?;
    // Scores of failed records are absent, not zero: they are compared through "ok".
    let scored_only = !matches!(metric.name, "ok" | "total_ms");
    if scored_only && record["status"] != "ok" {
        return None;
    }
    Some(v * metric.scale)
}

/// One metric over the paired documents that have it in both runs.
#[derive(Debug, Clone, Serialize)]
pub struct MetricComparison {
    pub metric: &'static str,
    pub better: Better,
    pub what: &'static str,
    pub n: usize,
    pub mean_a: f64,
    pub mean_b: f64,
    /// Mean of B − A, with its paired bootstrap 95% interval.
    pub diff: f64,
    pub ci95_low: f64,
    pub ci95_high: f64,
    /// Documents where B is better, the same, worse (for `Neither`: higher, same, lower).
    pub wins: usize,
    pub ties: usize,
    pub losses: usize,
}

impl MetricComparison {
    /// How much worse B is than A, in the unit shown (0 when it is not worse or has no better).
    pub fn worsening(&self) -> f64 {
        match self.better {
            Better::Higher => (self.mean_a - self.mean_b).max(0.0),
            Better::Lower => (self.mean_b - self.mean_a).max(0.0),
            Better::Neither => 0.0,
        }
    }
}

/// A document whose primary metric moved most.
#[derive(Debug, Clone, Serialize)]
pub struct Changed {
    pub id: String,
    pub metric: &'static str,
    pub a: f64,
    pub b: f64,
    pub summary_a: Option<String>,
    pub summary_b: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub paired: usize,
    pub only_in_a: usize,
    pub only_in_b: usize,
    pub metrics: Vec<MetricComparison>,
    pub changed_most: Vec<Changed>,
    /// `--max-drop` gates that failed, one line each.
    pub gate_failures: Vec<String>,
}

/// Parses a JSONL report: the last record of each id, in first-seen order.
pub fn parse_report(text: &str, name: &str) -> Result<Vec<(String, Value)>> {
    let mut order: Vec<String> = Vec::new();
    let mut by_id: BTreeMap<String, Value> = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let record: Value = serde_json::from_str(line)
            .with_context(|| format!("{name}:{}: not a JSON record", i + 1))?;
        let Some(id) = record["id"].as_str().map(str::to_string) else {
            bail!(
                "{name}:{}: a record without an \"id\"; compare reads summarize's JSONL reports",
                i + 1
            );
        };
        if by_id.insert(id.clone(), record).is_none() {
            order.push(id);
        }
    }
    Ok(order
        .into_iter()
        .map(|id| {
            let r = by_id.remove(&id).unwrap_or(Value::Null);
            (id, r)
        })
        .collect())
}

/// Parses `METRIC=X` gates; an unknown metric is an error naming the known ones.
pub fn parse_gate(text: &str) -> Result<(&'static str, f64)> {
    let (name, x) = text
        .split_once('=')
        .with_context(|| format!("--max-drop '{text}': write METRIC=X, as rouge1=0.5"))?;
    let metric = METRICS
        .iter()
        .find(|m| m.name.eq_ignore_ascii_case(name.trim()))
        .with_context(|| {
            format!(
                "--max-drop '{text}': unknown metric '{name}'; one of {}",
                METRICS
                    .iter()
                    .map(|m| m.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
    let x: f64 = x
        .trim()
        .parse()
        .ok()
        .filter(|x: &f64| x.is_finite() && *x >= 0.0)
        .with_context(|| format!("--max-drop '{text}': X must be a number >= 0"))?;
    if metric.better == Better::Neither {
        bail!(
            "--max-drop '{text}': {} has no better direction to drop in",
            metric.name
        );
    }
    Ok((metric.name, x))
}

/// Compares run B against run A.
pub fn compare(
    a: &[(String, Value)],
    b: &[(String, Value)],
    gates: &[(&'static str, f64)],
    top: usize,
) -> Comparison {
    let b_by_id: BTreeMap<&str, &Value> = b.iter().map(|(id, r)| (id.as_str(), r)).collect();
    let a_ids: std::collections::HashSet<&str> = a.iter().map(|(id, _)| id.as_str()).collect();
    let pairs: Vec<(&str, &Value, &Value)> = a
        .iter()
        .filter_map(|(id, ra)| b_by_id.get(id.as_str()).map(|rb| (id.as_str(), ra, *rb)))
        .collect();
    let only_in_b = b
        .iter()
        .filter(|(id, _)| !a_ids.contains(id.as_str()))
        .count();

    let mut metrics = Vec::new();
    for (k, metric) in METRICS.iter().enumerate() {
        let values: Vec<(f64, f64)> = pairs
            .iter()
            .filter_map(|(_, ra, rb)| Some((value(metric, ra)?, value(metric, rb)?)))
            .collect();
        if values.is_empty() {
            continue;
        }
        let (xa, xb): (Vec<f64>, Vec<f64>) = values.iter().copied().unzip();
        let diffs: Vec<f64> = values.iter().map(|(x, y)| y - x).collect();
        // Seeded per metric: the same two reports always give the same intervals.
        let (lo, hi) = bootstrap_ci95_paired(&[&diffs], 1000, 0x5eed + k as u64)[0];
        let tolerance = 1e-9 * metric.scale.max(1.0);
        let (mut up, mut same, mut down) = (0, 0, 0);
        for d in &diffs {
            if d.abs() <= tolerance {
                same += 1;
            } else if *d > 0.0 {
                up += 1;
            } else {
                down += 1;
            }
        }
        let (wins, losses) = match metric.better {
            Better::Lower => (down, up),
            _ => (up, down),
        };
        metrics.push(MetricComparison {
            metric: metric.name,
            better: metric.better,
            what: metric.what,
            n: values.len(),
            mean_a: mean(&xa),
            mean_b: mean(&xb),
            diff: mean(&diffs),
            ci95_low: lo,
            ci95_high: hi,
            wins,
            ties: same,
            losses,
        });
    }

    // The documents that moved most on the first quality metric both runs have.
    let primary = ["rouge1", "coverage", "ok"].into_iter().find_map(|name| {
        METRICS
            .iter()
            .find(|m| m.name == name && metrics.iter().any(|c| c.metric == name))
    });
    let mut changed: Vec<Changed> = match primary {
        Some(metric) => pairs
            .iter()
            .filter_map(|(id, ra, rb)| {
                let (x, y) = (value(metric, ra)?, value(metric, rb)?);
                (x != y).then(|| Changed {
                    id: id.to_string(),
                    metric: metric.name,
                    a: x,
                    b: y,
                    summary_a: ra["summary"].as_str().map(str::to_string),
                    summary_b: rb["summary"].as_str().map(str::to_string),
                })
            })
            .collect(),
        None => Vec::new(),
    };
    changed.sort_by(|p, q| {
        (q.b - q.a)
            .abs()
            .total_cmp(&(p.b - p.a).abs())
            .then(p.id.cmp(&q.id))
    });
    changed.truncate(top);

    let mut gate_failures = Vec::new();
    for &(name, max) in gates {
        match metrics.iter().find(|m| m.metric == name) {
            Some(m) if m.worsening() > max => gate_failures.push(format!(
                "{name} is worse by {:.3} ({:.3} in A, {:.3} in B), more than --max-drop {name}={max}",
                m.worsening(),
                m.mean_a,
                m.mean_b
            )),
            Some(_) => {}
            None => gate_failures.push(format!(
                "{name}: not in both reports, so --max-drop {name}={max} cannot be checked"
            )),
        }
    }
    Comparison {
        paired: pairs.len(),
        only_in_a: a.len() - pairs.len(),
        only_in_b,
        metrics,
        changed_most: changed,
        gate_failures,
    }
}

impl Comparison {
    /// The comparison as a table for people.
    pub fn render(&self, a_name: &str, b_name: &str) -> String {
        let mut out = format!(
            "A = {a_name}\nB = {b_name}\n{} paired records{}{}\n\n",
            self.paired,
            if self.only_in_a > 0 {
                format!(", {} only in A", self.only_in_a)
            } else {
                String::new()
            },
            if self.only_in_b > 0 {
                format!(", {} only in B", self.only_in_b)
            } else {
                String::new()
            },
        );
        out.push_str(&format!(
            "{:<20} {:>5} {:>10} {:>10} {:>9}  {:<21} {:>15}\n",
            "metric", "n", "A", "B", "B-A", "95% CI of B-A", "better/same/worse"
        ));
        for m in &self.metrics {
            let judged = if m.better == Better::Neither {
                format!("{}↑ {}= {}↓", m.wins, m.ties, m.losses)
            } else {
                format!("{}/{}/{}", m.wins, m.ties, m.losses)
            };
            out.push_str(&format!(
                "{:<20} {:>5} {:>10} {:>10} {:>+9.2}  [{:>+8.2}, {:>+8.2}] {:>15}\n",
                m.metric,
                m.n,
                fmt(m.mean_a),
                fmt(m.mean_b),
                m.diff,
                m.ci95_low,
                m.ci95_high,
                judged
            ));
        }
        if !self.changed_most.is_empty() {
            out.push_str(&format!(
                "\nchanged most ({}):\n",
                self.changed_most[0].metric
            ));
            for c in &self.changed_most {
                out.push_str(&format!(
                    "  {:+8.2}  {:.2} -> {:.2}  {}\n",
                    c.b - c.a,
                    c.a,
                    c.b,
                    c.id
                ));
            }
        }
        out
    }
}

fn fmt(v: f64) -> String {
    if v.abs() >= 1000.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn report(rows: &[(&str, &str, f64)]) -> Vec<(String, Value)> {
        rows.iter()
            .map(|(id, status, r1)| {
                let rec = if *status == "ok" {
                    json!({"id": id, "status": "ok", "rouge1": r1, "summary_words": 50, "unsupported_numbers": []})
                } else {
                    json!({"id": id, "status": "error", "rouge1": null})
                };
                (id.to_string(), rec)
            })
            .collect()
    }

    #[test]
    fn pairs_by_id_and_counts_wins_ties_losses() {
        let a = report(&[
            ("x", "ok", 0.40),
            ("y", "ok", 0.30),
            ("z", "ok", 0.50),
            ("only-a", "ok", 0.1),
        ]);
        let b = report(&[
            ("z", "ok", 0.50),
            ("y", "ok", 0.20),
            ("x", "ok", 0.45),
            ("only-b", "ok", 0.9),
        ]);
        let c = compare(&a, &b, &[], 5);
        assert_eq!((c.paired, c.only_in_a, c.only_in_b), (3, 1, 1));
        let r1 = c.metrics.iter().find(|m| m.metric == "rouge1").unwrap();
        assert_eq!((r1.wins, r1.ties, r1.losses), (1, 1, 1));
        assert!((r1.mean_a - 40.0).abs() < 1e-9 && (r1.mean_b - 38.333333333).abs() < 1e-6);
        assert!((r1.diff - (-5.0 / 3.0)).abs() < 1e-9);
        assert!(r1.ci95_low <= r1.diff && r1.diff <= r1.ci95_high);
        // Biggest move first.
        assert_eq!(c.changed_most[0].id, "y");
        assert_eq!(c.changed_most.len(), 2);
        // Deterministic.
        let again = compare(&a, &b, &[], 5);
        assert_eq!(again.metrics[1].ci95_low, c.metrics[1].ci95_low);
    }

    #[test]
    fn failed_records_count_in_ok_not_in_scores() {
        let a = report(&[("x", "ok", 0.4), ("y", "ok", 0.4)]);
        let b = report(&[("x", "ok", 0.4), ("y", "error", 0.0)]);
        let c = compare(&a, &b, &[("ok", 10.0), ("rouge1", 0.0)], 5);
        let ok = c.metrics.iter().find(|m| m.metric == "ok").unwrap();
        assert_eq!((ok.mean_a, ok.mean_b), (100.0, 50.0));
        let r1 = c.metrics.iter().find(|m| m.metric == "rouge1").unwrap();
        assert_eq!(r1.n, 1, "the failed record has no score to compare");
        assert_eq!(c.gate_failures.len(), 1, "{:?}", c.gate_failures);
        assert!(c.gate_failures[0].starts_with("ok is worse by 50.000"));
    }

    #[test]
    fn gates_parse_and_check_direction() {
        assert_eq!(parse_gate("rouge1=0.5").unwrap(), ("rouge1", 0.5));
        assert_eq!(parse_gate("ROUGELSUM = 1").unwrap(), ("rougeLsum", 1.0));
        assert!(parse_gate("rouge1").is_err());
        assert!(parse_gate("bleu=1")
            .unwrap_err()
            .to_string()
            .contains("rouge1"));
        assert!(parse_gate("rouge1=-1").is_err());
        assert!(parse_gate("summary_words=3").is_err());
        // Lower is better: a rise in time is the drop.
        let a = vec![(
            "x".to_string(),
            json!({"id": "x", "status": "ok", "total_ms": 100}),
        )];
        let b = vec![(
            "x".to_string(),
            json!({"id": "x", "status": "ok", "total_ms": 180}),
        )];
        let c = compare(&a, &b, &[("total_ms", 50.0)], 5);
        assert_eq!(c.gate_failures.len(), 1);
        let c = compare(&b, &a, &[("total_ms", 50.0)], 5);
        assert!(c.gate_failures.is_empty());
    }

    #[test]
    fn the_last_record_of_an_id_wins() {
        let text = "{\"id\":\"a\",\"status\":\"error\"}\n{\"id\":\"b\",\"status\":\"ok\"}\n{\"id\":\"a\",\"status\":\"ok\"}\n";
        let r = parse_report(text, "r.jsonl").unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].0, "a");
        assert_eq!(r[0].1["status"], "ok");
        assert!(parse_report("{\"status\":\"ok\"}\n", "r.jsonl").is_err());
        assert!(parse_report("not json\n", "r.jsonl")
            .unwrap_err()
            .to_string()
            .contains("r.jsonl:1"));
    }
}
