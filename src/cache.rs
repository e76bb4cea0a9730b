//! The on-disk cache: summaries keyed by a hash of everything that determines them (extracted
//! text, backend, model, prompt text, length, language, sampling), and the validators
//! (ETag, Last-Modified) plus body of fetched pages for conditional requests. A nightly run over
//! an unchanged feed makes no model calls. Entries are written atomically (temp file, rename);
//! an unreadable entry is a miss, never an error. Secrets are never part of a key or an entry.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Bump when the meaning of an entry changes, so old entries stop matching.
const VERSION: &str = "summarize-cache-v3";

/// A cached summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CachedSummary {
    pub summary: String,
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub chunks: usize,
    #[serde(default)]
    pub preselected_words: Option<usize>,
    #[serde(default)]
    pub truncated: bool,
    #[serde(default)]
    pub instructions_dropped: usize,
}

/// Validators and body of an earlier fetch of a URL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CachedPage {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub content_type: Option<String>,
    pub final_url: String,
}

#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

/// Hex SHA-256 of the parts, each length-prefixed so that no two part lists collide.
pub fn key(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    h.update(VERSION.as_bytes());
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

impl Cache {
    /// `--cache-dir`, else the platform cache directory (XDG on Linux) plus `summarize`.
    pub fn default_dir() -> Option<PathBuf> {
        dirs::cache_dir().map(|d| d.join("summarize"))
    }

    pub fn new(dir: PathBuf) -> Cache {
        Cache { dir }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, kind: &str, key: &str, ext: &str) -> PathBuf {
        self.dir
            .join(kind)
            .join(&key[..2])
            .join(format!("{key}.{ext}"))
    }

    pub fn get_summary(&self, key: &str) -> Option<CachedSummary> {
        read_json(&self.path("summaries", key, "json"))
    }

    pub fn put_summary(&self, key: &str, entry: &CachedSummary) {
        write_atomic(
            &self.path("summaries", key, "json"),
            &serde_json::to_vec(entry).unwrap_or_default(),
        );
    }

    /// The validators and body of a URL's last successful fetch.
    pub fn get_page(&self, url: &str) -> Option<(CachedPage, Vec<u8>)> {
        let k = key(&["page", url]);
        let meta: CachedPage = read_json(&self.path("pages", &k, "json"))?;
        let body = std::fs::read(self.path("pages", &k, "body")).ok()?;
        Some((meta, body))
    }

    pub fn put_page(&self, url: &str, meta: &CachedPage, body: &[u8]) {
        let k = key(&["page", url]);
        // Body first: a meta file never points at a missing body.
        write_atomic(&self.path("pages", &k, "body"), body);
        write_atomic(
            &self.path("pages", &k, "json"),
            &serde_json::to_vec(meta).unwrap_or_default(),
        );
    }
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Option<T> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// Best effort: a cache that cannot be written only costs a recomputation next time.
fn write_atomic(path: &Path, bytes: &[u8]) {
    let Some(dir) = path.parent() else { return };
    if std::fs::create_dir_all(dir).is_err() {
        tracing::debug!(dir = %dir.display(), "cache directory not writable");
        return;
    }
    let _ = replace_file(path, bytes);
}

/// Writes `bytes` to `path` so that a reader sees the old file or the new one, never half of
/// one: a temporary file beside it (a name of its own per process and call, starting with a
/// dot and not ending like the target, so globbing readers skip it), then a rename. The
/// temporary file is removed when either step fails. Cache entries and `--metrics` use it.
pub fn replace_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let tmp = dir.join(format!(".tmp-{}-{}", std::process::id(), fastrand::u64(..)));
    let result = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unambiguous() {
        assert_ne!(key(&["ab", "c"]), key(&["a", "bc"]));
        assert_eq!(key(&["x"]), key(&["x"]));
    }

    #[test]
    fn summaries_and_pages_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path().to_path_buf());
        let k = key(&["text", "model"]);
        assert!(cache.get_summary(&k).is_none());
        let entry = CachedSummary {
            summary: "s".into(),
            tokens_in: 3,
            tokens_out: 1,
            chunks: 1,
            preselected_words: Some(240),
            truncated: true,
            instructions_dropped: 0,
        };
        cache.put_summary(&k, &entry);
        assert_eq!(cache.get_summary(&k), Some(entry));
        let meta = CachedPage {
            etag: Some("\"v1\"".into()),
            last_modified: None,
            content_type: Some("text/html".into()),
            final_url: "https://x.example/".into(),
        };
        cache.put_page("https://x.example/", &meta, b"<p>hi</p>");
        assert_eq!(
            cache.get_page("https://x.example/"),
            Some((meta, b"<p>hi</p>".to_vec()))
        );
        std::fs::write(cache.path("summaries", &k, "json"), b"{torn").unwrap();
        assert!(cache.get_summary(&k).is_none(), "a damaged entry is a miss");
    }
}
