//! Reliability for unattended runs (issue 5): a fault matrix against real servers on
//! 127.0.0.1, resume after `kill -9`, the content cache, and secrets. The model API is played
//! by an in-test server speaking OpenAI's wire format (there is no OpenAI service here).
//! docs/faults.md lists every fault and its outcome; keep the two in step.

mod common;

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{article, records, summarize, Reply, Request, Server};
use serde_json::{json, Value};

fn class(rec: &Value) -> &str {
    rec["error_class"].as_str().unwrap_or("")
}

/// Fetch-side faults: every input reported once, in order, with its class; the run goes on.
#[test]
fn issue5_fetch_fault_matrix() {
    let bomb = {
        use flate2::{write::GzEncoder, Compression};
        let mut enc = GzEncoder::new(Vec::new(), Compression::best());
        for _ in 0..32 {
            enc.write_all(&vec![b'a'; 1 << 20]).unwrap();
        }
        Arc::new(enc.finish().unwrap())
    };
    let server = {
        let bomb = bomb.clone();
        Server::start(move |req: &Request| {
            match req.path.as_str() {
            "/ok" => Reply::html(article("Fine", "the tide tables")),
            "/reset" => Reply::ResetMidBody {
                declared: 50_000,
                partial: b"<html><body><p>cut".to_vec(),
            },
            "/hang" => Reply::Hang(Duration::from_secs(10)),
            "/drip" => Reply::Drip {
                headers: vec![("Content-Type".into(), "text/html".into())],
                body: article("Drip", "slow water").into_bytes(),
                every: Duration::from_millis(200),
            },
            "/404" => Reply::status(404, "text/html", "gone"),
            "/410" => Reply::status(410, "text/html", "gone for good"),
            "/500" => Reply::status(500, "text/html", "boom"),
            "/503" => Reply::status(503, "text/html", "busy").with_header("Retry-After", "0"),
            "/429" => Reply::status(429, "text/plain", "slow down").with_header("Retry-After", "0"),
            "/loop" => Reply::status(302, "text/html", "").with_header("Location", "/loop"),
            "/huge" => Reply::html(vec![b'x'; 3_000_000]),
            "/bomb" => Reply::Full {
                status: 200,
                headers: vec![("Content-Type".into(), "text/html".into()), ("Content-Encoding".into(), "gzip".into())],
                body: bomb.to_vec(),
            },
            "/wrong-charset" => {
                let text = "<html><body><article><p>Le café où l'on déjeune, près de la gare, est fermé le lundi et le mardi.</p></article></body></html>";
                let (latin1, _, _) = encoding_rs::WINDOWS_1252.encode(text);
                Reply::status(200, "text/html; charset=utf-8", latin1.into_owned())
            }
            "/invalid-utf8" => {
                let mut body = b"<html><body><article><p>Bytes that are not UTF-8: \xff\xfe and \xc3 here, but the rest of this page is perfectly readable text.</p>".to_vec();
                body.extend_from_slice(b"</article></body></html>");
                Reply::status(200, "text/html", body)
            }
            "/binary" => Reply::status(200, "text/html", b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00>\x00".repeat(50)),
            "/empty" => Reply::html(""),
            "/js-only" => Reply::html("<html><head><script src=app.js></script></head><body><div id=root></div><script>boot()</script></body></html>"),
            _ => Reply::status(404, "text/plain", "?"),
        }
        })
    };
    let refused = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let cases: Vec<(String, &str)> = vec![
        ("http://no-such-host.invalid/".to_string(), "dns"),
        (format!("http://127.0.0.1:{refused}/"), "connect"),
        (server.url("/reset"), "connect"),
        (server.url("/hang"), "timeout"),
        (server.url("/drip"), "timeout"),
        (server.url("/404"), "http_client_error"),
        (server.url("/410"), "http_client_error"),
        (server.url("/500"), "http_server_error"),
        (server.url("/503"), "http_server_error"),
        (server.url("/429"), "rate_limited"),
        (server.url("/loop"), "too_many_redirects"),
        (server.url("/huge"), "too_large"),
        (server.url("/bomb"), "too_large"),
        (server.url("/wrong-charset"), ""),
        (server.url("/invalid-utf8"), ""),
        (server.url("/binary"), "unsupported_content"),
        (server.url("/empty"), "empty_extraction"),
        (server.url("/js-only"), "empty_extraction"),
        (server.url("/ok"), ""),
    ];
    let home = tempfile::tempdir().unwrap();
    let list: String = cases.iter().map(|(u, _)| format!("{u}\n")).collect();
    let out = summarize(home.path())
        .args([
            "-q",
            "--timeout",
            "1.5",
            "--retries",
            "1",
            "--max-bytes",
            "2000000",
            "-",
        ])
        .write_stdin(list)
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let recs = records(&out.stdout);
    assert_eq!(recs.len(), cases.len(), "every input reported once");
    for ((url, expected), rec) in cases.iter().zip(&recs) {
        assert_eq!(rec["source"].as_str().unwrap(), url.as_str(), "input order");
        assert_eq!(class(rec), *expected, "{url}: {rec}");
        if !expected.is_empty() {
            let err = rec["error"].as_str().unwrap();
            assert!(
                err.contains(url.trim_end_matches('/')),
                "the error names the input: {err}"
            );
            assert!(!err.contains('\n'), "one line: {err}");
        }
    }
    let wrong = recs
        .iter()
        .find(|r| r["source"].as_str().unwrap().ends_with("/wrong-charset"))
        .unwrap();
    assert!(
        wrong["summary"].as_str().unwrap().contains("café où"),
        "{wrong}"
    );
    // 429s are retried patiently (at least 10 times) before the document fails.
    assert!(
        server.count("/429") >= 11,
        "429 retries: {}",
        server.count("/429")
    );
}

/// Backend-side faults, one document each, chosen by a marker in the document text.
#[test]
fn issue5_backend_fault_matrix() {
    let attempts = Arc::new(AtomicUsize::new(0));
    let server = {
        let attempts = attempts.clone();
        Server::start(move |req: &Request| {
            if req.path == "/v1/models" {
                return Reply::json(200, json!({"object": "list", "data": [{"id": "m"}]}));
            }
            let body = req.json();
            let user = body["messages"][1]["content"]
                .as_str()
                .unwrap_or("")
                .to_string();
            let ok = |content: &str| {
                Reply::json(
                    200,
                    json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}], "usage": {"prompt_tokens": 10, "completion_tokens": 2}}),
                )
            };
            if user.contains("MARK-429-ONCE") {
                if attempts.fetch_add(1, Ordering::SeqCst) == 0 {
                    return Reply::json(429, json!({"error": {"message": "Rate limit reached", "code": "rate_limit_exceeded"}})).with_header("Retry-After", "0");
                }
                return ok("Recovered after a 429.");
            }
            if user.contains("MARK-500") {
                return Reply::json(500, json!({"error": {"message": "internal error"}}));
            }
            if user.contains("MARK-BADJSON") {
                return Reply::status(200, "application/json", "{\"choices\": [ {\"message\": ");
            }
            if user.contains("MARK-CONTEXT") {
                return Reply::json(
                    400,
                    json!({"error": {"message": "This model's maximum context length is 512 tokens", "code": "context_length_exceeded"}}),
                );
            }
            if user.contains("MARK-EMPTY") {
                return ok("<think>only thinking</think>");
            }
            ok("A fine summary.")
        })
    };
    let home = tempfile::tempdir().unwrap();
    let input = home.path().join("docs.jsonl");
    let mut lines = String::new();
    for (id, marker) in [
        ("a", "MARK-OK"),
        ("b", "MARK-429-ONCE"),
        ("c", "MARK-500"),
        ("d", "MARK-BADJSON"),
        ("e", "MARK-CONTEXT"),
        ("f", "MARK-EMPTY"),
    ] {
        let text = format!("This document carries the marker {marker} for the test server. It has a second sentence so that it is long enough to summarize.");
        lines.push_str(&json!({"id": id, "text": text}).to_string());
        lines.push('\n');
    }
    std::fs::write(&input, lines).unwrap();
    let out = summarize(home.path())
        .env("OPENAI_BASE_URL", server.url("/v1"))
        .args([
            "-b",
            "openai",
            "-m",
            "m",
            "-q",
            "--retries",
            "1",
            "--no-cache",
        ])
        .arg(&input)
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let recs = records(&out.stdout);
    let classes: Vec<&str> = recs.iter().map(class).collect();
    assert_eq!(
        classes,
        [
            "",
            "",
            "backend_error",
            "backend_bad_response",
            "context_length",
            "empty_summary"
        ]
    );
    assert_eq!(recs[1]["summary"], "Recovered after a 429.");
}

