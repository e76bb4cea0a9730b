//! The per-document error type shared by every stage. Each error carries a class that lands in
//! the report's `error_class` column, so scripts can tell a timeout from a 404 from an empty page,
//! and a one-line message that names the input and, where known, the fix.

use std::fmt;

use serde::Serialize;

/// What went wrong with one document, as a stable, machine-readable name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// The input itself is malformed (bad URL, bad JSONL line).
    InvalidInput,
    /// A named file, directory or glob does not exist or matched nothing.
    NotFound,
    /// A local read failed.
    Io,
    /// The host name does not resolve.
    Dns,
    /// Connection refused or reset.
    Connect,
    /// No complete answer before the deadline.
    Timeout,
    /// Redirects went on past the limit or looped.
    TooManyRedirects,
    /// The server answered 4xx (not 429).
    HttpClientError,
    /// The server answered 5xx.
    HttpServerError,
    /// 429 from the server, still refused after the retries.
    RateLimited,
    /// The body is larger than `--max-bytes` (after decompression).
    TooLarge,
    /// Not a text document: PDF, image, binary.
    UnsupportedContent,
    /// The bytes could not be decoded as text.
    Decode,
    /// Extraction found too little text to summarize.
    EmptyExtraction,
    /// Extraction ran past `--extract-timeout` (a pathological or hostile page).
    ExtractTimeout,
    /// The address is refused: a cloud metadata service, or private with `--public-only`.
    BlockedAddress,
    /// The site's robots.txt refuses the path (`--ignore-robots` overrides).
    RobotsDisallowed,
    /// The headless browser could not render the page (`--render`).
    RenderFailed,
    /// The backend refused the credentials (401/403).
    BackendAuth,
    /// The backend could not be reached.
    BackendUnavailable,
    /// The backend kept answering 429.
    BackendRateLimited,
    /// The backend failed (5xx or an error reply).
    BackendError,
    /// The backend replied with something that is not its API's format.
    BackendBadResponse,
    /// The text did not fit the model's context even after re-chunking.
    ContextLength,
    /// The backend does not have the requested model.
    ModelNotFound,
    /// The backend returned no text.
    EmptySummary,
}

impl ErrorClass {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::InvalidInput => "invalid_input",
            ErrorClass::NotFound => "not_found",
            ErrorClass::Io => "io",
            ErrorClass::Dns => "dns",
            ErrorClass::Connect => "connect",
            ErrorClass::Timeout => "timeout",
            ErrorClass::TooManyRedirects => "too_many_redirects",
            ErrorClass::HttpClientError => "http_client_error",
            ErrorClass::HttpServerError => "http_server_error",
            ErrorClass::RateLimited => "rate_limited",
            ErrorClass::TooLarge => "too_large",
            ErrorClass::UnsupportedContent => "unsupported_content",
            ErrorClass::Decode => "decode",
            ErrorClass::EmptyExtraction => "empty_extraction",
            ErrorClass::ExtractTimeout => "extract_timeout",
            ErrorClass::BlockedAddress => "blocked_address",
            ErrorClass::RobotsDisallowed => "robots_disallowed",
            ErrorClass::RenderFailed => "render_failed",
            ErrorClass::BackendAuth => "backend_auth",
            ErrorClass::BackendUnavailable => "backend_unavailable",
            ErrorClass::BackendRateLimited => "backend_rate_limited",
            ErrorClass::BackendError => "backend_error",
            ErrorClass::BackendBadResponse => "backend_bad_response",
            ErrorClass::ContextLength => "context_length",
            ErrorClass::ModelNotFound => "model_not_found",
            ErrorClass::EmptySummary => "empty_summary",
        }
    }

    /// Whether trying the same request again may succeed.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            ErrorClass::Connect
                | ErrorClass::Timeout
                | ErrorClass::HttpServerError
                | ErrorClass::RateLimited
                | ErrorClass::BackendUnavailable
                | ErrorClass::BackendRateLimited
                | ErrorClass::BackendError
        )
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One document's failure: a class for scripts, a message for people.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct DocError {
    pub class: ErrorClass,
    pub message: String,
    /// The HTTP status behind the error, when there was one.
    pub http_status: Option<u16>,
    /// How long the server asked us to wait before retrying (`Retry-After`).
    pub retry_after: Option<std::time::Duration>,
}

impl DocError {
    pub fn new(class: ErrorClass, message: impl Into<String>) -> DocError {
        DocError {
            class,
            message: message.into(),
            http_status: None,
            retry_after: None,
        }
    }

    pub fn with_status(mut self, status: u16) -> DocError {
        self.http_status = Some(status);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_names_match_serde() {
        for class in [
            ErrorClass::InvalidInput,
            ErrorClass::TooLarge,
            ErrorClass::EmptyExtraction,
            ErrorClass::ExtractTimeout,
            ErrorClass::BlockedAddress,
            ErrorClass::RenderFailed,
            ErrorClass::BackendAuth,
        ] {
            let json = serde_json::to_string(&class).unwrap();
            assert_eq!(json.trim_matches('"'), class.as_str());
        }
    }
}
