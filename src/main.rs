//! The `summarize` binary: parse flags, run, print the error chain, map the outcome to an exit
//! code. Everything else lives in the library modules.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use std::sync::Arc;
use summarize::backend::{Backend, CallSettings};
use summarize::cli::{
    Cli, Command, CompareArgs, CompareFormat, EvalArgs, EvalFormat, MergeArgs, ModelArgs,
    ReportArgs,
};
use summarize::config::{self, Config, ProcessEnv};
use summarize::eval::references;
use summarize::eval::score_report::{self, Gates};
use summarize::exit::Exit;
use summarize::fetch::{self, Fetcher};

use summarize::cache::Cache;
use summarize::lock::{LockError, ReportLock};
use summarize::ratelimit::RateLimiter;
use summarize::report::{self, Sink};
use summarize::{input, pipeline, settings};

fn main() -> ExitCode {
    let parsed = <Cli as clap::CommandFactory>::command()
        .try_get_matches()
        .and_then(|m| <Cli as clap::FromArgMatches>::from_arg_matches(&m).map(|cli| (cli, m)));
    let (mut cli, matches) = match parsed {
        Ok(parsed) => parsed,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                Exit::Config.into()
            } else {
                Exit::Success.into()
            };
        }
    };
    // The config file fills in what neither a flag nor the environment set.
    let file = match settings::load(&ProcessEnv) {
        Ok(file) => file,
        Err(e) => return finish(Err(e)),
    };
    let effective = match settings::apply(&mut cli.summarize, &matches, file.as_ref(), &ProcessEnv)
    {
        Ok(s) => s,
        Err(e) => return finish(Err(e)),
    };
    if let Some(Command::Config) = cli.command {
        let path = settings::config_path(&ProcessEnv);
        print!(
            "{}",
            settings::render(path.as_deref(), file.is_some(), &effective, &ProcessEnv)
        );
        return Exit::Success.into();
    }
    let verbose = match &cli.command {
        Some(Command::Extract(a)) => a.input.verbose,
        Some(
            Command::Eval(_)
            | Command::Compare(_)
            | Command::Report(_)
            | Command::Merge(_)
            | Command::Model(_)
            | Command::Completions(_)
            | Command::Config
            | Command::Man,
        ) => 0,
        None => cli.summarize.input.verbose,
    };
    init_logging(verbose);
    // Subcommands without a run need no async runtime.
    let config = match &cli.command {
        Some(Command::Eval(args)) => return finish(eval(args)),
        Some(Command::Model(args)) => {
            // The model a run would use: the config file's, where neither -m nor
            // SUMMARIZE_MODEL names one (and the run's backend is local).
            let mut args = args.clone();
            if args.model.is_none() && cli.summarize.backend == summarize::cli::BackendKind::Local {
                args.model = cli.summarize.model.clone();
            }
            return finish(model_info(&args));
        }
        Some(Command::Completions(args)) => return finish(completions(args.shell)),
        Some(Command::Compare(args)) => return finish(compare(args)),
        Some(Command::Report(args)) => return finish(html_report(args)),
        Some(Command::Merge(args)) => return finish(merge(args)),
        Some(Command::Man) => return finish(man_page()),
        Some(Command::Config) => unreachable!("handled above"),
        Some(Command::Extract(args)) => config::for_extract(&args.input),
        None => config::for_summarize(&cli.summarize, &ProcessEnv),
    };
    let config = match config {
        Ok(config) => config,
        Err(e) => return finish(Err(e)),
    };
    // Before any other thread exists: the engine reads its settings from the environment.
    #[cfg(feature = "local")]
    if let Some(s) = &config.summarize {
        summarize::backend::local::prepare_process_env(&s.backend);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("summarize: cannot start the async runtime: {e}");
            return Exit::Config.into();
        }
    };
    finish(runtime.block_on(run(config)))
}

/// An exit status from a command's result; errors are one line on stderr and exit 2.
fn finish(result: Result<Exit>) -> ExitCode {
    match result {
        Ok(exit) => exit.into(),
        Err(e) => {
            eprintln!("summarize: {e:#}");
            Exit::Config.into()
        }
    }
}