#[test]
fn issue5_full_disk_is_a_clear_exit_2() {
    if !std::path::Path::new("/dev/full").exists() {
        eprintln!("skipped: no /dev/full on this system");
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let out = summarize(home.path())
        .args(["-o", "/dev/full", "samples/article.html"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot write the report") && err.contains("No space left"),
        "{err}"
    );
}

/// Kill the real binary with SIGKILL at several points, resume, and check that the report holds
/// every input exactly once with no torn line.
#[test]
fn issue5_resume_after_kill_9_loses_and_duplicates_nothing() {
    let server = Server::start(|req: &Request| {
        std::thread::sleep(Duration::from_millis(120));
        let n = req.path.trim_start_matches("/doc");
        if n == "7" {
            return Reply::status(500, "text/html", "flaky");
        }
        Reply::html(article(&format!("Doc {n}"), &format!("topic number {n}")))
    });
    let bin = assert_cmd::cargo::cargo_bin("summarize");
    let urls: Vec<String> = (0..16).map(|i| server.url(&format!("/doc{i}"))).collect();
    for kill_after_ms in [150u64, 400, 700] {
        let home = tempfile::tempdir().unwrap();
        let report = home.path().join("report.jsonl");
        let mut child = std::process::Command::new(&bin)
            .env("HOME", home.path())
            .env("SUMMARIZE_BACKEND", "extractive")
            .args(["-q", "-j", "3", "--retries", "0", "-o"])
            .arg(&report)
            .args(&urls)
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(kill_after_ms));
        child.kill().unwrap();
        child.wait().unwrap();
        let status = std::process::Command::new(&bin)
            .env("HOME", home.path())
            .env("SUMMARIZE_BACKEND", "extractive")
            .args(["-q", "-j", "3", "--retries", "0", "--resume", "-o"])
            .arg(&report)
            .args(&urls)
            .status()
            .unwrap();
        assert_eq!(status.code(), Some(1), "doc7 still fails");
        let text = std::fs::read_to_string(&report).unwrap();
        assert!(text.ends_with('\n'));
        let recs = records(text.as_bytes());
        let mut ids: Vec<&str> = recs.iter().map(|r| r["id"].as_str().unwrap()).collect();
        ids.sort();
        let mut want: Vec<&str> = urls.iter().map(String::as_str).collect();
        want.sort();
        assert_eq!(
            ids, want,
            "killed after {kill_after_ms} ms: every input exactly once"
        );
        // A second resume re-runs only the failed document and still leaves one record per input.
        let out = std::process::Command::new(&bin)
            .env("HOME", home.path())
            .env("SUMMARIZE_BACKEND", "extractive")
            .args(["--resume", "-o"])
            .arg(&report)
            .args(&urls)
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&out.stderr)
            .contains("15 finished records kept, 1 of 16 inputs to run"));
        assert_eq!(records(&std::fs::read(&report).unwrap()).len(), 16);
    }
}

/// A rerun over unchanged pages makes no model call, and fetches conditionally.
#[test]
fn issue5_cache_skips_model_calls_and_uses_conditional_fetches() {
    let chats = Arc::new(AtomicUsize::new(0));
    let server = {
        let chats = chats.clone();
        Server::start(move |req: &Request| match req.path.as_str() {
            "/v1/models" => Reply::json(200, json!({"data": []})),
            "/v1/chat/completions" => {
                chats.fetch_add(1, Ordering::SeqCst);
                Reply::json(
                    200,
                    json!({"choices": [{"message": {"role": "assistant", "content": "Cached summary."}}], "usage": {"prompt_tokens": 50, "completion_tokens": 3}}),
                )
            }
            "/page" => {
                if req.header("if-none-match") == Some("\"v1\"") {
                    Reply::Full {
                        status: 304,
                        headers: vec![("ETag".into(), "\"v1\"".into())],
                        body: Vec::new(),
                    }
                } else {
                    Reply::html(article("Cached", "the lighthouse")).with_header("ETag", "\"v1\"")
                }
            }
            _ => Reply::status(404, "text/plain", ""),
        })
    };
    let home = tempfile::tempdir().unwrap();
    let run = || {
        summarize(home.path())
            .env("OPENAI_BASE_URL", server.url("/v1"))
            .args([
                "-b",
                "openai",
                "-m",
                "m",
                "-q",
                server.url("/page").as_str(),
                "samples/article.html",
            ])
            .output()
            .unwrap()
    };
    let first = records(&run().stdout);
    assert_eq!(chats.load(Ordering::SeqCst), 2);
    assert!(first
        .iter()
        .all(|r| r["cache_hit"] == false && r["status"] == "ok"));
    let second = records(&run().stdout);
    assert_eq!(
        chats.load(Ordering::SeqCst),
        2,
        "no model call on the rerun"
    );
    for (a, b) in first.iter().zip(&second) {
        assert_eq!(b["cache_hit"], true);
        assert_eq!(a["summary"], b["summary"]);
        assert_eq!(b["tokens_in"], 0, "a hit spends no tokens");
    }
    let page_requests: Vec<Request> = server
        .requests
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.path == "/page")
        .cloned()
        .collect();
    assert_eq!(page_requests.len(), 2);
    assert_eq!(
        page_requests[1].header("if-none-match"),
        Some("\"v1\""),
        "the rerun fetched conditionally"
    );
    // --no-cache really calls the model.
    summarize(home.path())
        .env("OPENAI_BASE_URL", server.url("/v1"))
        .args([
            "-b",
            "openai",
            "-m",
            "m",
            "-q",
            "--no-cache",
            "samples/article.html",
        ])
        .assert()
        .success();
    assert_eq!(chats.load(Ordering::SeqCst), 3);
}

