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

impl AgentError {
    /// Whether the next scan may succeed without anyone changing anything: the database was
    /// busy, or the analyst (an LLM) failed this time. Settings, charts folder, missing candles
    /// and recordings need the operator.
    pub fn is_recoverable(&self) -> bool {
        match self {
            AgentError::Store(e) => e.is_recoverable(),
            AgentError::Analysis(_) => true,
            AgentError::InvalidStrategy(_)
            | AgentError::Indicator { .. }
            | AgentError::Chart { .. }
            | AgentError::ChartsDir { .. }
            | AgentError::NoCandles { .. }
            | AgentError::Replay(_) => false,
        }
    }
}

/// A scan that failed as a whole reaches the handler with its text and its class.
impl From<AgentError> for crate::ports::ScanError {
    fn from(e: AgentError) -> Self {
        crate::ports::ScanError::Failed {
            recoverable: e.is_recoverable(),
            message: e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::ScanError;

    #[test]
    fn a_failed_scan_keeps_its_text_and_class() {
        let busy = AgentError::Store(crate::store::StoreError::BookLockBusy {
            detail: "held".into(),
        });
        let text = busy.to_string();
        let e = ScanError::from(busy);
        assert!(e.is_recoverable());
        assert_eq!(e.to_string(), text);
        let e = ScanError::from(AgentError::InvalidStrategy("fast >= slow".into()));
        assert!(!e.is_recoverable());
        assert_eq!(
            e.to_string(),
            "strategy settings are invalid: fast >= slow; fix [strategy] in mft.toml"
        );
        assert!(ScanError::from(AgentError::Analysis("timeout".into())).is_recoverable());
        assert!(ScanError::AllStale.is_recoverable());
        assert!(!ScanError::NotAvailable.is_recoverable());
    }
}
