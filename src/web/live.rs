//! Live updates for the dashboard: a watcher compares cheap readings of the store (and the
//! handler's position view) every half second while a browser listens, and publishes what
//! changed (a new or decided proposal, a fill, a price move, a halt) to the server-sent-events
//! stream. It sees changes from every source alike: Telegram taps, the scheduler, the page
//! itself, `mft kill` from another process.
//!
//! [`RecordingNotifier`] wraps the operator's notifier (Telegram, or the log without a bot): it
//! stores every alert for the Alerts page and nudges the watcher so the page updates at once.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use serde::Serialize;
use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::domain::{Actor, Command, Paise, Proposal, Request};
use crate::ports::{Alert, CommandHandler, Notifier, NotifyError, Outcome, ProposalCard, Reply};
use crate::store::{DashboardMarks, Store};

/// How often the watcher reads the store while someone listens.
pub const POLL: Duration = Duration::from_millis(500);

/// One change, as sent to the browser (`event: <kind>`, `data: <json>`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LiveEvent {
    /// `proposal`, `fill`, `order`, `price`, `halt`, `scan`, `alert`
    pub kind: &'static str,
    /// A short line for the page's notice (plain text), empty for quiet updates.
    pub text: String,
}

/// The fan-out of live events, shared by the watcher, the notifier wrapper and the SSE streams.
#[derive(Clone)]
pub struct LiveHub {
    tx: broadcast::Sender<LiveEvent>,
    nudge: Arc<Notify>,
    /// Cancelled at shutdown: open event streams end, so the server's graceful shutdown is
    /// not held up by browsers that keep listening.
    closed: CancellationToken,
}

impl Default for LiveHub {
    fn default() -> Self {
        Self::new()
    }
}

impl LiveHub {
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(256);
        Self {
            tx,
            nudge: Arc::new(Notify::new()),
            closed: CancellationToken::new(),
        }
    }

    /// Ends every open event stream (at shutdown).
    pub fn close(&self) {
        self.closed.cancel();
    }

    pub fn subscribe(&self) -> broadcast::Receiver<LiveEvent> {
        self.tx.subscribe()
    }

    pub fn publish(&self, e: LiveEvent) {
        // No listener is not an error.
        let _ = self.tx.send(e);
    }

    /// Asks the watcher to look now instead of at its next tick.
    pub fn nudge(&self) {
        self.nudge.notify_one();
    }

    fn listeners(&self) -> usize {
        self.tx.receiver_count()
    }
}

/// What the watcher compares between two readings.
#[derive(Debug, Clone, PartialEq, Default)]
struct Reading {
    marks: DashboardMarks,
    halted: bool,
    paused: bool,
    prices: Vec<(String, Option<Paise>)>,
}

async fn read(store: &Store, handler: &dyn CommandHandler) -> Option<Reading> {
    let marks = store
        .dashboard_marks()
        .await
        .inspect_err(|e| tracing::warn!("live updates: {e}"))
        .ok()?;
    let state = store.system_state().await.ok()?;
    let prices = match handler
        .handle(Request {
            command: Command::Positions,
            actor: Actor::Web,
        })
        .await
    {
        Ok(Reply::Positions(list)) => list
            .into_iter()
            .map(|v| (v.position.key.to_string(), v.last_price))
            .collect(),
        _ => Vec::new(),
    };
    Some(Reading {
        marks,
        halted: state.halted,
        paused: state.paused,
        prices,
    })
}

/// The events that lead from `old` to `new`.
fn changes(old: &Reading, new: &Reading) -> Vec<LiveEvent> {
    let mut out = Vec::new();
    let ev = |kind, text: &str| LiveEvent {
        kind,
        text: text.to_string(),
    };
    let (o, n) = (&old.marks, &new.marks);
    if n.pending > o.pending && n.proposals_changed_at != o.proposals_changed_at {
        out.push(ev("proposal", "New proposal in the queue"));
    } else if n.proposals_changed_at != o.proposals_changed_at || n.pending != o.pending {
        out.push(ev("proposal", "A proposal was decided"));
    }
    if n.last_fill != o.last_fill {
        out.push(ev("fill", "Order filled"));
    } else if n.last_order != o.last_order || n.working_orders != o.working_orders {
        out.push(ev("order", ""));
    }
    if new.halted != old.halted {
        out.push(ev(
            "halt",
            if new.halted {
                "HALTED: new entries are blocked"
            } else {
                "Trading resumed"
            },
        ));
    } else if new.paused != old.paused {
        out.push(ev("halt", if new.paused { "Paused" } else { "Resumed" }));
    }
    if new.prices != old.prices {
        out.push(ev("price", ""));
    }
    if n.last_scan != o.last_scan || n.scans_finished != o.scans_finished {
        out.push(ev("scan", ""));
    }
    if n.last_alert != o.last_alert {
        out.push(ev("alert", ""));
    }
    out
}