/// A sentinel API key must appear nowhere: stdout, stderr at -vvv, the report, the cache.
/// Hostile titles lose their terminal escapes before reaching any output.
#[test]
fn issue5_secrets_never_leak_and_escapes_are_stripped() {
    const KEY: &str = "sk-SENTINEL-7f3a9c-do-not-print";
    let server = Server::start(|req: &Request| {
        match req.path.as_str() {
        "/v1/models" => Reply::json(200, json!({"data": [{"id": "m"}]})),
        // No robots.txt here (the default answer, 500, would refuse every page: RFC 9309).
        "/robots.txt" => Reply::status(404, "text/plain", "none"),
        "/v1/chat/completions" => {
            if req.header("authorization") != Some(&format!("Bearer {KEY}")) {
                return Reply::json(401, json!({"error": {"message": "bad key"}}));
            }
            Reply::json(200, json!({"choices": [{"message": {"role": "assistant", "content": "Summary with \u{1b}[31mcolour\u{1b}[0m and \u{202e}bidi."}}]}))
        }
        "/evil" => Reply::html(format!(
            "<html><head><title>Evil \u{1b}]0;pwned\u{7}\u{1b}[2J title \u{202e}gnp.exe</title></head><body><article>{}</article></body></html>",
            "<p>Plain words about nothing in particular, repeated to be long enough for a summary.</p>".repeat(4)
        )),
        _ => Reply::status(500, "text/plain", "boom"),
    }
    });
    let home = tempfile::tempdir().unwrap();
    let report = home.path().join("report.jsonl");
    let out = summarize(home.path())
        .env("OPENAI_API_KEY", KEY)
        .env("OPENAI_BASE_URL", server.url("/v1"))
        .args([
            "-b",
            "openai",
            "-m",
            "m",
            "-vvv",
            "--retries",
            "0",
            "-f",
            "md",
            "-o",
        ])
        .arg(&report)
        .args([server.url("/evil"), server.url("/broken")])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut everything = Vec::new();
    everything.extend_from_slice(&out.stdout);
    everything.extend_from_slice(&out.stderr);
    everything.extend_from_slice(&std::fs::read(&report).unwrap());
    for entry in walk(home.path()) {
        everything.extend_from_slice(&std::fs::read(entry).unwrap_or_default());
    }
    let all = String::from_utf8_lossy(&everything);
    assert!(!all.contains("SENTINEL"), "the API key leaked");
    let md = std::fs::read_to_string(&report).unwrap();
    assert!(md.contains("## Evil"), "{md}");
    for bad in ['\u{1b}', '\u{7}', '\u{202e}'] {
        assert!(!md.contains(bad), "{bad:?} reached the report: {md:?}");
    }
    assert!(md.contains("Summary with colour and bidi."));
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Issue 13: two runs on one report (a cron job that outlived its interval). The second exits
/// 75 at once without touching the first's report, or waits with `--wait-lock`; two real
/// processes, the first held open by a page that answers only when the test lets it.
#[test]
fn issue13_overlapping_runs_on_one_report() {
    let release = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let server = {
        let release = release.clone();
        Server::start(move |req: &Request| match req.path.as_str() {
            "/held" => {
                while !release.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Reply::html(article("Held", "the long evening"))
            }
            p => Reply::html(article(&p[1..], "the short morning")),
        })
    };
    let home = tempfile::tempdir().unwrap();
    let report = home.path().join("nightly.jsonl");
    let bin = assert_cmd::cargo::cargo_bin("summarize");
    let spawn = |extra: &[&str], urls: &[String]| {
        std::process::Command::new(&bin)
            .env("HOME", home.path())
            .env("XDG_CACHE_HOME", home.path().join("cache"))
            .env("SUMMARIZE_BACKEND", "extractive")
            .env("NO_COLOR", "1")
            .args(["-q", "-j", "1", "--timeout", "60", "-o"])
            .arg(&report)
            .args(extra)
            .args(urls)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let first = spawn(&[], &[server.url("/early"), server.url("/held")]);
    // The first run holds the lock once its first record is on disk.
    for _ in 0..400 {
        if std::fs::read_to_string(&report).is_ok_and(|s| s.lines().count() >= 1) {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    assert_eq!(records(&std::fs::read(&report).unwrap()).len(), 1);

    // A second run: exit 75 at once, one line naming the holder and the way out.
    let second = spawn(&[], &[server.url("/second")])
        .wait_with_output()
        .unwrap();
    assert_eq!(second.status.code(), Some(75));
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains(&format!("pid {}", first.id())), "{stderr}");
    assert!(stderr.contains("--wait-lock"), "{stderr}");
    assert!(second.stdout.is_empty());
    let kept = records(&std::fs::read(&report).unwrap());
    assert_eq!(kept.len(), 1, "the first run's report was not truncated");
    assert_eq!(kept[0]["status"], "ok");

    // A third with --wait-lock (and --resume, to add to the report) waits for the first.
    let third = std::process::Command::new(&bin)
        .env("HOME", home.path())
        .env("XDG_CACHE_HOME", home.path().join("cache"))
        .env("SUMMARIZE_BACKEND", "extractive")
        .args(["--wait-lock", "--resume", "-j", "1", "-o"])
        .arg(&report)
        .args([
            server.url("/early"),
            server.url("/held"),
            server.url("/third"),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        records(&std::fs::read(&report).unwrap()).len(),
        1,
        "the waiting run wrote nothing"
    );
    release.store(true, Ordering::SeqCst);
    let first = first.wait_with_output().unwrap();
    assert_eq!(first.status.code(), Some(0));
    let third = third.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&third.stderr);
    assert_eq!(third.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("waiting for the run"), "{stderr}");
    // Every input exactly once: the first run's two, then the third's new one.
    let all = records(&std::fs::read(&report).unwrap());
    let urls: Vec<&str> = all.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(
        urls,
        [
            server.url("/early"),
            server.url("/held"),
            server.url("/third")
        ]
    );
    assert!(all.iter().all(|r| r["status"] == "ok"));
}

/// Issue 13: runs sharing a cache directory at the same time never tear an entry; a damaged
/// entry is a miss that is computed and written again, never an error.
#[test]
fn issue13_concurrent_runs_share_a_cache_and_damage_is_a_miss() {
    let chats = Arc::new(AtomicUsize::new(0));
    let server = {
        let chats = chats.clone();
        Server::start(move |req: &Request| match req.path.as_str() {
            "/v1/models" => Reply::json(200, json!({"data": []})),
            "/v1/chat/completions" => {
                chats.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(5));
                Reply::json(
                    200,
                    json!({"choices": [{"message": {"role": "assistant", "content": "A summary of the page."}}], "usage": {"prompt_tokens": 50, "completion_tokens": 5}}),
                )
            }
            p => Reply::html(article(&p[1..], "the shared harbour")),
        })
    };
    let home = tempfile::tempdir().unwrap();
    let cache = home.path().join("shared-cache");
    let urls: Vec<String> = (0..24).map(|i| server.url(&format!("/page{i}"))).collect();
    let bin = assert_cmd::cargo::cargo_bin("summarize");
    let run = |report: &str| {
        let mut cmd = std::process::Command::new(&bin);
        cmd.env("HOME", home.path())
            .env("OPENAI_BASE_URL", server.url("/v1"))
            .args(["-b", "openai", "-m", "m", "-q", "-j", "8", "--cache-dir"])
            .arg(&cache)
            .arg("-o")
            .arg(home.path().join(report))
            .args(&urls)
            .stderr(std::process::Stdio::piped());
        cmd
    };
    let report = |name: &str| records(&std::fs::read(home.path().join(name)).unwrap());
    // Two processes at once on one cache.
    let (a, b) = (
        run("a.jsonl").spawn().unwrap(),
        run("b.jsonl").spawn().unwrap(),
    );
    for (name, child) in [("a.jsonl", a), ("b.jsonl", b)] {
        let out = child.wait_with_output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let recs = report(name);
        assert_eq!(recs.len(), urls.len());
        assert!(recs.iter().all(|r| r["status"] == "ok"));
    }
    // Every entry they left is whole: a third run is served from the cache alone.
    let before = chats.load(Ordering::SeqCst);
    assert!(run("c.jsonl").status().unwrap().success());
    assert_eq!(chats.load(Ordering::SeqCst), before, "all hits");
    assert!(report("c.jsonl").iter().all(|r| r["cache_hit"] == true));
    // Tear every summary entry in half: misses, summarized again, written whole again.
    let entries: Vec<_> = walk(&cache)
        .into_iter()
        .filter(|p| p.components().any(|c| c.as_os_str() == "summaries"))
        .collect();
    assert!(entries.len() >= urls.len(), "{entries:?}");
    for path in &entries {
        let bytes = std::fs::read(path).unwrap();
        std::fs::write(path, &bytes[..bytes.len() / 2]).unwrap();
    }
    let out = run("d.jsonl").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let recs = report("d.jsonl");
    assert!(recs
        .iter()
        .all(|r| r["status"] == "ok" && r["cache_hit"] == false));
    assert_eq!(chats.load(Ordering::SeqCst), before + urls.len());
    let before = chats.load(Ordering::SeqCst);
    assert!(run("e.jsonl").status().unwrap().success());
    assert_eq!(
        chats.load(Ordering::SeqCst),
        before,
        "rewritten entries hit again"
    );
}

/// Issue 13: hostile pages. Nesting 100,000 levels deep, a 200,000-attribute flood, a charset
/// that lies, a page of only scripts, a 50 MB single line: no crash, no stack overflow, each
/// page bounded by --extract-timeout (past it: `extract_timeout`), and the run goes on.
#[test]
fn issue13_hostile_pages_never_sink_the_run() {
    let deep = Arc::new({
        let n = 100_000;
        format!(
            "<html><body>{}<p>Deep text that should not take the run down with it.</p>{}</body></html>",
            "<div>".repeat(n),
            "</div>".repeat(n)
        )
    });
    let attrs = Arc::new({
        let mut s = String::from("<html><body><div");
        for i in 0..200_000 {
            s.push_str(&format!(" a{i}=\"{i}\""));
        }
        s.push_str("><p>An attribute flood.</p></div></body></html>");
        s
    });
    let long_line = Arc::new(format!(
        "<html><body><article><p>{}</p></article></body></html>",
        "word ".repeat(10_000_000)
    ));
    let server = {
        let (deep, attrs, long_line) = (deep.clone(), attrs.clone(), long_line.clone());
        Server::start(move |req: &Request| {
            match req.path.as_str() {
            "/deep" => Reply::html(deep.as_bytes().to_vec()),
            "/attrs" => Reply::html(attrs.as_bytes().to_vec()),
            "/long-line" => Reply::html(long_line.as_bytes().to_vec()),
            "/charset" => Reply::html(
                "<html><head><meta charset=\"utf-16\"></head><body><article><p>Le café où l'on déjeune, près de la gare, est fermé le lundi et le mardi matin.</p></article></body></html>",
            ),
            "/scripts" => Reply::html(format!(
                "<html><body>{}</body></html>",
                "<script>console.log('x')</script>".repeat(1000)
            )),
            _ => Reply::html(article("Fine", "the calm harbour")),
        }
        })
    };
    let home = tempfile::tempdir().unwrap();
    let paths = [
        "/deep",
        "/attrs",
        "/ok",
        "/charset",
        "/scripts",
        "/long-line",
        "/ok2",
    ];
    let out = summarize(home.path())
        .args([
            "-q",
            "-j",
            "4",
            "--extract-timeout",
            "0.5",
            "--timeout",
            "60",
        ])
        .args(paths.iter().map(|p| server.url(p)))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("overflow"),
        "{stderr}"
    );
    let recs = records(&out.stdout);
    let ids: Vec<String> = recs
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, paths.iter().map(|p| server.url(p)).collect::<Vec<_>>());
    let by = |p: &str| &recs[paths.iter().position(|x| *x == p).unwrap()];
    for p in ["/ok", "/ok2", "/charset"] {
        assert_eq!(by(p)["status"], "ok", "{p}: {}", by(p));
    }
    assert!(by("/charset")["summary"].as_str().unwrap().contains("café"));
    // Machine speed decides whether the deep page finishes in time; either way it is bounded.
    assert!(
        ["extract_timeout", "empty_extraction"].contains(&class(by("/deep"))),
        "{}",
        by("/deep")
    );
    // The flood takes a minute here: far past any machine's half second.
    assert_eq!(class(by("/attrs")), "extract_timeout", "{}", by("/attrs"));
    assert!(by("/attrs")["error"]
        .as_str()
        .unwrap()
        .contains("--extract-timeout"));
    assert_eq!(class(by("/scripts")), "empty_extraction");
    assert_eq!(
        class(by("/long-line")),
        "too_large",
        "50 MB is past --max-bytes"
    );
}

