//! `--render never|auto|always`: pages whose text is written by JavaScript, read again through a
//! real headless Chromium driven over the DevTools protocol (chromiumoxide).
//!
//! One browser per run, started at the first page that needs it and stopped with the run (it
//! is also killed with this process: `PR_SET_PDEATHSIG`). At most `tabs` pages render at once,
//! each within `--timeout`.
//!
//! The browser reaches nothing by itself. Its host resolver maps every name to nothing, and
//! every request it makes is paused (the DevTools Fetch domain) and answered here: the page
//! with the body this tool already fetched (robots.txt and all), its scripts and their data
//! through the run's own HTTP client, so the address policy (`--public-only`), `--timeout` and
//! `--max-bytes` hold for them as for any fetch. Images, fonts, media and style sheets are
//! refused: text needs none of them.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use chromiumoxide::cdp::browser_protocol::fetch::{
    EventRequestPaused, FailRequestParams, FulfillRequestParams, HeaderEntry,
};
use chromiumoxide::cdp::browser_protocol::network::{ErrorReason, ResourceType};
use chromiumoxide::handler::HandlerConfig;
use chromiumoxide::{Browser, Page};
use futures::StreamExt;
use url::Url;

use crate::error::{DocError, ErrorClass};
use crate::fetch::Fetcher;

/// `--render`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Mode {
    /// Never start a browser: today's static extraction only.
    Never,
    /// Render a page again in Chromium when it extracts to (almost) nothing and looks built by
    /// JavaScript.
    #[default]
    Auto,
    /// Render every HTML page fetched by URL.
    Always,
}

/// Fewer words than this from the static HTML, on a page that looks script-built, and `auto`
/// renders it.
pub const AUTO_WORDS: usize = 50;

/// How to get a browser, for messages.
pub const INSTALL_HINT: &str = "install Chromium (Debian/Ubuntu: sudo apt-get install chromium) or set SUMMARIZE_CHROMIUM to a Chrome or Chromium binary";

/// A page's rendering is done when no request of it has been in flight and its text has not
/// changed for this long (scripts that write after a timer or a fetch get this much time).
const QUIET: Duration = Duration::from_millis(800);

/// The Chromium binary: `SUMMARIZE_CHROMIUM`, else the usual names on `PATH`.
pub fn find_chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("SUMMARIZE_CHROMIUM") {
        let p = PathBuf::from(p);
        return is_executable(&p).then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for name in [
            "chromium",
            "chromium-browser",
            "google-chrome",
            "google-chrome-stable",
            "chrome",
            "headless_shell",
        ] {
            let p = dir.join(name);
            if is_executable(&p) {
                return Some(p);
            }
        }
    }
    None
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Whether static HTML that extracted to little looks like a page JavaScript builds: it has
/// scripts, and either a framework's mark (an empty mount point, `<noscript>`, hydration data)
/// or hardly any text outside them.
pub fn looks_script_built(html: &str) -> bool {
    let lower = html.to_ascii_lowercase();
    if !lower.contains("<script") {
        return false;
    }
    const MARKS: &[&str] = &[
        "<noscript",
        "id=\"root\"",
        "id=\"app\"",
        "id=\"__next\"",
        "id=\"__nuxt\"",
        "id=\"svelte\"",
        "id='root'",
        "id='app'",
        "data-reactroot",
        "ng-app",
        "ng-version",
        "__next_data__",
        "window.__initial_state__",
        "enable javascript",
    ];
    MARKS.iter().any(|m| lower.contains(m)) || visible_chars(&lower) < 1000
}

/// Characters of text outside tags, scripts and styles (a rough count, lowercased HTML).
fn visible_chars(lower: &str) -> usize {
    let mut n = 0;
    let mut rest = lower;
    while let Some(lt) = rest.find('<') {
        n += rest[..lt].trim().chars().count();
        rest = &rest[lt..];
        let skip_to = if rest.starts_with("<script") {
            "</script"
        } else if rest.starts_with("<style") {
            "</style"
        } else {
            ">"
        };
        match rest.find(skip_to) {
            Some(i) => {
                rest = &rest[i + skip_to.len()..];
                if skip_to != ">" {
                    rest = rest.find('>').map_or("", |j| &rest[j + 1..]);
                }
            }
            None => return n,
        }
    }
    n + rest.trim().chars().count()
}

