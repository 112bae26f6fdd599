//! Resumable historical-candle download: only the IST calendar days not yet fetched, in chunks
//! within Kite's per-interval span, each chunk committed together with its bookkeeping.

use super::{KiteReader, MarketError};
use crate::clock::{Clock, SystemClock};
use crate::domain::{InstrumentKey, Interval};
use crate::store::Store;
use chrono::{Days, NaiveDate, NaiveTime};
use std::io::IsTerminal;

/// Progress of a [`fetch_history`] run, called between chunks.
pub trait FetchProgress: Send {
    /// Called once, before the first request, with the number of requests planned.
    fn start(&mut self, _total_chunks: usize) {}
    /// Called after each chunk is stored.
    fn chunk_done(&mut self, _from: NaiveDate, _to: NaiveDate, _candles: usize) {}
    /// Called once after the last chunk (not called when the run fails).
    fn finish(&mut self) {}
}

/// Reports nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl FetchProgress for NoProgress {}

/// An indicatif bar on stderr, drawn only when stderr is a terminal (hidden otherwise, so logs and
/// pipes stay clean).
#[derive(Debug)]
pub struct TerminalProgress {
    bar: indicatif::ProgressBar,
}

/// A progress bar for the CLI; its length is set by [`FetchProgress::start`] to the number of
/// chunks actually missing.
pub fn terminal_progress() -> TerminalProgress {
    let bar = if std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new(0);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} chunks {msg}",
        ) {
            bar.set_style(style);
        }
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    TerminalProgress { bar }
}

impl FetchProgress for TerminalProgress {
    fn start(&mut self, total_chunks: usize) {
        self.bar.set_length(total_chunks as u64);
    }
    fn chunk_done(&mut self, from: NaiveDate, to: NaiveDate, candles: usize) {
        self.bar
            .set_message(format!("{from}..{to}: {candles} candles"));
        self.bar.inc(1);
    }
    fn finish(&mut self) {
        self.bar.finish_and_clear();
    }
}

/// Outcome of [`fetch_history`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchReport {
    pub key: InstrumentKey,
    pub interval: Interval,
    /// The IST day ranges that were missing (after clamping `to` to today).
    pub missing: Vec<(NaiveDate, NaiveDate)>,
    /// Historical requests made (one per chunk; retries not counted).
    pub requests: usize,
    /// Candles Kite returned.
    pub candles_received: usize,
    /// Candles inserted or changed in the store.
    pub candles_written: u64,
    /// Set when the last chunk reached today: its candles are stored but today is not recorded
    /// as fetched (the session is not over), so the next run asks for it again.
    pub open_day: Option<NaiveDate>,
}

/// [`fetch_history_with_clock`] with the system clock.
pub async fn fetch_history(
    store: &Store,
    kite: &KiteReader,
    key: &InstrumentKey,
    interval: Interval,
    from: NaiveDate,
    to: NaiveDate,
    progress: &mut dyn FetchProgress,
) -> Result<FetchReport, MarketError> {
    fetch_history_with_clock(store, kite, key, interval, from, to, progress, &SystemClock).await
}

/// Fetches the IST calendar days `from..=to` (inclusive) of `key` at `interval` that the store
/// does not have yet. Days after today are not requested. On an error, chunks already completed
/// stay stored and recorded; the failing chunk writes nothing.
#[allow(clippy::too_many_arguments)]
pub async fn fetch_history_with_clock(
    store: &Store,
    kite: &KiteReader,
    key: &InstrumentKey,
    interval: Interval,
    from: NaiveDate,
    to: NaiveDate,
    progress: &mut dyn FetchProgress,
    clock: &dyn Clock,
) -> Result<FetchReport, MarketError> {
    if from > to {
        return Err(MarketError::InvalidRange { from, to });
    }
    let instrument = store
        .instrument(key)
        .await?
        .ok_or_else(|| MarketError::UnknownInstrument(key.clone()))?;
    // Open interest only exists for derivatives; Kite adds a 7th column when asked.
    let oi = matches!(instrument.instrument_type.as_str(), "FUT" | "CE" | "PE");
    let today = clock.today_ist();
    let mut report = FetchReport {
        key: key.clone(),
        interval,
        missing: Vec::new(),
        requests: 0,
        candles_received: 0,
        candles_written: 0,
        open_day: None,
    };
    let to = to.min(today);
    if from > to {
        progress.start(0);
        progress.finish();
        return Ok(report);
    }
    let fetched = store.fetched_ranges(key, interval).await?;
    report.missing = missing_ranges((from, to), &fetched);
    let chunks = split_chunks(&report.missing, interval.max_span_days());
    progress.start(chunks.len());
    for (chunk_from, chunk_to) in chunks {
        let candles = kite
            .historical(
                instrument.instrument_token,
                interval,
                chunk_from.and_time(NaiveTime::MIN),
                chunk_to.and_time(end_of_day()),
                oi,
            )
            .await?;
        report.requests += 1;
        report.candles_received += candles.len();
        let now = clock.now();
        let problems: Vec<String> = candles
            .iter()
            .enumerate()
            .flat_map(|(i, c)| {
                super::sanity::candle_problems(c, interval, now)
                    .into_iter()
                    .map(move |p| {
                        format!(
                            "candle {} ({}): {p}",
                            i + 1,
                            c.ts.format("%Y-%m-%d %H:%M UTC")
                        )
                    })
            })
            .collect();
        if !problems.is_empty() {
            return Err(MarketError::AbsurdCandles {
                key: key.clone(),
                interval,
                problems,
            });
        }
        let written = if chunk_to >= today {
            report.open_day = Some(today);
            match today.checked_sub_days(Days::new(1)) {
                // The finished days of this chunk are recorded; today is not.
                Some(yesterday) if chunk_from <= yesterday => {
                    store
                        .store_fetched_chunk(key, interval, chunk_from, yesterday, &candles)
                        .await?
                }
                _ => store.upsert_candles(key, interval, &candles).await?,
            }
        } else {
            store
                .store_fetched_chunk(key, interval, chunk_from, chunk_to, &candles)
                .await?
        };
        report.candles_written += written;
        progress.chunk_done(chunk_from, chunk_to, candles.len());
    }
    progress.finish();
    Ok(report)
}