/// Issue 13: hostile lists. Inside a network namespace of its own with nothing but loopback
/// (and a private /etc/hosts, for names that resolve to refused addresses), a list reaches for
/// cloud metadata services directly, by name and through redirects: refused by default;
/// `--public-only` also refuses the loopback site itself; `--allow-private` lifts both.
#[test]
fn issue13_hostile_lists_are_refused_inside_a_private_network_namespace() {
    if !common::can_unshare() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("server.py"),
        r#"
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        targets = {'/to-metadata': 'http://169.254.169.254/latest/meta-data/',
                   '/to-metadata-v6': 'http://[fd00:ec2::254]/',
                   '/to-name': 'http://metadata.test/latest/'}
        if self.path in targets:
            self.send_response(302); self.send_header('Location', targets[self.path]); self.end_headers(); return
        body = b'<html><body><article><p>A page of the loopback site, with enough words to summarize.</p></article></body></html>'
        self.send_response(200); self.send_header('Content-Type', 'text/html')
        self.send_header('Content-Length', str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
http.server.HTTPServer(('127.0.0.1', int(sys.argv[1])), H).serve_forever()
"#,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("hosts"),
        "127.0.0.1 localhost site.test\n169.254.169.254 metadata.test\nfd00:ec2::254 metadata6.test\n",
    )
    .unwrap();
    let port = 20_000 + std::process::id() % 20_000;
    let urls: Vec<String> = [
        "http://site.test:PORT/page",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/",
        "http://metadata.test/latest/",
        "http://metadata6.test/latest/",
        "http://site.test:PORT/to-metadata",
        "http://site.test:PORT/to-metadata-v6",
        "http://site.test:PORT/to-name",
    ]
    .iter()
    .map(|u| u.replace("PORT", &port.to_string()))
    .collect();
    let bin = assert_cmd::cargo::cargo_bin("summarize");
    let run = |flags: &str| -> Vec<Value> {
        let out = common::in_private_network(
            &dir.path().join("hosts"),
            "",
            &dir.path().join("server.py"),
            &port.to_string(),
            port as u16,
            &format!(
                "HOME={home} SUMMARIZE_BACKEND=extractive {bin} -q --no-cache --retries 0 --timeout 5 {flags} {urls}",
                home = dir.path().display(),
                bin = bin.display(),
                urls = urls.join(" "),
            ),
        );
        let recs = records(&out.stdout);
        assert_eq!(
            recs.len(),
            urls.len(),
            "every input once: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        recs
    };
    let classes = |recs: &[Value]| -> Vec<String> {
        recs.iter()
            .map(|r| {
                if r["status"] == "ok" {
                    "ok".to_string()
                } else {
                    class(r).to_string()
                }
            })
            .collect()
    };
    let by_default = run("");
    assert_eq!(
        classes(&by_default),
        [
            "ok",
            "blocked_address",
            "blocked_address",
            "blocked_address",
            "blocked_address",
            "blocked_address",
            "blocked_address",
            "blocked_address"
        ],
        "{by_default:#?}"
    );
    let error = by_default[3]["error"].as_str().unwrap();
    assert!(
        error.contains("metadata.test resolves to 169.254.169.254")
            && error.contains("--allow-private"),
        "{error}"
    );
    // --public-only: the loopback site itself is refused, by name.
    let public = run("--public-only");
    assert!(
        classes(&public).iter().all(|c| c == "blocked_address"),
        "{public:#?}"
    );
    assert!(public[0]["error"].as_str().unwrap().contains("loopback"));
    // --allow-private: nothing is refused; the metadata addresses are simply unreachable here.
    let allowed = run("--allow-private");
    let c = classes(&allowed);
    assert_eq!(c[0], "ok");
    assert!(
        c[1..]
            .iter()
            .all(|c| c == "connect" || c == "timeout" || c == "dns"),
        "{allowed:#?}"
    );
}

/// Issue 13: file inputs from a list someone else wrote: a device that never ends, a FIFO
/// that would block forever, a symlink loop. Each is a clear error record; the run ends.
#[test]
fn issue13_hostile_file_inputs_are_error_records() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path();
    assert!(std::process::Command::new("mkfifo")
        .arg(dir.join("pipe"))
        .status()
        .unwrap()
        .success());
    std::os::unix::fs::symlink(dir.join("loop-b"), dir.join("loop-a")).unwrap();
    std::os::unix::fs::symlink(dir.join("loop-a"), dir.join("loop-b")).unwrap();
    std::fs::write(dir.join("good.html"), article("Good", "the quiet meadow")).unwrap();
    std::fs::write(dir.join("list.txt"), "/dev/zero\npipe\nloop-a\ngood.html\n").unwrap();
    let out = summarize(dir)
        .args(["-q", "--list"])
        .arg(dir.join("list.txt"))
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let recs = records(&out.stdout);
    assert_eq!(recs.len(), 4);
    let err = |i: usize| recs[i]["error"].as_str().unwrap_or("").to_string();
    assert_eq!(class(&recs[0]), "invalid_input");
    assert!(err(0).contains("a device"), "{}", err(0));
    assert_eq!(class(&recs[1]), "invalid_input");
    assert!(err(1).contains("FIFO"), "{}", err(1));
    assert_eq!(class(&recs[2]), "invalid_input");
    assert!(err(2).contains("symlink"), "{}", err(2));
    assert_eq!(recs[3]["status"], "ok");

    // --public-only: a list may name only files in its own folder (symlinks followed).
    let lists = dir.join("lists");
    std::fs::create_dir(&lists).unwrap();
    std::fs::write(
        lists.join("inside.html"),
        article("Inside", "the walled garden"),
    )
    .unwrap();
    std::os::unix::fs::symlink(dir.join("good.html"), lists.join("sneaky.html")).unwrap();
    std::fs::write(
        lists.join("list.txt"),
        format!(
            "inside.html
../good.html
sneaky.html
{}
",
            dir.join("good.html").display()
        ),
    )
    .unwrap();
    let run = |extra: &[&str]| {
        let out = summarize(dir)
            .args(["-q", "--list"])
            .arg(lists.join("list.txt"))
            .args(extra)
            .output()
            .unwrap();
        records(&out.stdout)
    };
    let recs = run(&["--public-only"]);
    assert_eq!(recs.len(), 4);
    assert_eq!(recs[0]["status"], "ok", "{}", recs[0]);
    for r in &recs[1..] {
        assert_eq!(class(r), "invalid_input", "{r}");
        assert!(
            r["error"]
                .as_str()
                .unwrap()
                .contains("outside the folder of the list"),
            "{r}"
        );
    }
    // Without it the same list reads all four.
    assert!(run(&[]).iter().all(|r| r["status"] == "ok"));
}

