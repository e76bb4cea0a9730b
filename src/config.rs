//! Flags plus environment into one immutable `Config`, validated up front so that a bad flag
//! fails before any work starts (exit 2). No clap types leave this module; no I/O beyond reading
//! a `--prompt FILE` and the environment.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::cli::{BackendKind, Format, InputArgs, SummarizeArgs};
use crate::prompt::Prompt;

/// Everything a run needs, decided before the first input is touched.
#[derive(Debug, Clone)]
pub struct Config {
    /// Positional inputs exactly as given.
    pub inputs: Vec<String>,
    /// `--shard K/N` and `--shards N` as given (resolved with the environment by `shard`).
    pub shard: Option<String>,
    pub shards: Option<u64>,
    /// Files forced to be read as URL/path lists (`--list`).
    pub lists: Vec<PathBuf>,
    /// `--from-feed`, `--since`, `--limit`: feeds and sitemaps among the arguments.
    pub listings: Listings,
    /// Report format.
    pub format: Format,
    /// Report destination; `None` is stdout.
    pub output: Option<PathBuf>,
    /// Documents in flight at once.
    pub jobs: usize,
    /// How documents are fetched.
    pub fetch: FetchConfig,
    /// How HTML is narrowed before extraction.
    pub extract: ExtractConfig,
    /// Where run statistics go as JSON, if anywhere.
    pub stats: Option<PathBuf>,
    /// `--progress` and the seconds between plain lines.
    pub progress: crate::progress::Mode,
    pub progress_interval: Duration,
    /// `--metrics FILE.prom`.
    pub metrics: Option<PathBuf>,
    /// Suppress everything on stderr but fatal errors.
    pub quiet: bool,
    /// Verbosity of tracing logs on stderr.
    pub verbose: u8,
    /// Keep finished ok records of the output file and append the rest.
    pub resume: bool,
    /// Wait for another run writing the same report instead of exiting 75 (`--wait-lock`).
    pub wait_lock: bool,
    /// Where summaries and pages are cached; `None` with `--no-cache`.
    pub cache_dir: Option<PathBuf>,
    /// Summarization settings; `None` for `summarize extract`.
    pub summarize: Option<SummarizeConfig>,
}

/// How feed, sitemap and robots.txt arguments are expanded.
#[derive(Debug, Clone, Default)]
pub struct Listings {
    pub from_feed: bool,
    pub since: Option<crate::expand::Since>,
    pub limit: Option<usize>,
}

/// Settings of the shared HTTP client.
#[derive(Debug, Clone)]
pub struct FetchConfig {
    /// Deadline of one request, body included.
    pub timeout: Duration,
    /// Retries after the first attempt.
    pub retries: u32,
    /// Largest body accepted, counted after decompression.
    pub max_bytes: u64,
    /// Requests in flight to one host.
    pub per_host: usize,
    /// Which addresses inputs may be fetched from.
    pub address: crate::address::Policy,
    /// Honour each site's robots.txt (`--ignore-robots` turns it off).
    pub robots: bool,
    /// `--render`, and how many pages render at once.
    pub render: crate::render::Mode,
    pub render_tabs: usize,
}

/// CSS selectors applied to HTML before extraction; both are validated at start-up.
#[derive(Debug, Clone)]
pub struct ExtractConfig {
    /// Keep only matching elements.
    pub select: Option<String>,
    /// Drop matching elements.
    pub exclude: Option<String>,
    /// The deadline of one document's extraction.
    pub timeout: Duration,
}

impl Default for ExtractConfig {
    fn default() -> ExtractConfig {
        ExtractConfig {
            select: None,
            exclude: None,
            timeout: Duration::from_secs(10),
        }
    }
}

