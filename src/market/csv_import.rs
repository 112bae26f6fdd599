//! OHLCV CSV import: every row validated first (all bad lines reported), then one transaction.
//!
//! Format: a header row (names case-insensitive, any order) with either `timestamp` (alias
//! `datetime`) or `date` plus an optional `time`, then `open`, `high`, `low`, `close`, `volume`
//! and optionally `oi`. Unknown columns (e.g. `symbol`, `adj close`) are ignored and listed in
//! [`ImportReport::ignored_columns`] (and logged as a warning), because many exports carry them.
//! Timestamps with an offset (`2020-10-01 00:00:00+05:30`, `2020-10-01T09:15:00+0530`,
//! RFC 3339, `Z`) are taken as given; without one they are Asia/Kolkata wall time; a date alone
//! is 00:00 IST.

use super::MarketError;
use crate::clock::IST;
use crate::domain::{Candle, InstrumentKey, Interval};
use crate::store::Store;
use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, TimeZone, Utc};
use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::path::Path;

/// How many bad rows the error text lists before summarising the rest.
const MAX_LISTED: usize = 50;

/// One rejected CSV row: its 1-based line in the file (the header is line 1) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    pub line: u64,
    pub reason: String,
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

/// Why a CSV file was rejected (as a whole: nothing is imported from a file with any error).
#[derive(Debug, thiserror::Error)]
pub enum CsvImportError {
    #[error(
        "the file is empty: expected a header row such as timestamp,open,high,low,close,volume"
    )]
    Empty,
    #[error("cannot read the CSV at line {line}: {reason}")]
    Read { line: u64, reason: String },
    #[error(
        "the header lacks column(s) {}: expected timestamp (or date[,time]),open,high,low,close,volume[,oi]",
        .0.join(", ")
    )]
    MissingColumns(Vec<String>),
    #[error("column {0:?} appears twice in the header")]
    DuplicateColumn(String),
    #[error("the file has a header but no rows")]
    NoRows,
    #[error("{}", bad_rows_text(.0))]
    BadRows(Vec<RowError>),
}

fn bad_rows_text(rows: &[RowError]) -> String {
    let mut text = format!(
        "{} bad row{}:",
        rows.len(),
        if rows.len() == 1 { "" } else { "s" }
    );
    for row in rows.iter().take(MAX_LISTED) {
        text.push_str("\n  ");
        text.push_str(&row.to_string());
    }
    if rows.len() > MAX_LISTED {
        text.push_str(&format!("\n  and {} more", rows.len() - MAX_LISTED));
    }
    text
}

/// Outcome of [`import_csv`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportReport {
    /// Data rows in the file.
    pub rows_read: usize,
    /// Rows inserted or changed in the store (0 when the same file is imported again).
    pub rows_written: u64,
    /// Header columns that were not used.
    pub ignored_columns: Vec<String>,
}

/// Parsed candles (ascending by time) and the header columns that were ignored.
struct Parsed {
    candles: Vec<Candle>,
    ignored: Vec<String>,
}

/// Parses and validates an OHLCV CSV (format in the module docs). Returns candles ascending by
/// time; any bad row fails the whole file with every bad line listed.
pub fn parse_candles_csv(reader: impl Read) -> Result<Vec<Candle>, CsvImportError> {
    parse(reader).map(|p| p.candles)
}

/// The sanity checks of [`super::sanity`] on parsed candles, with their file lines.
fn check_sanity(
    candles: &[(u64, Candle)],
    interval: Interval,
    now: DateTime<Utc>,
) -> Vec<RowError> {
    candles
        .iter()
        .filter_map(|(line, c)| {
            let problems = super::sanity::candle_problems(c, interval, now);
            (!problems.is_empty()).then(|| RowError {
                line: *line,
                reason: problems.join("; "),
            })
        })
        .collect()
}

fn parse(reader: impl Read) -> Result<Parsed, CsvImportError> {
    parse_checked(reader, None)
}

