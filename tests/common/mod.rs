//! Test support: a real HTTP/1.1 server on 127.0.0.1, written on raw sockets so that tests can
//! inject the faults a library server would refuse to produce (hangs, drips, resets mid-body,
//! lying headers), and helpers to run the real `summarize` binary with a clean environment.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

pub mod batch;

/// A request as the server saw it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

/// What the server does with a request.
pub enum Reply {
    /// A complete response.
    Full {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Accept the request, then say nothing for this long and close.
    Hang(Duration),
    /// Send headers, then `body` a few bytes at a time with a pause between.
    Drip {
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        every: Duration,
    },
    /// Send headers announcing `declared` bytes, send `partial`, then reset the connection.
    ResetMidBody { declared: usize, partial: Vec<u8> },
    /// Close the connection without any response.
    Close,
}

impl Reply {
    pub fn status(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Reply {
        Reply::Full {
            status,
            headers: vec![("Content-Type".into(), content_type.into())],
            body: body.into(),
        }
    }
    pub fn html(body: impl Into<Vec<u8>>) -> Reply {
        Reply::status(200, "text/html; charset=utf-8", body)
    }
    pub fn json(status: u16, value: serde_json::Value) -> Reply {
        Reply::status(status, "application/json", value.to_string())
    }
    pub fn with_header(mut self, name: &str, value: &str) -> Reply {
        if let Reply::Full { headers, .. } = &mut self {
            headers.push((name.into(), value.into()));
        }
        self
    }
}

pub type Handler = dyn Fn(&Request) -> Reply + Send + Sync;

/// A running server; it stops when dropped.
pub struct Server {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    pub requests: Arc<Mutex<Vec<Request>>>,
}

impl Server {
    pub fn start(handler: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        {
            let stop = stop.clone();
            let requests = requests.clone();
            thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let handler = handler.clone();
                    let requests = requests.clone();
                    thread::spawn(move || serve(conn, &*handler, &requests));
                }
            });
        }
        Server {
            addr,
            stop,
            requests,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn count(&self, path: &str) -> usize {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .count()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve(conn: TcpStream, handler: &Handler, log: &Mutex<Vec<Request>>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut first = String::new();
    if reader.read_line(&mut first).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = first.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let mut headers = HashMap::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    // A client that asks to be told to go on (curl does for large bodies) is told at once.
    if headers
        .get("expect")
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
    {
        let _ = (&conn).write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
    }
    let chunked = headers
        .get("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let body = if chunked {
        // reqwest sends a body of unknown length (a streamed multipart form) chunked.
        let Some(body) = read_chunked(&mut reader) else {
            return;
        };
        body
    } else {
        let len: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        body
    };
    let request = Request {
        method,
        path,
        headers,
        body,
    };
    log.lock().unwrap().push(request.clone());
    let mut conn = conn;
    match handler(&request) {
        Reply::Full {
            status,
            headers,
            body,
        } => {
            let _ = conn.write_all(head(status, &headers, body.len()).as_bytes());
            let _ = conn.write_all(&body);
        }
        Reply::Hang(d) => thread::sleep(d),
        Reply::Drip {
            headers,
            body,
            every,
        } => {
            let _ = conn.write_all(head(200, &headers, body.len()).as_bytes());
            for piece in body.chunks(16) {
                if conn.write_all(piece).is_err() {
                    return;
                }
                thread::sleep(every);
            }
        }
        Reply::ResetMidBody { declared, partial } => {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {declared}\r\n\r\n"
            );
            let _ = conn.write_all(head.as_bytes());
            let _ = conn.write_all(&partial);
            let _ = conn.flush();
            thread::sleep(Duration::from_millis(50));
            drop(conn);
            return;
        }
        Reply::Close => return,
    }
    let _ = conn.flush();
}

/// Decodes a `Transfer-Encoding: chunked` request body: hex sizes (extensions after `;`
/// ignored), each chunk followed by CRLF, a zero-size chunk, then trailers up to a blank line
/// (read and dropped). `None` when the connection ends or the framing is wrong.
fn read_chunked(reader: &mut impl BufRead) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let size = line.split(';').next()?.trim();
        let size = usize::from_str_radix(size, 16).ok()?;
        if size == 0 {
            loop {
                let mut trailer = String::new();
                if reader.read_line(&mut trailer).ok()? == 0 || trailer.trim_end().is_empty() {
                    return Some(body);
                }
            }
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..]).ok()?;
        let mut crlf = [0; 2];
        reader.read_exact(&mut crlf).ok()?;
        if &crlf != b"\r\n" {
            return None;
        }
    }
}