/// Peak resident memory (KiB) and open descriptors of a running process, from /proc.
fn proc_usage(pid: u32) -> Option<(u64, usize)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count();
    Some((rss, fds))
}

/// Issue 13: the chaos soak. SOAK_INPUTS URLs (default 400 here, 20,000 in `make soak`) on a
/// loopback site where 20% of pages fail (transient: a 500, a 429, a dropped connection, a reset
/// mid-body, a slow drip, each on the first request only; permanent: 404, a binary file, an
/// empty page), a loopback OpenAI-compatible backend where 10% of documents meet a 429, a 500,
/// a dropped connection, malformed JSON or a slow answer on their first call, and SOAK_KILLS
/// (default 5) SIGKILLs at random moments, each followed by `--resume`. At the end every input
/// is in the report exactly once, every transient fault ended `ok`, every permanent one is an
/// error of its class, no line is torn, and memory and descriptors stayed flat. It prints the
/// figures. The OpenAI API is played by an in-test server (no OpenAI service here).
/// SOAK_SECONDS, when set, repeats the soak with new seeds until that much time has passed.
#[test]
fn issue13_chaos_soak() {
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    let inputs = env("SOAK_INPUTS").unwrap_or(400) as usize;
    let kills = env("SOAK_KILLS").unwrap_or(5) as usize;
    let mut seed = env("SOAK_SEED").unwrap_or(7);
    let seconds = env("SOAK_SECONDS").unwrap_or(0);
    let started = std::time::Instant::now();
    loop {
        chaos_soak_round(inputs, kills, seed);
        seed += 1;
        if started.elapsed().as_secs() >= seconds {
            break;
        }
    }
}