fn end_of_day() -> NaiveTime {
    NaiveTime::from_hms_opt(23, 59, 59).unwrap_or(NaiveTime::MIN)
}

/// The days of `requested` (inclusive) not covered by any of `fetched` (inclusive ranges, in any
/// order, possibly overlapping), as ascending inclusive ranges.
pub fn missing_ranges(
    requested: (NaiveDate, NaiveDate),
    fetched: &[(NaiveDate, NaiveDate)],
) -> Vec<(NaiveDate, NaiveDate)> {
    let (from, to) = requested;
    let mut covered: Vec<(NaiveDate, NaiveDate)> =
        fetched.iter().copied().filter(|(a, b)| a <= b).collect();
    covered.sort();
    let mut out = Vec::new();
    let mut cursor = from;
    for (a, b) in covered {
        if cursor > to {
            break;
        }
        if b < cursor {
            continue;
        }
        if a > cursor {
            let gap_end = a.pred_opt().unwrap_or(a).min(to);
            out.push((cursor, gap_end));
        }
        match b.succ_opt() {
            Some(next) => cursor = cursor.max(next),
            None => return out,
        }
    }
    if cursor <= to {
        out.push((cursor, to));
    }
    out
}

/// Splits inclusive day ranges into consecutive pieces of at most `max_days` calendar days.
pub fn split_chunks(
    ranges: &[(NaiveDate, NaiveDate)],
    max_days: i64,
) -> Vec<(NaiveDate, NaiveDate)> {
    let step = u64::try_from(max_days.max(1)).unwrap_or(1);
    let mut out = Vec::new();
    for &(from, to) in ranges {
        let mut start = from;
        while start <= to {
            let end = start
                .checked_add_days(Days::new(step - 1))
                .map_or(to, |e| e.min(to));
            out.push((start, end));
            match end.succ_opt() {
                Some(next) => start = next,
                None => break,
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().expect("date")
    }

    #[test]
    fn nothing_fetched_means_everything_is_missing() {
        assert_eq!(
            missing_ranges((d("2024-01-01"), d("2024-03-31")), &[]),
            vec![(d("2024-01-01"), d("2024-03-31"))]
        );
    }

    #[test]
    fn fetched_ranges_are_cut_out() {
        let fetched = [
            (d("2024-02-01"), d("2024-02-10")),
            (d("2023-12-01"), d("2024-01-05")),
            (d("2024-02-05"), d("2024-02-20")),
            (d("2024-03-31"), d("2024-04-30")),
        ];
        assert_eq!(
            missing_ranges((d("2024-01-01"), d("2024-03-31")), &fetched),
            vec![
                (d("2024-01-06"), d("2024-01-31")),
                (d("2024-02-21"), d("2024-03-30"))
            ]
        );
        assert_eq!(
            missing_ranges(
                (d("2024-01-01"), d("2024-01-31")),
                &[(d("2023-01-01"), d("2025-01-01"))]
            ),
            vec![]
        );
        assert_eq!(
            missing_ranges(
                (d("2024-01-01"), d("2024-01-31")),
                &[(d("2024-01-10"), d("2024-01-10"))]
            ),
            vec![
                (d("2024-01-01"), d("2024-01-09")),
                (d("2024-01-11"), d("2024-01-31"))
            ]
        );
    }

    #[test]
    fn chunks_are_contiguous_and_within_the_span() {
        let ranges = [
            (d("2024-01-01"), d("2024-12-31")),
            (d("2025-02-01"), d("2025-02-01")),
        ];
        let chunks = split_chunks(&ranges, 60);
        assert_eq!(chunks.first(), Some(&(d("2024-01-01"), d("2024-02-29"))));
        assert_eq!(chunks.last(), Some(&(d("2025-02-01"), d("2025-02-01"))));
        let days: i64 = chunks.iter().map(|(a, b)| (*b - *a).num_days() + 1).sum();
        assert_eq!(days, 366 + 1);
        for w in chunks.windows(2) {
            assert!(w[0].1 < w[1].0);
        }
        for (a, b) in &chunks {
            assert!((*b - *a).num_days() < 60);
        }
        for (a, b) in &chunks[..chunks.len() - 2] {
            assert_eq!((*b - *a).num_days(), 59, "full chunks use the whole span");
        }
    }
}
