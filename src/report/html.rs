//! `-f html` and `summarize report`: one self-contained HTML file for people reviewing a run.
//! No network and no external assets: the charts are inline SVG (charts.rs), the records are
//! embedded as JSON and the table (sort, filter, pages, a row opens to the summary beside the
//! start of the extracted text) is a small script in the page.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{Map, Value};

use super::charts::{self, Bar};
use super::RunStats;

/// Characters of extracted text kept per record (the start of the document).
pub const TEXT_CHARS: usize = 600;
/// Characters of summary kept per record past this many records, to keep the file small.
const BIG_RUN: usize = 20_000;
const BIG_RUN_SUMMARY_CHARS: usize = 1_000;

/// The columns the page embeds from each record.
const COLUMNS: &[&str] = &[
    "id",
    "source",
    "status",
    "error_class",
    "error",
    "title",
    "backend",
    "model",
    "summary",
    "guard",
    "guard_reasons",
    "model_summary",
    "truncated",
    "input_words",
    "summary_words",
    "total_ms",
    "summarize_ms",
    "rouge1",
    "rougeLsum",
    "coverage",
    "compression",
    "unsupported_numbers",
    "length_ok",
    "text_start",
];

/// What the page shows besides the records.
pub struct Page<'a> {
    /// What the run was (the report file's name, or the inputs).
    pub title: &'a str,
    pub stats: &'a RunStats,
    /// The requested summary length, when known.
    pub requested_words: Option<usize>,
    /// Whether the run's wall time is known (not for `summarize report` without `--stats`).
    pub elapsed_known: bool,
}

/// The whole page.
pub fn render(page: &Page, records: &[Map<String, Value>]) -> String {
    let capped = records.len() > BIG_RUN;
    let mut rows = Vec::with_capacity(records.len());
    for r in records {
        let mut row = Map::new();
        for &k in COLUMNS {
            if let Some(v) = r.get(k).filter(|v| !v.is_null()) {
                let v = match (k, v) {
                    ("text_start", Value::String(s)) => Value::String(prefix(s, TEXT_CHARS)),
                    ("summary" | "model_summary", Value::String(s)) if capped => {
                        Value::String(prefix(s, BIG_RUN_SUMMARY_CHARS))
                    }
                    _ => v.clone(),
                };
                row.insert(k.to_string(), v);
            }
        }
        rows.push(Value::Object(row));
    }
    let has_text = records.iter().any(|r| r.contains_key("text_start"));
    let data = script_json(&Value::Array(rows));
    let mut notes = Vec::new();
    if has_text {
        notes.push(format!(
            "Extracted text: the first {TEXT_CHARS} characters of each document."
        ));
    } else {
        notes.push(
            "Extracted text is not in this report (give `summarize report` the inputs with --texts)."
                .to_string(),
        );
    }
    if capped {
        notes.push(format!(
            "Over {BIG_RUN} records: summaries are cut at {BIG_RUN_SUMMARY_CHARS} characters; the JSONL report has them whole."
        ));
    }
    let mut html = String::with_capacity(data.len() + 64 * 1024);
    html.push_str(&head(
        &format!("summarize: {}", page.title),
        "script-src 'unsafe-inline'; img-src data:",
    ));
    let _ = writeln!(html, "<h1>summarize: {}</h1>", esc(page.title));
    html.push_str(&summary_section(page));
    html.push_str("<h2>Charts</h2>\n<div id=\"charts\">\n");
    for (id, svg) in chart_list(page, records) {
        let _ = writeln!(
            html,
            "<figure class=\"chart\" id=\"chart-{id}\">{svg}</figure>"
        );
    }
    html.push_str("</div>\n");
    html.push_str("<h2>Records</h2>\n");
    for n in &notes {
        let _ = writeln!(html, "<p class=\"note\">{}</p>", esc(n));
    }
    html.push_str(TABLE_HTML);
    let _ = writeln!(
        html,
        "<script id=\"records\" type=\"application/json\">{data}</script>"
    );
    html.push_str("<script>\n");
    html.push_str(SCRIPT);
    html.push_str("</script>\n</body>\n</html>\n");
    html
}

