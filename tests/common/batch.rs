//! Test support: the OpenAI Files and Batches API, played on 127.0.0.1 by the raw-socket
//! [`Server`], because no OpenAI service is reachable here. It follows the documented wire
//! format: the JSONL request input file, the file and batch objects, the status progression
//! `validating` → `in_progress` → `finalizing` → terminal, the output and error files, and
//! OpenAI-shaped error bodies (`{"error":{"message","type","param","code"}}`).
//!
//! Everything is deterministic: ids count up (`file-0001`, `batch_0001`, `batch_req_1`,
//! `req_1`), timestamps come from a fixed clock ([`T0`]), and a batch advances one step per
//! `GET /v1/batches/{id}` (not with time). The test chooses, per batch, how it ends
//! ([`Terminal`]) and, per request, what the model answers ([`LineReply`]).
//!
//! Endpoints (all under `/v1`, all needing `Authorization: Bearer ...`):
//! `GET /models`, `GET /models/{id}`, `POST /files` (multipart: `purpose=batch`, `file` named
//! `*.jsonl`), `GET /files`, `GET /files/{id}`, `GET /files/{id}/content`,
//! `DELETE /files/{id}`, `POST /batches`, `GET /batches`, `GET /batches/{id}`,
//! `POST /batches/{id}/cancel`, and `POST /chat/completions` (answered with the same
//! `respond`, for a non-batch run to compare with).
//!
//! A batch whose input file has a line that is not JSON, a duplicate or missing `custom_id`, a
//! method other than POST, a `url` other than the batch endpoint, or a `body.model` other than
//! the served model fails validation the way the real API does: `validating` on every poll,
//! then `failed` with `errors.data` naming the line (1-based), and no output file.

use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{json, Value};

use super::{Reply, Request, Server};

/// The fixed clock: 2025-01-01T00:00:00Z. Batch `n` (0-based) is created at `T0 + 60 n`.
pub const T0: u64 = 1_735_689_600;

/// The only endpoint and completion window this server accepts, as the real API for chat.
pub const ENDPOINT: &str = "/v1/chat/completions";
pub const WINDOW: &str = "24h";

/// How a batch ends once its non-terminal polls are used up.
#[derive(Debug, Clone, PartialEq)]
pub enum Terminal {
    /// `completed`: every request answered through `respond`.
    Completed,
    /// `failed` with this message (`errors.data[0]`, code `batch_failed`); no output file.
    Failed(String),
    /// `expired`: the first `done` requests answered, the rest in the error file with code
    /// `batch_expired`.
    Expired { done: usize },
}

/// What the model does with one request.
#[derive(Debug, Clone, PartialEq)]
pub enum LineReply {
    /// A 200 chat.completion whose message is this text.
    Content(String),
    /// An HTTP-style failure kept in the output file: this status and error body (see
    /// [`openai_error`]).
    Status(u16, Value),
    /// A line of the error file: `{"response":null,"error":{"code","message"}}`.
    ErrorLine { code: String, message: String },
}

impl LineReply {
    /// `Status(status, openai_error(message, kind, None, code))`.
    pub fn status(status: u16, kind: &str, code: &str, message: &str) -> LineReply {
        LineReply::Status(status, openai_error(message, kind, None, Some(code)))
    }
}

/// How batch number `n` (0-based, in creation order) ends.
pub type TerminalFn = Box<dyn Fn(usize) -> Terminal + Send + Sync>;

/// The answer to one request, from its `custom_id` and chat-completion request body.
pub type RespondFn = Box<dyn Fn(&str, &Value) -> LineReply + Send + Sync>;

/// The test's choices for one server.
pub struct BatchOptions {
    /// The model `GET /models` lists; a batch line asking for another fails validation.
    pub model: String,
    /// `GET /v1/batches/{id}` calls answered with a non-terminal status before the terminal one.
    pub polls_before_done: usize,
    /// How batch number `n` (0-based, in creation order) ends.
    pub terminal: TerminalFn,
    /// The answer to one request: its `custom_id` (empty for `POST /chat/completions`) and its
    /// chat-completion request body.
    pub respond: RespondFn,
    /// The accepted key; `None` accepts any non-empty bearer token.
    pub api_key: Option<String>,
}

