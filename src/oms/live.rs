//! Live order updates and reconciliation: one merge function for every source of broker news
//! (postback, ticker order message, order-history poll, tag lookup), the protective stop /
//! target pair placed as an entry fills, and the comparison of the store with the broker's
//! orders and positions.
//!
//! When a protective leg fills in part, its sibling is made smaller by the same quantity (a
//! modify at the broker), and cancelled once nothing is left for it; the broker's own report
//! of an order's quantity (after any modify) is adopted by the merge.
//!
//! The merge is idempotent: updates carry cumulative fills, the store's compare-and-set is on
//! the order's state AND its filled quantity, so the same update twice records one fill, a
//! late OPEN after COMPLETE changes nothing (a final order never changes), and a partial fill
//! moves the position by its delta inside the fill's transaction. Callers hold the book lock.

use chrono::{DateTime, Utc};

use super::{Brackets, BrokerError, Oms, OmsError, Placement, apply_fill};
use crate::config::{ExitRule, Mode};
use crate::domain::{
    BrokerOrderUpdate, BrokerPosition, BrokerStatus, Fill, InstrumentKey, Leg, Order, OrderPurpose,
    OrderRequest, OrderState, OrderType, Paise, Position, Product, Side, TagOf, leg_tag, parse_tag,
    sibling_tag,
};
use crate::store::{NewReconciliation, RecordedOrder, StoreError};

/// What one merged update did to the order.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)]
pub enum Merged {
    /// No order of ours has this tag or broker id.
    NotOurs,
    /// Nothing changed (a repeat, a stale or late update, a final order).
    Unchanged {
        order: Order,
    },
    /// Working at the broker now (acknowledged).
    Opened {
        order: Order,
    },
    /// More of the order filled; `complete` when all of it has.
    Filled {
        order: Order,
        fill: Fill,
        realized: Paise,
        position: Position,
        complete: bool,
    },
    /// The broker rejected it (`reason` is Kite's status message).
    Rejected {
        order: Order,
        reason: String,
    },
    Cancelled {
        order: Order,
    },
}

impl Merged {
    pub fn order(&self) -> Option<&Order> {
        match self {
            Merged::NotOurs => None,
            Merged::Unchanged { order }
            | Merged::Opened { order }
            | Merged::Filled { order, .. }
            | Merged::Rejected { order, .. }
            | Merged::Cancelled { order } => Some(order),
        }
    }
}

/// What the follow-ups of a merge did: protective orders placed, siblings cancelled, and
/// anything that failed (for the operator).
#[derive(Debug, Default)]
pub struct FollowUps {
    pub placed: Vec<Order>,
    pub cancelled: Vec<Order>,
    /// Protective orders made smaller because their sibling filled in part (as stored after).
    pub resized: Vec<Order>,
    pub errors: Vec<ProtectionError>,
}

/// A follow-up of a fill that did not happen: a position may be unprotected, or a protective
/// order may still work after its pair filled. The text is the operator's alert.
#[derive(Debug, thiserror::Error)]
pub enum ProtectionError {
    /// The protective pair for an entry's new fill could not be set up at all.
    #[error("protecting {quantity} {key} of {tag}: {source}")]
    Protect {
        quantity: i64,
        key: InstrumentKey,
        tag: String,
        #[source]
        source: OmsError,
    },
    /// A filled stop's target (or a filled target's stop) could not be cancelled.
    #[error("cancelling {tag}: {source}")]
    CancelSibling {
        tag: String,
        #[source]
        source: OmsError,
    },
    /// The broker refused one order of the protective pair.
    #[error("the {leg} order {tag} was rejected: {reason}")]
    Rejected {
        leg: String,
        tag: String,
        reason: String,
    },
    /// One order of the protective pair could not be placed.
    #[error("placing the {leg}: {source}")]
    Place {
        leg: &'static str,
        #[source]
        source: OmsError,
    },
    /// A protective order whose sibling filled in part could not be made smaller: it may exit
    /// more than the position holds.
    #[error("resizing {tag} to {quantity} still to fill: {source}")]
    Resize {
        tag: String,
        quantity: i64,
        #[source]
        source: OmsError,
    },
    #[error("resizing {tag} to {quantity} still to fill: {source}")]
    ResizeAtBroker {
        tag: String,
        quantity: i64,
        #[source]
        source: BrokerError,
    },
    #[error(
        "{tag} is not acknowledged by the broker yet, so it could not be resized to {quantity} \
         still to fill"
    )]
    ResizeUnacknowledged { tag: String, quantity: i64 },
}

impl ProtectionError {
    /// Whether the next poll or reconciliation may get it done without anyone changing
    /// anything. The broker's refusal needs the operator.
    pub fn is_recoverable(&self) -> bool {
        match self {
            ProtectionError::Protect { source, .. }
            | ProtectionError::CancelSibling { source, .. }
            | ProtectionError::Place { source, .. } => source.is_recoverable(),
            // Nothing retries a resize: the operator checks the order on Kite.
            ProtectionError::Rejected { .. }
            | ProtectionError::Resize { .. }
            | ProtectionError::ResizeAtBroker { .. }
            | ProtectionError::ResizeUnacknowledged { .. } => false,
        }
    }
}

