//! A fast loopback site for `make bench-scale`: article pages at `/doc/N` and an
//! OpenAI-compatible chat endpoint answering after a fixed latency, on 127.0.0.1 only.
//!
//! `loopback_site [--chat-latency-ms MS]` prints `http://127.0.0.1:PORT` on its first line and
//! serves until killed. HTTP/1.1 with keep-alive; no request is logged or kept, so the site's
//! memory stays flat however many documents a benchmark asks for.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let latency = args
        .iter()
        .position(|a| a == "--chat-latency-ms")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(Duration::ZERO, Duration::from_millis);
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    println!("http://{}", listener.local_addr()?);
    loop {
        let (conn, _) = listener.accept().await?;
        tokio::spawn(async move {
            let _ = serve(conn, latency).await;
        });
    }
}

async fn serve(mut conn: TcpStream, latency: Duration) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(4096);
    loop {
        // Read one request head, then its body by Content-Length.
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            let n = conn.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let length = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse::<usize>().ok())?
            })
            .unwrap_or(0);
        while buf.len() < head_end + length {
            let mut chunk = [0u8; 4096];
            let n = conn.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        buf.drain(..head_end + length);
        let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
        let (content_type, body) = if let Some(n) = path.strip_prefix("/doc/") {
            ("text/html; charset=utf-8", article(n))
        } else if path.ends_with("/models") {
            (
                "application/json",
                r#"{"object":"list","data":[{"id":"bench","object":"model"}]}"#.to_string(),
            )
        } else if path.ends_with("/chat/completions") {
            tokio::time::sleep(latency).await;
            ("application/json", r#"{"id":"c","object":"chat.completion","model":"bench","choices":[{"index":0,"message":{"role":"assistant","content":"The council will meet again next month to decide on the budget."},"finish_reason":"stop"}],"usage":{"prompt_tokens":200,"completion_tokens":14,"total_tokens":214}}"#.to_string())
        } else {
            ("text/plain", "not found".to_string())
        };
        let status = if content_type == "text/plain" {
            "404 Not Found"
        } else {
            "200 OK"
        };
        let reply = format!(
            "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        conn.write_all(reply.as_bytes()).await?;
    }
}

/// A news-like page of about 2 KB whose words vary with the document number.
fn article(n: &str) -> String {
    let mut body = String::new();
    for i in 0..5 {
        body.push_str(&format!(
            "<p>Paragraph {i} of report {n}. Residents, officials and experts described what happened in district {n} and why it matters for the town. The council will meet again next month to decide on the budget for item {i}.</p>\n"
        ));
    }
    format!(
        "<!doctype html><html><head><title>Report {n}</title></head><body><nav>Home | About | Contact</nav><article><h1>Report {n}</h1>{body}</article><footer>Copyright</footer></body></html>"
    )
}
