//! The meta-agent: one scan runs the analyst over the watchlist (or one instrument) with bounded
//! concurrency, sizes entries, stores them as pending proposals with a rendered chart, reports
//! exit signals for open positions, and records the scan run. One failing instrument never stops
//! the scan: it is reported in [`ScanOutcome::errors`].

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::StreamExt;

use super::analyst::closed_candles;
use super::{AgentError, Analyst, size};
use crate::chart::{Levels, ProposalChart};
use crate::clock::Clock;
use crate::config::{ChartSettings, MaKind, Settings, StrategySettings};
use crate::domain::{Candle, InstrumentKey, Interval, NewProposal, Proposal, Side, Signal};
use crate::ports::{ProposalCard, ScanError, ScanResult, ScanSummary, Scanner};
use crate::store::Store;

/// The longest error summary stored with a scan run.
const MAX_ERROR_TEXT: usize = 2000;

/// What one scan did.
#[derive(Debug, Clone, PartialEq)]
pub struct ScanOutcome {
    pub summary: ScanSummary,
    /// New pending proposals, to be posted as cards (in watchlist order).
    pub proposals: Vec<ProposalCard>,
    /// Exit signals for instruments with an open position: (instrument, reason).
    pub exits: Vec<(InstrumentKey, String)>,
    /// Instruments that failed (no candles, analyst or store error, chart failure).
    pub errors: Vec<(InstrumentKey, String)>,
    /// Instruments that produced nothing, with the reason (pending proposal, open position, no
    /// signal, sizing gave less than one share).
    pub skipped: Vec<(InstrumentKey, String)>,
}

/// The orchestrator of a scan. Cheap to clone.
#[derive(Clone)]
pub struct MetaAgent {
    store: Store,
    analyst: Arc<dyn Analyst>,
    settings: Arc<Settings>,
    clock: Arc<dyn Clock>,
}

/// The result for one instrument.
#[derive(Default)]
struct Step {
    card: Option<ProposalCard>,
    exit: Option<String>,
    skipped: Option<String>,
    error: Option<String>,
}

impl Step {
    fn skipped(reason: impl Into<String>) -> Step {
        Step {
            skipped: Some(reason.into()),
            ..Step::default()
        }
    }
    fn error(e: impl std::fmt::Display) -> Step {
        Step {
            error: Some(e.to_string()),
            ..Step::default()
        }
    }
}

