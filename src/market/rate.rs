//! Request pacing for Kite: [`RateLimiter`] spaces historical-data requests a fixed interval
//! apart; [`RequestLimiter`] keeps order writes (10/s and 400/min) and quotes (1/s) under
//! Kite's limits across the whole process, on the injected [`Clock`].
//!
//! Neither retries anything: a limiter only decides when a request may start. An order write
//! that gets a 429 is never resent by the caller without first looking its tag up at the broker
//! (see `oms`): Kite may have accepted it before answering.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use tokio::time::Instant;

use crate::clock::{Clock, SystemClock};

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

/// One limit: at most `max` grants in any window of `period`. Seen as a bucket of `max`
/// tokens where each spent token comes back exactly `period` after it was spent, so, unlike a
/// refill-rate bucket, a burst right after an idle spell still never puts `max + 1` grants in
/// one window (Kite counts per window).
#[derive(Debug, Clone)]
struct Bucket {
    max: usize,
    period: TimeDelta,
    /// Times of the last (at most `max`) grants, in order.
    granted: VecDeque<DateTime<Utc>>,
}

impl Bucket {
    fn new(max: u32, period: TimeDelta) -> Self {
        let max = max.max(1) as usize;
        Self {
            max,
            period,
            granted: VecDeque::with_capacity(max),
        }
    }

    /// The earliest start at or after `now` this bucket allows (never before the last grant,
    /// so starts stay in order).
    fn earliest(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let mut at = now;
        if let Some(last) = self.granted.back() {
            at = at.max(*last);
        }
        if self.granted.len() >= self.max
            && let Some(oldest) = self.granted.front()
        {
            at = at.max(*oldest + self.period);
        }
        at
    }

    fn take(&mut self, at: DateTime<Utc>) {
        if self.granted.len() >= self.max {
            self.granted.pop_front();
        }
        self.granted.push_back(at);
    }
}

/// A request must wait: the limiter's answer to [`RequestLimiter::try_acquire`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{what} rate limit reached: the next request may start in {wait_ms} ms")]
pub struct RateLimited {
    pub what: &'static str,
    /// When the request could start.
    pub at: DateTime<Utc>,
    pub wait_ms: i64,
}

/// Several windowed limits that must all allow a request (orders: 10/s and 400/min).
///
/// Each caller reserves the earliest start every limit allows (under a short lock) and then
/// sleeps until it, so waiters start in arrival order. A waiter that is dropped keeps its slot,
/// which only ever makes the pace slower. Time comes from the injected [`Clock`]; the sleep is
/// tokio's, so tests with a manual clock and a paused tokio runtime never wait in real time.
#[derive(Debug)]
pub struct RequestLimiter {
    what: &'static str,
    clock: Arc<dyn Clock>,
    buckets: Mutex<Vec<Bucket>>,
}

/// Kite counts at its end, where arrival jitter can bring two starts closer than they were
/// sent; each window is widened by this much.
pub const KITE_WINDOW_MARGIN: TimeDelta = TimeDelta::milliseconds(10);

/// Kite's order-write limits: 10 per second and 400 per minute (per API key).
pub const KITE_ORDERS_PER_SECOND: u32 = 10;
pub const KITE_ORDERS_PER_MINUTE: u32 = 400;
/// Kite's quote limit: 1 request per second.
pub const KITE_QUOTES_PER_SECOND: u32 = 1;

impl RequestLimiter {
    /// A limiter allowing at most `max` starts per `period` for each `(max, period)` given.
    pub fn new(what: &'static str, clock: Arc<dyn Clock>, limits: &[(u32, TimeDelta)]) -> Self {
        Self {
            what,
            clock,
            buckets: Mutex::new(limits.iter().map(|(m, p)| Bucket::new(*m, *p)).collect()),
        }
    }

    /// Order writes (place, modify, cancel): 10/s and 400/min, each window widened by
    /// [`KITE_WINDOW_MARGIN`].
    pub fn kite_orders(clock: Arc<dyn Clock>) -> Self {
        Self::new(
            "Kite order",
            clock,
            &[
                (
                    KITE_ORDERS_PER_SECOND,
                    TimeDelta::seconds(1) + KITE_WINDOW_MARGIN,
                ),
                (
                    KITE_ORDERS_PER_MINUTE,
                    TimeDelta::minutes(1) + KITE_WINDOW_MARGIN,
                ),
            ],
        )
    }

