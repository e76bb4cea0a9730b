//! The orchestration: sources in, records out. Documents move through fetch → decode → extract
//! (on the rayon pool) → summarize with at most `--jobs` in flight; records leave in input
//! order, each as soon as everything before it is written. Per-document failures become error
//! records and the batch goes on; only a refused API key or an unwritable report stops it.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use url::Url;

use futures::StreamExt;
use serde_json::{Map, Value};

use crate::backend::Backend;
use crate::cache::Cache;
use crate::config::Config;
use crate::decode::{self, DocKind};
use crate::error::{DocError, ErrorClass};
use crate::eval;
use crate::extract::{self, Extracted};
use crate::fetch::Fetcher;
use crate::guard;
use crate::input::{Source, SourceKind};
use crate::progress::Progress;
use crate::report::{self, ExtractRecord, RunStats, Sink, StatsCollector, Status, SummaryRecord};
use crate::sanitize::one_line;

/// How a run ended, for the exit code.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub stats: RunStats,
    pub interrupted: bool,
    /// The backend refused our credentials mid-run: a configuration error.
    pub auth_failed: bool,
    /// The reader of stdout went away (`| head`): not an error.
    pub broken_pipe: bool,
}

/// Shared state of one run.
struct Ctx {
    config: Config,
    fetcher: Fetcher,
    backend: Option<Arc<Backend>>,
    cache: Option<Cache>,
    auth_failed: AtomicBool,
}

/// A document's text before summarizing, with the time each stage took.
struct Prepared {
    extracted: Extracted,
    stages: Stages,
}

/// Time spent on a document before summarizing, failed or not.
#[derive(Debug, Clone, Copy, Default)]
struct Stages {
    fetch_ms: u64,
    extract_ms: u64,
    /// Time in the headless browser (`--render`), when a page went to it.
    render_ms: Option<u64>,
    /// The text is the rendered page's.
    rendered: bool,
}

