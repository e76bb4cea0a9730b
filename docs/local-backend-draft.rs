//! DRAFT of `src/backend/local.rs` — NOT compiled (it lives in docs/). Written against the
//! published sources of mistralrs 0.8.1 / mistralrs-core 0.8.1 / candle-core 0.10.2; see
//! `docs/local-backend-notes.md` for the file/line references behind every API used here.
//! Places where the API use is inferred rather than read are marked `UNSURE:`; those that the
//! prototype (/work/scratch/local-proto, see notes "Measured (prototype)") compiled against
//! mistralrs 0.8.1 and ran are marked `VERIFIED (prototype):`.
//!
//! The in-process `local` backend: a GGUF model run by mistral.rs inside this process. Loads the
//! file once per run, entirely offline (no Hugging Face hub code path, no token lookup, no cache
//! directory), uses the GGUF's own tokenizer for chunking and its own chat template, and reads the
//! context length from the GGUF metadata. On CPU requests run one at a time; on a GPU they run
//! concurrently and the engine batches them.
//!
//! Wiring elsewhere (sketch):
//!   * `src/backend/mod.rs`:
//!       #[cfg(feature = "local")] pub mod local;
//!       enum Tokenizer { …, #[cfg(feature = "local")] Local(local::LocalTokenizer) }
//!         count():  Tokenizer::Local(t) => t.count(text),
//!         Debug:    Tokenizer::Local(_) => f.write_str("Local"),
//!       enum Backend { …, #[cfg(feature = "local")] Local(local::Local) }
//!         connect(): BackendConfig::Local { .. } => Backend::Local(local::Local::connect(config, calls).await?),
//!         name() "local"; identity() b.identity(); model() &b.model_name; summarize(): map_reduce(b, …)
//!   * `src/config.rs`: BackendConfig::Local { path: PathBuf, device: DeviceSpec, gpu_batch: usize }
//!     (`--backend local --model PATH --device cpu|cuda[:N]|metal[:N]`; `gpu_batch` = `--jobs`,
//!     which lives on `Config`, not `SummarizeConfig`); without the feature, `--backend local` is
//!     a configuration error naming `--features local`.
//!     `DeviceSpec` (below) belongs in config.rs, outside the feature gate, so the CLI parses
//!     `--device` in every build.
//!   * `src/main.rs`, after CLI parsing and BEFORE the tokio runtime is built:
//!       #[cfg(feature = "local")] summarize::backend::local::prepare_process_env(&config);
//!   * `Cargo.toml`: see the notes, section (e).

use std::fs::File;
use std::io::{BufReader, Read};
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

use super::{CallSettings, ChatModel, ChatRequest, Completion, Tokenizer};
use crate::config::{BackendConfig, SummarizeConfig};
use crate::error::{DocError, ErrorClass};

/// The CTRL repetition penalty, applied to the last `REPEAT_LAST_N` tokens only, as llama.cpp
/// and Ollama do (mistral.rs's built-in penalty covers the whole prompt, including the document
/// and the ChatML end-of-turn token, which makes summaries longer and less faithful).
const REPEAT_PENALTY: f32 = 1.1;
const REPEAT_LAST_N: usize = 64;

/// Above this file size the CPU path keeps the weights quantized: dequantizing to F32 costs about
/// 4 bytes per parameter (6–7× a 4-bit file).
const DEQUANTIZE_MAX_FILE_BYTES: u64 = 1 << 30;

/// Architectures mistral.rs 0.8.1 can run from GGUF (`pipeline/gguf.rs:473-486`).
const SUPPORTED_ARCHS: &[&str] = &[
    "llama", "mistral3", "phi2", "phi3", "starcoder2", "qwen2", "qwen3", "qwen3moe",
];

/// Where the model runs (`--device`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceSpec {
    /// CUDA 0 or Metal 0 when compiled in and present, else CPU.
    Auto,
    Cpu,
    Cuda(usize),
    Metal(usize),
}

impl std::str::FromStr for DeviceSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim().to_ascii_lowercase();
        let (kind, ordinal) = match s.split_once(':') {
            Some((k, n)) => (
                k.to_string(),
                n.parse::<usize>()
                    .map_err(|_| format!("bad device ordinal in '{s}'"))?,
            ),
            None => (s.clone(), 0),
        };
        match kind.as_str() {
            "auto" => Ok(DeviceSpec::Auto),
            "cpu" if !s.contains(':') => Ok(DeviceSpec::Cpu),
            "cuda" => Ok(DeviceSpec::Cuda(ordinal)),
            "metal" => Ok(DeviceSpec::Metal(ordinal)),
            _ => Err(format!(
                "unknown device '{s}'; use cpu, cuda, cuda:N, metal or auto"
            )),
        }
    }
}

