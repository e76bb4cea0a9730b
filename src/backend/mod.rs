//! Summarizers behind one small interface. The set is closed, so it is an enum: `local` (a
//! GGUF model in this process, behind the `local` cargo feature), `extractive` (no model),
//! `openai` (any OpenAI-compatible server) and `ollama`. Every backend returns the
//! same `Summary`. Model backends share the chunking and map-reduce logic here; each backend
//! file only speaks its own wire format and says how it counts tokens and how big its context is.

pub mod batch;
pub mod extractive;
#[cfg(feature = "local")]
pub mod local;
pub mod ollama;
pub mod openai;
#[cfg(feature = "local")]
pub mod steer;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;

use crate::chunk;
use crate::config::{BackendConfig, SummarizeConfig};
use crate::error::{DocError, ErrorClass};
use crate::prompt::{self, Style, Vars};
use crate::ratelimit::RateLimiter;

/// One chat request to a model backend.
#[derive(Debug, Clone)]
pub struct ChatRequest {
    /// System message; empty sends none.
    pub system: String,
    pub user: String,
    /// Upper bound on generated tokens: the requested length plus headroom.
    pub max_tokens: usize,
    pub temperature: f32,
    pub seed: u64,
    /// The text being summarized, as the model sees it: the local model's decoding copies
    /// from it (other backends ignore it).
    pub source: String,
    /// Words after which the first sentence end closes the reply (the local model stops
    /// there; other backends end at the token limit and the fragment is dropped).
    pub stop_words: Option<usize>,
    /// Words before which the reply may not end (the local model; 0 = no minimum).
    pub min_words: usize,
}

/// The chat messages of a request in the OpenAI/Ollama shape: no system message when it is empty.
pub fn messages(request: &ChatRequest) -> serde_json::Value {
    let mut messages = Vec::new();
    if !request.system.trim().is_empty() {
        messages.push(serde_json::json!({"role": "system", "content": request.system}));
    }
    messages.push(serde_json::json!({"role": "user", "content": request.user}));
    serde_json::Value::Array(messages)
}