impl Default for BatchOptions {
    /// `gpt-4o-mini`, 2 polls, always `Completed`, [`default_summary`] for every request, any key.
    fn default() -> BatchOptions {
        BatchOptions {
            model: "gpt-4o-mini".into(),
            polls_before_done: 2,
            terminal: Box::new(|_| Terminal::Completed),
            respond: Box::new(|_, body| LineReply::Content(default_summary(body))),
            api_key: None,
        }
    }
}

/// A file the server holds: one the client uploaded (`purpose` `batch`) or one it wrote
/// (`batch_output`, the output and error files).
#[derive(Debug, Clone)]
pub struct Upload {
    pub id: String,
    pub filename: String,
    pub purpose: String,
    pub created_at: u64,
    pub content: Vec<u8>,
    /// One value per non-blank line; `Value::Null` for a line that is not JSON.
    pub lines: Vec<Value>,
}

/// One batch and where it stands.
#[derive(Debug, Clone)]
pub struct BatchRecord {
    pub id: String,
    /// 0-based creation order (what `terminal` was asked with).
    pub number: usize,
    pub input_file_id: String,
    pub endpoint: String,
    pub completion_window: String,
    pub metadata: Value,
    pub status: String,
    /// `GET /v1/batches/{id}` calls so far.
    pub polls: usize,
    /// How it ends: `Failed` with the validation errors when the input file is invalid.
    pub terminal: Terminal,
    /// Validation errors of the input file (`errors.data` entries), empty when valid.
    pub validation: Vec<Value>,
    pub total: usize,
    /// Requests answered with a 200 so far (`request_counts.completed`).
    pub completed: usize,
    /// Requests answered otherwise so far, and expired ones (`request_counts.failed`).
    pub failed: usize,
    /// `respond`'s answers, in input order, for the requests processed so far.
    pub answers: Vec<LineReply>,
    pub output_file_id: Option<String>,
    pub error_file_id: Option<String>,
    pub created_at: u64,
    pub in_progress_at: Option<u64>,
    pub finalizing_at: Option<u64>,
    pub completed_at: Option<u64>,
    pub failed_at: Option<u64>,
    pub expired_at: Option<u64>,
    pub cancelling_at: Option<u64>,
    pub cancelled_at: Option<u64>,
}

/// Everything the server has seen and made.
#[derive(Debug, Default)]
pub struct BatchState {
    /// Files the client uploaded, in order.
    pub uploads: Vec<Upload>,
    /// Output and error files the server wrote, in order.
    pub outputs: Vec<Upload>,
    pub batches: Vec<BatchRecord>,
    /// File ids whose content was downloaded, in order.
    pub downloads: Vec<String>,
    /// Batch ids the client asked to cancel, in order.
    pub cancels: Vec<String>,
    /// File ids the client deleted.
    pub deleted: Vec<String>,
    /// Bodies of `POST /v1/chat/completions` requests.
    pub chats: Vec<Value>,
    /// Every 4xx the server answered: `"401 GET /v1/models: message"`.
    pub refusals: Vec<String>,
    next_file: usize,
    next_request: usize,
}

impl BatchState {
    /// An uploaded or written file by id.
    pub fn file(&self, id: &str) -> Option<&Upload> {
        self.uploads
            .iter()
            .chain(&self.outputs)
            .find(|f| f.id == id && !self.deleted.iter().any(|d| d == id))
    }

    pub fn batch(&self, id: &str) -> Option<&BatchRecord> {
        self.batches.iter().find(|b| b.id == id)
    }
}

/// A running OpenAI Files and Batches server; it stops when dropped.
pub struct BatchServer {
    pub server: Server,
    pub state: Arc<Mutex<BatchState>>,
}

impl BatchServer {
    pub fn start(options: BatchOptions) -> BatchServer {
        let state = Arc::new(Mutex::new(BatchState::default()));
        let server = {
            let state = state.clone();
            Server::start(move |req: &Request| {
                let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
                let reply = handle(&options, &mut state, req);
                if let Reply::Full { status, body, .. } = &reply {
                    if (400..500).contains(status) {
                        let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
                        let message = body["error"]["message"].as_str().unwrap_or("");
                        let line = format!("{status} {} {}: {message}", req.method, req.path);
                        state.refusals.push(line);
                    }
                }
                reply
            })
        };
        BatchServer { server, state }
    }

