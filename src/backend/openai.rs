//! The OpenAI-compatible backend: `POST {base}/chat/completions`. One module serves OpenAI,
//! vLLM, llama.cpp's server, LM Studio and OpenRouter; only the base URL differs.
//! Owns the wire format and its error mapping, and the replicas of one model (several base
//! URLs): each request goes to the replica with the fewest requests in flight; one that
//! refuses connections, times out or answers 5xx is rested for a back-off period while the
//! others take its requests (the retry of a failed request lands on another replica).
//! Chunking lives in `backend/mod.rs`.

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde::Deserialize;
use serde_json::json;

use super::{batch, CallSettings, ChatModel, ChatRequest, Completion, Tokenizer};
use crate::config::{BackendConfig, Secret, SummarizeConfig};
use crate::error::{DocError, ErrorClass};
use crate::retry;

/// Context assumed for a model we cannot ask about: small enough for most local servers
/// (llama.cpp defaults to 4096); a context-length error still makes us re-chunk smaller.
const UNKNOWN_CONTEXT: usize = 4096;

/// One server of a replica set, and what it has done.
#[derive(Debug)]
struct Replica {
    base_url: String,
    in_flight: AtomicUsize,
    /// Failures in a row; each doubles the rest.
    failures: AtomicU32,
    /// Rested until then after a failure.
    rest_until: Mutex<Option<Instant>>,
    requests: AtomicUsize,
    errors: AtomicUsize,
    latencies_ms: Mutex<Vec<u64>>,
}

/// First rest of a failing replica; doubles with each failure in a row, up to `MAX_REST`.
const FIRST_REST: Duration = Duration::from_secs(1);
const MAX_REST: Duration = Duration::from_secs(60);

impl Replica {
    fn new(base_url: String) -> Replica {
        Replica {
            base_url,
            in_flight: AtomicUsize::new(0),
            failures: AtomicU32::new(0),
            rest_until: Mutex::new(None),
            requests: AtomicUsize::new(0),
            errors: AtomicUsize::new(0),
            latencies_ms: Mutex::new(Vec::new()),
        }
    }

    fn resting_until(&self, now: Instant) -> Option<Instant> {
        self.rest_until
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .filter(|&t| t > now)
    }

    fn rest(&self) {
        let n = self.failures.fetch_add(1, Ordering::SeqCst).min(6);
        let rest = FIRST_REST.saturating_mul(1 << n).min(MAX_REST);
        *self.rest_until.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now() + rest);
        tracing::info!(replica = %self.base_url, ?rest, "replica failed; resting it");
    }
}

/// What one replica did over the run: requests, errors and latency (`--stats`, run summary).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReplicaStats {
    pub base_url: String,
    pub requests: usize,
    pub errors: usize,
    pub latency: crate::report::Latency,
}

#[derive(Debug)]
pub struct OpenAi {
    client: reqwest::Client,
    replicas: Vec<Replica>,
    api_key: Option<Secret>,
    pub model: String,
    context: usize,
    tokenizer: Tokenizer,
    calls: CallSettings,
    /// api.openai.com wants `max_completion_tokens`; other servers know `max_tokens`.
    official: bool,
    /// Set in a batch run: calls are answered from batches, not sent one by one.
    batch: Option<Arc<batch::Book>>,
}

#[derive(Deserialize)]
struct ChatResponse {
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct Choice {
    message: Message,
    /// "length" when the reply hit `max_tokens`.
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct Message {
    #[serde(default)]
    content: Option<String>,
}

#[derive(Deserialize)]
struct Usage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
}

impl OpenAi {
    pub async fn connect(
        config: &SummarizeConfig,
        client: reqwest::Client,
        calls: CallSettings,
    ) -> Result<OpenAi> {
        let BackendConfig::OpenAi {
            base_urls,
            api_key,
            model,
        } = &config.backend
        else {
            unreachable!("connect is only called for the openai backend")
        };
        let mut backend = OpenAi {
            client,
            replicas: base_urls.iter().cloned().map(Replica::new).collect(),
            api_key: api_key.clone(),
            model: model.clone(),
            context: config.context_tokens.unwrap_or(UNKNOWN_CONTEXT),
            tokenizer: tokenizer_for(model),
            calls,
            official: base_urls
                .iter()
                .any(|u| u.starts_with("https://api.openai.com")),
            batch: None,
        };
        // Requests for an offline engine (--batch-export / --batch-import): no server to ask.
        if config.batch.as_ref().is_some_and(|b| !b.online) {
            if config.context_tokens.is_none() {
                backend.context = known_context(model).unwrap_or(UNKNOWN_CONTEXT);
            }
            return Ok(backend);
        }
        // Every replica is asked; the run starts when one answers, the others are rested.
        let mut served = None;
        let mut first_error = None;
        let mut up = 0;
        for replica in &backend.replicas {
            match backend.preflight(&replica.base_url).await {
                Ok(context) => {
                    up += 1;
                    served = served.or(context);
                }
                Err(e) if backend.replicas.len() > 1 => {
                    eprintln!("summarize: {e:#}; the other replicas take its requests");
                    replica.rest();
                    first_error.get_or_insert(e);
                }
                Err(e) => return Err(e),
            }
        }
        if up == 0 {
            return Err(first_error.expect("at least one replica"));
        }
        if config.context_tokens.is_none() {
            backend.context = served
                .or_else(|| known_context(model))
                .unwrap_or(UNKNOWN_CONTEXT);
        }
        tracing::info!(model = %backend.model, context = backend.context, tokenizer = ?backend.tokenizer, "openai backend ready");
        Ok(backend)
    }