/// What to summarize with and how.
#[derive(Debug, Clone)]
pub struct SummarizeConfig {
    /// The backend and its connection settings.
    pub backend: BackendConfig,
    /// The prompt template.
    pub prompt: Prompt,
    /// Requested summary length.
    pub length: Length,
    /// Requested output language.
    pub language: Language,
    /// What the model sees of a long document (`--preselect`).
    pub preselect: crate::preselect::Preselect,
    /// The faithfulness guard's mode, resolved for the backend.
    pub guard: crate::guard::GuardMode,
    /// The prompt set; `None` lets the backend decide by model size.
    pub prompt_style: Option<crate::prompt::Style>,
    /// Explicit chunk budget in tokens, overriding the backend's own.
    pub chunk_tokens: Option<usize>,
    /// Explicit model context size in tokens, where the backend cannot report it.
    pub context_tokens: Option<usize>,
    /// Sampling temperature.
    pub temperature: f32,
    /// Sampling seed.
    pub seed: u64,
    /// Repetition penalty of the local backend (1.0 = none).
    pub repeat_penalty: f32,
    /// Requests per minute to the backend.
    pub rpm: Option<u64>,
    /// Tokens per minute to the backend.
    pub tpm: Option<u64>,
    /// Reference summaries by record id, for ROUGE in the report.
    pub references: std::sync::Arc<crate::eval::references::References>,
    /// `--batch`, `--batch-export`, `--batch-import`: model calls answered in batches.
    pub batch: Option<BatchConfig>,
}

/// How the model calls of a batch run are answered.
#[derive(Debug, Clone)]
pub struct BatchConfig {
    /// Through the Batch API of the server (`--batch`).
    pub online: bool,
    /// Requests still unanswered go to this file (`--batch-export`).
    pub export: Option<PathBuf>,
    /// Answers come from these files (`--batch-import`).
    pub import: Vec<PathBuf>,
    /// First wait between polls.
    pub poll: Duration,
}

/// Backend selection with what each needs to connect.
#[derive(Debug, Clone)]
pub enum BackendConfig {
    /// Sentence extraction, no model.
    Extractive,
    /// An OpenAI-compatible chat completions server.
    OpenAi {
        /// Base URLs up to and including `/v1`: one server, or replicas of one model.
        base_urls: Vec<String>,
        /// From `OPENAI_API_KEY` only.
        api_key: Option<Secret>,
        /// Model name sent with each request.
        model: String,
    },
    /// An Ollama server.
    Ollama {
        /// Server root, such as `http://127.0.0.1:11434`.
        host: String,
        /// Model tag.
        model: String,
    },
    /// A GGUF model run in this process (mistral.rs).
    Local {
        /// The model file and where its path came from.
        location: crate::model::ModelLocation,
        /// Where it runs.
        device: crate::model::DeviceSpec,
    },
}

impl BackendConfig {
    pub fn name(&self) -> &'static str {
        match self {
            BackendConfig::Extractive => "extractive",
            BackendConfig::OpenAi { .. } => "openai",
            BackendConfig::Ollama { .. } => "ollama",
            BackendConfig::Local { .. } => "local",
        }
    }
}

/// A string that never shows itself in `Debug` or `Display` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Secret {
        Secret(value)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Requested summary length, in words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Length {
    /// Target number of words.
    pub words: usize,
}

impl Length {
    pub fn parse(s: &str) -> Result<Length> {
        use crate::backend::extractive::{LONG_WORDS, MEDIUM_WORDS, SHORT_WORDS};
        let words = match s.trim().to_ascii_lowercase().as_str() {
            "short" => SHORT_WORDS,
            "medium" => MEDIUM_WORDS,
            "long" => LONG_WORDS,
            other => {
                let digits = other.strip_suffix('w').unwrap_or(other);
                match digits.parse::<usize>() {
                    Ok(n) if (1..=5000).contains(&n) => n,
                    _ => bail!(
                        "invalid --length '{s}': use short, medium, long, or a word count such as 150w"
                    ),
                }
            }
        };
        Ok(Length { words })
    }
}

/// Requested summary language.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Language {
    /// The document's own language.
    Auto,
    /// A language name or code, passed to the model as written.
    Named(String),
}

