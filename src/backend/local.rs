//! The in-process `local` backend: a GGUF model run by mistral.rs inside this process.
//!
//! The file is loaded once per run, entirely offline: the loader is given the file itself
//! (`load_model_from_path`), so no Hugging Face hub code runs, no token is looked up and no
//! cache directory is created. The tokenizer and the chat template come from the GGUF, and so
//! does the context length. On the CPU requests run one at a time (concurrent requests of
//! different lengths are several times slower there); on a GPU they go to the engine together
//! and it batches them.
//!
//! Speed on the CPU rests on two choices, measured in `docs/local-backend.md`: the model runs
//! in F32 (mistral.rs's automatic dtype is F16 on the CPU, emulated in software), and small
//! models are dequantized to F32 at load (`CANDLE_DEQUANTIZE_ALL`): candle has no SIMD kernel
//! for Q4_1 and friends, while F32 weights go through `gemm`, which picks AVX2/AVX-512 at run
//! time.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use mistralrs::core::{
    AdapterPaths, GGUFLoaderBuilder, GGUFSpecificConfig, Loader, LocalModelPaths, MistralRsBuilder,
    ModelPaths,
};
use mistralrs::{
    DefaultSchedulerMethod, Device, DeviceMapSetting, Model, ModelDType, RequestBuilder,
    SamplingParams, SchedulerConfig, Tensor, TextMessageRole,
};
use tokio::sync::Semaphore;

use super::steer::{Steer, SteerConfig, Vocab};
use super::{CallSettings, ChatModel, ChatRequest, Completion, Tokenizer};
use crate::config::{BackendConfig, SummarizeConfig};
use crate::error::{DocError, ErrorClass};
use crate::model::{DeviceSpec, GgufHeader};

/// The CTRL repetition penalty (`--repeat-penalty`) applies to the last `REPEAT_LAST_N` tokens,
/// as llama.cpp and Ollama apply it. mistral.rs's own penalty covers the whole context, prompt
/// included, which would penalise every word of the document the summary should reuse.
const REPEAT_LAST_N: usize = 64;

/// Copy-aware decoding (`steer.rs`): the logit bonus for a token that continues a span of the
/// document, and the span length at which it is full. Chosen on the CNN/DM and QMSum dev sets.
const COPY_BONUS: f32 = 8.0;
const COPY_SPAN: usize = 3;
/// The bonus for opening the summary with the document's first token.
const LEAD_BONUS: f32 = 4.0;
/// Token n-grams that may not repeat within a summary: long enough that a name or a figure
/// written twice is not cut short ("Klopp ... Klop"), short enough to stop a copied loop.
const NO_REPEAT_NGRAM: usize = 8;

/// Prompt-lookup decoding on the CPU (vendor/README.md): up to this many tokens guessed from
/// the document are verified per forward pass. Greedy output is unchanged; a copying summary
/// needs fewer passes. `MISTRALRS_PROMPT_LOOKUP` set by the user wins (0 turns it off).
const PROMPT_LOOKUP: usize = 5;

/// Models below this many parameters get the small prompt set (`prompt::Style::Small`).
const SMALL_MODEL_PARAMETERS: u64 = 1_000_000_000;

/// Above this file size the CPU path keeps the weights quantized: F32 weights take about
/// 4 bytes per parameter, 6–7 times a 4-bit file.
const DEQUANTIZE_MAX_FILE_BYTES: u64 = 1 << 30;

/// Architectures mistral.rs 0.8.1 runs from a GGUF file (`pipeline/gguf.rs`).
const SUPPORTED_ARCHS: &[&str] = &[
    "llama",
    "mistral3",
    "phi2",
    "phi3",
    "starcoder2",
    "qwen2",
    "qwen3",
    "qwen3moe",
];

/// Counts tokens with the model's own tokenizer. The tokenizer (mistralrs-core's `tokenizers`
/// version) is captured in a closure so this crate never names or pins its type.
#[derive(Clone)]
pub struct LocalTokenizer(Arc<dyn Fn(&str) -> usize + Send + Sync>);