    /// Quotes (`/quote`, `/quote/ltp`, `/quote/ohlc`): 1/s, widened by [`KITE_WINDOW_MARGIN`].
    pub fn kite_quotes(clock: Arc<dyn Clock>) -> Self {
        Self::new(
            "Kite quote",
            clock,
            &[(
                KITE_QUOTES_PER_SECOND,
                TimeDelta::seconds(1) + KITE_WINDOW_MARGIN,
            )],
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Bucket>> {
        self.buckets.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn earliest(buckets: &[Bucket], now: DateTime<Utc>) -> DateTime<Utc> {
        buckets
            .iter()
            .map(|b| b.earliest(now))
            .fold(now, DateTime::max)
    }

    /// Reserves the earliest start at or after `now` that every limit allows, and returns it.
    pub fn reserve(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let mut buckets = self.lock();
        let at = Self::earliest(&buckets, now);
        for b in buckets.iter_mut() {
            b.take(at);
        }
        at
    }

    /// Takes a start now if every limit allows one; otherwise takes nothing and says when.
    pub fn try_acquire(&self) -> Result<(), RateLimited> {
        let now = self.clock.now();
        let mut buckets = self.lock();
        let at = Self::earliest(&buckets, now);
        if at > now {
            return Err(RateLimited {
                what: self.what,
                at,
                wait_ms: (at - now).num_milliseconds().max(1),
            });
        }
        for b in buckets.iter_mut() {
            b.take(at);
        }
        Ok(())
    }

    /// Waits until the next request may start, takes that start and returns it.
    pub async fn acquire(&self) -> DateTime<Utc> {
        let now = self.clock.now();
        let at = self.reserve(now);
        if let Ok(wait) = (at - now).to_std()
            && !wait.is_zero()
        {
            tracing::debug!(
                what = self.what,
                wait_ms = wait.as_millis() as u64,
                "rate limit: waiting"
            );
            tokio::time::sleep(wait).await;
        }
        at
    }
}

/// The process-wide order-write limiter (system clock): every Kite order write in this
/// process, whichever broker or task sends it, takes a start from this one.
pub fn kite_order_limiter() -> Arc<RequestLimiter> {
    static ORDERS: OnceLock<Arc<RequestLimiter>> = OnceLock::new();
    ORDERS
        .get_or_init(|| Arc::new(RequestLimiter::kite_orders(Arc::new(SystemClock))))
        .clone()
}

/// The process-wide quote limiter (system clock).
pub fn kite_quote_limiter() -> Arc<RequestLimiter> {
    static QUOTES: OnceLock<Arc<RequestLimiter>> = OnceLock::new();
    QUOTES
        .get_or_init(|| Arc::new(RequestLimiter::kite_quotes(Arc::new(SystemClock))))
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use chrono::TimeZone;

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

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 25, 4, 0, 0)
            .single()
            .expect("time")
    }

    fn second() -> TimeDelta {
        TimeDelta::seconds(1) + KITE_WINDOW_MARGIN
    }

    fn minute() -> TimeDelta {
        TimeDelta::minutes(1) + KITE_WINDOW_MARGIN
    }

    fn orders() -> (ManualClock, RequestLimiter) {
        let clock = ManualClock::new(t0());
        let l = RequestLimiter::kite_orders(Arc::new(clock.clone()));
        (clock, l)
    }

    #[test]
    fn a_burst_of_25_orders_goes_out_ten_per_second() {
        let (_clock, l) = orders();
        let starts: Vec<DateTime<Utc>> = (0..25).map(|_| l.reserve(t0())).collect();
        assert!(starts[..10].iter().all(|s| *s == t0()), "{starts:?}");
        // The 11th waits for the next second, the 21st for the one after.
        assert!(starts[10..20].iter().all(|s| *s == t0() + second()));
        assert!(starts[20..].iter().all(|s| *s == t0() + second() * 2));
        for w in starts.windows(11) {
            assert!(
                w[10] - w[0] >= TimeDelta::seconds(1),
                "11 starts in one second"
            );
        }
    }

    #[test]
    fn try_acquire_refuses_the_eleventh_until_the_next_second() {
        let (clock, l) = orders();
        for i in 0..10 {
            assert_eq!(l.try_acquire(), Ok(()), "order {}", i + 1);
        }
        let err = l.try_acquire().expect_err("the 11th must wait");
        assert_eq!(err.at, t0() + second());
        assert_eq!(err.wait_ms, 1010);
        // A refusal takes nothing: still refused just before, allowed at the second.
        clock.set(t0() + second() - TimeDelta::milliseconds(1));
        assert!(l.try_acquire().is_err());
        clock.set(t0() + second());
        assert_eq!(l.try_acquire(), Ok(()));
    }

    #[test]
    fn the_401st_order_in_a_minute_waits_for_the_minute() {
        let (clock, l) = orders();
        let mut now = t0();
        let mut starts = Vec::new();
        // Callers arriving as fast as the per-second limit lets them.
        for _ in 0..400 {
            let at = l.reserve(now);
            starts.push(at);
            now = at;
        }
        assert_eq!(
            starts[399],
            t0() + second() * 39,
            "400 orders fit in 40 seconds"
        );
        let the_401st = l.reserve(now);
        assert_eq!(
            the_401st,
            t0() + minute(),
            "not before a minute after the 1st"
        );
        clock.set(the_401st - TimeDelta::milliseconds(1));
        assert!(l.try_acquire().is_err(), "the 402nd is not early either");
        // In any one-minute window there are at most 400 starts.
        starts.push(the_401st);
        for w in starts.windows(401) {
            assert!(w[400] - w[0] >= TimeDelta::minutes(1));
        }
    }

    #[test]
    fn quotes_go_one_per_second() {
        let clock = ManualClock::new(t0());
        let l = RequestLimiter::kite_quotes(Arc::new(clock.clone()));
        assert_eq!(l.try_acquire(), Ok(()));
        let err = l
            .try_acquire()
            .expect_err("a second quote in the same second");
        assert_eq!(err.at, t0() + second());
        clock.advance(TimeDelta::milliseconds(500));
        assert!(l.try_acquire().is_err());
        clock.advance(TimeDelta::milliseconds(510));
        assert_eq!(l.try_acquire(), Ok(()));
        let starts: Vec<_> = (0..3).map(|_| l.reserve(clock.now())).collect();
        assert_eq!(
            starts,
            vec![
                t0() + second() * 2,
                t0() + second() * 3,
                t0() + second() * 4
            ]
        );
    }

    #[test]
    fn idle_time_is_not_saved_up_beyond_one_window() {
        let (_clock, l) = orders();
        for _ in 0..10 {
            l.reserve(t0());
        }
        // After a long pause a full window is available again, but not more.
        let later = t0() + TimeDelta::minutes(5);
        let starts: Vec<_> = (0..11).map(|_| l.reserve(later)).collect();
        assert!(starts[..10].iter().all(|s| *s == later));
        assert_eq!(starts[10], later + second());
    }

    /// `acquire` returns only once its reserved start has come (on a short real window, so
    /// the test sleeps 40 ms; nothing about speed is asserted).
    #[tokio::test]
    async fn acquire_waits_for_the_reserved_start() {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let l = RequestLimiter::new("test", clock.clone(), &[(2, TimeDelta::milliseconds(40))]);
        let a = l.acquire().await;
        let b = l.acquire().await;
        let c = l.acquire().await;
        assert!(b >= a, "starts stay in order");
        assert!(
            c - a >= TimeDelta::milliseconds(40),
            "the 3rd waits for the window"
        );
        assert!(clock.now() >= c, "acquire returned before its start");
    }

    #[test]
    fn the_process_wide_limiters_are_shared() {
        assert!(Arc::ptr_eq(&kite_order_limiter(), &kite_order_limiter()));
        assert!(Arc::ptr_eq(&kite_quote_limiter(), &kite_quote_limiter()));
        assert!(!Arc::ptr_eq(&kite_order_limiter(), &kite_quote_limiter()));
    }
}
