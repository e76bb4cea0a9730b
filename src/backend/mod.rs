//! Summarizers behind one small interface. The set is closed, so it is an enum: `local` (a
//! GGUF model in this process, behind the `local` cargo feature), `extractive` (no model),
//! `openai` (any OpenAI-compatible server) and `ollama`. Every backend returns the
//! same `Summary`. Model backends share the chunking and map-reduce logic here; each backend
//! file only speaks its own wire format and says how it counts tokens and how big its context is.

pub mod extractive;
#[cfg(feature = "local")]
pub mod local;
pub mod ollama;
pub mod openai;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;

use crate::chunk;
use crate::config::{BackendConfig, SummarizeConfig};
use crate::error::{DocError, ErrorClass};
use crate::prompt::{self, Vars};
use crate::ratelimit::RateLimiter;

/// One chat request to a model backend.
#[derive(Debug, Clone)]
pub struct ChatRequest {
    pub system: String,
    pub user: String,
    /// Upper bound on generated tokens: the requested length plus headroom.
    pub max_tokens: usize,
    pub temperature: f32,
    pub seed: u64,
}

/// A model's reply and what it cost.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Completion {
    pub text: String,
    pub tokens_in: u64,
    pub tokens_out: u64,
}

/// The summary of one document, identical in shape for every backend.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    pub text: String,
    pub tokens_in: u64,
    pub tokens_out: u64,
    /// Chunks the document was split into (1 when it fit whole).
    pub chunks: usize,
    /// Model calls made, map and reduce steps together.
    pub calls: usize,
}

/// How a backend counts tokens.
#[derive(Clone)]
pub enum Tokenizer {
    /// The model's own BPE (OpenAI models).
    Tiktoken(Arc<tiktoken_rs::CoreBPE>),
    /// A deliberately high estimate for models whose tokenizer we do not have: one token per
    /// three ASCII characters plus one per non-ASCII character. English averages about four
    /// characters per token, so chunks come out smaller than they could be, never too large.
    Estimate,
    /// The local model's own tokenizer, from its GGUF file.
    #[cfg(feature = "local")]
    Local(local::LocalTokenizer),
}

impl Tokenizer {
    pub fn count(&self, text: &str) -> usize {
        match self {
            Tokenizer::Tiktoken(bpe) => bpe.encode_ordinary(text).len(),
            Tokenizer::Estimate => {
                let (ascii, other) = text.chars().fold((0usize, 0usize), |(a, o), c| {
                    if c.is_ascii() {
                        (a + 1, o)
                    } else {
                        (a, o + 1)
                    }
                });
                ascii.div_ceil(3) + other
            }
            #[cfg(feature = "local")]
            Tokenizer::Local(t) => t.count(text),
        }
    }
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Tokenizer::Tiktoken(_) => f.write_str("Tiktoken"),
            Tokenizer::Estimate => f.write_str("Estimate"),
            #[cfg(feature = "local")]
            Tokenizer::Local(_) => f.write_str("Local"),
        }
    }
}

/// A ready backend: connected, checked, and knowing its context size.
#[derive(Debug)]
pub enum Backend {
    Extractive,
    OpenAi(openai::OpenAi),
    Ollama(ollama::Ollama),
    #[cfg(feature = "local")]
    Local(local::Local),
}

/// Settings every backend call shares.
#[derive(Debug, Clone)]
pub struct CallSettings {
    pub timeout: Duration,
    pub retries: u32,
    /// `--rpm` / `--tpm`, shared by every call of the run.
    pub limiter: Arc<RateLimiter>,
    /// Calls in flight at once at most (`--jobs`); a GPU engine batches that many.
    pub concurrency: usize,
}

impl Backend {
    /// Builds the backend and checks, before any document is touched, that it is reachable,
    /// accepts our credentials and has the model. Failure here is a configuration error (exit 2).
    pub async fn connect(
        config: &SummarizeConfig,
        client: reqwest::Client,
        calls: CallSettings,
    ) -> Result<Backend> {
        Ok(match &config.backend {
            BackendConfig::Extractive => Backend::Extractive,
            BackendConfig::OpenAi { .. } => {
                Backend::OpenAi(openai::OpenAi::connect(config, client, calls).await?)
            }
            BackendConfig::Ollama { .. } => {
                Backend::Ollama(ollama::Ollama::connect(config, client, calls).await?)
            }
            #[cfg(feature = "local")]
            BackendConfig::Local { .. } => {
                Backend::Local(local::Local::connect(config, calls).await?)
            }
            #[cfg(not(feature = "local"))]
            BackendConfig::Local { .. } => {
                anyhow::bail!(
                    "this summarize was built without the local backend (cargo feature `local`)"
                )
            }
        })
    }

