//! Retries with exponential backoff and full jitter, honouring a server's `Retry-After`.
//! Shared by fetching and by the model backends so both behave the same under load.

use std::future::Future;
use std::time::{Duration, SystemTime};

use crate::error::DocError;

/// First backoff step; doubles each attempt.
const BASE: Duration = Duration::from_millis(500);
/// Longest computed backoff between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A server asking for a longer wait than this is not waited for: the document fails instead.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);

/// Parses `Retry-After`: delta-seconds or an HTTP-date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// The `Retry-After` of a response, if it has a readable one.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after)
}

/// How long to wait before attempt `attempt + 1` (attempt counts from 0).
pub fn backoff(attempt: u32, retry_after: Option<Duration>) -> Duration {
    if let Some(ra) = retry_after {
        return ra;
    }
    let exp = BASE
        .saturating_mul(1u32 << attempt.min(16))
        .min(MAX_BACKOFF);
    // Full jitter between half and the whole step keeps many clients from retrying in lockstep.
    let half = exp / 2;
    half + Duration::from_millis(fastrand::u64(0..=half.as_millis() as u64))
}

/// A 429 says "later", not "never": rate-limited requests get at least this many retries, so a
/// document that a later retry would pass is not failed.
pub const RATE_LIMIT_RETRIES: u32 = 10;

/// Runs `op` until it succeeds, fails with a permanent error, or `retries` retries are spent.
pub async fn with_retries<T, F, Fut>(retries: u32, mut op: F) -> Result<T, DocError>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, DocError>>,
{
    let mut attempt = 0;
    loop {
        match op(attempt).await {
            Ok(v) => return Ok(v),
            Err(e) if attempt < retries_for(&e, retries) && e.class.is_transient() => {
                if e.retry_after.is_some_and(|ra| ra > MAX_RETRY_AFTER) {
                    let mut e = e;
                    e.message = format!(
                        "{} (the server asked to wait {}s, more than the {}s this tool waits)",
                        e.message,
                        e.retry_after.unwrap_or_default().as_secs(),
                        MAX_RETRY_AFTER.as_secs()
                    );
                    return Err(e);
                }
                let wait = backoff(attempt, e.retry_after);
                tracing::info!(attempt, ?wait, error = %e, "retrying");
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

fn retries_for(e: &DocError, retries: u32) -> u32 {
    use crate::error::ErrorClass;
    match e.class {
        ErrorClass::RateLimited | ErrorClass::BackendRateLimited => retries.max(RATE_LIMIT_RETRIES),
        _ => retries,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        for attempt in 0..20 {
            let d = backoff(attempt, None);
            let step = BASE.saturating_mul(1 << attempt.min(16)).min(MAX_BACKOFF);
            assert!(d >= step / 2 && d <= step, "attempt {attempt}: {d:?}");
        }
        assert_eq!(
            backoff(5, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
    }
}