    /// The servers, sorted and joined by commas (the URL itself when there is one).
    pub fn base_url(&self) -> String {
        let mut urls: Vec<&str> = self.replicas.iter().map(|r| r.base_url.as_str()).collect();
        urls.sort_unstable();
        urls.join(",")
    }

    /// Per-replica figures, when there are several replicas.
    pub fn replica_stats(&self) -> Vec<ReplicaStats> {
        if self.replicas.len() < 2 {
            return Vec::new();
        }
        self.replicas
            .iter()
            .map(|r| ReplicaStats {
                base_url: r.base_url.clone(),
                requests: r.requests.load(Ordering::SeqCst),
                errors: r.errors.load(Ordering::SeqCst),
                latency: crate::report::Latency::from_ms(
                    &r.latencies_ms.lock().unwrap_or_else(|e| e.into_inner()),
                ),
            })
            .collect()
    }

    /// The replica for the next request: of those not resting, the one with the fewest in
    /// flight (then the fewest requests so far); when all rest, the one back soonest.
    fn pick(&self) -> &Replica {
        let now = Instant::now();
        let ready = self
            .replicas
            .iter()
            .filter(|r| r.resting_until(now).is_none())
            .min_by_key(|r| {
                (
                    r.in_flight.load(Ordering::SeqCst),
                    r.requests.load(Ordering::SeqCst),
                )
            });
        ready.unwrap_or_else(|| {
            self.replicas
                .iter()
                .min_by_key(|r| r.resting_until(now).unwrap_or(now))
                .expect("at least one replica")
        })
    }

    fn request(&self, builder: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.api_key {
            Some(key) => builder.bearer_auth(key.expose()),
            None => builder,
        }
    }

    /// `GET {base}/models`: proves the server is there and the key works, and reads the
    /// context size where the server reports one (vLLM `max_model_len`, llama.cpp `n_ctx`).
    async fn preflight(&self, base_url: &str) -> Result<Option<usize>> {
        let url = format!("{base_url}/models");
        let resp = match self.request(self.client.get(&url)).timeout(self.calls.timeout).send().await {
            Ok(r) => r,
            Err(e) => bail!(
                "cannot reach the openai backend at {}: {}; start the server or fix --base-url / OPENAI_BASE_URL",
                base_url,
                crate::fetch::classify(&e, &url::Url::parse(&url)?).message
            ),
        };
        let status = resp.status().as_u16();
        if status == 401 || status == 403 {
            bail!(
                "the openai backend at {} refused the API key (HTTP {status}); check OPENAI_API_KEY",
                base_url
            );
        }
        if !resp.status().is_success() {
            // Some compatible servers have no /models; the first real call will tell.
            return Ok(None);
        }
        let body: serde_json::Value = resp.json().await.unwrap_or_default();
        let entry = body["data"].as_array().and_then(|models| {
            models
                .iter()
                .find(|m| m["id"].as_str() == Some(&self.model))
                .or(models.first())
        });
        Ok(entry.and_then(|m| {
            ["max_model_len", "context_length", "context_window"]
                .iter()
                .find_map(|k| m[k].as_u64())
                .or_else(|| m["meta"]["n_ctx"].as_u64())
                .or_else(|| m["meta"]["n_ctx_train"].as_u64())
                .map(|n| n as usize)
        }))
    }

