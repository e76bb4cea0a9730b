//! Report records and the sinks that write them (JSONL, CSV, Markdown), plus run statistics.
//! A record is written whole and flushed as soon as it is final, so a crash never leaves a torn
//! line. Text in records has already been sanitized by the extractor; CSV cells that a
//! spreadsheet would run as a formula are neutralised here.

mod charts;
pub mod html;
pub mod metrics;
use std::collections::BTreeMap;
use std::io::{self, Write};
use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::cli::Format;
use crate::eval::MeanCi;

/// One summarized input.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SummaryRecord {
    pub id: String,
    pub source: String,
    pub status: Status,
    pub error_class: Option<String>,
    pub error: Option<String>,
    pub http_status: Option<u16>,
    pub title: Option<String>,
    pub summary: Option<String>,
    pub backend: String,
    pub model: String,
    pub prompt: String,
    pub chunks: usize,
    /// Words the model saw after `--preselect` (absent: the whole document).
    pub preselected_words: Option<usize>,
    /// Sentences of the page that spoke to the model ("ignore the above…"), left out of what
    /// it read (model backends).
    pub instructions_dropped: Option<usize>,
    /// The token limit cut the summary's last sentence, which was dropped.
    pub truncated: Option<bool>,
    /// The faithfulness guard: passed, repaired, fallback (the summary is the extractive one)
    /// or flagged; absent with `--guard off` and for the extractive backend.
    pub guard: Option<String>,
    pub guard_reasons: Option<Vec<String>>,
    /// The model's own summary, kept when the guard changed it.
    pub model_summary: Option<String>,
    /// Label lines, fence markers and preambles removed from the model's reply.
    pub echo_stripped: Option<usize>,
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub fetch_ms: u64,
    pub extract_ms: u64,
    /// The page was read through the headless browser (`--render`), which took `render_ms`.
    pub rendered: bool,
    pub render_ms: Option<u64>,
    /// Time waiting for an engine slot or the rate limiter before summarizing.
    pub queue_ms: u64,
    /// Time summarizing, waiting excluded.
    pub summarize_ms: u64,
    pub total_ms: u64,
    pub input_words: usize,
    pub summary_words: usize,
    /// Distinct numbers written in digits in the summary.
    pub summary_numbers: Option<usize>,
    /// The summary came from the cache: no model call was made.
    pub cache_hit: bool,
    /// Generated tokens per second of summarizing (model backends).
    pub tokens_per_s: Option<f64>,
    /// ROUGE F-measures against the reference, when one was given.
    pub rouge1: Option<f64>,
    pub rouge2: Option<f64>,
    #[serde(rename = "rougeL")]
    pub rouge_l: Option<f64>,
    #[serde(rename = "rougeLsum")]
    pub rouge_lsum: Option<f64>,
    /// Reference-free checks (see README: "Reading the quality columns").
    pub compression: Option<f64>,
    pub coverage: Option<f64>,
    pub density: Option<f64>,
    pub novel_bigrams: Option<f64>,
    pub unsupported_numbers: Option<Vec<String>>,
    pub source_lang: Option<String>,
    pub summary_lang: Option<String>,
    pub lang_match: Option<bool>,
    /// Whether the summary is within half to one and a half times the requested length.
    pub length_ok: Option<bool>,
}

impl SummaryRecord {
    /// Copies a summary's scores into the record's columns.
    pub fn set_scores(&mut self, s: crate::eval::SummaryScores) {
        if let Some(f) = s.rouge {
            (self.rouge1, self.rouge2, self.rouge_l, self.rouge_lsum) = (
                Some(f.rouge1),
                Some(f.rouge2),
                Some(f.rouge_l),
                Some(f.rouge_lsum),
            );
        }
        let q = s.quality;
        self.compression = Some(q.compression);
        self.coverage = Some(q.coverage);
        self.density = Some(q.density);
        self.novel_bigrams = Some(q.novel_bigrams);
        self.unsupported_numbers = Some(q.unsupported_numbers);
        self.source_lang = q.source_lang;
        self.summary_lang = q.summary_lang;
        self.lang_match = q.lang_match;
        self.summary_numbers = Some(s.numbers);
        self.length_ok = Some(s.length_ok);
    }
}

