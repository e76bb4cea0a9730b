//! `--metrics FILE.prom`: the run's figures in the Prometheus text exposition format, for
//! node_exporter's textfile collector (or any scraper of such files).
//!
//! Every value describes the run that wrote the file (gauges, and one histogram per stage),
//! so a cron job that overwrites the file each night exposes its latest run. The one value
//! carried over from the previous file is `summarize_last_success_timestamp_seconds`: a run
//! that did not finish (a configuration error, an interrupt) keeps the time of the last one
//! that did, which is what an alert on "no successful run for a day" needs. "Finished" means
//! exit status 0 or 1: a batch in which some inputs failed still ran; its failures are in
//! `summarize_run_documents{status="error"}` and `summarize_run_errors`.
//!
//! The file is written to a temporary name in the same folder (not ending in `.prom`, so the
//! collector never reads it half-written), then renamed over the old one
//! (`cache::replace_file`).

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};

use super::RunStats;

/// Upper bounds, in seconds, of the stage latency histogram buckets (`+Inf` is implied).
pub const LATENCY_BUCKETS_S: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

const LAST_SUCCESS: &str = "summarize_last_success_timestamp_seconds";

/// What the metrics file needs beyond the run's statistics.
pub struct RunInfo<'a> {
    /// The process's exit status.
    pub exit_code: u8,
    /// When the run ended, in seconds since the Unix epoch.
    pub finished_at: f64,
    pub backend: &'a str,
}

/// The exposition text for one run; `previous` is the old file's text, if any.
pub fn render(stats: &RunStats, info: &RunInfo, previous: Option<&str>) -> String {
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, samples: &[(String, f64)]| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {}", number(*value));
        }
    };
    let backend = label_value(info.backend);
    family(
        "summarize_run_info",
        "gauge",
        "Always 1; the labels say which backend the last run used.",
        &[(format!("{{backend=\"{backend}\"}}"), 1.0)],
    );
    family(
        "summarize_run_documents",
        "gauge",
        "Inputs of the last run by outcome (not_run: left when it was interrupted).",
        &[
            ("{status=\"ok\"}".into(), stats.ok as f64),
            ("{status=\"error\"}".into(), stats.error as f64),
            ("{status=\"not_run\"}".into(), stats.not_run as f64),
        ],
    );
    let errors: Vec<(String, f64)> = stats
        .error_classes
        .iter()
        .map(|(class, n)| (format!("{{class=\"{}\"}}", label_value(class)), *n as f64))
        .collect();
    family(
        "summarize_run_errors",
        "gauge",
        "Failed inputs of the last run by error class.",
        &errors,
    );
    family(
        "summarize_run_tokens",
        "gauge",
        "Model tokens of the last run: prompt (in) and generated (out).",
        &[
            ("{direction=\"in\"}".into(), stats.tokens_in as f64),
            ("{direction=\"out\"}".into(), stats.tokens_out as f64),
        ],
    );
    let guard: Vec<(String, f64)> = stats
        .guard
        .iter()
        .map(|(outcome, n)| {
            (
                format!("{{outcome=\"{}\"}}", label_value(outcome)),
                *n as f64,
            )
        })
        .collect();
    family(
        "summarize_run_guard_summaries",
        "gauge",
        "Model summaries of the last run by faithfulness guard outcome (passed, repaired, fallback, flagged).",
        &guard,
    );
    family(
        "summarize_run_duration_seconds",
        "gauge",
        "Wall time of the last run.",
        &[(String::new(), stats.elapsed_s)],
    );
    family(
        "summarize_run_exit_code",
        "gauge",
        "Exit status of the last run (0 all ok, 1 some inputs failed, 2 configuration error, 130 interrupted).",
        &[(String::new(), f64::from(info.exit_code))],
    );
    family(
        "summarize_last_run_timestamp_seconds",
        "gauge",
        "When the last run ended (Unix time).",
        &[(String::new(), info.finished_at)],
    );
    let finished = matches!(info.exit_code, 0 | 1);
    let last_success = if finished {
        Some(info.finished_at)
    } else {
        previous.and_then(previous_success)
    };
    if let Some(at) = last_success {
        family(
            LAST_SUCCESS,
            "gauge",
            "When the last run that finished (exit status 0 or 1) ended (Unix time).",
            &[(String::new(), at)],
        );
    }
    let _ = writeln!(
        out,
        "# HELP summarize_stage_duration_seconds Per-document time in each pipeline stage of the last run."
    );
    let _ = writeln!(out, "# TYPE summarize_stage_duration_seconds histogram");
    for (stage, latency) in &stats.latency {
        let stage = label_value(stage);
        for (le, count) in LATENCY_BUCKETS_S.iter().zip(&latency.buckets) {
            let _ = writeln!(
                out,
                "summarize_stage_duration_seconds_bucket{{stage=\"{stage}\",le=\"{}\"}} {count}",
                number(*le)
            );
        }
        let _ = writeln!(
            out,
            "summarize_stage_duration_seconds_bucket{{stage=\"{stage}\",le=\"+Inf\"}} {}",
            latency.count
        );
        let _ = writeln!(
            out,
            "summarize_stage_duration_seconds_sum{{stage=\"{stage}\"}} {}",
            number(latency.sum_ms / 1000.0)
        );
        let _ = writeln!(
            out,
            "summarize_stage_duration_seconds_count{{stage=\"{stage}\"}} {}",
            latency.count
        );
    }
    out
}