    /// One request on the replica `pick` chooses, counted in its figures; a failure that is
    /// the server's (connection, timeout, 5xx) rests it.
    async fn chat_routed(&self, request: &ChatRequest) -> Result<Completion, DocError> {
        let replica = self.pick();
        replica.in_flight.fetch_add(1, Ordering::SeqCst);
        replica.requests.fetch_add(1, Ordering::SeqCst);
        let started = Instant::now();
        let result = self.chat_once(&replica.base_url, request).await;
        replica.in_flight.fetch_sub(1, Ordering::SeqCst);
        match &result {
            Ok(_) => {
                replica.failures.store(0, Ordering::SeqCst);
                replica
                    .latencies_ms
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(started.elapsed().as_millis() as u64);
            }
            Err(e) => {
                replica.errors.fetch_add(1, Ordering::SeqCst);
                let servers_fault = matches!(
                    e.class,
                    ErrorClass::BackendUnavailable | ErrorClass::Timeout | ErrorClass::BackendError
                );
                if servers_fault && self.replicas.len() > 1 {
                    replica.rest();
                }
            }
        }
        result
    }

    /// The request body of a chat completion, as sent and as written into a batch.
    fn body(&self, request: &ChatRequest) -> serde_json::Value {
        let mut body = json!({
            "model": self.model,
            "messages": super::messages(request),
            "temperature": request.temperature,
            "seed": request.seed,
            "stream": false,
        });
        let limit_key = if self.official {
            "max_completion_tokens"
        } else {
            "max_tokens"
        };
        body[limit_key] = json!(request.max_tokens);
        body
    }

    async fn chat_once(
        &self,
        base_url: &str,
        request: &ChatRequest,
    ) -> Result<Completion, DocError> {
        let url = format!("{base_url}/chat/completions");
        let body = self.body(request);
        let (status, headers, text) = super::send_json(
            self.request(self.client.post(&url)),
            &url,
            self.calls.timeout,
            &body,
        )
        .await?;
        if !status.is_success() {
            return Err(error_reply(status.as_u16(), &headers, &text, &self.model));
        }
        completion(&text)
    }

    /// A call of a batch run: its answer from the book, or a placeholder while it is pending.
    fn chat_batched(
        &self,
        book: &batch::Book,
        request: &ChatRequest,
    ) -> Result<Completion, DocError> {
        let body = self.body(request);
        let doc = batch::DOC.try_with(String::clone).unwrap_or_default();
        match book.lookup(&doc, &body) {
            batch::Lookup::Pending => Ok(Completion {
                text: batch::PENDING.to_string(),
                ..Completion::default()
            }),
            batch::Lookup::Answered(batch::Answer::Reply { status, body }) => {
                let text = body.to_string();
                if (200..300).contains(&status) {
                    completion(&text)
                } else {
                    let headers = reqwest::header::HeaderMap::new();
                    Err(error_reply(status, &headers, &text, &self.model))
                }
            }
            batch::Lookup::Answered(batch::Answer::Failed { code, message }) => {
                Err(batch::failure(&code, &message))
            }
        }
    }

    /// Answers model calls from batches from now on (`--batch`, `--batch-import`).
    pub fn answer_from(&mut self, book: Arc<batch::Book>) {
        self.batch = Some(book);
    }

    /// The Files and Batches client for the first server.
    pub fn batch_client(&self, poll: Duration, quiet: bool) -> batch::Client {
        batch::Client {
            http: self.client.clone(),
            base_url: self.replicas[0].base_url.clone(),
            api_key: self.api_key.as_ref().map(|k| k.expose().to_string()),
            poll,
            quiet,
        }
    }
}

/// A chat completion's body into the reply and what it cost.
fn completion(text: &str) -> Result<Completion, DocError> {
    let reply: ChatResponse = serde_json::from_str(text).map_err(|e| {
        DocError::new(
            ErrorClass::BackendBadResponse,
            format!("the openai backend sent a reply that is not a chat completion ({e})"),
        )
    })?;
    let choice = reply.choices.into_iter().next();
    let truncated = choice
        .as_ref()
        .is_some_and(|c| c.finish_reason.as_deref() == Some("length"));
    let content = choice.and_then(|c| c.message.content).unwrap_or_default();
    let usage = reply.usage.unwrap_or(Usage {
        prompt_tokens: 0,
        completion_tokens: 0,
    });
    Ok(Completion {
        text: content,
        tokens_in: usage.prompt_tokens,
        tokens_out: usage.completion_tokens,
        truncated,
        ..Completion::default()
    })
}

impl ChatModel for OpenAi {
    fn context_tokens(&self) -> usize {
        self.context
    }

    fn calls(&self) -> &CallSettings {
        &self.calls
    }

    fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    async fn chat(&self, request: ChatRequest) -> Result<Completion, DocError> {
        if let Some(book) = &self.batch {
            return self.chat_batched(book, &request);
        }
        retry::with_retries(self.calls.retries, |_| self.chat_routed(&request)).await
    }
}

/// Maps an error reply to a class: auth stops the run, 429/5xx retry, context length re-chunks.
fn error_reply(
    status: u16,
    headers: &reqwest::header::HeaderMap,
    body: &str,
    model: &str,
) -> DocError {
    let parsed: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    let message = parsed["error"]["message"]
        .as_str()
        .or_else(|| parsed["error"].as_str())
        .or_else(|| parsed["message"].as_str())
        .unwrap_or("")
        .to_string();
    let code = parsed["error"]["code"].as_str().unwrap_or("");
    let lower = message.to_lowercase();
    let short: String = crate::sanitize::one_line(&message)
        .chars()
        .take(300)
        .collect();
    let (class, text) = if status == 401 || status == 403 {
        (ErrorClass::BackendAuth, format!("the openai backend refused the API key (HTTP {status}: {short}); check OPENAI_API_KEY"))
    } else if status == 429 {
        (
            ErrorClass::BackendRateLimited,
            format!("the openai backend is rate limiting (HTTP 429: {short}); lower --jobs"),
        )
    } else if code == "context_length_exceeded"
        || lower.contains("context length")
        || lower.contains("context_length")
        || lower.contains("maximum context")
        || lower.contains("too many tokens")
        || lower.contains("exceeds the context")
    {
        (
            ErrorClass::ContextLength,
            format!("the prompt does not fit the model's context (HTTP {status}: {short})"),
        )
    } else if status == 404 && (code == "model_not_found" || lower.contains("model")) {
        (
            ErrorClass::ModelNotFound,
            format!("the openai backend has no model '{model}' (HTTP 404: {short}); check --model"),
        )
    } else if status >= 500 {
        (
            ErrorClass::BackendError,
            format!("the openai backend failed (HTTP {status}: {short})"),
        )
    } else {
        (
            ErrorClass::BackendBadResponse,
            format!("the openai backend rejected the request (HTTP {status}: {short})"),
        )
    };
    let mut err = DocError::new(class, text).with_status(status);
    err.retry_after = retry::retry_after(headers);
    err
}

/// OpenAI's own models use tiktoken; anything else gets the conservative estimate.
fn tokenizer_for(model: &str) -> Tokenizer {
    let m = model.to_ascii_lowercase();
    let bpe = if m.starts_with("gpt-4o")
        || m.starts_with("gpt-4.1")
        || m.starts_with("gpt-5")
        || m.starts_with("o1")
        || m.starts_with("o3")
        || m.starts_with("o4")
    {
        tiktoken_rs::o200k_base().ok()
    } else if m.starts_with("gpt-4") || m.starts_with("gpt-3.5") {
        tiktoken_rs::cl100k_base().ok()
    } else {
        None
    };
    bpe.map(|b| Tokenizer::Tiktoken(Arc::new(b)))
        .unwrap_or(Tokenizer::Estimate)
}

fn known_context(model: &str) -> Option<usize> {
    let m = model.to_ascii_lowercase();
    if m.starts_with("gpt-4.1") {
        Some(1_000_000)
    } else if m.starts_with("gpt-5") {
        Some(400_000)
    } else if m.starts_with("gpt-4o")
        || m.starts_with("o1")
        || m.starts_with("o3")
        || m.starts_with("o4")
        || m.starts_with("gpt-4-turbo")
    {
        Some(128_000)
    } else if m.starts_with("gpt-3.5") {
        Some(16_385)
    } else if m.starts_with("gpt-4") {
        Some(8_192)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_replies_are_classified() {
        let h = reqwest::header::HeaderMap::new();
        let ctx = r#"{"error":{"message":"This model's maximum context length is 8192 tokens","type":"invalid_request_error","code":"context_length_exceeded"}}"#;
        assert_eq!(
            error_reply(400, &h, ctx, "m").class,
            ErrorClass::ContextLength
        );
        assert_eq!(
            error_reply(401, &h, "{}", "m").class,
            ErrorClass::BackendAuth
        );
        assert_eq!(
            error_reply(429, &h, "{}", "m").class,
            ErrorClass::BackendRateLimited
        );
        assert_eq!(
            error_reply(503, &h, "oops", "m").class,
            ErrorClass::BackendError
        );
        assert_eq!(
            error_reply(400, &h, "{}", "m").class,
            ErrorClass::BackendBadResponse
        );
    }

    #[test]
    fn tokenizers_by_model() {
        assert!(matches!(
            tokenizer_for("gpt-4o-mini"),
            Tokenizer::Tiktoken(_)
        ));
        assert!(matches!(tokenizer_for("SmolLM2-135M"), Tokenizer::Estimate));
        assert_eq!(known_context("gpt-4o-mini"), Some(128_000));
    }
}