    /// `http://127.0.0.1:PORT/v1`, the base URL a client is given.
    pub fn base_url(&self) -> String {
        self.server.url("/v1")
    }

    pub fn state(&self) -> MutexGuard<'_, BatchState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// An OpenAI error body: `{"error":{"message","type","param","code"}}`.
pub fn openai_error(message: &str, kind: &str, param: Option<&str>, code: Option<&str>) -> Value {
    json!({"error": {"message": message, "type": kind, "param": param, "code": code}})
}

fn refuse(status: u16, message: &str, param: Option<&str>, code: Option<&str>) -> Reply {
    Reply::json(
        status,
        openai_error(message, "invalid_request_error", param, code),
    )
}

/// The default answer: the document's first sentence (at most 30 words, ending with a period),
/// so that it is grounded in the document. The document is the last user message, taken
/// between `<<<DOCUMENT ...>>>` marker lines when fenced, else after a `Title:` line when
/// there is one, else whole.
pub fn default_summary(body: &Value) -> String {
    let user = user_message(body);
    let lines: Vec<&str> = user.lines().collect();
    let markers: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].trim_start().starts_with("<<<DOCUMENT"))
        .collect();
    let document = if markers.len() >= 2 {
        lines[markers[0] + 1..markers[1]].join("\n")
    } else if let Some(i) = lines.iter().position(|l| l.starts_with("Title:")) {
        lines[i + 1..].join("\n")
    } else {
        user
    };
    let words: Vec<&str> = document.split_whitespace().collect();
    if words.is_empty() {
        return "The document is empty.".into();
    }
    let mut out = Vec::new();
    for w in words.iter().take(30) {
        out.push(*w);
        if w.ends_with('.') || w.ends_with('!') || w.ends_with('?') {
            break;
        }
    }
    let sentence = out.join(" ");
    let sentence = sentence.trim_end_matches(|c: char| !c.is_alphanumeric());
    format!("{sentence}.")
}

/// The text of the last `user` message (string content, or the `text` parts of an array).
fn user_message(body: &Value) -> String {
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let Some(user) = messages.iter().rev().find(|m| m["role"] == "user") else {
        return String::new();
    };
    content_text(&user["content"])
}

fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// Prompt tokens as this server counts them: words in all messages.
fn prompt_tokens(body: &Value) -> usize {
    body["messages"]
        .as_array()
        .map(|ms| {
            ms.iter()
                .map(|m| content_text(&m["content"]).split_whitespace().count())
                .sum()
        })
        .unwrap_or(0)
}

/// A `chat.completion` object answering `body` with `content`.
pub fn chat_completion(id: &str, created: u64, model: &str, body: &Value, content: &str) -> Value {
    let prompt = prompt_tokens(body);
    let completion = content.split_whitespace().count();
    json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": body["model"].as_str().unwrap_or(model),
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content},
            "finish_reason": "stop"
        }],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion
        }
    })
}

