//! The reproducibility seam around the [`Analyst`] trait (`mft backtest --llm record|replay`):
//! [`RecordingAnalyst`] asks the real analyst and keeps every exchange keyed by a SHA-256 hash
//! of the request; [`ReplayAnalyst`] answers from the stored exchanges without any endpoint and
//! fails naming the instrument and bar when one is missing.
//!
//! The request is the analyst's whole input in a canonical JSON form (analyst name, instrument,
//! interval, every candle); the response is the [`Signal`] as JSON, with floats written in their
//! shortest round-trip form and read back bit for bit.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use sha2::{Digest, Sha256};

use super::{AgentError, Analyst};
use crate::clock::IST;
use crate::domain::{Candle, InstrumentKey, Interval, Signal};
use crate::store::{Exchange, Store};

/// The canonical request text of one analyst call.
pub fn request_text(
    analyst: &str,
    key: &InstrumentKey,
    interval: Interval,
    candles: &[Candle],
) -> String {
    let rows: Vec<serde_json::Value> = candles
        .iter()
        .map(|c| {
            serde_json::json!([
                c.ts.timestamp(),
                c.open,
                c.high,
                c.low,
                c.close,
                c.volume,
                c.oi
            ])
        })
        .collect();
    serde_json::json!({
        "analyst": analyst,
        "instrument": key.to_string(),
        "interval": interval.as_str(),
        "candles": rows,
    })
    .to_string()
}

pub fn request_hash(request: &str) -> String {
    hex::encode(Sha256::digest(request.as_bytes()))
}

/// Wraps an analyst and records each exchange (kept in memory; the backtest stores them with
/// the completed run).
pub struct RecordingAnalyst {
    inner: Arc<dyn Analyst>,
    recorded: Mutex<Vec<Exchange>>,
}

impl RecordingAnalyst {
    pub fn new(inner: Arc<dyn Analyst>) -> Self {
        Self {
            inner,
            recorded: Mutex::new(Vec::new()),
        }
    }

    /// The exchanges recorded so far (drained).
    pub fn take(&self) -> Vec<Exchange> {
        std::mem::take(&mut *self.recorded.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

#[async_trait]
impl Analyst for RecordingAnalyst {
    fn name(&self) -> &str {
        self.inner.name()
    }

    async fn analyse(
        &self,
        key: &InstrumentKey,
        interval: Interval,
        candles: &[Candle],
    ) -> Result<Signal, AgentError> {
        let signal = self.inner.analyse(key, interval, candles).await?;
        let request = request_text(self.inner.name(), key, interval, candles);
        let response = serde_json::to_string(&signal)
            .map_err(|e| AgentError::Replay(format!("cannot encode the analyst's answer: {e}")))?;
        let bar_ts = candles.last().map(|c| c.ts).unwrap_or_default();
        self.recorded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Exchange {
                request_hash: request_hash(&request),
                analyst: self.inner.name().to_string(),
                key: key.clone(),
                bar_ts,
                request,
                response,
            });
        Ok(signal)
    }
}

/// Answers from recorded exchanges only.
pub struct ReplayAnalyst {
    store: Store,
    name: String,
}

impl ReplayAnalyst {
    /// `name`: the analyst the exchanges were recorded with (part of every request).
    pub fn new(store: Store, name: String) -> Self {
        Self { store, name }
    }
}

#[async_trait]
impl Analyst for ReplayAnalyst {
    fn name(&self) -> &str {
        &self.name
    }

    async fn analyse(
        &self,
        key: &InstrumentKey,
        interval: Interval,
        candles: &[Candle],
    ) -> Result<Signal, AgentError> {
        let request = request_text(&self.name, key, interval, candles);
        let hash = request_hash(&request);
        let Some(response) = self.store.llm_exchange(&hash).await? else {
            let bar = candles
                .last()
                .map(|c| {
                    c.ts.with_timezone(&IST)
                        .format("%Y-%m-%d %H:%M IST")
                        .to_string()
                })
                .unwrap_or_else(|| "(no candle)".into());
            return Err(AgentError::Replay(format!(
                "no recorded exchange for {key} at the bar of {bar} (request {}): run the same backtest with --llm record first",
                &hash[..12]
            )));
        };
        serde_json::from_str(&response).map_err(|e| {
            AgentError::Replay(format!(
                "the recorded exchange for {key} (request {}) is not a valid answer: {e}",
                &hash[..12]
            ))
        })
    }
}
