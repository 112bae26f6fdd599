//! `/backtest NSE:INFY 1y` from the chat: checks the request at once (so bad input is answered
//! in the reply), then runs the backtest in the background, at most one at a time, and sends
//! the equity chart and summary as an alert. /status reads the progress from here. Reports go
//! to `<[charts] dir>/backtests/<id>`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{Months, NaiveDate};

use crate::backtest::{self, LlmMode, Spec};
use crate::config::Settings;
use crate::domain::{InstrumentKey, Interval};
use crate::ports::{Alert, Notifier, Reply};
use crate::store::{Store, StoreError};

struct Running {
    label: String,
    done: Arc<AtomicU64>,
    total: Arc<AtomicU64>,
}

/// The one background backtest slot.
#[derive(Clone, Default)]
pub struct Backtests {
    running: Arc<Mutex<Option<Running>>>,
}

/// Why a /backtest was not started.
#[derive(Debug, thiserror::Error)]
pub enum BacktestStartError {
    #[error("span {span:?} is not a number followed by d, w, m or y (e.g. 30d, 6m, 1y)")]
    BadSpan { span: String },
    /// The request names no stored data, a range too short to warm up, ... : the text says which.
    #[error(transparent)]
    Spec(#[from] backtest::BacktestError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl BacktestStartError {
    /// The same request may start when retried (the database was busy).
    pub fn is_recoverable(&self) -> bool {
        match self {
            BacktestStartError::Store(e)
            | BacktestStartError::Spec(backtest::BacktestError::Store(e)) => e.is_recoverable(),
            BacktestStartError::BadSpan { .. } | BacktestStartError::Spec(_) => false,
        }
    }

    /// The request itself is wrong (span, symbol, range): the operator must change it.
    pub fn is_bad_request(&self) -> bool {
        use backtest::BacktestError as E;
        match self {
            BacktestStartError::BadSpan { .. } => true,
            BacktestStartError::Spec(e) => matches!(
                e,
                E::FromAfterTo { .. }
                    | E::NoSymbols
                    | E::UnknownSymbol { .. }
                    | E::NoDataForInterval { .. }
                    | E::EmptyRange { .. }
                    | E::WarmUp { .. }
            ),
            BacktestStartError::Store(_) => false,
        }
    }
}

/// "30d", "8w", "6m", "1y" -> the first day of the span ending `today`.
pub fn span_start(span: &str, today: NaiveDate) -> Result<NaiveDate, BacktestStartError> {
    let s = span.trim().to_ascii_lowercase();
    let bad = || BacktestStartError::BadSpan {
        span: span.to_string(),
    };
    if s.len() < 2 {
        return Err(bad());
    }
    let (n, unit) = s.split_at(s.len() - 1);
    let n: u32 = n.parse().map_err(|_| bad())?;
    if n == 0 || n > 100 * 366 {
        return Err(bad());
    }
    let start = match unit {
        "d" => today.checked_sub_days(chrono::Days::new(u64::from(n))),
        "w" => today.checked_sub_days(chrono::Days::new(7 * u64::from(n))),
        "m" => today.checked_sub_months(Months::new(n)),
        "y" => n
            .checked_mul(12)
            .and_then(|m| today.checked_sub_months(Months::new(m))),
        _ => return Err(bad()),
    };
    start.ok_or_else(bad)
}

impl Backtests {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Running>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What the running backtest is doing, for /status.
    pub fn progress_text(&self) -> Option<String> {
        self.lock().as_ref().map(|r| {
            let (d, t) = (
                r.done.load(Ordering::Relaxed),
                r.total.load(Ordering::Relaxed),
            );
            let pct = (d * 100).checked_div(t).unwrap_or(0);
            format!("{}: {pct}% ({d} of {t} bars)", r.label)
        })
    }

    /// Starts `/backtest KEY SPAN` or says why not. The interval is `[trading] interval` when
    /// its candles are stored for `key`, else `day`.
    pub async fn start(
        &self,
        store: &Store,
        settings: Arc<Settings>,
        notifier: Arc<dyn Notifier>,
        key: InstrumentKey,
        span: &str,
        today: NaiveDate,
    ) -> Result<Reply, BacktestStartError> {
        if let Some(running) = self.progress_text() {
            return Ok(Reply::BacktestBusy { running });
        }
        let from = span_start(span, today)?;
        let stored = store.candle_summary().await?;
        let intervals: Vec<Interval> = stored
            .iter()
            .filter(|r| r.key == key)
            .map(|r| r.interval)
            .collect();
        let interval = if intervals.contains(&settings.trading.interval) {
            settings.trading.interval
        } else {
            Interval::Day
        };
        let spec = Spec {
            symbols: vec![key.clone()],
            interval,
            from,
            to: today,
            // Chat-run reports sit beside the proposal charts: <[charts] dir>/backtests/<run id>.
            out: None,
            llm: LlmMode::Off,
        };
        let mut spec = spec;
        spec.out = Some(
            std::path::Path::new(&settings.charts.dir)
                .join("backtests")
                .join(backtest::new_run_id(chrono::Utc::now())),
        );
        // Bad input is answered now, before anything is started or stored.
        backtest::load(store, &settings, &spec).await?;
        let done = Arc::new(AtomicU64::new(0));
        let total = Arc::new(AtomicU64::new(0));
        {
            let mut slot = self.lock();
            if slot.is_some() {
                drop(slot);
                return Ok(Reply::BacktestBusy {
                    running: self.progress_text().unwrap_or_default(),
                });
            }
            *slot = Some(Running {
                label: format!("{key} {interval} {from}..{today}"),
                done: done.clone(),
                total: total.clone(),
            });
        }
        let this = self.clone();
        let store = store.clone();
        let task_key = key.clone();
        tokio::spawn(async move {
            let cancel = AtomicBool::new(false);
            let mut progress = move |d: u64, t: u64| {
                done.store(d, Ordering::Relaxed);
                total.store(t, Ordering::Relaxed);
            };
            let result = backtest::run(&store, &settings, &spec, &mut progress, &cancel).await;
            *this.lock() = None;
            let alert = match result {
                Ok(f) => Alert::BacktestDone {
                    key: task_key,
                    summary: f.summary,
                    chart_png: Some(f.out.join("equity.png")),
                },
                Err(e) => Alert::BacktestFailed {
                    key: task_key,
                    error: e.to_string(),
                },
            };
            if let Err(e) = notifier.alert(&alert).await {
                tracing::error!(error = %e, "could not send the backtest result");
            }
        });
        Ok(Reply::BacktestStarted {
            key,
            interval,
            from,
            to: today,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans() {
        let t = NaiveDate::from_ymd_opt(2026, 11, 30).unwrap();
        assert_eq!(
            span_start("1y", t).ok(),
            Some(NaiveDate::from_ymd_opt(2025, 11, 30).unwrap())
        );
        assert_eq!(
            span_start("6M", t).ok(),
            Some(NaiveDate::from_ymd_opt(2026, 5, 30).unwrap())
        );
        assert_eq!(
            span_start("30d", t).ok(),
            Some(NaiveDate::from_ymd_opt(2026, 10, 31).unwrap())
        );
        assert_eq!(
            span_start("2w", t).ok(),
            Some(NaiveDate::from_ymd_opt(2026, 11, 16).unwrap())
        );
        for bad in ["", "y", "0d", "1x", "-1y", "abc"] {
            assert!(span_start(bad, t).is_err(), "{bad}");
        }
    }
}
