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
    /// The title a feed gave this item (it wins over the page's own).
    pub title: Option<String>,
}

impl Source {
    /// An input that cannot be run: reported as an error record of `class`.
    pub fn invalid(display: &str, class: ErrorClass, message: String) -> Source {
        invalid(display, class, message)
    }
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
const DOC_EXTENSIONS: &[&str] = &[
    "html", "htm", "xhtml", "md", "markdown", "txt", "text", "pdf",
];

/// Expands every input in order into a vector, ids made unique. `stdin` is read only when
/// `-` is given. Runs stream through `Inputs` instead; this is for the small lists of
/// `merge --list` and tests.
pub fn collect(inputs: &[String], lists: &[PathBuf], stdin: &mut dyn BufRead) -> Vec<Source> {
    let inputs = Inputs::new(inputs, lists, stdin);
    let mut out = Vec::new();
    inputs.pass(&mut |s| out.push(s));
    make_ids_unique(&mut out);
    out
}

/// Where a run's documents come from, read again on each pass instead of held: a list of a
/// million URLs costs a few lines of buffer, not a vector of a million sources. Standard input
/// is spooled to a temporary file first (it can be read only once).
pub struct Inputs {
    inputs: Vec<String>,
    lists: Vec<PathBuf>,
    stdin: Option<Spool>,
    /// Arguments that were feeds, sitemaps or robots.txt, and what they list.
    expanded: HashMap<String, crate::expand::Expanded>,
}

/// Standard input copied to a temporary file, removed when the run ends.
struct Spool {
    path: PathBuf,
    error: Option<String>,
}

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Inputs {
    pub fn new(inputs: &[String], lists: &[PathBuf], stdin: &mut dyn BufRead) -> Inputs {
        let stdin = inputs.iter().any(|i| i == "-").then(|| spool(stdin));
        Inputs {
            inputs: inputs.to_vec(),
            lists: lists.to_vec(),
            stdin,
            expanded: HashMap::new(),
        }
    }

    /// The arguments that are feeds, sitemaps or robots.txt, expanded (`expand::expand_args`).
    pub fn with_expanded(mut self, expanded: HashMap<String, crate::expand::Expanded>) -> Inputs {
        self.expanded = expanded;
        self
    }

    /// One pass over every input in order, ids as they come (see `Unique`).
    pub fn pass(&self, emit: Emit) {
        for list in &self.lists {
            let label = list.display().to_string();
            match std::fs::File::open(list) {
                Ok(f) => parse_list_reader(std::io::BufReader::new(f), &label, parent(list), emit),
                Err(e) => emit(invalid(
                    &label,
                    ErrorClass::NotFound,
                    format!("cannot read list '{label}': {e}"),
                )),
            }
        }
        for input in &self.inputs {
            if input == "-" {
                let spool = self.stdin.as_ref().expect("spooled in new");
                let read = std::fs::File::open(&spool.path).map_err(|e| e.to_string());
                match (read, spool.error.clone()) {
                    (Ok(f), None) => {
                        parse_list_reader(std::io::BufReader::new(f), "stdin", Path::new("."), emit)
                    }
                    (Err(e), _) | (_, Some(e)) => emit(invalid(
                        "-",
                        ErrorClass::Io,
                        format!("cannot read stdin: {e}"),
                    )),
                }
            } else if let Some(done) = self.expanded.get(input) {
                emit_expanded(done, emit);
            } else {
                expand(input, emit);
            }
        }
    }
}

/// The entries of a feed or sitemap argument, then its unreadable children.
fn emit_expanded(done: &crate::expand::Expanded, emit: Emit) {
    use crate::expand::{Expanded, Spooled};
    match done {
        Expanded::Invalid(source) => emit(source.clone()),
        Expanded::Listing(listing) => {
            if let Ok(f) = std::fs::File::open(&listing.spool) {
                for line in std::io::BufReader::new(f).lines().map_while(Result::ok) {
                    let Ok(entry) = serde_json::from_str::<Spooled>(&line) else {
                        continue;
                    };
                    if let Some(url) = parse_http_url(&entry.url) {
                        let mut source = from_url(url);
                        source.title = entry.title;
                        emit(source);
                    }
                }
            }
            for e in &listing.errors {
                emit(e.clone());
            }
        }
    }
}

fn spool(stdin: &mut dyn BufRead) -> Spool {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("summarize-stdin-{}-{n}", std::process::id()));
    let copied = std::fs::File::create(&path).and_then(|f| {
        let mut w = std::io::BufWriter::new(f);
        std::io::copy(stdin, &mut w)?;
        std::io::Write::flush(&mut w)
    });
    Spool {
        path,
        error: copied.err().map(|e| e.to_string()),
    }
}