fn init_logging(verbose: u8) {
    // Dependencies' own warnings (say, a page's malformed JSON-LD) are noise at the default
    // level: per-document problems already reach the report and one stderr line each.
    let level = match verbose {
        0 => "summarize=warn",
        1 => "summarize=info,warn",
        2 => "summarize=debug,info",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("SUMMARIZE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .try_init();
}

async fn run(config: Config) -> Result<Exit> {
    let mut inputs = config.inputs.clone();
    if inputs.is_empty() && config.lists.is_empty() {
        if std::io::stdin().is_terminal() {
            bail!("no inputs: give URLs, files, directories, or `-` to read a list from stdin (see --help)");
        }
        inputs.push("-".to_string());
    }
    // One writer per report, taken before the report is created, truncated or resumed.
    let _lock = match &config.output {
        Some(path) => {
            let quiet = config.quiet;
            let waiting = |holder: Option<u32>| {
                if !quiet {
                    eprintln!(
                        "summarize: waiting for the run{} writing '{}' to finish (--wait-lock)",
                        holder.map(|p| format!(" (pid {p})")).unwrap_or_default(),
                        path.display()
                    );
                }
            };
            match ReportLock::acquire(path, config.wait_lock, waiting) {
                Ok(lock) => Some(lock),
                Err(e @ LockError::Busy { .. }) => {
                    eprintln!("summarize: '{}': {e}", path.display());
                    return Ok(Exit::Busy);
                }
                Err(e) => return Err(e.into()),
            }
        }
        None => None,
    };
    // The inputs are read in passes, never held: one marks repeated ids, one counts what this
    // run will do, one feeds the pipeline.
    let cache = config.cache_dir.clone().map(Cache::new);
    // Inputs are fetched under the address policy; model backends (often on 127.0.0.1) are not.
    let fetch_client = fetch::build_client(config.fetch.timeout, Some(config.fetch.address))?;
    let fetcher = Fetcher::new(fetch_client, config.fetch.clone(), cache.clone());
    let run_started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    // Feeds, sitemaps and robots.txt among the arguments become the documents they list.
    let listings = {
        use summarize::expand::{self, Since};
        let since = match &config.listings.since {
            Some(Since::Date(t)) => Some(*t),
            Some(Since::LastRun) => config.output.as_deref().and_then(expand::last_run),
            None => None,
        };
        let options = expand::Options {
            from_feed: config.listings.from_feed,
            since,
            limit: config.listings.limit,
            max_bytes: config.fetch.max_bytes,
            quiet: config.quiet,
        };
        expand::expand_args(&inputs, &fetcher, &options).await
    };
    let inputs = input::Inputs::new(&inputs, &config.lists, &mut std::io::stdin().lock())
        .with_expanded(listings);
    let (unique, listed) = input::Unique::plan(&inputs);
    // A job array's share of the inputs, before --resume looks at what is done.
    let shard = summarize::shard::resolve(config.shard.as_deref(), config.shards, &ProcessEnv)?;
    let confine = config.fetch.address == summarize::address::Policy::PublicOnly;
    let shard_info = shard.as_ref().map(|s| (s.index, s.count));
    let mut in_shard = input::Stream::new(
        inputs,
        unique,
        confine,
        Box::new(move |s| shard.as_ref().is_none_or(|sh| sh.keeps(&s.id))),
    );
    let shard_total = if shard_info.is_some() {
        in_shard.count()
    } else {
        listed
    };
    if let Some((index, count)) = shard_info {
        if !config.quiet {
            eprintln!(
                "summarize: shard {index} of {count} (0-based): {shard_total} of {listed} inputs"
            );
        }
    }
    let batched = config.summarize.as_ref().is_some_and(|s| s.batch.is_some());
    let (sources, sink) = if config.resume {
        let path = config
            .output
            .as_deref()
            .expect("clap requires --output with --resume");
        let kept = report::prepare_resume(path)?;
        let kept_n = kept.len();
        let mut sources = in_shard.and_then(Box::new(move |s| !kept.contains(&s.id)));
        let to_run = sources.count();
        if !config.quiet {
            eprintln!(
                "summarize: resuming: {kept_n} finished records kept, {to_run} of {shard_total} inputs to run"
            );
        }
        let sink = if batched {
            None // the last pass of a batch run appends its records
        } else {
            Some(append_sink(path, config.format)?)
        };
        ((sources, to_run), sink)
    } else if batched {
        ((in_shard, shard_total), None)
    } else {
        ((in_shard, shard_total), Some(open_sink(&config, None)?))
    };
    let total = sources.1;
    let backend = match &config.summarize {
        Some(s) if total > 0 => {
            let calls = CallSettings {
                // A model call takes longer than a page fetch; give it at least two minutes.
                timeout: config.fetch.timeout.max(Duration::from_secs(120)),
                retries: config.fetch.retries,
                limiter: Arc::new(RateLimiter::new(s.rpm, s.tpm)),
                concurrency: config.jobs,
                slots: Arc::new(tokio::sync::Semaphore::new(config.jobs)),
            };
            let client = fetch::build_client(config.fetch.timeout, None)?;
            Some(Backend::connect(s, client, calls).await?)
        }
        _ => None,
    };
    let quiet = config.quiet;
    let stats_path = config.stats.clone();
    let metrics_path = config.metrics.clone();
    // `--since last`: this run's start time is recorded when it finishes.
    let since_file = (config.listings.since == Some(summarize::expand::Since::LastRun))
        .then(|| config.output.as_deref().map(summarize::expand::since_file))
        .flatten();
    let backend_name = config
        .summarize
        .as_ref()
        .map_or("none", |s| s.backend.name());
    let backend = backend.map(Arc::new);
    let outcome = match sink {
        Some(sink) => pipeline::run(config, sources, fetcher, backend, cache, sink).await?,
        None => match backend {
            // Nothing to run: the report is written as an ordinary run writes it.
            None => {
                let sink = match (&config.output, config.resume) {
                    (Some(path), true) => append_sink(path, config.format)?,
                    _ => open_sink(&config, None)?,
                };
                pipeline::run(config, sources, fetcher, None, cache, sink).await?
            }
            Some(backend) => {
                let backend = Arc::try_unwrap(backend).expect("one owner before the run");
                let report_config = config.clone();
                let open = move |path: &std::path::Path| open_sink(&report_config, Some(path));
                match pipeline::run_batch(config, sources, fetcher, backend, cache, open).await? {
                    Some(outcome) => outcome,
                    None => return Ok(Exit::Success), // requests exported; no report yet
                }
            }
        },
    };
    if !quiet {
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(outcome.stats.render().as_bytes());
        if outcome.interrupted {
            let _ = writeln!(
                err,
                "summarize: interrupted; the records above are complete, the rest were not run"
            );
        }
    }
    if let Some(path) = stats_path {
        let json = serde_json::to_string_pretty(&outcome.stats)?;
        std::fs::write(&path, json + "\n")
            .with_context(|| format!("cannot write --stats file '{}'", path.display()))?;
    }
    if outcome.auth_failed {
        eprintln!("summarize: the backend refused the API key; check OPENAI_API_KEY (the run stopped early)");
    }
    let exit = if outcome.broken_pipe {
        Exit::Success
    } else {
        Exit::of_run(
            outcome.stats.error,
            outcome.interrupted,
            outcome.auth_failed,
        )
    };
    if let Some(path) = since_file.filter(|_| !outcome.interrupted) {
        summarize::cache::replace_file(&path, format!("{run_started}\n").as_bytes())
            .with_context(|| format!("cannot record the run time in '{}'", path.display()))?;
    }
    if let Some(path) = metrics_path {
        let finished_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let info = report::metrics::RunInfo {
            exit_code: exit.code(),
            finished_at,
            backend: backend_name,
        };
        report::metrics::write(&path, &outcome.stats, &info)?;
    }
    Ok(exit)
}

/// `summarize eval`: scores a finished report; exit 1 when a gate fails.
/// `summarize model`: the path a run would use on stdout, what the file is on stderr.
fn model_info(args: &ModelArgs) -> Result<Exit> {
    use summarize::model;
    let location = model::locate(args.model.as_deref(), &ProcessEnv)?;
    println!("{}", location.path.display());
    let (path, header) = location.inspect()?;
    let size = std::fs::metadata(&path)?.len();
    eprintln!(
        "model: {} ({}, {:.1} MB, architecture {}, {} context tokens, {} tensors mostly {})",
        path.display(),
        header.name.as_deref().unwrap_or("unnamed"),
        size as f64 / 1e6,
        header.architecture.as_deref().unwrap_or("?"),
        header
            .context_length
            .map_or("unknown".to_string(), |n| n.to_string()),
        header.tensors,
        header.quantization.as_deref().unwrap_or("?"),
    );
    if !cfg!(feature = "local") {
        eprintln!("note: this build has no local backend (cargo feature `local`)");
    }
    if args.verify {
        let digest = sha256_file(&path)?;
        let is_default =
            path.file_name().and_then(|n| n.to_str()) == Some(model::DEFAULT_MODEL_FILE);
        if is_default && digest != model::DEFAULT_MODEL_SHA256 {
            bail!(
                "{} has sha256 {digest}, not the published {}; delete it and {}",
                path.display(),
                model::DEFAULT_MODEL_SHA256,
                model::FETCH_HINT
            );
        }
        eprintln!(
            "sha256: {digest}{}",
            if is_default {
                " (matches the published default)"
            } else {
                ""
            }
        );
    }
    Ok(Exit::Success)
}

fn sha256_file(path: &std::path::Path) -> Result<String> {
    use sha2::{Digest, Sha256};
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot read '{}'", path.display()))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)?;
    Ok(format!("{:x}", hasher.finalize()))
}

fn eval(args: &EvalArgs) -> Result<Exit> {
    let refs = references::load(&args.references)?;
    let report = read_report(&args.report)?;
    let mut gates = Gates::default();
    for (metric, min) in [
        ("rouge1", args.min_rouge1),
        ("rouge2", args.min_rouge2),
        ("rougeL", args.min_rouge_l),
        ("rougeLsum", args.min_rouge_lsum),
    ] {
        if let Some(min) = min {
            gates.min.insert(metric.to_string(), min);
        }
    }
    let (scores, aggregate) =
        score_report::score(&report, &refs, !args.no_stem, args.split_summaries, &gates)
            .with_context(|| format!("cannot score '{}'", args.report.display()))?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for s in &scores {
        let line = serde_json::to_string(s)?;
        if let Err(e) = writeln!(out, "{line}") {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                break;
            }
            return Err(e.into());
        }
    }
    let _ = out.flush();
    match args.format {
        EvalFormat::Table => eprint!("{}", aggregate.render()),
        EvalFormat::Json => eprintln!("{}", serde_json::to_string_pretty(&aggregate)?),
    }
    if let Some(path) = &args.stats {
        std::fs::write(path, serde_json::to_string_pretty(&aggregate)? + "\n")
            .with_context(|| format!("cannot write --stats file '{}'", path.display()))?;
    }
    Ok(if aggregate.gate_failures.is_empty() {
        Exit::Success
    } else {
        Exit::SomeFailed
    })
}

/// `summarize compare A B`: the comparison on stdout; exit 1 when a --max-drop gate fails.
fn compare(args: &CompareArgs) -> Result<Exit> {
    use summarize::eval::compare;
    let gates = args
        .max_drop
        .iter()
        .map(|g| compare::parse_gate(g))
        .collect::<Result<Vec<_>>>()?;
    let read = |path: &std::path::Path| -> Result<Vec<(String, serde_json::Value)>> {
        compare::parse_report(&read_report(path)?, &path.display().to_string())
    };
    let (a, b) = (read(&args.a)?, read(&args.b)?);
    let result = compare::compare(&a, &b, &gates, args.top);
    if result.paired == 0 {
        bail!(
            "'{}' and '{}' share no record id; compare needs two runs over the same inputs",
            args.a.display(),
            args.b.display()
        );
    }
    let (a_name, b_name) = (args.a.display().to_string(), args.b.display().to_string());
    let text = match args.format {
        CompareFormat::Table => result.render(&a_name, &b_name),
        CompareFormat::Json => serde_json::to_string_pretty(&result)? + "\n",
        CompareFormat::Html => report::html::compare_page(&result, &a_name, &b_name),
    };
    write_stdout(text.as_bytes())?;
    for failure in &result.gate_failures {
        eprintln!("summarize: compare: {failure}");
    }
    Ok(if result.gate_failures.is_empty() {
        Exit::Success
    } else {
        Exit::SomeFailed
    })
}

/// `summarize merge REPORT...`: shard reports joined into one, with exact statistics.
fn merge(args: &MergeArgs) -> Result<Exit> {
    let mut reports = Vec::new();
    for path in &args.reports {
        reports.push((path.display().to_string(), read_report(path)?));
    }
    let order: Option<Vec<String>> = (!args.list.is_empty()).then(|| {
        input::collect(&[], &args.list, &mut std::io::empty())
            .into_iter()
            .map(|s| s.id)
            .collect()
    });
    let merged = summarize::shard::merge(&reports, order.as_deref())?;
    let mut out = Vec::new();
    let mut stats =
        report::StatsCollector::new(order.as_ref().map_or(merged.records.len(), Vec::len));
    for r in &merged.records {
        stats.add(r);
        serde_json::to_writer(&mut out, r)?;
        out.push(b'\n');
    }
    write_output(args.output.as_deref(), &out)?;
    let stats = stats.finish(Duration::ZERO);
    if !args.quiet {
        eprint!("{}", stats.render());
        if merged.duplicates > 0 {
            eprintln!(
                "summarize: merge: {} inputs were in more than one report (the ok record, else the last, was kept)",
                merged.duplicates
            );
        }
    }
    if let Some(path) = &args.stats {
        std::fs::write(path, serde_json::to_string_pretty(&stats)? + "\n")
            .with_context(|| format!("cannot write --stats file '{}'", path.display()))?;
    }
    if !merged.missing.is_empty() {
        eprintln!(
            "summarize: merge: {} inputs of the list have no record (the first: {}); run their shard again",
            merged.missing.len(),
            merged.missing[0]
        );
        return Ok(Exit::SomeFailed);
    }
    Ok(if stats.error > 0 {
        Exit::SomeFailed
    } else {
        Exit::Success
    })
}

/// `summarize report REPORT`: the HTML page of an existing JSONL report.
fn html_report(args: &ReportArgs) -> Result<Exit> {
    let shown = args.report.display().to_string();
    let text = read_report(&args.report)?;
    let references = args
        .references
        .as_deref()
        .map(references::load)
        .transpose()?;
    let texts = args
        .texts
        .as_deref()
        .map(report::html::load_texts)
        .transpose()?;
    let title = args
        .report
        .file_name()
        .map_or(shown.clone(), |n| n.to_string_lossy().into_owned());
    let page = report::html::from_report(
        &text,
        &shown,
        &title,
        references.as_ref(),
        texts.as_ref(),
        args.words,
    )?;
    write_output(args.output.as_deref(), page.as_bytes())
}

/// `summarize completions SHELL`: the script, generated from the flag definitions.
fn completions(shell: clap_complete::Shell) -> Result<Exit> {
    let mut cmd = <Cli as clap::CommandFactory>::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "summarize", &mut out);
    write_stdout(&out)
}

