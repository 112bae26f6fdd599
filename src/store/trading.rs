//! Trading tables: orders (unique tag = idempotent placement), fills, net positions, the trade
//! log and the one-row system state (halt and pause survive restarts). One query text per
//! operation for both backends via [`on_pool!`].

use chrono::{DateTime, Utc};

use super::{QueryContext, Store, StoreError, on_pool};
use crate::domain::{
    Fill, InstrumentKey, Interval, Order, OrderPurpose, OrderRequest, OrderState, Paise, Position,
    Product, RiskDecision,
};

/// The persisted switches of the system.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SystemState {
    pub halted: bool,
    pub halted_reason: Option<String>,
    pub halted_at: Option<DateTime<Utc>>,
    pub paused: bool,
}

/// Result of recording an order before it is sent: a new row, or the row that already holds
/// this tag (the placement was attempted before).
#[derive(Debug, Clone, PartialEq)]
pub enum RecordedOrder {
    New(Order),
    Existing(Order),
}

/// An instrument whose positions do not add up to its fills (see
/// [`Store::book_discrepancies`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookDiscrepancy {
    pub instrument: String,
    /// Sum of `positions.quantity` over its products.
    pub positions: i64,
    /// Net of its fills (buys minus sells).
    pub fills: i64,
}

/// Begins a transaction that holds the fill lock: SQLite `BEGIN IMMEDIATE` (the write lock
/// from the start, so a read-then-write never fails to upgrade), PostgreSQL a transaction
/// advisory lock.
pub(crate) trait BeginLocked {
    type Db: sqlx::Database;
    fn begin_locked(
        &self,
    ) -> impl std::future::Future<Output = Result<sqlx::Transaction<'static, Self::Db>, sqlx::Error>>
    + Send;
}

