//! robots.txt (RFC 9309), honoured for every fetched URL unless `--ignore-robots`: fetched
//! once per origin and kept for the run, the group for our product token (`summarize`) or
//! else `*`, longest match wins with `allow` winning a tie, `*` and `$` in patterns, and
//! `Crawl-delay` as the least time between two requests to that origin.
//!
//! A robots.txt that answers 4xx (none there) allows everything; one that answers 5xx or 429
//! after the retries disallows everything, as the RFC says; one that cannot be reached at all
//! (DNS, refused connection) decides nothing: the page's own fetch reports what is wrong.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::OnceCell;
use url::Url;

use crate::error::{DocError, ErrorClass};

/// The product token matched against `User-agent` lines.
pub const AGENT: &str = "summarize";

/// Bytes of a robots.txt that are read (the RFC asks for at least 500 KiB).
const MAX_BYTES: usize = 512 * 1024;

/// Crawl-delay above this is cut to it: a minute between pages is as slow as a batch goes.
pub const MAX_DELAY: Duration = Duration::from_secs(60);

/// The rules that apply to us, from one robots.txt.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rules {
    /// (allow, pattern) of the group that applies.
    rules: Vec<(bool, String)>,
    /// `Crawl-delay` of that group, capped at `MAX_DELAY`.
    pub crawl_delay: Option<Duration>,
    /// `Sitemap:` lines (they belong to no group).
    pub sitemaps: Vec<String>,
    /// Why everything is refused (a robots.txt that answered 5xx), if so.
    refuse_all: Option<String>,
}

impl Rules {
    /// Parses robots.txt text for the product token `agent`.
    pub fn parse(text: &str, agent: &str) -> Rules {
        struct Group {
            agents: Vec<String>,
            rules: Vec<(bool, String)>,
            delay: Option<f64>,
        }
        let mut groups: Vec<Group> = Vec::new();
        let mut sitemaps = Vec::new();
        let mut in_agents = false;
        for raw in text.lines() {
            let line = raw.split('#').next().unwrap_or("").trim();
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let key = key.trim().to_ascii_lowercase();
            let value = value.trim();
            match key.as_str() {
                "user-agent" => {
                    if !in_agents {
                        groups.push(Group {
                            agents: Vec::new(),
                            rules: Vec::new(),
                            delay: None,
                        });
                        in_agents = true;
                    }
                    // The product token, without a version (`summarize/0.1` is `summarize`).
                    let token = value
                        .split_whitespace()
                        .next()
                        .unwrap_or("")
                        .split('/')
                        .next()
                        .unwrap_or("");
                    if let Some(g) = groups.last_mut() {
                        g.agents.push(token.to_ascii_lowercase());
                    }
                }
                "allow" | "disallow" => {
                    in_agents = false;
                    if let Some(g) = groups.last_mut() {
                        // An empty `Disallow:` is no rule at all.
                        if !value.is_empty() {
                            g.rules.push((key == "allow", value.to_string()));
                        }
                    }
                }
                "crawl-delay" => {
                    in_agents = false;
                    if let (Some(g), Ok(s)) = (groups.last_mut(), value.parse::<f64>()) {
                        if s.is_finite() && s >= 0.0 {
                            g.delay = Some(s);
                        }
                    }
                }
                "sitemap" => sitemaps.push(value.to_string()),
                _ => {}
            }
        }
        let agent = agent.to_ascii_lowercase();
        let ours: Vec<&Group> = groups
            .iter()
            .filter(|g| g.agents.contains(&agent))
            .collect();
        let chosen = if ours.is_empty() {
            groups
                .iter()
                .filter(|g| g.agents.iter().any(|a| a == "*"))
                .collect()
        } else {
            ours
        };
        Rules {
            rules: chosen.iter().flat_map(|g| g.rules.clone()).collect(),
            crawl_delay: chosen
                .iter()
                .filter_map(|g| g.delay)
                .reduce(f64::max)
                .map(|s| Duration::from_secs_f64(s).min(MAX_DELAY)),
            sitemaps,
            refuse_all: None,
        }
    }

    /// Everything refused, for the reason given.
    pub fn refuse_all(reason: String) -> Rules {
        Rules {
            refuse_all: Some(reason),
            ..Rules::default()
        }
    }

    /// Whether `path` (path and query of a URL) may be fetched: the longest matching pattern
    /// decides, `allow` on a tie; no match allows. `/robots.txt` itself is always allowed.
    pub fn allowed(&self, path: &str) -> bool {
        if self.refuse_all.is_some() {
            return false;
        }
        if path == "/robots.txt" {
            return true;
        }
        let mut best: Option<(usize, bool)> = None;
        for (allow, pattern) in &self.rules {
            if matches(pattern, path) {
                let len = pattern.len();
                best = match best {
                    Some((l, a)) if l > len || (l == len && a) => Some((l, a)),
                    _ => Some((len, *allow)),
                };
            }
        }
        best.is_none_or(|(_, allow)| allow)
    }
}

/// Whether a robots.txt pattern matches `path` from its start: `*` is any run of characters,
/// a final `$` anchors the end.
fn matches(pattern: &str, path: &str) -> bool {
    let (pattern, anchored) = match pattern.strip_suffix('$') {
        Some(p) => (p, true),
        None => (pattern, false),
    };
    let parts: Vec<&str> = pattern.split('*').collect();
    let mut rest = path;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(part) else {
                return false;
            };
            rest = r;
        } else if i == parts.len() - 1 && anchored {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
    }
    !anchored || rest.is_empty()
}