/// A page's start, up to `<body>`: its title and the shared style. Nothing may load from
/// elsewhere (the page is read from disk, often offline); `allow` adds to the policy.
fn head(title: &str, allow: &str) -> String {
    let mut html =
        String::from("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    html.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    let sep = if allow.is_empty() { "" } else { "; " };
    let _ = writeln!(
        html,
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'{sep}{allow}\">"
    );
    let _ = writeln!(html, "<title>{}</title>", esc(title));
    html.push_str("<style>\n");
    html.push_str(CSS);
    html.push_str("</style>\n</head>\n<body>\n");
    html
}

/// `summarize compare -f html`: the comparison of two runs as one self-contained page.
pub fn compare_page(c: &crate::eval::compare::Comparison, a: &str, b: &str) -> String {
    use crate::eval::compare::Better;
    let mut html = head(&format!("summarize compare: {a} vs {b}"), "");
    let _ = writeln!(
        html,
        "<h1>summarize compare</h1>\n<p>A = {}<br>B = {}<br>{} paired records{}{}</p>",
        esc(a),
        esc(b),
        c.paired,
        if c.only_in_a > 0 {
            format!(", {} only in A", c.only_in_a)
        } else {
            String::new()
        },
        if c.only_in_b > 0 {
            format!(", {} only in B", c.only_in_b)
        } else {
            String::new()
        },
    );
    html.push_str("<table class=\"stages\" id=\"metrics\">\n<tr><th>metric</th><th>n</th><th>A</th><th>B</th><th>B − A</th><th>95% interval</th><th>better / same / worse</th></tr>\n");
    for m in &c.metrics {
        let judged = if m.better == Better::Neither {
            format!("{} higher / {} same / {} lower", m.wins, m.ties, m.losses)
        } else {
            format!("{} / {} / {}", m.wins, m.ties, m.losses)
        };
        let _ = writeln!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{:.2}</td><td>{:.2}</td><td>{:+.2}</td><td>[{:+.2}, {:+.2}]</td><td>{}</td></tr>",
            esc(m.metric), m.n, m.mean_a, m.mean_b, m.diff, m.ci95_low, m.ci95_high, esc(&judged)
        );
    }
    html.push_str("</table>\n");
    if !c.gate_failures.is_empty() {
        html.push_str("<h2>Failed gates</h2>\n<ul>\n");
        for f in &c.gate_failures {
            let _ = writeln!(html, "<li>{}</li>", esc(f));
        }
        html.push_str("</ul>\n");
    }
    // One chart per unit: ROUGE in points, times in ms, then the other judged metrics.
    let unit = |metric: &str| {
        if metric.starts_with("rouge") {
            0
        } else if metric.ends_with("_ms") {
            1
        } else {
            2
        }
    };
    let rows = |u: u8| -> Vec<Bar> {
        c.metrics
            .iter()
            .filter(|m| m.better != Better::Neither && unit(m.metric) == u)
            .map(|m| Bar {
                label: m.metric.to_string(),
                value: m.diff,
                whisker: Some((m.ci95_low, m.diff, m.ci95_high)),
            })
            .collect()
    };
    html.push_str("<div id=\"charts\">\n");
    for (id, caption, unit, bars) in [
        (
            "rouge",
            "ROUGE: B − A with its 95% interval",
            "points",
            rows(0),
        ),
        ("time", "Time: B − A with its 95% interval", "ms", rows(1)),
        (
            "quality",
            "Other metrics: B − A with its 95% interval",
            "difference",
            rows(2),
        ),
    ] {
        if let Some(svg) = charts::bars(caption, unit, &bars) {
            let _ = writeln!(
                html,
                "<figure class=\"chart\" id=\"chart-{id}\">{svg}</figure>"
            );
        }
    }
    html.push_str("</div>\n");
    if let Some(first) = c.changed_most.first() {
        let _ = writeln!(
            html,
            "<h2>Records that changed most ({})</h2>\n<table id=\"changed\">\n<tr><th>id</th><th>A</th><th>B</th><th>summary A</th><th>summary B</th></tr>",
            esc(first.metric)
        );
        for ch in &c.changed_most {
            let _ = writeln!(
                html,
                "<tr><td>{}</td><td>{:.2}</td><td>{:.2}</td><td>{}</td><td>{}</td></tr>",
                esc(&ch.id),
                ch.a,
                ch.b,
                esc(ch.summary_a.as_deref().unwrap_or("")),
                esc(ch.summary_b.as_deref().unwrap_or(""))
            );
        }
        html.push_str("</table>\n");
    }
    html.push_str("</body>\n</html>\n");
    html
}