/// [`parse`], plus the sanity checks against `interval` and `now` when given.
fn parse_checked(
    reader: impl Read,
    sanity: Option<(Interval, DateTime<Utc>)>,
) -> Result<Parsed, CsvImportError> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(reader);
    let headers = rdr
        .headers()
        .map_err(|e| CsvImportError::Read {
            line: 1,
            reason: e.to_string(),
        })?
        .clone();
    if headers.is_empty() || headers.iter().all(str::is_empty) {
        return Err(CsvImportError::Empty);
    }
    let mut index: HashMap<String, usize> = HashMap::new();
    for (i, h) in headers.iter().enumerate() {
        let name = h.trim().to_ascii_lowercase();
        if index.insert(name.clone(), i).is_some() {
            return Err(CsvImportError::DuplicateColumn(name));
        }
    }
    let ts_col = index
        .get("timestamp")
        .or_else(|| index.get("datetime"))
        .copied();
    let date_col = index.get("date").copied();
    let time_col = index.get("time").copied();
    let mut missing = Vec::new();
    if ts_col.is_none() && date_col.is_none() {
        missing.push("timestamp (or date)".to_string());
    }
    let mut need = |name: &str| {
        let i = index.get(name).copied();
        if i.is_none() {
            missing.push(name.to_string());
        }
        i.unwrap_or(0)
    };
    let (open, high, low, close, volume) = (
        need("open"),
        need("high"),
        need("low"),
        need("close"),
        need("volume"),
    );
    if !missing.is_empty() {
        return Err(CsvImportError::MissingColumns(missing));
    }
    let oi_col = index.get("oi").copied();
    // With a `timestamp` column, `date`/`time` are extra columns; with `date` alone, `time` joins it.
    let (ts_cols, used_time) = match ts_col {
        Some(t) => ((t, None), false),
        None => ((date_col.unwrap_or(0), time_col), time_col.is_some()),
    };
    let mut used = vec![ts_cols.0, open, high, low, close, volume];
    if used_time {
        used.extend(time_col);
    }
    used.extend(oi_col);
    let ignored: Vec<String> = headers
        .iter()
        .enumerate()
        .filter(|(i, _)| !used.contains(i))
        .map(|(_, h)| h.to_string())
        .collect();

    let mut candles: Vec<(u64, Candle)> = Vec::new();
    let mut errors = Vec::new();
    let mut seen: HashMap<DateTime<Utc>, u64> = HashMap::new();
    for record in rdr.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                errors.push(RowError {
                    line,
                    reason: e.to_string(),
                });
                continue;
            }
        };
        let line = record.position().map_or(0, |p| p.line());
        if record.len() != headers.len() {
            errors.push(RowError {
                line,
                reason: format!(
                    "{} fields where the header has {}",
                    record.len(),
                    headers.len()
                ),
            });
            continue;
        }
        let get = |i: usize| record.get(i).unwrap_or("");
        let mut reasons: Vec<String> = Vec::new();
        let ts = {
            let raw = match ts_cols.1 {
                Some(t) => format!("{} {}", get(ts_cols.0), get(t)),
                None => get(ts_cols.0).to_string(),
            };
            match parse_timestamp(&raw) {
                Ok(ts) => Some(ts),
                Err(e) => {
                    reasons.push(e);
                    None
                }
            }
        };
        let mut price = |name: &str, i: usize| match parse_price(get(i)) {
            Ok(v) => Some(v),
            Err(e) => {
                reasons.push(format!("{name} {e}"));
                None
            }
        };
        let (o, h, l, c) = (
            price("open", open),
            price("high", high),
            price("low", low),
            price("close", close),
        );
        let vol = match parse_count(get(volume)) {
            Ok(Some(v)) => Some(v),
            Ok(None) => {
                reasons.push("volume is empty".into());
                None
            }
            Err(e) => {
                reasons.push(format!("volume {e}"));
                None
            }
        };
        let oi = match oi_col.map(|i| parse_count(get(i))) {
            None | Some(Ok(None)) => None,
            Some(Ok(Some(v))) => Some(v),
            Some(Err(e)) => {
                reasons.push(format!("oi {e}"));
                None
            }
        };
        if let (Some(o), Some(h), Some(l), Some(c)) = (o, h, l, c) {
            if h < o.max(c) {
                reasons.push(format!("high {h} is below max(open, close) {}", o.max(c)));
            }
            if l > o.min(c) {
                reasons.push(format!("low {l} is above min(open, close) {}", o.min(c)));
            }
        }
        if let Some(ts) = ts {
            if let Some(first) = seen.get(&ts) {
                reasons.push(format!(
                    "duplicate timestamp {} (first on line {first})",
                    ts.with_timezone(&IST).format("%Y-%m-%d %H:%M:%S%:z")
                ));
            } else {
                seen.insert(ts, line);
            }
        }
        match (ts, o, h, l, c, vol) {
            (Some(ts), Some(open), Some(high), Some(low), Some(close), Some(volume))
                if reasons.is_empty() =>
            {
                candles.push((
                    line,
                    Candle {
                        ts,
                        open,
                        high,
                        low,
                        close,
                        volume,
                        oi,
                    },
                ));
            }
            _ => errors.push(RowError {
                line,
                reason: reasons.join("; "),
            }),
        }
    }
    if let Some((interval, now)) = sanity {
        errors.extend(check_sanity(&candles, interval, now));
    }
    if !errors.is_empty() {
        errors.sort_by_key(|e| e.line);
        return Err(CsvImportError::BadRows(errors));
    }
    if candles.is_empty() {
        return Err(CsvImportError::NoRows);
    }
    let mut candles: Vec<Candle> = candles.into_iter().map(|(_, c)| c).collect();
    candles.sort_by_key(|c| c.ts);
    Ok(Parsed { candles, ignored })
}

