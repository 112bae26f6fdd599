//! Order management: idempotent placement of risk-approved orders (record by unique tag, then
//! the broker, then the state machine), fills applied to positions, paper bracket exits
//! (stop / target against stored candles), and flattening for /kill and the intraday square-off.
//!
//! Every operation that reads the book and then trades runs under the book lock
//! ([`Oms::lock_book`]): an in-process mutex (the fast path) plus the database's book lock
//! ([`crate::store::BookLock`]), so a `mft kill` in another process and the service never
//! place, fill or flatten at the same time. Exits are sized from the position read under that
//! lock, minus exits already in flight, so two kills never sell a position twice.
//!
//! Placement order matters for exactly-once: the order row (state Submitting, unique tag) is
//! written BEFORE the broker is called. A second placement with the same tag finds that row and
//! does not place again; a row left Submitting by a crash is reconciled by asking the broker for
//! the tag first.

pub mod broker;
pub mod kite;
mod live;
pub mod position;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};

use crate::clock::Clock;
use crate::config::{Mode, Settings};
use crate::domain::{
    Candle, DenyReason, Fill, InstrumentKey, Leg, Order, OrderPurpose, OrderRequest, OrderState,
    OrderType, Paise, Position, Product, leg_tag,
};
use crate::risk::{RiskApproved, RiskContext, RiskEngine};
use crate::store::{BookLock, RecordedOrder, Store, StoreError};

pub use crate::domain::MAX_TAG_LEN;
pub use broker::{Broker, BrokerAck, BrokerError, PaperBroker, paper_fill_price};
pub use kite::{KiteBroker, TokenSource};
pub use live::{FollowUps, Merged, ProtectionError, ReconcileError, ReconcileReport};
pub use position::{Applied, FillOverflow, apply_fill};

/// The placement tag of a proposal's entry order (`MFTP<id>E`): one per proposal, so a second
/// placement of the same proposal finds the first.
pub fn proposal_tag(proposal_id: i64) -> String {
    leg_tag(proposal_id, Leg::Entry)
}

#[derive(Debug, thiserror::Error)]
pub enum OmsError {
    #[error("order tag {0:?} is not 1 to {MAX_TAG_LEN} letters and digits (Kite's limit on a tag)")]
    TagTooLong(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "the broker's answer for order {tag} is unknown ({source}); the order stays Submitting \
         and is reconciled by its tag on the next placement: check the broker's order book"
    )]
    Unknown {
        tag: String,
        #[source]
        source: BrokerError,
    },
    #[error("order {id}: illegal state change {from} -> {to}")]
    IllegalTransition {
        id: i64,
        from: &'static str,
        to: &'static str,
    },
    #[error("order {id} changed state while it was being updated; re-read it")]
    Conflict { id: i64 },
    #[error(
        "the risk engine refused an exit ({0}); nothing was sent: compare /positions with the broker"
    )]
    ExitRefused(DenyReason),
    #[error("could not find a free order tag after several tries; retry")]
    TagExhausted,
    #[error("{0}; the fill was not recorded: check the order at the broker")]
    Overflow(#[from] FillOverflow),
}

impl OmsError {
    /// Whether the same operation may succeed when retried without anyone changing anything
    /// (the database busy, a concurrent update, a tag collision). An order whose fate at the
    /// broker is unknown, an illegal state change, a refused exit or an overflow need the
    /// operator.
    pub fn is_recoverable(&self) -> bool {
        match self {
            OmsError::Store(e) => e.is_recoverable(),
            OmsError::Conflict { .. } | OmsError::TagExhausted => true,
            OmsError::TagTooLong(_)
            | OmsError::Unknown { .. }
            | OmsError::IllegalTransition { .. }
            | OmsError::ExitRefused(_)
            | OmsError::Overflow(_) => false,
        }
    }
}

// Here rather than in `broker`, beside the other classifications of the money path.
impl BrokerError {
    /// Whether placing or cancelling again may succeed without anyone changing anything (the
    /// broker unreachable, the database busy). A missing price needs data first.
    pub fn is_recoverable(&self) -> bool {
        match self {
            BrokerError::Unavailable(_) => true,
            BrokerError::Store(e) => e.is_recoverable(),
            BrokerError::NoPrice(_) | BrokerError::Refused(_) => false,
        }
    }
}

/// One order or position that a flatten, square-off or exit check could not settle; the others
/// were still handled. The text names it, says what failed and what to check.
#[derive(Debug, thiserror::Error)]
pub enum FlattenError {
    /// A stop/target exit could not be recorded.
    #[error("{reason} exit of {position}: {source}")]
    Exit {
        reason: &'static str,
        position: String,
        #[source]
        source: OmsError,
    },
    /// An order left in flight by a crash could not be settled from the broker's answer.
    #[error("settling order {tag}: {source}")]
    Settle {
        tag: String,
        #[source]
        source: OmsError,
    },
    #[error("order {tag} is in flight and the broker could not say whether it has it: {source}")]
    InFlight {
        tag: String,
        #[source]
        source: BrokerError,
    },
    #[error("cancelling order {tag}: {source}")]
    CancelAtBroker {
        tag: String,
        #[source]
        source: BrokerError,
    },
    #[error("cancelling order {tag}: {source}")]
    Cancel {
        tag: String,
        #[source]
        source: OmsError,
    },
    /// An exit signal formed on a candle that jumped: the next price decides.
    #[error(
        "closing {position}: the last candle moved more than {max_move_pct}% from the one before; \
         waiting for a fresh price before acting on this exit signal"
    )]
    PriceJumped { position: String, max_move_pct: f64 },
    /// The broker refused the closing order.
    #[error("closing {position}: {reason}")]
    Rejected { position: String, reason: String },
    #[error("closing {position}: the order is {state} at the broker, not confirmed filled")]
    NotFilled {
        position: String,
        state: &'static str,
    },
    #[error("closing {position}: {source}")]
    Close {
        position: String,
        #[source]
        source: OmsError,
    },
    /// Live: a cancel Kite has not confirmed within the wait.
    #[error("order {tag} on {key} is still {state} at the broker after the cancel")]
    StillWorking {
        tag: String,
        key: String,
        state: &'static str,
    },
    /// Live: an exit sent but not (fully) filled within the wait.
    #[error(
        "closing {position}: the exit {tag} is {state} at the broker ({filled} of {quantity} filled{detail})"
    )]
    ExitUnconfirmed {
        position: String,
        tag: String,
        state: &'static str,
        filled: i64,
        quantity: i64,
        detail: String,
    },
    #[error("closing {position}: the exit order vanished")]
    ExitVanished { position: String },
}

