//! Turns what the user named (URLs, files, directories, globs, stdin, URL lists, JSONL records)
//! into an ordered list of `Source`s, one per document. A bad input never aborts: it becomes a
//! `Source` carrying its error, so it still gets exactly one record in the report.
//! Reads lists and walks directories; never fetches or parses documents.

use std::collections::HashMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use url::Url;

use crate::error::ErrorClass;

/// One document to process.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    /// Stable identifier: the JSONL `id` when given, else the URL or path (made unique).
    pub id: String,
    /// Where the document comes from, as shown in the report.
    pub display: String,
    /// How to obtain it.
    pub kind: SourceKind,
    /// A reference summary supplied with the input, for ROUGE.
    pub reference: Option<String>,
    /// The folder of the list (or JSONL file) that named this file; see `confine`.
    pub list_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SourceKind {
    Url(Url),
    Path(PathBuf),
    /// Text given inline in a JSONL record, with its title if the record had one.
    Text {
        text: String,
        title: Option<String>,
    },
    /// The input could not be understood; reported as an error record.
    Invalid {
        class: ErrorClass,
        message: String,
    },
}

/// A record id as text: JSON strings as they are, numbers as written.
pub fn id_from_json(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// File extensions searched for inside directories.
const DOC_EXTENSIONS: &[&str] = &["html", "htm", "xhtml", "md", "markdown", "txt", "text"];

/// Expands every input in order. `stdin` is read only when `-` is given.
pub fn collect(inputs: &[String], lists: &[PathBuf], stdin: &mut dyn BufRead) -> Vec<Source> {
    let mut out = Vec::new();
    for list in lists {
        let label = list.display().to_string();
        match std::fs::read(list) {
            Ok(bytes) => parse_list_in(
                &String::from_utf8_lossy(&bytes),
                &label,
                parent(list),
                &mut out,
            ),
            Err(e) => out.push(invalid(
                &label,
                ErrorClass::NotFound,
                format!("cannot read list '{label}': {e}"),
            )),
        }
    }
    for input in inputs {
        expand(input, stdin, &mut out);
    }
    make_ids_unique(&mut out);
    out
}

fn invalid(display: &str, class: ErrorClass, message: String) -> Source {
    Source {
        id: display.to_string(),
        display: display.to_string(),
        kind: SourceKind::Invalid { class, message },
        reference: None,
        list_dir: None,
    }
}

fn from_url(url: Url) -> Source {
    Source {
        id: url.to_string(),
        display: url.to_string(),
        kind: SourceKind::Url(url),
        reference: None,
        list_dir: None,
    }
}

fn from_path(path: PathBuf) -> Source {
    let display = path.display().to_string();
    Source {
        id: display.clone(),
        display,
        kind: SourceKind::Path(path),
        reference: None,
        list_dir: None,
    }
}

/// `Some` for an http(s) URL, `None` for anything else.
pub fn parse_http_url(s: &str) -> Option<Url> {
    let lower = s.get(..8).unwrap_or(s).to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) {
        return None;
    }
    if s.contains(char::is_whitespace) {
        return None;
    }
    Url::parse(s).ok().filter(|u| u.host_str().is_some())
}

fn expand(input: &str, stdin: &mut dyn BufRead, out: &mut Vec<Source>) {
    if input == "-" {
        let mut text = String::new();
        let mut buf = Vec::new();
        match stdin.read_to_end(&mut buf) {
            Ok(_) => text.push_str(&String::from_utf8_lossy(&buf)),
            Err(e) => {
                out.push(invalid(
                    "-",
                    ErrorClass::Io,
                    format!("cannot read stdin: {e}"),
                ));
                return;
            }
        }
        parse_list(&text, "stdin", out);
        return;
    }
    let lower = input.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        match parse_http_url(input) {
            Some(url) => out.push(from_url(url)),
            None => out.push(invalid(
                input,
                ErrorClass::InvalidInput,
                format!("'{input}' is not a valid URL; check for typos or quote it in the shell"),
            )),
        }
        return;
    }
    let path = Path::new(input);
    if path.is_dir() {
        walk_dir(path, out);
    } else if path.is_file() {
        expand_file(path, out);
    } else if input.contains(['*', '?', '[']) {
        expand_glob(input, out);
    } else {
        out.push(invalid(
            input,
            ErrorClass::NotFound,
            format!("'{input}' is not a URL, file or directory; URLs need http:// or https://"),
        ));
    }
}