/// One browser for the run, started on demand.
pub struct Renderer {
    mode: Mode,
    executable: Option<PathBuf>,
    tabs: tokio::sync::Semaphore,
    timeout: Duration,
    state: tokio::sync::Mutex<State>,
    warned: AtomicBool,
}

enum State {
    Idle,
    Up(Arc<Browser>, Running),
    /// The browser would not start; every page is told why, once per run.
    Failed(String),
}

/// What stopping the browser takes.
struct Running {
    child: std::process::Child,
    handler: tokio::task::JoinHandle<()>,
    profile: PathBuf,
}

impl Running {
    /// Waits up to `grace` for the browser to exit by itself (it was asked to close, and
    /// closes its renderers with it), then stops it.
    async fn stop_within(mut self, grace: Duration) {
        let until = Instant::now() + grace;
        while Instant::now() < until && matches!(self.child.try_wait(), Ok(None)) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.stop();
    }

    /// Kills the browser, if still there, and removes its profile.
    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.handler.abort();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

impl std::fmt::Debug for Renderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Renderer")
            .field("mode", &self.mode)
            .field("executable", &self.executable)
            .finish_non_exhaustive()
    }
}

impl Renderer {
    /// `tabs`: pages rendered at once; `timeout`: each page's deadline (`--timeout`).
    pub fn new(mode: Mode, tabs: usize, timeout: Duration) -> Renderer {
        Renderer {
            mode,
            executable: if mode == Mode::Never {
                None
            } else {
                find_chromium()
            },
            tabs: tokio::sync::Semaphore::new(tabs.max(1)),
            timeout,
            state: tokio::sync::Mutex::new(State::Idle),
            warned: AtomicBool::new(false),
        }
    }

    /// `always`: every HTML page fetched by URL is rendered.
    pub fn always(&self) -> bool {
        self.mode == Mode::Always && self.executable.is_some()
    }

