//! The config file: `$XDG_CONFIG_HOME/summarize/config.toml` (else `~/.config/...`), or the
//! file `SUMMARIZE_CONFIG` names. It holds defaults for a user's runs; flags override the
//! environment, the environment overrides the file, the file overrides built-in defaults.
//!
//! ```toml
//! backend = "openai"
//! model = "gpt-4o-mini"
//! base_url = "http://127.0.0.1:8080/v1"
//! length = "150w"
//! prompt = "bullets"          # a built-in name, a file, or a name in prompt_dir
//! prompt_dir = "~/prompts"    # NAME resolves to prompt_dir/NAME.md (or NAME)
//! device = "cpu"
//! ```
//!
//! The API key is never read from the file (only from `OPENAI_API_KEY`), and `summarize
//! config` prints the effective settings and where each came from, never the key.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::parser::ValueSource;
use clap::{ArgMatches, ValueEnum};
use serde::Deserialize;

use crate::cli::{BackendKind, SummarizeArgs};
use crate::config::Env;

/// The file's keys; any other key is an error (a typo must not pass silently).
#[derive(Debug, Default, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileSettings {
    pub backend: Option<String>,
    pub model: Option<String>,
    pub base_url: Option<String>,
    pub length: Option<String>,
    pub prompt: Option<String>,
    pub prompt_dir: Option<String>,
    pub device: Option<String>,
}

/// The config file that was read.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub path: PathBuf,
    pub settings: FileSettings,
}

/// Where the config file is looked for.
pub fn config_path(env: &dyn Env) -> Option<PathBuf> {
    if let Some(path) = env.var("SUMMARIZE_CONFIG") {
        return Some(PathBuf::from(path));
    }
    env.var("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| env.var("HOME").map(|h| Path::new(&h).join(".config")))
        .map(|dir| dir.join("summarize").join("config.toml"))
}

/// Reads the config file: `None` when there is none (a missing `SUMMARIZE_CONFIG` file is an
/// error: it was asked for); a file that does not parse is an error naming it.
pub fn load(env: &dyn Env) -> Result<Option<Loaded>> {
    let Some(path) = config_path(env) else {
        return Ok(None);
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e)
            if e.kind() == std::io::ErrorKind::NotFound
                && env.var("SUMMARIZE_CONFIG").is_none() =>
        {
            return Ok(None)
        }
        Err(e) => {
            return Err(e)
                .with_context(|| format!("cannot read the config file '{}'", path.display()))
        }
    };
    let settings: FileSettings = toml::from_str(&text).map_err(|e| {
        let line = e
            .span()
            .map(|s| {
                let before = &text.as_bytes()[..s.start.min(text.len())];
                format!(
                    " line {}",
                    before.iter().filter(|&&b| b == b'\n').count() + 1
                )
            })
            .unwrap_or_default();
        let keys = if e.message().contains("expected one of") {
            ""
        } else {
            "; keys are backend, model, base_url, length, prompt, prompt_dir, device"
        };
        anyhow::anyhow!(
            "config file '{}'{line}: {}{keys}",
            path.display(),
            e.message().trim_end()
        )
    })?;
    Ok(Some(Loaded { path, settings }))
}

/// Where an effective setting came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Flag,
    Env(&'static str),
    File,
    Default,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Flag => write!(f, "flag"),
            Origin::Env(name) => write!(f, "environment {name}"),
            Origin::File => write!(f, "config file"),
            Origin::Default => write!(f, "default"),
        }
    }
}

/// One effective setting, for `summarize config`.
#[derive(Debug, Clone)]
pub struct Setting {
    pub key: &'static str,
    pub value: Option<String>,
    pub origin: Origin,
}

fn given(matches: &ArgMatches, id: &str) -> bool {
    matches!(
        matches.value_source(id),
        Some(ValueSource::CommandLine | ValueSource::EnvVariable)
    )
}

fn from_flag(matches: &ArgMatches, id: &str) -> bool {
    matches.value_source(id) == Some(ValueSource::CommandLine)
}