/// Reads `path`, validates every row, and upserts the candles in one transaction. Any bad row
/// writes nothing. Importing the same file again writes 0 rows. Absurd rows (see
/// [`super::sanity`]: non-positive prices, prices above ₹10,00,00,000, times before 1990 or
/// more than one interval in the future) are bad rows too.
pub async fn import_csv(
    store: &Store,
    path: &Path,
    key: &InstrumentKey,
    interval: Interval,
) -> Result<ImportReport, MarketError> {
    import_csv_with_clock(store, path, key, interval, &crate::clock::SystemClock).await
}

/// [`import_csv`] with the clock that decides what "in the future" means.
pub async fn import_csv_with_clock(
    store: &Store,
    path: &Path,
    key: &InstrumentKey,
    interval: Interval,
    clock: &dyn crate::clock::Clock,
) -> Result<ImportReport, MarketError> {
    let bytes = tokio::fs::read(path)
        .await
        .map_err(|source| MarketError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    let parsed =
        parse_checked(bytes.as_slice(), Some((interval, clock.now()))).map_err(|source| {
            MarketError::Csv {
                path: path.to_path_buf(),
                source,
            }
        })?;
    if !parsed.ignored.is_empty() {
        tracing::warn!(
            "{}: ignoring unknown column(s) {}",
            path.display(),
            parsed.ignored.join(", ")
        );
    }
    let rows_written = store.upsert_candles(key, interval, &parsed.candles).await?;
    Ok(ImportReport {
        rows_read: parsed.candles.len(),
        rows_written,
        ignored_columns: parsed.ignored,
    })
}

/// A finite price.
fn parse_price(s: &str) -> Result<f64, String> {
    if s.is_empty() {
        return Err("is empty".into());
    }
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        Ok(_) => Err(format!("{s:?} is not a finite number")),
        Err(_) => Err(format!("{s:?} is not a number")),
    }
}

/// A non-negative integer count (volume, open interest); `123.0` is accepted, `12.5` is not.
/// Empty is `None`.
fn parse_count(s: &str) -> Result<Option<i64>, String> {
    if s.is_empty() {
        return Ok(None);
    }
    let v = match s.parse::<i64>() {
        Ok(v) => v,
        Err(_) => match s.parse::<f64>() {
            Ok(f) if f.is_finite() && f.fract() == 0.0 && f.abs() < 9.2e18 => f as i64,
            Ok(_) => return Err(format!("{s:?} is not a whole number")),
            Err(_) => return Err(format!("{s:?} is not a number")),
        },
    };
    if v < 0 {
        return Err(format!("{s:?} is negative"));
    }
    Ok(Some(v))
}