    /// `auto`, for a page whose static HTML extracted to `words`: render it again? With no
    /// Chromium installed, says so once and keeps today's behaviour.
    pub fn wanted(&self, html: &str, words: usize) -> bool {
        if self.mode != Mode::Auto || words >= AUTO_WORDS || !looks_script_built(html) {
            return false;
        }
        if self.executable.is_none() {
            if !self.warned.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    "a page looks built by JavaScript, but no Chromium was found to render it (--render auto); such pages keep only what their HTML holds without scripts (often nothing: empty_extraction): {INSTALL_HINT}"
                );
            }
            return false;
        }
        true
    }

    /// The page's HTML after its scripts ran. `html` is the page as fetched from `url` (after
    /// redirects) and decoded to UTF-8: it answers the browser's navigation, so the page is
    /// not downloaded twice.
    pub async fn render(
        &self,
        url: &Url,
        html: &str,
        fetcher: &Fetcher,
    ) -> Result<String, DocError> {
        let _tab = self.tabs.acquire().await.ok();
        let fail = |what: String| DocError::new(ErrorClass::RenderFailed, format!("{url}: {what}"));
        let browser = self.browser().await.map_err(&fail)?;
        let deadline = tokio::time::Instant::now() + self.timeout;
        let tab = tokio::time::timeout_at(deadline, browser.new_page("about:blank"))
            .await
            .map_err(|_| fail("the browser did not open a tab within --timeout".into()))?
            .map_err(|e| fail(format!("the browser did not open a tab: {e}")))?;
        let result = self.render_in(&tab, url, html, fetcher, deadline).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), tab.close()).await;
        result.map_err(fail)
    }

    async fn render_in(
        &self,
        tab: &Page,
        url: &Url,
        html: &str,
        fetcher: &Fetcher,
        deadline: tokio::time::Instant,
    ) -> Result<String, String> {
        let mut paused = tab
            .event_listener::<EventRequestPaused>()
            .await
            .map_err(|e| format!("the browser refused a listener: {e}"))?;
        let activity = Arc::new(Activity::new());
        let main = Arc::new(MainPage {
            url: url.to_string(),
            body: base64::engine::general_purpose::STANDARD.encode(html),
            served: AtomicBool::new(false),
        });
        let answering = {
            let (tab, fetcher, activity) = (tab.clone(), fetcher.clone(), activity.clone());
            AbortOnDrop(tokio::spawn(async move {
                while let Some(event) = paused.next().await {
                    let (tab, fetcher, activity, main) =
                        (tab.clone(), fetcher.clone(), activity.clone(), main.clone());
                    activity.begin();
                    tokio::spawn(async move {
                        answer(&tab, &event, &fetcher, &main).await;
                        activity.end();
                    });
                }
            }))
        };
        let navigated = tokio::time::timeout_at(deadline, tab.goto(url.as_str())).await;
        if let Ok(Err(e)) = navigated {
            return Err(format!("the browser could not load the page: {e}"));
        }
        settle(tab, &activity, deadline).await;
        drop(answering);
        let html = tokio::time::timeout(Duration::from_secs(5), tab.content())
            .await
            .map_err(|_| "the browser did not hand back the page".to_string())?
            .map_err(|e| format!("the browser did not hand back the page: {e}"))?;
        Ok(html)
    }

    /// The browser, started at the first call.
    async fn browser(&self) -> Result<Arc<Browser>, String> {
        let mut state = self.state.lock().await;
        match &*state {
            State::Up(browser, _) => return Ok(browser.clone()),
            State::Failed(why) => return Err(why.clone()),
            State::Idle => {}
        }
        let Some(exe) = &self.executable else {
            return Err(format!("no Chromium was found: {INSTALL_HINT}"));
        };
        match launch(exe, self.timeout).await {
            Ok((browser, running)) => {
                let browser = Arc::new(browser);
                *state = State::Up(browser.clone(), running);
                Ok(browser)
            }
            Err(why) => {
                let why = format!("the browser ({}) did not start: {why}", exe.display());
                tracing::warn!("{why}; pages that need it are reported as render_failed");
                *state = State::Failed(why.clone());
                Err(why)
            }
        }
    }

    /// Stops the browser, if one was started (the next page starts another).
    pub async fn shutdown(&self) {
        let mut state = self.state.lock().await;
        if let State::Up(browser, running) = std::mem::replace(&mut *state, State::Idle) {
            use chromiumoxide::cdp::browser_protocol::browser::CloseParams;
            let asked = tokio::time::timeout(
                Duration::from_secs(2),
                browser.execute(CloseParams::default()),
            )
            .await;
            let grace = if matches!(asked, Ok(Ok(_))) { 2 } else { 0 };
            running.stop_within(Duration::from_secs(grace)).await;
        }
    }
}