fn chaos_soak_round(inputs: usize, kills: usize, seed: u64) {
    // A stable pseudo-random draw per document.
    let draw = move |i: usize, salt: u64| -> u64 {
        let mut x = (i as u64)
            ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ salt.wrapping_mul(0xD1B5_4A32_D192_ED03);
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        x ^ (x >> 33)
    };
    const FETCH: [&str; 8] = [
        "500", "429", "close", "reset", "drip", "404", "binary", "empty",
    ];
    const BACKEND: [&str; 5] = ["429", "500", "close", "badjson", "slow"];
    let fetch_fault =
        move |i: usize| (draw(i, 1) % 100 < 20).then(|| FETCH[(draw(i, 2) % 8) as usize]);
    let backend_fault =
        move |i: usize| (draw(i, 3) % 100 < 10).then(|| BACKEND[(draw(i, 4) % 5) as usize]);
    let permanent = |f: &str| match f {
        "404" => Some("http_client_error"),
        "binary" => Some("unsupported_content"),
        "empty" => Some("empty_extraction"),
        _ => None,
    };
    let seen: Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>> = Arc::default();
    let first = move |key: String| -> bool {
        let mut m = seen.lock().unwrap();
        let n = m.entry(key).or_insert(0);
        *n += 1;
        *n == 1
    };
    let first_fetch = first.clone();
    let site = Server::start(move |req: &Request| {
        let i: usize = req.path.trim_start_matches("/doc/").parse().unwrap_or(0);
        let page = || {
            article(
                &format!("Soak document {i}"),
                &format!("soak-doc-{i} and its harbour"),
            )
        };
        match fetch_fault(i) {
            Some("404") => Reply::status(404, "text/html", "gone"),
            Some("binary") => Reply::status(200, "application/octet-stream", vec![0u8; 256]),
            Some("empty") => Reply::html("<html><body></body></html>"),
            Some(f) if first_fetch(format!("fetch {i}")) => match f {
                "500" => Reply::status(500, "text/html", "try later"),
                "429" => {
                    Reply::status(429, "text/html", "slow down").with_header("Retry-After", "0")
                }
                "close" => Reply::Close,
                "reset" => Reply::ResetMidBody {
                    declared: 40_000,
                    partial: b"<html><body><p>cut".to_vec(),
                },
                _ => Reply::Drip {
                    headers: vec![("Content-Type".into(), "text/html".into())],
                    body: page().into_bytes(),
                    every: Duration::from_micros(200),
                },
            },
            _ => Reply::html(page()),
        }
    });
    let backend = Server::start(move |req: &Request| {
        if req.path == "/v1/models" {
            return Reply::json(200, json!({"object": "list", "data": [{"id": "m"}]}));
        }
        let body = String::from_utf8_lossy(&req.body).to_string();
        let i: usize = body
            .split("soak-doc-")
            .nth(1)
            .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let ok = || {
            Reply::json(
                200,
                json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": format!("Soak document {i} is about a harbour.")}, "finish_reason": "stop"}], "usage": {"prompt_tokens": 50, "completion_tokens": 8}}),
            )
        };
        match backend_fault(i) {
            Some(f) if first(format!("backend {i}")) => match f {
                "429" => Reply::json(429, json!({"error": {"message": "Rate limit reached"}}))
                    .with_header("Retry-After", "0"),
                "500" => Reply::json(500, json!({"error": {"message": "internal error"}})),
                "close" => Reply::Close,
                "badjson" => {
                    Reply::status(200, "application/json", "{\"choices\": [ {\"message\": ")
                }
                _ => {
                    std::thread::sleep(Duration::from_millis(300));
                    ok()
                }
            },
            _ => ok(),
        }
    });
    let home = tempfile::tempdir().unwrap();
    let list = home.path().join("urls.txt");
    let urls: Vec<String> = (0..inputs)
        .map(|i| site.url(&format!("/doc/{i}")))
        .collect();
    std::fs::write(&list, urls.join("\n") + "\n").unwrap();
    let report = home.path().join("report.jsonl");
    let bin = assert_cmd::cargo::cargo_bin("summarize");
    let lines = |p: &std::path::Path| {
        std::fs::read(p).map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count())
    };
    let started = std::time::Instant::now();
    let mut runs: Vec<(String, u64, usize, Duration)> = Vec::new();
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut run = |resume: bool, kill_at: Option<usize>| -> Option<i32> {
        let mut cmd = std::process::Command::new(&bin);
        cmd.env_clear()
            .env("HOME", home.path())
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("OPENAI_API_KEY", "k")
            .args(["-b", "openai", "--base-url"])
            .arg(backend.url("/v1"))
            .args([
                "-m",
                "m",
                "-q",
                "--no-cache",
                "-j",
                "32",
                "--per-host",
                "32",
                "--retries",
                "2",
                "--timeout",
                "20",
                "--list",
            ])
            .arg(&list)
            .arg("-o")
            .arg(&report)
            .stdout(std::process::Stdio::null());
        if resume {
            cmd.arg("--resume");
        }
        let t = std::time::Instant::now();
        let mut child = cmd.spawn().unwrap();
        let (mut peak_rss, mut peak_fds) = (0u64, 0usize);
        let code = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status.code();
            }
            if let Some((rss, fds)) = proc_usage(child.id()) {
                peak_rss = peak_rss.max(rss);
                peak_fds = peak_fds.max(fds);
            }
            if kill_at.is_some_and(|k| lines(&report) >= k) {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let label = match (code, kill_at) {
            (None, Some(k)) => format!("killed at ~{k} lines"),
            (c, _) => format!("exit {c:?}"),
        };
        runs.push((label, peak_rss, peak_fds, t.elapsed()));
        code
    };
    // Killed runs: each SIGKILL lands somewhere in the next stretch of records.
    let stretch = (inputs / (kills + 1)).max(2);
    for k in 0..kills {
        let done = lines(&report);
        let at = done + 1 + rng.usize(0..stretch);
        if run(k > 0, Some(at)).is_some() {
            break; // the run finished before the kill point
        }
    }
    // Resume to the end; failed records (transient faults met twice) are re-run by --resume.
    let mut code = run(true, None);
    for _ in 0..3 {
        if code == Some(0) {
            break;
        }
        let text = std::fs::read_to_string(&report).unwrap();
        let transient_failed = records(text.as_bytes()).iter().any(|r| {
            let i: usize = r["id"]
                .as_str()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            r["status"] == "error" && fetch_fault(i).and_then(permanent).is_none()
        });
        if !transient_failed {
            break;
        }
        code = run(true, None);
    }
    let text = std::fs::read_to_string(&report).unwrap();
    assert!(text.ends_with('\n'), "the report ends with a torn line");
    let recs = records(text.as_bytes());
    let mut ids: Vec<&str> = recs.iter().map(|r| r["id"].as_str().unwrap()).collect();
    ids.sort();
    let mut want: Vec<&str> = urls.iter().map(String::as_str).collect();
    want.sort();
    assert!(
        ids == want,
        "every input exactly once: {} records for {} inputs",
        ids.len(),
        want.len()
    );
    let (mut ok, mut failed, mut transient) = (0, 0, 0);
    for r in &recs {
        let i: usize = r["id"]
            .as_str()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        match fetch_fault(i).and_then(permanent) {
            Some(class) => {
                assert_eq!(r["status"], "error", "{r}");
                assert_eq!(r["error_class"], class, "{r}");
                failed += 1;
            }
            None => {
                assert_eq!(r["status"], "ok", "a transient fault must end ok: {r}");
                ok += 1;
                transient += usize::from(fetch_fault(i).is_some() || backend_fault(i).is_some());
            }
        }
    }
    eprintln!(
        "soak (seed {seed}): {inputs} inputs, {ok} ok ({transient} after a transient fault), {failed} permanent errors, {} runs in {:.1}s",
        runs.len(),
        started.elapsed().as_secs_f64()
    );
    for (label, rss, fds, took) in &runs {
        eprintln!(
            "soak:   run {label:<22} {:>6.1}s  peak RSS {:>6.1} MiB  peak open fds {fds}",
            took.as_secs_f64(),
            *rss as f64 / 1024.0
        );
    }
    // Flat: no run's peak grows much past the first's, though the runs handle very different
    // numbers of inputs and the later ones resume from an ever longer report (a leak, or a
    // report read whole, grows with those).
    let (rss0, fds0) = (runs[0].1.max(1), runs[0].2.max(1));
    for (label, rss, fds, _) in &runs {
        assert!(
            *rss < rss0 + rss0 / 2 + 8 * 1024,
            "run {label}: peak RSS {rss} KiB against {rss0} KiB in the first run"
        );
        assert!(
            *fds < fds0 * 2 + 64,
            "run {label}: {fds} open descriptors against {fds0} in the first run"
        );
    }
}