/// What a reconciliation found and did.
#[derive(Debug, Default)]
pub struct ReconcileReport {
    /// Orders left Submitting / Unknown that were resolved by tag.
    pub resolved: u32,
    /// Each difference between the store and the broker, in words (one alert each).
    pub mismatches: Vec<String>,
    /// Merges the reconciliation made (fills found late, cancels, rejections).
    pub merged: Vec<Merged>,
    pub errors: Vec<ReconcileError>,
}

/// One correction a reconciliation could not make; the store still differs from the broker
/// there. The text is the operator's alert.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// An order open here but missing from Kite's order book could not be marked cancelled.
    /// The text is the OMS error alone, as the alert has always shown it.
    #[error("{source}")]
    MarkCancelled {
        tag: String,
        #[source]
        source: OmsError,
    },
    /// A position could not be set to the broker's quantity.
    #[error("correcting {key} {product}: {source}")]
    Position {
        key: InstrumentKey,
        product: &'static str,
        #[source]
        source: OmsError,
    },
    /// A follow-up of a merge the reconciliation made (a late fill's protective pair).
    #[error(transparent)]
    Protection(#[from] ProtectionError),
}

impl ReconcileError {
    /// Whether the next reconciliation may make the correction without anyone changing
    /// anything.
    pub fn is_recoverable(&self) -> bool {
        match self {
            ReconcileError::MarkCancelled { source, .. }
            | ReconcileError::Position { source, .. } => source.is_recoverable(),
            ReconcileError::Protection(e) => e.is_recoverable(),
        }
    }
}

impl Oms {
    /// Merges one broker update (any source) into the order it is about, then does the
    /// follow-ups: a protective pair for an entry's new fill (live, bracket exits), the
    /// sibling's cancel when a protective order fills.
    pub async fn merge_update(
        &self,
        _book: &super::BookGuard<'_>,
        update: &BrokerOrderUpdate,
    ) -> Result<(Merged, FollowUps), OmsError> {
        let order = match update.tag.as_deref() {
            Some(tag) => self.store.order_by_tag(tag).await?,
            None => None,
        };
        let order = match order {
            Some(o) => Some(o),
            None if !update.broker_order_id.is_empty() => {
                self.store
                    .order_by_broker_id(&update.broker_order_id)
                    .await?
            }
            None => None,
        };
        let Some(order) = order else {
            return Ok((Merged::NotOurs, FollowUps::default()));
        };
        let merged = self.merge_into(order, update, None).await?;
        let follow = self.follow_ups(&merged).await;
        Ok((merged, follow))
    }

    /// The state an update moves an order to.
    fn target_state(order: &Order, u: &BrokerOrderUpdate) -> OrderState {
        let broker_order_id = if u.broker_order_id.is_empty() {
            match &order.state {
                OrderState::Open { broker_order_id } => broker_order_id.clone(),
                _ => order.request.tag.clone(),
            }
        } else {
            u.broker_order_id.clone()
        };
        match u.status {
            BrokerStatus::Complete => OrderState::Filled {
                broker_order_id,
                avg_price: u.average_price,
                filled_at: u.at,
            },
            BrokerStatus::Open => OrderState::Open { broker_order_id },
            BrokerStatus::Cancelled => OrderState::Cancelled {
                broker_order_id: Some(broker_order_id),
            },
            BrokerStatus::Rejected => OrderState::Rejected {
                reason: u
                    .status_message
                    .clone()
                    .filter(|m| !m.trim().is_empty())
                    .unwrap_or_else(|| u.status_text.clone()),
            },
        }
    }

    /// Stop and target of an entry's proposal when positions end on brackets.
    async fn entry_brackets(&self, order: &Order) -> Result<Option<Brackets>, OmsError> {
        let OrderPurpose::Entry { proposal_id } = order.request.purpose else {
            return Ok(None);
        };
        if self.settings.strategy.exit != ExitRule::Bracket {
            return Ok(None);
        }
        Ok(self.store.proposal(proposal_id).await?.map(|p| Brackets {
            stop: p.stop,
            target: p.target,
        }))
    }

    /// The merge itself (see the module docs). A lost compare-and-set (another process merged
    /// first) re-reads the order once.
    pub(super) async fn merge_into(
        &self,
        order: Order,
        u: &BrokerOrderUpdate,
        brackets: Option<Brackets>,
    ) -> Result<Merged, OmsError> {
        let mut order = order;
        for _ in 0..2 {
            match self.merge_once(order.clone(), u, brackets).await? {
                Some(m) => return Ok(m),
                None => match self.store.order(order.id).await? {
                    Some(fresh) => order = fresh,
                    None => return Ok(Merged::NotOurs),
                },
            }
        }
        Ok(Merged::Unchanged { order })
    }

