//! The agent pipeline: the analysis agent (rule-based `ma_cross` for now, an LLM later behind the
//! same [`Analyst`] trait), insight & leverage ([`size`]) and the meta-agent ([`MetaAgent`]) that
//! scans the watchlist and stores proposals with their charts.
//!
//! Agents produce proposals and exit signals; they never place orders (no `oms` import here).

pub mod analyst;
pub mod meta;
pub mod replay;
pub mod sizing;

pub use analyst::{Analyst, RuleAnalyst, RuleStream};
pub use meta::{MetaAgent, ScanOutcome, chart_for};
pub use replay::{RecordingAnalyst, ReplayAnalyst};
pub use sizing::{Sized, SizingLimit, SizingSkip, size};

use crate::domain::InstrumentKey;

/// Errors of the agents. A failing instrument inside a scan is reported in
/// [`ScanOutcome::errors`] instead; these end a call.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("strategy settings are invalid: {0}; fix [strategy] in mft.toml")]
    InvalidStrategy(String),
    #[error("computing {what} for {key} failed: {source}")]
    Indicator {
        key: InstrumentKey,
        what: &'static str,
        #[source]
        source: crate::ta::TaError,
    },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("rendering the chart for {key} failed: {source}")]
    Chart {
        key: InstrumentKey,
        #[source]
        source: crate::chart::ChartError,
    },
    #[error(
        "cannot create the charts folder {path}: {source}; check [charts] dir and its permissions"
    )]
    ChartsDir {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The analyst (an LLM) produced nothing for this instrument; the text says why.
    #[error("{0}")]
    Analysis(String),
    #[error(
        "no candles of {interval} stored for {key}: fetch them first (mft data fetch {key} --interval {interval})"
    )]
    NoCandles {
        key: InstrumentKey,
        interval: crate::domain::Interval,
    },
    /// `--llm replay` / `record`: a missing or unreadable recorded exchange.
    #[error("{0}")]
    Replay(String),
}