/// Runs every source and writes one record per source, in order.
pub async fn run(
    config: Config,
    (sources, total): (crate::input::Stream, usize),
    fetcher: Fetcher,
    backend: Option<Arc<Backend>>,
    cache: Option<Cache>,
    mut sink: Sink,
) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let mut progress = Progress::new(
        config.progress,
        config.quiet,
        total,
        config.progress_interval,
    );
    let mut ticker = progress.interval().map(|every| {
        let mut t = tokio::time::interval(every);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        t
    });
    let ctx = Arc::new(Ctx {
        config,
        fetcher,
        backend,
        cache,
        auth_failed: AtomicBool::new(false),
    });
    let mut stats = StatsCollector::new(total);
    let jobs = ctx.config.jobs;
    // A model backend holds at most `jobs` calls in flight (CallSettings::slots); twice as many
    // documents in process keep those slots busy while others fetch, extract and check.
    let in_process = if ctx.backend.as_ref().is_some_and(|b| b.cacheable()) {
        jobs.saturating_mul(2)
    } else {
        jobs
    };
    // Records finished ahead of an earlier, slower one wait here to keep the report in input
    // order. The buffer is bounded: past `reorder_cap` waiting records no new input starts
    // until the slow one is done, so memory does not grow with the run behind a stalled page.
    let reorder_cap = jobs.saturating_mul(16).max(256);
    let mut queue = sources.spawn(reorder_cap);
    let mut queued = 0;
    let mut results = futures::stream::FuturesUnordered::new();
    // Each document is its own task, so the CPU work of many (guard, scoring, parsing replies)
    // runs on every runtime thread, not inside this loop's one.
    let start = |(i, source): (usize, Source)| {
        let ctx = ctx.clone();
        let mut task = AbortOnDrop(tokio::spawn(async move { process(&ctx, &source).await }));
        async move {
            let record = match (&mut task.0).await {
                Ok(record) => record,
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(e) => {
                    unreachable!("document tasks are aborted only when the run is dropped: {e}")
                }
            };
            (i, record)
        }
    };

    let mut pending: BTreeMap<usize, Map<String, Value>> = BTreeMap::new();
    let mut next = 0;
    let mut interrupted = false;
    let mut broken_pipe = false;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        while results.len() < in_process && pending.len() < reorder_cap {
            match queue.recv().await {
                Some(source) => {
                    results.push(start((queued, source)));
                    queued += 1;
                }
                None => break,
            }
        }
        if results.is_empty() {
            break;
        }
        let item = tokio::select! {
            item = results.next() => item,
            _ = &mut ctrl_c => {
                interrupted = true;
                break;
            }
            _ = async {
                match ticker.as_mut() {
                    Some(t) => {
                        t.tick().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            } => {
                progress.tick();
                continue;
            }
        };
        let Some((i, record)) = item else { break };
        pending.insert(i, record);
        while let Some(record) = pending.remove(&next) {
            next += 1;
            let failed = record.get("status").and_then(Value::as_str) == Some("error");
            progress.record(!failed);
            if failed && !ctx.config.quiet {
                let line = format!(
                    "summarize: {}",
                    one_line(
                        record
                            .get("error")
                            .and_then(Value::as_str)
                            .unwrap_or("failed")
                    )
                );
                progress.suspend(|| eprintln!("{line}"));
            }
            stats.add(&record);
            if let Err(e) = sink.write(&record) {
                if e.kind() == std::io::ErrorKind::BrokenPipe {
                    broken_pipe = true;
                    break;
                }
                progress.finish();
                return Err(anyhow::anyhow!(
                    "cannot write the report: {e}; check the disk and the --output path"
                ));
            }
        }
        if broken_pipe {
            break;
        }
    }
    progress.finish();
    // Documents still in process (an interrupt, a broken pipe) are stopped before the browser.
    drop(results);
    ctx.fetcher.renderer().shutdown().await;
    let mut stats = stats.finish(started.elapsed());
    if let Some(backend) = &ctx.backend {
        stats.replicas = backend.replica_stats();
    }
    if let Err(e) = sink.finish(&stats) {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            return Err(anyhow::anyhow!(
                "cannot write the report: {e}; check the disk and the --output path"
            ));
        }
    }
    Ok(Outcome {
        stats,
        interrupted,
        auth_failed: ctx.auth_failed.load(Ordering::SeqCst),
        broken_pipe,
    })
}