    /// One attempt; None when the order changed under us.
    async fn merge_once(
        &self,
        order: Order,
        u: &BrokerOrderUpdate,
        brackets: Option<Brackets>,
    ) -> Result<Option<Merged>, OmsError> {
        if order.state.is_terminal() {
            return Ok(Some(Merged::Unchanged { order }));
        }
        // The broker holds the order at another quantity (our modify of a protective leg, or
        // one made on Kite): its number decides when the order is complete.
        let order = match u.quantity {
            Some(q)
                if q != order.request.quantity
                    && q >= order.filled_quantity.max(u.filled_quantity) =>
            {
                if !self.store.set_order_quantity(&order, q, u.at).await? {
                    return Ok(None);
                }
                tracing::info!(
                    tag = %order.request.tag,
                    from = order.request.quantity,
                    to = q,
                    "order quantity changed at the broker"
                );
                let mut order = order;
                order.request.quantity = q;
                order
            }
            _ => order,
        };
        let quantity = order.request.quantity;
        let mut filled = u.filled_quantity.clamp(0, quantity);
        if u.status == BrokerStatus::Complete {
            filled = quantity;
        }
        if filled < order.filled_quantity {
            // Older than what we already merged.
            return Ok(Some(Merged::Unchanged { order }));
        }
        let mut target = Self::target_state(&order, u);
        let delta = filled - order.filled_quantity;
        if delta == 0 {
            if target.name() == order.state.name() || !order.state.can_become(&target) {
                return Ok(Some(Merged::Unchanged { order }));
            }
            let order = match self.transition(order, target).await {
                Ok(o) => o,
                Err(OmsError::Conflict { .. }) => return Ok(None),
                Err(e) => return Err(e),
            };
            return Ok(Some(match &order.state {
                OrderState::Open { .. } => Merged::Opened { order },
                OrderState::Rejected { reason } => Merged::Rejected {
                    reason: reason.clone(),
                    order,
                },
                OrderState::Cancelled { .. } => Merged::Cancelled { order },
                _ => Merged::Unchanged { order },
            }));
        }
        if let OrderState::Rejected { .. } = target {
            // Part filled, the rest refused: what filled stands.
            target = OrderState::Cancelled {
                broker_order_id: Some(u.broker_order_id.clone()),
            };
        }
        let price = self.delta_price(&order, u, filled, delta).await?;
        let brackets = match brackets {
            Some(b) => Some(b),
            None => self.entry_brackets(&order).await?,
        };
        let req = order.request.clone();
        let fill = Fill {
            order_id: order.id,
            key: req.key.clone(),
            side: req.side,
            quantity: delta,
            price,
            ts: u.at,
        };
        let mut overflow = None;
        let recorded = self
            .store
            .record_partial_fill(
                &order.state,
                order.filled_quantity,
                &target,
                &fill,
                req.product,
                |prev| {
                    let applied =
                        match apply_fill(prev, &req.key, req.product, req.side, delta, price, u.at)
                        {
                            Ok(a) => a,
                            Err(e) => {
                                let msg = e.to_string();
                                overflow = Some(e);
                                return Err(StoreError::Overflow(msg));
                            }
                        };
                    let mut position = applied.position;
                    if let Some(b) = brackets
                        && req.is_entry()
                        && position.quantity.signum() == req.side.sign()
                    {
                        position.stop = Some(b.stop);
                        position.target = Some(b.target);
                    }
                    Ok((position, applied.realized))
                },
            )
            .await;
        let (position, realized) = match recorded {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(None),
            Err(e) => {
                return Err(match overflow {
                    Some(o) => OmsError::Overflow(o),
                    None => e.into(),
                });
            }
        };
        let mut order = order;
        order.filled_quantity = filled;
        order.state = target;
        order.updated_at = u.at;
        let complete = filled == quantity;
        Ok(Some(Merged::Filled {
            order,
            fill,
            realized,
            position,
            complete,
        }))
    }

    /// The price of the newly filled part: Kite reports the average of everything filled so
    /// far, so the new part's price is what makes the totals add up.
    async fn delta_price(
        &self,
        order: &Order,
        u: &BrokerOrderUpdate,
        filled: i64,
        delta: i64,
    ) -> Result<Paise, OmsError> {
        let fallback = match order.request.order_type {
            OrderType::Limit(p) => p,
            OrderType::StopMarket { trigger } => trigger,
            OrderType::Market => order.request.reference_price,
        };
        // Nothing filled yet: no fills to read (the common case, one read fewer per fill).
        let value_before = if order.filled_quantity == 0 {
            0
        } else {
            self.store.order_fill_totals(order.id).await?.1
        };
        if let Some(price) = self
            .price_from_trades(order, u, filled, delta, value_before)
            .await
        {
            return Ok(price);
        }
        if u.average_price.0 <= 0 {
            return Ok(fallback);
        }
        if order.filled_quantity == 0 {
            return Ok(u.average_price);
        }
        let total = u.average_price.0 as i128 * filled as i128;
        let part = (total - value_before as i128) / delta as i128;
        Ok(i64::try_from(part)
            .ok()
            .filter(|p| *p > 0)
            .map(Paise)
            .unwrap_or(u.average_price))
    }