fn expand_file(path: &Path, out: &mut Vec<Source>) {
    let ext = extension(path);
    if ext == "jsonl" {
        parse_jsonl_file(path, out);
        return;
    }
    if !matches!(ext.as_str(), "html" | "htm" | "xhtml" | "md" | "markdown") {
        match sniff_list(path) {
            Sniff::List => {
                // Read whole, whatever its size: a list of 200,000 URLs is still a list.
                if let Ok(bytes) = std::fs::read(path) {
                    let text = String::from_utf8_lossy(&bytes);
                    parse_list_in(&text, &path.display().to_string(), parent(path), out);
                    return;
                }
            }
            Sniff::Ambiguous { good, sampled } => tracing::warn!(
                "'{}' looks partly like a URL list ({good} of its first {sampled} lines are URLs or paths); it is summarized as one document: give it with --list to read it as a list",
                path.display()
            ),
            Sniff::Document => {}
        }
    }
    out.push(from_path(path.to_path_buf()));
}

/// What the start of a file says it is.
#[derive(Debug, PartialEq)]
enum Sniff {
    List,
    Document,
    /// Some lines are URLs or paths, too few to be sure.
    Ambiguous {
        good: usize,
        sampled: usize,
    },
}

/// Bytes read to decide whether a file is a list, and entries judged.
const SNIFF_BYTES: u64 = 64 * 1024;
const SNIFF_ENTRIES: usize = 50;

/// Decides by content, never by size: from its first entries (up to 50, in the first 64 KiB),
/// a file is a list when every entry is a URL or an existing path, or when at least 5 were
/// judged and 80% are (the bad lines become error records); a file where some are, but fewer,
/// is ambiguous; otherwise a document.
fn sniff_list(path: &Path) -> Sniff {
    use std::io::Read;
    let mut head = Vec::new();
    let read = std::fs::File::open(path).and_then(|f| f.take(SNIFF_BYTES).read_to_end(&mut head));
    if read.is_err() {
        return Sniff::Document;
    }
    let complete = (head.len() as u64) < SNIFF_BYTES;
    let text = String::from_utf8_lossy(&head);
    // The last line of a cut head may be cut itself: judge only whole lines.
    let whole = if complete {
        &text[..]
    } else {
        text.rfind('\n').map_or(&text[..0], |i| &text[..i])
    };
    sniff_text(whole, parent(path))
}

fn sniff_text(text: &str, base: &Path) -> Sniff {
    let (mut good, mut sampled) = (0, 0);
    for line in list_entries(text).take(SNIFF_ENTRIES) {
        sampled += 1;
        good += usize::from(parse_http_url(line).is_some() || resolve(line, base).is_some());
    }
    let all = sampled > 0 && good == sampled;
    let most = sampled >= 5 && good * 5 >= sampled * 4;
    if all || most {
        Sniff::List
    } else if good > 0 && good * 2 >= sampled {
        Sniff::Ambiguous { good, sampled }
    } else {
        Sniff::Document
    }
}

fn parent(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new("."))
}

fn extension(path: &Path) -> String {
    path.extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase()
}

/// Lists are small; a large file is a document, not a list.
/// Whether `text` reads as a URL list (`sniff_text`'s rule, paths relative to the working
/// directory).
pub fn looks_like_list(text: &str) -> bool {
    sniff_text(text, Path::new(".")) == Sniff::List
}

/// An existing path as written (relative to the working directory), else relative to `base`,
/// the folder of the list that names it: a cron job's list keeps working from any directory.
fn resolve(entry: &str, base: &Path) -> Option<PathBuf> {
    let path = Path::new(entry);
    if path.exists() {
        return Some(path.to_path_buf());
    }
    let beside = base.join(path);
    (path.is_relative() && beside.exists()).then_some(beside)
}