impl Drop for Renderer {
    fn drop(&mut self) {
        if let Ok(mut state) = self.state.try_lock() {
            if let State::Up(_, running) = std::mem::replace(&mut *state, State::Idle) {
                running.stop();
            }
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts Chromium headless on a private profile, with an ephemeral DevTools port.
async fn launch(exe: &Path, timeout: Duration) -> Result<(Browser, Running), String> {
    static STARTS: AtomicU64 = AtomicU64::new(0);
    let profile = std::env::temp_dir().join(format!(
        "summarize-chromium-{}-{}",
        std::process::id(),
        STARTS.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&profile);
    std::fs::create_dir_all(&profile)
        .map_err(|e| format!("cannot create {}: {e}", profile.display()))?;
    let log_path = profile.join("chromium.log");
    let log = std::fs::File::create(&log_path).map_err(|e| e.to_string())?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("--headless=new")
        .arg("--remote-debugging-port=0")
        .arg(format!("--user-data-dir={}", profile.display()))
        // Names resolve to nothing: every request is answered by this tool (see the top).
        .arg("--host-resolver-rules=MAP * ~NOTFOUND")
        .args([
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-default-apps",
            "--disable-breakpad",
            "--disable-features=Translate,MediaRouter,OptimizationHints,AutofillServerCommunication",
            "--blink-settings=imagesEnabled=false",
            "--mute-audio",
            "--hide-scrollbars",
        ]);
    // Chromium's sandbox refuses to run as root; as any other user it stays on.
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        cmd.arg("--no-sandbox");
    }
    cmd.arg("about:blank")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log);
    // SAFETY: prctl is async-signal-safe; it only asks the kernel to kill the browser when the
    // thread that started it (a runtime worker, alive for the run) goes.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| e.to_string())?;
    let port_file = profile.join("DevToolsActivePort");
    let started = Instant::now();
    let limit = timeout.max(Duration::from_secs(30));
    let ws = loop {
        if let Ok(text) = std::fs::read_to_string(&port_file) {
            let mut lines = text.lines();
            if let (Some(port), Some(path)) = (lines.next(), lines.next()) {
                break format!("ws://127.0.0.1:{}{}", port.trim(), path.trim());
            }
        }
        let early_exit = child.try_wait().ok().flatten();
        if early_exit.is_some() || started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            let tail = log_tail(&log_path);
            let _ = std::fs::remove_dir_all(&profile);
            return Err(match early_exit {
                Some(status) => format!("it exited ({status}): {tail}"),
                None => format!("no DevTools port after {}s: {tail}", limit.as_secs()),
            });
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    let config = HandlerConfig {
        request_intercept: true,
        cache_enabled: false,
        request_timeout: timeout.max(Duration::from_secs(5)),
        ..HandlerConfig::default()
    };
    let (browser, mut handler) = match Browser::connect_with_config(ws, config).await {
        Ok(pair) => pair,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_dir_all(&profile);
            return Err(format!("cannot connect over DevTools: {e}"));
        }
    };
    let handler = tokio::spawn(async move { while handler.next().await.is_some() {} });
    Ok((
        browser,
        Running {
            child,
            handler,
            profile,
        },
    ))
}

/// The last line Chromium wrote, for an error message.
fn log_tail(path: &Path) -> String {
    let mut text = String::new();
    if let Ok(f) = std::fs::File::open(path) {
        let _ = f.take(1 << 20).read_to_string(&mut text);
    }
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map_or_else(
            || "no message".to_string(),
            |l| l.trim().chars().take(300).collect(),
        )
}

/// The page this render is for, served once to the browser's navigation.
struct MainPage {
    url: String,
    /// Base64, as DevTools takes bodies; UTF-8 HTML.
    body: String,
    served: AtomicBool,
}

/// Requests of one page in flight, and when the last one ended.
struct Activity {
    inflight: AtomicUsize,
    since: std::sync::Mutex<Instant>,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            inflight: AtomicUsize::new(0),
            since: std::sync::Mutex::new(Instant::now()),
        }
    }
    fn begin(&self) {
        self.inflight.fetch_add(1, Ordering::SeqCst);
    }
    fn end(&self) {
        *self.since.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        self.inflight.fetch_sub(1, Ordering::SeqCst);
    }
    /// How long nothing has been in flight (zero while something is).
    fn quiet_for(&self) -> Duration {
        if self.inflight.load(Ordering::SeqCst) > 0 {
            return Duration::ZERO;
        }
        self.since
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .elapsed()
    }
}

/// Waits until the page has loaded, nothing is in flight and its text has stopped changing for
/// `QUIET`, or the deadline.
async fn settle(tab: &Page, activity: &Activity, deadline: tokio::time::Instant) {
    const PROBE: &str =
        "document.readyState === 'complete' && document.body ? document.body.innerText.length : -1";
    let mut last = -2i64;
    let mut stable_since = Instant::now();
    loop {
        if tokio::time::Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let len = match tokio::time::timeout_at(deadline, tab.evaluate(PROBE)).await {
            Ok(Ok(v)) => v.into_value::<i64>().unwrap_or(-1),
            Ok(Err(_)) => -1,
            Err(_) => return,
        };
        if len != last {
            last = len;
            stable_since = Instant::now();
            continue;
        }
        if len >= 0 && stable_since.elapsed() >= QUIET && activity.quiet_for() >= QUIET {
            return;
        }
    }
}

/// Kinds of request a page's text never needs.
fn refused(kind: &ResourceType) -> bool {
    matches!(
        kind,
        ResourceType::Image
            | ResourceType::Media
            | ResourceType::Font
            | ResourceType::Stylesheet
            | ResourceType::TextTrack
            | ResourceType::Ping
            | ResourceType::CspViolationReport
            | ResourceType::Manifest
            | ResourceType::Prefetch
            | ResourceType::SignedExchange
            | ResourceType::WebSocket
    )
}