/// A response head announcing `len` body bytes on a connection that closes after it.
fn head(status: u16, headers: &[(String, String)], len: usize) -> String {
    let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {len}\r\nConnection: close\r\n\r\n"
    ));
    head
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        301 | 302 => "Found",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        410 => "Gone",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// An article long enough to summarize, with a title and a distinctive phrase.
pub fn article(title: &str, phrase: &str) -> String {
    let mut body = String::new();
    for i in 0..6 {
        body.push_str(&format!(
            "<p>Paragraph {i} of the story about {phrase}. Reporters spoke with residents, officials and experts, who described what happened in detail and why it matters for the town. The council will meet again next month to decide on the budget.</p>\n"
        ));
    }
    format!(
        "<!doctype html><html><head><title>{title}</title></head><body><nav>Home | About | Contact</nav><article><h1>{title}</h1>{body}</article><footer>Copyright</footer></body></html>"
    )
}

/// The binary under test with a clean environment: no API keys, no user config, a private HOME.
pub fn summarize(home: &Path) -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::cargo_bin("summarize").unwrap();
    cmd.env_clear()
        .env("HOME", home)
        .env("XDG_DATA_HOME", home.join("data"))
        .env("XDG_CACHE_HOME", home.join("cache"))
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("NO_COLOR", "1")
        // The default backend is the local model; tests about other parts use the extractive
        // one, which needs no model file. The local backend's tests override this.
        .env("SUMMARIZE_BACKEND", "extractive");
    cmd
}

/// Parses a JSONL report.
pub fn records(stdout: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {e}: {l}")))
        .collect()
}

/// Sends SIGINT (Ctrl-C) to a running child, through the real `kill`.
pub fn interrupt(child: &std::process::Child) {
    let sent = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success(), "kill -INT {} failed", child.id());
}

/// A real, minimal PDF (1.4, Helvetica, uncompressed): each page's lines are set top to bottom
/// with `Tj`, as any producer writes them. `info` becomes the document information dictionary;
/// `encrypt` adds an /Encrypt entry (RC4 40-bit, owner and user passwords unknown) so readers
/// must refuse it; a page given as no lines has no text layer, like a scan.
pub fn pdf(pages: &[Vec<String>], info: &[(&str, &str)], encrypt: bool) -> Vec<u8> {
    let streams: Vec<Vec<u8>> = pages
        .iter()
        .map(|lines| {
            let mut stream = String::new();
            if lines.is_empty() {
                // A scanned page: a filled rectangle, no text.
                stream.push_str("0.5 g 72 72 468 648 re f\n");
            } else {
                stream.push_str("BT /F1 11 Tf 14 TL 72 740 Td\n");
                for l in lines {
                    stream.push_str(&format!("({}) Tj T*\n", pdf_escape(l)));
                }
                stream.push_str("ET\n");
            }
            stream.into_bytes()
        })
        .collect();
    pdf_of_streams(&streams, false, info, encrypt)
}

fn pdf_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('(', "\\(")
        .replace(')', "\\)")
}