/// Writes `text` to `path` atomically (a temporary file beside it, then a rename).
pub fn write(path: &Path, stats: &RunStats, info: &RunInfo) -> Result<()> {
    let previous = std::fs::read_to_string(path).ok();
    let text = render(stats, info, previous.as_deref());
    crate::cache::replace_file(path, text.as_bytes()).with_context(|| {
        format!(
            "cannot write the --metrics file '{}'; check that its folder exists and is writable",
            path.display()
        )
    })
}

/// `summarize_last_success_timestamp_seconds` of an earlier file.
fn previous_success(text: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(LAST_SUCCESS)?.trim().parse().ok())
}

/// A sample value as the exposition format writes it (integers without a fraction).
fn number(v: f64) -> String {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v}")
    }
}

/// A label value with `\`, `"` and newlines escaped.
fn label_value(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Latency;

    fn stats() -> RunStats {
        let mut s = RunStats {
            inputs: 3,
            ok: 2,
            error: 1,
            elapsed_s: 4.5,
            tokens_in: 300,
            tokens_out: 120,
            ..RunStats::default()
        };
        s.error_classes.insert("http_client_error".into(), 1);
        s.guard.insert("passed".into(), 2);
        s.latency
            .insert("fetch".into(), Latency::from_ms(&[3, 40, 2_000]));
        s
    }

    #[test]
    fn renders_counts_and_a_cumulative_histogram() {
        let info = RunInfo {
            exit_code: 1,
            finished_at: 1_700_000_000.0,
            backend: "local",
        };
        let text = render(&stats(), &info, None);
        for line in [
            "summarize_run_documents{status=\"ok\"} 2",
            "summarize_run_errors{class=\"http_client_error\"} 1",
            "summarize_run_guard_summaries{outcome=\"passed\"} 2",
            "summarize_run_duration_seconds 4.5",
            "summarize_last_success_timestamp_seconds 1700000000",
            "summarize_stage_duration_seconds_bucket{stage=\"fetch\",le=\"0.005\"} 1",
            "summarize_stage_duration_seconds_bucket{stage=\"fetch\",le=\"0.05\"} 2",
            "summarize_stage_duration_seconds_bucket{stage=\"fetch\",le=\"2.5\"} 3",
            "summarize_stage_duration_seconds_bucket{stage=\"fetch\",le=\"+Inf\"} 3",
            "summarize_stage_duration_seconds_sum{stage=\"fetch\"} 2.043",
            "summarize_stage_duration_seconds_count{stage=\"fetch\"} 3",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}:\n{text}");
        }
    }

    #[test]
    fn an_unfinished_run_keeps_the_last_success_time() {
        let ok = RunInfo {
            exit_code: 0,
            finished_at: 100.0,
            backend: "extractive",
        };
        let first = render(&stats(), &ok, None);
        let failed = RunInfo {
            exit_code: 2,
            finished_at: 200.0,
            backend: "extractive",
        };
        let second = render(&stats(), &failed, Some(&first));
        assert!(second.contains("summarize_last_success_timestamp_seconds 100\n"));
        assert!(second.contains("summarize_last_run_timestamp_seconds 200\n"));
        // No earlier success: the series is absent rather than zero.
        let alone = render(&stats(), &failed, None);
        assert!(!alone.contains("summarize_last_success_timestamp_seconds"));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label_value("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