/// Answers one paused request: the page itself from what was fetched, scripts and data through
/// the run's client, everything else refused.
async fn answer(tab: &Page, event: &EventRequestPaused, fetcher: &Fetcher, main: &MainPage) {
    let id = event.request_id.clone();
    let fail = |reason: ErrorReason| FailRequestParams::new(id.clone(), reason);
    let request = &event.request;
    if event.resource_type == ResourceType::Document
        && request.url == main.url
        && !main.served.swap(true, Ordering::SeqCst)
    {
        let params = FulfillRequestParams::builder()
            .request_id(id.clone())
            .response_code(200)
            .response_header(HeaderEntry::new("Content-Type", "text/html; charset=utf-8"))
            .body(main.body.clone())
            .build();
        if let Ok(params) = params {
            let _ = tab.execute(params).await;
        }
        return;
    }
    let url = match Url::parse(&request.url) {
        Ok(u)
            if matches!(u.scheme(), "http" | "https")
                && !refused(&event.resource_type)
                && u.path() != "/favicon.ico" =>
        {
            u
        }
        _ => {
            let _ = tab.execute(fail(ErrorReason::BlockedByClient)).await;
            return;
        }
    };
    let headers: Vec<(String, String)> = request
        .headers
        .inner()
        .as_object()
        .map(|o| {
            o.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default();
    let body = request.post_data_entries.as_ref().map(|entries| {
        let mut out = Vec::new();
        for e in entries {
            if let Some(b) = &e.bytes {
                if let Ok(bytes) =
                    base64::engine::general_purpose::STANDARD.decode(AsRef::<str>::as_ref(b))
                {
                    out.extend_from_slice(&bytes);
                }
            }
        }
        out
    });
    match fetcher
        .subrequest(&request.method, &url, &headers, body)
        .await
    {
        Ok(resp) => {
            let params = FulfillRequestParams::builder()
                .request_id(id.clone())
                .response_code(resp.status as i64)
                .response_headers(
                    resp.headers
                        .into_iter()
                        .map(|(k, v)| HeaderEntry::new(k, v))
                        .collect::<Vec<_>>(),
                )
                .body(base64::engine::general_purpose::STANDARD.encode(&resp.body))
                .build();
            match params {
                Ok(params) => {
                    let _ = tab.execute(params).await;
                }
                Err(_) => {
                    let _ = tab.execute(fail(ErrorReason::Failed)).await;
                }
            }
        }
        Err(e) => {
            let reason = if e.class == ErrorClass::BlockedAddress {
                ErrorReason::BlockedByClient
            } else if e.class == ErrorClass::Timeout {
                ErrorReason::TimedOut
            } else {
                ErrorReason::Failed
            };
            tracing::debug!(%url, error = %e.message, "a rendered page's request failed");
            let _ = tab.execute(fail(reason)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_built_pages_are_told_from_short_static_ones() {
        let spa = r#"<html><head><script src="/app.js"></script></head><body><div id="root"></div></body></html>"#;
        assert!(looks_script_built(spa));
        let noscript = r#"<body><noscript>You need to enable JavaScript to run this app.</noscript><script>boot()</script></body>"#;
        assert!(looks_script_built(noscript));
        // No script at all: nothing a browser would add.
        assert!(!looks_script_built(
            "<html><body><p>Short note.</p></body></html>"
        ));
        // Scripts beside plenty of text: the text is already there.
        let long = format!(
            "<html><body><script>track()</script><p>{}</p></body></html>",
            "word ".repeat(400)
        );
        assert!(!looks_script_built(&long));
        // Script text itself is not visible text.
        let heavy = format!(
            "<html><body><script>{}</script><div class=x></div></body></html>",
            "var a = 1; ".repeat(500)
        );
        assert!(looks_script_built(&heavy));
    }

    #[test]
    fn visible_text_skips_scripts_styles_and_tags() {
        assert_eq!(
            visible_chars("<p>ab</p><script>xxxx</script><style>yy</style>cd"),
            4
        );
        assert_eq!(visible_chars("<p>unclosed <script>never ends"), 8);
    }
}