/// Runs until `shutdown`: reads while at least one browser listens, publishes the changes.
pub async fn watch(
    hub: LiveHub,
    store: Store,
    handler: Arc<dyn CommandHandler>,
    shutdown: CancellationToken,
) {
    let mut last: Option<Reading> = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(POLL) => {}
            _ = hub.nudge.notified() => {}
        }
        if hub.listeners() == 0 {
            // Nobody listens: forget the baseline, a new listener loads a fresh page anyway.
            last = None;
            continue;
        }
        let Some(now) = read(&store, handler.as_ref()).await else {
            continue;
        };
        if let Some(old) = &last {
            for e in changes(old, &now) {
                hub.publish(e);
            }
        }
        last = Some(now);
    }
}

/// The `/events` stream of one browser: each change as a named event; `resync` when it fell
/// behind (the page then reloads its content).
pub fn sse(hub: &LiveHub) -> Sse<impl Stream<Item = Result<Event, Infallible>> + use<>> {
    let rx = hub.subscribe();
    // Make sure the watcher has a baseline before the first change.
    hub.nudge();
    let hello = futures::stream::once(async {
        Ok(Event::default()
            .event("hello")
            .retry(Duration::from_secs(2))
            .data("{}"))
    });
    let updates = futures::stream::unfold(rx, |mut rx| async move {
        let event = match rx.recv().await {
            Ok(e) => Event::default()
                .event(e.kind)
                .data(serde_json::to_string(&e).unwrap_or_else(|_| "{}".into())),
            Err(broadcast::error::RecvError::Lagged(_)) => {
                Event::default().event("resync").data("{}")
            }
            Err(broadcast::error::RecvError::Closed) => return None,
        };
        Some((Ok(event), rx))
    });
    let closed = hub.closed.clone().cancelled_owned();
    let stream = futures::StreamExt::take_until(futures::StreamExt::chain(hello, updates), closed);
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

/// Wraps the operator's notifier: every alert is also stored (Alerts page) with whether it
/// reached the operator, and each outbound message nudges the live watcher.
pub struct RecordingNotifier {
    inner: Arc<dyn Notifier>,
    store: Store,
    clock: Arc<dyn Clock>,
    hub: LiveHub,
}

impl RecordingNotifier {
    pub fn new(
        inner: Arc<dyn Notifier>,
        store: Store,
        clock: Arc<dyn Clock>,
        hub: LiveHub,
    ) -> Self {
        Self {
            inner,
            store,
            clock,
            hub,
        }
    }
}

fn alert_kind(a: &Alert) -> &'static str {
    match a {
        Alert::Started { .. } => "started",
        Alert::Stopping => "stopping",
        Alert::ScanFailed { .. } => "scan_failed",
        Alert::Vetoed { .. } => "vetoed",
        Alert::DailyLossHalt { .. } => "daily_loss_halt",
        Alert::KillDone(_) => "kill",
        Alert::OrderFailed { .. } => "order_failed",
        Alert::PositionClosed { .. } => "position_closed",
        Alert::Broker { .. } => "broker",
        Alert::AnalystFailing { .. } => "analyst_failing",
        Alert::LlmBudgetSpent { .. } => "llm_budget_spent",
        Alert::LoginLink { .. } => "login_link",
        Alert::SessionActive { .. } => "session_active",
        Alert::SessionExpired { .. } => "session_expired",
        Alert::BacktestDone { .. } => "backtest_done",
        Alert::BacktestFailed { .. } => "backtest_failed",
    }
}

#[async_trait::async_trait]
impl Notifier for RecordingNotifier {
    async fn post_proposal(&self, card: &ProposalCard) -> Result<i64, NotifyError> {
        let r = self.inner.post_proposal(card).await;
        self.hub.nudge();
        r
    }

    async fn update_proposal(
        &self,
        proposal: &Proposal,
        message_id: i64,
        outcome: &Outcome,
    ) -> Result<(), NotifyError> {
        let r = self
            .inner
            .update_proposal(proposal, message_id, outcome)
            .await;
        self.hub.nudge();
        r
    }

    async fn alert(&self, alert: &Alert) -> Result<(), NotifyError> {
        let r = self.inner.alert(alert).await;
        let error = r.as_ref().err().map(|e| e.to_string());
        if let Err(e) = self
            .store
            .record_alert(
                self.clock.now(),
                alert_kind(alert),
                &crate::texts::alert(alert),
                r.is_ok(),
                error.as_deref(),
            )
            .await
        {
            tracing::error!("could not record an alert for the dashboard: {e}");
        }
        self.hub.nudge();
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_name_what_moved() {
        let old = Reading::default();
        let mut new = old.clone();
        assert!(changes(&old, &new).is_empty());
        new.marks.pending = 1;
        new.marks.proposals_changed_at = Some(chrono::Utc::now());
        new.halted = true;
        new.prices = vec![("NSE:INFY".into(), Some(Paise(100)))];
        let kinds: Vec<_> = changes(&old, &new).into_iter().map(|e| e.kind).collect();
        assert_eq!(kinds, ["proposal", "halt", "price"]);
        let mut later = new.clone();
        later.marks.last_fill = 3;
        later.marks.pending = 0;
        let e = changes(&new, &later);
        assert_eq!(e[0].text, "A proposal was decided");
        assert_eq!(e[1].kind, "fill");
    }
}