    /// The new part's price from the broker's trades of the order, when they account for exactly
    /// the `filled` quantity (else a trade is still on its way: the average decides).
    async fn price_from_trades(
        &self,
        order: &Order,
        u: &BrokerOrderUpdate,
        filled: i64,
        delta: i64,
        value_before: i64,
    ) -> Option<Paise> {
        let broker_order_id = match &order.state {
            OrderState::Open { broker_order_id } => broker_order_id.as_str(),
            _ => u.broker_order_id.as_str(),
        };
        if self.broker.mode() != Mode::Live || broker_order_id.is_empty() || delta <= 0 {
            return None;
        }
        let trades = match self.broker.order_trades(broker_order_id).await {
            Ok(Some(t)) => t,
            Ok(None) => return None,
            Err(e) => {
                tracing::debug!(order = %order.request.tag, error = %e, "no trades; the average decides");
                return None;
            }
        };
        let quantity: i64 = trades.iter().map(|t| t.quantity).sum();
        if quantity != filled {
            return None;
        }
        let value: i128 = trades
            .iter()
            .map(|t| i128::from(t.price.0) * i128::from(t.quantity))
            .sum();
        let part = (value - i128::from(value_before)) / i128::from(delta);
        i64::try_from(part).ok().filter(|p| *p > 0).map(Paise)
    }

    /// After a merge: protect an entry's new fill, cancel a filled protective order's sibling.
    async fn follow_ups(&self, merged: &Merged) -> FollowUps {
        let mut out = FollowUps::default();
        let Merged::Filled { order, fill, .. } = merged else {
            return out;
        };
        let filled_now = fill.quantity;
        if self.broker.mode() != Mode::Live {
            return out;
        }
        match parse_tag(&order.request.tag) {
            Some(TagOf::Proposal {
                proposal_id,
                leg: Leg::Entry,
            }) => {
                if let Err(e) = self
                    .place_protective_pair(proposal_id, order, fill.quantity, &mut out)
                    .await
                {
                    out.errors.push(ProtectionError::Protect {
                        quantity: fill.quantity,
                        key: order.request.key.clone(),
                        tag: order.request.tag.clone(),
                        source: e,
                    });
                }
            }
            Some(TagOf::Proposal {
                leg: Leg::Stop(_) | Leg::Target(_),
                ..
            }) => {
                if let Some(sibling) = sibling_tag(&order.request.tag) {
                    self.shrink_sibling(&sibling, filled_now, &mut out).await;
                }
            }
            _ => {}
        }
        out
    }

    /// An SL-M stop and a LIMIT target for `quantity` just filled by `entry`, tagged as the
    /// proposal's next pair. Placed under the book lock the caller holds.
    async fn place_protective_pair(
        &self,
        proposal_id: i64,
        entry: &Order,
        quantity: i64,
        out: &mut FollowUps,
    ) -> Result<(), OmsError> {
        let Some(b) = self.entry_brackets(entry).await? else {
            return Ok(());
        };
        let mut n: u16 = 1;
        while self
            .store
            .order_by_tag(&leg_tag(proposal_id, Leg::Stop(n)))
            .await?
            .is_some()
        {
            n = n.saturating_add(1);
            if n >= 999 {
                return Err(OmsError::TagExhausted);
            }
        }
        let side = entry.request.side.opposite();
        for (leg, order_type, reason, reference) in [
            (
                Leg::Stop(n),
                OrderType::StopMarket { trigger: b.stop },
                "stop",
                b.stop,
            ),
            (
                Leg::Target(n),
                OrderType::Limit(b.target),
                "target",
                b.target,
            ),
        ] {
            let req = OrderRequest {
                key: entry.request.key.clone(),
                side,
                quantity,
                order_type,
                product: entry.request.product,
                tag: leg_tag(proposal_id, leg),
                purpose: OrderPurpose::Exit {
                    reason: reason.to_string(),
                },
                reference_price: reference,
            };
            // Checked against the position as stored now (the caller holds the book lock).
            let pos = self.store.position(&req.key, req.product).await?;
            let approved = self.approve_exit(req, pos.as_ref()).await?;
            match self.place_locked(approved, None).await {
                Ok(Placement::Rejected { reason, order }) => {
                    out.errors.push(ProtectionError::Rejected {
                        leg: reason_word(&order).to_string(),
                        tag: order.request.tag,
                        reason,
                    })
                }
                Ok(p) => out.placed.push(p.order().clone()),
                Err(source) => out.errors.push(ProtectionError::Place {
                    leg: reason,
                    source,
                }),
            }
        }
        Ok(())
    }

