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
