//! Live order news in the handler: broker updates (postback, ticker, poll) merged under the
//! book lock, then told to the operator: the proposal's card edited (filled, rejected by the
//! broker), every live order and fill also posted as an alert, position closes and the
//! daily-loss check; reconciliation differences alerted one by one.

use super::{Handler, HandlerError};
use crate::domain::{BrokerOrderUpdate, OrderPurpose, OrderState};
use crate::oms::{FollowUps, Merged, ReconcileReport};
use crate::ports::{Alert, Outcome, Reply};
use crate::texts;

impl Handler {
    /// One pushed update (postback or ticker order message).
    pub(super) async fn order_update(
        &self,
        update: &BrokerOrderUpdate,
    ) -> Result<Reply, HandlerError> {
        let (merged, follow) = {
            let book = self.oms.lock_book().await?;
            let r = self.oms.merge_update(&book, update).await;
            book.release().await;
            r?
        };
        let changed = u32::from(!matches!(
            merged,
            Merged::NotOurs | Merged::Unchanged { .. }
        ));
        self.after_merge(&merged, &follow).await?;
        Ok(Reply::Done { changed })
    }

    /// The 5-second poll of orders still open (live only; paper has nothing to poll).
    pub(super) async fn poll_orders(&self) -> Result<Reply, HandlerError> {
        let results = {
            let book = self.oms.lock_book().await?;
            let r = self.oms.poll_open_orders(&book).await;
            book.release().await;
            r?
        };
        let mut changed = 0;
        for (merged, follow) in &results {
            if !matches!(merged, Merged::NotOurs | Merged::Unchanged { .. }) {
                changed += 1;
            }
            self.after_merge(merged, follow).await?;
        }
        Ok(Reply::Done { changed })
    }

    /// The minute's reconciliation with the broker (live; paper resolves in-flight orders).
    pub(super) async fn reconcile_live(&self) -> Result<Reply, HandlerError> {
        let report = {
            let book = self.oms.lock_book().await?;
            let r = self.oms.reconcile_with_broker(&book, true).await;
            book.release().await;
            r?
        };
        let changed = report.mismatches.len() as u32 + report.resolved;
        self.after_reconcile(report).await?;
        Ok(Reply::Done { changed })
    }

    /// Alerts each difference, then tells the merges it made like any other update.
    pub(super) async fn after_reconcile(
        &self,
        report: ReconcileReport,
    ) -> Result<(), HandlerError> {
        for m in &report.mismatches {
            tracing::warn!("reconciliation: {m}");
            self.notify(Alert::Broker {
                key: None,
                text: texts::reconciliation_mismatch(m),
            })
            .await;
        }
        for e in &report.errors {
            tracing::error!(
                recoverable = e.is_recoverable(),
                "reconciliation failed: {e}"
            );
            self.notify(Alert::Broker {
                key: None,
                text: texts::reconciliation_failed(&e.to_string()),
            })
            .await;
        }
        for m in &report.merged {
            self.after_merge(m, &FollowUps::default()).await?;
        }
        Ok(())
    }

    /// What the operator hears of one merge.
    pub(super) async fn after_merge(
        &self,
        merged: &Merged,
        follow: &FollowUps,
    ) -> Result<(), HandlerError> {
        let live = self.oms.mode() == "live";
        match merged {
            Merged::NotOurs | Merged::Unchanged { .. } => {}
            Merged::Opened { order } => {
                if let OrderPurpose::Entry { proposal_id } = order.request.purpose
                    && let OrderState::Open { broker_order_id } = &order.state
                {
                    let price = match order.request.order_type {
                        crate::domain::OrderType::Limit(p) => p,
                        _ => order.request.reference_price,
                    };
                    self.edit_card(
                        proposal_id,
                        &Outcome::Working {
                            side: order.request.side,
                            quantity: order.request.quantity,
                            price,
                            order_id: broker_order_id.clone(),
                        },
                    )
                    .await;
                }
                if live {
                    self.notify(Alert::Broker {
                        key: Some(order.request.key.clone()),
                        text: texts::order_working_at_kite(order),
                    })
                    .await;
                }
            }
            Merged::Filled {
                order,
                fill,
                realized,
                position,
                complete,
            } => {
                if live {
                    self.notify(Alert::Broker {
                        key: Some(order.request.key.clone()),
                        text: texts::live_fill(order, fill, position.quantity),
                    })
                    .await;
                }
                match &order.request.purpose {
                    OrderPurpose::Entry { proposal_id } => {
                        let (order_id, price) = match &order.state {
                            OrderState::Filled {
                                broker_order_id,
                                avg_price,
                                ..
                            } => (broker_order_id.clone(), *avg_price),
                            OrderState::Open { broker_order_id }
                            | OrderState::Cancelled {
                                broker_order_id: Some(broker_order_id),
                            } => (broker_order_id.clone(), fill.price),
                            _ => (order.request.tag.clone(), fill.price),
                        };
                        let _ = complete;
                        self.edit_card(
                            *proposal_id,
                            &Outcome::Executed {
                                side: order.request.side,
                                quantity: order.filled_quantity,
                                fill_price: price,
                                mode: self.oms.mode().to_string(),
                                order_id,
                            },
                        )
                        .await;
                    }
                    OrderPurpose::Exit { reason } => {
                        self.notify(Alert::PositionClosed {
                            key: order.request.key.clone(),
                            reason: reason.clone(),
                            quantity: fill.quantity,
                            price: fill.price,
                            pnl: *realized,
                        })
                        .await;
                    }
                }
                self.check_daily_loss().await?;
            }
            Merged::Rejected { order, reason } => {
                if let OrderPurpose::Entry { proposal_id } = order.request.purpose {
                    self.edit_card(
                        proposal_id,
                        &Outcome::BrokerRejected {
                            message: reason.clone(),
                        },
                    )
                    .await;
                }
                self.notify(Alert::OrderFailed {
                    key: order.request.key.clone(),
                    error: texts::order_rejected_by_broker(reason, &order.request.tag),
                })
                .await;
            }
            Merged::Cancelled { order } => {
                if live {
                    self.notify(Alert::Broker {
                        key: Some(order.request.key.clone()),
                        text: texts::order_cancelled(order),
                    })
                    .await;
                }
            }
        }
        for o in &follow.placed {
            self.notify(Alert::Broker {
                key: Some(o.request.key.clone()),
                text: texts::protective_placed(o),
            })
            .await;
        }
        for o in &follow.cancelled {
            self.notify(Alert::Broker {
                key: Some(o.request.key.clone()),
                text: texts::pair_filled_cancelled(&o.request.tag),
            })
            .await;
        }
        for o in &follow.resized {
            self.notify(Alert::Broker {
                key: Some(o.request.key.clone()),
                text: texts::protective_resized(o),
            })
            .await;
        }
        for e in &follow.errors {
            tracing::error!(recoverable = e.is_recoverable(), "protection problem: {e}");
            self.notify(Alert::Broker {
                key: None,
                text: texts::protection_problem(&e.to_string()),
            })
            .await;
        }
        Ok(())
    }
}
