//! Instruments, their keys ("NSE:INFY"), Kite candle intervals and OHLCV candles.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A parse failure of a domain value typed by a person (CLI argument, config, chat text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

/// `EXCHANGE:TRADINGSYMBOL`, e.g. `NSE:INFY`: how instruments are named everywhere in MFT-1.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct InstrumentKey {
    pub exchange: String,
    pub tradingsymbol: String,
}

impl InstrumentKey {
    pub fn new(exchange: &str, tradingsymbol: &str) -> Self {
        Self {
            exchange: exchange.to_ascii_uppercase(),
            tradingsymbol: tradingsymbol.to_ascii_uppercase(),
        }
    }
}

impl fmt::Display for InstrumentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.exchange, self.tradingsymbol)
    }
}

impl FromStr for InstrumentKey {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (ex, sym) = s.split_once(':').ok_or_else(|| {
            ParseError(format!(
                "instrument {s:?} must be EXCHANGE:TRADINGSYMBOL, e.g. NSE:INFY"
            ))
        })?;
        let valid_ex = !ex.is_empty() && ex.chars().all(|c| c.is_ascii_alphanumeric());
        let valid_sym = !sym.is_empty()
            && sym.len() <= 64
            && sym
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-&_.".contains(c));
        if !valid_ex || !valid_sym {
            return Err(ParseError(format!(
                "instrument {s:?} must be EXCHANGE:TRADINGSYMBOL, e.g. NSE:INFY"
            )));
        }
        Ok(InstrumentKey::new(ex, sym))
    }
}

impl TryFrom<String> for InstrumentKey {
    type Error = ParseError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<InstrumentKey> for String {
    fn from(k: InstrumentKey) -> String {
        k.to_string()
    }
}

/// Candle interval, with Kite's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Interval {
    Minute,
    Minute3,
    Minute5,
    Minute10,
    Minute15,
    Minute30,
    Minute60,
    Day,
}

impl Interval {
    pub const ALL: [Interval; 8] = [
        Interval::Minute,
        Interval::Minute3,
        Interval::Minute5,
        Interval::Minute10,
        Interval::Minute15,
        Interval::Minute30,
        Interval::Minute60,
        Interval::Day,
    ];

    /// Kite's name for the interval (`minute`, `5minute`, ..., `day`).
    pub fn as_str(self) -> &'static str {
        match self {
            Interval::Minute => "minute",
            Interval::Minute3 => "3minute",
            Interval::Minute5 => "5minute",
            Interval::Minute10 => "10minute",
            Interval::Minute15 => "15minute",
            Interval::Minute30 => "30minute",
            Interval::Minute60 => "60minute",
            Interval::Day => "day",
        }
    }

    /// Bar length in minutes (a trading day counts as 375 minutes, 09:15-15:30 IST).
    pub fn minutes(self) -> i64 {
        match self {
            Interval::Minute => 1,
            Interval::Minute3 => 3,
            Interval::Minute5 => 5,
            Interval::Minute10 => 10,
            Interval::Minute15 => 15,
            Interval::Minute30 => 30,
            Interval::Minute60 => 60,
            Interval::Day => 375,
        }
    }

    /// Nominal bar duration: the time from a candle's open to its close.
    pub fn duration(self) -> chrono::Duration {
        match self {
            Interval::Day => chrono::Duration::days(1),
            other => chrono::Duration::minutes(other.minutes()),
        }
    }

    /// Kite's maximum span, in days, of one historical-data request for this interval.
    pub fn max_span_days(self) -> i64 {
        match self {
            Interval::Minute => 60,
            Interval::Minute3 | Interval::Minute5 | Interval::Minute10 => 100,
            Interval::Minute15 | Interval::Minute30 => 200,
            Interval::Minute60 => 400,
            Interval::Day => 2000,
        }
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Interval {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase();
        Interval::ALL
            .into_iter()
            .find(|i| i.as_str() == lower)
            .ok_or_else(|| {
                ParseError(format!(
                    "unknown interval {s:?}: use one of minute, 3minute, 5minute, 10minute, 15minute, 30minute, 60minute, day"
                ))
            })
    }
}

impl TryFrom<String> for Interval {
    type Error = ParseError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Interval> for String {
    fn from(i: Interval) -> String {
        i.as_str().to_string()
    }
}

/// One OHLCV bar. `ts` is the bar's open time in UTC. Prices are market data for analysis
/// (f64 is fine here); money that is paid or sent to a broker uses [`super::Paise`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Candle {
    pub ts: DateTime<Utc>,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: i64,
    pub oi: Option<i64>,
}

/// A row of Kite's instruments dump.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instrument {
    pub instrument_token: i64,
    pub exchange_token: i64,
    pub tradingsymbol: String,
    pub name: String,
    pub last_price: f64,
    pub expiry: Option<NaiveDate>,
    pub strike: f64,
    pub tick_size: f64,
    pub lot_size: i64,
    pub instrument_type: String,
    pub segment: String,
    pub exchange: String,
}

impl Instrument {
    pub fn key(&self) -> InstrumentKey {
        InstrumentKey::new(&self.exchange, &self.tradingsymbol)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instrument_key_round_trips_and_rejects_garbage() {
        let k: InstrumentKey = "nse:infy".parse().unwrap();
        assert_eq!(k.to_string(), "NSE:INFY");
        assert!("INFY".parse::<InstrumentKey>().is_err());
        assert!("NSE:".parse::<InstrumentKey>().is_err());
        assert!("NSE:IN FY".parse::<InstrumentKey>().is_err());
        assert_eq!(
            "NSE:M&M-BE".parse::<InstrumentKey>().unwrap().tradingsymbol,
            "M&M-BE"
        );
    }

    #[test]
    fn intervals_use_kite_names_and_spans() {
        for i in Interval::ALL {
            assert_eq!(i.as_str().parse::<Interval>().unwrap(), i);
        }
        assert_eq!(Interval::Minute.max_span_days(), 60);
        assert_eq!(Interval::Minute10.max_span_days(), 100);
        assert_eq!(Interval::Minute30.max_span_days(), 200);
        assert_eq!(Interval::Minute60.max_span_days(), 400);
        assert_eq!(Interval::Day.max_span_days(), 2000);
        assert!("1h".parse::<Interval>().is_err());
    }
}