/// `summarize man`: the man page (roff), generated from the flag definitions.
fn man_page() -> Result<Exit> {
    let cmd = <Cli as clap::CommandFactory>::command();
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd).render(&mut out)?;
    write_stdout(&out)
}

/// The text of a JSONL report named on the command line.
fn read_report(path: &std::path::Path) -> Result<String> {
    std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the report '{}'", path.display()))
}

/// Writes a subcommand's output to `-o FILE` (replaced whole, atomically) or stdout.
fn write_output(output: Option<&std::path::Path>, bytes: &[u8]) -> Result<Exit> {
    match output {
        Some(path) => {
            summarize::cache::replace_file(path, bytes)
                .with_context(|| format!("cannot write '{}'", path.display()))?;
            Ok(Exit::Success)
        }
        None => write_stdout(bytes),
    }
}

/// Writes generated text to stdout; a reader that went away (`| head`) is not an error.
fn write_stdout(bytes: &[u8]) -> Result<Exit> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(anyhow::Error::new(e).context("cannot write to stdout"))
        }
        _ => Ok(Exit::Success),
    }
}

/// `--resume`'s writer: after the records kept.
fn append_sink(path: &std::path::Path, format: summarize::cli::Format) -> Result<Sink> {
    let file = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .with_context(|| format!("cannot append to '{}'", path.display()))?;
    Ok(Sink::new(Box::new(std::io::BufWriter::new(file)), format))
}

/// The report's writer: at `--output`, or at `path` instead (a batch run's partial report).
fn open_sink(config: &Config, path: Option<&std::path::Path>) -> Result<Sink> {
    let out: Box<dyn Write + Send> = match path.or(config.output.as_deref()) {
        Some(path) => {
            let file = std::fs::File::create(path)
                .with_context(|| format!("cannot create the report file '{}'; check that its folder exists and is writable", path.display()))?;
            Box::new(std::io::BufWriter::new(file))
        }
        None => Box::new(std::io::BufWriter::new(std::io::stdout())),
    };
    if config.format == summarize::cli::Format::Html {
        let title = match &config.output {
            Some(path) => path.file_name().map_or_else(
                || path.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            ),
            None => config.inputs.join(" "),
        };
        let words = config.summarize.as_ref().map(|s| s.length.words);
        return Ok(Sink::html(out, report::HtmlRun::new(title, words)));
    }
    Ok(Sink::new(out, config.format))
}