fn open_device(spec: DeviceSpec) -> Result<Device> {
    Ok(match spec {
        DeviceSpec::Cpu => Device::Cpu,
        DeviceSpec::Auto => mistralrs::best_device(false)?,
        DeviceSpec::Cuda(n) => {
            if !cfg!(feature = "cuda") {
                bail!("this build has no CUDA support; rebuild with `--features cuda` or use --device cpu");
            }
            Device::new_cuda(n).with_context(|| format!("cannot open CUDA device {n}"))?
        }
        DeviceSpec::Metal(n) => {
            if !cfg!(feature = "metal") {
                bail!("this build has no Metal support; rebuild with `--features metal` or use --device cpu");
            }
            Device::new_metal(n).with_context(|| format!("cannot open Metal device {n}"))?
        }
    })
}

/// Counts tokens with the model's own tokenizer. The `tokenizers::Tokenizer` (0.21, from
/// mistralrs-core) is captured in a closure so this crate never has to name or pin its type.
#[derive(Clone)]
pub struct LocalTokenizer(Arc<dyn Fn(&str) -> usize + Send + Sync>);

impl LocalTokenizer {
    pub fn count(&self, text: &str) -> usize {
        (self.0)(text)
    }
}

/// What we read from the GGUF header ourselves, before mistral.rs sees the file.
#[derive(Debug, Clone, Default)]
pub struct GgufHeader {
    pub version: u32,
    pub architecture: Option<String>,
    pub name: Option<String>,
    pub context_length: Option<u64>,
}

pub struct Local {
    model: Arc<Model>,
    /// The file name, for `Backend::model()`.
    pub model_name: String,
    path: PathBuf,
    identity: String,
    context: usize,
    tokenizer: Tokenizer,
    calls: CallSettings,
    /// CPU: one permit, held for a whole engine round-trip. GPU: `None`.
    serial: Option<Arc<Semaphore>>,
    on_cpu: bool,
}

impl std::fmt::Debug for Local {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Local")
            .field("path", &self.path)
            .field("context", &self.context)
            .field("on_cpu", &self.on_cpu)
            .finish_non_exhaustive()
    }
}

/// Sets the process environment the CPU path needs. Must run in `main()` before the tokio
/// runtime and the rayon pool start: `std::env::set_var` races with any concurrent `getenv`, and
/// candle reads `CANDLE_DEQUANTIZE_ALL` once per thread into a `thread_local!`.
pub fn prepare_process_env(config: &SummarizeConfig) {
    let BackendConfig::Local { path, device, .. } = &config.backend else {
        return;
    };
    let cpu = matches!(device, DeviceSpec::Cpu)
        || (matches!(device, DeviceSpec::Auto) && !cfg!(any(feature = "cuda", feature = "metal")));
    if !cpu || std::env::var_os("CANDLE_DEQUANTIZE_ALL").is_some() {
        return; // the user's own setting wins, including "0"
    }
    let small = std::fs::metadata(path)
        .map(|m| m.len() <= DEQUANTIZE_MAX_FILE_BYTES)
        .unwrap_or(false);
    if small {
        // Q4_1 and friends have no SIMD CPU kernel in candle 0.10.2; F32 weights go through
        // `gemm`, which is several times faster for small models.
        std::env::set_var("CANDLE_DEQUANTIZE_ALL", "1");
    }
}