impl BeginLocked for sqlx::SqlitePool {
    type Db = sqlx::Sqlite;
    async fn begin_locked(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error> {
        self.begin_with("BEGIN IMMEDIATE").await
    }
}

impl BeginLocked for sqlx::PgPool {
    type Db = sqlx::Postgres;
    async fn begin_locked(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
        let mut tx = self.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(super::lock::FILL_LOCK_KEY)
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    }
}

/// One row of the trade log.
#[derive(Debug, Clone, PartialEq)]
pub struct TradeLogEntry {
    pub id: i64,
    pub ts: DateTime<Utc>,
    pub kind: String,
    pub order_id: Option<i64>,
    pub instrument: Option<String>,
    pub detail: String,
}

const ORDER_COLUMNS: &str = "id, request, state, broker_order_id, avg_price, filled_at, reason, \
     created_at, updated_at, filled_quantity";

type OrderRow = (
    i64,
    String,
    String,
    Option<String>,
    Option<i64>,
    Option<DateTime<Utc>>,
    Option<String>,
    DateTime<Utc>,
    DateTime<Utc>,
    i64,
);

fn order_from_row(row: OrderRow) -> Result<Order, StoreError> {
    let (
        id,
        request,
        state,
        broker_order_id,
        avg_price,
        filled_at,
        reason,
        created_at,
        updated_at,
        filled_quantity,
    ) = row;
    let request: OrderRequest = serde_json::from_str(&request)
        .map_err(|e| StoreError::Corrupt(format!("order {id} request: {e}")))?;
    let corrupt = |what: &str| StoreError::Corrupt(format!("order {id} is {state} without {what}"));
    let parsed = match state.as_str() {
        "submitting" => OrderState::Submitting,
        "unknown" => OrderState::Unknown,
        "open" => OrderState::Open {
            broker_order_id: broker_order_id.ok_or_else(|| corrupt("a broker order id"))?,
        },
        "filled" => OrderState::Filled {
            broker_order_id: broker_order_id.ok_or_else(|| corrupt("a broker order id"))?,
            avg_price: Paise(avg_price.ok_or_else(|| corrupt("a price"))?),
            filled_at: filled_at.ok_or_else(|| corrupt("a fill time"))?,
        },
        "rejected" => OrderState::Rejected {
            reason: reason.unwrap_or_default(),
        },
        "cancelled" => OrderState::Cancelled { broker_order_id },
        other => {
            return Err(StoreError::Corrupt(format!(
                "order {id} has the unknown state {other:?}"
            )));
        }
    };
    Ok(Order {
        id,
        request,
        state: parsed,
        filled_quantity,
        created_at,
        updated_at,
    })
}

type StateColumns = (
    Option<String>,
    Option<i64>,
    Option<DateTime<Utc>>,
    Option<String>,
);

/// The columns an [`OrderState`] is stored in: (broker_order_id, avg_price, filled_at, reason).
fn state_columns(state: &OrderState) -> StateColumns {
    match state {
        OrderState::Submitting | OrderState::Unknown => (None, None, None, None),
        OrderState::Open { broker_order_id } => (Some(broker_order_id.clone()), None, None, None),
        OrderState::Filled {
            broker_order_id,
            avg_price,
            filled_at,
        } => (
            Some(broker_order_id.clone()),
            Some(avg_price.0),
            Some(*filled_at),
            None,
        ),
        OrderState::Rejected { reason } => (None, None, None, Some(reason.clone())),
        OrderState::Cancelled { broker_order_id } => (broker_order_id.clone(), None, None, None),
    }
}

const POSITION_COLUMNS: &str =
    "instrument, product, quantity, avg_price, realized_pnl, stop, target, opened_at, updated_at";

type PositionRow = (
    String,
    String,
    i64,
    i64,
    i64,
    Option<i64>,
    Option<i64>,
    DateTime<Utc>,
    DateTime<Utc>,
);

fn position_from_row(row: PositionRow) -> Result<Position, StoreError> {
    let (instrument, product, quantity, avg, realized, stop, target, opened_at, updated_at) = row;
    let key: InstrumentKey = instrument
        .parse()
        .map_err(|e| StoreError::Corrupt(format!("position instrument {instrument:?}: {e}")))?;
    let product = match product.as_str() {
        "MIS" => Product::Mis,
        "CNC" => Product::Cnc,
        other => {
            return Err(StoreError::Corrupt(format!(
                "position {key} has the unknown product {other:?}"
            )));
        }
    };
    Ok(Position {
        key,
        product,
        quantity,
        avg_price: Paise(avg),
        realized_pnl: Paise(realized),
        stop: stop.map(Paise),
        target: target.map(Paise),
        opened_at,
        updated_at,
    })
}

pub(super) fn purpose_columns(purpose: &OrderPurpose) -> (&'static str, Option<i64>) {
    match purpose {
        OrderPurpose::Entry { proposal_id } => ("entry", Some(*proposal_id)),
        OrderPurpose::Exit { .. } => ("exit", None),
    }
}

const UPDATE_ORDER_FILL: &str = "UPDATE orders SET state = $1, \
     broker_order_id = COALESCE($2, broker_order_id), avg_price = COALESCE($3, avg_price), \
     filled_at = COALESCE($4, filled_at), reason = $5, updated_at = $6, filled_quantity = $9 \
     WHERE id = $7 AND state = $8 AND filled_quantity = $10";

const UPDATE_ORDER_STATE: &str = "UPDATE orders SET state = $1, \
     broker_order_id = COALESCE($2, broker_order_id), avg_price = $3, filled_at = $4, reason = $5, \
     updated_at = $6 WHERE id = $7 AND state = $8";

impl Store {
    /// Records an order as Submitting before it is sent, keyed by its unique tag. When the tag
    /// is already there (a second placement, or a retry after a crash) returns that row instead:
    /// the unique index, not a prior read, decides.
    pub async fn record_order(
        &self,
        req: &OrderRequest,
        at: DateTime<Utc>,
    ) -> Result<RecordedOrder, StoreError> {
        self.record_order_decided(req, at, None).await
    }

