//! The Ollama backend: `POST {host}/api/chat` with `stream: false`. Ollama silently truncates a
//! prompt at its default context, so every request sets `options.num_ctx` to a size the chunk
//! budget was computed for. Owns the wire format and its error mapping only.

use anyhow::{bail, Result};
use serde::Deserialize;
use serde_json::json;

use super::{CallSettings, ChatModel, ChatRequest, Completion, Tokenizer};
use crate::config::{BackendConfig, SummarizeConfig};
use crate::error::{DocError, ErrorClass};
use crate::retry;

/// Context we ask Ollama for when the user does not say: large enough for most articles in one
/// chunk, small enough for the KV cache to fit a laptop.
const DEFAULT_NUM_CTX: usize = 8192;

#[derive(Debug)]
pub struct Ollama {
    client: reqwest::Client,
    host: String,
    pub model: String,
    num_ctx: usize,
    tokenizer: Tokenizer,
    calls: CallSettings,
}

#[derive(Deserialize)]
struct ChatResponse {
    message: Option<Message>,
    #[serde(default)]
    prompt_eval_count: u64,
    #[serde(default)]
    eval_count: u64,
    /// "length" when the reply hit `num_predict`.
    #[serde(default)]
    done_reason: Option<String>,
}

#[derive(Deserialize)]
struct Message {
    #[serde(default)]
    content: String,
}

impl Ollama {
    pub async fn connect(
        config: &SummarizeConfig,
        client: reqwest::Client,
        calls: CallSettings,
    ) -> Result<Ollama> {
        let BackendConfig::Ollama { host, model } = &config.backend else {
            unreachable!("connect is only called for the ollama backend")
        };
        let mut backend = Ollama {
            client,
            host: host.clone(),
            model: model.clone(),
            num_ctx: config.context_tokens.unwrap_or(DEFAULT_NUM_CTX),
            tokenizer: Tokenizer::Estimate,
            calls,
        };
        let trained = backend.show().await?;
        if let Some(trained) = trained {
            backend.num_ctx = backend.num_ctx.min(trained);
        }
        tracing::info!(model = %backend.model, num_ctx = backend.num_ctx, "ollama backend ready");
        Ok(backend)
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    /// `POST /api/show`: the server is up, the model is pulled, and its trained context length.
    async fn show(&self) -> Result<Option<usize>> {
        let url = format!("{}/api/show", self.host);
        let resp = match self
            .client
            .post(&url)
            .timeout(self.calls.timeout)
            .json(&json!({ "model": self.model }))
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => bail!(
                "cannot reach Ollama at {}: {}; start it with `ollama serve` or set OLLAMA_HOST / --base-url",
                self.host,
                crate::fetch::classify(&e, &url::Url::parse(&url)?).message
            ),
        };
        let status = resp.status().as_u16();
        if status == 404 {
            bail!(
                "Ollama at {} does not have the model '{}'; run `ollama pull {}`",
                self.host,
                self.model,
                self.model
            );
        }
        if !resp.status().is_success() {
            bail!(
                "Ollama at {} answered HTTP {status} to /api/show; is it an Ollama server?",
                self.host
            );
        }
        let body: serde_json::Value = resp.json().await.unwrap_or_default();
        Ok(body["model_info"].as_object().and_then(|info| {
            info.iter()
                .find(|(k, _)| k.ends_with(".context_length"))
                .and_then(|(_, v)| v.as_u64())
                .map(|n| n as usize)
        }))
    }

    async fn chat_once(&self, request: &ChatRequest) -> Result<Completion, DocError> {
        let url = format!("{}/api/chat", self.host);
        let body = json!({
            "model": self.model,
            "messages": super::messages(request),
            "stream": false,
            "options": {
                "num_ctx": self.num_ctx,
                "num_predict": request.max_tokens,
                "temperature": request.temperature,
                "seed": request.seed,
            },
        });
        let (status, headers, text) =
            super::send_json(self.client.post(&url), &url, self.calls.timeout, &body).await?;
        if !status.is_success() {
            return Err(self.error_reply(status.as_u16(), &headers, &text));
        }
        let reply: ChatResponse = serde_json::from_str(&text).map_err(|e| {
            DocError::new(
                ErrorClass::BackendBadResponse,
                format!("Ollama sent a reply that is not a chat response ({e})"),
            )
        })?;
        Ok(Completion {
            text: reply.message.map(|m| m.content).unwrap_or_default(),
            tokens_in: reply.prompt_eval_count,
            tokens_out: reply.eval_count,
            truncated: reply.done_reason.as_deref() == Some("length"),
            ..Completion::default()
        })
    }

    fn error_reply(
        &self,
        status: u16,
        headers: &reqwest::header::HeaderMap,
        body: &str,
    ) -> DocError {
        let parsed: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        let message = parsed["error"].as_str().unwrap_or(body);
        let short: String = crate::sanitize::one_line(message)
            .chars()
            .take(300)
            .collect();
        let lower = short.to_lowercase();
        let (class, text) =
            if status == 404 || lower.contains("not found") && lower.contains("model") {
                (
                    ErrorClass::ModelNotFound,
                    format!(
                        "Ollama has no model '{}' ({short}); run `ollama pull {}`",
                        self.model, self.model
                    ),
                )
            } else if status == 429 {
                (
                    ErrorClass::BackendRateLimited,
                    format!("Ollama is rate limiting (HTTP 429: {short})"),
                )
            } else if lower.contains("context")
                && (lower.contains("exceed") || lower.contains("too long"))
            {
                (
                    ErrorClass::ContextLength,
                    format!("the prompt does not fit the model's context ({short})"),
                )
            } else if status == 401 || status == 403 {
                (
                    ErrorClass::BackendAuth,
                    format!("Ollama refused the request (HTTP {status}: {short})"),
                )
            } else if status >= 500 {
                (
                    ErrorClass::BackendError,
                    format!("Ollama failed (HTTP {status}: {short})"),
                )
            } else {
                (
                    ErrorClass::BackendBadResponse,
                    format!("Ollama rejected the request (HTTP {status}: {short})"),
                )
            };
        let mut err = DocError::new(class, text).with_status(status);
        err.retry_after = retry::retry_after(headers);
        err
    }
}

impl ChatModel for Ollama {
    fn context_tokens(&self) -> usize {
        self.num_ctx
    }

    fn calls(&self) -> &CallSettings {
        &self.calls
    }

    fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    async fn chat(&self, request: ChatRequest) -> Result<Completion, DocError> {
        retry::with_retries(self.calls.retries, |_| self.chat_once(&request)).await
    }
}