impl Local {
    pub async fn connect(config: &SummarizeConfig, calls: CallSettings) -> Result<Local> {
        let BackendConfig::Local {
            path,
            device,
            gpu_batch,
        } = &config.backend
        else {
            unreachable!("connect is only called for the local backend")
        };

        // 1. The file, checked before mistral.rs sees it (a missing path must never become a
        //    Hugging Face repo id, and a wrong file must give a clear message).
        let path = check_model_file(path)?;
        let header = read_gguf_header(&path)
            .with_context(|| format!("cannot read the GGUF header of {}", path.display()))?;
        let arch = header.architecture.clone().unwrap_or_default();
        if !SUPPORTED_ARCHS.contains(&arch.to_ascii_lowercase().as_str()) {
            bail!(
                "{} is a GGUF model of architecture '{arch}', which the local backend cannot run (supported: {})",
                path.display(),
                SUPPORTED_ARCHS.join(", ")
            );
        }
        if header.context_length.is_none() {
            tracing::warn!(path = %path.display(), "the GGUF has no {arch}.context_length; the model runs with 4096");
        }

        // 2. Device and dtype. F32 on CPU: `ModelDType::Auto` resolves to F16 there.
        let device = open_device(*device)?;
        let on_cpu = device.is_cpu();
        let dtype = if on_cpu { ModelDType::F32 } else { ModelDType::Auto };
        // UNSURE: with `--features cuda`, `ModelDType::Auto` runs `nvidia-smi` and panics if it is
        // missing (utils/normal.rs:68-82). Consider BF16/F16 explicitly on CUDA.

        // 3. One load per run, off the async threads (it reads the whole file and may dequantize).
        let load_path = path.clone();
        let load_device = device.clone();
        let pipeline = tokio::task::spawn_blocking(move || load_pipeline(&load_path, &load_device, dtype))
            .await
            .context("the model loader panicked")??;

        // 4. The tokenizer, taken before the engine owns the pipeline (the engine spin-locks it).
        //    VERIFIED (prototype): `pipeline.lock().await.tokenizer()` compiles without importing
        //    `MetadataMixin`, and `tok.encode(text, false)?.len()` gave 945 for the 946-token
        //    (llama.cpp count) test prompt. Original note: `.tokenizer()` is a `MetadataMixin` method (trait not re-exported); it resolves
        //    on `dyn Pipeline` as a supertrait method, as `.name()` does in the SDK itself.
        let tok = pipeline
            .lock()
            .await
            .tokenizer()
            .context("the GGUF file carries no usable tokenizer")?;
        let tokenizer = Tokenizer::Local(LocalTokenizer(Arc::new(move |text: &str| {
            // UNSURE: `encode_fast` (no offsets) may exist in tokenizers 0.21 and would be faster.
            tok.encode(text, false)
                .map(|enc| enc.len())
                .unwrap_or_else(|_| Tokenizer::Estimate.count(text))
        })));

        // 5. The engine: its own thread and tokio runtime (mistralrs-core lib.rs:571-606).
        //    `build()` does a one-token dummy run through `block_in_place`; call it from async code
        //    on the multi-thread runtime, never from `spawn_blocking`.
        let max_seqs = if on_cpu { 1 } else { (*gpu_batch).max(1) };
        let method = SchedulerConfig::DefaultScheduler {
            method: DefaultSchedulerMethod::Fixed(NonZeroUsize::new(max_seqs).unwrap()),
        };
        let runner = MistralRsBuilder::new(pipeline, method, false, None)
            .with_no_prefix_cache(true)
            .build()
            .await;
        let model = Model::new(runner);

        // 6. Context: what the model reports (= GGUF `{arch}.context_length`, or 4096), capped by
        //    --context-tokens when given.
        let trained = model
            .max_sequence_length()?
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
            "local {} {} {} {}",
            path.display(),
            meta.len(),
            mtime,
            header.name.as_deref().unwrap_or("")
        );
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();