/// The PDF of `pdf` with each page's content stream given as it is, byte for byte, and
/// compressed with zlib (`/FlateDecode`, as most producers write them) when `flate` is set.
/// The font is Helvetica, `/F1`.
pub fn pdf_of_streams(
    streams: &[Vec<u8>],
    flate: bool,
    info: &[(&str, &str)],
    encrypt: bool,
) -> Vec<u8> {
    let n = streams.len();
    // Objects: 1 catalog, 2 pages, 3 font, then per page (page, contents), then info, encrypt.
    let mut objects: Vec<Vec<u8>> = Vec::new();
    objects.push(b"<< /Type /Catalog /Pages 2 0 R >>".to_vec());
    let kids: Vec<String> = (0..n).map(|i| format!("{} 0 R", 4 + 2 * i)).collect();
    objects.push(format!("<< /Type /Pages /Kids [{}] /Count {n} >>", kids.join(" ")).into_bytes());
    objects.push(
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
            .to_vec(),
    );
    for (i, stream) in streams.iter().enumerate() {
        objects.push(format!(
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> /Contents {} 0 R >>",
            5 + 2 * i
        ).into_bytes());
        let (data, filter) = if flate {
            use std::io::Write;
            let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            z.write_all(stream).unwrap();
            (z.finish().unwrap(), " /Filter /FlateDecode")
        } else {
            (stream.clone(), "")
        };
        let mut obj = format!("<< /Length {}{filter} >>\nstream\n", data.len()).into_bytes();
        obj.extend_from_slice(&data);
        obj.extend_from_slice(b"\nendstream");
        objects.push(obj);
    }
    let info_id = objects.len() + 1;
    let fields: Vec<String> = info
        .iter()
        .map(|(k, v)| format!("/{k} ({})", pdf_escape(v)))
        .collect();
    objects.push(format!("<< {} >>", fields.join(" ")).into_bytes());
    let encrypt_id = objects.len() + 1;
    if encrypt {
        objects.push(b"<< /Filter /Standard /V 1 /R 2 /O <28BF4E5E4E758A4164004E56FFFA01082E2E00B6D0683E802F0CA9FE6453697A> /U <28BF4E5E4E758A4164004E56FFFA01082E2E00B6D0683E802F0CA9FE6453697A> /P -64 >>".to_vec());
    }
    let mut out = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n".to_vec();
    let mut offsets = Vec::new();
    for (i, obj) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n", i + 1).as_bytes());
        out.extend_from_slice(obj);
        out.extend_from_slice(b"\nendobj\n");
    }
    let xref = out.len();
    out.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
    );
    for o in offsets {
        out.extend_from_slice(format!("{o:010} 00000 n \n").as_bytes());
    }
    let encrypt_ref = if encrypt {
        format!(" /Encrypt {encrypt_id} 0 R /ID [<0123456789ABCDEF0123456789ABCDEF> <0123456789ABCDEF0123456789ABCDEF>]")
    } else {
        String::new()
    };
    out.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R /Info {info_id} 0 R{encrypt_ref} >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    out
}

/// Whether `unshare -n -m` works here (root or user namespaces); says so when it does not, for a
/// test that then skips.
pub fn can_unshare() -> bool {
    let ok = std::process::Command::new("unshare")
        .args(["-n", "-m", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!(
            "skipping: `unshare -n -m` is not permitted here (needs root or user namespaces)"
        );
    }
    ok
}

/// Whether Debian's `chromium` runs here; says so when it does not, for a test that then skips
/// (.ci/run installs it).
pub fn has_chromium() -> bool {
    let ok = ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .any(|b| {
            std::process::Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        });
    if !ok {
        eprintln!("skipping: chromium is not installed (Debian: apt-get install chromium); .ci/run installs it");
    }
    ok
}

/// Runs `command` (a bash line) inside a network namespace of its own with only loopback
/// (`unshare -n -m`, see `can_unshare`): `hosts` replaces /etc/hosts there, `setup` runs after
/// loopback is up (say, another address on it), and the Python `server` (a file) is started
/// with `server_args` and waited for on 127.0.0.1:`port` first.
pub fn in_private_network(
    hosts: &Path,
    setup: &str,
    server: &Path,
    server_args: &str,
    port: u16,
    command: &str,
) -> std::process::Output {
    let script = format!(
        "mount --bind {hosts} /etc/hosts && ip link set lo up {setup} || exit 3; \
         python3 {server} {server_args} >/dev/null 2>&1 & server=$!; trap 'kill $server' EXIT; \
         for i in $(seq 50); do python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", {port}), 0.2)' 2>/dev/null && break; sleep 0.1; done; \
         {command}",
        hosts = hosts.display(),
        server = server.display(),
        setup = if setup.is_empty() { String::new() } else { format!("&& {setup}") },
    );
    std::process::Command::new("unshare")
        .args(["-n", "-m", "bash", "-c", &script])
        .output()
        .unwrap()
}