/// A document's task, stopped when the run stops waiting for it (an interrupt, a broken pipe),
/// as a future dropped mid-way would be.
struct AbortOnDrop(tokio::task::JoinHandle<Map<String, Value>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A batch run (`--batch`, `--batch-export`, `--batch-import`): passes over the inputs until
/// every model request has its answer (see backend/batch.rs). Each pass writes a partial
/// report in the batch's state folder; the one that leaves nothing pending becomes the report.
/// `None` when the requests were exported for an offline engine (no report yet).
pub async fn run_batch(
    config: Config,
    (sources, total): (crate::input::Stream, usize),
    fetcher: Fetcher,
    mut backend: Backend,
    cache: Option<Cache>,
    open_report: impl Fn(&Path) -> anyhow::Result<Sink>,
) -> anyhow::Result<Option<Outcome>> {
    use crate::backend::batch;
    let settings = config
        .summarize
        .as_ref()
        .and_then(|s| s.batch.clone())
        .expect("a batch run has batch settings");
    let output = config
        .output
        .clone()
        .expect("clap requires -o for a batch run");
    let book = Arc::new(batch::Book::default());
    let mut store = batch::Store::open(batch::state_dir(&output), &book)?;
    let openai = backend
        .openai_mut()
        .expect("config allows batches for -b openai only");
    openai.answer_from(book.clone());
    let client = openai.batch_client(settings.poll, config.quiet);
    let say = |line: String| {
        if !config.quiet {
            eprintln!("summarize: {line}");
        }
    };
    if !settings.import.is_empty() {
        let n = batch::import(&book, &store, &settings.import)?;
        say(format!("batch: {n} answers imported"));
    }
    let backend = Arc::new(backend);
    let partial = store.dir().join("report.partial");
    let started = Instant::now();
    // A document takes a round per level of reduction, and transient failures a round per
    // retry; past this many something keeps asking anew.
    let max_passes = 4 + chunk_levels() + config.fetch.retries as usize;
    for pass in 1..=max_passes {
        let mut quiet = config.clone();
        quiet.quiet = true;
        say(format!(
            "batch: pass {pass} over {total} inputs ({} answers at hand)",
            book.answered()
        ));
        let sink = open_report(&partial)?;
        let outcome = run(
            quiet,
            (sources.clone(), total),
            fetcher.clone(),
            Some(backend.clone()),
            cache.clone(),
            sink,
        )
        .await?;
        if outcome.interrupted || outcome.auth_failed {
            let _ = std::fs::remove_file(&partial);
            return Ok(Some(outcome));
        }
        if book.pending() == 0 {
            if config.resume {
                let mut out = std::fs::OpenOptions::new().append(true).open(&output)?;
                std::io::copy(&mut std::fs::File::open(&partial)?, &mut out)?;
                std::io::Write::flush(&mut out)?;
            } else {
                std::fs::rename(&partial, &output).map_err(|e| {
                    anyhow::anyhow!("cannot move the report into '{}': {e}", output.display())
                })?;
            }
            store.remove();
            // The run took every pass and every wait, not only the last pass.
            let mut outcome = outcome;
            let elapsed = started.elapsed().as_secs_f64();
            let done = (outcome.stats.ok + outcome.stats.error) as f64;
            outcome.stats.elapsed_s = elapsed;
            outcome.stats.docs_per_min = if elapsed > 0.0 {
                done * 60.0 / elapsed
            } else {
                0.0
            };
            return Ok(Some(outcome));
        }
        let _ = std::fs::remove_file(&partial);
        if settings.online {
            client
                .round(&book, &mut store, config.fetch.retries + 1)
                .await?;
        } else if let Some(path) = &settings.export {
            let n = batch::export(&book, path)?;
            say(format!(
                "batch: wrote {n} requests to '{}'; run them (for example with vLLM's run-batch), then run this command again with --batch-import RESULTS.jsonl (answers imported so far are kept in '{}')",
                path.display(),
                store.dir().display()
            ));
            return Ok(None);
        } else {
            anyhow::bail!(
                "{} model requests have no answer in the --batch-import files (a further round of a long document, or other inputs): add --batch-export FILE to write them",
                book.pending()
            );
        }
    }
    anyhow::bail!(
        "the batch run still had unanswered requests after {max_passes} passes; the answers so far are kept in '{}': run it again to go on",
        store.dir().display()
    )
}

/// Levels of map-reduce a long document can take.
fn chunk_levels() -> usize {
    crate::backend::MAX_DEPTH
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

async fn process(ctx: &Ctx, source: &Source) -> Map<String, Value> {
    let started = Instant::now();
    let prepared = prepare(ctx, source).await;
    match &ctx.config.summarize {
        None => extract_record(source, prepared, started),
        Some(_) => summary_record(ctx, source, prepared, started).await,
    }
}

fn extract_record(
    source: &Source,
    prepared: Result<Prepared, (DocError, Stages)>,
    started: Instant,
) -> Map<String, Value> {
    let mut rec = ExtractRecord {
        id: source.id.clone(),
        source: source.display.clone(),
        ..ExtractRecord::default()
    };
    match prepared {
        Ok(p) => {
            rec.title = p.extracted.title;
            rec.author = p.extracted.author;
            rec.date = p.extracted.date;
            rec.text = Some(p.extracted.text);
            rec.words = p.extracted.words;
            (rec.fetch_ms, rec.extract_ms) = (p.stages.fetch_ms, p.stages.extract_ms);
            (rec.rendered, rec.render_ms) = (p.stages.rendered, p.stages.render_ms);
        }
        Err((e, stages)) => {
            rec.status = Status::Error;
            rec.error_class = Some(e.class.to_string());
            rec.error = Some(e.message);
            rec.http_status = e.http_status;
            (rec.fetch_ms, rec.extract_ms) = (stages.fetch_ms, stages.extract_ms);
            (rec.rendered, rec.render_ms) = (stages.rendered, stages.render_ms);
        }
    }
    rec.total_ms = ms(started.elapsed());
    report::to_map(&rec)
}

async fn summary_record(
    ctx: &Ctx,
    source: &Source,
    prepared: Result<Prepared, (DocError, Stages)>,
    started: Instant,
) -> Map<String, Value> {
    let config = ctx
        .config
        .summarize
        .as_ref()
        .expect("summary records need a summarize config");
    let backend = ctx.backend.as_ref().expect("summarize mode has a backend");
    let mut rec = SummaryRecord {
        id: source.id.clone(),
        source: source.display.clone(),
        backend: backend.name().to_string(),
        model: backend.model().to_string(),
        prompt: config.prompt.name.clone(),
        ..SummaryRecord::default()
    };
    let result = match prepared {
        Ok(p) => {
            (rec.fetch_ms, rec.extract_ms) = (p.stages.fetch_ms, p.stages.extract_ms);
            (rec.rendered, rec.render_ms) = (p.stages.rendered, p.stages.render_ms);
            rec.title = p.extracted.title.clone();
            rec.input_words = p.extracted.words;
            if ctx.auth_failed.load(Ordering::SeqCst) {
                Err(DocError::new(
                    ErrorClass::BackendAuth,
                    format!(
                        "{}: skipped, the backend refused the API key earlier in this run",
                        source.display
                    ),
                ))
            } else {
                let t = Instant::now();
                let title = p.extracted.title.as_deref().unwrap_or("");
                // A batch run names each model request after its record (`custom_id`).
                let r = crate::backend::batch::DOC
                    .scope(
                        source.id.clone(),
                        summarize_cached(
                            ctx,
                            backend,
                            title,
                            &p.extracted.text,
                            config,
                            &mut rec.cache_hit,
                        ),
                    )
                    .await;
                let elapsed = ms(t.elapsed());
                // Waiting for the engine or the rate limiter is not summarizing.
                let queued = r.as_ref().map_or(0, |s| s.queue_ms).min(elapsed);
                rec.queue_ms = queued;
                rec.summarize_ms = elapsed - queued;
                r.map(|summary| (summary, p.extracted.text))
                    .map_err(|mut e| {
                        if e.class == ErrorClass::BackendAuth {
                            ctx.auth_failed.store(true, Ordering::SeqCst);
                        }
                        e.message = format!("{}: {}", source.display, e.message);
                        e
                    })
            }
        }
        Err((e, stages)) => {
            (rec.fetch_ms, rec.extract_ms) = (stages.fetch_ms, stages.extract_ms);
            (rec.rendered, rec.render_ms) = (stages.rendered, stages.render_ms);
            Err(e)
        }
    };
    let mut text_start = None;
    match result {
        Ok((summary, source_text)) => {
            if ctx.config.format == crate::cli::Format::Html {
                text_start = Some(report::html::text_start(&source_text));
            }
            let text = crate::sanitize::clean_text(&summary.text);
            let text = check_summary(&mut rec, backend, config, &source_text, text);
            rec.summary_words = crate::text::word_count(&text);
            rec.chunks = summary.chunks;
            rec.tokens_in = summary.tokens_in;
            rec.tokens_out = summary.tokens_out;
            if backend.cacheable() {
                rec.preselected_words = summary.preselected_words;
                rec.instructions_dropped = Some(summary.instructions_dropped);
                rec.truncated = Some(summary.truncated);
            }
            if summary.tokens_out > 0 && rec.summarize_ms > 0 {
                rec.tokens_per_s =
                    Some(summary.tokens_out as f64 * 1000.0 / rec.summarize_ms as f64);
            }
            let reference = source
                .reference
                .as_ref()
                .or_else(|| config.references.get(&source.id));
            rec.set_scores(eval::score_summary(
                &source_text,
                &text,
                reference.map(String::as_str),
                config.length.words,
            ));
            rec.summary = Some(text);
        }
        Err(e) => {
            rec.status = Status::Error;
            rec.error_class = Some(e.class.to_string());
            rec.error = Some(e.message);
            rec.http_status = e.http_status;
        }
    }
    rec.total_ms = ms(started.elapsed());
    let mut map = report::to_map(&rec);
    if let Some(t) = text_start {
        map.insert("text_start".into(), Value::String(t));
    }
    map
}

/// A model's summary through the cleaner and the faithfulness guard; returns the text to report
/// and fills the record's guard columns. The extractive backend's summaries are the document's
/// own sentences and pass through unchanged.
fn check_summary(
    rec: &mut SummaryRecord,
    backend: &Backend,
    config: &crate::config::SummarizeConfig,
    source_text: &str,
    text: String,
) -> String {
    if !backend.cacheable() {
        return text;
    }
    let mut cleaned = guard::clean(&text);
    rec.echo_stripped = Some(cleaned.stripped);
    // Cleaning never blanks a summary that no guard will replace: a reply that was all
    // preamble or labels is reported as written (repair and fallback make it a fallback).
    if cleaned.text.trim().is_empty()
        && matches!(config.guard, guard::GuardMode::Flag | guard::GuardMode::Off)
    {
        cleaned.text = text.clone();
    }
    let instructions =
        crate::prompt::instruction_texts(&config.prompt, config.length, &config.language);
    let prompt: Vec<&str> = instructions.iter().map(String::as_str).collect();
    let context = guard::Context {
        source: source_text,
        words: config.length.words,
        language: &config.language,
        prompt: &prompt,
    };
    let fallback = || crate::backend::extractive::summarize(source_text, config.length.words);
    let Some(verdict) = guard::guard(&cleaned.text, &context, config.guard, &fallback) else {
        return cleaned.text;
    };
    rec.guard = Some(verdict.outcome.as_str().to_string());
    rec.guard_reasons = Some(
        verdict
            .reasons
            .iter()
            .map(|r| r.as_str().to_string())
            .collect(),
    );
    if verdict.text != text {
        rec.model_summary = Some(text);
    }
    if verdict.outcome == guard::Outcome::Fallback {
        tracing::info!(id = %rec.id, reasons = ?verdict.reasons, "guard fell back to the extractive summary");
    }
    verdict.text
}

/// Summarizes through the cache: a hit makes no model call.
async fn summarize_cached(
    ctx: &Ctx,
    backend: &Backend,
    title: &str,
    text: &str,
    config: &crate::config::SummarizeConfig,
    hit: &mut bool,
) -> Result<crate::backend::Summary, DocError> {
    let cache = ctx.cache.as_ref().filter(|_| backend.cacheable());
    let Some(cache) = cache else {
        return backend.summarize(title, text, config).await;
    };
    let identity = backend.identity();
    let words = config.length.words.to_string();
    let sampling = format!(
        "{} {} {}",
        config.temperature, config.seed, config.repeat_penalty
    );
    let chunking = format!("{:?} {:?}", config.chunk_tokens, config.context_tokens);
    let style = backend.style(config);
    let input = format!("{} {:?}", style.as_str(), backend.preselect_budget(config));
    let key = crate::cache::key(&[
        &identity,
        config.prompt.template_for(style),
        &words,
        config.language.as_str(),
        &sampling,
        &chunking,
        &input,
        title,
        text,
    ]);
    if let Some(entry) = cache.get_summary(&key) {
        *hit = true;
        // No tokens were spent on this run; the entry keeps what the original call cost.
        return Ok(crate::backend::Summary {
            text: entry.summary,
            chunks: entry.chunks,
            preselected_words: entry.preselected_words,
            instructions_dropped: entry.instructions_dropped,
            truncated: entry.truncated,
            ..crate::backend::Summary::default()
        });
    }
    let summary = backend.summarize(title, text, config).await?;
    if summary.text.contains(crate::backend::batch::PENDING) {
        return Ok(summary); // a batch run's placeholder, not a summary
    }
    cache.put_summary(
        &key,
        &crate::cache::CachedSummary {
            summary: summary.text.clone(),
            tokens_in: summary.tokens_in,
            tokens_out: summary.tokens_out,
            chunks: summary.chunks,
            preselected_words: summary.preselected_words,
            truncated: summary.truncated,
            instructions_dropped: summary.instructions_dropped,
        },
    );
    Ok(summary)
}

/// Stack of an extraction thread: tree walks recurse once per level of nesting.
const EXTRACT_STACK: usize = 256 << 20;

/// Extractions running at once: one per core.
fn extract_slots() -> &'static tokio::sync::Semaphore {
    static SLOTS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    SLOTS.get_or_init(|| {
        tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get()))
    })
}