        tracing::info!(path = %path.display(), arch = %arch, context, on_cpu, "local backend ready");
        Ok(Local {
            model: Arc::new(model),
            model_name: name,
            path,
            identity,
            context,
            tokenizer,
            calls,
            serial: on_cpu.then(|| Arc::new(Semaphore::new(1))),
            on_cpu,
        })
    }

    pub fn identity(&self) -> String {
        self.identity.clone()
    }

    async fn chat_once(&self, request: &ChatRequest) -> Result<Completion, DocError> {
        // CPU: wait for the single permit before the timeout starts; hold it in the task that
        // owns the engine round-trip so that a timed-out request still blocks the next one until
        // the engine has really finished (there is no per-request cancel in mistral.rs 0.8.1).
        let permit = match &self.serial {
            Some(sem) => Some(
                sem.clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| DocError::new(ErrorClass::BackendUnavailable, "the local model was shut down"))?,
            ),
            None => None,
        };

        let greedy = request.temperature <= 0.0;
        let params = SamplingParams {
            temperature: (!greedy).then_some(request.temperature as f64),
            top_k: if greedy { Some(1) } else { None },
            top_p: None,
            min_p: None,
            max_len: Some(request.max_tokens),
            repetition_penalty: None,
            frequency_penalty: None,
            presence_penalty: None,
            ..SamplingParams::deterministic()
        };
        // `request.seed` cannot be passed: mistral.rs has one engine RNG seeded with 0.
        let builder = RequestBuilder::new()
            .add_message(TextMessageRole::System, &request.system)
            .add_message(TextMessageRole::User, &request.user)
            .set_sampling(params)
            .add_logits_processor(last_n_repeat_penalty(REPEAT_PENALTY, REPEAT_LAST_N));

        let model = self.model.clone();
        let task = tokio::spawn(async move {
            let _permit = permit;
            // VERIFIED (prototype, compile only): `tokio::spawn(async move { model.send_chat_request(b).await })`
            // with `model: Arc<Model>` compiles, so the future is Send. Original note: mistralrs-server awaits the same
            // call inside axum handlers, which require Send.
            model.send_chat_request(builder).await
        });
        let joined = match tokio::time::timeout(self.calls.timeout, task).await {
            Ok(joined) => joined,
            Err(_) => {
                return Err(DocError::new(
                    ErrorClass::Timeout,
                    format!(
                        "the local model did not answer within {}s; raise --timeout or use a shorter --length",
                        self.calls.timeout.as_secs()
                    ),
                ))
            }
        };
        let response = joined
            .map_err(|e| DocError::new(ErrorClass::BackendError, format!("the local model crashed: {e}")))?
            .map_err(map_error)?;

        let usage = &response.usage;
        tracing::debug!(
            prompt_tokens = usage.prompt_tokens,
            completion_tokens = usage.completion_tokens,
            prompt_tok_s = usage.avg_prompt_tok_per_sec,
            completion_tok_s = usage.avg_compl_tok_per_sec,
            total_s = usage.total_time_sec,
            "local completion"
        );
        let (tokens_in, tokens_out) = (usage.prompt_tokens as u64, usage.completion_tokens as u64);
        let text = response
            .choices
            .into_iter()
            .next()
            .and_then(|c| c.message.content)
            .unwrap_or_default();
        Ok(Completion {
            text,
            tokens_in,
            tokens_out,
        })
    }
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
        // No retries: a local failure is deterministic, and a retry after a timeout would only
        // queue behind the request that is still running.
        self.chat_once(&request).await
    }
}

/// Builds the GGUF pipeline from a local file only: `load_model_from_path` with hand-made
/// `LocalModelPaths` never reaches the Hugging Face hub code (`get_paths_gguf!`), never looks for a
/// token, and never creates `~/.cache/huggingface`.
fn load_pipeline(
    path: &Path,
    device: &Device,
    dtype: ModelDType,
) -> Result<Arc<tokio::sync::Mutex<dyn mistralrs::core::Pipeline>>> {
    let file_name = path
        .file_name()
        .context("the model path has no file name")?
        .to_string_lossy()
        .into_owned();
    let loader: Box<dyn Loader> = GGUFLoaderBuilder::new(
        None,                           // chat template: the GGUF's `tokenizer.chat_template`
        None,                           // tokenizer model id: the GGUF's own vocabulary
        path.display().to_string(),     // only the pipeline's name on this path
        vec![file_name],
        GGUFSpecificConfig::default(),
        false,                          // keep the KV cache
        None,                           // no explicit jinja file
    )
    .build();
    // Not `LocalModelPaths::new`: it turns the template argument into `Some(..)`.
    let paths: Box<dyn ModelPaths> = Box::new(LocalModelPaths {
        tokenizer_filename: PathBuf::new(), // empty = convert the tokenizer embedded in the GGUF
        config_filename: PathBuf::new(),
        template_filename: None,
        filenames: vec![path.to_path_buf()],
        adapter_paths: AdapterPaths::None,
        gen_conf: None,
        preprocessor_config: None,
        processor_config: None,
        chat_template_json_filename: None,
    });
    let pipeline = loader
        .load_model_from_path(
            &paths,
            &dtype,
            device,
            true,                       // silent: no metadata dump, no progress bars
            DeviceMapSetting::dummy(),  // every layer on `device`
            None,                       // no in-situ quantization (not allowed for GGUF)
            None,                       // no PagedAttention
        )
        .with_context(|| format!("cannot load the model {}", path.display()))?;
    // `dyn Pipeline + Send + Sync` → `dyn Pipeline`: the same coercion the SDK's own
    // `build_gguf_pipeline` relies on. VERIFIED (prototype): passing the
    // `Arc<Mutex<dyn Pipeline + Send + Sync>>` straight into `MistralRsBuilder::new` compiles.
    Ok(pipeline)
}