fn list_entries(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .map(|l| l.split(" #").next().unwrap_or("").trim())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
}

/// Parses a URL/path list: one entry per line, `#` comments and blank lines skipped.
pub fn parse_list(text: &str, label: &str, out: &mut Vec<Source>) {
    parse_list_in(text, label, Path::new("."), out)
}

/// `parse_list` for a list file in `base` (see `resolve`).
pub fn parse_list_in(text: &str, label: &str, base: &Path, out: &mut Vec<Source>) {
    for (lineno, raw) in text.lines().enumerate() {
        // ` #` starts a trailing comment; a `#` inside a URL is its fragment.
        let line = raw.split(" #").next().unwrap_or("");
        let line = line.trim().trim_start_matches('\u{feff}');
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(url) = parse_http_url(line) {
            out.push(from_url(url));
            continue;
        }
        let first = out.len();
        match resolve(line, base) {
            Some(path) if path.is_dir() => walk_dir(&path, out),
            Some(path) => out.push(from_path(path)),
            None => {
                let candidate = base.join(line);
                let what = if candidate.symlink_metadata().is_ok() {
                    "a symlink that leads nowhere (a loop or a dangling link)"
                } else {
                    "neither an http(s) URL nor an existing path"
                };
                out.push(invalid(
                    line,
                    ErrorClass::InvalidInput,
                    format!("{label} line {}: '{line}' is {what}", lineno + 1),
                ))
            }
        }
        for s in &mut out[first..] {
            s.list_dir = Some(base.to_path_buf());
        }
    }
}

/// `--public-only`: a file named by a list (or a JSONL file) must lie inside that list's
/// folder, after symlinks are followed; one that does not becomes an `invalid_input` record.
/// A list from someone else then cannot read `/etc/passwd` or `../../secrets`.
pub fn confine(sources: &mut [Source]) {
    for s in sources {
        let (SourceKind::Path(path), Some(dir)) = (&s.kind, &s.list_dir) else {
            continue;
        };
        let (Ok(real), Ok(root)) = (path.canonicalize(), dir.canonicalize()) else {
            continue; // reading it reports the problem
        };
        if !real.starts_with(&root) {
            s.kind = SourceKind::Invalid {
                class: ErrorClass::InvalidInput,
                message: format!(
                    "'{}' is outside the folder of the list that names it ('{}'): with --public-only a list may name only files in its own folder; move the file there or drop --public-only",
                    s.display,
                    dir.display()
                ),
            };
        }
    }
}

fn walk_dir(dir: &Path, out: &mut Vec<Source>) {
    let before = out.len();
    let walker = walkdir::WalkDir::new(dir)
        .follow_links(true)
        .sort_by_file_name();
    for entry in walker {
        match entry {
            Ok(e) if e.file_type().is_file() => {
                let ext = extension(e.path());
                if !DOC_EXTENSIONS.contains(&ext.as_str()) {
                    continue;
                }
                // A URL list lying in a folder of documents is not itself a document.
                if matches!(ext.as_str(), "txt" | "text") && sniff_list(e.path()) == Sniff::List {
                    tracing::debug!(path = %e.path().display(), "skipping a URL list inside a directory");
                    continue;
                }
                out.push(from_path(e.into_path()));
            }
            Ok(_) => {}
            Err(e) => {
                let shown = e
                    .path()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| dir.display().to_string());
                out.push(invalid(
                    &shown,
                    ErrorClass::Io,
                    format!("cannot read '{shown}': {e}"),
                ));
            }
        }
    }
    if out.len() == before {
        let shown = dir.display().to_string();
        out.push(invalid(
            &shown,
            ErrorClass::NotFound,
            format!("directory '{shown}' holds no HTML, Markdown or text files"),
        ));
    }
}

fn expand_glob(pattern: &str, out: &mut Vec<Source>) {
    let paths = match glob::glob(pattern) {
        Ok(paths) => paths,
        Err(e) => {
            out.push(invalid(
                pattern,
                ErrorClass::InvalidInput,
                format!("invalid glob '{pattern}': {e}"),
            ));
            return;
        }
    };
    let mut files: Vec<PathBuf> = paths
        .filter_map(Result::ok)
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    if files.is_empty() {
        out.push(invalid(
            pattern,
            ErrorClass::NotFound,
            format!("glob '{pattern}' matched no files"),
        ));
    }
    for f in files {
        expand_file(&f, out);
    }
}

