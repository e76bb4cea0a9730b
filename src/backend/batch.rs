//! The OpenAI Batch API (`-b openai --batch`) and its offline halves (`--batch-export`,
//! `--batch-import`): half the price and no rate limits, for jobs that can wait.
//!
//! A batch run replays the ordinary pipeline in passes. In a pass every model call looks its
//! request up in the `Book`: an answered request gets its answer; an unanswered one is noted as
//! pending and gets a placeholder, so that the document's other calls of that round (every
//! chunk of a long one) are found in the same pass. A call whose prompt holds a placeholder (a
//! reduce step over unanswered chunks) is not noted: it belongs to a later round. Between
//! passes the pending requests go out as one batch: uploaded as Batch JSONL, created, polled
//! with back-off, and the output and error files read back into the book. The pass that finds
//! nothing pending is the last: its records are the report.
//!
//! The state lives in a folder beside the report (`REPORT.batch/`): `state.json` names the batch
//! in flight and a digest of its requests, `answers.jsonl` keeps every answer read back. A run
//! killed while it waits, or a cron run an hour later, attaches to the same batch (the same
//! requests have the same digest) instead of paying for it twice.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::{DocError, ErrorClass};

/// What a model call returns while its request waits for a batch. It ends like a sentence so
/// that the steps after a call keep it whole, and no model writes it.
pub const PENDING: &str = "[summarize: batch answer pending].";

tokio::task_local! {
    /// The record id of the document whose calls run in this task (its `custom_id`s).
    pub static DOC: String;
}

/// An answer from a batch's output or error file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Answer {
    /// A line of the output file: the HTTP status and body the request would have had.
    Reply { status: u16, body: Value },
    /// A line of the error file, or a request of a batch that failed as a whole.
    Failed { code: String, message: String },
}

impl Answer {
    /// Worth sending again in a later round: rate limits, server errors, expiry, cancellation.
    fn transient(&self) -> bool {
        match self {
            Answer::Reply { status, .. } => *status == 429 || *status >= 500,
            Answer::Failed { code, .. } => matches!(
                code.as_str(),
                "batch_expired" | "batch_cancelled" | "rate_limit_exceeded" | "server_error"
            ),
        }
    }
}

/// What a call finds in the book.
pub enum Lookup {
    Answered(Answer),
    /// Not answered yet: noted for the next batch (or, with a placeholder in its prompt, not).
    Pending,
}

/// Requests and answers of a batch run, shared by every call of a pass.
#[derive(Debug, Default)]
pub struct Book {
    answers: Mutex<HashMap<String, Answer>>,
    pending: Mutex<BTreeMap<String, Value>>,
    /// Rounds each custom_id has been sent in, for `--retries` of transient failures.
    sent: Mutex<HashMap<String, u32>>,
}

/// `custom_id` of a request: the record id and a digest of the request (which chunk, which
/// prompt, which round of reduction), so that a changed request is never matched with an old
/// answer, and a record's requests are found in the files by its id.
pub fn custom_id(doc: &str, body: &Value) -> String {
    let digest = crate::cache::key(&[&body.to_string()]);
    format!("{doc}#{}", &digest[..16])
}

impl Book {
    /// The answer to `body`, or `Pending` (and noted) when there is none yet.
    pub fn lookup(&self, doc: &str, body: &Value) -> Lookup {
        let id = custom_id(doc, body);
        if let Some(answer) = lock(&self.answers).get(&id) {
            return Lookup::Answered(answer.clone());
        }
        if !body.to_string().contains(PENDING) {
            lock(&self.pending).insert(id, body.clone());
        }
        Lookup::Pending
    }

    pub fn pending(&self) -> usize {
        lock(&self.pending).len()
    }

    /// The pending requests as Batch JSONL lines, in custom_id order; the book forgets them.
    pub fn take_pending(&self) -> Vec<(String, Value)> {
        let taken = std::mem::take(&mut *lock(&self.pending));
        let mut sent = lock(&self.sent);
        for id in taken.keys() {
            *sent.entry(id.clone()).or_default() += 1;
        }
        taken.into_iter().collect()
    }

    /// Takes answers in; a transient failure is kept only once it has been sent `tries` times
    /// (before that, the next pass asks again). Returns how many were kept.
    pub fn receive(&self, answers: Vec<(String, Answer)>, tries: u32) -> usize {
        let sent = lock(&self.sent);
        let mut book = lock(&self.answers);
        let mut kept = 0;
        for (id, answer) in answers {
            if answer.transient() && sent.get(&id).copied().unwrap_or(0) < tries {
                continue;
            }
            book.insert(id, answer);
            kept += 1;
        }
        kept
    }