fn handle(options: &BatchOptions, state: &mut BatchState, req: &Request) -> Reply {
    let path = req.path.split('?').next().unwrap_or("");
    let method = req.method.as_str();
    let invalid_url = || refuse(404, &format!("Invalid URL ({method} {path})"), None, None);
    let Some(rest) = path.strip_prefix("/v1/") else {
        return invalid_url();
    };
    if let Some(reply) = check_auth(options, req) {
        return reply;
    }
    let parts: Vec<&str> = rest.split('/').collect();
    match (method, parts.as_slice()) {
        ("GET", ["models"]) => Reply::json(
            200,
            json!({"object": "list", "data": [model_object(&options.model)]}),
        ),
        ("GET", ["models", id]) if *id == options.model => {
            Reply::json(200, model_object(&options.model))
        }
        ("GET", ["models", id]) => refuse(
            404,
            &format!("The model `{id}` does not exist or you do not have access to it."),
            None,
            Some("model_not_found"),
        ),
        ("POST", ["files"]) => upload(state, req),
        ("GET", ["files"]) => {
            let data: Vec<Value> = state
                .uploads
                .iter()
                .chain(&state.outputs)
                .filter(|f| !state.deleted.contains(&f.id))
                .map(file_object)
                .collect();
            Reply::json(
                200,
                json!({"object": "list", "data": data, "has_more": false}),
            )
        }
        ("GET", ["files", id]) => match state.file(id) {
            Some(f) => Reply::json(200, file_object(f)),
            None => no_such_file(id),
        },
        ("GET", ["files", id, "content"]) => match state.file(id) {
            Some(f) => {
                let content = f.content.clone();
                state.downloads.push(id.to_string());
                Reply::status(200, "application/octet-stream", content)
            }
            None => no_such_file(id),
        },
        ("DELETE", ["files", id]) => match state.file(id) {
            Some(_) => {
                state.deleted.push(id.to_string());
                Reply::json(200, json!({"id": id, "object": "file", "deleted": true}))
            }
            None => no_such_file(id),
        },
        ("POST", ["batches"]) => create_batch(options, state, req),
        ("GET", ["batches"]) => {
            let data: Vec<Value> = state.batches.iter().rev().map(batch_object).collect();
            Reply::json(
                200,
                json!({"object": "list", "data": data, "has_more": false}),
            )
        }
        ("GET", ["batches", id]) => {
            let Some(i) = state.batches.iter().position(|b| b.id == *id) else {
                return no_such_batch(id);
            };
            poll(options, state, i);
            Reply::json(200, batch_object(&state.batches[i]))
        }
        ("POST", ["batches", id, "cancel"]) => {
            state.cancels.push(id.to_string());
            let Some(b) = state.batches.iter_mut().find(|b| b.id == *id) else {
                return no_such_batch(id);
            };
            match b.status.as_str() {
                "validating" | "in_progress" | "finalizing" => {
                    b.status = "cancelling".into();
                    b.cancelling_at = Some(b.created_at + 5);
                }
                "cancelling" | "cancelled" => {}
                other => {
                    return Reply::json(
                        409,
                        openai_error(
                            &format!("Cannot cancel a batch with status '{other}'."),
                            "invalid_request_error",
                            None,
                            None,
                        ),
                    )
                }
            }
            Reply::json(200, batch_object(b))
        }
        ("POST", ["chat", "completions"]) => {
            let body = req.json();
            if !body.is_object() {
                return refuse(
                    400,
                    "We could not parse the JSON body of your request.",
                    None,
                    None,
                );
            }
            state.chats.push(body.clone());
            state.next_request += 1;
            let n = state.next_request;
            match (options.respond)("", &body) {
                LineReply::Content(text) => Reply::json(
                    200,
                    chat_completion(
                        &format!("chatcmpl-{n}"),
                        T0 + n as u64,
                        &options.model,
                        &body,
                        &text,
                    ),
                ),
                LineReply::Status(status, error) => Reply::json(status, error),
                LineReply::ErrorLine { code, message } => Reply::json(
                    500,
                    openai_error(&message, "server_error", None, Some(&code)),
                ),
            }
        }
        _ => invalid_url(),
    }
}

