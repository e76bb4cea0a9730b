//! The tool against a real OpenAI-compatible server: llama.cpp's server (llama-cpp-python)
//! serving SmolLM2-135M-Instruct, started by `make test-integration` (scripts/test-integration.sh),
//! which passes its base URL in SUMMARIZE_LLAMA_URL. Without it these tests say so and pass
//! without checking anything: plain `cargo test` has no model server.

mod common;

use std::time::Duration;

use common::{records, summarize};

fn server() -> Option<String> {
    let url = std::env::var("SUMMARIZE_LLAMA_URL")
        .ok()
        .filter(|u| !u.is_empty());
    if url.is_none() {
        eprintln!("skipped: SUMMARIZE_LLAMA_URL is unset; run `make test-integration` to start a llama.cpp server");
    }
    url
}

fn run(url: &str, home: &std::path::Path, args: &[&str]) -> std::process::Output {
    summarize(home)
        .env("OPENAI_BASE_URL", url)
        .args([
            "-b",
            "openai",
            "-m",
            "smollm2",
            "--context-tokens",
            "2048",
            "--timeout",
            "300",
            "-j",
            "1",
            "-q",
            "--no-cache",
        ])
        .args(args)
        .timeout(Duration::from_secs(900))
        .output()
        .unwrap()
}

#[test]
fn summarizes_samples_with_a_real_llama_cpp_server_deterministically() {
    let Some(url) = server() else { return };
    let home = tempfile::tempdir().unwrap();
    let docs = [
        "samples/article.html",
        "samples/field-guide.md",
        "samples/changelog-excerpt.md",
    ];
    let mut args = vec!["--length", "40w"];
    args.extend(docs);
    let first = run(&url, home.path(), &args);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let recs = records(&first.stdout);
    assert_eq!(recs.len(), 3);
    for r in &recs {
        assert_eq!(r["status"], "ok", "{r}");
        let summary = r["summary"].as_str().unwrap();
        assert!(!summary.trim().is_empty(), "{r}");
        assert!(
            r["tokens_in"].as_u64().unwrap() > 50,
            "usage reported by the server: {r}"
        );
        let out = r["tokens_out"].as_u64().unwrap();
        assert!(
            out > 0 && out <= (40 * 2 + 48),
            "output within the token limit: {r}"
        );
    }
    let second = run(&url, home.path(), &args);
    let again = records(&second.stdout);
    for (a, b) in recs.iter().zip(&again) {
        assert_eq!(
            a["summary"], b["summary"],
            "temperature 0 and a fixed seed give the same summary"
        );
    }
}

#[test]
fn long_document_goes_map_reduce_within_a_2048_token_context() {
    let Some(url) = server() else { return };
    let home = tempfile::tempdir().unwrap();
    let article = std::fs::read_to_string("samples/field-guide.md").unwrap();
    let long = home.path().join("long.md");
    std::fs::write(&long, article.repeat(8)).unwrap();
    let out = run(
        &url,
        home.path(),
        &["--length", "40w", long.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let recs = records(&out.stdout);
    assert_eq!(recs[0]["status"], "ok", "{}", recs[0]);
    assert!(recs[0]["chunks"].as_u64().unwrap() >= 2, "{}", recs[0]);
}

/// Issue 10: two real llama.cpp servers as replicas of one model; the second is killed with
/// SIGKILL once the run is under way. Its requests go to the first: every input is reported
/// exactly once and none fails; `--stats` shows both replicas' figures.
#[test]
fn replicas_survive_one_killed_mid_run() {
    let Some(url) = server() else { return };
    let (Ok(url2), Ok(pid_file)) = (
        std::env::var("SUMMARIZE_LLAMA_URL2"),
        std::env::var("SUMMARIZE_LLAMA_PID2"),
    ) else {
        eprintln!("skipped: no second server (SUMMARIZE_LLAMA_URL2); run `make test-integration`");
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let docs = home.path().join("docs.jsonl");
    let lines: Vec<String> = (0..10)
        .map(|i| {
            serde_json::json!({"id": format!("d{i}"), "text": format!(
                "The harbour board of town {i} met on Monday. It agreed to run a winter ferry every two hours. \
                 Residents asked for a later last crossing, and the board said it would look at the timetable again in spring."
            )})
            .to_string()
        })
        .collect();
    std::fs::write(&docs, lines.join("\n") + "\n").unwrap();
    let report = home.path().join("report.jsonl");
    let stats = home.path().join("stats.json");
    let bin = assert_cmd::cargo::cargo_bin("summarize");
    let mut child = std::process::Command::new(bin)
        .env("HOME", home.path())
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL")
        .args([
            "-b",
            "openai",
            "-m",
            "smollm2",
            "--context-tokens",
            "2048",
            "--timeout",
            "300",
        ])
        .args([
            "-j",
            "2",
            "-q",
            "--no-cache",
            "--length",
            "30w",
            "--base-url",
            &url,
            "--base-url",
            &url2,
        ])
        .arg("--stats")
        .arg(&stats)
        .arg("-o")
        .arg(&report)
        .arg(&docs)
        .spawn()
        .unwrap();
    // Kill the second replica once two records are written (its next requests, or the one in
    // flight, fail and move to the first).
    let lines_in =
        |p: &std::path::Path| std::fs::read_to_string(p).map_or(0, |t| t.lines().count());
    for _ in 0..3000 {
        if lines_in(&report) >= 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let pid = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .to_string();
    assert!(std::process::Command::new("kill")
        .args(["-9", &pid])
        .status()
        .unwrap()
        .success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "none fails");
    let recs = records(&std::fs::read(&report).unwrap());
    assert_eq!(recs.len(), 10, "every input once");
    assert!(recs.iter().all(|r| r["status"] == "ok"), "{recs:?}");
    let s: serde_json::Value = serde_json::from_slice(&std::fs::read(&stats).unwrap()).unwrap();
    let replicas = s["replicas"].as_array().unwrap();
    let by = |u: &str| {
        replicas
            .iter()
            .find(|r| r["base_url"] == u)
            .unwrap()
            .clone()
    };
    let (first, second) = (by(&url), by(&url2));
    assert!(second["requests"].as_u64().unwrap() >= 1, "{s}");
    assert!(
        first["requests"].as_u64().unwrap()
            > second["requests"].as_u64().unwrap() - second["errors"].as_u64().unwrap(),
        "{s}"
    );
    eprintln!("replicas: {}", serde_json::to_string(replicas).unwrap());
}