    pub fn name(&self) -> &'static str {
        match self {
            Backend::Extractive => "extractive",
            Backend::OpenAi(_) => "openai",
            Backend::Ollama(_) => "ollama",
            #[cfg(feature = "local")]
            Backend::Local(_) => "local",
        }
    }

    /// What besides the prompt decides a summary: backend, server and model (never credentials).
    pub fn identity(&self) -> String {
        match self {
            Backend::Extractive => "extractive".to_string(),
            Backend::OpenAi(b) => format!("openai {} {}", b.base_url(), b.model),
            Backend::Ollama(b) => format!("ollama {} {}", b.host(), b.model),
            #[cfg(feature = "local")]
            Backend::Local(b) => b.identity(),
        }
    }

    /// Whether summaries are worth caching: model calls cost time and money, extraction does not.
    pub fn cacheable(&self) -> bool {
        !matches!(self, Backend::Extractive)
    }

    pub fn model(&self) -> &str {
        match self {
            Backend::Extractive => "",
            Backend::OpenAi(b) => &b.model,
            Backend::Ollama(b) => &b.model,
            #[cfg(feature = "local")]
            Backend::Local(b) => &b.model_name,
        }
    }

    /// Summarizes one document's text: whole when it fits, map-reduce when it does not.
    pub async fn summarize(
        &self,
        title: &str,
        text: &str,
        config: &SummarizeConfig,
    ) -> Result<Summary, DocError> {
        let summary = match self {
            Backend::Extractive => Summary {
                text: extractive::summarize(text, config.length.words),
                chunks: 1,
                ..Summary::default()
            },
            Backend::OpenAi(b) => map_reduce(b, title, text, config).await?,
            Backend::Ollama(b) => map_reduce(b, title, text, config).await?,
            #[cfg(feature = "local")]
            Backend::Local(b) => map_reduce(b, title, text, config).await?,
        };
        if summary.text.trim().is_empty() {
            return Err(DocError::new(
                ErrorClass::EmptySummary,
                "the model returned an empty summary; try another model or a longer --length",
            ));
        }
        Ok(summary)
    }
}

/// What map-reduce needs from a model backend.
pub trait ChatModel {
    /// Tokens the model can see at once, prompt and output together.
    fn context_tokens(&self) -> usize;
    fn tokenizer(&self) -> &Tokenizer;
    fn calls(&self) -> &CallSettings;
    fn chat(
        &self,
        request: ChatRequest,
    ) -> impl std::future::Future<Output = Result<Completion, DocError>> + Send;
}

/// Generated tokens allowed for a summary of `words` words: English runs about 1.3 tokens a
/// word; the rest is headroom so a summary ends on its own rather than being cut.
pub fn max_tokens_for(words: usize) -> usize {
    words * 2 + 48
}

/// How often a context-length error makes us re-chunk at half the budget before giving up.
const RECHUNK_ATTEMPTS: u32 = 3;
/// Reduce rounds before we accept a summary of summaries that still does not fit.
const MAX_DEPTH: usize = 6;

async fn map_reduce<M: ChatModel>(
    model: &M,
    title: &str,
    text: &str,
    config: &SummarizeConfig,
) -> Result<Summary, DocError> {
    let mut cap = usize::MAX;
    let mut attempts = 0;
    loop {
        let (result, budget) = map_reduce_once(model, title, text, config, cap).await;
        match result {
            // The server knows its context better than we do: halve what we sent and retry.
            Err(e)
                if e.class == ErrorClass::ContextLength
                    && attempts < RECHUNK_ATTEMPTS
                    && budget > 64 =>
            {
                attempts += 1;
                cap = budget.min(model.tokenizer().count(text)) / 2;
                tracing::info!(cap, "context length exceeded; re-chunking smaller");
            }
            other => return other,
        }
    }
}

async fn map_reduce_once<M: ChatModel>(
    model: &M,
    title: &str,
    text: &str,
    config: &SummarizeConfig,
    cap: usize,
) -> (Result<Summary, DocError>, usize) {
    let tok = model.tokenizer();
    let count = |s: &str| tok.count(s);
    let final_vars = Vars {
        title,
        text: "",
        length: config.length,
        language: &config.language,
        part: None,
    };
    let map_length = crate::config::Length {
        words: (config.length.words * 3 / 2).clamp(80, 400),
    };
    let map_vars = Vars {
        length: map_length,
        part: Some((99, 99)),
        ..final_vars.clone()
    };
    let reserve = max_tokens_for(config.length.words.max(map_length.words));
    let overhead = prompt::overhead(&config.prompt.template, &final_vars, &count)
        .max(prompt::overhead(prompt::CHUNK, &map_vars, &count));
    let context = model.context_tokens();
    let budget = match config.chunk_tokens {
        Some(n) => n,
        None => context.saturating_sub(overhead + reserve + 16),
    }
    .min(cap);
    if budget < 32 {
        let e = DocError::new(
            ErrorClass::ContextLength,
            format!("the model's context ({context} tokens) leaves no room for the document after the prompt; raise --context-tokens or use a shorter --length"),
        );
        return (Err(e), budget);
    }
    (
        reduce(model, text, config, budget, &final_vars, map_length).await,
        budget,
    )
}