/// Where a pass sends each source.
pub type Emit<'a> = &'a mut dyn FnMut(Source);

/// Unique ids without holding every id: the same URL twice is two inputs whose ids differ by a
/// `#N` suffix. A first pass marks ids seen before in a Bloom filter (about 1.8 bytes an input
/// at a 0.1% false-positive rate); only those candidates are counted exactly on later passes.
/// An id the filter never flagged occurred once, so the suffixes equal `make_ids_unique`'s.
#[derive(Clone)]
pub struct Unique {
    candidates: HashMap<String, usize>,
}

impl Unique {
    pub fn plan(inputs: &Inputs) -> (Unique, usize) {
        let mut bloom = Bloom::default();
        let mut candidates = HashMap::new();
        let mut n = 0;
        inputs.pass(&mut |s| {
            n += 1;
            if bloom.insert(&s.id) {
                candidates.insert(s.id, 0);
            }
        });
        (Unique { candidates }, n)
    }

    /// Fresh counts for another pass.
    pub fn restart(&mut self) {
        self.candidates.values_mut().for_each(|n| *n = 0);
    }

    pub fn apply(&mut self, s: &mut Source) {
        if let Some(n) = self.candidates.get_mut(&s.id) {
            *n += 1;
            if *n > 1 {
                s.id = format!("{}#{}", s.id, n);
            }
        }
    }
}

/// The sources a run processes, streamed: unique ids, `--public-only` confinement, then a
/// filter (the shard, what `--resume` keeps). `count` is a pass that only counts; `spawn`
/// produces them on a thread into a bounded channel, so memory holds a buffer, not the list.
#[derive(Clone)]
pub struct Stream {
    inputs: std::sync::Arc<Inputs>,
    unique: Unique,
    confine: bool,
    keep: std::sync::Arc<dyn Fn(&Source) -> bool + Send + Sync>,
}

impl Stream {
    pub fn new(
        inputs: Inputs,
        unique: Unique,
        confine: bool,
        keep: Box<dyn Fn(&Source) -> bool + Send + Sync>,
    ) -> Stream {
        Stream {
            inputs: std::sync::Arc::new(inputs),
            unique,
            confine,
            keep: keep.into(),
        }
    }

    fn pass(&mut self, emit: Emit) {
        self.unique.restart();
        let (unique, confine_on, keep) = (&mut self.unique, self.confine, &self.keep);
        self.inputs.pass(&mut |mut s| {
            unique.apply(&mut s);
            if confine_on {
                confine(&mut s);
            }
            if keep(&s) {
                emit(s)
            }
        });
    }

    /// The same stream with a further filter.
    pub fn and_then(self, also: Box<dyn Fn(&Source) -> bool + Send + Sync>) -> Stream {
        let keep = self.keep;
        Stream {
            keep: std::sync::Arc::new(move |s| keep(s) && also(s)),
            ..self
        }
    }

    /// How many sources a pass yields.
    pub fn count(&mut self) -> usize {
        let mut n = 0;
        self.pass(&mut |_| n += 1);
        n
    }

    /// Every source in order, from a thread, at most `buffer` ahead of the reader.
    pub fn spawn(mut self, buffer: usize) -> tokio::sync::mpsc::Receiver<Source> {
        let (tx, rx) = tokio::sync::mpsc::channel(buffer.max(1));
        std::thread::Builder::new()
            .name("inputs".into())
            .spawn(move || {
                let mut open = true;
                self.pass(&mut |s| {
                    // The run stopped reading (interrupted, broken pipe): stop expanding.
                    open = open && tx.blocking_send(s).is_ok();
                });
            })
            .expect("spawn the input thread");
        rx
    }
}

/// A scalable Bloom filter: layers of doubling size, each at a 0.1% false-positive rate.
#[derive(Default)]
struct Bloom {
    layers: Vec<(Vec<u64>, usize, usize)>, // bits, items, capacity
}

impl Bloom {
    const HASHES: u64 = 10;