impl FlattenError {
    /// Whether running the same flatten again may settle it without anyone changing anything.
    /// A refused or unconfirmed closing order needs a look at the broker first.
    pub fn is_recoverable(&self) -> bool {
        match self {
            FlattenError::Exit { source, .. }
            | FlattenError::Settle { source, .. }
            | FlattenError::Cancel { source, .. }
            | FlattenError::Close { source, .. } => source.is_recoverable(),
            FlattenError::InFlight { source, .. } | FlattenError::CancelAtBroker { source, .. } => {
                source.is_recoverable()
            }
            FlattenError::PriceJumped { .. } => true,
            FlattenError::Rejected { .. }
            | FlattenError::NotFilled { .. }
            | FlattenError::StillWorking { .. }
            | FlattenError::ExitUnconfirmed { .. }
            | FlattenError::ExitVanished { .. } => false,
        }
    }
}

/// Proof that the caller holds the book lock (in-process and in the database); every
/// book-changing [`Oms`] method takes one. Release it with [`BookGuard::release`] (dropping it
/// also releases it, a moment later on PostgreSQL).
pub struct BookGuard<'a> {
    // Declared first so the database lock is given up before the in-process one.
    db: Option<BookLock>,
    _local: tokio::sync::MutexGuard<'a, ()>,
}

impl BookGuard<'_> {
    pub async fn release(mut self) {
        if let Some(db) = self.db.take() {
            db.release().await;
        }
    }
}

/// What a placement did. Returned once per placement, never stored in bulk, so the size
/// difference between variants does not matter.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)]
pub enum Placement {
    Filled {
        order: Order,
        fill: Fill,
        /// P&L this fill realized (reductions and flips).
        realized: Paise,
        position: Position,
    },
    /// Accepted and working at the broker.
    Working { order: Order },
    /// The broker refused it, or it could not be sent (no price): final, nothing filled.
    Rejected { order: Order, reason: String },
    /// The tag was placed before: nothing was sent again.
    AlreadyPlaced { order: Order },
    /// Sent, but the broker's answer was lost: the order is Unknown until its tag is found
    /// (or provably absent) at the broker. Never sent again blindly.
    Unknown { order: Order },
}

impl Placement {
    pub fn order(&self) -> &Order {
        match self {
            Placement::Filled { order, .. }
            | Placement::Working { order }
            | Placement::Rejected { order, .. }
            | Placement::AlreadyPlaced { order }
            | Placement::Unknown { order } => order,
        }
    }
}

/// Stop and target attached to the position an entry opens (paper bracket exits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Brackets {
    pub stop: Paise,
    pub target: Paise,
}

/// A position (or part of one) closed by an exit order.
#[derive(Debug, Clone, PartialEq)]
pub struct ExitFill {
    pub key: InstrumentKey,
    pub product: Product,
    /// Quantity closed (positive).
    pub quantity: i64,
    pub price: Paise,
    /// P&L realized by the exit.
    pub pnl: Paise,
    pub reason: String,
    pub order_id: i64,
}

/// What flatten / square-off did.
#[derive(Debug, Default)]
pub struct FlattenReport {
    pub cancelled: u32,
    pub closed: Vec<ExitFill>,
    pub errors: Vec<FlattenError>,
}

/// The order manager. Share it behind an `Arc`; mutations are serialized by the book lock.
pub struct Oms {
    store: Store,
    broker: Arc<dyn Broker>,
    risk: RiskEngine,
    settings: Arc<Settings>,
    clock: Arc<dyn Clock>,
    lock: tokio::sync::Mutex<()>,
    seq: AtomicU64,
}