/// One extracted input (`summarize extract`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ExtractRecord {
    pub id: String,
    pub source: String,
    pub status: Status,
    pub error_class: Option<String>,
    pub error: Option<String>,
    pub http_status: Option<u16>,
    pub title: Option<String>,
    pub author: Option<String>,
    pub date: Option<String>,
    pub text: Option<String>,
    pub words: usize,
    pub fetch_ms: u64,
    pub extract_ms: u64,
    /// The page was read through the headless browser (`--render`), which took `render_ms`.
    pub rendered: bool,
    pub render_ms: Option<u64>,
    pub total_ms: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    #[default]
    Ok,
    Error,
}

/// Readies a JSONL report for `--resume`: keeps its complete `ok` records (rewriting the file
/// atomically without failed records and any torn last line) and returns their ids.
pub fn prepare_resume(path: &std::path::Path) -> anyhow::Result<std::collections::HashSet<String>> {
    use anyhow::Context;
    use std::io::BufRead;
    let mut kept = std::collections::HashSet::new();
    // Streamed line by line into the replacement: memory holds the ids, not the report.
    let file = match std::fs::File::open(path) {
        Ok(f) => Some(f),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => {
            return Err(e).with_context(|| format!("cannot read '{}' to resume", path.display()))
        }
    };
    let tmp = path.with_extension("resume-tmp");
    let cannot_write = || format!("cannot write '{}'", tmp.display());
    let mut out = io::BufWriter::new(std::fs::File::create(&tmp).with_context(cannot_write)?);
    if let Some(file) = file {
        let mut reader = io::BufReader::new(file);
        let mut raw = Vec::new();
        loop {
            raw.clear();
            let n = reader
                .read_until(b'\n', &mut raw)
                .with_context(|| format!("cannot read '{}' to resume", path.display()))?;
            if n == 0 {
                break;
            }
            // A line without its newline was cut off by a crash mid-write.
            let Some(body) = raw.strip_suffix(b"\n") else {
                continue;
            };
            let body = String::from_utf8_lossy(body);
            let Ok(Value::Object(rec)) = serde_json::from_str::<Value>(&body) else {
                continue;
            };
            if rec.get("status").and_then(Value::as_str) != Some("ok") {
                continue;
            }
            if let Some(id) = rec.get("id").and_then(Value::as_str) {
                if kept.insert(id.to_string()) {
                    out.write_all(body.as_bytes()).with_context(cannot_write)?;
                    out.write_all(b"\n").with_context(cannot_write)?;
                }
            }
        }
    }
    out.into_inner()
        .map_err(|e| e.into_error())
        .and_then(|f| f.sync_all())
        .with_context(cannot_write)?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot replace '{}'", path.display()))?;
    Ok(kept)
}

/// Writes records in one format to one destination.
pub struct Sink {
    out: Box<dyn Write + Send>,
    format: Format,
    csv_header: Option<Vec<String>>,
    /// `-f html`: the records so far, and what the page says about the run.
    html: Option<HtmlRun>,
}

/// What an HTML report needs besides its records.
pub struct HtmlRun {
    pub title: String,
    pub requested_words: Option<usize>,
    records: Vec<Map<String, Value>>,
}

impl HtmlRun {
    pub fn new(title: String, requested_words: Option<usize>) -> HtmlRun {
        HtmlRun {
            title,
            requested_words,
            records: Vec::new(),
        }
    }
}

impl Sink {
    pub fn new(out: Box<dyn Write + Send>, format: Format) -> Sink {
        Sink {
            out,
            format,
            csv_header: None,
            html: (format == Format::Html).then(|| HtmlRun::new("run".into(), None)),
        }
    }

    /// An HTML sink with the page's title and the requested summary length.
    pub fn html(out: Box<dyn Write + Send>, run: HtmlRun) -> Sink {
        Sink {
            out,
            format: Format::Html,
            csv_header: None,
            html: Some(run),
        }
    }

    /// Whether records should carry the start of their extracted text (`text_start`).
    pub fn wants_text(&self) -> bool {
        self.html.is_some()
    }

    /// Ends the report: an HTML page is written now, whole; the other formats are complete.
    pub fn finish(&mut self, stats: &RunStats) -> io::Result<()> {
        let Some(run) = self.html.take() else {
            return Ok(());
        };
        let page = html::Page {
            title: &run.title,
            stats,
            requested_words: run.requested_words,
            elapsed_known: true,
        };
        self.out
            .write_all(html::render(&page, &run.records).as_bytes())?;
        self.out.flush()
    }