#[derive(Deserialize)]
struct JsonlRecord {
    #[serde(default)]
    id: Option<serde_json::Value>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    reference: Option<String>,
}

fn parse_jsonl_file(path: &Path, out: &mut Vec<Source>) {
    let label = path.display().to_string();
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) => {
            out.push(invalid(
                &label,
                ErrorClass::Io,
                format!("cannot read '{label}': {e}"),
            ));
            return;
        }
    };
    let base_dir = path.parent().unwrap_or(Path::new("."));
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let at = format!("{label}:{}", i + 1);
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                out.push(invalid(
                    &at,
                    ErrorClass::Io,
                    format!("{at}: cannot read line: {e}"),
                ));
                continue;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        out.push(jsonl_source(&line, &at, base_dir));
    }
}

/// One JSONL input record into a source; relative `path`s resolve against the JSONL file's folder.
pub fn jsonl_source(line: &str, at: &str, base_dir: &Path) -> Source {
    let rec: JsonlRecord = match serde_json::from_str(line) {
        Ok(r) => r,
        Err(e) => {
            return invalid(
                at,
                ErrorClass::InvalidInput,
                format!(
                    "{at}: not a JSON record ({e}); expected {{\"id\", \"url\"|\"path\"|\"text\"}}"
                ),
            )
        }
    };
    let id = rec.id.as_ref().and_then(id_from_json);
    let mut source = match (rec.url, rec.path, rec.text) {
        (Some(u), None, None) => match parse_http_url(u.trim()) {
            Some(url) => from_url(url),
            None => invalid(
                at,
                ErrorClass::InvalidInput,
                format!("{at}: '{u}' is not an http(s) URL"),
            ),
        },
        (None, Some(p), None) => {
            let p = PathBuf::from(p);
            let p = if p.is_relative() && !p.exists() {
                base_dir.join(p)
            } else {
                p
            };
            if p.exists() {
                from_path(p)
            } else {
                let shown = p.display().to_string();
                invalid(
                    at,
                    ErrorClass::NotFound,
                    format!("{at}: file '{shown}' does not exist"),
                )
            }
        }
        (None, None, Some(text)) => Source {
            id: at.to_string(),
            display: at.to_string(),
            kind: SourceKind::Text {
                text,
                title: rec.title.filter(|t| !t.trim().is_empty()),
            },
            reference: None,
            list_dir: None,
        },
        _ => invalid(
            at,
            ErrorClass::InvalidInput,
            format!("{at}: a record needs exactly one of \"url\", \"path\" or \"text\""),
        ),
    };
    if let Some(id) = id {
        source.id = id;
    }
    source.reference = rec.reference.filter(|r| !r.trim().is_empty());
    if matches!(source.kind, SourceKind::Path(_)) {
        source.list_dir = Some(base_dir.to_path_buf());
    }
    source
}

