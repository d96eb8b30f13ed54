//! How fast events leave the node: a token bucket, pure, told the time by every call.

use std::time::{Duration, Instant};

/// Slack for float rounding: tokens that are `n` give or take this are `n`.
const TOKEN_EPSILON: f64 = 1e-6;

/// A token bucket: `burst` tokens at most, refilled at `events_per_second`; each event takes
/// one. Pure: every call is told what time it is.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    /// When `tokens` was counted; `None` until the first call.
    at: Option<Instant>,
}

impl TokenBucket {
    /// A full bucket. A rate that is not a positive number never refills it.
    pub fn new(events_per_second: f64, burst: u32) -> Self {
        let rate = if events_per_second.is_finite() && events_per_second > 0.0 {
            events_per_second
        } else {
            0.0
        };
        TokenBucket {
            rate,
            burst: f64::from(burst),
            tokens: f64::from(burst),
            at: None,
        }
    }

    /// Takes one token if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        self.try_take_n(now, 1)
    }

    /// Takes `n` tokens if there are as many; else takes none.
    pub fn try_take_n(&mut self, now: Instant, n: u32) -> bool {
        self.tokens = self.available(now);
        // A clock that goes back does not refill: keep the later time.
        self.at = Some(self.at.map_or(now, |at| at.max(now)));
        if self.tokens + TOKEN_EPSILON >= f64::from(n) {
            self.tokens = (self.tokens - f64::from(n)).max(0.0);
            true
        } else {
            false
        }
    }

    /// How long until `n` tokens are there (zero when they are); `None` when they never
    /// will be (more than `burst`, or no refill).
    pub fn wait_time(&self, now: Instant, n: u32) -> Option<Duration> {
        let n = f64::from(n);
        if n > self.burst {
            return None;
        }
        let missing = n - self.available(now);
        if missing <= TOKEN_EPSILON {
            return Some(Duration::ZERO);
        }
        if self.rate == 0.0 {
            return None;
        }
        Duration::try_from_secs_f64(missing / self.rate).ok()
    }

    fn available(&self, now: Instant) -> f64 {
        let elapsed = self
            .at
            .map_or(Duration::ZERO, |at| now.saturating_duration_since(at));
        (self.tokens + elapsed.as_secs_f64() * self.rate).min(self.burst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_bucket_paces_and_bursts() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut bucket = TokenBucket::new(10.0, 3);
        assert_eq!(bucket.wait_time(t0, 3), Some(Duration::ZERO), "starts full");
        for _ in 0..3 {
            assert!(bucket.try_take(t0));
        }
        assert!(!bucket.try_take(t0));
        let wait = bucket.wait_time(t0, 1).unwrap();
        assert!(wait.abs_diff(ms(100)) < ms(1), "{wait:?}");
        let wait = bucket.wait_time(t0, 2).unwrap();
        assert!(wait.abs_diff(ms(200)) < ms(1), "{wait:?}");
        assert!(!bucket.try_take(t0 + ms(50)));
        assert!(bucket.try_take(t0 + ms(100)));
        assert!(!bucket.try_take(t0 + ms(100)));
        // All or nothing.
        assert!(!bucket.try_take_n(t0 + ms(250), 2));
        assert!(bucket.try_take_n(t0 + ms(300), 2));
        // Idle time fills it up to the burst, no more.
        assert!(bucket.try_take_n(t0 + Duration::from_secs(60), 3));
        assert!(!bucket.try_take(t0 + Duration::from_secs(60)));
        // A clock that goes back refills nothing.
        assert!(!bucket.try_take(t0));
        assert_eq!(bucket.wait_time(t0, 4), None, "more than the burst");

        let mut fixed = TokenBucket::new(0.0, 2);
        assert!(fixed.try_take_n(t0, 2));
        assert!(!fixed.try_take(t0 + Duration::from_secs(3600)));
        assert_eq!(fixed.wait_time(t0, 1), None);
        let mut nan = TokenBucket::new(f64::NAN, 1);
        assert!(nan.try_take(t0));
        assert_eq!(nan.wait_time(t0 + Duration::from_secs(1), 1), None);
    }
}