    /// Writes one record whole, then flushes it (`-f html` keeps it for the page).
    pub fn write(&mut self, record: &Map<String, Value>) -> io::Result<()> {
        if let Some(run) = &mut self.html {
            run.records.push(record.clone());
            return Ok(());
        }
        let bytes = match self.format {
            Format::Jsonl => {
                let mut line = serde_json::to_vec(record).map_err(io::Error::other)?;
                line.push(b'\n');
                line
            }
            Format::Csv => self.csv_row(record)?,
            Format::Md => markdown(record).into_bytes(),
            Format::Html => unreachable!("html records are kept for the page"),
        };
        self.out.write_all(&bytes)?;
        self.out.flush()
    }

    fn csv_row(&mut self, record: &Map<String, Value>) -> io::Result<Vec<u8>> {
        let mut w = csv::WriterBuilder::new().from_writer(Vec::new());
        if self.csv_header.is_none() {
            let header: Vec<String> = record.keys().cloned().collect();
            w.write_record(&header).map_err(io::Error::other)?;
            self.csv_header = Some(header);
        }
        let header = self.csv_header.as_ref().expect("set above");
        let row: Vec<String> = header
            .iter()
            .map(|k| csv_cell(record.get(k).unwrap_or(&Value::Null)))
            .collect();
        w.write_record(&row).map_err(io::Error::other)?;
        w.into_inner().map_err(|e| io::Error::other(e.to_string()))
    }
}

/// A cell value as text, with spreadsheet formulas defused by a leading apostrophe.
pub fn csv_cell(v: &Value) -> String {
    let s = match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) && !matches!(v, Value::Number(_)) {
        format!("'{s}")
    } else {
        s
    }
}

fn markdown(record: &Map<String, Value>) -> String {
    let get = |k: &str| record.get(k).and_then(Value::as_str).unwrap_or("");
    let heading = Some(get("title"))
        .filter(|t| !t.is_empty())
        .unwrap_or(get("source"));
    let mut out = format!("## {}\n\n", heading.replace('\n', " "));
    out.push_str(&format!("- source: {}\n", get("source")));
    if get("status") == "error" {
        out.push_str(&format!(
            "- error ({}): {}\n\n",
            get("error_class"),
            get("error")
        ));
        return out;
    }
    for key in ["author", "date", "backend", "model"] {
        if !get(key).is_empty() {
            out.push_str(&format!("- {key}: {}\n", get(key)));
        }
    }
    let body = [get("summary"), get("text")]
        .into_iter()
        .find(|s| !s.is_empty())
        .unwrap_or("");
    out.push('\n');
    out.push_str(body.trim());
    out.push_str("\n\n");
    out
}

/// Turns a record struct into the ordered map the sinks write.
pub fn to_map<T: Serialize>(record: &T) -> Map<String, Value> {
    match serde_json::to_value(record) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    }
}

/// Latencies of one stage over the whole run, exact (every record counted).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Latency {
    pub count: usize,
    /// Sum of all values, for the Prometheus histogram.
    #[serde(skip)]
    pub sum_ms: f64,
    /// Cumulative counts at each bound of `metrics::LATENCY_BUCKETS_S` (not in `--stats`).
    #[serde(skip)]
    pub buckets: Vec<usize>,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    pub fn from_ms(values: &[u64]) -> Latency {
        let mut h = Histogram::default();
        values.iter().for_each(|&v| h.add(v));
        Latency::from_histogram(&h)
    }

    /// The same figures, to the bit, from values kept as counts.
    pub fn from_histogram(h: &Histogram) -> Latency {
        if h.count == 0 {
            return Latency::default();
        }
        let sum_ms = h.sum as f64;
        let below = |limit: f64| -> usize {
            h.counts
                .range(..=limit.floor().max(0.0) as u64)
                .map(|(_, n)| n)
                .sum()
        };
        Latency {
            count: h.count,
            sum_ms,
            buckets: metrics::LATENCY_BUCKETS_S
                .iter()
                .map(|&le| below(le * 1000.0))
                .collect(),
            mean_ms: sum_ms / h.count as f64,
            p50_ms: h.percentile(50.0),
            p90_ms: h.percentile(90.0),
            p99_ms: h.percentile(99.0),
            max_ms: h.counts.keys().next_back().map_or(0.0, |&v| v as f64),
        }
    }
}