impl Language {
    pub fn parse(s: &str) -> Result<Language> {
        let s = s.trim();
        if s.is_empty() || s.eq_ignore_ascii_case("auto") {
            return Ok(Language::Auto);
        }
        if s.len() > 40 || !s.chars().all(|c| c.is_alphanumeric() || " -_".contains(c)) {
            bail!(
                "invalid --language '{s}': use auto, a code such as de, or a name such as German"
            );
        }
        Ok(Language::Named(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        match self {
            Language::Auto => "auto",
            Language::Named(s) => s,
        }
    }
}

/// Reads environment variables through one seam so tests can pass their own.
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment; empty values count as unset.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.trim().is_empty())
    }
}

fn input_config(args: &InputArgs) -> Result<(FetchConfig, ExtractConfig)> {
    if args.jobs == 0 {
        bail!("invalid --jobs 0: use 1 or more");
    }
    if !(args.timeout.is_finite() && args.timeout > 0.0) {
        bail!(
            "invalid --timeout {}: use a positive number of seconds",
            args.timeout
        );
    }
    if args.render == crate::render::Mode::Always && crate::render::find_chromium().is_none() {
        bail!(
            "--render always needs a Chromium, and none was found: {}; or use --render auto",
            crate::render::INSTALL_HINT
        );
    }
    if args.resume && args.format != Format::Jsonl {
        bail!("--resume works with JSONL reports only: drop -f or use -f jsonl");
    }
    if args.max_bytes == 0 {
        bail!("invalid --max-bytes 0: use a positive byte count");
    }
    for (flag, sel) in [("--select", &args.select), ("--exclude", &args.exclude)] {
        if let Some(sel) = sel {
            scraper::Selector::parse(sel).map_err(|e| {
                anyhow::anyhow!("invalid {flag} '{sel}': not a CSS selector ({e}); try something like 'article p' or '.sidebar'")
            })?;
        }
    }
    Ok((
        FetchConfig {
            timeout: Duration::from_secs_f64(args.timeout),
            retries: args.retries,
            max_bytes: args.max_bytes,
            per_host: args.per_host.max(1),
            robots: !args.ignore_robots,
            render: args.render,
            // Each tab is a renderer process (~100 MB): a few are plenty.
            render_tabs: args.jobs.clamp(1, 4),
            address: if args.allow_private {
                crate::address::Policy::AllowAll
            } else if args.public_only {
                crate::address::Policy::PublicOnly
            } else {
                crate::address::Policy::NoMetadata
            },
        },
        ExtractConfig {
            select: args.select.clone(),
            exclude: args.exclude.clone(),
            timeout: {
                if !(args.extract_timeout.is_finite() && args.extract_timeout > 0.0) {
                    bail!("--extract-timeout must be a positive number of seconds");
                }
                Duration::from_secs_f64(args.extract_timeout)
            },
        },
    ))
}

fn base(args: &InputArgs) -> Result<Config> {
    let (fetch, extract) = input_config(args)?;
    Ok(Config {
        inputs: args.inputs.clone(),
        shard: args.shard.clone(),
        shards: args.shards,
        lists: args.list.clone(),
        listings: {
            let since = args
                .since
                .as_deref()
                .map(crate::expand::Since::parse)
                .transpose()
                .map_err(anyhow::Error::msg)?;
            if since == Some(crate::expand::Since::LastRun) && args.output.is_none() {
                bail!("--since last needs -o FILE: the time of the last run is kept beside the report");
            }
            if args.limit == Some(0) {
                bail!("invalid --limit 0: use 1 or more, or leave it out");
            }
            Listings {
                from_feed: args.from_feed,
                since,
                limit: args.limit,
            }
        },
        format: args.format,
        output: args.output.clone(),
        jobs: args.jobs,
        fetch,
        extract,
        stats: args.stats.clone(),
        metrics: args.metrics.clone(),
        progress: args.progress,
        progress_interval: {
            if !(args.progress_interval.is_finite() && args.progress_interval >= 0.1) {
                bail!("--progress-interval must be at least 0.1 seconds");
            }
            Duration::from_secs_f64(args.progress_interval)
        },
        quiet: args.quiet,
        verbose: args.verbose,
        resume: args.resume,
        wait_lock: args.wait_lock,
        cache_dir: if args.no_cache {
            None
        } else {
            args.cache_dir
                .clone()
                .or_else(crate::cache::Cache::default_dir)
        },
        summarize: None,
    })
}