    /// Adds `key`; true when it may have been added before.
    fn insert(&mut self, key: &str) -> bool {
        use std::hash::{Hash, Hasher};
        let hash = |seed: u64| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            seed.hash(&mut h);
            key.hash(&mut h);
            h.finish()
        };
        let (h1, h2) = (hash(1), hash(2) | 1);
        let len_bits = |bits: &Vec<u64>| bits.len() as u64 * 64;
        let seen = self.layers.iter().any(|(bits, _, _)| {
            (0..Self::HASHES).all(|i| {
                let b = h1.wrapping_add(i.wrapping_mul(h2)) % len_bits(bits);
                bits[(b / 64) as usize] & (1 << (b % 64)) != 0
            })
        });
        if seen {
            return true;
        }
        if self.layers.last().is_none_or(|(_, n, cap)| n >= cap) {
            let cap = self.layers.last().map_or(1 << 14, |(_, _, cap)| cap * 2);
            // 14.4 bits an item for 0.1% with 10 hashes.
            let words = (cap * 15).div_ceil(64);
            self.layers.push((vec![0u64; words], 0, cap));
        }
        let (bits, n, _) = self.layers.last_mut().expect("a layer");
        let len = bits.len() as u64 * 64;
        for i in 0..Self::HASHES {
            let b = h1.wrapping_add(i.wrapping_mul(h2)) % len;
            bits[(b / 64) as usize] |= 1 << (b % 64);
        }
        *n += 1;
        false
    }
}

fn invalid(display: &str, class: ErrorClass, message: String) -> Source {
    Source {
        id: display.to_string(),
        display: display.to_string(),
        kind: SourceKind::Invalid { class, message },
        reference: None,
        list_dir: None,
        title: None,
    }
}