/// Millisecond values as counts per value: exact percentiles in memory that grows with the
/// number of distinct values (a few thousand), not with the number of records.
#[derive(Debug, Clone, Default)]
pub struct Histogram {
    counts: BTreeMap<u64, usize>,
    count: usize,
    sum: u128,
}

impl Histogram {
    pub fn add(&mut self, ms: u64) {
        *self.counts.entry(ms).or_default() += 1;
        self.count += 1;
        self.sum += u128::from(ms);
    }

    pub fn sum(&self) -> u128 {
        self.sum
    }

    /// The i-th smallest value (0-based).
    fn nth(&self, i: usize) -> f64 {
        let mut seen = 0;
        for (&v, &n) in &self.counts {
            seen += n;
            if i < seen {
                return v as f64;
            }
        }
        f64::NAN
    }

    /// numpy's linear percentile, as `eval::stats::percentile` of the sorted values.
    pub fn percentile(&self, p: f64) -> f64 {
        crate::eval::stats::percentile_at(self.count, p, |i| self.nth(i))
    }
}

/// What a run did, for stderr and `--stats FILE`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunStats {
    pub inputs: usize,
    pub ok: usize,
    pub error: usize,
    /// Inputs not reached because the run was interrupted.
    pub not_run: usize,
    pub error_classes: BTreeMap<String, usize>,
    pub elapsed_s: f64,
    pub docs_per_min: f64,
    pub latency: BTreeMap<String, Latency>,
    pub tokens_in: u64,
    pub tokens_out: u64,
    /// Generated tokens per second of summarize time, over the run (model backends).
    pub tokens_per_s: Option<f64>,
    /// Time to first token is not measured: no backend streams yet.
    pub ttft_ms: Option<f64>,
    /// Mean ROUGE F with a 95% bootstrap interval, over records that had a reference.
    pub rouge: BTreeMap<String, MeanCi>,
    /// The same over the summaries a model wrote (the guard passed or repaired them), when
    /// some fell back to the extractive summary.
    pub rouge_model_written: BTreeMap<String, MeanCi>,
    /// Faithfulness guard outcomes (passed, repaired, fallback, flagged) over ok records.
    pub guard: BTreeMap<String, usize>,
    /// How many summaries had each guard finding.
    pub guard_reasons: BTreeMap<String, usize>,
    /// Summaries whose last sentence the token limit cut (and which was dropped).
    pub truncated: usize,
    /// Label lines, fence markers and preambles stripped from model replies, in all.
    pub echo_stripped: usize,
    /// Reference-free checks over successful records.
    pub quality: Option<Quality>,
    /// Per server of a replica set: requests, errors, latency percentiles.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<crate::backend::openai::ReplicaStats>,
}

/// Run-level view of the reference-free checks.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Quality {
    pub records: usize,
    pub mean_compression: f64,
    pub mean_coverage: f64,
    pub mean_density: f64,
    pub mean_novel_bigrams: f64,
    /// Share of summaries with at least one number found nowhere in the source.
    pub unsupported_number_rate: f64,
    /// Distinct numbers in all summaries, and how many of them the source does not have.
    pub numbers: usize,
    pub unsupported_numbers: usize,
    /// `unsupported_numbers / numbers` (0 when no summary has a number).
    pub unsupported_number_share: f64,
    /// Share of summaries whose language differs from the source's (where both were detected).
    pub lang_mismatch_rate: f64,
    /// Share of summaries within the requested length band.
    pub length_ok_rate: f64,
}

/// Collects per-record numbers as the run goes.
#[derive(Debug, Default)]
pub struct StatsCollector {
    stats: RunStats,
    stages: BTreeMap<&'static str, Histogram>,
    rouge: BTreeMap<&'static str, Vec<f64>>,
    rouge_model_written: BTreeMap<&'static str, Vec<f64>>,
    /// Running (sum, count) per reference-free check: only means are reported.
    quality: BTreeMap<&'static str, (f64, usize)>,
    numbers: usize,
    unsupported_numbers: usize,
}

impl StatsCollector {
    pub fn new(inputs: usize) -> StatsCollector {
        StatsCollector {
            stats: RunStats {
                inputs,
                ..RunStats::default()
            },
            ..StatsCollector::default()
        }
    }