fn check_auth(options: &BatchOptions, req: &Request) -> Option<Reply> {
    let token = req
        .header("authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or("");
    if token.is_empty() {
        return Some(refuse(
            401,
            "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            None,
            None,
        ));
    }
    match &options.api_key {
        Some(key) if key != token => Some(refuse(
            401,
            &format!("Incorrect API key provided: {token}."),
            None,
            Some("invalid_api_key"),
        )),
        _ => None,
    }
}

fn model_object(model: &str) -> Value {
    json!({"id": model, "object": "model", "created": T0, "owned_by": "system"})
}

fn no_such_file(id: &str) -> Reply {
    refuse(404, &format!("No such File object: {id}"), Some("id"), None)
}

fn no_such_batch(id: &str) -> Reply {
    refuse(404, &format!("No batch found with id '{id}'."), None, None)
}

fn file_object(f: &Upload) -> Value {
    json!({
        "id": f.id,
        "object": "file",
        "bytes": f.content.len(),
        "created_at": f.created_at,
        "filename": f.filename,
        "purpose": f.purpose,
    })
}

/// One part of a multipart/form-data body.
struct Part {
    name: String,
    filename: Option<String>,
    data: Vec<u8>,
}

/// Splits a multipart/form-data body on its boundary (RFC 7578); `None` when it is not one.
fn multipart(content_type: &str, body: &[u8]) -> Option<Vec<Part>> {
    let (kind, params) = content_type.split_once(';')?;
    if !kind.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    let boundary = params
        .split(';')
        .find_map(|p| p.trim().strip_prefix("boundary="))?
        .trim_matches('"');
    let delimiter = format!("--{boundary}").into_bytes();
    let mut pieces = Vec::new();
    let mut at = find(body, &delimiter, 0)?;
    loop {
        let start = at + delimiter.len();
        if body[start..].starts_with(b"--") {
            break;
        }
        let next = find(body, &delimiter, start)?;
        pieces.push(&body[start..next]);
        at = next;
    }
    let mut parts = Vec::new();
    for piece in pieces {
        let piece = piece.strip_prefix(b"\r\n").unwrap_or(piece);
        let piece = piece.strip_suffix(b"\r\n").unwrap_or(piece);
        let split = find(piece, b"\r\n\r\n", 0)?;
        let head = String::from_utf8_lossy(&piece[..split]).to_string();
        let data = piece[split + 4..].to_vec();
        let disposition = head
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("content-disposition:"))?;
        let param = |key: &str| {
            disposition.split(';').find_map(|p| {
                p.trim()
                    .strip_prefix(&format!("{key}="))
                    .map(|v| v.trim_matches('"').to_string())
            })
        };
        parts.push(Part {
            name: param("name")?,
            filename: param("filename"),
            data,
        });
    }
    Some(parts)
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    haystack
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

fn parse_lines(content: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(content)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or(Value::Null))
        .collect()
}

fn upload(state: &mut BatchState, req: &Request) -> Reply {
    let content_type = req.header("content-type").unwrap_or("");
    let Some(parts) = multipart(content_type, &req.body) else {
        return refuse(
            400,
            &format!("Invalid Content-Type header ({content_type}), expected multipart/form-data."),
            None,
            None,
        );
    };
    let Some(purpose) = parts.iter().find(|p| p.name == "purpose") else {
        return refuse(
            400,
            "Missing required parameter: 'purpose'.",
            Some("purpose"),
            Some("missing_required_parameter"),
        );
    };
    let purpose = String::from_utf8_lossy(&purpose.data).trim().to_string();
    if purpose != "batch" {
        return refuse(
            400,
            &format!("Invalid value for 'purpose': '{purpose}'. This server accepts only 'batch'."),
            Some("purpose"),
            None,
        );
    }
    let Some(file) = parts
        .iter()
        .find(|p| p.name == "file" && p.filename.is_some())
    else {
        return refuse(
            400,
            "Missing required parameter: 'file'.",
            Some("file"),
            Some("missing_required_parameter"),
        );
    };
    let filename = file.filename.clone().unwrap_or_default();
    if !filename.ends_with(".jsonl") {
        return refuse(
            400,
            "Invalid file format for Batch API. Must be .jsonl",
            Some("file"),
            None,
        );
    }
    let f = new_file(state, &filename, "batch", file.data.clone());
    let object = file_object(&f);
    state.uploads.push(f);
    Reply::json(200, object)
}

fn new_file(state: &mut BatchState, filename: &str, purpose: &str, content: Vec<u8>) -> Upload {
    state.next_file += 1;
    let n = state.next_file;
    Upload {
        id: format!("file-{n:04}"),
        filename: filename.to_string(),
        purpose: purpose.to_string(),
        created_at: T0 + n as u64,
        lines: parse_lines(&content),
        content,
    }
}

/// One `errors.data` entry.
fn batch_error(code: &str, message: &str, param: Option<&str>, line: Option<usize>) -> Value {
    json!({"code": code, "message": message, "param": param, "line": line})
}