impl Oms {
    pub fn new(
        store: Store,
        broker: Arc<dyn Broker>,
        risk: RiskEngine,
        settings: Arc<Settings>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            store,
            broker,
            risk,
            settings,
            clock,
            lock: tokio::sync::Mutex::new(()),
            seq: AtomicU64::new(0),
        }
    }

    pub fn broker(&self) -> &Arc<dyn Broker> {
        &self.broker
    }

    /// "paper" or "live".
    pub fn mode(&self) -> &'static str {
        match self.broker.mode() {
            Mode::Paper => "paper",
            Mode::Live => "live",
        }
    }

    /// Takes the book lock: first in this process, then in the database (waiting for another
    /// process's operation to finish).
    pub async fn lock_book(&self) -> Result<BookGuard<'_>, OmsError> {
        let local = self.lock.lock().await;
        let db = self.store.lock_book().await?;
        Ok(BookGuard {
            db: Some(db),
            _local: local,
        })
    }

    /// Places an approved order exactly once per tag (see the module docs). `brackets` are
    /// attached to the position when an entry fills.
    pub async fn place(
        &self,
        _book: &BookGuard<'_>,
        approved: RiskApproved<OrderRequest>,
        brackets: Option<Brackets>,
    ) -> Result<Placement, OmsError> {
        self.place_locked(approved, brackets).await
    }

    async fn place_locked(
        &self,
        approved: RiskApproved<OrderRequest>,
        brackets: Option<Brackets>,
    ) -> Result<Placement, OmsError> {
        let req = approved.inner().clone();
        // Kite's letters-and-digits rule is enforced by the Kite broker (every tag MFT-1 makes
        // follows it); the length bound holds for every broker.
        if req.tag.is_empty() || req.tag.chars().count() > MAX_TAG_LEN {
            return Err(OmsError::TagTooLong(req.tag));
        }
        let recorded = self
            .store
            .record_order_decided(&req, self.clock.now(), Some(approved.decision()))
            .await?;
        match recorded {
            RecordedOrder::New(order) => self.submit(order, approved, brackets).await,
            RecordedOrder::Existing(order)
                if matches!(order.state, OrderState::Submitting | OrderState::Unknown) =>
            {
                // Left in flight by a crash, or its answer was lost: the broker may or may not
                // have it. Only its provable absence allows sending it (again).
                let found = self
                    .broker
                    .lookup_tag(&req.tag, self.clock.now())
                    .await
                    .map_err(|source| OmsError::Unknown {
                        tag: req.tag.clone(),
                        source,
                    })?;
                match found {
                    Some(update) => {
                        tracing::warn!(tag = %req.tag, "resolved an in-flight order from the broker by its tag");
                        self.settle_found(order, &update, brackets).await
                    }
                    None => {
                        tracing::warn!(tag = %req.tag, "the broker has no order with this tag: sending it now");
                        self.submit(order, approved, brackets).await
                    }
                }
            }
            RecordedOrder::Existing(order) => {
                tracing::info!(tag = %req.tag, state = order.state.name(), "order already placed; not placing again");
                Ok(Placement::AlreadyPlaced { order })
            }
        }
    }

    async fn submit(
        &self,
        order: Order,
        approved: RiskApproved<OrderRequest>,
        brackets: Option<Brackets>,
    ) -> Result<Placement, OmsError> {
        match self.broker.place(approved).await {
            Ok(ack) => self.apply_ack(order, ack, brackets).await,
            Err(e) if e.is_ambiguous() => {
                tracing::warn!(tag = %order.request.tag, error = %e, "the broker's answer was lost: the order is Unknown until its tag is looked up");
                if order.state == OrderState::Unknown {
                    return Ok(Placement::Unknown { order });
                }
                let order = self.transition(order, OrderState::Unknown).await?;
                Ok(Placement::Unknown { order })
            }
            Err(e) => {
                let reason = e.to_string();
                let order = self
                    .transition(
                        order,
                        OrderState::Rejected {
                            reason: reason.clone(),
                        },
                    )
                    .await?;
                Ok(Placement::Rejected { order, reason })
            }
        }
    }

    async fn transition(&self, mut order: Order, to: OrderState) -> Result<Order, OmsError> {
        if !order.state.can_become(&to) {
            return Err(OmsError::IllegalTransition {
                id: order.id,
                from: order.state.name(),
                to: to.name(),
            });
        }
        let now = self.clock.now();
        if !self
            .store
            .update_order_state(order.id, &order.state, &to, now)
            .await?
        {
            return Err(OmsError::Conflict { id: order.id });
        }
        order.state = to;
        order.updated_at = now;
        Ok(order)
    }

    async fn apply_ack(
        &self,
        order: Order,
        ack: BrokerAck,
        brackets: Option<Brackets>,
    ) -> Result<Placement, OmsError> {
        match ack {
            BrokerAck::Filled {
                broker_order_id,
                price,
                quantity,
                at,
            } => {
                self.apply_fill(order, broker_order_id, price, quantity, at, brackets)
                    .await
            }
            BrokerAck::Open { broker_order_id } => {
                let order = self
                    .transition(order, OrderState::Open { broker_order_id })
                    .await?;
                Ok(Placement::Working { order })
            }
            BrokerAck::Rejected { reason } => {
                let order = self
                    .transition(
                        order,
                        OrderState::Rejected {
                            reason: reason.clone(),
                        },
                    )
                    .await?;
                Ok(Placement::Rejected { order, reason })
            }
        }
    }

    async fn apply_fill(
        &self,
        mut order: Order,
        broker_order_id: String,
        price: Paise,
        quantity: i64,
        at: DateTime<Utc>,
        brackets: Option<Brackets>,
    ) -> Result<Placement, OmsError> {
        let filled = OrderState::Filled {
            broker_order_id,
            avg_price: price,
            filled_at: at,
        };
        if !order.state.can_become(&filled) {
            return Err(OmsError::IllegalTransition {
                id: order.id,
                from: order.state.name(),
                to: filled.name(),
            });
        }
        let req = order.request.clone();
        let fill = Fill {
            order_id: order.id,
            key: req.key.clone(),
            side: req.side,
            quantity,
            price,
            ts: at,
        };
        // The position is read and moved inside the fill's locked transaction.
        let mut overflow = None;
        let recorded = self
            .store
            .record_fill(&order.state, &filled, &fill, req.product, |prev| {
                let applied =
                    apply_fill(prev, &req.key, req.product, req.side, quantity, price, at);
                let Applied {
                    mut position,
                    realized,
                    ..
                } = match applied {
                    Ok(a) => a,
                    Err(e) => {
                        let msg = e.to_string();
                        overflow = Some(e);
                        return Err(StoreError::Overflow(msg));
                    }
                };
                if let Some(b) = brackets
                    && req.is_entry()
                    && position.quantity.signum() == req.side.sign()
                {
                    position.stop = Some(b.stop);
                    position.target = Some(b.target);
                }
                Ok((position, realized))
            })
            .await;
        let (position, realized) = match recorded {
            Ok(Some(r)) => r,
            Ok(None) => return Err(OmsError::Conflict { id: order.id }),
            Err(e) => {
                return Err(match overflow {
                    Some(o) => OmsError::Overflow(o),
                    None => e.into(),
                });
            }
        };
        order.state = filled;
        order.updated_at = at;
        Ok(Placement::Filled {
            order,
            fill,
            realized,
            position,
        })
    }

    /// Start-up reconciliation of orders a crash left Submitting: each is resolved with what
    /// the broker says about its tag; one the broker never got is marked Rejected rather than
    /// sent late at a stale price. Returns how many were resolved.
    pub async fn reconcile(&self, _book: &BookGuard<'_>) -> Result<u32, OmsError> {
        let mut resolved = 0;
        for order in self.store.open_orders().await? {
            if !matches!(order.state, OrderState::Submitting | OrderState::Unknown) {
                continue;
            }
            let tag = order.request.tag.clone();
            let found = self
                .broker
                .lookup_tag(&tag, self.clock.now())
                .await
                .map_err(|source| OmsError::Unknown {
                    tag: tag.clone(),
                    source,
                })?;
            match found {
                Some(update) => {
                    self.settle_found(order, &update, None).await?;
                }
                None => {
                    self.transition(
                        order,
                        OrderState::Rejected {
                            reason: crate::texts::NOT_SENT_LATE.into(),
                        },
                    )
                    .await?;
                }
            }
            tracing::warn!(tag = %tag, "reconciled an order left in flight by a restart");
            resolved += 1;
        }
        Ok(resolved)
    }

    /// A fresh tag for an exit order: "MFT" + kind + a random base-36 number (<= 17 letters
    /// and digits).
    fn exit_tag(&self, kind: char) -> String {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(self.seq.fetch_add(1, Ordering::Relaxed));
        h.write_i64(self.clock.now().timestamp_nanos_opt().unwrap_or_default());
        crate::domain::tags::exit_tag(kind, h.finish())
    }

    /// An exit of `quantity` (> 0, at most the position) closing `pos`.
    fn exit_request(
        &self,
        pos: &Position,
        quantity: i64,
        reason: &str,
        kind: char,
        reference: Paise,
    ) -> OrderRequest {
        OrderRequest {
            key: pos.key.clone(),
            side: if pos.quantity > 0 {
                crate::domain::Side::Sell
            } else {
                crate::domain::Side::Buy
            },
            quantity,
            order_type: OrderType::Market,
            product: pos.product,
            tag: self.exit_tag(kind),
            purpose: OrderPurpose::Exit {
                reason: reason.to_string(),
            },
            reference_price: reference,
        }
    }

    /// Exits go through the risk engine too (the only source of `RiskApproved`), against the
    /// position `pos` as read under the book lock: only EXIT_MISMATCH can refuse them (see
    /// `risk`). A refusal is audited here, since no order row follows it.
    async fn approve_exit(
        &self,
        req: OrderRequest,
        pos: Option<&Position>,
    ) -> Result<RiskApproved<OrderRequest>, OmsError> {
        let ctx = RiskContext {
            halted: false,
            positions: pos.map(|p| (p.clone(), None)).into_iter().collect(),
            ..RiskContext::default()
        };
        match self.risk.check(req, &ctx) {
            Ok(approved) => Ok(approved),
            Err(refused) => {
                self.store.record_risk_decision(&refused.decision).await?;
                tracing::error!(tag = %refused.item.tag, key = %refused.item.key, "exit refused: {}", refused.reason);
                Err(OmsError::ExitRefused(refused.reason))
            }
        }
    }

    /// Checks an exit built elsewhere (the live broker's protective stop and target, a manual
    /// exit) against the position as stored now, under the book lock: approved only when it is
    /// on the opposite side and no larger than the position (else EXIT_MISMATCH, audited).
    pub async fn approve_exit_order(
        &self,
        _book: &BookGuard<'_>,
        req: OrderRequest,
    ) -> Result<RiskApproved<OrderRequest>, OmsError> {
        let pos = self.store.position(&req.key, req.product).await?;
        self.approve_exit(req, pos.as_ref()).await
    }

    /// Approves and records an exit of `pos` with a fresh tag (a new tag, and so a new
    /// approval, on the unlikely tag collision). The approval is audited with the order row.
    async fn record_exit(
        &self,
        mut req: OrderRequest,
        pos: &Position,
    ) -> Result<(Order, OrderRequest), OmsError> {
        for _ in 0..4 {
            let approved = self.approve_exit(req.clone(), Some(pos)).await?;
            let recorded = self
                .store
                .record_order_decided(&req, self.clock.now(), Some(approved.decision()))
                .await?;
            match recorded {
                RecordedOrder::New(order) => return Ok((order, req)),
                RecordedOrder::Existing(_) => req.tag = self.exit_tag('r'),
            }
        }
        Err(OmsError::TagExhausted)
    }

    /// Paper bracket exits: closes each position whose stop or target was crossed by a stored
    /// candle of `[trading] interval` that opened at or after the position (its low/high; the
    /// fill is at the stop/target, or at the open when the candle gapped through it). Stop is
    /// checked before target when one candle crosses both (the conservative assumption). A
    /// candle that moved more than `[risk] max_bar_move_pct` from the one before it (a bad
    /// tick, an absurd import) never triggers an exit by itself: the next candle, a fresh
    /// price, decides. In live mode brackets are broker-side orders, so nothing is done here.
    /// One position's failure (e.g. an overflow on an absurd fill) does not stop the others:
    /// it is reported in [`FlattenReport::errors`] for the caller to alert.
    pub async fn check_exits(&self, _book: &BookGuard<'_>) -> Result<FlattenReport, OmsError> {
        let mut report = FlattenReport::default();
        if self.broker.mode() != Mode::Paper {
            return Ok(report);
        }
        let interval = self.settings.trading.interval;
        let max_move = self.settings.risk.max_bar_move_pct;
        for pos in self.store.open_positions().await? {
            if pos.stop.is_none() && pos.target.is_none() {
                continue;
            }
            // One candle before the position opened is the reference for the first move.
            let candles = self
                .store
                .candles(
                    &pos.key,
                    interval,
                    Some(pos.opened_at - interval.duration()),
                    None,
                )
                .await?;
            let mut reference = pos.avg_price;
            let mut hit = None;
            for c in &candles {
                let usable = bar_move_pct(reference, c).is_some_and(|m| m <= max_move);
                if c.ts >= pos.opened_at {
                    if usable {
                        hit = bracket_hit(&pos, c);
                    } else {
                        tracing::warn!(key = %pos.key, ts = %c.ts, max_move, "candle moved too far from the previous one to trigger an exit; waiting for a fresh price");
                    }
                    if hit.is_some() {
                        break;
                    }
                }
                if let Some(close) = Paise::try_from_rupees_f64(c.close).filter(|p| p.0 > 0) {
                    reference = close;
                }
            }
            let Some((price, reason)) = hit else {
                continue;
            };
            let quantity = self.exit_size(&pos).await?;
            if quantity == 0 {
                continue;
            }
            let req = self.exit_request(
                &pos,
                quantity,
                reason,
                if reason == "stop" { 's' } else { 't' },
                price,
            );
            let (order, req) = match self.record_exit(req, &pos).await {
                Ok(r) => r,
                Err(e @ OmsError::ExitRefused(_)) => {
                    report.errors.push(FlattenError::Exit {
                        reason,
                        position: position_label(&pos),
                        source: e,
                    });
                    continue;
                }
                Err(e) => return Err(e),
            };
            let ack = BrokerAck::Filled {
                broker_order_id: format!("paper-{}", req.tag),
                price,
                quantity: req.quantity,
                at: self.clock.now(),
            };
            let placed = match self.apply_ack(order, ack, None).await {
                Ok(p) => p,
                Err(source) => {
                    report.errors.push(FlattenError::Exit {
                        reason,
                        position: position_label(&pos),
                        source,
                    });
                    continue;
                }
            };
            if let Placement::Filled { fill, realized, .. } = placed {
                report.closed.push(ExitFill {
                    key: pos.key.clone(),
                    product: pos.product,
                    quantity: fill.quantity,
                    price: fill.price,
                    pnl: realized,
                    reason: reason.to_string(),
                    order_id: fill.order_id,
                });
            }
        }
        Ok(report)
    }

    /// How much of `pos` an exit may close now: the position as read under the book lock,
    /// minus exits already in flight for it. Never more than the position.
    async fn exit_size(&self, pos: &Position) -> Result<i64, OmsError> {
        let pending = self
            .store
            .pending_exit_quantity(&pos.key, pos.product)
            .await?;
        Ok((pos.quantity.abs() - pending).clamp(0, pos.quantity.abs()))
    }

    /// Cancels every open order and squares off every position at the last price (/kill).
    pub async fn flatten(
        &self,
        _book: &BookGuard<'_>,
        reason: &str,
    ) -> Result<FlattenReport, OmsError> {
        let mut report = FlattenReport::default();
        self.cancel_open_locked(|_| true, &mut report).await?;
        self.close_locked(|_| true, reason, 'k', false, &mut report)
            .await?;
        Ok(report)
    }

    /// Squares off the positions of one product (the 15:15 MIS square-off): its entries still
    /// working are cancelled first (one filling after the square-off would open a position
    /// into the broker's own auto square-off), then each position's protective orders are
    /// cancelled and the position closed.
    pub async fn square_off(
        &self,
        _book: &BookGuard<'_>,
        product: Product,
    ) -> Result<FlattenReport, OmsError> {
        let mut report = FlattenReport::default();
        self.cancel_open_locked(
            |o| o.request.product == product && o.request.is_entry(),
            &mut report,
        )
        .await?;
        self.close_locked(
            |p| p.product == product,
            "square-off",
            'q',
            false,
            &mut report,
        )
        .await?;
        Ok(report)
    }

    /// Closes every position in `key` (an exit signal from a scan). A signal formed on a
    /// candle that jumped more than `[risk] max_bar_move_pct` waits for a fresh price.
    pub async fn close_instrument(
        &self,
        _book: &BookGuard<'_>,
        key: &InstrumentKey,
        reason: &str,
    ) -> Result<FlattenReport, OmsError> {
        let mut report = FlattenReport::default();
        self.close_locked(|p| &p.key == key, reason, 'e', true, &mut report)
            .await?;
        Ok(report)
    }

    /// Whether the latest stored candle of `key` moved more than `[risk] max_bar_move_pct`
    /// from the one before it.
    async fn last_bar_jumped(&self, key: &InstrumentKey) -> Result<bool, OmsError> {
        let last = self
            .store
            .last_candles(key, self.settings.trading.interval, 2)
            .await?;
        let [prev, c] = last.as_slice() else {
            return Ok(false);
        };
        let Some(reference) = Paise::try_from_rupees_f64(prev.close).filter(|p| p.0 > 0) else {
            return Ok(true);
        };
        Ok(bar_move_pct(reference, c).is_none_or(|m| m > self.settings.risk.max_bar_move_pct))
    }

    /// Cancels the orders `which` selects that are working at the broker. An order still Submitting / Unknown was left by
    /// a crash or a lost answer (under the book lock nobody else is placing): the broker is
    /// asked about its tag first, as start-up reconciliation does, instead of cancelling a
    /// record the broker may hold. Live cancels are settled with the broker's word (an order
    /// may fill before its cancel arrives: that fill is recorded, not lost).
    async fn cancel_open_locked(
        &self,
        which: impl Fn(&Order) -> bool,
        report: &mut FlattenReport,
    ) -> Result<(), OmsError> {
        let live = self.broker.mode() == Mode::Live;
        let mut waiting = Vec::new();
        for order in self.store.open_orders().await? {
            if !which(&order) {
                continue;
            }
            let tag = order.request.tag.clone();
            if live {
                match self.cancel_live(order).await {
                    Ok(Merged::Cancelled { .. }) => report.cancelled += 1,
                    Ok(Merged::Filled { order, .. })
                    | Ok(Merged::Opened { order })
                    | Ok(Merged::Unchanged { order })
                        if !order.state.is_terminal() =>
                    {
                        waiting.push(order.id)
                    }
                    Ok(_) => {}
                    Err(source) => report.errors.push(FlattenError::Cancel { tag, source }),
                }
                continue;
            }
            let order = if matches!(order.state, OrderState::Submitting | OrderState::Unknown) {
                match self.broker.lookup_tag(&tag, self.clock.now()).await {
                    Ok(Some(update)) => match self.settle_found(order, &update, None).await {
                        Ok(Placement::Working { order }) => order,
                        Ok(_) => continue,
                        Err(source) => {
                            report.errors.push(FlattenError::Settle { tag, source });
                            continue;
                        }
                    },
                    Ok(None) => {
                        let rejected = OrderState::Rejected {
                            reason: crate::texts::NOT_SENT_LATE.into(),
                        };
                        if let Err(source) = self.transition(order, rejected).await {
                            report.errors.push(FlattenError::Settle { tag, source });
                        }
                        continue;
                    }
                    Err(source) => {
                        report.errors.push(FlattenError::InFlight { tag, source });
                        continue;
                    }
                }
            } else {
                order
            };
            let broker_order_id = match &order.state {
                OrderState::Open { broker_order_id } => Some(broker_order_id.clone()),
                _ => None,
            };
            if let Some(id) = &broker_order_id
                && let Err(source) = self.broker.cancel(id).await
            {
                report
                    .errors
                    .push(FlattenError::CancelAtBroker { tag, source });
                continue;
            }
            match self
                .transition(order, OrderState::Cancelled { broker_order_id })
                .await
            {
                Ok(_) => report.cancelled += 1,
                Err(source) => report.errors.push(FlattenError::Cancel { tag, source }),
            }
        }
        if !waiting.is_empty() {
            // Cancels Kite has not confirmed yet: wait for their final word.
            let wait = std::time::Duration::from_secs(self.settings.live.exit_wait_seconds);
            for m in self.await_final(&waiting, wait).await? {
                if let Merged::Cancelled { .. } = m {
                    report.cancelled += 1;
                }
            }
            for id in waiting {
                if let Some(o) = self.store.order(id).await?
                    && !o.state.is_terminal()
                {
                    report.errors.push(FlattenError::StillWorking {
                        tag: o.request.tag.clone(),
                        key: o.request.key.to_string(),
                        state: o.state.name(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Live: cancels the position's working protective orders (stop / target) before another
    /// exit takes it, so the exit is not sold twice and no stop is left behind.
    async fn cancel_protective(
        &self,
        pos: &Position,
        report: &mut FlattenReport,
    ) -> Result<(), OmsError> {
        for order in self.store.open_orders().await? {
            let protective = matches!(
                crate::domain::parse_tag(&order.request.tag),
                Some(crate::domain::TagOf::Proposal {
                    leg: Leg::Stop(_) | Leg::Target(_),
                    ..
                })
            );
            if !protective || order.request.key != pos.key || order.request.product != pos.product {
                continue;
            }
            let tag = order.request.tag.clone();
            match self.cancel_live(order).await {
                Ok(Merged::Cancelled { .. }) => report.cancelled += 1,
                Ok(_) => {}
                Err(source) => report.errors.push(FlattenError::Cancel { tag, source }),
            }
        }
        Ok(())
    }

    async fn close_locked(
        &self,
        which: impl Fn(&Position) -> bool,
        reason: &str,
        kind: char,
        needs_fresh_price: bool,
        report: &mut FlattenReport,
    ) -> Result<(), OmsError> {
        let live = self.broker.mode() == Mode::Live;
        let mut sent: Vec<(i64, Position)> = Vec::new();
        for pos in self.store.open_positions().await? {
            if !which(&pos) {
                continue;
            }
            let label = position_label(&pos);
            if needs_fresh_price && self.last_bar_jumped(&pos.key).await? {
                report.errors.push(FlattenError::PriceJumped {
                    position: label,
                    max_move_pct: self.settings.risk.max_bar_move_pct,
                });
                continue;
            }
            if live {
                self.cancel_protective(&pos, report).await?;
            }
            // Re-read: a protective order may have filled before its cancel.
            let Some(pos) = self
                .store
                .position(&pos.key, pos.product)
                .await?
                .filter(|p| p.quantity != 0)
            else {
                continue;
            };
            let quantity = self.exit_size(&pos).await?;
            if quantity == 0 {
                tracing::info!(position = %label, "an exit for the whole position is already in flight");
                continue;
            }
            let last = self
                .store
                .last_price(&pos.key, self.settings.trading.interval)
                .await?
                .unwrap_or(pos.avg_price);
            let req = self.exit_request(&pos, quantity, reason, kind, last);
            let approved = match self.approve_exit(req, Some(&pos)).await {
                Ok(a) => a,
                Err(source) => {
                    report.errors.push(FlattenError::Close {
                        position: label,
                        source,
                    });
                    continue;
                }
            };
            match self.place_locked(approved, None).await {
                Ok(Placement::Filled { fill, realized, .. }) => report.closed.push(ExitFill {
                    key: pos.key.clone(),
                    product: pos.product,
                    quantity: fill.quantity,
                    price: fill.price,
                    pnl: realized,
                    reason: reason.to_string(),
                    order_id: fill.order_id,
                }),
                Ok(Placement::Rejected { reason, .. }) => {
                    report.errors.push(FlattenError::Rejected {
                        position: label,
                        reason,
                    })
                }
                Ok(other) if live => sent.push((other.order().id, pos.clone())),
                Ok(other) => report.errors.push(FlattenError::NotFilled {
                    position: label,
                    state: other.order().state.name(),
                }),
                Err(source) => report.errors.push(FlattenError::Close {
                    position: label,
                    source,
                }),
            }
        }
        if sent.is_empty() {
            return Ok(());
        }
        // Live MARKET exits fill in a moment: wait for the broker's word on each.
        let ids: Vec<i64> = sent.iter().map(|(id, _)| *id).collect();
        let wait = std::time::Duration::from_secs(self.settings.live.exit_wait_seconds);
        let merged = self.await_final(&ids, wait).await?;
        for (id, pos) in sent {
            let label = format!("{} {}", pos.key, pos.product.as_str());
            let fills: Vec<&Merged> = merged
                .iter()
                .filter(|m| m.order().is_some_and(|o| o.id == id))
                .collect();
            let mut closed_qty = 0;
            for m in &fills {
                if let Merged::Filled { fill, realized, .. } = m {
                    closed_qty += fill.quantity;
                    report.closed.push(ExitFill {
                        key: pos.key.clone(),
                        product: pos.product,
                        quantity: fill.quantity,
                        price: fill.price,
                        pnl: *realized,
                        reason: reason.to_string(),
                        order_id: id,
                    });
                }
            }
            let state = self.store.order(id).await?;
            match state {
                Some(o) if matches!(o.state, OrderState::Filled { .. }) => {}
                Some(o) => report.errors.push(FlattenError::ExitUnconfirmed {
                    position: label,
                    tag: o.request.tag.clone(),
                    state: o.state.name(),
                    filled: o.filled_quantity.max(closed_qty),
                    quantity: o.request.quantity,
                    detail: match &o.state {
                        OrderState::Rejected { reason } => format!(": {reason}"),
                        _ => String::new(),
                    },
                }),
                None => report
                    .errors
                    .push(FlattenError::ExitVanished { position: label }),
            }
        }
        Ok(())
    }
}

/// How a position is named in flatten failures: "NSE:INFY MIS".
fn position_label(pos: &Position) -> String {
    format!("{} {}", pos.key, pos.product.as_str())
}

/// How far (percent) a candle's open, high and low reach from `reference` (the previous close);
/// None when a price is not a usable positive amount.
fn bar_move_pct(reference: Paise, c: &Candle) -> Option<f64> {
    if reference.0 <= 0 {
        return None;
    }
    let mut worst: f64 = 0.0;
    for p in [c.open, c.high, c.low, c.close] {
        let p = Paise::try_from_rupees_f64(p).filter(|p| p.0 > 0)?;
        let moved = (p.0 as f64 - reference.0 as f64).abs() / reference.0 as f64 * 100.0;
        worst = worst.max(moved);
    }
    Some(worst)
}

/// Where a candle crossed the position's stop or target: (fill price, "stop" | "target").
pub fn bracket_hit(pos: &Position, c: &Candle) -> Option<(Paise, &'static str)> {
    let open = Paise::try_from_rupees_f64(c.open)?;
    let high = Paise::try_from_rupees_f64(c.high)?;
    let low = Paise::try_from_rupees_f64(c.low)?;
    if pos.quantity > 0 {
        if let Some(stop) = pos.stop
            && low <= stop
        {
            return Some((open.min(stop), "stop"));
        }
        if let Some(target) = pos.target
            && high >= target
        {
            return Some((open.max(target), "target"));
        }
    } else if pos.quantity < 0 {
        if let Some(stop) = pos.stop
            && high >= stop
        {
            return Some((open.max(stop), "stop"));
        }
        if let Some(target) = pos.target
            && low <= target
        {
            return Some((open.min(target), "target"));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn pos(qty: i64) -> Position {
        let t = Utc
            .with_ymd_and_hms(2026, 11, 25, 4, 0, 0)
            .single()
            .expect("time");
        Position {
            key: InstrumentKey::new("NSE", "INFY"),
            product: Product::Mis,
            quantity: qty,
            avg_price: Paise::from_rupees(100),
            realized_pnl: Paise::ZERO,
            stop: Some(Paise::from_rupees(95)),
            target: Some(Paise::from_rupees(110)),
            opened_at: t,
            updated_at: t,
        }
    }

    fn candle(open: f64, high: f64, low: f64) -> Candle {
        Candle {
            ts: Utc::now(),
            open,
            high,
            low,
            close: open,
            volume: 1,
            oi: None,
        }
    }

    #[test]
    fn long_brackets_fill_at_the_level_or_the_gap() {
        assert_eq!(bracket_hit(&pos(10), &candle(100.0, 105.0, 97.0)), None);
        assert_eq!(
            bracket_hit(&pos(10), &candle(100.0, 101.0, 94.0)),
            Some((Paise::from_rupees(95), "stop"))
        );
        // Gapped down through the stop: filled at the (worse) open.
        assert_eq!(
            bracket_hit(&pos(10), &candle(93.0, 94.0, 90.0)),
            Some((Paise::from_rupees(93), "stop"))
        );
        assert_eq!(
            bracket_hit(&pos(10), &candle(104.0, 111.0, 103.0)),
            Some((Paise::from_rupees(110), "target"))
        );
        // Gapped up through the target: filled at the (better) open.
        assert_eq!(
            bracket_hit(&pos(10), &candle(112.0, 113.0, 111.0)),
            Some((Paise::from_rupees(112), "target"))
        );
        // Both in one candle: the stop is assumed first.
        assert_eq!(
            bracket_hit(&pos(10), &candle(100.0, 111.0, 94.0)),
            Some((Paise::from_rupees(95), "stop"))
        );
    }

    #[test]
    fn short_brackets_mirror_the_long_ones() {
        let mut short = pos(-10);
        short.stop = Some(Paise::from_rupees(105));
        short.target = Some(Paise::from_rupees(90));
        assert_eq!(
            bracket_hit(&short, &candle(100.0, 106.0, 99.0)),
            Some((Paise::from_rupees(105), "stop"))
        );
        assert_eq!(
            bracket_hit(&short, &candle(95.0, 96.0, 89.0)),
            Some((Paise::from_rupees(90), "target"))
        );
        assert_eq!(bracket_hit(&short, &candle(100.0, 104.0, 91.0)), None);
    }

    #[test]
    fn order_state_machine_allows_only_forward_moves() {
        let t = Utc::now();
        let filled = OrderState::Filled {
            broker_order_id: "b".into(),
            avg_price: Paise(1),
            filled_at: t,
        };
        let open = OrderState::Open {
            broker_order_id: "b".into(),
        };
        let cancelled = OrderState::Cancelled {
            broker_order_id: None,
        };
        assert!(OrderState::Submitting.can_become(&filled));
        assert!(OrderState::Submitting.can_become(&open));
        assert!(open.can_become(&filled));
        assert!(open.can_become(&cancelled));
        assert!(!filled.can_become(&cancelled));
        assert!(!filled.can_become(&OrderState::Submitting));
        assert!(!cancelled.can_become(&open));
        assert!(!open.can_become(&OrderState::Submitting));
    }

    #[test]
    fn tags_fit_kites_limit() {
        assert!(crate::domain::tag_is_valid(&proposal_tag(
            999_999_999_999_999
        )));
        assert!(proposal_tag(999_999_999_999_999).len() <= MAX_TAG_LEN);
    }

    fn busy() -> StoreError {
        StoreError::BookLockBusy {
            detail: "held by pid 7".into(),
        }
    }

    #[test]
    fn oms_and_broker_errors_say_whether_a_retry_may_work() {
        assert!(OmsError::Store(busy()).is_recoverable());
        assert!(!OmsError::Store(StoreError::Corrupt("side X".into())).is_recoverable());
        assert!(OmsError::Conflict { id: 3 }.is_recoverable());
        assert!(OmsError::TagExhausted.is_recoverable());
        let unknown = OmsError::Unknown {
            tag: "mft-p7".into(),
            source: BrokerError::Unavailable("timeout".into()),
        };
        assert!(
            !unknown.is_recoverable(),
            "an order whose fate is unknown needs the broker's order book, not a blind retry"
        );
        assert!(!OmsError::ExitRefused(DenyReason::Halted).is_recoverable());
        assert!(!OmsError::TagTooLong("x".repeat(30)).is_recoverable());
        assert!(BrokerError::Unavailable("timeout".into()).is_recoverable());
        assert!(!BrokerError::NoPrice("NSE:INFY".into()).is_recoverable());
        assert!(BrokerError::Store(busy()).is_recoverable());
    }

    #[test]
    fn flatten_failures_are_classified_and_read_as_before() {
        let cases: Vec<(FlattenError, bool, &str)> = vec![
            (
                FlattenError::PriceJumped {
                    position: "NSE:INFY MIS".into(),
                    max_move_pct: 20.0,
                },
                true,
                "closing NSE:INFY MIS: the last candle moved more than 20% from the one before; \
                 waiting for a fresh price before acting on this exit signal",
            ),
            (
                FlattenError::Rejected {
                    position: "NSE:INFY MIS".into(),
                    reason: "margin exceeded".into(),
                },
                false,
                "closing NSE:INFY MIS: margin exceeded",
            ),
            (
                FlattenError::NotFilled {
                    position: "NSE:TCS CNC".into(),
                    state: "open",
                },
                false,
                "closing NSE:TCS CNC: the order is open at the broker, not confirmed filled",
            ),
            (
                FlattenError::CancelAtBroker {
                    tag: "mft-kabc".into(),
                    source: BrokerError::Unavailable("timeout".into()),
                },
                true,
                "cancelling order mft-kabc: the broker could not be reached or failed: timeout; \
                 check the connection and the order book before retrying",
            ),
            (
                FlattenError::InFlight {
                    tag: "mft-p4".into(),
                    source: BrokerError::Unavailable("timeout".into()),
                },
                true,
                "order mft-p4 is in flight and the broker could not say whether it has it: the \
                 broker could not be reached or failed: timeout; check the connection and the \
                 order book before retrying",
            ),
            (
                FlattenError::Settle {
                    tag: "mft-p5".into(),
                    source: OmsError::Conflict { id: 9 },
                },
                true,
                "settling order mft-p5: order 9 changed state while it was being updated; re-read it",
            ),
            (
                FlattenError::Exit {
                    reason: "stop",
                    position: "NSE:INFY MIS".into(),
                    source: OmsError::IllegalTransition {
                        id: 2,
                        from: "filled",
                        to: "cancelled",
                    },
                },
                false,
                "stop exit of NSE:INFY MIS: order 2: illegal state change filled -> cancelled",
            ),
            (
                FlattenError::Close {
                    position: "NSE:INFY MIS".into(),
                    source: OmsError::Store(busy()),
                },
                true,
                "closing NSE:INFY MIS: another mft process kept the order book locked (held by \
                 pid 7); retry, and check that no command is stuck",
            ),
        ];
        for (e, recoverable, text) in cases {
            assert_eq!(e.is_recoverable(), recoverable, "{e}");
            assert_eq!(e.to_string(), text);
        }
    }
}