    /// A protective leg filled `filled_now` more: its sibling covers that much less of the
    /// position. Cancelled when nothing is left for it to cover; else made smaller at the
    /// broker (a modify of the remainder, approved by the risk engine's exit check against the
    /// position as stored now), so a partly filled target never leaves the rest without its
    /// stop, and the stop never sells more than is left.
    async fn shrink_sibling(&self, sibling: &str, filled_now: i64, out: &mut FollowUps) {
        let order = match self.store.order_by_tag(sibling).await {
            Ok(Some(o)) if !o.state.is_terminal() => o,
            Ok(_) => return,
            Err(e) => {
                out.errors.push(ProtectionError::CancelSibling {
                    tag: sibling.to_string(),
                    source: e.into(),
                });
                return;
            }
        };
        let remaining = order.request.quantity - order.filled_quantity - filled_now;
        if remaining <= 0 {
            if let Err(e) = self.cancel_by_tag(sibling, out).await {
                out.errors.push(ProtectionError::CancelSibling {
                    tag: sibling.to_string(),
                    source: e,
                });
            }
            return;
        }
        let OrderState::Open { broker_order_id } = &order.state else {
            out.errors.push(ProtectionError::ResizeUnacknowledged {
                tag: sibling.to_string(),
                quantity: remaining,
            });
            return;
        };
        let resize = |source| ProtectionError::Resize {
            tag: sibling.to_string(),
            quantity: remaining,
            source,
        };
        let mut req = order.request.clone();
        req.quantity = remaining;
        let approved = match self.store.position(&req.key, req.product).await {
            Ok(pos) => match self.approve_exit(req, pos.as_ref()).await {
                Ok(a) => a,
                Err(e) => return out.errors.push(resize(e)),
            },
            Err(e) => return out.errors.push(resize(e.into())),
        };
        if let Err(source) = self
            .broker
            .modify(broker_order_id, order.filled_quantity, approved)
            .await
        {
            out.errors.push(ProtectionError::ResizeAtBroker {
                tag: sibling.to_string(),
                quantity: remaining,
                source,
            });
            return;
        }
        let total = order.filled_quantity + remaining;
        match self
            .store
            .set_order_quantity(&order, total, self.clock.now())
            .await
        {
            Ok(true) => {
                let mut o = order;
                o.request.quantity = total;
                out.resized.push(o);
            }
            // Changed under us (the broker's update with the new quantity merged first).
            Ok(false) => {}
            Err(e) => out.errors.push(resize(e.into())),
        }
    }

    /// Cancels the order with `tag` if it is still working, then settles it with the broker's
    /// word (it may have filled before the cancel arrived).
    async fn cancel_by_tag(&self, tag: &str, out: &mut FollowUps) -> Result<(), OmsError> {
        let Some(order) = self.store.order_by_tag(tag).await? else {
            return Ok(());
        };
        if order.state.is_terminal() {
            return Ok(());
        }
        let merged = self.cancel_live(order).await?;
        if let Merged::Cancelled { order } = merged {
            out.cancelled.push(order);
        }
        Ok(())
    }

    /// Cancels one not-final order at the broker and merges what the broker says afterwards.
    /// An order still Submitting / Unknown is first looked up by its tag.
    pub(super) async fn cancel_live(&self, order: Order) -> Result<Merged, OmsError> {
        let order = match order.state {
            OrderState::Submitting | OrderState::Unknown => {
                let found = self
                    .broker
                    .lookup_tag(&order.request.tag, self.clock.now())
                    .await
                    .map_err(|source| OmsError::Unknown {
                        tag: order.request.tag.clone(),
                        source,
                    })?;
                match found {
                    Some(u) => match self.merge_into(order, &u, None).await? {
                        Merged::Opened { order } | Merged::Unchanged { order }
                            if !order.state.is_terminal() =>
                        {
                            order
                        }
                        Merged::Filled { order, .. } if !order.state.is_terminal() => order,
                        other => return Ok(other),
                    },
                    None => {
                        let order = self
                            .transition(
                                order,
                                OrderState::Rejected {
                                    reason: "never reached the broker; not sent late".into(),
                                },
                            )
                            .await?;
                        return Ok(Merged::Rejected {
                            reason: "never reached the broker".into(),
                            order,
                        });
                    }
                }
            }
            _ => order,
        };
        let OrderState::Open { broker_order_id } = &order.state else {
            return Ok(Merged::Unchanged { order });
        };
        let id = broker_order_id.clone();
        if let Err(e) = self.broker.cancel(&id).await {
            // Kite refuses to cancel an order that already completed: its status says so.
            tracing::warn!(order = %id, error = %e, "cancel refused or lost; reading the order's status");
        }
        match self.broker.order_status(&id).await {
            Ok(Some(u)) => self.merge_into(order, &u, None).await,
            Ok(None) => Ok(Merged::Unchanged { order }),
            Err(source) => Err(OmsError::Unknown {
                tag: order.request.tag.clone(),
                source,
            }),
        }
    }

