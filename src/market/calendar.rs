//! NSE trading calendar: holidays from a `date,description` file (stored in the database and
//! seeded from the copy shipped in `assets/calendar/`), trading days, market hours and the candle
//! a fresh series must end with.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::RwLock;

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, TimeZone, Utc, Weekday};

use crate::clock::IST;
use crate::domain::Interval;
use crate::store::{Store, StoreError};

/// The holidays shipped with the binary (NSE's list for 2026), loaded when the table is empty.
pub const SEED_HOLIDAYS_CSV: &str = include_str!("../../assets/calendar/nse_holidays_2026.csv");

/// NSE's continuous session, IST.
pub const MARKET_OPEN: NaiveTime = match NaiveTime::from_hms_opt(9, 15, 0) {
    Some(t) => t,
    None => panic!("09:15 is a valid time"),
};
pub const MARKET_CLOSE: NaiveTime = match NaiveTime::from_hms_opt(15, 30, 0) {
    Some(t) => t,
    None => panic!("15:30 is a valid time"),
};

/// A holidays file was rejected; nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum HolidayError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {}; nothing was imported", .problems.join("; "))]
    Invalid { path: String, problems: Vec<String> },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Parses `date,description` lines (header required; dates `YYYY-MM-DD`). Every bad line is
/// reported with its 1-based line number.
pub fn parse_holidays_csv(text: &str) -> Result<Vec<(NaiveDate, String)>, Vec<String>> {
    let mut problems = Vec::new();
    let mut rows: Vec<(NaiveDate, String)> = Vec::new();
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, header)) => {
            let cols: Vec<String> = header
                .trim_start_matches('\u{feff}')
                .split(',')
                .map(|c| c.trim().to_ascii_lowercase())
                .collect();
            if cols.first().map(String::as_str) != Some("date")
                || cols.get(1).map(String::as_str) != Some("description")
            {
                problems.push(format!(
                    "line 1: the header must be \"date,description\", found {header:?}"
                ));
            }
        }
        None => problems.push("the file is empty: expected a \"date,description\" header".into()),
    }
    for (i, line) in lines {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let (date, description) = match line.split_once(',') {
            Some((d, rest)) => (d.trim(), rest.trim().trim_matches('"').trim()),
            None => (line.trim(), ""),
        };
        match NaiveDate::parse_from_str(date, "%Y-%m-%d") {
            Ok(d) if description.is_empty() => {
                problems.push(format!("line {n}: {d} has no description"));
            }
            Ok(d) => {
                if rows.iter().any(|(x, _)| *x == d) {
                    problems.push(format!("line {n}: {d} is listed twice"));
                } else {
                    rows.push((d, description.to_string()));
                }
            }
            Err(_) => problems.push(format!(
                "line {n}: {date:?} is not a date (use YYYY-MM-DD, e.g. 2026-01-26)"
            )),
        }
    }
    if problems.is_empty() {
        Ok(rows)
    } else {
        Err(problems)
    }
}

/// `mft data holidays import FILE`: validates the whole file, then stores it in one transaction.
pub async fn import_holidays(store: &Store, path: &Path) -> Result<u64, HolidayError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| HolidayError::Io {
        path: shown.clone(),
        source,
    })?;
    let rows = parse_holidays_csv(&text).map_err(|problems| HolidayError::Invalid {
        path: shown,
        problems,
    })?;
    Ok(store.upsert_holidays(&rows).await?)
}

/// Stores the shipped holidays when the table is empty; returns how many were added.
pub async fn seed_holidays(store: &Store) -> Result<u64, HolidayError> {
    if !store.holidays().await?.is_empty() {
        return Ok(0);
    }
    let rows = parse_holidays_csv(SEED_HOLIDAYS_CSV).map_err(|problems| HolidayError::Invalid {
        path: "assets/calendar/nse_holidays_2026.csv".into(),
        problems,
    })?;
    Ok(store.upsert_holidays(&rows).await?)
}

