//! Backtest mode: replays stored candles through the analyst, sizing, risk engine and position
//! bookkeeping of `mft run` on a simulated clock ([`engine`]), with Zerodha's charges
//! ([`costs`]), and writes the report ([`report`]: report.json, trades.csv, equity.png,
//! report.html) with the metrics of [`metrics`].
//!
//! A run is recorded as 'running' before the replay; its trade-log rows (tagged with the run
//! id, so paper/live views never show them) and the 'complete' status are stored together at
//! the end. Bad input is refused before anything is stored.

pub mod costs;
pub mod engine;
pub mod metrics;
pub mod report;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use chrono::{DateTime, NaiveDate, NaiveTime, TimeZone, Utc};

use crate::agents::{Analyst, RecordingAnalyst, ReplayAnalyst, RuleAnalyst};
use crate::clock::IST;
use crate::config::Settings;
use crate::domain::{InstrumentKey, Interval};
use crate::store::{RunLogRow, Store};

pub use engine::{Control, Decider, Outcome, Series, Trade};
pub use metrics::Metrics;

/// `--llm`: how analyst (model) exchanges are handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LlmMode {
    /// The rules analyst, streaming.
    #[default]
    Off,
    /// Ask the configured analyst and store every exchange keyed by a hash of the request.
    Record,
    /// Answer every request from the stored exchanges; no endpoint is contacted.
    Replay,
}

impl std::str::FromStr for LlmMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "off" => Ok(LlmMode::Off),
            "record" => Ok(LlmMode::Record),
            "replay" => Ok(LlmMode::Replay),
            other => Err(format!(
                "unknown --llm mode {other:?}: use off, record or replay"
            )),
        }
    }
}

/// What to replay.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Empty: the watchlist.
    pub symbols: Vec<InstrumentKey>,
    pub interval: Interval,
    /// IST dates, both inclusive.
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// None: backtests/<run id>.
    pub out: Option<PathBuf>,
    pub llm: LlmMode,
}

#[derive(Debug, thiserror::Error)]
pub enum BacktestError {
    /// A fill whose money arithmetic overflowed (an absurd price or quantity): the run stops.
    #[error("{0}; the run was stopped")]
    Overflow(#[from] crate::oms::FillOverflow),
    #[error("--from {from} is after --to {to}: give the first day first")]
    FromAfterTo { from: NaiveDate, to: NaiveDate },
    #[error(
        "no instruments to backtest: name them (mft backtest NSE:INFY ...) or set [trading] watchlist"
    )]
    NoSymbols,
    #[error(
        "unknown symbol {key}: no candles of any interval are stored for it; import or fetch them first (mft data import FILE --symbol {key} --interval day)"
    )]
    UnknownSymbol { key: InstrumentKey },
    #[error(
        "no {interval} candles stored for {key} (stored intervals: {available}); fetch them (mft data fetch {key} --interval {interval}) or pick a stored interval"
    )]
    NoDataForInterval {
        key: InstrumentKey,
        interval: Interval,
        available: String,
    },
    #[error(
        "no {interval} candles for {key} between {from} and {to} (stored: {first} to {last}); pick dates inside the stored range"
    )]
    EmptyRange {
        key: InstrumentKey,
        interval: Interval,
        from: NaiveDate,
        to: NaiveDate,
        first: String,
        last: String,
    },
    #[error(
        "{key} has {bars} {interval} candles between {from} and {to}, but the strategy needs {need} before its first decision plus one to fill it; widen the range or shorten [strategy] slow/rsi_period/atr_period"
    )]
    WarmUp {
        key: InstrumentKey,
        interval: Interval,
        bars: usize,
        need: usize,
        from: NaiveDate,
        to: NaiveDate,
    },
    #[error("the analyst failed on {key} at the bar of {bar}: {message}")]
    Analyst {
        key: InstrumentKey,
        bar: DateTime<Utc>,
        message: String,
    },
    #[error("the backtest was interrupted; the run is recorded as failed, not complete")]
    Cancelled,
    #[error(transparent)]
    Agent(#[from] crate::agents::AgentError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("writing the report to {path} failed: {message}")]
    Report { path: PathBuf, message: String },
}