    /// Resolves an order found at the broker by its tag into a [`Placement`].
    pub(super) async fn settle_found(
        &self,
        order: Order,
        update: &BrokerOrderUpdate,
        brackets: Option<Brackets>,
    ) -> Result<Placement, OmsError> {
        Ok(match self.merge_into(order, update, brackets).await? {
            Merged::Filled {
                order,
                fill,
                realized,
                position,
                complete: true,
            } => Placement::Filled {
                order,
                fill,
                realized,
                position,
            },
            Merged::Filled { order, .. }
            | Merged::Opened { order }
            | Merged::Unchanged { order } => match &order.state {
                OrderState::Rejected { reason } => Placement::Rejected {
                    reason: reason.clone(),
                    order,
                },
                OrderState::Filled { .. } => Placement::AlreadyPlaced { order },
                OrderState::Unknown => Placement::Unknown { order },
                _ => Placement::Working { order },
            },
            Merged::Rejected { order, reason } => Placement::Rejected { order, reason },
            Merged::Cancelled { order } => Placement::Rejected {
                reason: "cancelled at the broker".into(),
                order,
            },
            Merged::NotOurs => {
                return Err(OmsError::Store(StoreError::Corrupt(
                    "an order vanished while it was being settled".into(),
                )));
            }
        })
    }

    /// Polls the broker for every order still open in the store (the fallback when pushes are
    /// lost): history for working orders, a tag lookup for Submitting / Unknown ones (one the
    /// broker provably never got is marked Rejected, never sent late).
    pub async fn poll_open_orders(
        &self,
        _book: &super::BookGuard<'_>,
    ) -> Result<Vec<(Merged, FollowUps)>, OmsError> {
        let mut out = Vec::new();
        if self.broker.mode() != Mode::Live {
            return Ok(out);
        }
        for order in self.store.open_orders().await? {
            let found = match &order.state {
                OrderState::Open { broker_order_id } => {
                    self.broker.order_status(broker_order_id).await
                }
                _ => {
                    self.broker
                        .lookup_tag(&order.request.tag, self.clock.now())
                        .await
                }
            };
            let merged = match found {
                Ok(Some(u)) => self.merge_into(order, &u, None).await?,
                Ok(None) => match order.state {
                    OrderState::Submitting | OrderState::Unknown => {
                        let reason = "the broker has no order with this tag: it never arrived; \
                                      not sent again"
                            .to_string();
                        match self
                            .transition(
                                order,
                                OrderState::Rejected {
                                    reason: reason.clone(),
                                },
                            )
                            .await
                        {
                            Ok(order) => Merged::Rejected { order, reason },
                            Err(OmsError::Conflict { .. }) => continue,
                            Err(e) => return Err(e),
                        }
                    }
                    _ => continue,
                },
                Err(e) => {
                    tracing::warn!(tag = %order.request.tag, error = %e, "polling an order failed; the next poll tries again");
                    continue;
                }
            };
            let follow = self.follow_ups(&merged).await;
            out.push((merged, follow));
        }
        Ok(out)
    }