/// Fetch or read, decode, extract (rendering in a browser where `--render` asks). Errors carry
/// the stage times spent before failing.
async fn prepare(ctx: &Ctx, source: &Source) -> Result<Prepared, (DocError, Stages)> {
    let t = Instant::now();
    let loaded = load(ctx, source).await;
    let mut stages = Stages {
        fetch_ms: ms(t.elapsed()),
        ..Stages::default()
    };
    // `page`: where a page fetched by URL ended up after redirects (its relative links resolve
    // against it); files and text inputs have none.
    let (body, kind, page) = loaded.map_err(|e| (e, stages))?;
    let display = source.display.as_str();
    let renderer = ctx.fetcher.renderer();
    // Pages fetched by URL can be rendered; files and PDFs are read as they are.
    let page = page.filter(|_| kind == DocKind::Html);
    let extracted = match (page, body) {
        (Some(url), Loaded::Text(html)) if renderer.always() => {
            let html = render_timed(ctx, &url, &html, &mut stages)
                .await
                .map_err(|e| (e, stages))?;
            stages.rendered = true;
            extract_timed(ctx, Loaded::Text(html), kind, display, &mut stages)
                .await
                .0
        }
        (page, body) => {
            let (result, body) = extract_timed(ctx, body, kind, display, &mut stages).await;
            let words = result.as_ref().map_or(0, |e| e.words);
            // Too little text is a reason to render; a page the extractor choked on is not.
            let little = match &result {
                Ok(_) => true,
                Err(e) => e.class == ErrorClass::EmptyExtraction,
            };
            match (page, body) {
                (Some(url), Some(Loaded::Text(html)))
                    if little && renderer.wanted(&html, words) =>
                {
                    match render_timed(ctx, &url, &html, &mut stages).await {
                        // The rendered page wins unless it lost text.
                        Ok(html) => {
                            match extract_timed(ctx, Loaded::Text(html), kind, display, &mut stages)
                                .await
                                .0
                            {
                                Ok(e) if e.words >= words => {
                                    stages.rendered = true;
                                    Ok(e)
                                }
                                _ => result,
                            }
                        }
                        // The static result stands, with why the browser did not help.
                        Err(e) => result.map_err(|mut static_err| {
                            static_err.message = format!(
                                "{}; rendering it in a browser failed too: {}",
                                static_err.message, e.message
                            );
                            static_err
                        }),
                    }
                }
                _ => result,
            }
        }
    };
    let mut extracted = extracted.map_err(|e| (e, stages))?;
    if let SourceKind::Text {
        title: Some(title), ..
    } = &source.kind
    {
        extracted.title = Some(title.clone());
    }
    if let Some(title) = &source.title {
        extracted.title = Some(title.clone());
    }
    Ok(Prepared { extracted, stages })
}

