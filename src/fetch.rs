//! One shared HTTP client for every document: rustls, gzip/brotli/deflate, capped redirects,
//! a per-request deadline that covers the body, a size cap enforced while streaming (after
//! decompression, so a gzip bomb stops at the cap), and retries for transient failures.
//! Returns raw bytes plus what the server declared; decoding and extraction happen elsewhere.

use std::time::Duration;

use reqwest::header::{HeaderMap, CONTENT_TYPE};
use url::Url;

use std::sync::Arc;

use crate::cache::{Cache, CachedPage};
use crate::config::FetchConfig;
use crate::decode;
use crate::error::{DocError, ErrorClass};
use crate::ratelimit::PerHost;
use crate::retry;

/// What the tool calls itself on the wire.
pub const USER_AGENT: &str = concat!(
    "summarize/",
    env!("CARGO_PKG_VERSION"),
    " (batch summarizer)"
);

/// The redirect chain is cut here, so a loop fails fast.
const MAX_REDIRECTS: usize = 10;

/// A successful download.
#[derive(Debug)]
pub struct Fetched {
    /// Where the body came from after redirects.
    pub final_url: Url,
    /// The `Content-Type` header, if any.
    pub content_type: Option<String>,
    /// The decompressed body.
    pub body: Vec<u8>,
}

/// The shared HTTP client and its limits.
#[derive(Debug, Clone)]
pub struct Fetcher {
    client: reqwest::Client,
    config: FetchConfig,
    per_host: Arc<PerHost>,
    /// Pages with validators, for conditional requests.
    cache: Option<Cache>,
    /// robots.txt of every origin, unless `--ignore-robots`.
    robots: Option<Arc<crate::robots::Robots>>,
    /// The run's headless browser (`--render`), started when a page first needs it.
    renderer: Arc<crate::render::Renderer>,
}

/// Builds the reqwest client every part of the tool shares: fetching and backends alike.
/// The HTTP client. With an address policy (fetching inputs), names resolve through it and
/// every redirect target naming an IP address is checked; without (model backends), none.
pub fn build_client(
    timeout: Duration,
    policy: Option<crate::address::Policy>,
) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder();
    let redirect = match policy {
        Some(policy) => {
            if policy != crate::address::Policy::AllowAll {
                builder =
                    builder.dns_resolver(std::sync::Arc::new(crate::address::PolicyResolver {
                        policy,
                    }));
            }
            reqwest::redirect::Policy::custom(move |attempt| {
                let from = attempt.previous().last().map(Url::origin);
                if attempt.previous().len() >= MAX_REDIRECTS {
                    attempt.error("too many redirects")
                } else if let Some(blocked) = crate::address::check_literal(attempt.url(), policy) {
                    attempt.error(blocked)
                } else if from.is_some_and(|from| from != attempt.url().origin()) {
                    // Another site: the fetcher asks that site's robots.txt before going on
                    // (Fetcher::follow), so the hop is handed back instead of taken.
                    attempt.stop()
                } else {
                    attempt.follow()
                }
            })
        }
        None => reqwest::redirect::Policy::limited(MAX_REDIRECTS),
    };
    builder
        .user_agent(USER_AGENT)
        .redirect(redirect)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .timeout(timeout)
        .gzip(true)
        .brotli(true)
        .deflate(true)
        .build()
        .map_err(|e| anyhow::anyhow!("cannot build the HTTP client: {e}"))
}