    /// Compares the store with the broker and corrects the store to the broker's truth, with
    /// an audit row per difference; never places an order to "fix" one. With `apply` false it
    /// only reports (the /preflight check). Paper has no book of its own: only orders left in
    /// flight are resolved.
    pub async fn reconcile_with_broker(
        &self,
        book: &super::BookGuard<'_>,
        apply: bool,
    ) -> Result<ReconcileReport, OmsError> {
        let mut report = ReconcileReport::default();
        if apply {
            report.resolved = self.reconcile(book).await?;
        }
        if self.broker.mode() != Mode::Live {
            return Ok(report);
        }
        let now = self.clock.now();
        let broker_orders = self
            .broker
            .orders()
            .await
            .map_err(|source| OmsError::Unknown {
                tag: "(order list)".into(),
                source,
            })?;
        // 1. Orders we think are open.
        for order in self.store.open_orders().await? {
            let theirs = broker_orders.iter().rev().find(|u| {
                u.tag.as_deref() == Some(order.request.tag.as_str())
                    || matches!(&order.state, OrderState::Open { broker_order_id } if *broker_order_id == u.broker_order_id)
            });
            let ours = format!(
                "{} {} {}/{} filled",
                order.request.tag,
                order.state.name(),
                order.filled_quantity,
                order.request.quantity
            );
            match theirs {
                Some(u) if u.status.is_final() || u.filled_quantity != order.filled_quantity => {
                    report
                        .mismatches
                        .push(crate::texts::reconcile_order_differs(
                            &order,
                            &u.status_text,
                            u.filled_quantity,
                        ));
                    if apply {
                        let key = order.request.key.to_string();
                        let (id, tag) = (order.id, order.request.tag.clone());
                        let merged = self.merge_into(order, u, None).await?;
                        self.store
                            .record_reconciliation(
                                now,
                                &NewReconciliation {
                                    kind: "order_changed_at_broker".into(),
                                    instrument: Some(key),
                                    order_id: Some(id),
                                    tag: Some(tag),
                                    ours,
                                    broker: format!(
                                        "{} {} filled at {}",
                                        u.status_text, u.filled_quantity, u.average_price
                                    ),
                                    action: "order updated to the broker's state".into(),
                                },
                            )
                            .await?;
                        let follow = self.follow_ups(&merged).await;
                        report
                            .errors
                            .extend(follow.errors.into_iter().map(ReconcileError::from));
                        report.merged.push(merged);
                    }
                }
                Some(_) => {}
                None if order.state == OrderState::Submitting
                    || order.state == OrderState::Unknown =>
                {
                    // Resolved above when applying; in a dry run it is simply in flight.
                    if !apply {
                        report
                            .mismatches
                            .push(crate::texts::reconcile_order_unknown(&order));
                    }
                }
                None => {
                    report
                        .mismatches
                        .push(crate::texts::reconcile_order_missing(&order));
                    if apply {
                        let key = order.request.key.to_string();
                        let (id, tag) = (order.id, order.request.tag.clone());
                        let broker_order_id = match &order.state {
                            OrderState::Open { broker_order_id } => Some(broker_order_id.clone()),
                            _ => None,
                        };
                        match self
                            .transition(order, OrderState::Cancelled { broker_order_id })
                            .await
                        {
                            Ok(order) => report.merged.push(Merged::Cancelled { order }),
                            Err(source) => report.errors.push(ReconcileError::MarkCancelled {
                                tag: tag.clone(),
                                source,
                            }),
                        }
                        self.store
                            .record_reconciliation(
                                now,
                                &NewReconciliation {
                                    kind: "order_missing_at_broker".into(),
                                    instrument: Some(key),
                                    order_id: Some(id),
                                    tag: Some(tag),
                                    ours,
                                    broker: "no such order today".into(),
                                    action: "order marked cancelled".into(),
                                },
                            )
                            .await?;
                    }
                }
            }
        }
        // 2. Positions.
        let Some(theirs) = self
            .broker
            .positions()
            .await
            .map_err(|source| OmsError::Unknown {
                tag: "(positions)".into(),
                source,
            })?
        else {
            return Ok(report);
        };
        let ours = self.store.open_positions().await?;
        let mut keys: Vec<(InstrumentKey, Product)> = ours
            .iter()
            .map(|p| (p.key.clone(), p.product))
            .chain(theirs.iter().map(|p| (p.key.clone(), p.product)))
            .collect();
        keys.sort_by(|a, b| (a.0.to_string(), a.1.as_str()).cmp(&(b.0.to_string(), b.1.as_str())));
        keys.dedup();
        for (key, product) in keys {
            let mine = ours.iter().find(|p| p.key == key && p.product == product);
            let broker: Vec<&BrokerPosition> = theirs
                .iter()
                .filter(|p| p.key == key && p.product == product)
                .collect();
            let their_qty: i64 = broker.iter().map(|p| p.quantity).sum();
            let my_qty = mine.map_or(0, |p| p.quantity);
            if their_qty == my_qty {
                continue;
            }
            let kind = match (mine, their_qty) {
                (None, _) => "unknown_position",
                (Some(_), 0) => "position_gone_at_broker",
                _ => "quantity_differs",
            };
            report
                .mismatches
                .push(crate::texts::reconcile_position_differs(
                    &key, product, my_qty, their_qty,
                ));
            if !apply {
                continue;
            }
            let price = broker
                .first()
                .map(|p| p.average_price)
                .filter(|p| p.0 > 0)
                .or(mine.map(|p| p.avg_price))
                .unwrap_or(Paise::ZERO);
            match self
                .adjust_position(&key, product, their_qty - my_qty, price, now)
                .await
            {
                Ok(order_id) => {
                    self.store
                        .record_reconciliation(
                            now,
                            &NewReconciliation {
                                kind: kind.into(),
                                instrument: Some(key.to_string()),
                                order_id: Some(order_id),
                                tag: None,
                                ours: format!("{my_qty}"),
                                broker: format!("{their_qty} at {price}"),
                                action: format!(
                                    "position set to {their_qty} by an adjustment fill of {} at {price} (no order placed)",
                                    their_qty - my_qty
                                ),
                            },
                        )
                        .await?;
                }
                Err(source) => report.errors.push(ReconcileError::Position {
                    key,
                    product: product.as_str(),
                    source,
                }),
            }
        }
        Ok(report)
    }

