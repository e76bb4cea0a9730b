//! Client-side rate limits: one shared limiter for requests per minute and tokens per minute to
//! a model provider (`--rpm`, `--tpm`), and per-host concurrency for fetches (`--per-host`), so
//! a whole run stays inside a quota instead of collecting 429s.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A token bucket refilled continuously at `per_minute / 60` per second, holding at most a
/// minute's worth.
#[derive(Debug)]
struct Bucket {
    capacity: f64,
    available: f64,
    updated: Instant,
}

impl Bucket {
    fn new(per_minute: u64) -> Bucket {
        Bucket {
            capacity: per_minute as f64,
            available: per_minute as f64,
            updated: Instant::now(),
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.duration_since(self.updated).as_secs_f64();
        self.available = (self.available + elapsed * self.capacity / 60.0).min(self.capacity);
        self.updated = now;
    }

    /// How long until `amount` is available; a request larger than the bucket waits for a full one.
    fn wait_for(&self, amount: f64) -> Duration {
        let need = amount.min(self.capacity) - self.available;
        if need <= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(need * 60.0 / self.capacity)
        }
    }
}

/// Requests-per-minute and tokens-per-minute limits shared by every model call of a run.
#[derive(Debug, Default)]
pub struct RateLimiter {
    requests: Option<Mutex<Bucket>>,
    tokens: Option<Mutex<Bucket>>,
}

impl RateLimiter {
    pub fn new(rpm: Option<u64>, tpm: Option<u64>) -> RateLimiter {
        RateLimiter {
            requests: rpm.filter(|&n| n > 0).map(|n| Mutex::new(Bucket::new(n))),
            tokens: tpm.filter(|&n| n > 0).map(|n| Mutex::new(Bucket::new(n))),
        }
    }

    /// Waits until one request of about `tokens` tokens fits both limits, then takes it.
    pub async fn acquire(&self, tokens: usize) {
        loop {
            let wait = self.try_take(tokens as f64, Instant::now());
            if wait.is_zero() {
                return;
            }
            tracing::debug!(?wait, "rate limit: waiting");
            tokio::time::sleep(wait).await;
        }
    }

    /// Takes from both buckets when both can give, else says how long to wait.
    fn try_take(&self, tokens: f64, now: Instant) -> Duration {
        let mut req = self
            .requests
            .as_ref()
            .map(|m| m.lock().expect("rate limiter poisoned"));
        let mut tok = self
            .tokens
            .as_ref()
            .map(|m| m.lock().expect("rate limiter poisoned"));
        let mut wait = Duration::ZERO;
        if let Some(b) = req.as_deref_mut() {
            b.refill(now);
            wait = wait.max(b.wait_for(1.0));
        }
        if let Some(b) = tok.as_deref_mut() {
            b.refill(now);
            wait = wait.max(b.wait_for(tokens));
        }
        if wait.is_zero() {
            if let Some(b) = req.as_deref_mut() {
                b.available -= 1.0;
            }
            if let Some(b) = tok.as_deref_mut() {
                b.available -= tokens.min(b.capacity);
            }
        }
        wait
    }
}

/// At most N requests in flight to any one host.
#[derive(Debug)]
pub struct PerHost {
    limit: usize,
    hosts: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl PerHost {
    pub fn new(limit: usize) -> PerHost {
        PerHost {
            limit: limit.max(1),
            hosts: Mutex::new(HashMap::new()),
        }
    }

    pub async fn acquire(&self, host: &str) -> OwnedSemaphorePermit {
        let sem = {
            let mut hosts = self.hosts.lock().expect("per-host map poisoned");
            hosts
                .entry(host.to_string())
                .or_insert_with(|| Arc::new(Semaphore::new(self.limit)))
                .clone()
        };
        sem.acquire_owned()
            .await
            .expect("semaphores are never closed")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_refill_over_time() {
        let limiter = RateLimiter::new(Some(60), Some(600));
        let t0 = Instant::now();
        for _ in 0..60 {
            assert!(limiter.try_take(10.0, t0).is_zero());
        }
        // Both buckets are empty now: one request a second, ten tokens a second.
        let wait = limiter.try_take(10.0, t0);
        assert!(
            wait >= Duration::from_millis(990) && wait <= Duration::from_millis(1010),
            "{wait:?}"
        );
        assert!(limiter
            .try_take(10.0, t0 + Duration::from_secs(1))
            .is_zero());
    }

    #[test]
    fn oversized_request_waits_for_a_full_bucket_not_forever() {
        let limiter = RateLimiter::new(None, Some(100));
        let t0 = Instant::now();
        assert!(limiter.try_take(1000.0, t0).is_zero());
        let wait = limiter.try_take(1000.0, t0);
        assert!(wait <= Duration::from_secs(60));
    }

    #[tokio::test]
    async fn per_host_limits_concurrency() {
        let per_host = PerHost::new(1);
        let a = per_host.acquire("a.example").await;
        let b = per_host.acquire("b.example").await;
        let blocked =
            tokio::time::timeout(Duration::from_millis(50), per_host.acquire("a.example")).await;
        assert!(blocked.is_err(), "second request to the same host waits");
        drop(a);
        drop(b);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), per_host.acquire("a.example"))
                .await
                .is_ok()
        );
    }
}