/// [`extract_apart`], its time added to `stages.extract_ms`.
async fn extract_timed(
    ctx: &Ctx,
    body: Loaded,
    kind: DocKind,
    display: &str,
    stages: &mut Stages,
) -> (Result<Extracted, DocError>, Option<Loaded>) {
    let t = Instant::now();
    let out = extract_apart(ctx, body, kind, display).await;
    stages.extract_ms += ms(t.elapsed());
    out
}

/// The page through the headless browser, its time in `stages.render_ms`.
async fn render_timed(
    ctx: &Ctx,
    url: &Url,
    html: &str,
    stages: &mut Stages,
) -> Result<String, DocError> {
    let t = Instant::now();
    let rendered = ctx.fetcher.renderer().render(url, html, &ctx.fetcher).await;
    stages.render_ms = Some(ms(t.elapsed()));
    rendered
}

/// Extraction is CPU-bound: one thread of its own per document (a deep stack for deeply nested
/// pages), at most one per core at a time. A thread still running at the deadline cannot be
/// stopped, but it gives up its slot: the run goes on, and its result is dropped. The body
/// comes back with the result (to render it, where asked), unless the deadline passed.
async fn extract_apart(
    ctx: &Ctx,
    body: Loaded,
    kind: DocKind,
    display: &str,
) -> (Result<Extracted, DocError>, Option<Loaded>) {
    let extract_config = ctx.config.extract.clone();
    let deadline = extract_config.timeout;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let slot = extract_slots().acquire().await.ok();
    let worker_display = display.to_string();
    let spawned = std::thread::Builder::new()
        .name("extract".into())
        .stack_size(EXTRACT_STACK)
        .spawn(move || {
            let display = worker_display;
            let result = std::panic::catch_unwind(|| match &body {
                Loaded::Text(text) => extract::extract(text, kind, &extract_config, &display),
                Loaded::Pdf(bytes) => extract::extract_pdf(bytes, &display),
            });
            let result = result.unwrap_or_else(|_| {
                Err(DocError::new(
                    ErrorClass::EmptyExtraction,
                    format!(
                        "{display}: the extractor crashed on this page (a bug: please report it)"
                    ),
                ))
            });
            let _ = tx.send((result, body));
        });
    let out = match spawned {
        Err(e) => (
            Err(DocError::new(
                ErrorClass::Io,
                format!("{display}: cannot start an extraction thread: {e}"),
            )),
            None,
        ),
        Ok(_) => match tokio::time::timeout(deadline, rx).await {
            Ok(Ok((result, body))) => (result, Some(body)),
            Ok(Err(_)) => (
                Err(DocError::new(
                    ErrorClass::EmptyExtraction,
                    "extraction was cancelled",
                )),
                None,
            ),
            Err(_) => (
                Err(DocError::new(
                    ErrorClass::ExtractTimeout,
                    format!(
                        "{display}: extraction took longer than {:.0}s (a pathological page: very deep nesting, attribute floods); raise --extract-timeout to wait longer",
                        deadline.as_secs_f64()
                    ),
                )),
                None,
            ),
        },
    };
    drop(slot);
    out
}