impl Fetcher {
    pub fn new(client: reqwest::Client, config: FetchConfig, cache: Option<Cache>) -> Fetcher {
        Fetcher {
            per_host: Arc::new(PerHost::new(config.per_host)),
            robots: config.robots.then(Arc::default),
            renderer: Arc::new(crate::render::Renderer::new(
                config.render,
                config.render_tabs,
                config.timeout,
            )),
            client,
            config,
            cache,
        }
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    pub fn renderer(&self) -> &crate::render::Renderer {
        &self.renderer
    }

    /// Downloads one URL with retries, where its site's robots.txt allows it.
    pub async fn get(&self, url: &Url) -> Result<Fetched, DocError> {
        self.follow(url, false, true).await
    }

    /// A feed, sitemap or robots.txt: `get` whatever the content type. robots.txt is asked
    /// first unless `robots_itself`.
    pub async fn get_any(&self, url: &Url, robots_itself: bool) -> Result<Fetched, DocError> {
        self.follow(url, true, !robots_itself).await
    }

    /// `url`, and the redirects to other sites that the client hands back: each site's
    /// robots.txt is asked (where `robots`) before anything is fetched from it.
    async fn follow(&self, url: &Url, any_type: bool, robots: bool) -> Result<Fetched, DocError> {
        let mut at = url.clone();
        for _ in 0..=MAX_REDIRECTS {
            let delay = if robots {
                self.robots_allow(&at).await.map_err(|mut e| {
                    if &at != url {
                        e.message = format!("{url} redirects to {}", e.message);
                    }
                    e
                })?
            } else {
                None
            };
            let host = at.host_str().unwrap_or("").to_string();
            let hop = retry::with_retries(self.config.retries, |_| async {
                // Held per attempt, not across backoff sleeps.
                let _permit = self.per_host.acquire(&host).await;
                if let (Some(robots), Some(delay)) = (&self.robots, delay) {
                    robots.pace(&at, delay).await;
                }
                self.get_once(&at, any_type).await
            })
            .await?;
            match hop {
                Hop::Done(fetched) => return Ok(fetched),
                Hop::Redirect(next) => at = next,
            }
        }
        Err(DocError::new(
            ErrorClass::TooManyRedirects,
            format!("{url}: more than {MAX_REDIRECTS} redirects (a redirect loop?)"),
        ))
    }

    /// `robots_disallowed` when the site's robots.txt (fetched once per site) refuses `url`;
    /// else its Crawl-delay, if any. Nothing is asked with `--ignore-robots`.
    async fn robots_allow(&self, url: &Url) -> Result<Option<Duration>, DocError> {
        let Some(robots) = &self.robots else {
            return Ok(None);
        };
        let rules = robots
            .rules(url, |at| async move {
                crate::robots::Robots::from_fetch(self.get_plain(&at).await)
            })
            .await;
        crate::robots::Robots::check(&rules, url)?;
        Ok(rules.crawl_delay)
    }

    /// A URL's body with retries, no robots.txt asked (robots.txt itself).
    async fn get_plain(&self, url: &Url) -> Result<Vec<u8>, DocError> {
        // Boxed: `follow` asks robots.txt through here.
        Box::pin(self.follow(url, true, false))
            .await
            .map(|f| f.body)
    }

    /// One attempt. `any_type`: whatever the content type (feeds, sitemaps, robots.txt).
    async fn get_once(&self, url: &Url, any_type: bool) -> Result<Hop, DocError> {
        self.refuse_literal(url)?;
        let cached = self.cache.as_ref().and_then(|c| c.get_page(url.as_str()));
        let mut request = self.client.get(url.clone());
        if let Some((meta, _)) = &cached {
            if let Some(etag) = &meta.etag {
                request = request.header(reqwest::header::IF_NONE_MATCH, etag);
            }
            if let Some(lm) = &meta.last_modified {
                request = request.header(reqwest::header::IF_MODIFIED_SINCE, lm);
            }
        }
        let mut resp = request
            .timeout(self.config.timeout)
            .header(
                reqwest::header::ACCEPT,
                "text/html,application/xhtml+xml,text/markdown;q=0.9,text/plain;q=0.8,*/*;q=0.1",
            )
            .send()
            .await
            .map_err(|e| classify(&e, url))?;
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_MODIFIED {
            if let Some((meta, body)) = cached {
                tracing::debug!(%url, "not modified; using the cached page");
                return Ok(Hop::Done(Fetched {
                    final_url: Url::parse(&meta.final_url).unwrap_or_else(|_| url.clone()),
                    content_type: meta.content_type,
                    body,
                }));
            }
        }
        // A redirect to another site, handed back by the client's redirect policy.
        if status.is_redirection() {
            let next = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|loc| resp.url().join(loc).ok());
            if let Some(next) = next {
                return Ok(Hop::Redirect(next));
            }
        }
        if !status.is_success() {
            return Err(status_error(status, resp.headers(), url));
        }
        let header = |name: reqwest::header::HeaderName| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let (etag, last_modified) = (
            header(reqwest::header::ETAG),
            header(reqwest::header::LAST_MODIFIED),
        );
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let essence = content_type
            .as_deref()
            .map(decode::mime_essence)
            .unwrap_or_default();
        // A PDF served as a download (`application/octet-stream`) is known by its first bytes.
        let sniff_pdf = essence == "application/octet-stream" || essence == "binary/octet-stream";
        if !any_type && !sniff_pdf && !decode::supported_mime(&essence) {
            return Err(DocError::new(
                ErrorClass::UnsupportedContent,
                format!("{url}: content type {essence} is not supported (HTML, Markdown, plain text and PDF are)"),
            ));
        }
        let body = read_capped(&mut resp, url, self.config.max_bytes, |body| {
            if sniff_pdf && !any_type && body.len() >= 5 && !body.starts_with(b"%PDF-") {
                return Err(DocError::new(
                    ErrorClass::UnsupportedContent,
                    format!("{url}: content type {essence} is not supported (HTML, Markdown, plain text and PDF are)"),
                ));
            }
            Ok(())
        })
        .await?;
        if let Some(cache) = &self.cache {
            if etag.is_some() || last_modified.is_some() {
                let meta = CachedPage {
                    etag,
                    last_modified,
                    content_type: content_type.clone(),
                    final_url: resp.url().to_string(),
                };
                cache.put_page(url.as_str(), &meta, &body);
            }
        }
        Ok(Hop::Done(Fetched {
            final_url: resp.url().clone(),
            content_type,
            body,
        }))
    }
}