/// Trading days and market hours. Shared (`Arc`); reloaded after an import.
#[derive(Debug, Default)]
pub struct MarketCalendar {
    holidays: RwLock<BTreeMap<NaiveDate, String>>,
}

impl MarketCalendar {
    pub fn new(holidays: impl IntoIterator<Item = (NaiveDate, String)>) -> Self {
        Self {
            holidays: RwLock::new(holidays.into_iter().collect()),
        }
    }

    /// Seeds the store if needed, then reads its holidays.
    pub async fn load(store: &Store) -> Result<Self, HolidayError> {
        seed_holidays(store).await?;
        Ok(Self::new(store.holidays().await?))
    }

    pub async fn reload(&self, store: &Store) -> Result<(), StoreError> {
        let rows = store.holidays().await?;
        *self.holidays.write().unwrap_or_else(|e| e.into_inner()) = rows.into_iter().collect();
        Ok(())
    }

    /// The holiday's description, when `date` is one.
    pub fn holiday(&self, date: NaiveDate) -> Option<String> {
        self.holidays
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&date)
            .cloned()
    }

    /// Why NSE is closed on `date` ("Saturday", "Diwali-Balipratipada"), or None on a trading day.
    pub fn closed_reason(&self, date: NaiveDate) -> Option<String> {
        match date.weekday() {
            Weekday::Sat => Some("Saturday".into()),
            Weekday::Sun => Some("Sunday".into()),
            _ => self.holiday(date).map(|d| format!("holiday: {d}")),
        }
    }

    pub fn is_trading_day(&self, date: NaiveDate) -> bool {
        self.closed_reason(date).is_none()
    }

    /// Whether the continuous session (09:15-15:30 IST on a trading day) is running at `now`.
    pub fn is_market_open(&self, now: DateTime<Utc>) -> bool {
        let local = now.with_timezone(&IST);
        let t = local.time();
        self.is_trading_day(local.date_naive()) && t >= MARKET_OPEN && t < MARKET_CLOSE
    }

    /// The trading day before `date`.
    pub fn previous_trading_day(&self, date: NaiveDate) -> NaiveDate {
        let mut d = date - Duration::days(1);
        // Bounded: no exchange closes for a year.
        for _ in 0..366 {
            if self.is_trading_day(d) {
                break;
            }
            d -= Duration::days(1);
        }
        d
    }

    /// Start time (Kite's candle timestamp) of the newest candle of `interval` that has closed by
    /// `now`: a fresh series ends with it.
    pub fn expected_last_candle(&self, now: DateTime<Utc>, interval: Interval) -> DateTime<Utc> {
        let local = now.with_timezone(&IST);
        let today = local.date_naive();
        let at = |d: NaiveDate, t: NaiveTime| {
            IST.from_local_datetime(&d.and_time(t))
                .earliest()
                .map(|x| x.with_timezone(&Utc))
                .unwrap_or(now)
        };
        if interval == Interval::Day {
            let day = if self.is_trading_day(today) && local.time() >= MARKET_CLOSE {
                today
            } else {
                self.previous_trading_day(today)
            };
            return at(day, NaiveTime::MIN);
        }
        let len = interval.minutes();
        let session = (MARKET_CLOSE - MARKET_OPEN).num_minutes();
        let last_of_day = |d: NaiveDate| {
            let k = (session - 1) / len;
            at(d, MARKET_OPEN) + Duration::minutes(k * len)
        };
        if self.is_trading_day(today) {
            let minutes = (local.time() - MARKET_OPEN).num_minutes();
            if minutes >= session {
                return last_of_day(today);
            }
            // Candles [open + k*len, open + (k+1)*len) closed by now.
            let closed = minutes.div_euclid(len);
            if closed >= 1 {
                return at(today, MARKET_OPEN) + Duration::minutes((closed - 1) * len);
            }
        }
        last_of_day(self.previous_trading_day(today))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ist(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        IST.with_ymd_and_hms(y, m, d, h, min, 0)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn cal() -> MarketCalendar {
        MarketCalendar::new(parse_holidays_csv(SEED_HOLIDAYS_CSV).unwrap())
    }

    #[test]
    fn the_shipped_file_parses() {
        let rows = parse_holidays_csv(SEED_HOLIDAYS_CSV).unwrap();
        assert_eq!(rows.len(), 16);
        assert!(rows.contains(&(
            NaiveDate::from_ymd_opt(2026, 1, 26).unwrap(),
            "Republic Day".to_string()
        )));
    }

    #[test]
    fn bad_lines_are_numbered() {
        let err = parse_holidays_csv(
            "date,description\n2026-01-26,Republic Day\n2026-13-01,Bad\n\n2026-02-30,X\nfoo\n",
        )
        .unwrap_err();
        assert_eq!(err.len(), 3, "{err:?}");
        assert!(err[0].starts_with("line 3: \"2026-13-01\""), "{err:?}");
        assert!(err[1].starts_with("line 5:"), "{err:?}");
        assert!(err[2].starts_with("line 6:"), "{err:?}");
        let err = parse_holidays_csv("day,name\n").unwrap_err();
        assert!(err[0].contains("header"), "{err:?}");
        let err = parse_holidays_csv("date,description\n2026-01-26,A\n2026-01-26,B\n").unwrap_err();
        assert!(
            err[0].contains("line 3") && err[0].contains("twice"),
            "{err:?}"
        );
    }

    #[test]
    fn trading_days_skip_weekends_and_holidays() {
        let c = cal();
        let d = |m, d| NaiveDate::from_ymd_opt(2026, m, d).unwrap();
        assert!(c.is_trading_day(d(11, 25)));
        assert!(!c.is_trading_day(d(11, 24)), "Guru Nanak Jayanti");
        assert!(!c.is_trading_day(d(11, 28)), "Saturday");
        assert_eq!(c.previous_trading_day(d(11, 25)), d(11, 23));
        assert!(
            c.closed_reason(d(11, 24))
                .unwrap()
                .contains("Prakash Gurpurb")
        );
        assert!(c.is_market_open(ist(2026, 11, 25, 9, 15)));
        assert!(!c.is_market_open(ist(2026, 11, 25, 15, 30)));
        assert!(!c.is_market_open(ist(2026, 11, 24, 11, 0)));
    }

    #[test]
    fn expected_last_candle() {
        let c = cal();
        let m15 = Interval::Minute15;
        // 10:31: the 10:15 candle closed at 10:30.
        assert_eq!(
            c.expected_last_candle(ist(2026, 11, 25, 10, 31), m15),
            ist(2026, 11, 25, 10, 15)
        );
        assert_eq!(
            c.expected_last_candle(ist(2026, 11, 25, 10, 30), m15),
            ist(2026, 11, 25, 10, 15)
        );
        assert_eq!(
            c.expected_last_candle(ist(2026, 11, 25, 10, 29), m15),
            ist(2026, 11, 25, 10, 0)
        );
        // Before the first candle closes: the previous trading day's last (Monday, skipping the holiday).
        assert_eq!(
            c.expected_last_candle(ist(2026, 11, 25, 9, 20), m15),
            ist(2026, 11, 23, 15, 15)
        );
        // Evening and holidays.
        assert_eq!(
            c.expected_last_candle(ist(2026, 11, 25, 20, 0), m15),
            ist(2026, 11, 25, 15, 15)
        );
        assert_eq!(
            c.expected_last_candle(ist(2026, 11, 24, 12, 0), m15),
            ist(2026, 11, 23, 15, 15)
        );
        // 60minute: the last candle of the day starts at 15:15 and is cut at 15:30.
        assert_eq!(
            c.expected_last_candle(ist(2026, 11, 25, 16, 0), Interval::Minute60),
            ist(2026, 11, 25, 15, 15)
        );
        assert_eq!(
            c.expected_last_candle(ist(2026, 11, 25, 16, 0), Interval::Day),
            ist(2026, 11, 25, 0, 0)
        );
        assert_eq!(
            c.expected_last_candle(ist(2026, 11, 25, 12, 0), Interval::Day),
            ist(2026, 11, 23, 0, 0)
        );
    }
}