/// Configuration of `summarize extract`.
pub fn for_extract(args: &InputArgs) -> Result<Config> {
    if args.format == Format::Html {
        bail!("-f html reports summaries: for `summarize extract` use -f jsonl, csv or md");
    }
    base(args)
}

/// Configuration of a summarizing run.
pub fn for_summarize(args: &SummarizeArgs, env: &dyn Env) -> Result<Config> {
    let mut config = base(&args.input)?;
    if args.device.is_some() && args.backend != BackendKind::Local {
        bail!("--device applies to --backend local only");
    }
    let backend = match args.backend {
        BackendKind::Extractive => BackendConfig::Extractive,
        BackendKind::Local => {
            if !cfg!(feature = "local") {
                bail!("this summarize was built without the local backend (cargo feature `local`); reinstall with default features (`cargo install summarize`), or use --backend extractive, openai or ollama");
            }
            if !args.base_url.is_empty() {
                bail!("--base-url does not apply to --backend local (the model runs in this process); use --model PATH.gguf");
            }
            let device = match &args.device {
                Some(d) => d
                    .parse()
                    .map_err(|e: String| anyhow::anyhow!("invalid --device: {e}"))?,
                None => crate::model::DeviceSpec::Auto,
            };
            crate::model::DeviceSpec::check_supported(device)?;
            BackendConfig::Local {
                location: crate::model::locate(args.model.as_deref(), env)?,
                device,
            }
        }
        BackendKind::Openai => {
            // Replicas: --base-url several times, or a comma-separated OPENAI_BASE_URL.
            let given: Vec<String> = if args.base_url.is_empty() {
                env.var("OPENAI_BASE_URL")
                    .map(|v| v.split(',').map(str::to_string).collect())
                    .unwrap_or_else(|| vec!["https://api.openai.com/v1".to_string()])
            } else {
                args.base_url
                    .iter()
                    .flat_map(|v| v.split(','))
                    .map(str::to_string)
                    .collect()
            };
            let mut base_urls = Vec::new();
            for url in given.iter().map(|u| u.trim()).filter(|u| !u.is_empty()) {
                let url = normalize_base_url(url, "--base-url / OPENAI_BASE_URL")?;
                if !base_urls.contains(&url) {
                    base_urls.push(url);
                }
            }
            if base_urls.is_empty() {
                bail!("--base-url / OPENAI_BASE_URL is empty: give the server's URL, such as http://127.0.0.1:8080/v1");
            }
            let api_key = env.var("OPENAI_API_KEY").map(Secret::new);
            // Requests written to a file for an offline engine need no key.
            let offline =
                !args.batch && (args.batch_export.is_some() || !args.batch_import.is_empty());
            if api_key.is_none()
                && !offline
                && base_urls
                    .iter()
                    .any(|u| u.starts_with("https://api.openai.com"))
            {
                bail!("the openai backend needs an API key: set OPENAI_API_KEY in the environment (or point --base-url at a local OpenAI-compatible server)");
            }
            BackendConfig::OpenAi {
                base_urls,
                api_key,
                model: args
                    .model
                    .clone()
                    .unwrap_or_else(|| "gpt-4o-mini".to_string()),
            }
        }
        BackendKind::Ollama => {
            if args.base_url.len() > 1 {
                bail!("--base-url takes one URL for --backend ollama; replicas are for --backend openai");
            }
            let host = args
                .base_url
                .first()
                .cloned()
                .or_else(|| env.var("OLLAMA_HOST"))
                .unwrap_or_else(|| "http://127.0.0.1:11434".to_string());
            BackendConfig::Ollama {
                host: normalize_ollama_host(&host)?,
                model: args.model.clone().unwrap_or_else(|| "llama3.2".to_string()),
            }
        }
    };
    if let Some(n) = args.chunk_tokens {
        if n < 64 {
            bail!("invalid --chunk-tokens {n}: use at least 64");
        }
    }
    if let Some(n) = args.context_tokens {
        if n < 256 {
            bail!("invalid --context-tokens {n}: use at least 256");
        }
    }
    for (flag, value) in [("--rpm", args.rpm), ("--tpm", args.tpm)] {
        if value == Some(0) {
            bail!("invalid {flag} 0: use a positive limit, or leave the flag out for none");
        }
    }
    if !(0.0..=2.0).contains(&args.temperature) {
        bail!(
            "invalid --temperature {}: use a value from 0 to 2",
            args.temperature
        );
    }
    if !(1.0..=2.0).contains(&args.repeat_penalty) {
        bail!(
            "invalid --repeat-penalty {}: use a value from 1.0 (off) to 2.0",
            args.repeat_penalty
        );
    }
    let guard = match (&args.guard, &backend) {
        (Some(g), _) => crate::guard::GuardMode::parse(g).map_err(anyhow::Error::msg)?,
        (None, BackendConfig::Local { .. }) => crate::guard::GuardMode::Repair,
        (None, BackendConfig::Extractive) => crate::guard::GuardMode::Off,
        (None, _) => crate::guard::GuardMode::Flag,
    };
    let prompt_style = match args.prompt_style.trim().to_ascii_lowercase().as_str() {
        "auto" => None,
        "small" => Some(crate::prompt::Style::Small),
        "full" => Some(crate::prompt::Style::Full),
        other => bail!("invalid --prompt-style '{other}': use auto, small or full"),
    };
    let batch = if args.batch || args.batch_export.is_some() || !args.batch_import.is_empty() {
        if !matches!(backend, BackendConfig::OpenAi { .. }) {
            bail!("--batch, --batch-export and --batch-import work with -b openai only");
        }
        if !(args.batch_poll.is_finite() && args.batch_poll > 0.0) {
            bail!(
                "invalid --batch-poll {}: use a positive number of seconds",
                args.batch_poll
            );
        }
        Some(BatchConfig {
            online: args.batch,
            export: args.batch_export.clone(),
            import: args.batch_import.clone(),
            poll: Duration::from_secs_f64(args.batch_poll),
        })
    } else {
        None
    };
    config.summarize = Some(SummarizeConfig {
        batch,
        preselect: crate::preselect::Preselect::parse(&args.preselect)
            .map_err(anyhow::Error::msg)?,
        guard,
        prompt_style,
        backend,
        prompt: Prompt::load(&args.prompt)
            .with_context(|| format!("invalid --prompt '{}'", args.prompt))?,
        length: Length::parse(&args.length)?,
        language: Language::parse(&args.language)?,
        chunk_tokens: args.chunk_tokens,
        context_tokens: args.context_tokens,
        temperature: args.temperature,
        seed: args.seed,
        repeat_penalty: args.repeat_penalty,
        rpm: args.rpm,
        tpm: args.tpm,
        references: std::sync::Arc::new(match &args.references {
            Some(path) => crate::eval::references::load(path)?,
            None => Default::default(),
        }),
    });
    Ok(config)
}