/// Documents by id, from JSONL `{"id", "text"}` (extra fields ignored): `summarize report --texts`.
pub fn load_texts(
    path: &std::path::Path,
) -> anyhow::Result<std::collections::HashMap<String, String>> {
    use anyhow::Context;
    let shown = path.display();
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read --texts '{shown}'"))?;
    let mut out = std::collections::HashMap::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(line).with_context(|| {
            format!(
                "{shown}:{}: not a JSON object; --texts reads JSONL {{\"id\", \"text\"}}",
                i + 1
            )
        })?;
        if let (Some(id), Some(t)) = (v["id"].as_str(), v["text"].as_str()) {
            out.insert(id.to_string(), text_start(t));
        }
    }
    if out.is_empty() {
        anyhow::bail!("--texts '{shown}' holds no {{\"id\", \"text\"}} lines");
    }
    Ok(out)
}

/// The page of an existing JSONL report (`summarize report`): its records as written (the
/// last of each id), ROUGE against `references` where given, the start of each document from
/// `texts`, and run figures recomputed from the records (the wall time is not in a report).
pub fn from_report(
    text: &str,
    name: &str,
    title: &str,
    references: Option<&crate::eval::references::References>,
    texts: Option<&std::collections::HashMap<String, String>>,
    requested_words: Option<usize>,
) -> anyhow::Result<String> {
    let parsed = crate::eval::compare::parse_report(text, name)?;
    if parsed.is_empty() {
        anyhow::bail!("'{name}' holds no records; give the JSONL report of a run (-o run.jsonl)");
    }
    let mut records = Vec::with_capacity(parsed.len());
    let mut stats = super::StatsCollector::new(parsed.len());
    for (id, v) in parsed {
        let Value::Object(mut r) = v else { continue };
        if let Some(reference) = references.and_then(|m| m.get(&id)) {
            if let Some(summary) = r.get("summary").and_then(Value::as_str) {
                let f = crate::eval::rouge_f(reference, summary);
                for (k, x) in [
                    ("rouge1", f.rouge1),
                    ("rouge2", f.rouge2),
                    ("rougeL", f.rouge_l),
                    ("rougeLsum", f.rouge_lsum),
                ] {
                    r.insert(k.into(), Value::from(x));
                }
            }
        }
        if let Some(t) = texts.and_then(|m| m.get(&id)) {
            r.insert("text_start".into(), Value::String(t.clone()));
        }
        stats.add(&r);
        // Only what the page shows is kept (a 100,000-record report fits in memory).
        r.retain(|k, _| COLUMNS.contains(&k.as_str()));
        records.push(r);
    }
    let stats = stats.finish(std::time::Duration::ZERO);
    let page = Page {
        title,
        stats: &stats,
        requested_words,
        elapsed_known: false,
    };
    Ok(render(&page, &records))
}

/// JSON safe inside a `<script>` element: `<`, `>` and `&` as escapes, so no string in a record
/// can close the element or open a comment.
fn script_json(v: &Value) -> String {
    let s = serde_json::to_string(v).unwrap_or_else(|_| "[]".into());
    s.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
}

/// What a record keeps of its document for the page (`text_start`): the first `TEXT_CHARS`.
pub fn text_start(text: &str) -> String {
    prefix(text, TEXT_CHARS)
}

