//! A token bucket that refills continuously at `tokens_per_fill / fill_interval`, starting
//! full, as Envoy's local rate limits use it (`AtomicTokenBucket`).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::filters::rate_limit::Bucket;

/// Run-time state of one bucket, shared by every request or connection it limits.
#[derive(Debug)]
pub struct TokenBucket {
    shape: Option<Bucket>,
    state: Mutex<Option<State>>,
}

#[derive(Debug, Clone, Copy)]
struct State {
    tokens: f64,
    at: Instant,
}

/// The outcome of one take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Take {
    /// Whether a token was available.
    pub allowed: bool,
    /// Whole tokens left afterwards.
    pub remaining: u32,
    /// Seconds until the next token (`x-ratelimit-reset`; 0 while one is available), as
    /// Envoy 1.40 reports it (checked side by side in `tests/tests/policy_filters.rs`).
    pub reset_secs: u64,
}

impl TokenBucket {
    /// A bucket of `shape` (`None`: never limits), full at first use.
    pub fn new(shape: Option<Bucket>) -> TokenBucket {
        TokenBucket { shape, state: Mutex::new(None) }
    }

    /// Takes one token at `now`.
    pub fn take(&self, now: Instant) -> Take {
        let Some(b) = self.shape else { return Take { allowed: true, remaining: u32::MAX, reset_secs: 0 } };
        let max = f64::from(b.max_tokens);
        let rate = f64::from(b.tokens_per_fill) / b.fill_interval.as_secs_f64().max(1e-9);
        let mut guard = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let s = guard.get_or_insert(State { tokens: max, at: now });
        let elapsed = now.saturating_duration_since(s.at).as_secs_f64();
        s.tokens = (s.tokens + elapsed * rate).min(max);
        s.at = now;
        let allowed = s.tokens >= 1.0;
        if allowed {
            s.tokens -= 1.0;
        }
        let missing = (1.0 - s.tokens).max(0.0);
        let reset = Duration::try_from_secs_f64(missing / rate).unwrap_or(Duration::MAX);
        Take {
            allowed,
            remaining: s.tokens.floor() as u32,
            reset_secs: reset.as_secs().saturating_add(u64::from(reset.subsec_nanos() > 0)),
        }
    }

    /// The configured burst (`x-ratelimit-limit`).
    pub fn limit(&self) -> u32 {
        self.shape.map_or(0, |b| b.max_tokens)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_full_then_refills_at_the_configured_rate() {
        let b = TokenBucket::new(Some(Bucket {
            max_tokens: 2,
            tokens_per_fill: 1,
            fill_interval: Duration::from_secs(10),
        }));
        let t0 = crate::clock::now();
        assert_eq!(b.take(t0), Take { allowed: true, remaining: 1, reset_secs: 0 });
        assert_eq!(b.take(t0), Take { allowed: true, remaining: 0, reset_secs: 10 });
        assert!(!b.take(t0).allowed);
        assert!(!b.take(t0 + Duration::from_secs(9)).allowed);
        let t = b.take(t0 + Duration::from_secs(10));
        assert!(t.allowed && t.remaining == 0, "{t:?}");
        // Never above the burst, however long it rests.
        let t = b.take(t0 + Duration::from_secs(1000));
        assert_eq!(t.remaining, 1);
    }

    #[test]
    fn no_shape_never_limits() {
        let b = TokenBucket::new(None);
        assert!((0..10).all(|_| b.take(crate::clock::now()).allowed));
    }
}