/// The same URL twice is two inputs and two records; ids stay distinct with a `#N` suffix.
fn make_ids_unique(sources: &mut [Source]) {
    let mut seen: HashMap<String, usize> = HashMap::new();
    for s in sources.iter_mut() {
        let n = seen.entry(s.id.clone()).or_insert(0);
        *n += 1;
        if *n > 1 {
            s.id = format!("{}#{}", s.id, n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect_str(inputs: &[&str], stdin: &str) -> Vec<Source> {
        let inputs: Vec<String> = inputs.iter().map(|s| s.to_string()).collect();
        collect(&inputs, &[], &mut stdin.as_bytes())
    }

    #[test]
    fn list_skips_comments_and_blank_lines() {
        let mut out = Vec::new();
        let list = "# feed\n\nhttps://a.example/x#frag\n  https://b.example/y  # trailing comment\nhttps://c.example/a b\n";
        parse_list(list, "t", &mut out);
        assert_eq!(out.len(), 3);
        assert_eq!(out[0].display, "https://a.example/x#frag");
        assert_eq!(out[1].display, "https://b.example/y");
        // A URL with a space in it is reported, not dropped or silently mangled.
        assert!(matches!(out[2].kind, SourceKind::Invalid { .. }));
    }

    #[test]
    fn stdin_lines_become_sources() {
        let out = collect_str(&["-"], "https://a.example/\nhttps://a.example/\n");
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].id, "https://a.example/");
        assert_eq!(out[1].id, "https://a.example/#2");
    }

    #[test]
    fn missing_path_is_an_error_record() {
        let out = collect_str(&["/definitely/not/here.html"], "");
        assert_eq!(out.len(), 1);
        match &out[0].kind {
            SourceKind::Invalid { class, message } => {
                assert_eq!(*class, ErrorClass::NotFound);
                assert!(message.contains("/definitely/not/here.html"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn jsonl_records() {
        let dir = Path::new(".");
        let s = jsonl_source(
            r#"{"id": 7, "text": "hello", "reference": "hi"}"#,
            "f:1",
            dir,
        );
        assert_eq!(s.id, "7");
        assert_eq!(
            s.kind,
            SourceKind::Text {
                text: "hello".into(),
                title: None
            }
        );
        assert_eq!(s.reference.as_deref(), Some("hi"));
        let s = jsonl_source(r#"{"url": "https://x.example/a"}"#, "f:2", dir);
        assert!(matches!(s.kind, SourceKind::Url(_)));
        let s = jsonl_source(r#"{"url": "a", "text": "b"}"#, "f:3", dir);
        assert!(matches!(s.kind, SourceKind::Invalid { .. }));
        let s = jsonl_source("{oops", "f:4", dir);
        assert!(matches!(
            s.kind,
            SourceKind::Invalid {
                class: ErrorClass::InvalidInput,
                ..
            }
        ));
    }

    #[test]
    fn list_paths_resolve_beside_the_list() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("docs")).unwrap();
        std::fs::write(dir.path().join("docs/a.md"), "# A\n\ntext").unwrap();
        std::fs::write(
            dir.path().join("list.txt"),
            "docs/a.md\nhttps://x.example/\n",
        )
        .unwrap();
        let list = dir.path().join("list.txt").display().to_string();
        let out = collect(&[list], &[], &mut "".as_bytes());
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(out[0].kind, SourceKind::Path(dir.path().join("docs/a.md")));
    }

    #[test]
    fn lists_are_known_by_their_first_lines_not_their_size() {
        let base = Path::new(".");
        let mut urls: String = (0..40)
            .map(|i| format!("https://a.example/{i}\n"))
            .collect();
        assert_eq!(sniff_text(&urls, base), Sniff::List);
        // A few malformed lines keep it a list (they become error records).
        urls.push_str("htp://typo.example/\nwww.no-scheme.example\n");
        assert_eq!(sniff_text(&urls, base), Sniff::List);
        assert_eq!(
            sniff_text("Dear diary,\nhttps://a.example/\n", base),
            Sniff::Ambiguous {
                good: 1,
                sampled: 2
            }
        );
        assert_eq!(
            sniff_text("Dear diary,\ntoday I walked.\nhttps://a.example/\n", base),
            Sniff::Document
        );
        // A big list file (over the old 4 MiB cut) is a list: 200,000 URLs.
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("urls.txt");
        let text: String = (0..200_000)
            .map(|i| format!("https://site.example/page/{i}\n"))
            .collect();
        assert!(text.len() > 4 * 1024 * 1024);
        std::fs::write(&big, &text).unwrap();
        let out = collect(&[big.display().to_string()], &[], &mut "".as_bytes());
        assert_eq!(out.len(), 200_000);
        assert!(matches!(out[199_999].kind, SourceKind::Url(_)));
    }

    #[test]
    fn list_detection() {
        assert!(looks_like_list(
            "# c\nhttps://a.example/\n\nhttp://b.example/x\n"
        ));
        assert!(!looks_like_list("Dear diary,\nhttps://a.example/\n"));
        assert!(!looks_like_list("\n# only comments\n"));
    }
}
