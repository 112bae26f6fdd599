//! Live-trading tables: orders found by the broker's order id, an order's fills so far, the
//! reconciliation audit (each correction of the store to the broker's truth, with both sides)
//! and the first live trading day (the capital ramp counts from it).

use chrono::{DateTime, NaiveDate, Utc};

use super::{QueryContext, Store, StoreError, on_pool};
use crate::domain::Order;

/// One row of the reconciliation audit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reconciliation {
    pub id: i64,
    pub ts: DateTime<Utc>,
    /// order_closed_at_broker, order_filled_at_broker, unknown_position, quantity_differs, ...
    pub kind: String,
    pub instrument: Option<String>,
    pub order_id: Option<i64>,
    pub tag: Option<String>,
    /// What the store held before the correction.
    pub ours: String,
    /// What the broker reported.
    pub broker: String,
    /// What was changed in the store (never an order placed).
    pub action: String,
}

/// Fields of a new audit row.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NewReconciliation {
    pub kind: String,
    pub instrument: Option<String>,
    pub order_id: Option<i64>,
    pub tag: Option<String>,
    pub ours: String,
    pub broker: String,
    pub action: String,
}

impl Store {
    /// Compare-and-set of a working order's whole quantity (a modify, ours or made on the
    /// broker's side): changes nothing and returns false unless the order is still working at
    /// the quantity `order` holds. Logged to the trade log.
    pub async fn set_order_quantity(
        &self,
        order: &Order,
        quantity: i64,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut req = order.request.clone();
        req.quantity = quantity;
        let request = serde_json::to_string(&req)
            .map_err(|e| StoreError::Corrupt(format!("order request not serializable: {e}")))?;
        let detail = format!(
            "quantity {} -> {quantity} ({} filled)",
            order.request.quantity, order.filled_quantity
        );
        let changed = on_pool!(self, pool => {
            let mut tx = pool.begin().await.ctx("starting an order quantity change")?;
            let changed = sqlx::query(
                "UPDATE orders SET quantity = $1, request = $2, updated_at = $3 \
                 WHERE id = $4 AND quantity = $5 AND filled_quantity <= $1 \
                 AND state IN ('submitting', 'unknown', 'open')",
            )
            .bind(quantity)
            .bind(request.as_str())
            .bind(at)
            .bind(order.id)
            .bind(order.request.quantity)
            .execute(&mut *tx)
            .await
            .ctx("changing an order's quantity")?
            .rows_affected();
            if changed == 1 {
                sqlx::query(
                    "INSERT INTO trade_log (ts, kind, order_id, instrument, detail) \
                     SELECT $1, 'order_modified', id, instrument, $2 FROM orders WHERE id = $3",
                )
                .bind(at)
                .bind(detail.as_str())
                .bind(order.id)
                .execute(&mut *tx)
                .await
                .ctx("logging an order quantity change")?;
            }
            tx.commit().await.ctx("committing an order quantity change")?;
            changed
        });
        Ok(changed == 1)
    }

    /// The order the broker knows as `broker_order_id`.
    pub async fn order_by_broker_id(
        &self,
        broker_order_id: &str,
    ) -> Result<Option<Order>, StoreError> {
        let id = on_pool!(self, pool => {
            sqlx::query_scalar::<_, i64>(
                "SELECT id FROM orders WHERE broker_order_id = $1 ORDER BY id LIMIT 1",
            )
            .bind(broker_order_id)
            .fetch_optional(pool)
            .await
            .ctx("reading an order by its broker id")?
        });
        match id {
            Some(id) => self.order(id).await,
            None => Ok(None),
        }
    }

    /// (quantity, value in paise) of the fills recorded for one order.
    pub async fn order_fill_totals(&self, order_id: i64) -> Result<(i64, i64), StoreError> {
        on_pool!(self, pool => {
            sqlx::query_as::<_, (i64, i64)>(
                "SELECT CAST(COALESCE(SUM(quantity), 0) AS BIGINT), \
                 CAST(COALESCE(SUM(quantity * price), 0) AS BIGINT) FROM fills WHERE order_id = $1",
            )
            .bind(order_id)
            .fetch_one(pool)
            .await
            .ctx("summing an order's fills")
        })
    }

    /// Appends a reconciliation audit row (and a trade-log line).
    pub async fn record_reconciliation(
        &self,
        at: DateTime<Utc>,
        r: &NewReconciliation,
    ) -> Result<(), StoreError> {
        let detail = format!(
            "{}: ours {}, broker {}; {}",
            r.kind, r.ours, r.broker, r.action
        );
        on_pool!(self, pool => {
            let mut tx = pool.begin().await.ctx("starting a reconciliation record")?;
            sqlx::query(
                "INSERT INTO reconciliations (ts, kind, instrument, order_id, tag, ours, broker, \
                 action) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(at)
            .bind(r.kind.as_str())
            .bind(r.instrument.as_deref())
            .bind(r.order_id)
            .bind(r.tag.as_deref())
            .bind(r.ours.as_str())
            .bind(r.broker.as_str())
            .bind(r.action.as_str())
            .execute(&mut *tx)
            .await
            .ctx("recording a reconciliation")?;
            sqlx::query(
                "INSERT INTO trade_log (ts, kind, order_id, instrument, detail) \
                 VALUES ($1, 'reconciled', $2, $3, $4)",
            )
            .bind(at)
            .bind(r.order_id)
            .bind(r.instrument.as_deref())
            .bind(detail.as_str())
            .execute(&mut *tx)
            .await
            .ctx("logging a reconciliation")?;
            tx.commit().await.ctx("committing a reconciliation")?;
        });
        Ok(())
    }

    /// The latest reconciliation audit rows, newest first.
    pub async fn reconciliations(&self, limit: i64) -> Result<Vec<Reconciliation>, StoreError> {
        type Row = (
            i64,
            DateTime<Utc>,
            String,
            Option<String>,
            Option<i64>,
            Option<String>,
            String,
            String,
            String,
        );
        let rows = on_pool!(self, pool => {
            sqlx::query_as::<_, Row>(
                "SELECT id, ts, kind, instrument, order_id, tag, ours, broker, action \
                 FROM reconciliations ORDER BY id DESC LIMIT $1",
            )
            .bind(limit)
            .fetch_all(pool)
            .await
            .ctx("reading the reconciliation audit")?
        });
        Ok(rows
            .into_iter()
            .map(
                |(id, ts, kind, instrument, order_id, tag, ours, broker, action)| Reconciliation {
                    id,
                    ts,
                    kind,
                    instrument,
                    order_id,
                    tag,
                    ours,
                    broker,
                    action,
                },
            )
            .collect())
    }

    /// The first live trading day, storing `today` when none is stored yet.
    pub async fn first_live_day(&self, today: NaiveDate) -> Result<NaiveDate, StoreError> {
        on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO live_state (id, first_live_day) VALUES (1, $1) \
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(today)
            .execute(pool)
            .await
            .ctx("storing the first live day")?;
            sqlx::query_scalar::<_, NaiveDate>("SELECT first_live_day FROM live_state WHERE id = 1")
                .fetch_one(pool)
                .await
                .ctx("reading the first live day")
        })
    }
}