/// One request's outcome: the document, or a redirect to another site to follow.
enum Hop {
    Done(Fetched),
    Redirect(Url),
}

/// A rendered page's own request answered: status, headers (body framing removed: the body is
/// whole and decoded), body.
#[derive(Debug)]
pub struct SubResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Fetcher {
    /// A request a page makes while it renders (`--render`): its scripts and their data. One
    /// attempt through the run's client, so the address policy, `--timeout` and `--max-bytes`
    /// hold; whatever the status (the page's scripts handle a 404 themselves). No robots.txt:
    /// like a browser's, these are a page's parts, not pages.
    pub async fn subrequest(
        &self,
        method: &str,
        url: &Url,
        headers: &[(String, String)],
        body: Option<Vec<u8>>,
    ) -> Result<SubResponse, DocError> {
        self.refuse_literal(url)?;
        let method = reqwest::Method::from_bytes(method.as_bytes()).map_err(|_| {
            DocError::new(
                ErrorClass::InvalidInput,
                format!("{url}: method {method:?}"),
            )
        })?;
        let mut request = self.client.request(method, url.clone());
        for (name, value) in headers {
            // The client frames and decodes bodies itself, and speaks as this tool.
            let lower = name.to_ascii_lowercase();
            if matches!(
                lower.as_str(),
                "host" | "connection" | "content-length" | "accept-encoding" | "user-agent"
            ) {
                continue;
            }
            request = request.header(name.as_str(), value.as_str());
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        // A page's parts count against --per-host like pages do.
        let _permit = self.per_host.acquire(url.host_str().unwrap_or("")).await;
        let mut resp = request
            .timeout(self.config.timeout)
            .send()
            .await
            .map_err(|e| classify(&e, url))?;
        let headers: Vec<(String, String)> = resp
            .headers()
            .iter()
            .filter(|(name, _)| {
                !matches!(
                    name.as_str(),
                    "content-encoding" | "content-length" | "transfer-encoding" | "connection"
                )
            })
            .filter_map(|(name, value)| Some((name.to_string(), value.to_str().ok()?.to_string())))
            .collect();
        let status = resp.status().as_u16();
        let body = read_capped(&mut resp, url, self.config.max_bytes, |_| Ok(())).await?;
        Ok(SubResponse {
            status,
            headers,
            body,
        })
    }
}

impl Fetcher {
    /// `blocked_address` for a URL that names a refused IP address directly (names are
    /// checked as they resolve).
    fn refuse_literal(&self, url: &Url) -> Result<(), DocError> {
        match crate::address::check_literal(url, self.config.address) {
            Some(blocked) => Err(DocError::new(
                ErrorClass::BlockedAddress,
                format!("{url}: {blocked}"),
            )),
            None => Ok(()),
        }
    }
}

/// A response's body, decompressed, refused as `too_large` past `max` bytes (by its declared
/// length before reading, by what arrives while reading); `check` sees the body after each
/// chunk and may stop it.
async fn read_capped(
    resp: &mut reqwest::Response,
    url: &Url,
    max: u64,
    mut check: impl FnMut(&[u8]) -> Result<(), DocError>,
) -> Result<Vec<u8>, DocError> {
    if resp.content_length().is_some_and(|n| n > max) {
        return Err(too_large(url, max));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| classify(&e, url))? {
        if body.len() as u64 + chunk.len() as u64 > max {
            return Err(too_large(url, max));
        }
        body.extend_from_slice(&chunk);
        check(&body)?;
    }
    Ok(body)
}

fn too_large(url: &Url, max: u64) -> DocError {
    DocError::new(
        ErrorClass::TooLarge,
        format!("{url}: body is larger than {max} bytes; raise --max-bytes to accept it"),
    )
}

/// Maps a non-2xx status to an error, keeping `Retry-After` for the retry loop.
pub fn status_error(status: reqwest::StatusCode, headers: &HeaderMap, url: &Url) -> DocError {
    let code = status.as_u16();
    let reason = status.canonical_reason().unwrap_or("");
    let (class, hint) = match code {
        429 => (
            ErrorClass::RateLimited,
            "the server is rate limiting; lower --jobs or retry later",
        ),
        404 | 410 => (ErrorClass::HttpClientError, "check the URL"),
        401 | 403 => (
            ErrorClass::HttpClientError,
            "the page needs a login or blocks this client",
        ),
        400..=499 => (ErrorClass::HttpClientError, "check the URL"),
        _ => (
            ErrorClass::HttpServerError,
            "the server failed; retry later",
        ),
    };
    let mut err =
        DocError::new(class, format!("{url}: HTTP {code} {reason} ({hint})")).with_status(code);
    if matches!(code, 429 | 503) {
        err.retry_after = retry::retry_after(headers);
    }
    err
}

/// Sorts a reqwest failure into the classes the report uses.
pub fn classify(e: &reqwest::Error, url: &Url) -> DocError {
    let chain = error_chain(e);
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(blocked) = s.downcast_ref::<crate::address::Blocked>() {
            return DocError::new(ErrorClass::BlockedAddress, format!("{url}: {blocked}"));
        }
        source = s.source();
    }
    let (class, what) = if e.is_timeout() {
        (
            ErrorClass::Timeout,
            "timed out; raise --timeout for slow servers".to_string(),
        )
    } else if e.is_redirect() {
        (
            ErrorClass::TooManyRedirects,
            format!("more than {MAX_REDIRECTS} redirects (a redirect loop?)"),
        )
    } else if chain.contains("dns error") || chain.contains("failed to lookup address") {
        (
            ErrorClass::Dns,
            "host name does not resolve; check the URL".to_string(),
        )
    } else if [
        "end of file",
        "reset",
        "connection closed",
        "broken pipe",
        "incomplete",
    ]
    .iter()
    .any(|m| chain.to_ascii_lowercase().contains(m))
    {
        (
            ErrorClass::Connect,
            format!("the connection broke off mid-response ({chain})"),
        )
    } else if e.is_decode() {
        (
            ErrorClass::Decode,
            format!("cannot decode the response ({chain})"),
        )
    } else if e.is_connect() {
        (ErrorClass::Connect, format!("cannot connect ({chain})"))
    } else {
        (ErrorClass::Connect, format!("connection failed ({chain})"))
    };
    DocError::new(class, format!("{url}: {what}"))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let s_text = s.to_string();
        if !parts.iter().any(|p| p.contains(&s_text)) {
            parts.push(s_text);
        }
        cur = s.source();
    }
    parts.join(": ")
}