/// Exists, is a regular file, starts with the GGUF magic. Returns the canonical path.
fn check_model_file(path: &Path) -> Result<PathBuf> {
    let meta = std::fs::metadata(path).map_err(|e| {
        anyhow::anyhow!(
            "the local model {} cannot be opened ({e}); pass the path of a .gguf file with --model",
            path.display()
        )
    })?;
    if !meta.is_file() {
        bail!("the local model {} is not a file; pass the path of a .gguf file with --model", path.display());
    }
    let mut magic = [0u8; 4];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .with_context(|| format!("cannot read {}", path.display()))?;
    if &magic != b"GGUF" {
        bail!(
            "{} is not a GGUF model file (it starts with {:02x?}, not \"GGUF\"); the local backend only runs .gguf files",
            path.display(),
            magic
        );
    }
    Ok(std::fs::canonicalize(path)?)
}

/// Reads `general.architecture`, `general.name` and `{arch}.context_length` from a GGUF v2/v3
/// header without any dependency, skipping everything else (token arrays included). Bounded
/// against corrupt files.
pub fn read_gguf_header(path: &Path) -> Result<GgufHeader> {
    const MAX_STRING: u64 = 1 << 24;
    const MAX_KV: u64 = 1 << 20;
    let mut r = BufReader::new(File::open(path)?);
    let mut magic = [0u8; 4];
    r.read_exact(&mut magic)?;
    if &magic != b"GGUF" {
        bail!("not a GGUF file");
    }
    let version = read_u32(&mut r)?;
    if !(2..=3).contains(&version) {
        bail!("unsupported GGUF version {version}");
    }
    let _tensors = read_u64(&mut r)?;
    let kv_count = read_u64(&mut r)?;
    if kv_count > MAX_KV {
        bail!("implausible GGUF metadata count {kv_count}");
    }

    fn read_u32(r: &mut impl Read) -> Result<u32> {
        let mut b = [0u8; 4];
        r.read_exact(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    fn read_u64(r: &mut impl Read) -> Result<u64> {
        let mut b = [0u8; 8];
        r.read_exact(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    // Concrete `BufReader<File>` so that skipping uses `seek_relative`, which keeps the buffer
    // (a plain `seek` would drop it for each of the ~100k vocabulary strings).
    type R = BufReader<File>;
    fn read_string(r: &mut R, keep: bool) -> Result<Option<String>> {
        let len = read_u64(r)?;
        if len > MAX_STRING {
            bail!("implausible GGUF string length {len}");
        }
        if keep {
            let mut buf = vec![0u8; len as usize];
            r.read_exact(&mut buf)?;
            Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
        } else {
            r.seek_relative(len as i64)?;
            Ok(None)
        }
    }
    /// Fixed size of a scalar GGUF type, `None` for string (8) and array (9).
    fn scalar_size(t: u32) -> Result<Option<u64>> {
        Ok(match t {
            0 | 1 | 7 => Some(1),  // u8, i8, bool
            2 | 3 => Some(2),      // u16, i16
            4 | 5 | 6 => Some(4),  // u32, i32, f32
            10 | 11 | 12 => Some(8), // u64, i64, f64
            8 | 9 => None,
            other => bail!("unknown GGUF value type {other}"),
        })
    }
    /// Reads an unsigned integer value of type `t` (for context_length), or skips any other.
    fn read_value(r: &mut R, t: u32, want_uint: bool) -> Result<Option<u64>> {
        match scalar_size(t)? {
            Some(n) => {
                let mut b = [0u8; 8];
                r.read_exact(&mut b[..n as usize])?;
                Ok(match (want_uint, t) {
                    (true, 0 | 2 | 4 | 10) => Some(u64::from_le_bytes(b)),
                    // Some writers store lengths signed.
                    (true, 5) => Some(i32::from_le_bytes(b[..4].try_into().unwrap()).max(0) as u64),
                    (true, 11) => Some(i64::from_le_bytes(b).max(0) as u64),
                    _ => None,
                })
            }
            None if t == 8 => {
                read_string(r, false)?;
                Ok(None)
            }
            None => {
                let elem = read_u32(r)?;
                let count = read_u64(r)?;
                match scalar_size(elem)? {
                    Some(n) => {
                        let bytes = n.checked_mul(count).context("implausible GGUF array")?;
                        r.seek_relative(i64::try_from(bytes).context("implausible GGUF array")?)?;
                    }
                    None => {
                        for _ in 0..count {
                            read_value(r, elem, false)?;
                        }
                    }
                }
                Ok(None)
            }
        }
    }

    let mut header = GgufHeader {
        version,
        ..GgufHeader::default()
    };
    // Keys come in file order; `general.architecture` is first in practice, but do not rely on it.
    let mut contexts: Vec<(String, u64)> = Vec::new();
    for _ in 0..kv_count {
        let key = read_string(&mut r, true)?.unwrap_or_default();
        let t = read_u32(&mut r)?;
        match key.as_str() {
            "general.architecture" | "general.name" if t == 8 => {
                let v = read_string(&mut r, true)?;
                if key == "general.architecture" {
                    header.architecture = v;
                } else {
                    header.name = v;
                }
            }
            k if k.ends_with(".context_length") => {
                if let Some(n) = read_value(&mut r, t, true)? {
                    contexts.push((k.trim_end_matches(".context_length").to_string(), n));
                }
            }
            _ => {
                read_value(&mut r, t, false)?;
            }
        }
    }
    if let Some(arch) = &header.architecture {
        header.context_length = contexts.iter().find(|(a, _)| a == arch).map(|(_, n)| *n);
    }
    Ok(header)
}

/// llama.cpp-style repetition penalty over the last `last_n` tokens of the context only.
/// Logits arrive as a CPU F32 rank-1 tensor, after mistral.rs's own penalties
/// (sampler.rs:1035-1038).
fn last_n_repeat_penalty(
    penalty: f32,
    last_n: usize,
) -> Arc<dyn mistralrs::CustomLogitsProcessor> {
    Arc::new(move |logits: &Tensor, context: &[u32]| -> mistralrs::Result<Tensor> {
        if penalty == 1.0 || context.is_empty() {
            return Ok(logits.clone());
        }
        let mut values: Vec<f32> = logits.to_vec1()?;
        let window = &context[context.len().saturating_sub(last_n)..];
        let mut seen = std::collections::HashSet::with_capacity(window.len());
        for &token in window {
            if seen.insert(token) {
                if let Some(l) = values.get_mut(token as usize) {
                    *l = if *l > 0.0 { *l / penalty } else { *l * penalty };
                }
            }
        }
        let n = values.len();
        Tensor::from_vec(values, n, logits.device())
    })
}

/// mistral.rs errors → our classes. A prompt longer than the model context comes back as a
/// request-validation error; it must be `ContextLength` so map-reduce re-chunks smaller.
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
            format!("the local model rejected the request ({short})"),
        ),
        mistralrs::error::Error::Channel(_) => DocError::new(
            ErrorClass::BackendUnavailable,
            format!("the local model engine stopped ({short})"),
        ),
        // `Error` is #[non_exhaustive].
        _ => DocError::new(
            ErrorClass::BackendError,
            format!("the local model failed ({short})"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODEL: &str = "/root/.local/share/summarize/models/SmolLM2-135M-Instruct.Q4_1.gguf";

    #[test]
    fn device_specs_parse() {
        assert_eq!("cpu".parse::<DeviceSpec>(), Ok(DeviceSpec::Cpu));
        assert_eq!("cuda".parse::<DeviceSpec>(), Ok(DeviceSpec::Cuda(0)));
        assert_eq!("CUDA:1".parse::<DeviceSpec>(), Ok(DeviceSpec::Cuda(1)));
        assert_eq!("metal".parse::<DeviceSpec>(), Ok(DeviceSpec::Metal(0)));
        assert!("tpu".parse::<DeviceSpec>().is_err());
        assert!("cuda:x".parse::<DeviceSpec>().is_err());
    }

    #[test]
    fn non_gguf_files_are_refused_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("model.gguf");
        std::fs::write(&p, b"{\"not\": \"a model\"}").unwrap();
        let err = check_model_file(&p).unwrap_err().to_string();
        assert!(err.contains("not a GGUF model file"), "{err}");
        let err = check_model_file(&dir.path().join("missing.gguf")).unwrap_err().to_string();
        assert!(err.contains("cannot be opened"), "{err}");
    }

    #[test]
    fn header_of_the_test_model() {
        if !Path::new(MODEL).exists() {
            return;
        }
        let h = read_gguf_header(Path::new(MODEL)).unwrap();
        assert_eq!(h.version, 3);
        assert_eq!(h.architecture.as_deref(), Some("llama"));
        assert_eq!(h.context_length, Some(8192));
    }
}

// =====================================================================================
// VERIFIED PROTOTYPE CODE (mistralrs =0.8.1, no features, CPU; compiled and run on 2026-11-28,
// see notes "Measured (prototype)"). Copied from /work/scratch/local-proto/src/main.rs.
// The load/engine/request code above matches it; the draft`s `load_pipeline`, SamplingParams
// literal, `last_n_repeat_penalty`, the `mistralrs::error::Error` match and the spawned
// `send_chat_request` all compiled unchanged. Kept inside a never-compiled module.
// =====================================================================================
#[cfg(any())]
mod verified_prototype {
    //! Prototype of summarize's `local` backend: mistralrs 0.8.1, GGUF, CPU, fully offline.
    //! Usage: local-proto [path|builder] [f32|auto] PROMPT_FILE
    use std::num::NonZeroUsize;
    use std::path::{Path, PathBuf};
    use std::sync::Arc;
    use std::time::Instant;

    use anyhow::{Context, Result};
    use mistralrs::core::{
        AdapterPaths, GGUFLoaderBuilder, GGUFSpecificConfig, Loader, LocalModelPaths,
        MistralRsBuilder, ModelPaths,
    };
    use mistralrs::{
        DefaultSchedulerMethod, Device, DeviceMapSetting, GgufModelBuilder, Model, ModelDType,
        RequestBuilder, SamplingParams, SchedulerConfig, TextMessageRole, TokenSource,
    };

    const MODEL: &str = "/root/.local/share/summarize/models/SmolLM2-135M-Instruct.Q4_1.gguf";
    const SYSTEM: &str = "You are a helpful assistant that writes short, faithful summaries.";

    fn load_pipeline(
        path: &Path,
        device: &Device,
        dtype: ModelDType,
    ) -> Result<Arc<tokio::sync::Mutex<dyn mistralrs::core::Pipeline + Send + Sync>>> {
        let file_name = path.file_name().context("no file name")?.to_string_lossy().into_owned();
        let loader: Box<dyn Loader> = GGUFLoaderBuilder::new(
            None,
            None,
            path.display().to_string(),
            vec![file_name],
            GGUFSpecificConfig::default(),
            false,
            None,
        )
        .build();
        let paths: Box<dyn ModelPaths> = Box::new(LocalModelPaths {
            tokenizer_filename: PathBuf::new(),
            config_filename: PathBuf::new(),
            template_filename: None,
            filenames: vec![path.to_path_buf()],
            adapter_paths: AdapterPaths::None,
            gen_conf: None,
            preprocessor_config: None,
            processor_config: None,
            chat_template_json_filename: None,
        });
        loader.load_model_from_path(
            &paths,
            &dtype,
            device,
            true,
            DeviceMapSetting::dummy(),
            None,
            None,
        )
    }

    #[tokio::main]
    async fn main() -> Result<()> {
        let args: Vec<String> = std::env::args().collect();
        let route = args.get(1).map(String::as_str).unwrap_or("path");
        let dtype_s = args.get(2).map(String::as_str).unwrap_or("f32");
        let prompt_file = args.get(3).context("usage: local-proto path|builder f32|auto PROMPT")?;
        let user = std::fs::read_to_string(prompt_file)?;
        let dtype = match dtype_s {
            "f32" => ModelDType::F32,
            "auto" => ModelDType::Auto,
            "f16" => ModelDType::F16,
            other => anyhow::bail!("dtype {other}"),
        };
        eprintln!(
            "route={route} dtype={dtype_s} CANDLE_DEQUANTIZE_ALL={:?} RAYON_NUM_THREADS={:?} avx2_compiled={}",
            std::env::var("CANDLE_DEQUANTIZE_ALL").ok(),
            std::env::var("RAYON_NUM_THREADS").ok(),
            cfg!(target_feature = "avx2"),
        );

        let t0 = Instant::now();
        let (model, count): (Model, Box<dyn Fn(&str) -> usize>) = if route == "path" {
            let path = PathBuf::from(MODEL);
            let device = Device::Cpu;
            let p2 = path.clone();
            let pipeline = tokio::task::spawn_blocking(move || load_pipeline(&p2, &device, dtype))
                .await??;
            let tok = pipeline.lock().await.tokenizer().context("no tokenizer")?;
            let count = Box::new(move |s: &str| tok.encode(s, false).map(|e| e.len()).unwrap_or(0));
            eprintln!("load_model_from_path: {:.2}s", t0.elapsed().as_secs_f64());
            let method = SchedulerConfig::DefaultScheduler {
                method: DefaultSchedulerMethod::Fixed(NonZeroUsize::new(1).unwrap()),
            };
            let runner = MistralRsBuilder::new(pipeline, method, false, None)
                .with_no_prefix_cache(true)
                .build()
                .await;
            (Model::new(runner), count as Box<dyn Fn(&str) -> usize>)
        } else {
            let dir = Path::new(MODEL).parent().unwrap().display().to_string();
            let file = Path::new(MODEL).file_name().unwrap().to_string_lossy().into_owned();
            let model = GgufModelBuilder::new(dir, vec![file])
                .with_token_source(TokenSource::None)
                .with_force_cpu()
                .with_max_num_seqs(1)
                .with_prefix_cache_n(None)
                .build()
                .await?;
            (model, Box::new(|_: &str| 0usize) as Box<dyn Fn(&str) -> usize>)
        };
        eprintln!("load+engine build: {:.2}s", t0.elapsed().as_secs_f64());
        eprintln!("max_sequence_length: {:?}", model.max_sequence_length()?);
        eprintln!("tokenizer count(user) = {}", count(&user));

        let params = SamplingParams {
            temperature: None,
            top_k: Some(1),
            top_p: None,
            min_p: None,
            max_len: Some(64),
            repetition_penalty: None,
            frequency_penalty: None,
            presence_penalty: None,
            ..SamplingParams::deterministic()
        };
        let request = RequestBuilder::new()
            .add_message(TextMessageRole::System, SYSTEM)
            .add_message(TextMessageRole::User, &user)
            .set_sampling(params);
        let t1 = Instant::now();
        let resp = model.send_chat_request(request).await?;
        let wall = t1.elapsed().as_secs_f64();
        let u = &resp.usage;
        println!(
            "RESULT prompt_tokens={} completion_tokens={} prefill_tok_s={:.1} decode_tok_s={:.1} prompt_time={:.3} compl_time={:.3} total_time={:.3} wall={:.3} finish={}",
            u.prompt_tokens,
            u.completion_tokens,
            u.avg_prompt_tok_per_sec,
            u.avg_compl_tok_per_sec,
            u.total_prompt_time_sec,
            u.total_completion_time_sec,
            u.total_time_sec,
            wall,
            resp.choices[0].finish_reason
        );
        println!("TEXT {:?}", resp.choices[0].message.content.as_deref().unwrap_or(""));
        Ok(())
    }

    // ---- compile-only checks of the draft's UNSURE parts (not executed) ----
    #[allow(dead_code)]
    fn check_send(model: Arc<Model>, b: RequestBuilder) -> tokio::task::JoinHandle<mistralrs::error::Result<mistralrs::ChatCompletionResponse>> {
        tokio::spawn(async move { model.send_chat_request(b).await })
    }

    #[allow(dead_code)]
    fn last_n_repeat_penalty(penalty: f32, last_n: usize) -> Arc<dyn mistralrs::CustomLogitsProcessor> {
        Arc::new(move |logits: &mistralrs::Tensor, context: &[u32]| -> mistralrs::Result<mistralrs::Tensor> {
            if penalty == 1.0 || context.is_empty() {
                return Ok(logits.clone());
            }
            let mut values: Vec<f32> = logits.to_vec1()?;
            let window = &context[context.len().saturating_sub(last_n)..];
            let mut seen = std::collections::HashSet::with_capacity(window.len());
            for &token in window {
                if seen.insert(token) {
                    if let Some(l) = values.get_mut(token as usize) {
                        *l = if *l > 0.0 { *l / penalty } else { *l * penalty };
                    }
                }
            }
            let n = values.len();
            mistralrs::Tensor::from_vec(values, n, logits.device())
        })
    }

    #[allow(dead_code)]
    fn classify(e: &mistralrs::error::Error) -> &'static str {
        match e {
            mistralrs::error::Error::RequestValidation(m) if m.contains("Prompt sequence length is greater than") => "context",
            mistralrs::error::Error::RequestValidation(_) => "bad",
            mistralrs::error::Error::Channel(_) => "unavailable",
            _ => "other",
        }
    }

    #[allow(dead_code)]
    fn check_builder_with_processor(b: RequestBuilder) -> RequestBuilder {
        b.add_logits_processor(last_n_repeat_penalty(1.1, 64))
    }
}