fn prefix(s: &str, chars: usize) -> String {
    match s.char_indices().nth(chars) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// HTML text escape.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn summary_section(page: &Page) -> String {
    let s = page.stats;
    let mut out = String::from("<section id=\"summary\">\n<table class=\"kv\">\n");
    let mut kv = |k: &str, v: String| {
        let _ = writeln!(out, "<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(&v));
    };
    kv("inputs", s.inputs.to_string());
    kv("ok", s.ok.to_string());
    kv("failed", s.error.to_string());
    if s.not_run > 0 {
        kv("not run", s.not_run.to_string());
    }
    if page.elapsed_known {
        kv("wall time", format!("{:.1} s", s.elapsed_s));
        kv("documents/min", format!("{:.1}", s.docs_per_min));
    }
    if s.tokens_in + s.tokens_out > 0 {
        kv(
            "tokens in / out",
            format!("{} / {}", s.tokens_in, s.tokens_out),
        );
    }
    if let Some(t) = s.tokens_per_s {
        kv("generated tokens/s", format!("{t:.1}"));
    }
    if let Some(w) = page.requested_words {
        kv("requested length", format!("{w} words"));
    }
    if !s.guard.is_empty() {
        let g: Vec<String> = s.guard.iter().map(|(k, v)| format!("{k} {v}")).collect();
        kv("guard", g.join(", "));
    }
    if let Some(q) = &s.quality {
        kv(
            "unsupported numbers",
            format!(
                "{} of {} ({:.1}%)",
                q.unsupported_numbers,
                q.numbers,
                q.unsupported_number_share * 100.0
            ),
        );
        kv(
            "length within 0.5–1.5×",
            format!("{:.0}%", q.length_ok_rate * 100.0),
        );
    }
    for (m, c) in &s.rouge {
        kv(
            m,
            format!(
                "{:.2} [{:.2}, {:.2}] (n={})",
                c.mean * 100.0,
                c.ci95_low * 100.0,
                c.ci95_high * 100.0,
                c.n
            ),
        );
    }
    out.push_str("</table>\n");
    if !s.latency.is_empty() {
        out.push_str("<table class=\"stages\" id=\"stages\">\n<tr><th>stage</th><th>n</th><th>mean ms</th><th>p50 ms</th><th>p90 ms</th><th>p99 ms</th><th>max ms</th></tr>\n");
        for (stage, l) in &s.latency {
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{:.0}</td><td>{:.0}</td><td>{:.0}</td><td>{:.0}</td><td>{:.0}</td></tr>",
                esc(stage),
                l.count,
                l.mean_ms,
                l.p50_ms,
                l.p90_ms,
                l.p99_ms,
                l.max_ms
            );
        }
        out.push_str("</table>\n");
    }
    out.push_str("</section>\n");
    out
}

fn num(r: &Map<String, Value>, k: &str) -> Option<f64> {
    r.get(k).and_then(Value::as_f64)
}

fn ok(r: &Map<String, Value>) -> bool {
    r.get("status").and_then(Value::as_str) == Some("ok")
}