/// Applies the file to the parsed arguments where neither a flag nor the environment set a
/// value, and returns every setting with its origin. `matches` are the run's own (or, for
/// `summarize config`, those of the top level, which carries no flags).
pub fn apply(
    args: &mut SummarizeArgs,
    matches: &ArgMatches,
    file: Option<&Loaded>,
    env: &dyn Env,
) -> Result<Vec<Setting>> {
    let f = file.map(|l| l.settings.clone()).unwrap_or_default();
    let mut out = Vec::new();

    // backend: flag or SUMMARIZE_BACKEND (clap reads both), then the file.
    let origin = if from_flag(matches, "backend") {
        Origin::Flag
    } else if given(matches, "backend") {
        Origin::Env("SUMMARIZE_BACKEND")
    } else if let Some(b) = &f.backend {
        args.backend = BackendKind::from_str(b, true).map_err(|_| {
            anyhow::anyhow!(
                "config file: backend = \"{b}\" is not one of {}",
                BackendKind::value_variants()
                    .iter()
                    .filter_map(|v| v.to_possible_value().map(|p| p.get_name().to_string()))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
        Origin::File
    } else {
        Origin::Default
    };
    out.push(Setting {
        key: "backend",
        value: args
            .backend
            .to_possible_value()
            .map(|p| p.get_name().to_string()),
        origin,
    });

    // model: the flag; for local SUMMARIZE_MODEL; then the file.
    let model_env = (args.backend == BackendKind::Local)
        .then(|| env.var("SUMMARIZE_MODEL"))
        .flatten();
    let origin = if from_flag(matches, "model") {
        Origin::Flag
    } else if model_env.is_some() {
        Origin::Env("SUMMARIZE_MODEL")
    } else if let Some(m) = &f.model {
        args.model = Some(expand_home(m, env));
        Origin::File
    } else {
        Origin::Default
    };
    out.push(Setting {
        key: "model",
        value: match origin {
            Origin::Env(_) => model_env,
            _ => args.model.clone(),
        },
        origin,
    });

    // base_url: the flag, the backend's own variable, the file.
    let url_env = match args.backend {
        BackendKind::Openai => Some("OPENAI_BASE_URL"),
        BackendKind::Ollama => Some("OLLAMA_HOST"),
        _ => None,
    };
    let origin = if from_flag(matches, "base_url") {
        Origin::Flag
    } else if let Some(name) = url_env.filter(|n| env.var(n).is_some()) {
        Origin::Env(name)
    } else if let (Some(u), Some(_)) = (&f.base_url, url_env) {
        args.base_url = vec![u.clone()];
        Origin::File
    } else {
        Origin::Default
    };
    out.push(Setting {
        key: "base_url",
        value: match &origin {
            Origin::Env(name) => env.var(name),
            _ => (!args.base_url.is_empty()).then(|| args.base_url.join(",")),
        },
        origin,
    });

    for (key, value, file_value) in [
        ("length", &mut args.length, &f.length),
        ("prompt", &mut args.prompt, &f.prompt),
    ] {
        let origin = if from_flag(matches, key) {
            Origin::Flag
        } else if let Some(v) = file_value {
            *value = v.clone();
            Origin::File
        } else {
            Origin::Default
        };
        out.push(Setting {
            key,
            value: Some(value.clone()),
            origin,
        });
    }

    // prompt_dir: SUMMARIZE_PROMPT_DIR, then the file; a prompt NAME found there is used.
    let (dir, origin) = match env.var("SUMMARIZE_PROMPT_DIR") {
        Some(d) => (Some(d), Origin::Env("SUMMARIZE_PROMPT_DIR")),
        None => match &f.prompt_dir {
            Some(d) => (Some(d.clone()), Origin::File),
            None => (None, Origin::Default),
        },
    };
    if let Some(dir) = &dir {
        let dir = PathBuf::from(expand_home(dir, env));
        let name = args.prompt.clone();
        if !crate::prompt::is_builtin(&name) && !Path::new(&name).exists() {
            if let Some(found) = [format!("{name}.md"), name.clone()]
                .iter()
                .map(|n| dir.join(n))
                .find(|p| p.is_file())
            {
                args.prompt = found.display().to_string();
            }
        }
    }
    out.push(Setting {
        key: "prompt_dir",
        value: dir,
        origin,
    });

    let origin = if from_flag(matches, "device") {
        Origin::Flag
    } else if let Some(d) = &f.device {
        if args.backend == BackendKind::Local {
            args.device = Some(d.clone());
        }
        Origin::File
    } else {
        Origin::Default
    };
    out.push(Setting {
        key: "device",
        value: args.device.clone().or_else(|| f.device.clone()),
        origin,
    });
    Ok(out)
}

/// `~/x` → `$HOME/x` (TOML has no shell to do it).
fn expand_home(path: &str, env: &dyn Env) -> String {
    match (path.strip_prefix("~/"), env.var("HOME")) {
        (Some(rest), Some(home)) => Path::new(&home).join(rest).display().to_string(),
        _ => path.to_string(),
    }
}

/// What `summarize config` prints: the file, every setting and its origin, and whether an
/// API key is set (never the key).
pub fn render(
    file_path: Option<&Path>,
    found: bool,
    settings: &[Setting],
    env: &dyn Env,
) -> String {
    let mut out = match file_path {
        Some(p) if found => format!("config file: {}\n", p.display()),
        Some(p) => format!(
            "config file: {} (none there; built-in defaults)\n",
            p.display()
        ),
        None => "config file: none (no HOME or XDG_CONFIG_HOME)\n".to_string(),
    };
    for s in settings {
        out.push_str(&format!(
            "{:<11} = {:<40} ({})\n",
            s.key,
            s.value
                .as_deref()
                .map_or("(unset)".to_string(), |v| format!("\"{v}\"")),
            s.origin
        ));
    }
    out.push_str(&format!(
        "OPENAI_API_KEY: {}\n",
        if env.var("OPENAI_API_KEY").is_some() {
            "set in the environment (never printed)"
        } else {
            "not set"
        }
    ));
    out.push_str("Flags override the environment, which overrides the config file.\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, FromArgMatches};
    use std::collections::HashMap;

    struct MapEnv(HashMap<&'static str, String>);
    impl Env for MapEnv {
        fn var(&self, name: &str) -> Option<String> {
            self.0.get(name).cloned()
        }
    }

    fn parse(argv: &[&str]) -> (SummarizeArgs, ArgMatches) {
        let matches = crate::cli::Cli::command()
            .try_get_matches_from(argv)
            .unwrap();
        let cli = crate::cli::Cli::from_arg_matches(&matches).unwrap();
        (cli.summarize, matches)
    }

    fn file(toml_text: &str) -> Loaded {
        Loaded {
            path: "/etc/x.toml".into(),
            settings: toml::from_str(toml_text).unwrap(),
        }
    }

    #[test]
    fn flags_beat_environment_beats_file() {
        let loaded = file("backend = \"openai\"\nmodel = \"m-file\"\nbase_url = \"http://file/v1\"\nlength = \"150w\"\n");
        let env = MapEnv(HashMap::from([(
            "OPENAI_BASE_URL",
            "http://env/v1".to_string(),
        )]));
        let (mut args, m) = parse(&["summarize", "x.html"]);
        let s = apply(&mut args, &m, Some(&loaded), &env).unwrap();
        assert_eq!(args.backend, BackendKind::Openai);
        assert_eq!(args.model.as_deref(), Some("m-file"));
        assert!(
            args.base_url.is_empty(),
            "the environment's URL stays in charge"
        );
        assert_eq!(args.length, "150w");
        let origin = |k: &str| s.iter().find(|x| x.key == k).unwrap().origin.clone();
        assert_eq!(origin("backend"), Origin::File);
        assert_eq!(origin("base_url"), Origin::Env("OPENAI_BASE_URL"));
        assert_eq!(origin("length"), Origin::File);
        assert_eq!(origin("prompt"), Origin::Default);

        let (mut args, m) = parse(&[
            "summarize",
            "-b",
            "ollama",
            "--length",
            "short",
            "-m",
            "flag-m",
            "x.html",
        ]);
        let s = apply(&mut args, &m, Some(&loaded), &MapEnv(HashMap::new())).unwrap();
        assert_eq!(args.backend, BackendKind::Ollama);
        assert_eq!(args.model.as_deref(), Some("flag-m"));
        assert_eq!(args.length, "short");
        assert_eq!(args.base_url, ["http://file/v1"]);
        assert!(s
            .iter()
            .all(|x| x.key != "backend" || x.origin == Origin::Flag));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        assert!(toml::from_str::<FileSettings>("bakend = \"openai\"").is_err());
        let (mut args, m) = parse(&["summarize", "x.html"]);
        let err = apply(
            &mut args,
            &m,
            Some(&file("backend = \"gpt\"")),
            &MapEnv(HashMap::new()),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("openai"), "{err}");
    }

    #[test]
    fn a_prompt_name_is_found_in_the_prompt_dir() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("weekly.md"), "Summarize: {{text}}").unwrap();
        let loaded = file(&format!(
            "prompt = \"weekly\"\nprompt_dir = \"{}\"",
            dir.path().display()
        ));
        let (mut args, m) = parse(&["summarize", "x.html"]);
        apply(&mut args, &m, Some(&loaded), &MapEnv(HashMap::new())).unwrap();
        assert_eq!(
            args.prompt,
            dir.path().join("weekly.md").display().to_string()
        );
        // A built-in name is never shadowed.
        let loaded = file(&format!(
            "prompt = \"tldr\"\nprompt_dir = \"{}\"",
            dir.path().display()
        ));
        let (mut args, m) = parse(&["summarize", "x.html"]);
        apply(&mut args, &m, Some(&loaded), &MapEnv(HashMap::new())).unwrap();
        assert_eq!(args.prompt, "tldr");
    }

    #[test]
    fn the_key_is_never_printed() {
        let env = MapEnv(HashMap::from([(
            "OPENAI_API_KEY",
            "sk-SENTINEL".to_string(),
        )]));
        let (mut args, m) = parse(&["summarize", "x.html"]);
        let s = apply(&mut args, &m, None, &env).unwrap();
        let text = render(Some(Path::new("/nowhere/config.toml")), false, &s, &env);
        assert!(!text.contains("SENTINEL"));
        assert!(text.contains("OPENAI_API_KEY: set"));
    }
}