impl LocalTokenizer {
    pub fn count(&self, text: &str) -> usize {
        (self.0)(text)
    }
}

/// The model's tokenizer as a shareable function of text to token ids.
type Encoder = Arc<dyn Fn(&str) -> Vec<u32> + Send + Sync>;

pub struct Local {
    model: Arc<Model>,
    /// The file name, for `Backend::model()`.
    pub model_name: String,
    /// Under a billion parameters: the small prompt set suits it.
    pub small: bool,
    identity: String,
    context: usize,
    tokenizer: Tokenizer,
    /// The model's tokenizer as ids, for the copy bonus.
    encode: Encoder,
    vocab: Arc<Vocab>,
    steer: SteerConfig,
    calls: CallSettings,
    /// CPU: one permit, held for a whole engine round-trip. GPU: `None`.
    serial: Option<Arc<Semaphore>>,
}

impl std::fmt::Debug for Local {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Local")
            .field("model", &self.model_name)
            .field("context", &self.context)
            .field("serial", &self.serial.is_some())
            .finish_non_exhaustive()
    }
}

/// Sets the process environment the CPU path needs: dequantized weights for prefill and
/// prompt-lookup decoding. Runs in `main()` before the tokio runtime and any rayon pool exist:
/// `set_var` races with a concurrent `getenv`, and candle reads `CANDLE_DEQUANTIZE_ALL` once
/// per thread. A value the user set wins, "0" included.
pub fn prepare_process_env(backend: &BackendConfig) {
    let BackendConfig::Local { location, device } = backend else {
        return;
    };
    if !device.is_cpu() {
        return;
    }
    if std::env::var_os("MISTRALRS_PROMPT_LOOKUP").is_none() {
        std::env::set_var("MISTRALRS_PROMPT_LOOKUP", PROMPT_LOOKUP.to_string());
    }
    if std::env::var_os("CANDLE_DEQUANTIZE_ALL").is_some() {
        return;
    }
    let small = std::fs::metadata(&location.path)
        .map(|m| m.len() <= DEQUANTIZE_MAX_FILE_BYTES)
        .unwrap_or(false);
    if small {
        std::env::set_var("CANDLE_DEQUANTIZE_ALL", "1");
    }
}