/// The charts that have data, each `(id, svg)`.
fn chart_list(page: &Page, records: &[Map<String, Value>]) -> Vec<(&'static str, String)> {
    let s = page.stats;
    let mut out = Vec::new();
    // Per-stage latency: the bar is the median, the whisker runs from p50 to p99, the dot p90.
    let stages: Vec<Bar> = s
        .latency
        .iter()
        .map(|(stage, l)| Bar {
            label: stage.clone(),
            value: l.p50_ms,
            whisker: Some((l.p50_ms, l.p90_ms, l.p99_ms)),
        })
        .collect();
    out.extend(
        charts::bars(
            "Latency per stage (bar p50, dot p90, whisker to p99)",
            "ms",
            &stages,
        )
        .map(|svg| ("latency", svg)),
    );
    // Outcomes: ok, then each error class.
    let mut outcomes = vec![Bar {
        label: "ok".into(),
        value: s.ok as f64,
        whisker: None,
    }];
    outcomes.extend(s.error_classes.iter().map(|(k, v)| Bar {
        label: k.clone(),
        value: *v as f64,
        whisker: None,
    }));
    out.extend(
        charts::bars("Outcomes (ok and error classes)", "records", &outcomes)
            .map(|svg| ("outcomes", svg)),
    );
    // Summary length against the requested length.
    let words: Vec<f64> = records
        .iter()
        .filter(|r| ok(r))
        .filter_map(|r| num(r, "summary_words"))
        .collect();
    let longest = words.iter().copied().fold(0.0, f64::max);
    let hi = match page.requested_words {
        Some(w) => (w as f64 * 2.0).max(longest + 1.0),
        None => longest + 1.0,
    };
    let hi = (hi / 10.0).ceil() * 10.0;
    let marks: Vec<(f64, String)> = page
        .requested_words
        .map(|w| {
            vec![
                (w as f64 * 0.5, "0.5× requested".to_string()),
                (w as f64, format!("requested ({w} words)")),
                (w as f64 * 1.5, "1.5× requested".to_string()),
            ]
        })
        .unwrap_or_default();
    out.extend(
        charts::histogram(
            "Summary length",
            "words",
            &words,
            (0.0, hi.max(10.0)),
            20,
            &marks,
        )
        .map(|svg| ("length", svg)),
    );
    // Quality columns.
    let coverage: Vec<f64> = records.iter().filter_map(|r| num(r, "coverage")).collect();
    out.extend(
        charts::histogram(
            "Coverage (share of summary words found in the source)",
            "coverage",
            &coverage,
            (0.0, 1.0001),
            20,
            &[],
        )
        .map(|svg| ("coverage", svg)),
    );
    let compression: Vec<f64> = records
        .iter()
        .filter_map(|r| num(r, "compression"))
        .collect();
    let chi = compression
        .iter()
        .copied()
        .fold(0.0, f64::max)
        .clamp(1.0, 100.0);
    out.extend(
        charts::histogram(
            "Compression (source words per summary word)",
            "compression",
            &compression,
            (0.0, (chi / 5.0).ceil() * 5.0),
            20,
            &[],
        )
        .map(|svg| ("compression", svg)),
    );
    let mut unsupported = BTreeMap::new();
    for r in records.iter().filter(|r| ok(r)) {
        if let Some(Value::Array(a)) = r.get("unsupported_numbers") {
            let k = a.len().min(3);
            *unsupported.entry(k).or_insert(0usize) += 1;
        }
    }
    let rows: Vec<Bar> = unsupported
        .iter()
        .map(|(k, v)| Bar {
            label: if *k == 3 {
                "3 or more".into()
            } else {
                k.to_string()
            },
            value: *v as f64,
            whisker: None,
        })
        .collect();
    out.extend(
        charts::bars("Unsupported numbers per summary", "records", &rows)
            .map(|svg| ("unsupported", svg)),
    );
    let guard: Vec<Bar> = ["passed", "repaired", "fallback", "flagged"]
        .iter()
        .filter_map(|k| {
            s.guard.get(*k).map(|v| Bar {
                label: k.to_string(),
                value: *v as f64,
                whisker: None,
            })
        })
        .collect();
    out.extend(charts::bars("Guard outcomes", "records", &guard).map(|svg| ("guard", svg)));
    let rouge: Vec<Bar> = s
        .rouge
        .iter()
        .map(|(m, c)| Bar {
            label: m.clone(),
            value: c.mean * 100.0,
            whisker: Some((c.ci95_low * 100.0, c.mean * 100.0, c.ci95_high * 100.0)),
        })
        .collect();
    out.extend(
        charts::bars("ROUGE F with its 95% bootstrap interval", "F × 100", &rouge)
            .map(|svg| ("rouge", svg)),
    );
    out
}