    /// Counts one record. Stage times count only where the stage ran.
    pub fn add(&mut self, record: &Map<String, Value>) {
        let ok = record.get("status").and_then(Value::as_str) == Some("ok");
        if ok {
            self.stats.ok += 1;
        } else {
            self.stats.error += 1;
            let class = record
                .get("error_class")
                .and_then(Value::as_str)
                .unwrap_or("unknown");
            *self
                .stats
                .error_classes
                .entry(class.to_string())
                .or_default() += 1;
        }
        let summarized = record
            .get("summarize_ms")
            .and_then(Value::as_u64)
            .is_some_and(|ms| ms > 0);
        for stage in [
            "fetch_ms",
            "render_ms",
            "extract_ms",
            "queue_ms",
            "summarize_ms",
            "total_ms",
        ] {
            if let Some(ms) = record.get(stage).and_then(Value::as_u64) {
                // A wait of 0 ms is a real wait time wherever a summary was made.
                if ms > 0 || stage == "total_ms" || (stage == "queue_ms" && summarized) {
                    self.stages.entry(stage).or_default().add(ms);
                }
            }
        }
        let guard = record.get("guard").and_then(Value::as_str);
        if let Some(outcome) = guard {
            *self.stats.guard.entry(outcome.to_string()).or_default() += 1;
        }
        if let Some(reasons) = record.get("guard_reasons").and_then(Value::as_array) {
            for r in reasons.iter().filter_map(Value::as_str) {
                *self.stats.guard_reasons.entry(r.to_string()).or_default() += 1;
            }
        }
        if record.get("truncated").and_then(Value::as_bool) == Some(true) {
            self.stats.truncated += 1;
        }
        self.stats.echo_stripped += record
            .get("echo_stripped")
            .and_then(Value::as_u64)
            .unwrap_or(0) as usize;
        self.stats.tokens_in += record.get("tokens_in").and_then(Value::as_u64).unwrap_or(0);
        self.stats.tokens_out += record
            .get("tokens_out")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        for metric in ["rouge1", "rouge2", "rougeL", "rougeLsum"] {
            if let Some(f) = record.get(metric).and_then(Value::as_f64) {
                self.rouge.entry(metric).or_default().push(f);
                if guard.is_some_and(|g| g != "fallback") {
                    self.rouge_model_written.entry(metric).or_default().push(f);
                }
            }
        }
        if ok && record.get("coverage").is_some_and(|v| !v.is_null()) {
            let num = |k: &str| record.get(k).and_then(Value::as_f64).unwrap_or(0.0);
            let flag = |b: bool| if b { 1.0 } else { 0.0 };
            let q = &mut self.quality;
            fn push(q: &mut BTreeMap<&'static str, (f64, usize)>, k: &'static str, x: f64) {
                let e = q.entry(k).or_default();
                e.0 += x;
                e.1 += 1;
            }
            push(q, "compression", num("compression"));
            push(q, "coverage", num("coverage"));
            push(q, "density", num("density"));
            push(q, "novel_bigrams", num("novel_bigrams"));
            let unsupported = record
                .get("unsupported_numbers")
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty());
            push(q, "unsupported", flag(unsupported));
            self.numbers += record
                .get("summary_numbers")
                .and_then(Value::as_u64)
                .unwrap_or(0) as usize;
            self.unsupported_numbers += record
                .get("unsupported_numbers")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            if let Some(m) = record.get("lang_match").and_then(Value::as_bool) {
                push(q, "lang_mismatch", flag(!m));
            }
            if let Some(m) = record.get("length_ok").and_then(Value::as_bool) {
                push(q, "length_ok", flag(m));
            }
        }
    }

    pub fn finish(mut self, elapsed: Duration) -> RunStats {
        let done = self.stats.ok + self.stats.error;
        self.stats.not_run = self.stats.inputs.saturating_sub(done);
        self.stats.elapsed_s = elapsed.as_secs_f64();
        self.stats.docs_per_min = if elapsed.as_secs_f64() > 0.0 {
            done as f64 * 60.0 / elapsed.as_secs_f64()
        } else {
            0.0
        };
        for (stage, values) in &self.stages {
            let name = stage.trim_end_matches("_ms").to_string();
            self.stats
                .latency
                .insert(name, Latency::from_histogram(values));
        }
        let summarize_s = self
            .stages
            .get("summarize_ms")
            .map_or(0.0, |h| h.sum() as f64 / 1000.0);
        if self.stats.tokens_out > 0 && summarize_s > 0.0 {
            self.stats.tokens_per_s = Some(self.stats.tokens_out as f64 / summarize_s);
        }
        for (metric, values) in &self.rouge {
            self.stats
                .rouge
                .insert(metric.to_string(), MeanCi::of(values));
        }
        if self.stats.guard.get("fallback").copied().unwrap_or(0) > 0 {
            for (metric, values) in &self.rouge_model_written {
                self.stats
                    .rouge_model_written
                    .insert(metric.to_string(), MeanCi::of(values));
            }
        }
        if let Some(coverage) = self.quality.get("coverage") {
            let mean = |k: &str| self.quality.get(k).map_or(0.0, |&(sum, n)| sum / n as f64);
            self.stats.quality = Some(Quality {
                records: coverage.1,
                mean_compression: mean("compression"),
                mean_coverage: mean("coverage"),
                mean_density: mean("density"),
                mean_novel_bigrams: mean("novel_bigrams"),
                unsupported_number_rate: mean("unsupported"),
                numbers: self.numbers,
                unsupported_numbers: self.unsupported_numbers,
                unsupported_number_share: if self.numbers > 0 {
                    self.unsupported_numbers as f64 / self.numbers as f64
                } else {
                    0.0
                },
                lang_mismatch_rate: mean("lang_mismatch"),
                length_ok_rate: mean("length_ok"),
            });
        }
        self.stats
    }
}

