//! Market data and the market connection: Kite instruments dump and historical candles
//! (resumable, rate-limited), CSV import, the NSE calendar, the Kite session and live prices.
//!
//! - [`KiteReader`]: the read-only Kite client (instruments dump, historical candles) with bounded
//!   retries for 429 and network errors and a request-start rate limiter for historical data.
//! - [`sync_instruments`]: the instruments dump into the store, in one transaction.
//! - [`fetch_history`]: only the IST calendar days not fetched yet, in chunks no longer than Kite's
//!   per-interval span, each chunk committed with its bookkeeping so an interrupted run resumes.
//! - [`parse_candles_csv`] / [`import_csv`]: a validated OHLCV CSV into the store, all or nothing.

pub mod calendar;
mod csv_import;
mod history;
mod instruments;
mod kite;
pub mod margins;
pub mod prices;
mod rate;
pub mod sanity;
pub mod session;

pub use calendar::{HolidayError, MarketCalendar, import_holidays, parse_holidays_csv};
pub use csv_import::{
    CsvImportError, ImportReport, RowError, import_csv, import_csv_with_clock, parse_candles_csv,
};
pub use history::{
    FetchProgress, FetchReport, NoProgress, TerminalProgress, fetch_history,
    fetch_history_with_clock, missing_ranges, split_chunks, terminal_progress,
};
pub use instruments::{SyncReport, parse_instruments_csv, sync_instruments};
pub use kite::KiteReader;
pub use margins::{CircuitBandProvider, KiteRiskReads, MarginProvider, RiskPorts};
pub use prices::{LivePrice, MarketLink, PriceCache};
pub use rate::{
    KITE_ORDERS_PER_MINUTE, KITE_ORDERS_PER_SECOND, KITE_QUOTES_PER_SECOND, RateLimited,
    RateLimiter, RequestLimiter, kite_order_limiter, kite_quote_limiter,
};
pub use session::{ActiveSession, SessionError, SessionProvider};

use crate::domain::InstrumentKey;
use crate::store::StoreError;
use chrono::NaiveDate;
use std::path::PathBuf;

/// What went wrong while reading market data. Messages say what failed and what to do next.
#[derive(Debug, thiserror::Error)]
pub enum MarketError {
    /// A Kite credential is not configured.
    #[error(
        "{0} is not set: add it to .env or the environment (ZERODHA_ACCESS_TOKEN comes from a Kite login and expires at 06:00 IST)"
    )]
    MissingCredential(&'static str),
    /// Kite rejected the access token (TokenException): the daily session is over or the token is wrong.
    #[error("Kite session expired or invalid: log in again and set a fresh ZERODHA_ACCESS_TOKEN")]
    SessionExpired,
    /// Kite answered with an error envelope that retrying does not fix.
    #[error("Kite error {error_type}: {message}")]
    Kite {
        error_type: String,
        message: String,
        status: u16,
    },
    /// A read kept failing with 429 or a network error after every allowed retry.
    #[error(
        "{what} failed {attempts} times ({retries} retries with exponential backoff); last error: {last}. Try again later or raise [kite] max_retries"
    )]
    RetriesExhausted {
        what: String,
        attempts: u32,
        retries: u32,
        last: String,
    },
    /// Any other failure of a Kite request (bad answer, blocked, not retryable).
    #[error("{what} failed: {detail}")]
    Request { what: String, detail: String },
    /// The Kite client could not be built from the settings.
    #[error("invalid Kite client settings: {0}")]
    Config(String),
    /// The instruments dump did not parse; nothing was written.
    #[error("malformed Kite instruments dump at line {line}: {reason} (nothing was written)")]
    MalformedDump { line: u64, reason: String },
    /// The instrument is not in the stored instruments dump.
    #[error("unknown instrument {0}: run `mft data sync-instruments` first")]
    UnknownInstrument(InstrumentKey),
    /// A historical request was asked for an empty or reversed range.
    #[error("invalid date range {from}..{to}: `from` must not be after `to`")]
    InvalidRange { from: NaiveDate, to: NaiveDate },
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A CSV file was rejected; nothing was written.
    #[error("{path}: {source}; nothing was imported")]
    Csv {
        path: PathBuf,
        #[source]
        source: CsvImportError,
    },
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Kite returned candles that fail the sanity checks ([`sanity::candle_problems`]); nothing
    /// of that response was written.
    #[error(
        "Kite returned {} absurd candle(s) for {key} {interval}; nothing of that response was written:\n  {}",
        .problems.len(),
        .problems.join("\n  ")
    )]
    AbsurdCandles {
        key: InstrumentKey,
        interval: crate::domain::Interval,
        /// "candle N (time): reason", N counting from 1 in Kite's answer.
        problems: Vec<String>,
    },
}

impl MarketError {
    /// True when the operator must log in to Kite again (the CLI exits 1 with the message).
    pub fn is_session_expired(&self) -> bool {
        matches!(self, MarketError::SessionExpired)
    }

    /// Whether the same call may succeed when retried later without anyone changing anything:
    /// Kite kept failing with 429s or network errors, or the database was busy. A missing
    /// credential, an expired session, Kite's refusals and bad data need the operator.
    pub fn is_recoverable(&self) -> bool {
        match self {
            MarketError::RetriesExhausted { .. } => true,
            MarketError::Store(e) => e.is_recoverable(),
            MarketError::MissingCredential(_)
            | MarketError::SessionExpired
            | MarketError::Kite { .. }
            | MarketError::Request { .. }
            | MarketError::Config(_)
            | MarketError::MalformedDump { .. }
            | MarketError::UnknownInstrument(_)
            | MarketError::InvalidRange { .. }
            | MarketError::Io { .. }
            | MarketError::Csv { .. }
            | MarketError::AbsurdCandles { .. } => false,
        }
    }
}