const CSS: &str = r##"body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:20px;margin:0 0 12px}h2{font-size:17px;margin:24px 0 8px}
table{border-collapse:collapse}th,td{padding:3px 8px;text-align:left;vertical-align:top}
.kv th{color:#555;font-weight:normal}.stages td,.stages th{border-bottom:1px solid #ddd;text-align:right}
.stages td:first-child,.stages th:first-child{text-align:left}
#charts{display:flex;flex-wrap:wrap;gap:12px}.chart{margin:0;border:1px solid #ddd}
.chart svg{display:block}
.note{color:#555;font-size:13px;margin:2px 0}
#controls{display:flex;flex-wrap:wrap;gap:8px;align-items:center;margin:8px 0}
#controls input[type=search]{width:260px}
#records-table{width:100%;font-size:13px}#records-table th{cursor:pointer;border-bottom:2px solid #999;white-space:nowrap;user-select:none}
#records-table th[aria-sort=ascending]::after{content:" ▲"}#records-table th[aria-sort=descending]::after{content:" ▼"}
#records-table td{border-bottom:1px solid #eee}tr.rec{cursor:pointer}tr.rec:hover{background:#f4f7fb}
tr.rec.error td.status{color:#b00}td.num{text-align:right;font-variant-numeric:tabular-nums}
td.id{max-width:320px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
tr.detail>td{background:#fafafa}.pair{display:flex;gap:16px}.pair>div{flex:1;min-width:0}
.pair h3{font-size:13px;margin:4px 0;color:#555}.pair p{white-space:pre-wrap;margin:0}
mark{background:#ffd54f}#pager{margin:8px 0;display:flex;gap:8px;align-items:center}
"##;

const TABLE_HTML: &str = r##"<div id="controls">
<input type="search" id="q" placeholder="Search id, title, summary, error" aria-label="search">
<label>status <select id="f-status"><option value="">all</option></select></label>
<label>error class <select id="f-error_class"><option value="">all</option></select></label>
<label>backend <select id="f-backend"><option value="">all</option></select></label>
<span id="count"></span>
</div>
<table id="records-table">
<thead><tr>
<th data-key="id">id</th><th data-key="status">status</th><th data-key="error_class">error class</th>
<th data-key="guard">guard</th><th data-key="input_words" data-num="1">doc words</th><th data-key="summary_words" data-num="1">words</th>
<th data-key="rouge1" data-num="1">R1</th><th data-key="coverage" data-num="1">coverage</th>
<th data-key="unsupported" data-num="1">unsupported</th><th data-key="total_ms" data-num="1">total ms</th>
</tr></thead>
<tbody id="rows"></tbody>
</table>
<div id="pager"><button id="prev" type="button">previous</button><span id="page"></span><button id="next" type="button">next</button></div>
"##;

const SCRIPT: &str = r##""use strict";
(function () {
  const PAGE = 100;
  const all = JSON.parse(document.getElementById("records").textContent);
  all.forEach((r, i) => { r._i = i; r.unsupported = (r.unsupported_numbers || []).length; });
  const state = { key: null, dir: 1, page: 0, q: "", f: { status: "", error_class: "", backend: "" }, open: new Set() };
  const $ = (id) => document.getElementById(id);
  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  for (const k of Object.keys(state.f)) {
    const sel = $("f-" + k);
    const values = [...new Set(all.map((r) => r[k]).filter((v) => v != null))].sort();
    for (const v of values) { const o = document.createElement("option"); o.value = v; o.textContent = v; sel.appendChild(o); }
    sel.addEventListener("change", () => { state.f[k] = sel.value; state.page = 0; render(); });
  }
  $("q").addEventListener("input", (e) => { state.q = e.target.value.toLowerCase(); state.page = 0; render(); });
  $("prev").addEventListener("click", () => { state.page = Math.max(0, state.page - 1); render(); });
  $("next").addEventListener("click", () => { state.page += 1; render(); });
  document.querySelectorAll("#records-table th").forEach((th) => th.addEventListener("click", () => {
    const k = th.dataset.key;
    state.dir = state.key === k ? -state.dir : 1;
    state.key = k; state.page = 0;
    document.querySelectorAll("#records-table th").forEach((o) => o.removeAttribute("aria-sort"));
    th.setAttribute("aria-sort", state.dir > 0 ? "ascending" : "descending");
    render();
  }));
  function visible() {
    let rows = all.filter((r) => Object.entries(state.f).every(([k, v]) => !v || r[k] === v));
    if (state.q) {
      rows = rows.filter((r) => [r.id, r.source, r.title, r.summary, r.error].some((v) => v && String(v).toLowerCase().includes(state.q)));
    }
    if (state.key) {
      const k = state.key, d = state.dir;
      rows = rows.slice().sort((a, b) => {
        const x = a[k], y = b[k];
        if (x == null && y == null) return a._i - b._i;
        if (x == null) return 1;
        if (y == null) return -1;
        const c = typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y));
        return c * d || a._i - b._i;
      });
    }
    return rows;
  }
  function fmt(v, digits) { return v == null ? "" : (typeof v === "number" ? (digits == null ? String(v) : v.toFixed(digits)) : esc(v)); }
  function highlight(text, numbers) {
    let html = esc(text || "");
    const marks = [...new Set(numbers || [])].filter((n) => n).sort((a, b) => b.length - a.length);
    for (const n of marks) {
      const e = esc(n).replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
      html = html.replace(new RegExp("(^|[^0-9])(" + e + ")(?![0-9])", "g"), "$1<mark>$2</mark>");
    }
    return html;
  }
  function detail(r) {
    const summary = r.status === "ok"
      ? highlight(r.summary, r.unsupported_numbers)
      : "<em>" + esc(r.error || "failed") + "</em>";
    let extra = "";
    if (r.guard) extra += "<p>guard: " + esc(r.guard) + (r.guard_reasons && r.guard_reasons.length ? " (" + esc(r.guard_reasons.join(", ")) + ")" : "") + "</p>";
    if (r.guard === "fallback") extra += "<p><strong>This summary is the extractive fallback, not the model's.</strong></p>";
    if (r.model_summary) extra += "<h3>the model's own summary</h3><p>" + highlight(r.model_summary, r.unsupported_numbers) + "</p>";
    if (r.unsupported && r.unsupported > 0) extra += "<p>unsupported numbers: " + esc(r.unsupported_numbers.join(", ")) + "</p>";
    const text = r.text_start != null ? "<p>" + esc(r.text_start) + "</p>" : "<p><em>not in this report</em></p>";
    return "<div class=\"pair\"><div><h3>summary" + (r.title ? ": " + esc(r.title) : "") + "</h3><p>" + summary + "</p>" + extra +
      "</div><div><h3>start of the extracted text (" + fmt(r.input_words) + " words)</h3>" + text + "</div></div>";
  }
  function render() {
    const rows = visible();
    const pages = Math.max(1, Math.ceil(rows.length / PAGE));
    state.page = Math.min(state.page, pages - 1);
    const start = state.page * PAGE;
    const out = [];
    for (const r of rows.slice(start, start + PAGE)) {
      out.push("<tr class=\"rec " + esc(r.status) + "\" data-i=\"" + r._i + "\"><td class=\"id\" title=\"" + esc(r.source || r.id) + "\">" + esc(r.id) +
        "</td><td class=\"status\">" + fmt(r.status) + "</td><td>" + fmt(r.error_class) + "</td><td>" + fmt(r.guard) +
        "</td><td class=\"num\">" + (r.status === "ok" ? fmt(r.input_words) : "") + "</td><td class=\"num\">" + (r.status === "ok" ? fmt(r.summary_words) : "") + "</td><td class=\"num\">" + (r.rouge1 == null ? "" : (r.rouge1 * 100).toFixed(1)) +
        "</td><td class=\"num\">" + fmt(r.coverage, 2) + "</td><td class=\"num\">" + (r.status === "ok" ? r.unsupported : "") +
        "</td><td class=\"num\">" + fmt(r.total_ms) + "</td></tr>");
      if (state.open.has(r._i)) out.push("<tr class=\"detail\"><td colspan=\"10\">" + detail(r) + "</td></tr>");
    }
    $("rows").innerHTML = out.join("");
    $("count").textContent = rows.length + " of " + all.length + " records";
    $("page").textContent = "page " + (state.page + 1) + " of " + pages;
    $("prev").disabled = state.page === 0;
    $("next").disabled = state.page >= pages - 1;
  }
  $("rows").addEventListener("click", (e) => {
    const tr = e.target.closest("tr.rec");
    if (!tr) return;
    const i = Number(tr.dataset.i);
    if (state.open.has(i)) state.open.delete(i); else state.open.add(i);
    render();
  });
  render();
})();
"##;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn script_json_cannot_close_the_script_element() {
        let v = json!([{"summary": "</script><script>alert(1)</script> & <!--"}]);
        let s = script_json(&v);
        assert!(!s.contains("</") && !s.contains("<!--"), "{s}");
        let back: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn page_embeds_capped_text_and_escapes_the_title() {
        let stats = RunStats {
            inputs: 1,
            ok: 1,
            ..RunStats::default()
        };
        let mut r = Map::new();
        r.insert("id".into(), json!("a"));
        r.insert("status".into(), json!("ok"));
        r.insert("summary_words".into(), json!(12));
        r.insert("text_start".into(), json!("x".repeat(TEXT_CHARS + 50)));
        r.insert("fetch_ms".into(), json!(3)); // not a page column
        let page = Page {
            title: "<b>run</b>",
            stats: &stats,
            requested_words: Some(80),
            elapsed_known: false,
        };
        let html = render(&page, &[r]);
        assert!(html.contains("<title>summarize: &lt;b&gt;run&lt;/b&gt;</title>"));
        assert!(html.contains(&format!("{}…", "x".repeat(TEXT_CHARS))));
        assert!(!html.contains(&"x".repeat(TEXT_CHARS + 1)));
        assert!(!html.contains("fetch_ms"));
        assert!(
            html.contains("id=\"chart-length\""),
            "the length chart has data"
        );
        // Self-contained: nothing is loaded from elsewhere.
        assert!(!html.contains("src=\"http") && !html.contains("href=\"http"));
    }
}