/// A run's wall time as people read it: "85 ms", "4.2s", "3m07s", "2h05m".
fn duration(seconds: f64) -> String {
    let s = seconds.max(0.0);
    if s < 1.0 {
        format!("{:.0} ms", s * 1000.0)
    } else if s < 60.0 {
        format!("{s:.1}s")
    } else if s < 3600.0 {
        let t = s.round() as u64;
        format!("{}m{:02}s", t / 60, t % 60)
    } else {
        let m = (s / 60.0).round() as u64;
        format!("{}h{:02}m", m / 60, m % 60)
    }
}

impl RunStats {
    /// The human summary printed on stderr at the end of a run.
    pub fn render(&self) -> String {
        // A rate over less than a second is noise ("267640.9 docs/min" for one file): left out.
        let rate = if self.elapsed_s >= 1.0 && self.ok + self.error > 0 {
            let r = self.docs_per_min;
            if r >= 100.0 {
                format!(" ({r:.0} docs/min)")
            } else {
                format!(" ({r:.1} docs/min)")
            }
        } else {
            String::new()
        };
        let mut out = format!(
            "{} {}: {} ok, {} failed{} in {}{}\n",
            self.inputs,
            if self.inputs == 1 { "input" } else { "inputs" },
            self.ok,
            self.error,
            if self.not_run > 0 {
                format!(", {} not run", self.not_run)
            } else {
                String::new()
            },
            duration(self.elapsed_s),
            rate
        );
        if !self.error_classes.is_empty() {
            let classes: Vec<String> = self
                .error_classes
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            out.push_str(&format!("errors: {}\n", classes.join(", ")));
        }
        if !self.latency.is_empty() {
            out.push_str("stage        p50 ms   p90 ms   p99 ms   max ms\n");
            for (stage, l) in &self.latency {
                out.push_str(&format!(
                    "{stage:<10} {:>8.0} {:>8.0} {:>8.0} {:>8.0}\n",
                    l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms
                ));
            }
        }
        if !self.replicas.is_empty() {
            out.push_str("replica                               requests errors   p50 ms   p90 ms   p99 ms\n");
            for r in &self.replicas {
                out.push_str(&format!(
                    "{:<37} {:>8} {:>6} {:>8.0} {:>8.0} {:>8.0}\n",
                    r.base_url,
                    r.requests,
                    r.errors,
                    r.latency.p50_ms,
                    r.latency.p90_ms,
                    r.latency.p99_ms
                ));
            }
        }
        if self.tokens_in + self.tokens_out > 0 {
            out.push_str(&format!(
                "tokens: {} in, {} out",
                self.tokens_in, self.tokens_out
            ));
            if let Some(tps) = self.tokens_per_s {
                out.push_str(&format!(" ({tps:.1} generated tokens/s)"));
            }
            out.push('\n');
        }
        if !self.rouge.is_empty() {
            out.push_str(&format!(
                "ROUGE F (n={}, 95% CI): {}\n",
                self.rouge.values().next().map_or(0, |c| c.n),
                rouge_parts(&self.rouge).join(", ")
            ));
        }
        if !self.rouge_model_written.is_empty() {
            out.push_str(&format!(
                "ROUGE F of model-written summaries (n={}): {}\n",
                self.rouge_model_written.values().next().map_or(0, |c| c.n),
                rouge_parts(&self.rouge_model_written).join(", ")
            ));
        }
        if !self.guard.is_empty() {
            let outcomes: Vec<String> = ["passed", "repaired", "fallback", "flagged"]
                .iter()
                .filter_map(|k| self.guard.get(*k).map(|n| format!("{k} {n}")))
                .collect();
            let reasons: Vec<String> = self
                .guard_reasons
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            out.push_str(&format!("guard: {}", outcomes.join(", ")));
            if !reasons.is_empty() {
                out.push_str(&format!(" (findings: {})", reasons.join(", ")));
            }
            out.push('\n');
        }
        // Model replies changed before the guard: unfinished sentences, echoed lines.
        let mut edits = Vec::new();
        if self.truncated > 0 {
            edits.push(format!(
                "{} truncated (unfinished sentence dropped)",
                self.truncated
            ));
        }
        if self.echo_stripped > 0 {
            edits.push(format!(
                "{} label, marker or preamble lines stripped",
                self.echo_stripped
            ));
        }
        if !edits.is_empty() {
            out.push_str(&format!("replies: {}\n", edits.join(", ")));
        }
        if let Some(q) = &self.quality {
            out.push_str(&format!(
                "quality: coverage {:.2}, density {:.1}, novel bigrams {:.2}, unsupported numbers {} of {} ({:.1}%, in {:.0}% of summaries), length ok {:.0}%\n",
                q.mean_coverage,
                q.mean_density,
                q.mean_novel_bigrams,
                q.unsupported_numbers,
                q.numbers,
                q.unsupported_number_share * 100.0,
                q.unsupported_number_rate * 100.0,
                q.length_ok_rate * 100.0
            ));
        }
        out
    }
}