    /// [`Store::record_order`] with the risk decision that approved it, written to the risk
    /// audit in the same transaction (naming the order row: the new one, or the one that
    /// already held the tag).
    pub async fn record_order_decided(
        &self,
        req: &OrderRequest,
        at: DateTime<Utc>,
        decision: Option<&RiskDecision>,
    ) -> Result<RecordedOrder, StoreError> {
        let audit = decision
            .map(super::risk_audit::AuditColumns::of)
            .transpose()?;
        let request = serde_json::to_string(req)
            .map_err(|e| StoreError::Corrupt(format!("order request not serializable: {e}")))?;
        let (purpose, proposal_id) = purpose_columns(&req.purpose);
        let instrument = req.key.to_string();
        let sql = "INSERT INTO orders (tag, instrument, side, quantity, product, purpose, \
                   proposal_id, request, state, created_at, updated_at) \
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'submitting', $9, $9) \
                   ON CONFLICT (tag) DO NOTHING RETURNING id";
        let inserted = on_pool!(self, pool => {
            let mut tx = pool.begin().await.ctx("starting to record an order")?;
            let id = sqlx::query_scalar::<_, i64>(sql)
                .bind(req.tag.as_str())
                .bind(instrument.as_str())
                .bind(req.side.as_str())
                .bind(req.quantity)
                .bind(req.product.as_str())
                .bind(purpose)
                .bind(proposal_id)
                .bind(request.as_str())
                .bind(at)
                .fetch_optional(&mut *tx)
                .await
                .ctx("recording an order")?;
            if let Some(id) = id {
                sqlx::query(
                    "INSERT INTO trade_log (ts, kind, order_id, instrument, detail) \
                     VALUES ($1, 'order_recorded', $2, $3, $4)",
                )
                .bind(at)
                .bind(id)
                .bind(instrument.as_str())
                .bind(request.as_str())
                .execute(&mut *tx)
                .await
                .ctx("logging a recorded order")?;
            }
            if let Some(a) = &audit {
                let order_id = match id {
                    Some(id) => id,
                    None => sqlx::query_scalar::<_, i64>("SELECT id FROM orders WHERE tag = $1")
                        .bind(req.tag.as_str())
                        .fetch_one(&mut *tx)
                        .await
                        .ctx("reading the order that holds a tag")?,
                };
                sqlx::query(super::risk_audit::INSERT_DECISION)
                    .bind(a.ts)
                    .bind(a.tag.as_str())
                    .bind(a.instrument.as_str())
                    .bind(a.side)
                    .bind(a.quantity)
                    .bind(a.purpose)
                    .bind(a.proposal_id)
                    .bind(Some(order_id))
                    .bind(a.code.as_str())
                    .bind(a.stage.as_str())
                    .bind(a.reason.as_deref())
                    .bind(a.request.as_str())
                    .bind(a.inputs.as_str())
                    .execute(&mut *tx)
                    .await
                    .ctx("auditing the risk decision of an order")?;
            }
            tx.commit().await.ctx("committing a recorded order")?;
            id
        });
        match inserted {
            Some(id) => self
                .order(id)
                .await?
                .map(RecordedOrder::New)
                .ok_or_else(|| StoreError::Corrupt(format!("order {id} vanished after insert"))),
            None => self
                .order_by_tag(&req.tag)
                .await?
                .map(RecordedOrder::Existing)
                .ok_or_else(|| {
                    StoreError::Corrupt(format!(
                        "order tag {} conflicted but no row holds it",
                        req.tag
                    ))
                }),
        }
    }

    pub async fn order(&self, id: i64) -> Result<Option<Order>, StoreError> {
        let sql = format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1");
        let row = on_pool!(self, pool => {
            sqlx::query_as::<_, OrderRow>(sqlx::AssertSqlSafe(sql))
                .bind(id)
                .fetch_optional(pool)
                .await
                .ctx("reading an order")?
        });
        row.map(order_from_row).transpose()
    }

    pub async fn order_by_tag(&self, tag: &str) -> Result<Option<Order>, StoreError> {
        let sql = format!("SELECT {ORDER_COLUMNS} FROM orders WHERE tag = $1");
        let row = on_pool!(self, pool => {
            sqlx::query_as::<_, OrderRow>(sqlx::AssertSqlSafe(sql))
                .bind(tag)
                .fetch_optional(pool)
                .await
                .ctx("reading an order by tag")?
        });
        row.map(order_from_row).transpose()
    }

    /// Orders not yet final (submitting, unknown or open), oldest first.
    pub async fn open_orders(&self) -> Result<Vec<Order>, StoreError> {
        let sql = format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE state IN ('submitting', 'unknown', 'open') \
             ORDER BY id"
        );
        let rows = on_pool!(self, pool => {
            sqlx::query_as::<_, OrderRow>(sqlx::AssertSqlSafe(sql))
                .fetch_all(pool)
                .await
                .ctx("reading open orders")?
        });
        rows.into_iter().map(order_from_row).collect()
    }

    /// Orders created at or after `since`, oldest first.
    pub async fn orders_since(&self, since: DateTime<Utc>) -> Result<Vec<Order>, StoreError> {
        let sql = format!("SELECT {ORDER_COLUMNS} FROM orders WHERE created_at >= $1 ORDER BY id");
        let rows = on_pool!(self, pool => {
            sqlx::query_as::<_, OrderRow>(sqlx::AssertSqlSafe(sql))
                .bind(since)
                .fetch_all(pool)
                .await
                .ctx("reading orders")?
        });
        rows.into_iter().map(order_from_row).collect()
    }