impl MetaAgent {
    pub fn new(
        store: Store,
        analyst: Arc<dyn Analyst>,
        settings: Arc<Settings>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            store,
            analyst,
            settings,
            clock,
        }
    }

    pub fn analyst(&self) -> &dyn Analyst {
        self.analyst.as_ref()
    }

    /// Screens the watchlist (or only `only`), skips instruments with a pending proposal or an
    /// open position (open ones are still analysed for exit signals), stores new proposals with
    /// their chart rendered under `[charts] dir`, and records the scan run. Errs only when the
    /// scan run itself cannot be recorded.
    pub async fn scan(
        &self,
        only: Option<&InstrumentKey>,
        open_positions: &[InstrumentKey],
    ) -> Result<ScanOutcome, AgentError> {
        let list = self.scan_list(only);
        self.scan_exactly(list, open_positions).await
    }

    /// The instruments a scan of `only` (or the whole watchlist) covers, without duplicates.
    pub fn scan_list(&self, only: Option<&InstrumentKey>) -> Vec<InstrumentKey> {
        match only {
            Some(k) => vec![k.clone()],
            None => {
                let mut seen = HashSet::new();
                self.settings
                    .trading
                    .watchlist
                    .iter()
                    .filter(|k| seen.insert((*k).clone()))
                    .cloned()
                    .collect()
            }
        }
    }

    /// [`MetaAgent::scan`] over exactly `list` (one scan run).
    pub async fn scan_exactly(
        &self,
        list: Vec<InstrumentKey>,
        open_positions: &[InstrumentKey],
    ) -> Result<ScanOutcome, AgentError> {
        let started = self.clock.now();
        let count = u32::try_from(list.len()).unwrap_or(u32::MAX);
        let run_id = self.store.start_scan_run(started, count).await?;
        self.analyst.scan_started().await;
        tracing::info!(
            scan = run_id,
            instruments = count,
            analyst = self.analyst.name(),
            "scan started"
        );

        let open: HashSet<&InstrumentKey> = open_positions.iter().collect();
        let concurrency = self.settings.trading.scan_concurrency.max(1);
        let mut steps: Vec<(usize, InstrumentKey, Step)> =
            futures::stream::iter(list.into_iter().enumerate().map(|(i, key)| {
                let is_open = open.contains(&key);
                async move {
                    let step = self.scan_one(&key, is_open).await;
                    (i, key, step)
                }
            }))
            .buffer_unordered(concurrency)
            .collect()
            .await;
        steps.sort_by_key(|(i, _, _)| *i);

        let mut out = ScanOutcome {
            summary: ScanSummary {
                id: run_id,
                started_at: started,
                finished_at: None,
                instruments: count,
                proposals: 0,
                errors: 0,
                stale: Vec::new(),
            },
            proposals: Vec::new(),
            exits: Vec::new(),
            errors: Vec::new(),
            skipped: Vec::new(),
        };
        for (_, key, step) in steps {
            if let Some(card) = step.card {
                out.proposals.push(card);
            }
            if let Some(reason) = step.exit {
                out.exits.push((key.clone(), reason));
            }
            if let Some(reason) = step.skipped {
                tracing::info!(scan = run_id, instrument = %key, %reason, "no proposal");
                out.skipped.push((key.clone(), reason));
            }
            if let Some(error) = step.error {
                tracing::warn!(scan = run_id, instrument = %key, %error, "instrument failed in scan");
                out.errors.push((key, error));
            }
        }

        let finished = self.clock.now();
        out.summary.finished_at = Some(finished);
        out.summary.proposals = u32::try_from(out.proposals.len()).unwrap_or(u32::MAX);
        out.summary.errors = u32::try_from(out.errors.len()).unwrap_or(u32::MAX);
        let error_text = error_summary(&out.errors);
        // The proposals are stored already: failing to close the run record must not keep their
        // cards from being posted, so it is logged rather than returned.
        if let Err(e) = self
            .store
            .finish_scan_run(
                run_id,
                finished,
                out.summary.proposals,
                out.summary.errors,
                error_text.as_deref(),
            )
            .await
        {
            tracing::error!(scan = run_id, error = %e, "could not record the end of the scan");
        }
        tracing::info!(
            scan = run_id,
            proposals = out.summary.proposals,
            exits = out.exits.len(),
            errors = out.summary.errors,
            "scan finished"
        );
        Ok(out)
    }

    async fn scan_one(&self, key: &InstrumentKey, is_open: bool) -> Step {
        match self.try_scan_one(key, is_open).await {
            Ok(step) => step,
            Err(e) => Step::error(e),
        }
    }

    async fn try_scan_one(&self, key: &InstrumentKey, is_open: bool) -> Result<Step, AgentError> {
        let trading = &self.settings.trading;
        let interval = trading.interval;
        if !is_open && self.store.has_pending_proposal(key).await? {
            return Ok(Step::skipped("a proposal is already pending"));
        }
        let candles = self
            .store
            .last_candles(key, interval, trading.lookback_bars.max(1))
            .await?;
        if candles.is_empty() {
            return Err(AgentError::NoCandles {
                key: key.clone(),
                interval,
            });
        }
        let signal = self.analyst.analyse(key, interval, &candles).await?;

        if is_open {
            return Ok(match signal {
                Signal::Exit { reason, .. } => Step {
                    exit: Some(reason),
                    ..Step::default()
                },
                // A fresh cross against the held position: crosses alternate, so a SELL cross
                // ends a long, and a BUY cross ends a short where shorts are allowed.
                Signal::Entry(v) if v.side == Side::Sell || self.settings.strategy.allow_short => {
                    Step {
                        exit: Some(v.rationale),
                        ..Step::default()
                    }
                }
                Signal::Entry(v) => Step::skipped(format!(
                    "a position is open ({} signal not taken: {})",
                    v.side, v.rationale
                )),
                Signal::None { reason, .. } => {
                    Step::skipped(format!("a position is open; {reason}"))
                }
            });
        }

        let verdict = match signal {
            Signal::Entry(v) => v,
            Signal::None { reason, .. } => return Ok(Step::skipped(reason)),
            Signal::Exit { reason, .. } => {
                return Ok(Step::skipped(format!("no position to exit: {reason}")));
            }
        };
        let tick = self.store.instrument(key).await?.map(|i| i.tick_size);
        // Sized on the day's capital (the live ramp caps it), as the risk check will see it.
        let today = crate::clock::ist_date(self.clock.now());
        let day_trading = crate::config::TradingSettings {
            capital: self.settings.capital_on(today),
            ..trading.clone()
        };
        let trading = &day_trading;
        let sized = match size(
            &verdict,
            trading,
            &self.settings.risk,
            tick,
            self.settings.entry_slippage_bps(),
        ) {
            Ok(s) => s,
            Err(skip) => return Ok(Step::skipped(skip.to_string())),
        };
        let now = self.clock.now();
        let new = NewProposal {
            key: key.clone(),
            side: verdict.side,
            quantity: sized.quantity,
            entry: sized.entry,
            stop: sized.stop,
            target: sized.target,
            product: sized.product,
            confidence: if verdict.confidence.is_finite() {
                verdict.confidence.clamp(0.0, 1.0)
            } else {
                0.0
            },
            rationale: verdict.rationale.clone(),
            created_at: now,
            expires_at: now + chrono::Duration::minutes(trading.proposal_ttl_minutes),
        };
        let Some(mut proposal) = self.store.insert_proposal(&new).await? else {
            return Ok(Step::skipped(
                "a proposal is already pending (stored by a concurrent scan)",
            ));
        };
        self.analyst.proposal_stored(key, proposal.id).await;
        tracing::info!(
            proposal = proposal.id, instrument = %key, side = %proposal.side,
            quantity = proposal.quantity, entry = %proposal.entry, limit = sized.limit.as_str(),
            "proposal stored"
        );

        let closed = closed_candles(&candles, interval, now).to_vec();
        let chart = self.render_chart(&proposal, interval, closed).await;
        let mut step = Step::default();
        let chart_png = match chart {
            Ok(path) => {
                let text = path.to_string_lossy().into_owned();
                match self.store.set_proposal_chart(proposal.id, &text).await {
                    Ok(()) => {
                        proposal.chart_path = Some(text);
                        Some(path)
                    }
                    Err(e) => {
                        step.error = Some(format!(
                            "proposal #{} stored, but its chart path was not: {e}",
                            proposal.id
                        ));
                        Some(path)
                    }
                }
            }
            Err(e) => {
                step.error = Some(format!(
                    "proposal #{} stored without a chart: {e}",
                    proposal.id
                ));
                None
            }
        };
        step.card = Some(ProposalCard {
            proposal,
            chart_png,
            capital: trading.capital,
        });
        Ok(step)
    }

    /// Renders the proposal's chart to `[charts] dir`/p<id>-<EXCHANGE>_<SYMBOL>.png, off the
    /// async threads (drawing and PNG encoding take milliseconds of CPU).
    async fn render_chart(
        &self,
        p: &Proposal,
        interval: Interval,
        candles: Vec<Candle>,
    ) -> Result<PathBuf, AgentError> {
        let charts = self.settings.charts.clone();
        let strategy = self.settings.strategy.clone();
        let dir = PathBuf::from(&charts.dir);
        let path = dir.join(chart_file_name(p));
        let title = format!("{} · {} · {} proposal", p.key, interval, p.side);
        let levels = Levels {
            entry: p.entry.as_rupees_f64(),
            stop: p.stop.as_rupees_f64(),
            target: p.target.as_rupees_f64(),
        };
        let key = p.key.clone();
        let target = path.clone();
        tokio::task::spawn_blocking(move || -> Result<(), AgentError> {
            std::fs::create_dir_all(&dir).map_err(|source| AgentError::ChartsDir {
                path: dir.clone(),
                source,
            })?;
            let png = chart_for(&key, &title, &candles, &strategy, &charts, Some(levels))?;
            write_atomically(&target, &png)
        })
        .await
        .map_err(|e| AgentError::Chart {
            key: p.key.clone(),
            source: crate::chart::ChartError::Draw(format!("the chart task failed: {e}")),
        })??;
        Ok(path)
    }
}