/// robots.txt of every origin a run touches, each fetched once.
#[derive(Debug, Default)]
pub struct Robots {
    origins: Mutex<HashMap<String, Arc<OnceCell<Arc<Rules>>>>>,
    /// When the next request to an origin with a Crawl-delay may start.
    next: tokio::sync::Mutex<HashMap<String, tokio::time::Instant>>,
}

/// `scheme://host:port` of a URL.
pub fn origin(url: &Url) -> String {
    format!(
        "{}://{}:{}",
        url.scheme(),
        url.host_str().unwrap_or(""),
        url.port_or_known_default().unwrap_or(0)
    )
}

impl Robots {
    /// The rules for `url`'s origin, fetched through `fetch` the first time it is asked.
    pub async fn rules<F, Fut>(&self, url: &Url, fetch: F) -> Arc<Rules>
    where
        F: FnOnce(Url) -> Fut,
        Fut: std::future::Future<Output = Rules>,
    {
        let origin = origin(url);
        let cell = {
            let mut map = self.origins.lock().unwrap_or_else(|e| e.into_inner());
            map.entry(origin).or_default().clone()
        };
        cell.get_or_init(|| async {
            let mut robots = url.clone();
            robots.set_path("/robots.txt");
            robots.set_query(None);
            robots.set_fragment(None);
            Arc::new(fetch(robots).await)
        })
        .await
        .clone()
    }

    /// `robots_disallowed` when the rules refuse `url`.
    pub fn check(rules: &Rules, url: &Url) -> Result<(), DocError> {
        let path = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        };
        if rules.allowed(&path) {
            return Ok(());
        }
        let why = match &rules.refuse_all {
            Some(reason) => reason.clone(),
            None => "its robots.txt disallows this path for summarize".to_string(),
        };
        Err(DocError::new(
            ErrorClass::RobotsDisallowed,
            format!("{url}: {why}; --ignore-robots fetches it anyway"),
        ))
    }

    /// Waits for the origin's Crawl-delay since the previous request, and books the next slot.
    pub async fn pace(&self, url: &Url, delay: Duration) {
        let wait_until = {
            let mut next = self.next.lock().await;
            let now = tokio::time::Instant::now();
            let slot = next.get(&origin(url)).copied().unwrap_or(now).max(now);
            next.insert(origin(url), slot + delay);
            slot
        };
        tokio::time::sleep_until(wait_until).await;
    }

    /// Robots.txt as fetched: its rules; 4xx allows all; 5xx/429 refuses all; a network
    /// failure decides nothing.
    pub fn from_fetch(result: Result<Vec<u8>, DocError>) -> Rules {
        match result {
            Ok(mut body) => {
                body.truncate(MAX_BYTES);
                Rules::parse(&String::from_utf8_lossy(&body), AGENT)
            }
            Err(e) => match e.class {
                ErrorClass::HttpServerError | ErrorClass::RateLimited => Rules::refuse_all(format!(
                    "its robots.txt answered HTTP {} (RFC 9309: a server error means nothing may be fetched)",
                    e.http_status.map_or("5xx".to_string(), |s| s.to_string())
                )),
                _ => Rules::default(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Examples from RFC 9309 §2.2.2 and §5.2, and Google's documentation of matching.
    #[test]
    fn longest_match_wins_and_allow_wins_a_tie() {
        let r = Rules::parse(
            "User-agent: *\nDisallow: /private\nAllow: /private/public\nDisallow: /*.pdf$\nAllow: /page\nDisallow: /page\n",
            AGENT,
        );
        assert!(!r.allowed("/private/x"));
        assert!(r.allowed("/private/public/x"));
        assert!(!r.allowed("/files/a.pdf"));
        assert!(r.allowed("/files/a.pdf?x=1"));
        assert!(r.allowed("/page"), "allow wins a tie");
        assert!(r.allowed("/other"));
        assert!(r.allowed("/robots.txt"));
    }

    #[test]
    fn our_group_wins_over_star_and_groups_combine() {
        let text = "User-agent: *\nDisallow: /\n\nUser-agent: Summarize\nUser-agent: other\nDisallow: /drafts/\nCrawl-delay: 2\n\nUser-agent: summarize/0.1\nDisallow: /tmp\nSitemap: https://example.com/sitemap.xml\n";
        let r = Rules::parse(text, AGENT);
        assert!(r.allowed("/news/1"));
        assert!(!r.allowed("/drafts/a"));
        assert!(
            !r.allowed("/tmp/x"),
            "a group naming summarize/0.1 is ours too"
        );
        assert_eq!(r.crawl_delay, Some(Duration::from_secs(2)));
        assert_eq!(r.sitemaps, ["https://example.com/sitemap.xml"]);
        let other = Rules::parse(text, "somebot");
        assert!(!other.allowed("/news/1"));
    }

    #[test]
    fn wildcards_anchors_and_empty_rules() {
        assert!(matches("/fish*", "/fish.html"));
        assert!(matches("/*.php", "/folder/filename.php?x"));
        assert!(!matches("/*.php$", "/filename.php?x"));
        assert!(matches("/*.php$", "/a/b.php"));
        assert!(matches("/fish*.php", "/fishheads/catfish.php?p"));
        assert!(!matches("/fish", "/Fish.asp"));
        assert!(matches("/$", "/"));
        assert!(!matches("/$", "/a"));
        let r = Rules::parse("User-agent: *\nDisallow:\n", AGENT);
        assert!(r.allowed("/anything"));
        assert!(Rules::parse("", AGENT).allowed("/x"));
        assert!(!Rules::refuse_all("x".into()).allowed("/x"));
    }
}