    /// Orders of a proposal (one at most, by its tag; a list so a duplicate would be visible).
    pub async fn orders_for_proposal(&self, proposal_id: i64) -> Result<Vec<Order>, StoreError> {
        let sql = format!("SELECT {ORDER_COLUMNS} FROM orders WHERE proposal_id = $1 ORDER BY id");
        let rows = on_pool!(self, pool => {
            sqlx::query_as::<_, OrderRow>(sqlx::AssertSqlSafe(sql))
                .bind(proposal_id)
                .fetch_all(pool)
                .await
                .ctx("reading a proposal's orders")?
        });
        rows.into_iter().map(order_from_row).collect()
    }

    /// How many orders were created at or after `since` (every purpose and state).
    pub async fn count_orders_since(&self, since: DateTime<Utc>) -> Result<u32, StoreError> {
        let n = on_pool!(self, pool => {
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM orders WHERE created_at >= $1")
                .bind(since)
                .fetch_one(pool)
                .await
                .ctx("counting today's orders")?
        });
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    /// Compare-and-set of an order's state (`from` must still be the stored state); logs the
    /// change. Returns false when the order was not in `from`. Fills go through
    /// [`Store::record_fill`] instead, which also moves the position.
    pub async fn update_order_state(
        &self,
        id: i64,
        from: &OrderState,
        to: &OrderState,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let (broker_order_id, avg_price, filled_at, reason) = state_columns(to);
        let detail = serde_json::to_string(to)
            .map_err(|e| StoreError::Corrupt(format!("order state not serializable: {e}")))?;
        let kind = format!("order_{}", to.name());
        let changed = on_pool!(self, pool => {
            let mut tx = pool.begin().await.ctx("starting an order update")?;
            let changed = sqlx::query(UPDATE_ORDER_STATE)
                .bind(to.name())
                .bind(broker_order_id)
                .bind(avg_price)
                .bind(filled_at)
                .bind(reason)
                .bind(at)
                .bind(id)
                .bind(from.name())
                .execute(&mut *tx)
                .await
                .ctx("updating an order's state")?
                .rows_affected();
            if changed == 1 {
                sqlx::query(
                    "INSERT INTO trade_log (ts, kind, order_id, instrument, detail) \
                     SELECT $1, $2, id, instrument, $3 FROM orders WHERE id = $4",
                )
                .bind(at)
                .bind(kind.as_str())
                .bind(detail.as_str())
                .bind(id)
                .execute(&mut *tx)
                .await
                .ctx("logging an order update")?;
            }
            tx.commit().await.ctx("committing an order update")?;
            changed
        });
        Ok(changed == 1)
    }

    /// In one transaction that holds the fill lock (SQLite `BEGIN IMMEDIATE`, PostgreSQL
    /// `pg_advisory_xact_lock`): moves the order `from` -> `to` (Filled), reads the position
    /// as it is now, asks `apply` for the position after the fill and the P&L it realized,
    /// stores the fill, moves the position by the fill's delta and logs it. Returns None (and
    /// changes nothing) when the order was no longer in `from`. Because the position is read
    /// and written inside the locked transaction, two processes filling at once cannot lose
    /// an update: `positions.quantity` stays the net of `fills`.
    pub async fn record_fill(
        &self,
        from: &OrderState,
        to: &OrderState,
        fill: &Fill,
        product: Product,
        apply: impl FnOnce(Option<&Position>) -> Result<(Position, Paise), StoreError> + Send,
    ) -> Result<Option<(Position, Paise)>, StoreError> {
        self.record_partial_fill(from, 0, to, fill, product, apply)
            .await
    }

    /// [`Store::record_fill`] for one more part of an order that may already be partly filled:
    /// the compare-and-set is on the state AND the quantity filled so far (`from_filled`), so
    /// the same broker update merged twice (postback, ticker, poll) records one fill.
    /// `filled_quantity` grows by the fill; `to` may still be Open (a partial fill).
    pub async fn record_partial_fill(
        &self,
        from: &OrderState,
        from_filled: i64,
        to: &OrderState,
        fill: &Fill,
        product: Product,
        apply: impl FnOnce(Option<&Position>) -> Result<(Position, Paise), StoreError> + Send,
    ) -> Result<Option<(Position, Paise)>, StoreError> {
        let (broker_order_id, avg_price, filled_at, reason) = state_columns(to);
        let to_filled = from_filled.checked_add(fill.quantity).ok_or_else(|| {
            StoreError::Overflow(format!("the filled quantity of order {}", fill.order_id))
        })?;
        let instrument = fill.key.to_string();
        let delta = fill.side.sign().checked_mul(fill.quantity).ok_or_else(|| {
            StoreError::Overflow(format!("the quantity of a fill on {instrument}"))
        })?;
        let read_sql = format!(
            "SELECT {POSITION_COLUMNS} FROM positions WHERE instrument = $1 AND product = $2"
        );
        on_pool!(self, pool => {
            let mut tx = pool.begin_locked().await.ctx("starting to record a fill")?;
            let changed = sqlx::query(UPDATE_ORDER_FILL)
                .bind(to.name())
                .bind(broker_order_id)
                .bind(avg_price)
                .bind(filled_at)
                .bind(reason)
                .bind(fill.ts)
                .bind(fill.order_id)
                .bind(from.name())
                .bind(to_filled)
                .bind(from_filled)
                .execute(&mut *tx)
                .await
                .ctx("marking an order filled")?
                .rows_affected();
            if changed != 1 {
                tx.rollback().await.ctx("rolling back a stale fill")?;
                return Ok(None);
            }
            let prev = sqlx::query_as::<_, PositionRow>(sqlx::AssertSqlSafe(read_sql))
                .bind(instrument.as_str())
                .bind(product.as_str())
                .fetch_optional(&mut *tx)
                .await
                .ctx("reading a position under the fill lock")?
                .map(position_from_row)
                .transpose()?;
            let (position, realized) = apply(prev.as_ref())?;
            let expected_realized = prev
                .as_ref()
                .map_or(Paise::ZERO, |p| p.realized_pnl)
                .checked_add(realized)
                .ok_or_else(|| StoreError::Overflow(format!("the realized P&L of {instrument}")))?;
            let detail = serde_json::json!({
                "side": fill.side.as_str(),
                "quantity": fill.quantity,
                "price": fill.price.0,
                "realized_pnl": realized.0,
                "position_quantity": position.quantity,
                "position_avg_price": position.avg_price.0,
            })
            .to_string();
            sqlx::query(
                "INSERT INTO fills (order_id, instrument, side, quantity, price, realized_pnl, ts) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(fill.order_id)
            .bind(instrument.as_str())
            .bind(fill.side.as_str())
            .bind(fill.quantity)
            .bind(fill.price.0)
            .bind(realized.0)
            .bind(fill.ts)
            .execute(&mut *tx)
            .await
            .ctx("storing a fill")?;
            // Quantity and realized P&L move by the fill's delta; the row read above under the
            // same lock gave the average price and brackets.
            let (quantity, realized_total) = sqlx::query_as::<_, (i64, i64)>(
                "INSERT INTO positions (instrument, product, quantity, avg_price, realized_pnl, \
                 stop, target, opened_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                 ON CONFLICT (instrument, product) DO UPDATE SET \
                 quantity = positions.quantity + $10, avg_price = excluded.avg_price, \
                 realized_pnl = positions.realized_pnl + $11, \
                 stop = excluded.stop, target = excluded.target, opened_at = excluded.opened_at, \
                 updated_at = excluded.updated_at RETURNING quantity, realized_pnl",
            )
            .bind(instrument.as_str())
            .bind(product.as_str())
            .bind(delta)
            .bind(position.avg_price.0)
            .bind(expected_realized.0)
            .bind(position.stop.map(|p| p.0))
            .bind(position.target.map(|p| p.0))
            .bind(position.opened_at)
            .bind(position.updated_at)
            .bind(delta)
            .bind(realized.0)
            .fetch_one(&mut *tx)
            .await
            .ctx("moving a position by a fill")?;
            if quantity != position.quantity || realized_total != expected_realized.0 {
                tx.rollback().await.ctx("rolling back an inconsistent fill")?;
                return Err(StoreError::Corrupt(format!(
                    "position {instrument} {} would be {quantity} (P&L {realized_total}) after the fill, \
                     expected {} (P&L {}); nothing was written",
                    product.as_str(),
                    position.quantity,
                    expected_realized.0
                )));
            }
            sqlx::query(
                "INSERT INTO trade_log (ts, kind, order_id, instrument, detail) \
                 VALUES ($1, 'order_filled', $2, $3, $4)",
            )
            .bind(fill.ts)
            .bind(fill.order_id)
            .bind(instrument.as_str())
            .bind(detail.as_str())
            .execute(&mut *tx)
            .await
            .ctx("logging a fill")?;
            tx.commit().await.ctx("committing a fill")?;
            Ok(Some((position, realized)))
        })
    }

    /// Instruments whose `positions.quantity` (summed over products) differs from the net of
    /// their `fills` (buys minus sells). Empty when the book is consistent; checked by the
    /// tests after every trading test and by start-up recovery.
    pub async fn book_discrepancies(&self) -> Result<Vec<BookDiscrepancy>, StoreError> {
        let rows = on_pool!(self, pool => {
            sqlx::query_as::<_, (String, i64, i64)>(
                "SELECT k.instrument, \
                 CAST(COALESCE((SELECT SUM(p.quantity) FROM positions p \
                   WHERE p.instrument = k.instrument), 0) AS BIGINT), \
                 CAST(COALESCE((SELECT SUM(CASE WHEN f.side = 'BUY' THEN f.quantity \
                   ELSE -f.quantity END) FROM fills f WHERE f.instrument = k.instrument), 0) AS BIGINT) \
                 FROM (SELECT instrument FROM positions UNION SELECT instrument FROM fills) k \
                 ORDER BY k.instrument",
            )
            .fetch_all(pool)
            .await
            .ctx("comparing positions with fills")?
        });
        Ok(rows
            .into_iter()
            .filter(|(_, p, f)| p != f)
            .map(|(instrument, positions, fills)| BookDiscrepancy {
                instrument,
                positions,
                fills,
            })
            .collect())
    }

    /// Quantity of the not-yet-final exit orders (submitting or open) of one instrument and
    /// product: already on its way out, so a new exit must not sell it again.
    pub async fn pending_exit_quantity(
        &self,
        key: &InstrumentKey,
        product: Product,
    ) -> Result<i64, StoreError> {
        let instrument = key.to_string();
        on_pool!(self, pool => {
            sqlx::query_scalar::<_, i64>(
                "SELECT CAST(COALESCE(SUM(quantity), 0) AS BIGINT) FROM orders \
                 WHERE instrument = $1 AND product = $2 AND purpose = 'exit' \
                 AND state IN ('submitting', 'unknown', 'open')",
            )
            .bind(instrument.as_str())
            .bind(product.as_str())
            .fetch_one(pool)
            .await
            .ctx("summing in-flight exits")
        })
    }

    /// The position row of one instrument and product (possibly flat).
    pub async fn position(
        &self,
        key: &InstrumentKey,
        product: Product,
    ) -> Result<Option<Position>, StoreError> {
        let sql = format!(
            "SELECT {POSITION_COLUMNS} FROM positions WHERE instrument = $1 AND product = $2"
        );
        let instrument = key.to_string();
        let row = on_pool!(self, pool => {
            sqlx::query_as::<_, PositionRow>(sqlx::AssertSqlSafe(sql))
                .bind(instrument.as_str())
                .bind(product.as_str())
                .fetch_optional(pool)
                .await
                .ctx("reading a position")?
        });
        row.map(position_from_row).transpose()
    }

    /// Open (non-flat) positions, by instrument.
    pub async fn open_positions(&self) -> Result<Vec<Position>, StoreError> {
        let sql = format!(
            "SELECT {POSITION_COLUMNS} FROM positions WHERE quantity <> 0 \
             ORDER BY instrument, product"
        );
        let rows = on_pool!(self, pool => {
            sqlx::query_as::<_, PositionRow>(sqlx::AssertSqlSafe(sql))
                .fetch_all(pool)
                .await
                .ctx("reading open positions")?
        });
        rows.into_iter().map(position_from_row).collect()
    }

    /// Realized P&L of the fills at or after `since`.
    pub async fn realized_since(&self, since: DateTime<Utc>) -> Result<Paise, StoreError> {
        let sum = on_pool!(self, pool => {
            sqlx::query_scalar::<_, i64>(
                "SELECT CAST(COALESCE(SUM(realized_pnl), 0) AS BIGINT) FROM fills WHERE ts >= $1",
            )
            .bind(since)
            .fetch_one(pool)
            .await
            .ctx("summing today's realized P&L")?
        });
        Ok(Paise(sum))
    }

    /// Fills at or after `since`, oldest first.
    pub async fn fills_since(&self, since: DateTime<Utc>) -> Result<Vec<Fill>, StoreError> {
        let rows = on_pool!(self, pool => {
            sqlx::query_as::<_, (i64, String, String, i64, i64, DateTime<Utc>)>(
                "SELECT order_id, instrument, side, quantity, price, ts FROM fills \
                 WHERE ts >= $1 ORDER BY id",
            )
            .bind(since)
            .fetch_all(pool)
            .await
            .ctx("reading fills")?
        });
        rows.into_iter()
            .map(|(order_id, instrument, side, quantity, price, ts)| {
                Ok(Fill {
                    order_id,
                    key: instrument
                        .parse()
                        .map_err(|e| StoreError::Corrupt(format!("fill instrument: {e}")))?,
                    side: side
                        .parse()
                        .map_err(|e| StoreError::Corrupt(format!("fill side: {e}")))?,
                    quantity,
                    price: Paise(price),
                    ts,
                })
            })
            .collect()
    }

    /// The persisted halt / pause switches.
    pub async fn system_state(&self) -> Result<SystemState, StoreError> {
        let row = on_pool!(self, pool => {
            sqlx::query_as::<_, (bool, Option<String>, Option<DateTime<Utc>>, bool)>(
                "SELECT halted, halted_reason, halted_at, paused FROM system_state WHERE id = 1",
            )
            .fetch_optional(pool)
            .await
            .ctx("reading the system state")?
        });
        Ok(row
            .map(|(halted, halted_reason, halted_at, paused)| SystemState {
                halted,
                halted_reason,
                halted_at,
                paused,
            })
            .unwrap_or_default())
    }

    /// Halts new entries. Returns true when this call halted it (it was not halted before), so
    /// the caller alerts once.
    pub async fn set_halt(&self, reason: &str, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let changed = on_pool!(self, pool => {
            let mut tx = pool.begin().await.ctx("starting to store the halt")?;
            let changed = sqlx::query(
                "UPDATE system_state SET halted = $1, halted_reason = $2, halted_at = $3, \
                 updated_at = $3 WHERE id = 1 AND halted = $4",
            )
            .bind(true)
            .bind(reason)
            .bind(at)
            .bind(false)
            .execute(&mut *tx)
            .await
            .ctx("storing the halt")?
            .rows_affected();
            if changed == 1 {
                sqlx::query("INSERT INTO trade_log (ts, kind, detail) VALUES ($1, 'halt', $2)")
                    .bind(at)
                    .bind(reason)
                    .execute(&mut *tx)
                    .await
                    .ctx("logging the halt")?;
            }
            tx.commit().await.ctx("committing the halt")?;
            changed
        });
        Ok(changed == 1)
    }

    /// Lifts the halt and the pause. Returns the state before.
    pub async fn resume(&self, at: DateTime<Utc>) -> Result<SystemState, StoreError> {
        let before = self.system_state().await?;
        let detail = if before.halted {
            "halt lifted"
        } else {
            "resumed"
        };
        on_pool!(self, pool => {
            let mut tx = pool.begin().await.ctx("starting to resume")?;
            sqlx::query(
                "UPDATE system_state SET halted = $1, halted_reason = NULL, halted_at = NULL, \
                 paused = $1, updated_at = $2 WHERE id = 1",
            )
            .bind(false)
            .bind(at)
            .execute(&mut *tx)
            .await
            .ctx("lifting the halt")?;
            sqlx::query("INSERT INTO trade_log (ts, kind, detail) VALUES ($1, 'resume', $2)")
                .bind(at)
                .bind(detail)
                .execute(&mut *tx)
                .await
                .ctx("logging the resume")?;
            tx.commit().await.ctx("committing the resume")?;
        });
        Ok(before)
    }

    /// Sets or clears the pause (no new proposals). Returns true when it changed.
    pub async fn set_paused(&self, paused: bool, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let changed = on_pool!(self, pool => {
            sqlx::query(
                "UPDATE system_state SET paused = $1, updated_at = $2 WHERE id = 1 AND paused = $3",
            )
            .bind(paused)
            .bind(at)
            .bind(!paused)
            .execute(pool)
            .await
            .ctx("storing the pause")?
            .rows_affected()
        });
        Ok(changed == 1)
    }

    /// Appends an event (bracket exits, kills, refusals) to the trade log.
    pub async fn log_trade_event(
        &self,
        at: DateTime<Utc>,
        kind: &str,
        order_id: Option<i64>,
        key: Option<&InstrumentKey>,
        detail: &str,
    ) -> Result<(), StoreError> {
        let instrument = key.map(|k| k.to_string());
        on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO trade_log (ts, kind, order_id, instrument, detail) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(at)
            .bind(kind)
            .bind(order_id)
            .bind(instrument)
            .bind(detail)
            .execute(pool)
            .await
            .ctx("appending to the trade log")?;
        });
        Ok(())
    }

