//! Command-line surface: clap derive structs only. Doc comments here are the `--help` text.
//! Nothing in this module reads the environment or files; `config.rs` turns these into a `Config`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Summarize URLs and documents in batch: one record per input, as JSONL, CSV or Markdown.
///
/// INPUT is an http(s) URL, a file (HTML, Markdown, text), a directory (searched recursively),
/// a glob, `-` for stdin (one URL or path per line), a `.jsonl` file of records
/// {"id"?, "url"|"path"|"text", "reference"?}, or a text file listing URLs and paths.
///
/// Exit status: 0 every input succeeded, 1 some inputs failed, 2 usage or configuration
/// error, 75 another run is writing the same report (see --wait-lock), 130 interrupted.
#[derive(Debug, Parser)]
#[command(name = "summarize", version = version_text(), args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub summarize: SummarizeArgs,
}

fn version_text() -> &'static str {
    if cfg!(feature = "cuda") {
        concat!(
            env!("CARGO_PKG_VERSION"),
            " (local backend: mistral.rs, cpu + cuda)"
        )
    } else if cfg!(feature = "metal") {
        concat!(
            env!("CARGO_PKG_VERSION"),
            " (local backend: mistral.rs, cpu + metal)"
        )
    } else if cfg!(feature = "local") {
        concat!(
            env!("CARGO_PKG_VERSION"),
            " (local backend: mistral.rs, cpu)"
        )
    } else {
        concat!(env!("CARGO_PKG_VERSION"), " (no local backend)")
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Extract the main text of each input without summarizing: one record per input.
    Extract(ExtractArgs),
    /// Show the local model a run would use: its path on stdout, its details on stderr.
    ///
    /// Exit status 0 when the file is there and readable, 2 when it is not (with the fix).
    Model(ModelArgs),
    /// Score an existing JSONL report against reference summaries (ROUGE), without re-running.
    ///
    /// Per-record scores go to stdout as JSONL, the aggregate to stderr. Failed records score 0.
    /// Exit status 1 when a --min-* gate fails.
    Eval(EvalArgs),
    /// Compare two runs over the same inputs (A, then B): means, B - A with a paired bootstrap
    /// 95% interval, better/same/worse counts, and the records that changed most.
    ///
    /// Records are paired by id. Exit status 1 when a --max-drop gate fails.
    Compare(CompareArgs),
    /// Join the JSONL reports of shards (`--shard K/N`) into one report: one record per input, in
    /// input order when --list gives the inputs, and the run statistics recomputed exactly from
    /// the records.
    ///
    /// Exit status 1 when a listed input has no record (a shard did not run) or a record failed.
    Merge(MergeArgs),
    /// Turn a JSONL report into one self-contained HTML page: the run summary, charts of
    /// latency, outcomes, length and quality, and every record in a sortable, filterable table.
    ///
    /// `summarize report run.jsonl -o run.html`; add --references to score ROUGE and --texts
    /// (the inputs as JSONL {"id", "text"}) to show each summary beside its document.
    Report(ReportArgs),
    /// Print a shell completion script on stdout.
    ///
    /// bash: `summarize completions bash > ~/.local/share/bash-completion/completions/summarize`;
    /// zsh: `summarize completions zsh > ~/.zfunc/_summarize` (with ~/.zfunc in fpath);
    /// fish: `summarize completions fish > ~/.config/fish/completions/summarize.fish`.
    Completions(CompletionsArgs),
    /// Print the effective settings (flags aside) and where each comes from: the config file
    /// ($XDG_CONFIG_HOME/summarize/config.toml, or SUMMARIZE_CONFIG), the environment or the
    /// defaults. Never prints the API key.
    Config,
    /// Print the man page (roff) on stdout: `summarize man > ~/.local/share/man/man1/summarize.1`.
    Man,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// A .gguf file to inspect instead of the one a run would use [env: SUMMARIZE_MODEL].
    #[arg(short = 'm', long, value_name = "PATH.gguf")]
    pub model: Option<String>,

    /// Also check the file's sha256 (against the published default when it is the default file).
    #[arg(long)]
    pub verify: bool,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// The JSONL report of an earlier run.
    #[arg(value_name = "REPORT")]
    pub report: PathBuf,

    /// Reference summaries: JSONL {"id", "reference"} or CSV with id and reference columns.
    #[arg(long, value_name = "FILE")]
    pub references: PathBuf,

    /// How the aggregate is printed on stderr.
    #[arg(long, value_enum, default_value_t = EvalFormat::Table)]
    pub format: EvalFormat,

    /// Also write the aggregate as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub stats: Option<PathBuf>,

    /// Score without Porter stemming (rouge-score's use_stemmer=False).
    #[arg(long)]
    pub no_stem: bool,

    /// Split summaries one sentence per line before ROUGE-Lsum (rouge-score's
    /// split_summaries=True, and how a run scores its own records). Default: lines as written.
    #[arg(long)]
    pub split_summaries: bool,

    /// Fail (exit 1) when the mean ROUGE-1 F is below X (0-1, or points such as 40.4).
    #[arg(long, value_name = "X")]
    pub min_rouge1: Option<f64>,

    /// Fail (exit 1) when the mean ROUGE-2 F is below X.
    #[arg(long, value_name = "X")]
    pub min_rouge2: Option<f64>,

    /// Fail (exit 1) when the mean ROUGE-L F is below X.
    #[arg(long = "min-rougeL", value_name = "X")]
    pub min_rouge_l: Option<f64>,

    /// Fail (exit 1) when the mean ROUGE-Lsum F is below X.
    #[arg(long = "min-rougeLsum", value_name = "X")]
    pub min_rouge_lsum: Option<f64>,
}

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The shard reports.
    #[arg(value_name = "REPORT", required = true)]
    pub reports: Vec<PathBuf>,

    /// The run's input list(s), for input order and to find inputs no shard reported.
    #[arg(long, value_name = "FILE")]
    pub list: Vec<PathBuf>,

    /// Write the merged report to FILE instead of stdout.
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Write the recomputed run statistics to FILE as JSON.
    #[arg(long, value_name = "FILE")]
    pub stats: Option<PathBuf>,

    /// Print nothing on stderr but errors.
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The JSONL report of an earlier run.
    #[arg(value_name = "REPORT")]
    pub report: PathBuf,

    /// Write the page to FILE instead of stdout.
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Reference summaries (JSONL {"id", "reference"} or CSV): adds ROUGE to the page.
    #[arg(long, value_name = "FILE")]
    pub references: Option<PathBuf>,

    /// The documents as JSONL {"id", "text"} (a dataset file works as is): each record opens
    /// to the start of its text.
    #[arg(long, value_name = "FILE")]
    pub texts: Option<PathBuf>,

    /// The requested summary length in words, marked on the length chart.
    #[arg(long, value_name = "WORDS")]
    pub words: Option<usize>,
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// The JSONL report of the first run (the baseline).
    #[arg(value_name = "A")]
    pub a: PathBuf,

    /// The JSONL report of the second run (the candidate).
    #[arg(value_name = "B")]
    pub b: PathBuf,

    /// Output on stdout: a table for people, JSON for scripts, or a self-contained HTML page
    /// (the table, a chart of B - A with its interval, the records that changed most side by side).
    #[arg(short = 'f', long, value_enum, default_value_t = CompareFormat::Table)]
    pub format: CompareFormat,

    /// Fail (exit 1) when B is worse than A on METRIC by more than X, in the units shown
    /// (ROUGE in points): `--max-drop rouge1=0.5`. Repeatable; any metric with a better direction.
    #[arg(long, value_name = "METRIC=X")]
    pub max_drop: Vec<String>,

    /// How many of the records that changed most to list.
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub top: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompareFormat {
    Table,
    Json,
    Html,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EvalFormat {
    Table,
    Json,
}

/// Options shared by every subcommand that reads inputs.
#[derive(Debug, Args)]
pub struct InputArgs {
    /// URLs, files, directories, globs, `-` for stdin, or .jsonl record files.
    #[arg(value_name = "INPUT")]
    pub inputs: Vec<String>,

    /// Treat FILE as a list of URLs and paths, one per line (`#` starts a comment).
    #[arg(long, value_name = "FILE")]
    pub list: Vec<PathBuf>,

    /// Read every argument as a feed (RSS, Atom), sitemap or robots.txt and summarize what it
    /// lists. Without it, an argument is expanded when its name suggests one (.xml, .rss, .atom,
    /// /feed, /robots.txt, .xml.gz) and its content is one.
    #[arg(long)]
    pub from_feed: bool,

    /// Of a feed's items and a sitemap's pages, keep only those newer than DATE (2026-11-30,
    /// 2026-11-30T08:00:00Z), or with `last` newer than the last finished run that wrote the
    /// same -o report (for cron). Entries without a date are kept.
    #[arg(long, value_name = "DATE|last")]
    pub since: Option<String>,

    /// Of each feed or sitemap, keep at most the first N entries (after --since).
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,

    /// Process only shard K of N (from 0) of the inputs, by a stable hash of each input's
    /// identity: for job arrays. Without it a Slurm array task's SLURM_ARRAY_TASK_ID and
    /// SLURM_ARRAY_TASK_COUNT choose the shard. Join the reports with `summarize merge`.
    #[arg(long, value_name = "K/N")]
    pub shard: Option<String>,

    /// The number of shards when JOB_COMPLETION_INDEX (a Kubernetes Indexed Job) says which.
    #[arg(long, value_name = "N")]
    pub shards: Option<u64>,

    /// Report format. `html` is one page for people, written when the run ends (`-o run.html`).
    #[arg(short = 'f', long, value_enum, default_value_t = Format::Jsonl)]
    pub format: Format,

    /// Write the report to FILE instead of stdout.
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// How many documents are processed at once.
    #[arg(short = 'j', long, value_name = "N", default_value_t = 8)]
    pub jobs: usize,

    /// Per-request timeout in seconds, body included (model calls get at least 120).
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    pub timeout: f64,

    /// How many times a failed request is retried (429, 5xx, connection errors, timeouts).
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub retries: u32,

    /// Refuse loopback and private addresses too (not only cloud metadata services), checked on
    /// every connection and redirect: for jobs over URL lists that others wrote.
    #[arg(long, conflicts_with = "allow_private")]
    pub public_only: bool,

    /// Allow every address, cloud metadata services (169.254.0.0/16, fd00:ec2::254) included.
    #[arg(long)]
    pub allow_private: bool,

    /// Fetch pages even where the site's robots.txt disallows them (and ignore its Crawl-delay).
    /// By default robots.txt is fetched once per site and honoured: a disallowed page is an
    /// error record of class robots_disallowed.
    #[arg(long, env = "SUMMARIZE_IGNORE_ROBOTS")]
    pub ignore_robots: bool,

    /// Read pages built by JavaScript through a headless Chromium. `auto` renders a fetched page
    /// again when its HTML extracts to (almost) nothing and looks script-built; `always`
    /// renders every HTML page fetched by URL. The browser fetches nothing itself: every
    /// request it makes goes through this tool's client. Chromium: `SUMMARIZE_CHROMIUM`, else
    /// `chromium` or `google-chrome` on PATH.
    #[arg(long, value_enum, value_name = "WHEN", default_value_t = crate::render::Mode::Auto, env = "SUMMARIZE_RENDER")]
    pub render: crate::render::Mode,

    /// At most N requests in flight to any one host.
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub per_host: usize,

    /// Seconds one document's extraction may take; past it the input fails with
    /// `extract_timeout` and the run goes on (pages that nest 100,000 levels deep or carry
    /// 200,000 attributes take minutes).
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub extract_timeout: f64,

    /// Largest document accepted, in bytes (after decompression).
    #[arg(long, value_name = "N", default_value_t = 10 * 1024 * 1024)]
    pub max_bytes: u64,

    /// Keep only the elements matching this CSS selector before extracting (HTML only).
    #[arg(long, value_name = "CSS")]
    pub select: Option<String>,

    /// Drop the elements matching this CSS selector before extracting (HTML only).
    #[arg(long, value_name = "CSS")]
    pub exclude: Option<String>,

    /// Keep the ok records already in the --output file, re-run failed and missing inputs, append.
    #[arg(long, requires = "output")]
    pub resume: bool,

    /// When another run is writing the same --output, wait for it to finish instead of exiting
    /// at once with status 75 (EX_TEMPFAIL).
    #[arg(long, requires = "output")]
    pub wait_lock: bool,

    /// Cache directory for summaries and fetched pages [default: the user cache dir]/summarize.
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,

    /// Neither read nor write the cache.
    #[arg(long, conflicts_with = "cache_dir")]
    pub no_cache: bool,

    /// Write run statistics (counts, latency percentiles, tokens) to FILE as JSON.
    #[arg(long, value_name = "FILE")]
    pub stats: Option<PathBuf>,

    /// Write the run's metrics to FILE in the Prometheus text format (for node_exporter's
    /// textfile collector), atomically.
    #[arg(long, value_name = "FILE.prom")]
    pub metrics: Option<PathBuf>,

    /// Progress on stderr: auto (a bar on a terminal, else nothing), bar, plain (one line every
    /// --progress-interval seconds, for cron and CI logs), off.
    #[arg(long, value_enum, value_name = "MODE", default_value_t = crate::progress::Mode::Auto)]
    pub progress: crate::progress::Mode,

    /// Seconds between the lines of --progress plain.
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    pub progress_interval: f64,

    /// No progress bar, no run summary, no per-input error lines on stderr.
    #[arg(short = 'q', long)]
    pub quiet: bool,

    /// Log more to stderr (-v info, -vv debug, -vvv trace).
    #[arg(short = 'v', long, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Args)]
pub struct ExtractArgs {
    #[command(flatten)]
    pub input: InputArgs,
}

#[derive(Debug, Args)]
pub struct SummarizeArgs {
    #[command(flatten)]
    pub input: InputArgs,

    /// Which summarizer to use (default: local; extractive in builds without the `local` feature).
    #[arg(short = 'b', long, value_enum, env = "SUMMARIZE_BACKEND", default_value_t = BackendKind::DEFAULT, hide_default_value = true)]
    pub backend: BackendKind,

    /// Model: a .gguf file for local [env: SUMMARIZE_MODEL; default: SmolLM2-135M-Instruct in the
    /// data directory, see `summarize model`], a model name for openai (gpt-4o-mini) and ollama (llama3.2).
    #[arg(short = 'm', long, value_name = "MODEL")]
    pub model: Option<String>,

    /// Where the local model runs: cpu, cuda[:N], metal[:N] (default: the GPU the binary was built for, else cpu).
    #[arg(long, value_name = "DEVICE")]
    pub device: Option<String>,

    /// Base URL of the backend server [env: OPENAI_BASE_URL for openai, OLLAMA_HOST for ollama].
    /// For openai, give it several times (or a comma-separated OPENAI_BASE_URL) for replicas of
    /// one model: each request goes to the replica with the fewest in flight, and one that
    /// fails is rested while the others take its requests.
    #[arg(long, value_name = "URL", action = clap::ArgAction::Append)]
    pub base_url: Vec<String>,

    /// Send the model calls through the OpenAI Batch API (-b openai): half the price and no rate
    /// limits, answered within 24 hours. The batch's state lives beside the -o report, so a
    /// killed run, or a later one, attaches to the same batch instead of paying twice.
    #[arg(long, requires = "output", conflicts_with = "batch_export")]
    pub batch: bool,

    /// Write the model requests as Batch JSONL to FILE instead of sending them, for an offline
    /// engine that reads that format (vLLM's run-batch); bring its output back with --batch-import.
    #[arg(long, value_name = "FILE", requires = "output")]
    pub batch_export: Option<PathBuf>,

    /// Answers to earlier --batch-export requests: a Batch API output or error file, or an
    /// offline engine's results in that format. May be given several times.
    #[arg(long, value_name = "FILE", requires = "output")]
    pub batch_import: Vec<PathBuf>,

    /// Seconds before the first poll of a batch; the wait doubles up to a minute.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub batch_poll: f64,

    /// Prompt: a built-in name (default, bullets, tldr, changelog) or a template file.
    #[arg(long, value_name = "NAME|FILE", default_value = "default")]
    pub prompt: String,

    /// Summary length: short, medium, long, or a word count such as 150w.
    #[arg(long, value_name = "LENGTH", default_value = "medium")]
    pub length: String,

    /// What the model sees: the most central sentences within a word budget (auto: 1.5x the
    /// length for the local backend, the whole document for the others), off, or a budget such as 240w.
    #[arg(long, value_name = "off|auto|Nw", default_value = "auto")]
    pub preselect: String,

    /// What the faithfulness guard does with invented numbers, names and links, echoed prompt
    /// text, loops and a wrong length: repair (drop those sentences; fall back to the extractive
    /// summary when too little is left), fallback, flag (record only) or off.
    /// [default: repair for local, flag for openai and ollama]
    #[arg(long, value_name = "MODE")]
    pub guard: Option<String>,

    /// Prompt set: small (document first, one short instruction, no system prompt: for models
    /// under a billion parameters), full (system prompt and fenced document), or auto.
    #[arg(long, value_name = "auto|small|full", default_value = "auto")]
    pub prompt_style: String,

    /// Summary language: auto (the document's own) or a language name or code.
    #[arg(long, value_name = "LANG", default_value = "auto")]
    pub language: String,

    /// Token budget of one chunk; longer documents are summarized map-reduce.
    #[arg(long, value_name = "N")]
    pub chunk_tokens: Option<usize>,

    /// Context window of the model in tokens, where the backend cannot tell.
    #[arg(long, value_name = "N")]
    pub context_tokens: Option<usize>,

    /// Sampling temperature for model backends.
    #[arg(long, value_name = "T", default_value_t = 0.0)]
    pub temperature: f32,

    /// Requests per minute to the model backend, shared by the whole run.
    #[arg(long, value_name = "N")]
    pub rpm: Option<u64>,

    /// Tokens per minute to the model backend (prompt plus output), shared by the whole run.
    #[arg(long, value_name = "N")]
    pub tpm: Option<u64>,

    /// Reference summaries (JSONL {"id","reference"} or CSV id,reference): adds ROUGE to records.
    #[arg(long, value_name = "FILE")]
    pub references: Option<PathBuf>,

    /// Repetition penalty of the local model over the last 64 tokens (1.0 turns it off).
    #[arg(long, value_name = "P", default_value_t = 1.1)]
    pub repeat_penalty: f32,

    /// Sampling seed for model backends.
    #[arg(long, value_name = "N", default_value_t = 42)]
    pub seed: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Jsonl,
    Csv,
    Md,
    /// One self-contained page (charts, a sortable table) written when the run ends.
    Html,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendKind {
    /// A GGUF model run in this process (mistral.rs): offline, private, no server.
    Local,
    /// No model: picks the most central sentences, deterministic.
    Extractive,
    /// Any OpenAI-compatible server: OpenAI, vLLM, llama.cpp server, LM Studio.
    Openai,
    /// An Ollama server.
    Ollama,
}

impl BackendKind {
    /// The embedded model where this build has it, else sentence extraction.
    pub const DEFAULT: BackendKind = if cfg!(feature = "local") {
        BackendKind::Local
    } else {
        BackendKind::Extractive
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_valid() {
        Cli::command().debug_assert();
    }

    #[test]
    fn extract_is_a_subcommand_and_inputs_are_positional() {
        let cli = Cli::try_parse_from(["summarize", "extract", "a.html", "-f", "csv"]).unwrap();
        match cli.command {
            Some(Command::Extract(args)) => {
                assert_eq!(args.input.inputs, vec!["a.html"]);
                assert_eq!(args.input.format, Format::Csv);
            }
            _ => panic!("expected the extract subcommand"),
        }
        let cli = Cli::try_parse_from(["summarize", "urls.txt", "-b", "ollama"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.summarize.backend, BackendKind::Ollama);
        assert_eq!(cli.summarize.input.inputs, vec!["urls.txt"]);
    }
}