/// A finished run.
#[derive(Debug, Clone)]
pub struct Finished {
    pub run_id: String,
    pub out: PathBuf,
    pub outcome: Outcome,
    pub metrics: Metrics,
    pub summary: String,
}

/// The run's effective settings: the instruments are the watchlist (so the risk engine allows
/// them) and the capital is the initial cash.
pub fn run_settings(settings: &Settings, symbols: &[InstrumentKey]) -> Settings {
    let mut s = settings.clone();
    s.trading.watchlist = symbols.to_vec();
    s.trading.capital = settings.backtest.initial_cash;
    s
}

fn day_start(d: NaiveDate) -> DateTime<Utc> {
    IST.from_local_datetime(&d.and_time(NaiveTime::MIN))
        .single()
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| Utc.from_utc_datetime(&d.and_time(NaiveTime::MIN)))
}

/// Checks the input and loads the candles; stores nothing.
pub async fn load(
    store: &Store,
    settings: &Settings,
    spec: &Spec,
) -> Result<(Vec<InstrumentKey>, Vec<Series>), BacktestError> {
    if spec.from > spec.to {
        return Err(BacktestError::FromAfterTo {
            from: spec.from,
            to: spec.to,
        });
    }
    let mut symbols: Vec<InstrumentKey> = Vec::new();
    let wanted = if spec.symbols.is_empty() {
        settings.trading.watchlist.clone()
    } else {
        spec.symbols.clone()
    };
    for k in wanted {
        if !symbols.contains(&k) {
            symbols.push(k);
        }
    }
    if symbols.is_empty() {
        return Err(BacktestError::NoSymbols);
    }
    let summary = store.candle_summary().await?;
    let from = day_start(spec.from);
    let to = day_start(spec.to + chrono::Duration::days(1)) - chrono::Duration::seconds(1);
    let need = engine::warm_up(settings);
    let mut series = Vec::new();
    for key in &symbols {
        let stored: Vec<_> = summary.iter().filter(|r| &r.key == key).collect();
        if stored.is_empty() {
            return Err(BacktestError::UnknownSymbol { key: key.clone() });
        }
        let Some(row) = stored.iter().find(|r| r.interval == spec.interval) else {
            return Err(BacktestError::NoDataForInterval {
                key: key.clone(),
                interval: spec.interval,
                available: stored
                    .iter()
                    .map(|r| r.interval.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        };
        let candles = store
            .candles(key, spec.interval, Some(from), Some(to))
            .await?;
        if candles.is_empty() {
            let f = |t: DateTime<Utc>| t.with_timezone(&IST).format("%Y-%m-%d").to_string();
            return Err(BacktestError::EmptyRange {
                key: key.clone(),
                interval: spec.interval,
                from: spec.from,
                to: spec.to,
                first: f(row.first),
                last: f(row.last),
            });
        }
        if candles.len() < need + 1 {
            return Err(BacktestError::WarmUp {
                key: key.clone(),
                interval: spec.interval,
                bars: candles.len(),
                need,
                from: spec.from,
                to: spec.to,
            });
        }
        let tick = store
            .instrument(key)
            .await?
            .map(|i| i.tick_size)
            .filter(|t| *t > 0.0);
        series.push(Series {
            key: key.clone(),
            candles,
            tick,
        });
    }
    Ok((symbols, series))
}

/// A new run id: UTC time to the second plus 4 random hex digits.
pub fn new_run_id(now: DateTime<Utc>) -> String {
    format!(
        "bt-{}-{:04x}",
        now.format("%Y%m%dT%H%M%SZ"),
        rand::random::<u16>()
    )
}

/// Runs a backtest end to end: checks and loads (nothing stored on bad input), records the
/// run, replays, writes the report and completes the run.
pub async fn run(
    store: &Store,
    settings: &Settings,
    spec: &Spec,
    progress: &mut (dyn FnMut(u64, u64) + Send),
    cancel: &AtomicBool,
) -> Result<Finished, BacktestError> {
    let (symbols, series) = load(store, settings, spec).await?;
    let eff = run_settings(settings, &symbols);
    let now = Utc::now();
    let run_id = new_run_id(now);
    let out = spec
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("backtests").join(&run_id));
    let params = serde_json::json!({
        "symbols": symbols.iter().map(|k| k.to_string()).collect::<Vec<_>>(),
        "interval": spec.interval.as_str(),
        "from": spec.from.to_string(),
        "to": spec.to.to_string(),
        "llm": format!("{:?}", spec.llm).to_lowercase(),
        "out": out.display().to_string(),
    })
    .to_string();
    store.start_backtest_run(&run_id, &params, now).await?;
    let result = run_recorded(store, &eff, spec, &series, &run_id, &out, progress, cancel).await;
    match result {
        Ok(f) => Ok(f),
        Err(e) => {
            if let Err(se) = store
                .fail_backtest_run(&run_id, &e.to_string(), Utc::now())
                .await
            {
                tracing::error!(run = %run_id, error = %se, "could not mark the backtest run failed");
            }
            Err(e)
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_recorded(
    store: &Store,
    eff: &Settings,
    spec: &Spec,
    series: &[Series],
    run_id: &str,
    out: &std::path::Path,
    progress: &mut (dyn FnMut(u64, u64) + Send),
    cancel: &AtomicBool,
) -> Result<Finished, BacktestError> {
    let rules = RuleAnalyst::new(eff.strategy.clone());
    let recorder = match spec.llm {
        LlmMode::Record => Some(Arc::new(RecordingAnalyst::new(Arc::new(rules.clone())))),
        _ => None,
    };
    let decider = match spec.llm {
        LlmMode::Off => Decider::Rules,
        LlmMode::Record => {
            Decider::Analyst(recorder.clone().expect("set above") as Arc<dyn Analyst>)
        }
        LlmMode::Replay => Decider::Analyst(Arc::new(ReplayAnalyst::new(
            store.clone(),
            rules.name().to_string(),
        ))),
    };
    let outcome = engine::replay(
        eff,
        spec.interval,
        series,
        &decider,
        Control { progress, cancel },
    )
    .await?;
    let spans: Vec<(f64, f64)> = outcome.spans.iter().map(|(_, o, c)| (*o, *c)).collect();
    let m = metrics::compute(&metrics::Inputs {
        initial: eff.backtest.initial_cash,
        equity: &outcome.equity,
        trades: &outcome.trades,
        exposed_steps: outcome.exposed_steps,
        total_charges: outcome.total_charges,
        spans: &spans,
    });
    let ctx = report::Context {
        run_id,
        settings: eff,
        spec,
    };
    report::write_all(out, &ctx, &outcome, &m, &eff.charts)?;
    let summary = report::summary_text(&ctx, &outcome, &m);
    let rows: Vec<RunLogRow> = outcome
        .events
        .iter()
        .map(|e| RunLogRow {
            ts: e.ts,
            kind: e.kind.to_string(),
            key: e.key.clone(),
            detail: e.detail.clone(),
        })
        .collect();
    let exchanges = recorder.map(|r| r.take()).unwrap_or_default();
    let json = report::metrics_json(&m).to_string();
    store
        .complete_backtest_run(run_id, &rows, &exchanges, &json, Utc::now())
        .await?;
    Ok(Finished {
        run_id: run_id.to_string(),
        out: out.to_path_buf(),
        outcome,
        metrics: m,
        summary,
    })
}