/// The document's text and kind, from the network, a file, or the input record itself.
/// A document as loaded: decoded text, or the bytes of a PDF.
enum Loaded {
    Text(String),
    Pdf(Vec<u8>),
}

/// A PDF by its type or its first bytes.
fn is_pdf(essence: &str, body: &[u8]) -> bool {
    essence == "application/pdf" || body.starts_with(b"%PDF-")
}

async fn load(ctx: &Ctx, source: &Source) -> Result<(Loaded, DocKind, Option<Url>), DocError> {
    match &source.kind {
        SourceKind::Invalid { class, message } => Err(DocError::new(*class, message.clone())),
        SourceKind::Text { text, .. } => {
            let kind = decode::doc_kind("", "", text.as_bytes());
            Ok((
                Loaded::Text(text.clone()),
                if kind == DocKind::Html {
                    kind
                } else {
                    DocKind::Text
                },
                None,
            ))
        }
        SourceKind::Url(url) => {
            let fetched = ctx.fetcher.get(url).await?;
            let essence = fetched
                .content_type
                .as_deref()
                .map(decode::mime_essence)
                .unwrap_or_default();
            if is_pdf(&essence, &fetched.body) {
                return Ok((Loaded::Pdf(fetched.body), DocKind::Pdf, None));
            }
            decode::check_text_like(&fetched.body, url.as_str())?;
            listing_is_not_a_document(&fetched.body, url.as_str())?;
            let kind = decode::doc_kind(&essence, fetched.final_url.path(), &fetched.body);
            let declared = fetched
                .content_type
                .as_deref()
                .and_then(decode::charset_param);
            let (text, _) = decode::decode(&fetched.body, declared.as_deref(), kind);
            Ok((Loaded::Text(text), kind, Some(fetched.final_url)))
        }
        SourceKind::Path(path) => read_file(path, ctx.config.fetch.max_bytes)
            .await
            .map(|(body, kind)| (body, kind, None)),
    }
}