    pub fn answered(&self) -> usize {
        lock(&self.answers).len()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One request as a line of Batch JSONL.
pub fn request_line(custom_id: &str, body: &Value) -> String {
    json!({
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": body,
    })
    .to_string()
}

/// Reads the lines of a batch output or error file (or of an offline engine's results in the
/// same format, `--batch-import`). Lines without a custom_id are skipped and counted.
pub fn parse_results(text: &str) -> (Vec<(String, Answer)>, usize) {
    let mut out = Vec::new();
    let mut skipped = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            skipped += 1;
            continue;
        };
        let Some(id) = v.get("custom_id").and_then(Value::as_str) else {
            skipped += 1;
            continue;
        };
        let answer = match (v.get("response"), v.get("error")) {
            (Some(r), _) if r.is_object() => Answer::Reply {
                status: r.get("status_code").and_then(Value::as_u64).unwrap_or(200) as u16,
                body: r.get("body").cloned().unwrap_or(Value::Null),
            },
            (_, Some(e)) if e.is_object() => Answer::Failed {
                code: e
                    .get("code")
                    .and_then(Value::as_str)
                    .unwrap_or("error")
                    .to_string(),
                message: e
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("the batch reported an error for this request")
                    .to_string(),
            },
            _ => {
                skipped += 1;
                continue;
            }
        };
        out.push((id.to_string(), answer));
    }
    (out, skipped)
}

/// A failed answer as the error of the call that asked.
pub fn failure(code: &str, message: &str) -> DocError {
    let class = match code {
        "batch_expired" | "batch_cancelled" => ErrorClass::Timeout,
        "rate_limit_exceeded" => ErrorClass::BackendRateLimited,
        "context_length_exceeded" => ErrorClass::ContextLength,
        "model_not_found" => ErrorClass::ModelNotFound,
        _ => ErrorClass::BackendError,
    };
    DocError::new(class, format!("the batch answered {code}: {message}"))
}

/// The folder beside the report that keeps a batch run's state.
pub fn state_dir(report: &Path) -> PathBuf {
    let mut name = report.file_name().unwrap_or_default().to_os_string();
    name.push(".batch");
    report.with_file_name(name)
}

/// `state.json`: the batch in flight, if any.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct State {
    pub batch_id: Option<String>,
    /// sha256 of the uploaded JSONL: the same requests attach to the same batch.
    pub requests_sha256: Option<String>,
    pub round: u32,
}

/// A batch run's files: the state and the answers read back so far.
pub struct Store {
    dir: PathBuf,
    pub state: State,
}

impl Store {
    /// Opens (or creates) the folder and loads its answers into `book`.
    pub fn open(dir: PathBuf, book: &Book) -> Result<Store> {
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create the batch state folder '{}'", dir.display()))?;
        let state = match std::fs::read(dir.join("state.json")) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
            Err(_) => State::default(),
        };
        if let Ok(f) = std::fs::File::open(dir.join("answers.jsonl")) {
            let mut answers = Vec::new();
            for line in std::io::BufReader::new(f).lines().map_while(Result::ok) {
                #[derive(Deserialize)]
                struct Saved {
                    custom_id: String,
                    answer: Answer,
                }
                // A line cut by a crash is skipped: that answer is asked for again.
                if let Ok(s) = serde_json::from_str::<Saved>(&line) {
                    answers.push((s.custom_id, s.answer));
                }
            }
            book.receive(answers, 0);
        }
        Ok(Store { dir, state })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn save_state(&self) -> Result<()> {
        let json = serde_json::to_vec_pretty(&self.state)?;
        crate::cache::replace_file(&self.dir.join("state.json"), &json)
            .with_context(|| format!("cannot write '{}'", self.dir.join("state.json").display()))
    }