impl Local {
    pub async fn connect(config: &SummarizeConfig, calls: CallSettings) -> Result<Local> {
        let BackendConfig::Local { location, device } = &config.backend else {
            unreachable!("connect is only called for the local backend")
        };
        // The file is checked before mistral.rs sees it: a missing path must never turn into
        // a Hugging Face repo id, and a wrong file must give a clear message, not a panic.
        let (path, header) = location.inspect()?;
        check_architecture(&path, &header)?;

        // `--device` was checked against this build in `config::for_summarize`.
        let device = open_device(*device)?;
        let on_cpu = device.is_cpu();
        // F32 on the CPU: the automatic dtype is F16 there, emulated in software.
        let dtype = if on_cpu {
            ModelDType::F32
        } else {
            ModelDType::Auto
        };

        let started = std::time::Instant::now();
        let load_path = path.clone();
        let load_device = device.clone();
        let pipeline =
            tokio::task::spawn_blocking(move || load_pipeline(&load_path, &load_device, dtype))
                .await
                .map_err(|e| anyhow::anyhow!("loading {} crashed: {e}", path.display()))??;

        // The tokenizer, taken before the engine owns the pipeline.
        let tok = pipeline
            .lock()
            .await
            .tokenizer()
            .with_context(|| format!("{} carries no usable tokenizer", path.display()))?;
        // The vocabulary as text, for the sentence stop and the banned pieces.
        let size = tok.get_vocab_size(true) as u32;
        // A SentencePiece token ("▁cat") decodes alone without its space; give it back, or
        // words would run together and the length rules never see a word end.
        let pieces: Vec<String> = (0..size)
            .map(|id| {
                let piece = tok.decode(&[id], false).unwrap_or_default();
                match tok.id_to_token(id) {
                    Some(t) if t.starts_with('▁') && !piece.starts_with(' ') => {
                        format!(" {piece}")
                    }
                    _ => piece,
                }
            })
            .collect();
        let mut eos: Vec<u32> = header.eos_token_id.into_iter().collect();
        for end in [
            "<|im_end|>",
            "<|eot_id|>",
            "<|end|>",
            "<end_of_turn>",
            "</s>",
            "<|endoftext|>",
        ] {
            if let Some(id) = tok.token_to_id(end) {
                eos.push(id);
            }
        }
        eos.sort_unstable();
        eos.dedup();
        let vocab = Arc::new(Vocab::new(pieces, eos).with_stop(header.eos_token_id));
        let tok_ids = tok.clone();
        let encode = Arc::new(move |text: &str| {
            tok_ids
                .encode_fast(text, false)
                .map(|enc| enc.get_ids().to_vec())
                .unwrap_or_default()
        });
        let tokenizer = Tokenizer::Local(LocalTokenizer(Arc::new(move |text: &str| {
            tok.encode_fast(text, false)
                .map(|enc| enc.len())
                .unwrap_or_else(|_| Tokenizer::Estimate.count(text))
        })));
        let steer = steer_config(config.repeat_penalty);

        // The engine runs on its own thread. On the CPU it takes one sequence at a time.
        let max_seqs = if on_cpu { 1 } else { calls.concurrency.max(1) };
        let method = SchedulerConfig::DefaultScheduler {
            method: DefaultSchedulerMethod::Fixed(
                NonZeroUsize::new(max_seqs).unwrap_or(NonZeroUsize::MIN),
            ),
        };
        let runner = MistralRsBuilder::new(pipeline, method, false, None)
            .with_no_prefix_cache(true)
            .build()
            .await;
        let model = Model::new(runner);

        let trained = model
            .max_sequence_length()
            .ok()
            .flatten()
            .or(header.context_length.map(|n| n as usize))
            .unwrap_or(4096);
        let context = config.context_tokens.map_or(trained, |c| c.min(trained));

        let meta = std::fs::metadata(&path)?;
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        let identity = format!(
            "local {} {} {} {} {} {:?}",
            path.display(),
            meta.len(),
            mtime,
            header.name.as_deref().unwrap_or(""),
            if on_cpu { "cpu" } else { "gpu" },
            steer,
        );
        tracing::info!(
            path = %path.display(),
            context,
            on_cpu,
            seconds = started.elapsed().as_secs_f64(),
            "local model loaded"
        );
        Ok(Local {
            model: Arc::new(model),
            model_name: path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            small: header.parameters > 0 && header.parameters < SMALL_MODEL_PARAMETERS,
            identity,
            context,
            tokenizer,
            encode,
            vocab,
            steer,
            calls,
            serial: on_cpu.then(|| Arc::new(Semaphore::new(1))),
        })
    }

    pub fn identity(&self) -> String {
        self.identity.clone()
    }