fn normalize_base_url(raw: &str, what: &str) -> Result<String> {
    let url = url::Url::parse(raw.trim()).map_err(|e| {
        anyhow::anyhow!("invalid {what} '{raw}': {e}; use a URL such as http://127.0.0.1:8080/v1")
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        bail!("invalid {what} '{raw}': use an http:// or https:// URL");
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

/// Accepts what Ollama itself accepts in `OLLAMA_HOST`: `host`, `host:port`, or a full URL.
fn normalize_ollama_host(raw: &str) -> Result<String> {
    let raw = raw.trim();
    let with_scheme = if raw.contains("://") {
        raw.to_string()
    } else {
        format!("http://{raw}")
    };
    let mut url = url::Url::parse(&with_scheme).map_err(|e| {
        anyhow::anyhow!("invalid ollama host '{raw}': {e}; use host:port such as 127.0.0.1:11434")
    })?;
    if url.port().is_none() && !raw.contains("://") {
        let _ = url.set_port(Some(11434));
    }
    // Ollama listens on 0.0.0.0 but a client must dial a real address.
    if url.host_str() == Some("0.0.0.0") {
        let _ = url.set_host(Some("127.0.0.1"));
    }
    normalize_base_url(url.as_str(), "OLLAMA_HOST")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct MapEnv(HashMap<&'static str, &'static str>);
    impl Env for MapEnv {
        fn var(&self, name: &str) -> Option<String> {
            self.0.get(name).map(|s| s.to_string())
        }
    }

    #[test]
    fn length_accepts_names_and_word_counts() {
        assert_eq!(Length::parse("150w").unwrap().words, 150);
        assert_eq!(Length::parse("80").unwrap().words, 80);
        assert!(Length::parse("short").unwrap().words < Length::parse("long").unwrap().words);
        assert!(Length::parse("0w").is_err());
        assert!(Length::parse("lots").is_err());
    }

    #[test]
    fn ollama_host_forms() {
        assert_eq!(
            normalize_ollama_host("0.0.0.0").unwrap(),
            "http://127.0.0.1:11434"
        );
        assert_eq!(
            normalize_ollama_host("example.org:8000").unwrap(),
            "http://example.org:8000"
        );
        assert_eq!(
            normalize_ollama_host("https://h.example/").unwrap(),
            "https://h.example"
        );
    }

    #[test]
    fn openai_without_key_is_a_configuration_error() {
        use clap::Parser;
        let cli = crate::cli::Cli::try_parse_from(["summarize", "-b", "openai", "x"]).unwrap();
        let err = for_summarize(&cli.summarize, &MapEnv(HashMap::new())).unwrap_err();
        assert!(format!("{err:#}").contains("OPENAI_API_KEY"));
        let env = MapEnv(HashMap::from([(
            "OPENAI_BASE_URL",
            "http://127.0.0.1:9/v1/",
        )]));
        let config = for_summarize(&cli.summarize, &env).unwrap();
        match config.summarize.unwrap().backend {
            BackendConfig::OpenAi {
                base_urls, api_key, ..
            } => {
                assert_eq!(base_urls, ["http://127.0.0.1:9/v1"]);
                assert!(api_key.is_none());
            }
            other => panic!("unexpected backend {other:?}"),
        }
        // Replicas: a comma-separated variable, or the flag given several times (deduplicated).
        let env = MapEnv(HashMap::from([(
            "OPENAI_BASE_URL",
            "http://127.0.0.1:9/v1, http://127.0.0.1:10/v1",
        )]));
        let config = for_summarize(&cli.summarize, &env).unwrap();
        assert!(matches!(config.summarize.unwrap().backend,
            BackendConfig::OpenAi { base_urls, .. } if base_urls == ["http://127.0.0.1:9/v1", "http://127.0.0.1:10/v1"]));
        let cli = crate::cli::Cli::try_parse_from([
            "summarize",
            "-b",
            "openai",
            "--base-url",
            "http://a:1/v1",
            "--base-url",
            "http://b:2/v1,http://a:1/v1",
            "x",
        ])
        .unwrap();
        let config = for_summarize(&cli.summarize, &MapEnv(HashMap::new())).unwrap();
        assert!(matches!(config.summarize.unwrap().backend,
            BackendConfig::OpenAi { base_urls, .. } if base_urls == ["http://a:1/v1", "http://b:2/v1"]));
    }

    #[test]
    fn secret_debug_is_redacted() {
        let s = Secret::new("sk-live-123".into());
        assert!(!format!("{s:?}").contains("sk-live"));
    }
}