    /// Appends answers to `answers.jsonl` (flushed before the batch is forgotten).
    pub fn save_answers(&self, answers: &[(String, Answer)]) -> Result<()> {
        let path = self.dir.join("answers.jsonl");
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("cannot write '{}'", path.display()))?;
        let mut buf = Vec::new();
        for (id, answer) in answers {
            serde_json::to_writer(&mut buf, &json!({"custom_id": id, "answer": answer}))?;
            buf.push(b'\n');
        }
        f.write_all(&buf)?;
        f.sync_data()?;
        Ok(())
    }

    /// The run is done: its records hold everything, the folder goes.
    pub fn remove(self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The Files and Batches endpoints of one OpenAI-compatible server.
pub struct Client {
    pub http: reqwest::Client,
    pub base_url: String,
    pub api_key: Option<String>,
    /// First wait between polls; it doubles up to `max(poll, 60 s)`.
    pub poll: Duration,
    pub quiet: bool,
}

#[derive(Debug, Deserialize)]
struct BatchObject {
    id: String,
    status: String,
    #[serde(default)]
    output_file_id: Option<String>,
    #[serde(default)]
    error_file_id: Option<String>,
    #[serde(default)]
    errors: Option<Value>,
    #[serde(default)]
    request_counts: Option<Counts>,
}

#[derive(Debug, Default, Deserialize)]
struct Counts {
    #[serde(default)]
    total: u64,
    #[serde(default)]
    completed: u64,
    #[serde(default)]
    failed: u64,
}

impl Client {
    fn auth(&self, b: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.api_key {
            Some(key) => b.bearer_auth(key),
            None => b,
        }
    }

    async fn send(&self, what: &str, b: reqwest::RequestBuilder) -> Result<Vec<u8>> {
        let resp = self
            .auth(b)
            .timeout(Duration::from_secs(300))
            .send()
            .await
            .with_context(|| format!("batch: cannot {what} at {}", self.base_url))?;
        let status = resp.status();
        let body = resp
            .bytes()
            .await
            .with_context(|| format!("batch: the answer to {what} was cut off"))?;
        if !status.is_success() {
            let detail = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
                .unwrap_or_else(|| crate::sanitize::one_line(&String::from_utf8_lossy(&body)));
            bail!("batch: the server refused to {what} (HTTP {status}): {detail}");
        }
        Ok(body.to_vec())
    }

    /// `POST /files` (purpose `batch`), multipart by hand: returns the file id.
    async fn upload(&self, name: &str, jsonl: &[u8]) -> Result<String> {
        let boundary = format!("summarize-{}", &crate::cache::key(&[name])[..24]);
        let mut body = Vec::with_capacity(jsonl.len() + 512);
        write!(
            body,
            "--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: application/jsonl\r\n\r\n"
        )?;
        body.extend_from_slice(jsonl);
        write!(body, "\r\n--{boundary}--\r\n")?;
        let req = self
            .http
            .post(format!("{}/files", self.base_url))
            .header(
                reqwest::header::CONTENT_TYPE,
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(body);
        let reply: Value = serde_json::from_slice(&self.send("upload the batch file", req).await?)?;
        reply["id"]
            .as_str()
            .map(str::to_string)
            .context("batch: the file upload's answer has no id")
    }

    async fn create(&self, file_id: &str, round: u32) -> Result<BatchObject> {
        let req = self
            .http
            .post(format!("{}/batches", self.base_url))
            .json(&json!({
                "input_file_id": file_id,
                "endpoint": "/v1/chat/completions",
                "completion_window": "24h",
                "metadata": {"created_by": "summarize", "round": round.to_string()},
            }));
        Ok(serde_json::from_slice(
            &self.send("create the batch", req).await?,
        )?)
    }

    async fn get(&self, id: &str) -> Result<BatchObject> {
        let req = self.http.get(format!("{}/batches/{id}", self.base_url));
        Ok(serde_json::from_slice(
            &self.send(&format!("read batch {id}"), req).await?,
        )?)
    }

    async fn content(&self, file_id: &str) -> Result<String> {
        let req = self
            .http
            .get(format!("{}/files/{file_id}/content", self.base_url));
        let bytes = self.send(&format!("download file {file_id}"), req).await?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Sends the book's pending requests as one batch (or attaches to the batch in flight with
    /// the same requests), waits for it, and reads its answers into the book and the store.
    pub async fn round(&self, book: &Book, store: &mut Store, tries: u32) -> Result<()> {
        let requests = book.take_pending();
        let mut jsonl = String::new();
        for (id, body) in &requests {
            jsonl.push_str(&request_line(id, body));
            jsonl.push('\n');
        }
        let sha = crate::cache::key(&[&jsonl]);
        let attach = store
            .state
            .batch_id
            .clone()
            .filter(|_| store.state.requests_sha256.as_deref() == Some(sha.as_str()));
        let batch_id = match attach {
            Some(id) => {
                self.say(&format!(
                    "batch: attaching to {id}, sent by an earlier run ({} requests)",
                    requests.len()
                ));
                id
            }
            None => {
                if let Some(old) = &store.state.batch_id {
                    self.say(&format!(
                        "batch: {old} from an earlier run asked for other requests; it is left alone and a new batch is sent"
                    ));
                }
                store.state.round += 1;
                let name = format!("summarize-round-{}.jsonl", store.state.round);
                let file = self.upload(&name, jsonl.as_bytes()).await?;
                let batch = self.create(&file, store.state.round).await?;
                store.state.batch_id = Some(batch.id.clone());
                store.state.requests_sha256 = Some(sha);
                store.save_state()?;
                self.say(&format!(
                    "batch: sent {} requests as {} (round {}); waiting for it (a killed run attaches to it again)",
                    requests.len(),
                    batch.id,
                    store.state.round
                ));
                batch.id
            }
        };
        let batch = self.wait(&batch_id).await?;
        let mut answers = Vec::new();
        match batch.status.as_str() {
            "failed" => {
                let why = batch
                    .errors
                    .as_ref()
                    .and_then(|e| e["data"].as_array())
                    .map(|d| {
                        d.iter()
                            .filter_map(|e| e["message"].as_str())
                            .collect::<Vec<_>>()
                            .join("; ")
                    })
                    .filter(|m| !m.is_empty())
                    .unwrap_or_else(|| "no reason given".to_string());
                self.say(&format!("batch: {batch_id} failed: {why}"));
                for (id, _) in &requests {
                    answers.push((
                        id.clone(),
                        Answer::Failed {
                            code: "batch_failed".into(),
                            message: format!("batch {batch_id} failed: {why}"),
                        },
                    ));
                }
            }
            _ => {
                for file in [&batch.output_file_id, &batch.error_file_id]
                    .into_iter()
                    .flatten()
                {
                    let (mut got, skipped) = parse_results(&self.content(file).await?);
                    if skipped > 0 {
                        self.say(&format!(
                            "batch: {skipped} lines of file {file} were not results; skipped"
                        ));
                    }
                    answers.append(&mut got);
                }
                // A request the files do not mention is reported, not lost.
                let mentioned: std::collections::HashSet<&String> =
                    answers.iter().map(|(id, _)| id).collect();
                let missing: Vec<String> = requests
                    .iter()
                    .map(|(id, _)| id)
                    .filter(|id| !mentioned.contains(id))
                    .cloned()
                    .collect();
                for id in missing {
                    answers.push((
                        id,
                        Answer::Failed {
                            code: format!("batch_{}", batch.status),
                            message: format!(
                                "batch {batch_id} ended {} without an answer to this request",
                                batch.status
                            ),
                        },
                    ));
                }
            }
        }
        store.save_answers(&answers)?;
        let kept = book.receive(answers, tries);
        self.say(&format!(
            "batch: {batch_id} ended {}: {kept} answers kept{}",
            batch.status,
            if kept < requests.len() {
                format!(", {} to send again", requests.len() - kept)
            } else {
                String::new()
            }
        ));
        store.state.batch_id = None;
        store.state.requests_sha256 = None;
        store.save_state()
    }

    /// Polls until the batch ends, waiting `poll` first and doubling up to a minute.
    async fn wait(&self, id: &str) -> Result<BatchObject> {
        let started = Instant::now();
        let mut every = self.poll;
        let cap = self.poll.max(Duration::from_secs(60));
        let mut last = String::new();
        // On a terminal a bar of requests done; in logs a line whenever the state changes.
        use std::io::IsTerminal;
        let bar = (!self.quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = indicatif::ProgressBar::with_draw_target(
                None,
                indicatif::ProgressDrawTarget::stderr(),
            );
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{elapsed_precise} [{bar:30}] {pos}/{len} requests {msg}",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar
        });
        loop {
            let batch = self.get(id).await?;
            if matches!(
                batch.status.as_str(),
                "completed" | "failed" | "expired" | "cancelled"
            ) {
                if let Some(bar) = &bar {
                    bar.finish_and_clear();
                }
                return Ok(batch);
            }
            let c = batch.request_counts.unwrap_or_default();
            if let Some(bar) = &bar {
                bar.set_length(c.total);
                bar.set_position(c.completed + c.failed);
                bar.set_message(format!("{} ({} failed)", batch.status, c.failed));
            }
            let line = format!(
                "batch: {id} {}: {} of {} requests done ({} failed), {:.0}s",
                batch.status,
                c.completed,
                c.total,
                c.failed,
                started.elapsed().as_secs_f64()
            );
            if bar.is_none() && line.split(',').next() != last.split(',').next() {
                self.say(&line);
            }
            last = line;
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                // The pipeline's passes listen for Ctrl-C, so the default handler is gone: a
                // wait must listen too. The batch goes on; the same command attaches to it.
                _ = tokio::signal::ctrl_c() => {
                    if let Some(bar) = &bar {
                        bar.finish_and_clear();
                    }
                    eprintln!("summarize: interrupted while waiting for batch {id}; it goes on at the server: run the same command again to attach to it");
                    std::process::exit(130);
                }
            }
            every = (every * 2).min(cap);
        }
    }

    fn say(&self, line: &str) {
        if !self.quiet {
            eprintln!("summarize: {line}");
        }
    }
}

/// Writes the pending requests to `path` as Batch JSONL (`--batch-export`); returns how many.
pub fn export(book: &Book, path: &Path) -> Result<usize> {
    let requests = book.take_pending();
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(path)
            .with_context(|| format!("cannot create --batch-export file '{}'", path.display()))?,
    );
    for (id, body) in &requests {
        writeln!(out, "{}", request_line(id, body))?;
    }
    out.flush()?;
    Ok(requests.len())
}