/// What the real API's validation step would say about an input file.
fn validate(options: &BatchOptions, lines: &[Value]) -> Vec<Value> {
    let mut errors = Vec::new();
    if lines.is_empty() {
        errors.push(batch_error(
            "empty_file",
            "The batch input file is empty.",
            None,
            None,
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for (i, line) in lines.iter().enumerate() {
        let n = Some(i + 1);
        if !line.is_object() {
            errors.push(batch_error(
                "invalid_json_line",
                "This line is not parseable as valid JSON.",
                None,
                n,
            ));
            continue;
        }
        match line["custom_id"].as_str() {
            None => errors.push(batch_error(
                "missing_required_parameter",
                "Missing required parameter: 'custom_id'.",
                Some("custom_id"),
                n,
            )),
            Some(id) if !seen.insert(id.to_string()) => errors.push(batch_error(
                "duplicate_custom_id",
                "The custom_id for this request is a duplicate of another request. The custom_id parameter must be unique for each individual request in a batch.",
                Some("custom_id"),
                n,
            )),
            Some(_) => {}
        }
        if line["method"] != "POST" {
            errors.push(batch_error(
                "invalid_request",
                "Invalid value for 'method': only POST is supported.",
                Some("method"),
                n,
            ));
        }
        if line["url"] != ENDPOINT {
            errors.push(batch_error(
                "invalid_url",
                "The URL provided for this request does not match the batch endpoint.",
                Some("url"),
                n,
            ));
        }
        if !line["body"].is_object() {
            errors.push(batch_error(
                "invalid_request",
                "Missing required parameter: 'body'.",
                Some("body"),
                n,
            ));
        } else if line["body"]["model"] != options.model.as_str() {
            let model = line["body"]["model"].as_str().unwrap_or("");
            errors.push(batch_error(
                "model_not_found",
                &format!("The model `{model}` does not exist or you do not have access to it."),
                Some("body.model"),
                n,
            ));
        }
    }
    errors
}

fn create_batch(options: &BatchOptions, state: &mut BatchState, req: &Request) -> Reply {
    let body = req.json();
    if !body.is_object() {
        return refuse(
            400,
            "We could not parse the JSON body of your request.",
            None,
            None,
        );
    }
    let Some(input_file_id) = body["input_file_id"].as_str() else {
        return refuse(
            400,
            "Missing required parameter: 'input_file_id'.",
            Some("input_file_id"),
            Some("missing_required_parameter"),
        );
    };
    let endpoint = body["endpoint"].as_str().unwrap_or("");
    if endpoint != ENDPOINT {
        return refuse(
            400,
            &format!("Invalid value for 'endpoint': '{endpoint}'. This server supports only '{ENDPOINT}'."),
            Some("endpoint"),
            Some("invalid_value"),
        );
    }
    let window = body["completion_window"].as_str().unwrap_or("");
    if window != WINDOW {
        return refuse(
            400,
            &format!(
                "Invalid value for 'completion_window': '{window}'. Supported values are: '24h'."
            ),
            Some("completion_window"),
            Some("invalid_value"),
        );
    }
    let metadata = body.get("metadata").cloned().unwrap_or(Value::Null);
    if !(metadata.is_null() || metadata.is_object()) {
        return refuse(
            400,
            "Invalid type for 'metadata': expected an object.",
            Some("metadata"),
            Some("invalid_type"),
        );
    }
    let Some(file) = state.file(input_file_id) else {
        return refuse(
            404,
            &format!("No such File object: {input_file_id}"),
            Some("input_file_id"),
            None,
        );
    };
    if file.purpose != "batch" {
        return refuse(
            400,
            &format!("The input file {input_file_id} must have purpose 'batch'."),
            Some("input_file_id"),
            None,
        );
    }
    let validation = validate(options, &file.lines);
    let total = file.lines.len();
    let number = state.batches.len();
    let terminal = if validation.is_empty() {
        (options.terminal)(number)
    } else {
        Terminal::Failed(String::new())
    };
    let record = BatchRecord {
        id: format!("batch_{:04}", number + 1),
        number,
        input_file_id: input_file_id.to_string(),
        endpoint: endpoint.to_string(),
        completion_window: window.to_string(),
        metadata,
        status: "validating".into(),
        polls: 0,
        terminal,
        validation,
        total,
        completed: 0,
        failed: 0,
        answers: Vec::new(),
        output_file_id: None,
        error_file_id: None,
        created_at: T0 + 60 * number as u64,
        in_progress_at: None,
        finalizing_at: None,
        completed_at: None,
        failed_at: None,
        expired_at: None,
        cancelling_at: None,
        cancelled_at: None,
    };
    let object = batch_object(&record);
    state.batches.push(record);
    Reply::json(200, object)
}

fn batch_object(b: &BatchRecord) -> Value {
    let errors = if b.status == "failed" {
        let data = if b.validation.is_empty() {
            let message = match &b.terminal {
                Terminal::Failed(message) => message.as_str(),
                _ => "",
            };
            vec![batch_error("batch_failed", message, None, None)]
        } else {
            b.validation.clone()
        };
        json!({"object": "list", "data": data})
    } else {
        Value::Null
    };
    // The real API counts nothing while it validates.
    let (total, completed, failed) = if b.status == "validating" || b.status == "failed" {
        (0, 0, 0)
    } else {
        (b.total, b.completed, b.failed)
    };
    json!({
        "id": b.id,
        "object": "batch",
        "endpoint": b.endpoint,
        "errors": errors,
        "input_file_id": b.input_file_id,
        "completion_window": b.completion_window,
        "status": b.status,
        "output_file_id": b.output_file_id,
        "error_file_id": b.error_file_id,
        "created_at": b.created_at,
        "in_progress_at": b.in_progress_at,
        "expires_at": b.created_at + 86_400,
        "finalizing_at": b.finalizing_at,
        "completed_at": b.completed_at,
        "failed_at": b.failed_at,
        "expired_at": b.expired_at,
        "cancelling_at": b.cancelling_at,
        "cancelled_at": b.cancelled_at,
        "request_counts": {"total": total, "completed": completed, "failed": failed},
        "metadata": b.metadata,
    })
}

/// One `GET /v1/batches/{id}`: the batch takes its next step. With `n` non-terminal polls, poll
/// 1 is `validating`, the last is `finalizing` when `n >= 3` (for a batch that completes), the
/// ones between are `in_progress`, requests being answered (`respond` called) a share at a
/// time, so `request_counts` rise; poll `n + 1` reaches the terminal status. A failing batch
/// stays `validating`; a cancelled one turns `cancelled` on the poll after the cancel.
fn poll(options: &BatchOptions, state: &mut BatchState, i: usize) {
    let b = &mut state.batches[i];
    b.polls += 1;
    if matches!(
        b.status.as_str(),
        "completed" | "failed" | "expired" | "cancelled"
    ) {
        return;
    }
    if b.status == "cancelling" {
        finish(options, state, i, "cancelled");
        return;
    }
    let n = options.polls_before_done;
    let step = b.polls - 1;
    let (total, created) = (b.total, b.created_at);
    let cap = match b.terminal {
        Terminal::Expired { done } => done.min(total),
        _ => total,
    };
    if step >= n {
        if let Terminal::Failed(_) = b.terminal {
            b.status = "failed".into();
            b.failed_at = Some(created + 3);
        } else {
            let status = match b.terminal {
                Terminal::Completed => "completed",
                _ => "expired",
            };
            finish(options, state, i, status);
        }
        return;
    }
    if matches!(b.terminal, Terminal::Failed(_)) || step == 0 {
        return; // still validating
    }
    let finalizing = matches!(b.terminal, Terminal::Completed) && n >= 3;
    let upto = if finalizing && step == n - 1 {
        b.status = "finalizing".into();
        b.finalizing_at = Some(created + 2);
        cap
    } else {
        let last_in_progress = if finalizing { n - 2 } else { n - 1 };
        b.status = "in_progress".into();
        b.in_progress_at = Some(created + 1);
        cap * step / (last_in_progress + 1)
    };
    process(options, &mut state.batches[i], upto, &state.uploads);
}

/// Answers the batch's requests through `respond` up to request `upto` (those not answered
/// yet), counting them in `completed` (200s) and `failed` (the rest).
fn process(options: &BatchOptions, b: &mut BatchRecord, upto: usize, uploads: &[Upload]) {
    let Some(input) = uploads.iter().find(|f| f.id == b.input_file_id) else {
        return;
    };
    let upto = upto.min(input.lines.len());
    for line in &input.lines[b.answers.len().min(upto)..upto] {
        let custom_id = line["custom_id"].as_str().unwrap_or("");
        let reply = (options.respond)(custom_id, &line["body"]);
        match reply {
            LineReply::Content(_) => b.completed += 1,
            _ => b.failed += 1,
        }
        b.answers.push(reply);
    }
}

/// Ends batch `i` with `status`. Requests answered (all of them for `completed`, the first
/// `done` for `expired`, those answered so far for `cancelled`) go to the output file (200s
/// and HTTP-style failures) or the error file (`ErrorLine`s); the rest go to the error file as
/// `batch_expired` (counted failed) or `batch_cancelled` (not counted).
fn finish(options: &BatchOptions, state: &mut BatchState, i: usize, status: &str) {
    let upto = match (status, &state.batches[i].terminal) {
        ("cancelled", _) => state.batches[i].answers.len(),
        (_, Terminal::Expired { done }) => *done,
        _ => usize::MAX,
    };
    process(options, &mut state.batches[i], upto, &state.uploads);
    let b = state.batches[i].clone();
    let lines = state.file(&b.input_file_id).map(|f| f.lines.clone());
    let lines = lines.unwrap_or_default();
    let (mut output, mut errors) = (String::new(), String::new());
    let mut failed = b.failed;
    for (k, line) in lines.iter().enumerate() {
        state.next_request += 1;
        let n = state.next_request;
        let custom_id = line["custom_id"].as_str().unwrap_or("");
        let reply = match b.answers.get(k) {
            Some(reply) => reply.clone(),
            None if status == "expired" => {
                failed += 1;
                LineReply::ErrorLine {
                    code: "batch_expired".into(),
                    message:
                        "This request could not be executed before the completion window expired."
                            .into(),
                }
            }
            None => LineReply::ErrorLine {
                code: "batch_cancelled".into(),
                message: "This request was not executed because the batch was cancelled.".into(),
            },
        };
        let (text, into_output) = match reply {
            LineReply::Content(text) => {
                let body = chat_completion(
                    &format!("chatcmpl-{n}"),
                    b.created_at + 2,
                    &options.model,
                    &line["body"],
                    &text,
                );
                (output_line(n, custom_id, 200, body), true)
            }
            LineReply::Status(code, body) => (output_line(n, custom_id, code, body), true),
            LineReply::ErrorLine { code, message } => {
                let line = json!({
                    "id": format!("batch_req_{n}"),
                    "custom_id": custom_id,
                    "response": null,
                    "error": {"code": code, "message": message},
                });
                (line, false)
            }
        };
        let file = if into_output {
            &mut output
        } else {
            &mut errors
        };
        file.push_str(&text.to_string());
        file.push('\n');
    }
    let mut write = |name: &str, content: String| {
        (!content.is_empty()).then(|| {
            let f = new_file(
                state,
                &format!("{}_{name}.jsonl", b.id),
                "batch_output",
                content.into_bytes(),
            );
            let id = f.id.clone();
            state.outputs.push(f);
            id
        })
    };
    let output_file_id = write("output", output);
    let error_file_id = write("error", errors);
    let b = &mut state.batches[i];
    let at = Some(b.created_at + 3);
    b.in_progress_at = b.in_progress_at.or(Some(b.created_at + 1));
    match status {
        "completed" => b.completed_at = at,
        "expired" => b.expired_at = at,
        _ => b.cancelled_at = at,
    }
    b.status = status.to_string();
    b.failed = failed;
    b.output_file_id = output_file_id;
    b.error_file_id = error_file_id;
}

fn output_line(n: usize, custom_id: &str, status_code: u16, body: Value) -> Value {
    json!({
        "id": format!("batch_req_{n}"),
        "custom_id": custom_id,
        "response": {"status_code": status_code, "request_id": format!("req_{n}"), "body": body},
        "error": null,
    })
}