/// Issue 10: the reorder buffer is bounded. One page stalls for seconds at the head of the
/// list; later pages finish meanwhile and wait for it (the report stays in input order), but
/// past the buffer's bound (16 per job, at least 256) no new input starts until it is done.
#[test]
fn issue10_a_stalled_page_does_not_grow_memory_with_the_run() {
    let slow_done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let before_slow = Arc::new(AtomicUsize::new(0));
    let server = {
        let (slow_done, before_slow) = (slow_done.clone(), before_slow.clone());
        Server::start(move |req: &Request| {
            if req.path == "/slow" {
                std::thread::sleep(Duration::from_secs(4));
                slow_done.store(true, Ordering::SeqCst);
                return Reply::html(article("Slow", "the patient tortoise"));
            }
            if !slow_done.load(Ordering::SeqCst) {
                before_slow.fetch_add(1, Ordering::SeqCst);
            }
            Reply::html(article("Fast", &format!("the quick hare {}", req.path)))
        })
    };
    let home = tempfile::tempdir().unwrap();
    let list = home.path().join("urls.txt");
    let mut urls = vec![server.url("/slow")];
    urls.extend((0..600).map(|i| server.url(&format!("/fast{i}"))));
    std::fs::write(&list, urls.join("\n") + "\n").unwrap();
    let out = summarize(home.path())
        .args(["-q", "-j", "4", "--per-host", "4", "--list"])
        .arg(&list)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let recs = records(&out.stdout);
    let ids: Vec<&str> = recs.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        urls.iter().map(String::as_str).collect::<Vec<_>>(),
        "input order"
    );
    let started = before_slow.load(Ordering::SeqCst);
    assert!(
        started <= 256 + 4,
        "{started} pages were fetched while the first one stalled: the reorder buffer is unbounded"
    );
    assert!(
        started >= 100,
        "the later pages did run meanwhile ({started})"
    );
}