/// Reads result files (`--batch-import`) into the book and the store; returns how many answers.
pub fn import(book: &Book, store: &Store, paths: &[PathBuf]) -> Result<usize> {
    let mut n = 0;
    for path in paths {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read --batch-import file '{}'", path.display()))?;
        let (answers, skipped) = parse_results(&text);
        if answers.is_empty() {
            bail!(
                "--batch-import '{}': no result lines (each needs \"custom_id\" and \"response\" or \"error\", as a Batch API output file has){}",
                path.display(),
                if skipped > 0 { format!("; {skipped} lines were something else") } else { String::new() }
            );
        }
        store.save_answers(&answers)?;
        n += book.receive(answers, 0);
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_requests_are_noted_once_and_placeholders_never() {
        let book = Book::default();
        let body = json!({"model": "m", "messages": [{"role": "user", "content": "chunk one"}]});
        assert!(matches!(book.lookup("doc-1", &body), Lookup::Pending));
        assert!(matches!(book.lookup("doc-1", &body), Lookup::Pending));
        let reduce =
            json!({"messages": [{"role": "user", "content": format!("{PENDING}\n\n{PENDING}")}]});
        assert!(matches!(book.lookup("doc-1", &reduce), Lookup::Pending));
        assert_eq!(book.pending(), 1);
        let taken = book.take_pending();
        assert_eq!(taken[0].0, custom_id("doc-1", &body));
        assert!(taken[0].0.starts_with("doc-1#"));
        let answer = Answer::Reply {
            status: 200,
            body: json!({"choices": []}),
        };
        assert_eq!(
            book.receive(vec![(taken[0].0.clone(), answer.clone())], 2),
            1
        );
        assert!(matches!(book.lookup("doc-1", &body), Lookup::Answered(a) if a == answer));
    }

    #[test]
    fn transient_failures_are_sent_again_until_the_tries_are_spent() {
        let book = Book::default();
        let body = json!({"messages": "x"});
        let id = custom_id("d", &body);
        let expired = Answer::Failed {
            code: "batch_expired".into(),
            message: "late".into(),
        };
        book.lookup("d", &body);
        book.take_pending();
        assert_eq!(book.receive(vec![(id.clone(), expired.clone())], 2), 0);
        assert!(matches!(book.lookup("d", &body), Lookup::Pending));
        book.take_pending();
        assert_eq!(book.receive(vec![(id.clone(), expired)], 2), 1);
        assert!(matches!(book.lookup("d", &body), Lookup::Answered(_)));
    }

    #[test]
    fn result_lines_in_both_shapes_are_read() {
        let text = concat!(
            r#"{"id":"r1","custom_id":"a#1","response":{"status_code":200,"body":{"choices":[]}},"error":null}"#,
            "\n",
            r#"{"id":"r2","custom_id":"b#2","response":null,"error":{"code":"batch_expired","message":"late"}}"#,
            "\nnot json\n"
        );
        let (answers, skipped) = parse_results(text);
        assert_eq!(skipped, 1);
        assert_eq!(answers.len(), 2);
        assert!(matches!(&answers[0].1, Answer::Reply { status: 200, .. }));
        assert!(matches!(&answers[1].1, Answer::Failed { code, .. } if code == "batch_expired"));
    }
}