async fn reduce<M: ChatModel>(
    model: &M,
    text: &str,
    config: &SummarizeConfig,
    budget: usize,
    final_vars: &Vars<'_>,
    map_length: crate::config::Length,
) -> Result<Summary, DocError> {
    let count = |s: &str| model.tokenizer().count(s);
    let mut summary = Summary::default();
    let mut current = text.to_string();
    for depth in 0.. {
        let chunks = chunk::chunk(&current, budget, &count);
        if depth == 0 {
            summary.chunks = chunks.len();
        }
        if chunks.len() <= 1 || depth >= MAX_DEPTH {
            let user = config.prompt.render(&Vars {
                text: &current,
                ..final_vars.clone()
            });
            let done = call(model, user, config.length.words, config, &mut summary).await?;
            summary.text = done;
            return Ok(summary);
        }
        let mut partials = Vec::with_capacity(chunks.len());
        for (i, piece) in chunks.iter().enumerate() {
            let user = prompt::render(
                prompt::CHUNK,
                &Vars {
                    text: piece,
                    part: Some((i + 1, chunks.len())),
                    length: map_length,
                    ..final_vars.clone()
                },
            );
            partials.push(call(model, user, map_length.words, config, &mut summary).await?);
        }
        current = partials.join("\n\n");
    }
    unreachable!("the loop returns at MAX_DEPTH")
}

async fn call<M: ChatModel>(
    model: &M,
    user: String,
    words: usize,
    config: &SummarizeConfig,
    summary: &mut Summary,
) -> Result<String, DocError> {
    let request = ChatRequest {
        system: prompt::SYSTEM.to_string(),
        user,
        max_tokens: max_tokens_for(words),
        temperature: config.temperature,
        seed: config.seed,
    };
    let tokens = model.tokenizer().count(&request.system)
        + model.tokenizer().count(&request.user)
        + request.max_tokens;
    model.calls().limiter.acquire(tokens).await;
    let completion = model.chat(request).await?;
    summary.tokens_in += completion.tokens_in;
    summary.tokens_out += completion.tokens_out;
    summary.calls += 1;
    Ok(strip_reasoning(&completion.text))
}

/// Sends one JSON request to a model server and reads the whole reply. Transport failures are
/// the backend's (`backend_unavailable`, or `timeout`); the status is left to the caller's
/// error mapping, which knows its API's error bodies.
pub async fn send_json(
    request: reqwest::RequestBuilder,
    url: &str,
    timeout: Duration,
    body: &serde_json::Value,
) -> Result<(reqwest::StatusCode, reqwest::header::HeaderMap, String), DocError> {
    let parsed =
        url::Url::parse(url).map_err(|e| DocError::new(ErrorClass::BackendError, e.to_string()))?;
    let transport =
        |e: reqwest::Error| backend_transport_error(crate::fetch::classify(&e, &parsed));
    let resp = request
        .timeout(timeout)
        .json(body)
        .send()
        .await
        .map_err(transport)?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().await.map_err(transport)?;
    Ok((status, headers, text))
}

/// A transport failure talking to the backend is the backend's problem, not the document's.
fn backend_transport_error(mut e: DocError) -> DocError {
    e.class = match e.class {
        ErrorClass::Timeout => ErrorClass::Timeout,
        _ => ErrorClass::BackendUnavailable,
    };
    e
}

/// Removes `<think>…</think>` reasoning blocks that some models emit before their answer.
pub fn strip_reasoning(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let lower = |s: &str| s.to_ascii_lowercase();
    loop {
        let l = lower(rest);
        match (l.find("<think>"), l.find("</think>")) {
            // An answer that starts mid-reasoning: drop everything up to the close tag.
            (open, Some(close)) if open.is_none_or(|o| o > close) => {
                rest = &rest[close + "</think>".len()..];
            }
            (Some(open), Some(close)) => {
                out.push_str(&rest[..open]);
                rest = &rest[close + "</think>".len()..];
            }
            // Cut off while still reasoning: there is no answer after it.
            (Some(open), None) => {
                out.push_str(&rest[..open]);
                rest = "";
            }
            _ => {
                out.push_str(rest);
                break;
            }
        }
    }
    out.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasoning_blocks_are_removed() {
        assert_eq!(
            strip_reasoning("<think>hmm\nok</think>\nThe answer."),
            "The answer."
        );
        assert_eq!(strip_reasoning("A <THINK>x</THINK>B"), "A B");
        assert_eq!(
            strip_reasoning("leftover reasoning</think>Answer"),
            "Answer"
        );
        assert_eq!(strip_reasoning("Answer<think>cut off"), "Answer");
        assert_eq!(strip_reasoning("plain"), "plain");
    }

    #[test]
    fn estimate_is_conservative() {
        let t = Tokenizer::Estimate;
        assert_eq!(t.count("abcdef"), 2);
        assert_eq!(t.count("日本語"), 3);
        let bpe = Tokenizer::Tiktoken(Arc::new(tiktoken_rs::o200k_base().unwrap()));
        let english = "The quick brown fox jumps over the lazy dog near the riverbank at dawn.";
        assert!(t.count(english) >= bpe.count(english));
    }
}