    /// One chat round-trip, with the engine's own timing of it.
    pub async fn generate(&self, request: &ChatRequest) -> Result<(Completion, Speed), DocError> {
        // CPU: wait for the single permit before the timeout starts, and hold it in the task
        // that owns the engine round-trip, so that a request that timed out still blocks the
        // next one until the engine has finished with it (mistral.rs has no per-request cancel).
        let waited = std::time::Instant::now();
        let permit = match &self.serial {
            Some(sem) => Some(sem.clone().acquire_owned().await.map_err(|_| {
                DocError::new(
                    ErrorClass::BackendUnavailable,
                    "the local model was shut down",
                )
            })?),
            None => None,
        };
        let queue_ms = waited.elapsed().as_millis() as u64;
        let greedy = request.temperature <= 0.0;
        let params = SamplingParams {
            temperature: (!greedy).then_some(f64::from(request.temperature)),
            top_k: greedy.then_some(1),
            top_p: None,
            min_p: None,
            max_len: Some(request.max_tokens),
            repetition_penalty: None,
            frequency_penalty: None,
            presence_penalty: None,
            ..SamplingParams::deterministic()
        };
        // `request.seed` cannot be passed: mistral.rs has one engine RNG, seeded with 0. At
        // temperature 0 (the default) decoding is greedy and needs none.
        let steer = Steer::new(
            self.vocab.clone(),
            SteerConfig {
                stop_words: request.stop_words,
                min_words: request.min_words,
                ..self.steer.clone()
            },
            (self.encode)(&request.source),
            &request.source,
        );
        let mut builder = RequestBuilder::new();
        if !request.system.trim().is_empty() {
            builder = builder.add_message(TextMessageRole::System, &request.system);
        }
        let builder = builder
            .add_message(TextMessageRole::User, &request.user)
            .set_sampling(params)
            .add_logits_processor(steering(steer));
        let model = self.model.clone();
        let task = tokio::spawn(async move {
            let _permit = permit;
            model.send_chat_request(builder).await
        });
        let joined = tokio::time::timeout(self.calls.timeout, task)
            .await
            .map_err(|_| {
                DocError::new(
                    ErrorClass::Timeout,
                    format!(
                        "the local model did not finish within {}s; raise --timeout, or use a shorter --length or --chunk-tokens",
                        self.calls.timeout.as_secs()
                    ),
                )
            })?;
        let response = joined
            .map_err(|e| {
                DocError::new(
                    ErrorClass::BackendError,
                    format!("the local model crashed: {e}"),
                )
            })?
            .map_err(map_error)?;
        let usage = response.usage.clone();
        tracing::debug!(
            prompt_tokens = usage.prompt_tokens,
            completion_tokens = usage.completion_tokens,
            prefill_tok_s = usage.avg_prompt_tok_per_sec,
            decode_tok_s = usage.avg_compl_tok_per_sec,
            "local completion"
        );
        let (tokens_in, tokens_out) = (usage.prompt_tokens as u64, usage.completion_tokens as u64);
        let choice = response.choices.into_iter().next();
        let truncated = choice.as_ref().is_some_and(|c| c.finish_reason == "length");
        let text = choice.and_then(|c| c.message.content).unwrap_or_default();
        let speed = Speed {
            prefill_tok_s: f64::from(usage.avg_prompt_tok_per_sec),
            decode_tok_s: f64::from(usage.avg_compl_tok_per_sec),
            prefill_s: f64::from(usage.total_prompt_time_sec),
            decode_s: f64::from(usage.total_completion_time_sec),
        };
        Ok((
            Completion {
                text,
                tokens_in,
                tokens_out,
                truncated,
                queue_ms,
            },
            speed,
        ))
    }
}

/// The engine's timing of one request (`make bench-local` prints it).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Speed {
    pub prefill_tok_s: f64,
    pub decode_tok_s: f64,
    pub prefill_s: f64,
    pub decode_s: f64,
}

impl ChatModel for Local {
    fn context_tokens(&self) -> usize {
        self.context
    }

    fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    fn calls(&self) -> &CallSettings {
        &self.calls
    }

    async fn chat(&self, request: ChatRequest) -> Result<Completion, DocError> {
        // No retries: a local failure is deterministic, and a retry after a timeout would
        // only queue behind the request still running.
        self.generate(&request)
            .await
            .map(|(completion, _)| completion)
    }
}

fn check_architecture(path: &Path, header: &GgufHeader) -> Result<()> {
    let arch = header.architecture.as_deref().unwrap_or("");
    if !SUPPORTED_ARCHS.contains(&arch.to_ascii_lowercase().as_str()) {
        bail!(
            "{} is a GGUF model of architecture '{arch}', which the local backend cannot run (it runs {})",
            path.display(),
            SUPPORTED_ARCHS.join(", ")
        );
    }
    if header.context_length.is_none() {
        tracing::warn!(path = %path.display(), "the GGUF names no {arch}.context_length; assuming 4096 tokens");
    }
    Ok(())
}