/// A model's reply and what it cost.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Completion {
    pub text: String,
    pub tokens_in: u64,
    pub tokens_out: u64,
    /// The reply stopped at the token limit, not on its own.
    pub truncated: bool,
    /// Time spent waiting for an engine slot before the request ran.
    pub queue_ms: u64,
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
    /// Words the model was shown after preselection; `None` when it saw the whole document.
    pub preselected_words: Option<usize>,
    /// Sentences of the page (or its title) that spoke to the model, left out of its input.
    pub instructions_dropped: usize,
    /// The token limit cut the last sentence, which was dropped.
    pub truncated: bool,
    /// Time spent waiting for an engine slot or the rate limiter, not summarizing.
    pub queue_ms: u64,
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
    /// `concurrency` permits: a model call holds one while it is in flight. The pipeline keeps
    /// more documents than that in process, so fetching, extracting and checking replies
    /// overlap the calls instead of waiting for a slot of their own.
    pub slots: Arc<tokio::sync::Semaphore>,
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

    /// The openai backend, for a batch run.
    pub fn openai_mut(&mut self) -> Option<&mut openai::OpenAi> {
        match self {
            Backend::OpenAi(b) => Some(b),
            _ => None,
        }
    }

    /// Requests, errors and latency per server, for a replica set (`--base-url` several times).
    pub fn replica_stats(&self) -> Vec<openai::ReplicaStats> {
        match self {
            Backend::OpenAi(b) => b.replica_stats(),
            _ => Vec::new(),
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

    /// The prompt set this backend's model gets (`--prompt-style`, where `auto` picks `small`
    /// for local models under a billion parameters).
    pub fn style(&self, config: &SummarizeConfig) -> Style {
        match config.prompt_style {
            Some(style) => style,
            #[cfg(feature = "local")]
            None if matches!(self, Backend::Local(b) if b.small) => Style::Small,
            None => Style::Full,
        }
    }

    /// The preselection word budget for this backend (`--preselect`).
    pub fn preselect_budget(&self, config: &SummarizeConfig) -> Option<usize> {
        let local = self.name() == "local";
        config.preselect.budget(local, config.length.words)
    }

    /// Summarizes one document's text: preselected when `--preselect` says so, then whole when
    /// it fits and map-reduce when it does not.
    pub async fn summarize(
        &self,
        title: &str,
        text: &str,
        config: &SummarizeConfig,
    ) -> Result<Summary, DocError> {
        // What a model reads: the page without the sentences that speak to it (defuse.rs).
        let model = !matches!(self, Backend::Extractive);
        let defused = model.then(|| crate::defuse::defuse(text)).flatten();
        let title_dropped = model && crate::defuse::is_instruction(title);
        let title = if title_dropped { "" } else { title };
        let text = defused.as_ref().map_or(text, |(t, _)| t.as_str());
        let preselected = self
            .preselect_budget(config)
            .filter(|_| model)
            .and_then(|budget| crate::preselect::select(text, budget));
        let input = preselected.as_deref().unwrap_or(text);
        let style = self.style(config);
        let mut summary = match self {
            Backend::Extractive => Summary {
                text: extractive::summarize(text, config.length.words),
                chunks: 1,
                ..Summary::default()
            },
            Backend::OpenAi(b) => map_reduce(b, title, input, config, style).await?,
            Backend::Ollama(b) => map_reduce(b, title, input, config, style).await?,
            #[cfg(feature = "local")]
            Backend::Local(b) => map_reduce(b, title, input, config, style).await?,
        };
        summary.preselected_words = preselected.as_deref().map(crate::text::word_count);
        summary.instructions_dropped = defused.map_or(0, |(_, n)| n) + usize::from(title_dropped);
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

/// A local summary stops at the first sentence end after this share of the requested words...
const STOP_AT: f64 = 0.8;
/// ...and cannot end before this share (the guard's floor is 0.5).
const MIN_LENGTH: f64 = 0.55;

/// How often a context-length error makes us re-chunk at half the budget before giving up.
const RECHUNK_ATTEMPTS: u32 = 3;
/// Reduce rounds before we accept a summary of summaries that still does not fit.
pub const MAX_DEPTH: usize = 6;

async fn map_reduce<M: ChatModel>(
    model: &M,
    title: &str,
    text: &str,
    config: &SummarizeConfig,
    style: Style,
) -> Result<Summary, DocError> {
    let mut cap = usize::MAX;
    let mut attempts = 0;
    loop {
        let (result, budget) = map_reduce_once(model, title, text, config, style, cap).await;
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
    style: Style,
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
        fence: style == Style::Full,
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
    let template = config.prompt.template_for(style);
    let overhead = prompt::overhead(template, style.system(), &final_vars, &count).max(
        prompt::overhead(style.chunk(), style.system(), &map_vars, &count),
    );
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
        reduce(model, text, config, style, budget, &final_vars, map_length).await,
        budget,
    )
}

async fn reduce<M: ChatModel>(
    model: &M,
    text: &str,
    config: &SummarizeConfig,
    style: Style,
    budget: usize,
    final_vars: &Vars<'_>,
    map_length: crate::config::Length,
) -> Result<Summary, DocError> {
    let template = config.prompt.template_for(style);
    let count = |s: &str| model.tokenizer().count(s);
    let mut summary = Summary::default();
    let mut current = text.to_string();
    for depth in 0.. {
        let chunks = chunk::chunk(&current, budget, &count);
        if depth == 0 {
            summary.chunks = chunks.len();
        }
        if chunks.len() <= 1 || depth >= MAX_DEPTH {
            let user = prompt::render(
                template,
                &Vars {
                    text: &current,
                    ..final_vars.clone()
                },
            );
            let (done, cut) = call(
                model,
                (style, user, &current),
                config.length.words,
                config,
                &mut summary,
            )
            .await?;
            let (text, dropped) = complete_sentences(&done, cut);
            summary.text = text;
            summary.truncated = dropped;
            return Ok(summary);
        }
        let mut partials = Vec::with_capacity(chunks.len());
        for (i, piece) in chunks.iter().enumerate() {
            let user = prompt::render(
                style.chunk(),
                &Vars {
                    text: piece,
                    part: Some((i + 1, chunks.len())),
                    length: map_length,
                    ..final_vars.clone()
                },
            );
            let (partial, cut) = call(
                model,
                (style, user, piece),
                map_length.words,
                config,
                &mut summary,
            )
            .await?;
            partials.push(complete_sentences(&partial, cut).0);
        }
        current = partials.join("\n\n");
    }
    unreachable!("the loop returns at MAX_DEPTH")
}

/// One model call: (prompt style, user message, the text it summarizes). Returns the reply and
/// whether the token limit cut it.
async fn call<M: ChatModel>(
    model: &M,
    (style, user, source): (Style, String, &str),
    words: usize,
    config: &SummarizeConfig,
    summary: &mut Summary,
) -> Result<(String, bool), DocError> {
    let request = ChatRequest {
        system: style.system().to_string(),
        user,
        max_tokens: max_tokens_for(words),
        temperature: config.temperature,
        seed: config.seed,
        source: source.to_string(),
        stop_words: Some((words as f64 * STOP_AT) as usize),
        // Never more than the text can give: a short document or chunk is not padded out.
        min_words: (words.min(crate::text::word_count(source)) as f64 * MIN_LENGTH) as usize,
    };
    let tokens = model.tokenizer().count(&request.system)
        + model.tokenizer().count(&request.user)
        + request.max_tokens;
    let waited = std::time::Instant::now();
    model.calls().limiter.acquire(tokens).await;
    let _slot = model.calls().slots.acquire().await.ok();
    summary.queue_ms += waited.elapsed().as_millis() as u64;
    let completion = model.chat(request).await?;
    summary.tokens_in += completion.tokens_in;
    summary.tokens_out += completion.tokens_out;
    summary.queue_ms += completion.queue_ms;
    summary.calls += 1;
    Ok((strip_reasoning(&completion.text), completion.truncated))
}

/// A reply that ends in the middle of a sentence loses the unfinished part: when the token
/// limit cut it, or when prose simply stops without a sentence end. Returns the text and
/// whether it was truncated: a fragment was dropped, or the limit cut a reply that has no
/// complete sentence to keep (kept as it is). List items need no period.
pub fn complete_sentences(text: &str, cut: bool) -> (String, bool) {
    let text = text.trim_end();
    let Some(last_line) = text.lines().last() else {
        return (String::new(), false);
    };
    if crate::text::list_marker_len(last_line).is_some() {
        // A list item need not end in a period; only one cut by the limit is unfinished.
        if cut && text.lines().count() > 1 {
            let kept = text[..text.len() - last_line.len()].trim_end();
            return (kept.to_string(), true);
        }
        return (text.to_string(), cut);
    }
    // A reply the model ended itself may close on "Plan B." or "Jr.": its last period counts.
    if crate::text::ends_sentence(text) || (!cut && crate::text::has_final_mark(text)) {
        return (text.to_string(), false);
    }
    // The end of the last complete sentence, if any.
    let head = &text[..text.len() - last_line.len()];
    let spans = crate::text::split_sentences(last_line);
    let complete: Vec<&str> = spans
        .iter()
        .copied()
        .filter(|s| crate::text::ends_sentence(s))
        .collect();
    let end = complete.last().map(|s| {
        let offset = s.as_ptr() as usize - last_line.as_ptr() as usize;
        offset + s.len()
    });
    match end {
        Some(end) => (format!("{head}{}", &last_line[..end]), true),
        None if !head.trim().is_empty() => (head.trim_end().to_string(), true),
        // Nothing complete to keep: the fragment stays, marked when the limit cut it.
        None => (text.to_string(), cut),
    }
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

    /// Issue 9: a summary never ends mid-sentence.
    #[test]
    fn issue9_unfinished_sentences_are_dropped() {
        assert_eq!(
            complete_sentences("One sentence. The collection now includes 2", true),
            ("One sentence.".to_string(), true)
        );
        assert_eq!(
            complete_sentences("One sentence. Two sentences.", false),
            ("One sentence. Two sentences.".to_string(), false)
        );
        assert_eq!(
            complete_sentences("First line.\nSecond line without end", false),
            ("First line.".to_string(), true)
        );
        assert_eq!(
            complete_sentences("- one\n- two\n- thr", true),
            ("- one\n- two".to_string(), true)
        );
        assert_eq!(
            complete_sentences("- one\n- two", false),
            ("- one\n- two".to_string(), false)
        );
        assert_eq!(
            complete_sentences("no sentence end at all", true),
            ("no sentence end at all".to_string(), true)
        );
        assert_eq!(
            complete_sentences("no sentence end at all", false),
            ("no sentence end at all".to_string(), false)
        );
        // Numbered items are list items; a single one cut by the limit is marked.
        assert_eq!(
            complete_sentences("1. Added X\n2. Fixed Y", false),
            ("1. Added X\n2. Fixed Y".to_string(), false)
        );
        assert_eq!(
            complete_sentences("1. Added X\n2. Fixed Y", true),
            ("1. Added X".to_string(), true)
        );
        assert_eq!(
            complete_sentences("- only one item, cut", true),
            ("- only one item, cut".to_string(), true)
        );
        // A reply the model closed itself keeps a last sentence ending in an initial or a title;
        // one cut by the limit there does not (the period may open "B. Smith").
        assert_eq!(
            complete_sentences("The library lends tools. The city adopted Plan B.", false),
            (
                "The library lends tools. The city adopted Plan B.".to_string(),
                false
            )
        );
        assert_eq!(
            complete_sentences("Intro sentence.\n**Bold final sentence.**", false),
            (
                "Intro sentence.\n**Bold final sentence.**".to_string(),
                false
            )
        );
        assert_eq!(
            complete_sentences("He met Dr. Smith. Then he left for the", true),
            ("He met Dr. Smith.".to_string(), true)
        );
    }

    #[test]
    fn messages_skip_an_empty_system_prompt() {
        let mut r = ChatRequest {
            system: String::new(),
            user: "u".into(),
            max_tokens: 1,
            temperature: 0.0,
            seed: 0,
            source: String::new(),
            stop_words: None,
            min_words: 0,
        };
        assert_eq!(messages(&r).as_array().unwrap().len(), 1);
        r.system = "s".into();
        assert_eq!(messages(&r)[0]["role"], "system");
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
