//! Request-start pacing: successive requests start at least a fixed interval apart.

use std::time::Duration;
use tokio::time::Instant;

/// Kite counts requests at its end, where arrival jitter can bring two starts closer than we sent
/// them; this margin keeps a burst from looking like `rate + 1` requests in one second there.
const SAFETY_MARGIN: Duration = Duration::from_millis(10);

/// Spaces request starts at least `spacing` apart, across every task sharing the limiter.
///
/// Each caller reserves the next free slot (under a short lock) and then sleeps until it, so
/// waiting callers start in order and one slot apart. Uses tokio's clock.
#[derive(Debug)]
pub struct RateLimiter {
    spacing: Duration,
    next_free: std::sync::Mutex<Option<Instant>>,
}

impl RateLimiter {
    /// Starts at least `spacing` apart.
    pub fn new(spacing: Duration) -> Self {
        Self {
            spacing,
            next_free: std::sync::Mutex::new(None),
        }
    }

    /// At most `rate` starts per second (plus a small safety margin); a rate of 0 is taken as 1.
    pub fn per_second(rate: u32) -> Self {
        Self::new(Duration::from_secs(1) / rate.max(1) + SAFETY_MARGIN)
    }

    /// The minimum time between two starts.
    pub fn spacing(&self) -> Duration {
        self.spacing
    }

    /// Reserves the earliest start at or after `now` that keeps the spacing, and returns it.
    pub fn reserve(&self, now: Instant) -> Instant {
        let mut next = self.next_free.lock().unwrap_or_else(|e| e.into_inner());
        let start = match *next {
            Some(free) if free > now => free,
            _ => now,
        };
        *next = Some(start + self.spacing);
        start
    }

    /// Waits until the next request may start, and takes that start.
    pub async fn acquire(&self) {
        let start = self.reserve(Instant::now());
        tokio::time::sleep_until(start).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_burst_is_spread_one_spacing_apart() {
        let limiter = RateLimiter::new(ms(333));
        let t0 = Instant::now();
        let starts: Vec<Duration> = (0..5).map(|_| limiter.reserve(t0) - t0).collect();
        assert_eq!(starts, vec![ms(0), ms(333), ms(666), ms(999), ms(1332)]);
    }

    #[test]
    fn idle_time_is_not_saved_up_for_a_burst() {
        let limiter = RateLimiter::new(ms(500));
        let t0 = Instant::now();
        assert_eq!(limiter.reserve(t0), t0);
        let later = t0 + Duration::from_secs(10);
        assert_eq!(limiter.reserve(later), later, "no wait after a long pause");
        assert_eq!(
            limiter.reserve(later),
            later + ms(500),
            "but no burst either"
        );
    }

    #[test]
    fn a_caller_arriving_mid_gap_waits_only_for_the_rest() {
        let limiter = RateLimiter::new(ms(400));
        let t0 = Instant::now();
        limiter.reserve(t0);
        assert_eq!(limiter.reserve(t0 + ms(100)), t0 + ms(400));
        assert_eq!(limiter.reserve(t0 + ms(900)), t0 + ms(900));
    }

    #[test]
    fn three_per_second_never_puts_four_starts_in_one_second() {
        let limiter = RateLimiter::per_second(3);
        let t0 = Instant::now();
        // Callers arriving irregularly, some in bursts.
        let arrivals = [0u64, 0, 0, 0, 50, 60, 2000, 2001, 2002, 2003, 2004, 5000];
        let starts: Vec<Instant> = arrivals
            .iter()
            .map(|a| limiter.reserve(t0 + ms(*a)))
            .collect();
        for w in starts.windows(4) {
            assert!(w[3] - w[0] > Duration::from_secs(1), "{:?}", starts);
        }
        for (start, arrival) in starts.iter().zip(arrivals) {
            assert!(
                *start >= t0 + ms(arrival),
                "no start before its caller arrives"
            );
        }
    }

    #[test]
    fn zero_rate_means_one_per_second() {
        assert!(RateLimiter::per_second(0).spacing() >= Duration::from_secs(1));
    }
}