fn open_device(spec: DeviceSpec) -> Result<Device> {
    Ok(match spec {
        DeviceSpec::Cpu => Device::Cpu,
        DeviceSpec::Auto if spec.is_cpu() => Device::Cpu,
        DeviceSpec::Auto => mistralrs::best_device(false)?,
        DeviceSpec::Cuda(n) => {
            Device::new_cuda(n).with_context(|| format!("cannot open CUDA device {n}"))?
        }
        DeviceSpec::Metal(n) => {
            Device::new_metal(n).with_context(|| format!("cannot open Metal device {n}"))?
        }
    })
}

/// Builds the GGUF pipeline from the local file alone. `load_model_from_path` with hand-made
/// `LocalModelPaths` never reaches the hub code, never looks for a token and never creates
/// `~/.cache/huggingface`.
fn load_pipeline(
    path: &Path,
    device: &Device,
    dtype: ModelDType,
) -> Result<Arc<tokio::sync::Mutex<dyn mistralrs::core::Pipeline + Send + Sync>>> {
    let file_name = path
        .file_name()
        .context("the model path has no file name")?
        .to_string_lossy()
        .into_owned();
    let loader: Box<dyn Loader> = GGUFLoaderBuilder::new(
        None, // chat template: the GGUF's own
        None, // tokenizer: the GGUF's own vocabulary
        path.display().to_string(),
        vec![file_name],
        GGUFSpecificConfig::default(),
        false,
        None,
    )
    .build();
    // A literal, not `LocalModelPaths::new`, which would set a template file.
    let paths: Box<dyn ModelPaths> = Box::new(LocalModelPaths {
        tokenizer_filename: PathBuf::new(), // empty: use the tokenizer inside the GGUF
        config_filename: PathBuf::new(),
        template_filename: None,
        filenames: vec![path.to_path_buf()],
        adapter_paths: AdapterPaths::None,
        gen_conf: None,
        preprocessor_config: None,
        processor_config: None,
        chat_template_json_filename: None,
    });
    loader
        .load_model_from_path(
            &paths,
            &dtype,
            device,
            true, // silent: no metadata dump, no progress bars
            DeviceMapSetting::dummy(),
            None,
            None,
        )
        .with_context(|| format!("cannot load the model {}", path.display()))
}

/// The decoding settings of this build (chosen by measurement, see README).
fn steer_config(repeat_penalty: f32) -> SteerConfig {
    SteerConfig {
        repeat_penalty,
        repeat_last_n: REPEAT_LAST_N,
        no_repeat_ngram: NO_REPEAT_NGRAM,
        copy_bonus: COPY_BONUS,
        copy_span: COPY_SPAN,
        lead_bonus: LEAD_BONUS,
        stop_words: None,
        min_words: 0,
    }
}

/// The steering rules (`steer.rs`) as a mistral.rs logits processor.
fn steering(steer: Steer) -> Arc<dyn mistralrs::CustomLogitsProcessor> {
    Arc::new(
        move |logits: &Tensor, context: &[u32]| -> mistralrs::Result<Tensor> {
            let mut values: Vec<f32> = logits.to_vec1()?;
            steer.apply(&mut values, context);
            let n = values.len();
            Tensor::from_vec(values, n, logits.device())
        },
    )
}

/// mistral.rs errors to our classes. A prompt longer than the context comes back as a
/// validation error; it must be `ContextLength` so that map-reduce re-chunks smaller.
fn map_error(e: mistralrs::error::Error) -> DocError {
    let text = crate::sanitize::one_line(&e.to_string());
    let short: String = text.chars().take(300).collect();
    match &e {
        mistralrs::error::Error::RequestValidation(m)
            if m.contains("Prompt sequence length is greater than") =>
        {
            DocError::new(
                ErrorClass::ContextLength,
                format!("the prompt does not fit the model's context ({short})"),
            )
        }
        mistralrs::error::Error::RequestValidation(_) => DocError::new(
            ErrorClass::BackendBadResponse,
            format!("the local model refused the request ({short})"),
        ),
        mistralrs::error::Error::Channel(_) => DocError::new(
            ErrorClass::BackendUnavailable,
            format!("the local model engine stopped ({short})"),
        ),
        _ => DocError::new(
            ErrorClass::BackendError,
            format!("the local model failed ({short})"),
        ),
    }
}