fn rouge_parts(rouge: &BTreeMap<String, MeanCi>) -> Vec<String> {
    rouge
        .iter()
        .map(|(m, c)| {
            format!(
                "{m} {:.2} [{:.2}, {:.2}]",
                c.mean * 100.0,
                c.ci95_low * 100.0,
                c.ci95_high * 100.0
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_neutralises_formulas_but_not_numbers() {
        assert_eq!(
            csv_cell(&Value::String("=HYPERLINK(\"x\")".into())),
            "'=HYPERLINK(\"x\")"
        );
        assert_eq!(csv_cell(&Value::String("@SUM(A1)".into())), "'@SUM(A1)");
        assert_eq!(csv_cell(&serde_json::json!(-3)), "-3");
        assert_eq!(csv_cell(&Value::String("plain".into())), "plain");
    }

    /// Issue 10: latencies kept as counts give the figures of the sorted values, to the bit.
    #[test]
    fn issue10_histogram_latency_equals_the_sorted_values() {
        let mut x: u64 = 12345;
        let mut values = Vec::new();
        for _ in 0..5_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            values.push(x % 3_000 + (x % 7) * 10_000);
        }
        let l = Latency::from_ms(&values);
        let mut sorted: Vec<f64> = values.iter().map(|&v| v as f64).collect();
        sorted.sort_by(f64::total_cmp);
        for (p, got) in [(50.0, l.p50_ms), (90.0, l.p90_ms), (99.0, l.p99_ms)] {
            assert_eq!(
                got.to_bits(),
                crate::eval::stats::percentile(&sorted, p).to_bits()
            );
        }
        assert_eq!(l.count, 5_000);
        assert_eq!(l.max_ms, *sorted.last().unwrap());
        assert_eq!(l.sum_ms, sorted.iter().sum::<f64>());
        for (i, &le) in metrics::LATENCY_BUCKETS_S.iter().enumerate() {
            assert_eq!(
                l.buckets[i],
                sorted.partition_point(|&v| v <= le * 1000.0),
                "bucket {le}"
            );
        }
    }

    #[test]
    fn latency_percentiles_are_exact() {
        let l = Latency::from_ms(&[10, 20, 30, 40, 50, 60, 70, 80, 90, 100]);
        assert_eq!(l.p50_ms, 55.0);
        assert_eq!(l.max_ms, 100.0);
        assert!((l.p90_ms - 91.0).abs() < 1e-9);
    }

    /// Issue 9: guard outcomes, queue time and the ROUGE of model-written summaries are counted.
    #[test]
    fn issue9_stats_count_guard_outcomes_and_queue_time() {
        let mut c = StatsCollector::new(3);
        let rec = |guard: &str, rouge1: f64, queue: u64, numbers: usize, unsupported: &[&str]| {
            to_map(&SummaryRecord {
                guard: Some(guard.into()),
                guard_reasons: Some(vec!["unsupported_name".into()]),
                rouge1: Some(rouge1),
                queue_ms: queue,
                summarize_ms: 100,
                coverage: Some(1.0),
                summary_numbers: Some(numbers),
                unsupported_numbers: Some(unsupported.iter().map(|s| s.to_string()).collect()),
                truncated: Some(guard == "repaired"),
                ..SummaryRecord::default()
            })
        };
        c.add(&rec("passed", 0.5, 0, 2, &[]));
        c.add(&rec("repaired", 0.3, 200, 1, &["7"]));
        c.add(&rec("fallback", 0.1, 400, 1, &[]));
        let s = c.finish(Duration::from_secs(1));
        assert_eq!(
            s.guard["passed"] + s.guard["repaired"] + s.guard["fallback"],
            3
        );
        assert_eq!(s.guard_reasons["unsupported_name"], 3);
        assert_eq!(s.truncated, 1);
        assert!((s.rouge["rouge1"].mean - 0.3).abs() < 1e-12);
        assert!((s.rouge_model_written["rouge1"].mean - 0.4).abs() < 1e-12);
        assert_eq!(s.latency["queue"].count, 3);
        assert_eq!(s.latency["queue"].max_ms, 400.0);
        let q = s.quality.as_ref().unwrap();
        assert_eq!((q.numbers, q.unsupported_numbers), (4, 1));
        assert!((q.unsupported_number_share - 0.25).abs() < 1e-12);
        let text = s.render();
        assert!(
            text.contains("guard: passed 1, repaired 1, fallback 1"),
            "{text}"
        );
        assert!(text.contains("model-written summaries (n=2)"), "{text}");
        assert!(text.contains("replies: 1 truncated"), "{text}");
    }

    /// Issue 12: the first line reads right for one file and for a night's run.
    #[test]
    fn run_summary_reads_right_at_every_size() {
        let one = |ok: bool, elapsed: Duration| {
            let mut c = StatsCollector::new(1);
            c.add(&to_map(&SummaryRecord {
                status: if ok { Status::Ok } else { Status::Error },
                ..SummaryRecord::default()
            }));
            c.finish(elapsed).render()
        };
        let first = |text: String| text.lines().next().unwrap().to_string();
        assert_eq!(
            first(one(false, Duration::from_millis(3))),
            "1 input: 0 ok, 1 failed in 3 ms"
        );
        assert_eq!(
            first(one(true, Duration::from_secs(2))),
            "1 input: 1 ok, 0 failed in 2.0s (30.0 docs/min)"
        );
        let mut c = StatsCollector::new(5000);
        for _ in 0..5000 {
            c.add(&to_map(&SummaryRecord {
                status: Status::Ok,
                ..SummaryRecord::default()
            }));
        }
        assert_eq!(
            first(c.finish(Duration::from_secs(3 * 3600 + 125)).render()),
            "5000 inputs: 5000 ok, 0 failed in 3h02m (27.5 docs/min)"
        );
        assert_eq!(duration(187.4), "3m07s");
    }

    #[test]
    fn csv_rows_share_one_header() {
        let buf: Vec<u8> = Vec::new();
        let mut sink = Sink::new(Box::new(buf), Format::Csv);
        let a = to_map(&SummaryRecord {
            id: "a".into(),
            summary: Some("line one\nline \"two\"".into()),
            ..Default::default()
        });
        let row = sink.csv_row(&a).unwrap();
        let text = String::from_utf8(row).unwrap();
        assert!(text.starts_with("id,source,status,"));
        assert!(text.contains("\"line one\nline \"\"two\"\"\""));
        let row2 = String::from_utf8(sink.csv_row(&a).unwrap()).unwrap();
        assert!(!row2.starts_with("id,"));
    }
}
