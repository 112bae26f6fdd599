//! Clock: the system clock and a settable clock for tests and backtests; Asia/Kolkata helpers.

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use std::sync::{Arc, Mutex};

/// The exchange time zone: market hours, schedules and the trading day are in IST.
pub const IST: Tz = chrono_tz::Asia::Kolkata;

/// Source of "now". Everything that depends on time takes a clock so tests and backtests can
/// set it.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> DateTime<Utc>;

    /// The IST calendar date of now: the trading day.
    fn today_ist(&self) -> NaiveDate {
        self.now().with_timezone(&IST).date_naive()
    }
}

/// Wall-clock time.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that only moves when told to (tests, backtest replay).
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Mutex<DateTime<Utc>>>);

impl ManualClock {
    pub fn new(at: DateTime<Utc>) -> Self {
        Self(Arc::new(Mutex::new(at)))
    }

    pub fn set(&self, at: DateTime<Utc>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = at;
    }

    pub fn advance(&self, by: chrono::Duration) {
        let mut t = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *t += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The IST date a UTC instant falls on.
pub fn ist_date(ts: DateTime<Utc>) -> NaiveDate {
    ts.with_timezone(&IST).date_naive()
}