/// A feed or sitemap met as a document (in a list, or by a name that did not say so) is
/// reported, never summarized as if its XML were an article.
fn listing_is_not_a_document(body: &[u8], shown: &str) -> Result<(), DocError> {
    match crate::expand::sniff(body) {
        Some(kind) => Err(DocError::new(
            ErrorClass::UnsupportedContent,
            format!(
                "{shown}: is a {}, not a document: give it as an argument with --from-feed to summarize what it lists",
                kind.name()
            ),
        )),
        None => Ok(()),
    }
}

async fn read_file(path: &Path, max_bytes: u64) -> Result<(Loaded, DocKind), DocError> {
    let shown = path.display().to_string();
    let io_err = |e: std::io::Error| {
        let class = if e.kind() == std::io::ErrorKind::NotFound {
            ErrorClass::NotFound
        } else {
            ErrorClass::Io
        };
        // ELOOP: a list written by someone else may hold a symlink that points at itself.
        let hint = if e.raw_os_error() == Some(40) {
            " (a symlink loop)"
        } else {
            ""
        };
        DocError::new(class, format!("{shown}: cannot read the file: {e}{hint}"))
    };
    let meta = tokio::fs::metadata(path).await.map_err(io_err)?;
    // A FIFO would block the run forever and a device (/dev/zero) never ends: regular files only.
    if !meta.is_file() {
        use std::os::unix::fs::FileTypeExt;
        let t = meta.file_type();
        let what = if t.is_fifo() {
            "a FIFO (named pipe)"
        } else if t.is_char_device() || t.is_block_device() {
            "a device"
        } else if t.is_socket() {
            "a socket"
        } else {
            "not a regular file"
        };
        return Err(DocError::new(
            ErrorClass::InvalidInput,
            format!(
                "{shown}: is {what}; summarize reads regular files (save a stream to a file first)"
            ),
        ));
    }
    if meta.len() > max_bytes {
        return Err(DocError::new(
            ErrorClass::TooLarge,
            format!(
                "{shown}: file is larger than {max_bytes} bytes; raise --max-bytes to accept it"
            ),
        ));
    }
    let lower = shown.to_ascii_lowercase();
    if [".docx", ".png", ".jpg", ".jpeg", ".gif", ".zip", ".gz"]
        .iter()
        .any(|ext| lower.ends_with(ext))
    {
        return Err(DocError::new(
            ErrorClass::UnsupportedContent,
            format!(
                "{shown}: this file type is not supported yet (HTML, Markdown, plain text and PDF are)"
            ),
        ));
    }
    // Bounded even where the size lies (files under /proc report 0 bytes).
    let mut body = Vec::new();
    {
        use tokio::io::AsyncReadExt;
        let file = tokio::fs::File::open(path).await.map_err(io_err)?;
        file.take(max_bytes + 1)
            .read_to_end(&mut body)
            .await
            .map_err(io_err)?;
    }
    if body.len() as u64 > max_bytes {
        return Err(DocError::new(
            ErrorClass::TooLarge,
            format!(
                "{shown}: file is larger than {max_bytes} bytes; raise --max-bytes to accept it"
            ),
        ));
    }
    if is_pdf("", &body) {
        return Ok((Loaded::Pdf(body), DocKind::Pdf));
    }
    decode::check_text_like(&body, &shown)?;
    listing_is_not_a_document(&body, &shown)?;
    let kind = decode::doc_kind("", &lower, &body);
    let (text, _) = decode::decode(&body, None, kind);
    Ok((Loaded::Text(text), kind))
}