/// A timestamp with an offset, or an IST wall time, or an IST date (00:00).
pub(crate) fn parse_timestamp(raw: &str) -> Result<DateTime<Utc>, String> {
    let s = raw.trim();
    if s.is_empty() {
        return Err("timestamp is empty".into());
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    const WITH_OFFSET: [&str; 4] = [
        "%Y-%m-%d %H:%M:%S%.f%z",
        "%Y-%m-%dT%H:%M:%S%.f%z",
        "%Y-%m-%d %H:%M:%S%.f %z",
        "%Y-%m-%d %H:%M%z",
    ];
    for f in WITH_OFFSET {
        if let Ok(t) = DateTime::<FixedOffset>::parse_from_str(s, f) {
            return Ok(t.with_timezone(&Utc));
        }
    }
    if let Some(rest) = s.strip_suffix('Z').or_else(|| s.strip_suffix('z'))
        && let Some(naive) = parse_naive(rest.trim_end())
    {
        return Ok(naive.and_utc());
    }
    if let Some(naive) = parse_naive(s) {
        return IST
            .from_local_datetime(&naive)
            .single()
            .map(|t| t.with_timezone(&Utc))
            .ok_or_else(|| format!("timestamp {raw:?} does not exist in Asia/Kolkata"));
    }
    Err(format!(
        "timestamp {raw:?} is not a date or date-time (e.g. 2024-01-02, 2024-01-02 09:15:00, 2024-01-02T09:15:00+05:30)"
    ))
}

fn parse_naive(s: &str) -> Option<NaiveDateTime> {
    const NAIVE: [&str; 4] = [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
    ];
    NAIVE
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
        .or_else(|| {
            NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().expect("utc")
    }

    #[test]
    fn timestamps_in_every_supported_shape() {
        let nine_fifteen = utc("2020-10-01T03:45:00Z");
        for s in [
            "2020-10-01 09:15:00+05:30",
            "2020-10-01T09:15:00+0530",
            "2020-10-01T09:15:00+05:30",
            "2020-10-01T03:45:00Z",
            "2020-10-01 03:45:00Z",
            "2020-10-01 09:15:00",
            "2020-10-01T09:15:00",
            "2020-10-01 09:15",
            "2020-10-01 09:15:00.000",
        ] {
            assert_eq!(parse_timestamp(s), Ok(nine_fifteen), "{s}");
        }
        assert_eq!(
            parse_timestamp("2020-10-01"),
            Ok(utc("2020-09-30T18:30:00Z"))
        );
        assert_eq!(
            parse_timestamp("2020-10-01 00:00:00+05:30"),
            Ok(utc("2020-09-30T18:30:00Z"))
        );
        assert!(parse_timestamp("01/10/2020").is_err());
        assert!(parse_timestamp("2020-02-30").is_err());
        assert!(parse_timestamp("").is_err());
    }

    #[test]
    fn counts_accept_integral_floats_only() {
        assert_eq!(parse_count("123"), Ok(Some(123)));
        assert_eq!(parse_count("123.0"), Ok(Some(123)));
        assert_eq!(parse_count(""), Ok(None));
        assert!(parse_count("12.5").is_err());
        assert!(parse_count("-1").is_err());
        assert!(parse_count("NaN").is_err());
        assert!(parse_count("abc").is_err());
    }

    #[test]
    fn columns_in_any_order_and_case_with_date_and_time() {
        let csv = "Volume,Close,Low,High,Open,Time,Date,Symbol\n\
                   100,101,99,102,100,09:15:00,2024-01-02,INFY\n\
                   200.0,100.5,100,101.5,101,09:16,2024-01-02,INFY\n";
        let parsed = parse(csv.as_bytes()).expect("parses");
        assert_eq!(parsed.ignored, vec!["Symbol".to_string()]);
        let c = &parsed.candles;
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].ts, utc("2024-01-02T03:45:00Z"));
        assert_eq!(c[1].volume, 200);
        assert_eq!(
            (c[0].open, c[0].high, c[0].low, c[0].close),
            (100.0, 102.0, 99.0, 101.0)
        );
        assert_eq!(c[0].oi, None);
    }

    #[test]
    fn rows_come_out_ascending() {
        let csv = "timestamp,open,high,low,close,volume,oi\n\
                   2024-01-03,1,1,1,1,0,5\n\
                   2024-01-02,1,1,1,1,0,\n";
        let c = parse_candles_csv(csv.as_bytes()).expect("parses");
        assert!(c[0].ts < c[1].ts);
        assert_eq!(c[0].oi, None);
        assert_eq!(c[1].oi, Some(5));
    }

    #[test]
    fn missing_columns_are_named() {
        let err = parse_candles_csv("time,open,close\n".as_bytes()).expect_err("missing");
        let text = err.to_string();
        for col in ["timestamp (or date)", "high", "low", "volume"] {
            assert!(text.contains(col), "{text}");
        }
        let named = text.split(": expected").next().unwrap_or("");
        assert!(
            !named.contains("open") && !named.contains("close"),
            "{text}"
        );
        assert!(matches!(
            parse_candles_csv("".as_bytes()),
            Err(CsvImportError::Empty)
        ));
        assert!(matches!(
            parse_candles_csv("timestamp,open,high,low,close,volume\n".as_bytes()),
            Err(CsvImportError::NoRows)
        ));
    }

    #[test]
    fn every_bad_row_is_reported_by_line() {
        let csv = "timestamp,open,high,low,close,volume\n\
                   2024-01-02,100,101,99,100,10\n\
                   2024-01-03,100,99,98,100,10\n\
                   2024-01-04,100,101,100.5,100,10\n\
                   2024-01-05,abc,101,99,100,10\n\
                   2024-01-06,100,101,99,100,-3\n\
                   2024-01-02,100,101,99,100,10\n\
                   not-a-date,100,101,99,100,10\n\
                   2024-01-08,100,101,99,100\n\
                   2024-01-09,inf,101,99,100,1.5\n";
        let err = parse_candles_csv(csv.as_bytes()).expect_err("bad rows");
        let CsvImportError::BadRows(rows) = &err else {
            panic!("expected BadRows, got {err}");
        };
        let lines: Vec<u64> = rows.iter().map(|r| r.line).collect();
        assert_eq!(lines, vec![3, 4, 5, 6, 7, 8, 9, 10]);
        let text = err.to_string();
        assert!(text.starts_with("8 bad rows:"), "{text}");
        assert!(text.contains("line 3: high 99 is below"), "{text}");
        assert!(text.contains("line 4: low 100.5 is above"), "{text}");
        assert!(
            text.contains("line 5: open \"abc\" is not a number"),
            "{text}"
        );
        assert!(text.contains("line 6: volume \"-3\" is negative"), "{text}");
        assert!(text.contains("line 7: duplicate timestamp"), "{text}");
        assert!(text.contains("first on line 2"), "{text}");
        assert!(text.contains("line 8: timestamp \"not-a-date\""), "{text}");
        assert!(
            text.contains("line 9: 5 fields where the header has 6"),
            "{text}"
        );
        assert!(
            text.contains("line 10: open \"inf\" is not a finite number"),
            "{text}"
        );
        assert!(
            text.contains("volume \"1.5\" is not a whole number"),
            "{text}"
        );
    }

    #[test]
    fn a_long_list_is_capped() {
        let mut csv = String::from("timestamp,open,high,low,close,volume\n");
        for i in 0..70 {
            csv.push_str(&format!("2024-01-02 09:{:02},1,0,1,1,1\n", i % 60));
        }
        let text = parse_candles_csv(csv.as_bytes())
            .expect_err("bad")
            .to_string();
        assert!(text.starts_with("70 bad rows:"), "{text}");
        assert_eq!(text.lines().count(), 1 + MAX_LISTED + 1, "{text}");
        assert!(text.ends_with("and 20 more"), "{text}");
    }
}
