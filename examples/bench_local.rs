//! One request to the local backend exactly as given, timed by the engine: the mistral.rs half
//! of `make bench-local` (scripts/bench-local.sh runs llama.cpp on the same GGUF and prompt).
//!
//! usage: bench_local MODEL.gguf SYSTEM_FILE USER_FILE MAX_TOKENS [REPEAT_PENALTY]
//! prints one JSON line: prompt/completion tokens, prefill and decode tokens/s, load seconds, text.

use std::time::Instant;

use anyhow::{Context, Result};
use clap::Parser;
use summarize::backend::{Backend, CallSettings, ChatRequest};
use summarize::cli::Cli;
use summarize::config::{self, ProcessEnv};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (model, system, user, max_tokens, penalty) = match args.as_slice() {
        [_, m, s, u, n] => (m, s, u, n, "1.1"),
        [_, m, s, u, n, p] => (m, s, u, n, p.as_str()),
        _ => anyhow::bail!(
            "usage: bench_local MODEL.gguf SYSTEM_FILE USER_FILE MAX_TOKENS [REPEAT_PENALTY]"
        ),
    };
    let cli = Cli::try_parse_from([
        "summarize",
        "-b",
        "local",
        "--device",
        "cpu",
        "--repeat-penalty",
        penalty,
        "-m",
        model,
        "-",
    ])?;
    let config = config::for_summarize(&cli.summarize, &ProcessEnv)?;
    let summarize = config.summarize.context("no summarize config")?;
    summarize::backend::local::prepare_process_env(&summarize.backend);
    let request = ChatRequest {
        system: std::fs::read_to_string(system)?,
        user: std::fs::read_to_string(user)?,
        max_tokens: max_tokens.parse()?,
        temperature: 0.0,
        seed: 0,
        // Plain decoding, as llama.cpp's: no copy source, no sentence stop.
        source: String::new(),
        stop_words: None,
        min_words: 0,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let calls = CallSettings {
            timeout: std::time::Duration::from_secs(3600),
            retries: 0,
            limiter: std::sync::Arc::new(summarize::ratelimit::RateLimiter::new(None, None)),
            concurrency: 1,
            slots: std::sync::Arc::new(tokio::sync::Semaphore::new(1)),
        };
        let started = Instant::now();
        let Backend::Local(local) =
            Backend::connect(&summarize, reqwest::Client::new(), calls).await?
        else {
            anyhow::bail!("not the local backend");
        };
        let load_s = started.elapsed().as_secs_f64();
        let (completion, speed) = local
            .generate(&request)
            .await
            .map_err(|e| anyhow::anyhow!("{}", e.message))?;
        println!(
            "{}",
            serde_json::json!({
                "engine": "mistral.rs",
                "prompt_tokens": completion.tokens_in,
                "completion_tokens": completion.tokens_out,
                "prefill_tok_s": speed.prefill_tok_s,
                "decode_tok_s": speed.decode_tok_s,
                "load_s": load_s,
                "text": completion.text,
            })
        );
        Ok(())
    })
}