    /// The most recent trade-log entries, newest first.
    pub async fn trade_log(&self, limit: i64) -> Result<Vec<TradeLogEntry>, StoreError> {
        let rows = on_pool!(self, pool => {
            sqlx::query_as::<_, (i64, DateTime<Utc>, String, Option<i64>, Option<String>, String)>(
                "SELECT id, ts, kind, order_id, instrument, detail FROM trade_log \
                 WHERE run_id IS NULL ORDER BY id DESC LIMIT $1",
            )
            .bind(limit)
            .fetch_all(pool)
            .await
            .ctx("reading the trade log")?
        });
        Ok(rows
            .into_iter()
            .map(
                |(id, ts, kind, order_id, instrument, detail)| TradeLogEntry {
                    id,
                    ts,
                    kind,
                    order_id,
                    instrument,
                    detail,
                },
            )
            .collect())
    }

    /// [`Store::last_price`] of many instruments, in the order of `keys`: one query for the
    /// latest `preferred` candle of all of them, then the per-instrument fallback only for the
    /// ones without such a candle. The risk context reads every open position's price on each
    /// approval, so this keeps that one round trip however many positions are open.
    pub async fn last_prices(
        &self,
        keys: &[InstrumentKey],
        preferred: Interval,
    ) -> Result<Vec<Option<Paise>>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let names: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        let mut closes: std::collections::HashMap<String, f64> =
            std::collections::HashMap::with_capacity(keys.len());
        match self.pool() {
            super::Pool::Sqlite(pool) => {
                // Bounded lists keep well under SQLite's bound-parameter limit.
                for chunk in names.chunks(500) {
                    let list = vec!["?"; chunk.len()].join(",");
                    // The latest candle of each series is one seek on the (series_id, ts) key.
                    let sql = format!(
                        "SELECT s.instrument, c.close FROM series s \
                         JOIN candles c ON c.series_id = s.id \
                         AND c.ts = (SELECT MAX(ts) FROM candles WHERE series_id = s.id) \
                         WHERE s.interval = ? AND s.instrument IN ({list})"
                    );
                    let mut q = sqlx::query_as::<_, (String, f64)>(sqlx::AssertSqlSafe(sql))
                        .bind(preferred.as_str());
                    for n in chunk {
                        q = q.bind(n.as_str());
                    }
                    let rows = q.fetch_all(pool).await.ctx("reading the latest prices")?;
                    closes.extend(rows);
                }
            }
            super::Pool::Postgres(pool) => {
                let rows = sqlx::query_as::<_, (String, f64)>(
                    "SELECT s.instrument, c.close FROM series s \
                     JOIN candles c ON c.series_id = s.id \
                     AND c.ts = (SELECT MAX(ts) FROM candles WHERE series_id = s.id) \
                     WHERE s.interval = $1 AND s.instrument = ANY($2)",
                )
                .bind(preferred.as_str())
                .bind(&names)
                .fetch_all(pool)
                .await
                .ctx("reading the latest prices")?;
                closes.extend(rows);
            }
        }
        let mut out = Vec::with_capacity(keys.len());
        for (key, name) in keys.iter().zip(&names) {
            out.push(match closes.get(name) {
                Some(&close) => Some(Paise::from_rupees_f64(close)),
                None => self.last_price(key, preferred).await?,
            });
        }
        Ok(out)
    }

    /// Paper last price: the close of the latest stored candle of `preferred`, else of the
    /// candle (any interval) that ends last.
    pub async fn last_price(
        &self,
        key: &InstrumentKey,
        preferred: Interval,
    ) -> Result<Option<Paise>, StoreError> {
        if let Some(c) = self.last_candles(key, preferred, 1).await?.pop() {
            return Ok(Some(Paise::from_rupees_f64(c.close)));
        }
        let mut best: Option<(DateTime<Utc>, f64)> = None;
        for interval in Interval::ALL {
            if let Some(c) = self.last_candles(key, interval, 1).await?.pop() {
                let end = c.ts + interval.duration();
                if best.is_none_or(|(e, _)| end > e) {
                    best = Some((end, c.close));
                }
            }
        }
        Ok(best.map(|(_, close)| Paise::from_rupees_f64(close)))
    }
}