/// `p42-NSE_INFY.png`: the proposal id keeps names unique; the symbol makes them readable.
pub fn chart_file_name(p: &Proposal) -> String {
    let sym: String = format!("{}_{}", p.key.exchange, p.key.tradingsymbol)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("p{}-{sym}.png", p.id)
}

/// Renders a proposal-style chart (PNG bytes) of the last `[charts] bars` of `candles` with the
/// strategy's fast/slow moving averages and RSI, and entry/stop/target lines when given. The
/// indicators are computed over all of `candles`, so pass more bars than are shown to get past
/// their warm-up. Used by the scan and by `mft chart`.
pub fn chart_for(
    key: &InstrumentKey,
    title: &str,
    candles: &[Candle],
    strategy: &StrategySettings,
    charts: &ChartSettings,
    levels: Option<Levels>,
) -> Result<Vec<u8>, AgentError> {
    let ind = |what: &'static str| {
        let key = key.clone();
        move |source| AgentError::Indicator { key, what, source }
    };
    let close: Vec<f64> = candles.iter().map(|c| c.close).collect();
    let ma = |period| match strategy.ma {
        MaKind::Ema => crate::ta::ema(&close, period),
        MaKind::Sma => crate::ta::sma(&close, period),
    };
    let fast = ma(strategy.fast).map_err(ind("fast MA"))?;
    let slow = ma(strategy.slow).map_err(ind("slow MA"))?;
    let rsi = crate::ta::rsi(&close, strategy.rsi_period).map_err(ind("RSI"))?;
    let from = candles.len().saturating_sub(charts.bars.max(1));
    let kind = match strategy.ma {
        MaKind::Ema => "EMA",
        MaKind::Sma => "SMA",
    };
    let input = ProposalChart {
        title: title.to_string(),
        candles: &candles[from..],
        ema_fast: &fast[from..],
        ema_slow: &slow[from..],
        rsi: &rsi[from..],
        fast_label: format!("{kind} {}", strategy.fast),
        slow_label: format!("{kind} {}", strategy.slow),
        levels,
    };
    crate::chart::render_proposal(&input, charts.width, charts.height).map_err(|source| {
        AgentError::Chart {
            key: key.clone(),
            source,
        }
    })
}