/// Issue 10: memory does not grow with the number of inputs. The inputs are streamed, not held
/// (and the run statistics keep counts, not every latency), so a list ten times longer peaks at
/// about the same resident memory. The URLs point at a closed loopback port: each input is an
/// instant `connect` error record, so the run measures what every record costs the pipeline,
/// not page fetching. (The whole-vector code peaked at 24 MB for 10,000 URLs and 62 MB for
/// 100,000 in a release build; `make bench-scale` measures up to 1,000,000 with real pages.)
#[test]
fn issue10_memory_does_not_grow_with_the_input_count() {
    let home = tempfile::tempdir().unwrap();
    let bin = assert_cmd::cargo::cargo_bin("summarize");
    let peak = |n: usize| -> (u64, usize) {
        let list = home.path().join(format!("urls-{n}.txt"));
        let mut text = String::with_capacity(n * 40);
        for i in 0..n {
            text.push_str(&format!("http://127.0.0.1:9/doc/{i}\n"));
        }
        std::fs::write(&list, text).unwrap();
        let report = home.path().join(format!("report-{n}.jsonl"));
        let mut child = std::process::Command::new(&bin)
            .env("HOME", home.path())
            .env("SUMMARIZE_BACKEND", "extractive")
            .args(["-q", "--no-cache", "--retries", "0", "-j", "64", "-o"])
            .arg(&report)
            .arg(&list)
            .spawn()
            .unwrap();
        let mut hwm = 0;
        while child.try_wait().unwrap().is_none() {
            if let Ok(status) = std::fs::read_to_string(format!("/proc/{}/status", child.id())) {
                if let Some(kb) = status
                    .lines()
                    .find_map(|l| l.strip_prefix("VmHWM:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                {
                    hwm = hwm.max(kb);
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let lines = std::fs::read_to_string(&report).unwrap().lines().count();
        (hwm, lines)
    };
    let (small, lines) = peak(10_000);
    assert_eq!(lines, 10_000);
    let (large, lines) = peak(100_000);
    assert_eq!(lines, 100_000);
    eprintln!(
        "peak RSS: {:.1} MiB for 10,000 inputs, {:.1} MiB for 100,000 ({:.2}x)",
        small as f64 / 1024.0,
        large as f64 / 1024.0,
        large as f64 / small as f64
    );
    assert!(
        large <= small + small / 10,
        "peak RSS grew with the input count: {small} KiB for 10,000 inputs, {large} KiB for 100,000"
    );
}

/// Issue 11: robots.txt is fetched once per site and honoured: a disallowed page is an error
/// record of class `robots_disallowed` (the others are fetched), our own group wins over `*`,
/// Crawl-delay spaces the requests to the site, a robots.txt that answers 5xx refuses the
/// site (RFC 9309), and `--ignore-robots` fetches everything without asking.
#[test]
fn issue11_robots_txt_is_honoured() {
    use std::time::Instant;
    let hits: Arc<std::sync::Mutex<Vec<Instant>>> = Arc::default();
    let seen = hits.clone();
    let site = Server::start(move |req: &Request| {
        match req.path.as_str() {
        "/robots.txt" => Reply::status(
            200,
            "text/plain",
            "User-agent: *\nDisallow: /\n\nUser-agent: summarize\nDisallow: /private/\nAllow: /private/ok\nCrawl-delay: 0.3\nSitemap: /sitemap.xml\n",
        ),
        path => {
            seen.lock().unwrap().push(Instant::now());
            Reply::html(article(path, &format!("the page at {path}")))
        }
    }
    });
    let down = Server::start(|req: &Request| match req.path.as_str() {
        "/robots.txt" => Reply::status(503, "text/plain", "maintenance"),
        _ => Reply::html(article("Down", "a page behind a failing robots.txt")),
    });
    // A third site that allows everything and redirects to the first one's pages: the first
    // site's robots.txt decides before anything is fetched from it.
    let to_private = site.url("/private/z");
    let to_public = site.url("/e");
    let hop = Server::start(move |req: &Request| match req.path.as_str() {
        "/robots.txt" => Reply::status(404, "text/plain", "none"),
        "/go-private" => Reply::status(302, "text/plain", "").with_header("Location", &to_private),
        "/go-public" => Reply::status(301, "text/plain", "").with_header("Location", &to_public),
        _ => Reply::status(404, "text/plain", "not here"),
    });
    let home = tempfile::tempdir().unwrap();
    let urls = [
        site.url("/a"),
        site.url("/private/x"),
        site.url("/b"),
        site.url("/private/ok"),
        site.url("/c"),
        down.url("/d"),
        hop.url("/go-private"),
        hop.url("/go-public"),
    ];
    let run = |extra: &[&str], code: i32| {
        let out = summarize(home.path())
            .env_remove("SUMMARIZE_IGNORE_ROBOTS")
            .args(["--no-cache", "--retries", "0", "-j", "8"])
            .args(extra)
            .args(&urls)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(code),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        records(&out.stdout)
    };
    let recs = run(&[], 1);
    let classes: Vec<&str> = recs
        .iter()
        .map(|r| r["error_class"].as_str().unwrap_or("ok"))
        .collect();
    assert_eq!(
        classes,
        [
            "ok",
            "robots_disallowed",
            "ok",
            "ok",
            "ok",
            "robots_disallowed",
            "robots_disallowed",
            "ok"
        ]
    );
    assert!(
        recs[6]["error"].as_str().unwrap().contains("redirects to"),
        "{}",
        recs[6]
    );
    assert_eq!(
        site.count("/private/z"),
        0,
        "a page reached by redirect is checked too"
    );
    assert!(
        recs[1]["error"]
            .as_str()
            .unwrap()
            .contains("--ignore-robots"),
        "{}",
        recs[1]
    );
    assert!(
        recs[5]["error"].as_str().unwrap().contains("503"),
        "{}",
        recs[5]
    );
    assert_eq!(site.count("/robots.txt"), 1, "once per site and run");
    assert_eq!(down.count("/d"), 0, "a refused page is never fetched");
    let times = hits.lock().unwrap().clone();
    assert_eq!(times.len(), 5);
    for pair in times.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= Duration::from_millis(290),
            "Crawl-delay 0.3 s: requests {gap:?} apart"
        );
    }

    // --ignore-robots: every page, no robots.txt asked.
    let recs = run(&["--ignore-robots"], 0);
    let ok = recs.iter().filter(|r| r["status"] == "ok").count();
    assert_eq!(ok, 8, "{recs:?}");
    assert_eq!(site.count("/robots.txt"), 1);
    assert_eq!(down.count("/robots.txt"), 1);
}

/// Issue 11: a page rendered in Chromium cannot reach what the address policy refuses. Inside
/// a network namespace of its own (loopback only, with 169.254.169.254 on loopback so that a
/// "metadata service" can listen and record any request that reaches it), a page's script
/// fetches the metadata address directly, by name and through a redirect, and loads a script
/// and an image from it. By default none of it arrives and the page still renders;
/// `--allow-private` (the control) lets the same requests through, so the check can fail.
#[test]
fn issue11_a_rendered_page_reaches_nothing_the_policy_refuses() {
    if !common::can_unshare() || !common::has_chromium() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("server.py"),
        r#"
import http.server, sys, threading
port, hits = int(sys.argv[1]), sys.argv[2]
PAGE = b'''<!doctype html><html><head><title>Loading</title>
<script src="http://169.254.169.254/evil.js"></script></head><body><div id="root"></div>
<img src="http://169.254.169.254/pixel.png">
<script>
var probes = ['http://169.254.169.254/latest/meta-data/', 'http://metadata.test/latest/', '/to-metadata'];
Promise.all(probes.map(function (u) {
  return fetch(u, {mode: 'no-cors'}).then(function () { return 'reached'; }, function () { return 'refused'; });
})).then(function (results) {
  var root = document.getElementById('root');
  var art = document.createElement('article');
  var paras = ['The harbour town of Wellsby voted on Tuesday to rebuild its old stone pier, which storms damaged twice in the last decade.',
               'Fishermen said the pier matters for the boats that land crab and lobster every morning in every season.'];
  results.forEach(function (r, i) { paras.push('Probe number ' + i + ' of the metadata service was ' + r + ' by the browser.'); });
  paras.forEach(function (t) { var p = document.createElement('p'); p.textContent = t; art.appendChild(p); });
  root.appendChild(art);
});
</script></body></html>'''
class Site(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == '/to-metadata':
            self.send_response(302); self.send_header('Location', 'http://169.254.169.254/latest/'); self.end_headers(); return
        body = PAGE if self.path == '/spa' else b'not here'
        self.send_response(200 if self.path == '/spa' else 404)
        self.send_header('Content-Type', 'text/html'); self.send_header('Content-Length', str(len(body)))
        self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
class Metadata(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        with open(hits, 'a') as f: f.write(self.path + '\n')
        self.send_response(200); self.send_header('Content-Length', '2'); self.end_headers(); self.wfile.write(b'{}')
    def log_message(self, *a): pass
threading.Thread(target=http.server.HTTPServer(('169.254.169.254', 80), Metadata).serve_forever, daemon=True).start()
http.server.HTTPServer(('127.0.0.1', port), Site).serve_forever()
"#,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("hosts"),
        "127.0.0.1 localhost site.test\n169.254.169.254 metadata.test\n",
    )
    .unwrap();
    let port = 20_000 + (std::process::id() + 7) % 20_000;
    let bin = assert_cmd::cargo::cargo_bin("summarize");
    let run = |flags: &str| -> (Value, Vec<String>) {
        let hits = dir.path().join(format!("hits{}", flags.len()));
        let out = common::in_private_network(
            &dir.path().join("hosts"),
            "ip addr add 169.254.169.254/32 dev lo",
            &dir.path().join("server.py"),
            &format!("{port} {}", hits.display()),
            port as u16,
            &format!(
                "HOME={home} TMPDIR={home} {bin} extract -q --no-cache --retries 0 --timeout 20 --render always {flags} http://site.test:{port}/spa",
                home = dir.path().display(),
                bin = bin.display(),
            ),
        );
        let recs = records(&out.stdout);
        assert_eq!(recs.len(), 1, "{}", String::from_utf8_lossy(&out.stderr));
        let hits = std::fs::read_to_string(&hits)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect();
        (recs[0].clone(), hits)
    };
    let (rec, hits) = run("");
    assert_eq!(rec["status"], "ok", "{rec}");
    assert_eq!(rec["rendered"], true);
    let text = rec["text"].as_str().unwrap();
    assert!(text.contains("rebuild its old stone pier"), "{text}");
    for i in 0..3 {
        assert!(
            text.contains(&format!(
                "Probe number {i} of the metadata service was refused"
            )),
            "{text}"
        );
    }
    assert!(
        hits.is_empty(),
        "requests reached the metadata service: {hits:?}"
    );
    // The control: with --allow-private the same page's requests do arrive.
    let (rec, hits) = run("--allow-private");
    assert_eq!(rec["status"], "ok", "{rec}");
    assert!(
        hits.iter().any(|h| h == "/latest/meta-data/") && hits.iter().any(|h| h == "/evil.js"),
        "{hits:?}"
    );
}