    /// Moves a position by `delta` with a recorded adjustment (an order row that was never
    /// sent, filled at `price`), so the positions still add up to their fills.
    async fn adjust_position(
        &self,
        key: &InstrumentKey,
        product: Product,
        delta: i64,
        price: Paise,
        at: DateTime<Utc>,
    ) -> Result<i64, OmsError> {
        let side = if delta > 0 { Side::Buy } else { Side::Sell };
        let mut req = OrderRequest {
            key: key.clone(),
            side,
            quantity: delta.abs(),
            order_type: OrderType::Market,
            product,
            tag: self.exit_tag('r'),
            purpose: OrderPurpose::Exit {
                reason: "reconciliation".into(),
            },
            reference_price: price,
        };
        let order = loop {
            match self.store.record_order(&req, at).await? {
                RecordedOrder::New(o) => break o,
                RecordedOrder::Existing(_) => req.tag = self.exit_tag('r'),
            }
        };
        let update = BrokerOrderUpdate {
            broker_order_id: "reconciliation".into(),
            tag: Some(order.request.tag.clone()),
            status: BrokerStatus::Complete,
            status_text: "COMPLETE".into(),
            status_message: None,
            filled_quantity: delta.abs(),
            quantity: None,
            average_price: price,
            at,
        };
        let id = order.id;
        self.merge_into(order, &update, None).await?;
        Ok(id)
    }

    /// Waits (polling the broker) until the orders `ids` are final or `wait` has passed;
    /// returns the merges. Used by /kill and the square-off for their MARKET exits.
    pub(super) async fn await_final(
        &self,
        ids: &[i64],
        wait: std::time::Duration,
    ) -> Result<Vec<Merged>, OmsError> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut pending: Vec<i64> = ids.to_vec();
        let mut out = Vec::new();
        let mut pause = std::time::Duration::from_millis(20);
        loop {
            let mut still = Vec::new();
            for id in pending {
                let Some(order) = self.store.order(id).await? else {
                    continue;
                };
                if order.state.is_terminal() {
                    continue;
                }
                let found = match &order.state {
                    OrderState::Open { broker_order_id } => {
                        self.broker.order_status(broker_order_id).await
                    }
                    _ => {
                        self.broker
                            .lookup_tag(&order.request.tag, self.clock.now())
                            .await
                    }
                };
                match found {
                    Ok(Some(u)) => {
                        let m = self.merge_into(order, &u, None).await?;
                        let done = m.order().is_none_or(|o| o.state.is_terminal());
                        if !matches!(m, Merged::Unchanged { .. }) {
                            out.push(m);
                        }
                        if !done {
                            still.push(id);
                        }
                    }
                    _ => still.push(id),
                }
            }
            if still.is_empty() || tokio::time::Instant::now() >= deadline {
                return Ok(out);
            }
            pending = still;
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(std::time::Duration::from_millis(250));
        }
    }
}

fn reason_word(order: &Order) -> &str {
    match &order.request.purpose {
        OrderPurpose::Exit { reason } => reason,
        OrderPurpose::Entry { .. } => "entry",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follow_up_and_reconcile_errors_keep_the_operator_wording_and_their_source() {
        use std::error::Error as _;
        let conflict = || OmsError::Conflict { id: 3 };
        let illegal = || OmsError::IllegalTransition {
            id: 3,
            from: "filled",
            to: "open",
        };
        let key = InstrumentKey::new("NSE", "INFY");
        let protect = ProtectionError::Protect {
            quantity: 5,
            key: key.clone(),
            tag: "MFTP7E".into(),
            source: conflict(),
        };
        assert_eq!(
            protect.to_string(),
            "protecting 5 NSE:INFY of MFTP7E: order 3 changed state while it was being updated; re-read it"
        );
        assert!(protect.is_recoverable());
        assert!(protect.source().is_some());
        let cancel = ProtectionError::CancelSibling {
            tag: "MFTP7T1".into(),
            source: illegal(),
        };
        assert_eq!(
            cancel.to_string(),
            "cancelling MFTP7T1: order 3: illegal state change filled -> open"
        );
        assert!(!cancel.is_recoverable());
        let rejected = ProtectionError::Rejected {
            leg: "stop".into(),
            tag: "MFTP7S1".into(),
            reason: "trigger price too far".into(),
        };
        assert_eq!(
            rejected.to_string(),
            "the stop order MFTP7S1 was rejected: trigger price too far"
        );
        assert!(!rejected.is_recoverable());
        let place = ProtectionError::Place {
            leg: "target",
            source: conflict(),
        };
        assert_eq!(
            place.to_string(),
            "placing the target: order 3 changed state while it was being updated; re-read it"
        );
        assert!(place.is_recoverable());

        let mark = ReconcileError::MarkCancelled {
            tag: "MFTP7E".into(),
            source: illegal(),
        };
        assert_eq!(mark.to_string(), illegal().to_string());
        assert!(!mark.is_recoverable());
        let position = ReconcileError::Position {
            key,
            product: Product::Mis.as_str(),
            source: conflict(),
        };
        assert_eq!(
            position.to_string(),
            "correcting NSE:INFY MIS: order 3 changed state while it was being updated; re-read it"
        );
        assert!(position.is_recoverable());
        let follow = ReconcileError::from(rejected);
        assert_eq!(
            follow.to_string(),
            "the stop order MFTP7S1 was rejected: trigger price too far"
        );
        assert!(!follow.is_recoverable());
    }
}