fn from_url(url: Url) -> Source {
    Source {
        id: url.to_string(),
        display: url.to_string(),
        kind: SourceKind::Url(url),
        reference: None,
        list_dir: None,
        title: None,
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
        title: None,
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

fn expand(input: &str, out: Emit) {
    let lower = input.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        match parse_http_url(input) {
            Some(url) => out(from_url(url)),
            None => out(invalid(
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
        out(invalid(
            input,
            ErrorClass::NotFound,
            format!("'{input}' is not a URL, file or directory; URLs need http:// or https://"),
        ));
    }
}

fn expand_file(path: &Path, out: Emit) {
    let ext = extension(path);
    if ext == "jsonl" {
        parse_jsonl_file(path, out);
        return;
    }
    if !matches!(
        ext.as_str(),
        "html" | "htm" | "xhtml" | "md" | "markdown" | "pdf"
    ) {
        match sniff_list(path) {
            Sniff::List => {
                // Read line by line, whatever its size: a list of 200,000 URLs is still a list.
                if let Ok(f) = std::fs::File::open(path) {
                    let label = path.display().to_string();
                    parse_list_reader(std::io::BufReader::new(f), &label, parent(path), out);
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
    out(from_path(path.to_path_buf()));
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
    parse_list_reader(text.as_bytes(), label, Path::new("."), &mut |s| out.push(s))
}

/// `parse_list` reading line by line, for a list file in `base` (see `resolve`).
pub fn parse_list_reader(reader: impl BufRead, label: &str, base: &Path, out: Emit) {
    let mut reader = reader;
    let mut buf = Vec::new();
    let mut lineno = 0;
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                out(invalid(
                    label,
                    ErrorClass::Io,
                    format!("cannot read '{label}' after line {lineno}: {e}"),
                ));
                break;
            }
        }
        lineno += 1;
        let raw = String::from_utf8_lossy(&buf);
        list_line(&raw, lineno, label, base, out);
    }
}

fn list_line(raw: &str, lineno: usize, label: &str, base: &Path, out: Emit) {
    // ` #` starts a trailing comment; a `#` inside a URL is its fragment.
    let line = raw.split(" #").next().unwrap_or("");
    let line = line.trim().trim_start_matches('\u{feff}');
    if line.is_empty() || line.starts_with('#') {
        return;
    }
    if let Some(url) = parse_http_url(line) {
        out(from_url(url));
        return;
    }
    let mut in_list = |mut s: Source| {
        s.list_dir = Some(base.to_path_buf());
        out(s)
    };
    match resolve(line, base) {
        Some(path) if path.is_dir() => walk_dir(&path, &mut in_list),
        Some(path) => in_list(from_path(path)),
        None => {
            let candidate = base.join(line);
            let what = if candidate.symlink_metadata().is_ok() {
                "a symlink that leads nowhere (a loop or a dangling link)"
            } else {
                "neither an http(s) URL nor an existing path"
            };
            in_list(invalid(
                line,
                ErrorClass::InvalidInput,
                format!("{label} line {lineno}: '{line}' is {what}"),
            ))
        }
    }
}

/// `--public-only`: a file named by a list (or a JSONL file) must lie inside that list's
/// folder, after symlinks are followed; one that does not becomes an `invalid_input` record.
/// A list from someone else then cannot read `/etc/passwd` or `../../secrets`.
pub fn confine(s: &mut Source) {
    let (SourceKind::Path(path), Some(dir)) = (&s.kind, &s.list_dir) else {
        return;
    };
    let (Ok(real), Ok(root)) = (path.canonicalize(), dir.canonicalize()) else {
        return; // reading it reports the problem
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

fn walk_dir(dir: &Path, out: Emit) {
    let mut found = 0;
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
                found += 1;
                out(from_path(e.into_path()));
            }
            Ok(_) => {}
            Err(e) => {
                let shown = e
                    .path()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| dir.display().to_string());
                out(invalid(
                    &shown,
                    ErrorClass::Io,
                    format!("cannot read '{shown}': {e}"),
                ));
            }
        }
    }
    if found == 0 {
        let shown = dir.display().to_string();
        out(invalid(
            &shown,
            ErrorClass::NotFound,
            format!("directory '{shown}' holds no HTML, Markdown or text files"),
        ));
    }
}

fn expand_glob(pattern: &str, out: Emit) {
    let paths = match glob::glob(pattern) {
        Ok(paths) => paths,
        Err(e) => {
            out(invalid(
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
        out(invalid(
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

fn parse_jsonl_file(path: &Path, out: Emit) {
    let label = path.display().to_string();
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) => {
            out(invalid(
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
                out(invalid(
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
        out(jsonl_source(&line, &at, base_dir));
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
            title: None,
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

    /// Issue 10: the streamed ids (Bloom-flagged candidates counted exactly) equal the ids of
    /// the whole-vector rule, on a list with repeats, triples and 60,000 distinct URLs (past the
    /// first Bloom layer, so a second layer is used).
    #[test]
    fn issue10_streamed_ids_equal_the_collected_ids() {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("urls.txt");
        let mut text = String::new();
        for i in 0..60_000 {
            text.push_str(&format!("https://site.example/doc/{i}\n"));
            if i % 997 == 0 {
                text.push_str("https://site.example/doc/7\n");
            }
        }
        std::fs::write(&list, &text).unwrap();
        let args = [list.display().to_string()];
        let collected = collect(&args, &[], &mut "".as_bytes());
        let inputs = Inputs::new(&args, &[], &mut "".as_bytes());
        let (unique, n) = Unique::plan(&inputs);
        assert_eq!(n, collected.len());
        let mut stream = Stream::new(inputs, unique, false, Box::new(|_| true));
        assert_eq!(stream.count(), collected.len());
        let mut streamed = Vec::new();
        stream.pass(&mut |s| streamed.push(s.id));
        let ids: Vec<String> = collected.into_iter().map(|s| s.id).collect();
        assert_eq!(streamed, ids);
        assert!(ids.contains(&"https://site.example/doc/7#62".to_string()));
        let distinct: std::collections::HashSet<&String> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
    }

    /// Standard input is spooled once and read on every pass.
    #[test]
    fn issue10_stdin_is_read_once_and_passed_over_again() {
        let inputs = Inputs::new(
            &["-".to_string()],
            &[],
            &mut "https://a.example/\nhttps://b.example/\nhttps://a.example/\n".as_bytes(),
        );
        let (unique, n) = Unique::plan(&inputs);
        assert_eq!(n, 3);
        let mut stream = Stream::new(inputs, unique, false, Box::new(|s| !s.id.contains('b')));
        assert_eq!(stream.count(), 2);
        let mut ids = Vec::new();
        stream.pass(&mut |s| ids.push(s.id));
        assert_eq!(ids, ["https://a.example/", "https://a.example/#2"]);
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