/// Writes through a temporary file and renames it, so a reader never sees half a PNG.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), AgentError> {
    let tmp = path.with_extension("png.tmp");
    let io = |source| AgentError::ChartsDir {
        path: path.to_path_buf(),
        source,
    };
    std::fs::write(&tmp, bytes).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

fn error_summary(errors: &[(InstrumentKey, String)]) -> Option<String> {
    if errors.is_empty() {
        return None;
    }
    let mut text = errors
        .iter()
        .map(|(k, e)| format!("{k}: {e}"))
        .collect::<Vec<_>>()
        .join("; ");
    if text.len() > MAX_ERROR_TEXT {
        let mut cut = MAX_ERROR_TEXT;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    Some(text)
}

/// The meta-agent is the scanner of `mft run`.
#[async_trait::async_trait]
impl Scanner for MetaAgent {
    async fn scan(
        &self,
        only: Option<&InstrumentKey>,
        open_positions: &[InstrumentKey],
    ) -> Result<ScanResult, ScanError> {
        let outcome = MetaAgent::scan(self, only, open_positions).await?;
        Ok(into_result(outcome))
    }

    async fn scan_keys(
        &self,
        keys: &[InstrumentKey],
        open_positions: &[InstrumentKey],
    ) -> Result<ScanResult, ScanError> {
        let outcome = self.scan_exactly(keys.to_vec(), open_positions).await?;
        Ok(into_result(outcome))
    }
}

fn into_result(outcome: ScanOutcome) -> ScanResult {
    {
        for (key, reason) in &outcome.skipped {
            tracing::debug!(%key, "scan skipped: {reason}");
        }
        ScanResult {
            summary: outcome.summary,
            proposals: outcome.proposals,
            exits: outcome.exits,
            errors: outcome.errors,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Paise, Product, ProposalStatus};
    use chrono::{TimeZone, Utc};

    #[test]
    fn chart_file_names_are_safe_and_unique() {
        let t = Utc.with_ymd_and_hms(2026, 11, 25, 4, 0, 0).unwrap();
        let p = Proposal {
            id: 42,
            key: InstrumentKey::new("NSE", "M&M"),
            side: Side::Buy,
            quantity: 1,
            entry: Paise(100),
            stop: Paise(90),
            target: Paise(120),
            product: Product::Mis,
            confidence: 0.5,
            rationale: String::new(),
            status: ProposalStatus::Pending,
            created_at: t,
            expires_at: t,
            chart_path: None,
            message_id: None,
            decided_at: None,
            decided_by: None,
            outcome: None,
        };
        assert_eq!(chart_file_name(&p), "p42-NSE_M_M.png");
    }

    #[test]
    fn error_summary_is_bounded() {
        let k = InstrumentKey::new("NSE", "INFY");
        assert_eq!(error_summary(&[]), None);
        let one = error_summary(&[(k.clone(), "boom".into())]).unwrap();
        assert_eq!(one, "NSE:INFY: boom");
        let many: Vec<_> = (0..500).map(|_| (k.clone(), "é".repeat(10))).collect();
        let text = error_summary(&many).unwrap();
        assert!(text.len() <= MAX_ERROR_TEXT + '…'.len_utf8());
        assert!(text.ends_with('…'));
    }
}
