//! The risk audit (`risk_decisions`, migration 0010) and the order history the risk engine's
//! execution checks read ([`Store::orders_for_risk`]). Approved decisions are written with their
//! order row by [`Store::record_order_decided`]; refusals by [`Store::record_risk_decision`].

use chrono::{DateTime, Utc};

use super::trading::purpose_columns;
use super::{QueryContext, Store, StoreError, on_pool};
use crate::domain::{InstrumentKey, OrderRequest, RecentOrder, RiskDecision, Side, order_value};

pub(super) const INSERT_DECISION: &str = "INSERT INTO risk_decisions (ts, tag, instrument, side, \
     quantity, purpose, proposal_id, order_id, code, stage, reason, request, inputs) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING id";

/// A decision as bound to the insert.
pub(super) struct AuditColumns {
    pub ts: DateTime<Utc>,
    pub tag: String,
    pub instrument: String,
    pub side: &'static str,
    pub quantity: i64,
    pub purpose: &'static str,
    pub proposal_id: Option<i64>,
    pub code: String,
    pub stage: String,
    pub reason: Option<String>,
    pub request: String,
    pub inputs: String,
}

impl AuditColumns {
    pub(super) fn of(d: &RiskDecision) -> Result<AuditColumns, StoreError> {
        let request = serde_json::to_string(&d.request)
            .map_err(|e| StoreError::Corrupt(format!("risk decision not serializable: {e}")))?;
        let (purpose, proposal_id) = purpose_columns(&d.request.purpose);
        Ok(AuditColumns {
            ts: d.at,
            tag: d.request.tag.clone(),
            instrument: d.request.key.to_string(),
            side: d.request.side.as_str(),
            quantity: d.request.quantity,
            purpose,
            proposal_id,
            code: d.code.clone(),
            stage: d.stage.clone(),
            reason: d.reason.clone(),
            request,
            inputs: d.inputs.to_string(),
        })
    }
}

/// One row of the risk audit.
#[derive(Debug, Clone, PartialEq)]
pub struct RiskAuditEntry {
    pub id: i64,
    pub order_id: Option<i64>,
    pub decision: RiskDecision,
}

type AuditRow = (
    i64,
    DateTime<Utc>,
    Option<i64>,
    String,
    String,
    Option<String>,
    String,
    String,
);

type RecentRow = (String, String, String, String, String, DateTime<Utc>);

impl Store {
    /// Audits a decision that placed no order (a refusal). Returns the row id.
    pub async fn record_risk_decision(&self, decision: &RiskDecision) -> Result<i64, StoreError> {
        let a = AuditColumns::of(decision)?;
        Ok(on_pool!(self, pool => {
            sqlx::query_scalar::<_, i64>(INSERT_DECISION)
                .bind(a.ts)
                .bind(a.tag.as_str())
                .bind(a.instrument.as_str())
                .bind(a.side)
                .bind(a.quantity)
                .bind(a.purpose)
                .bind(a.proposal_id)
                .bind(None::<i64>)
                .bind(a.code.as_str())
                .bind(a.stage.as_str())
                .bind(a.reason.as_deref())
                .bind(a.request.as_str())
                .bind(a.inputs.as_str())
                .fetch_one(pool)
                .await
                .ctx("auditing a risk decision")?
        }))
    }

    /// The last `limit` risk decisions, oldest first.
    pub async fn risk_decisions(&self, limit: i64) -> Result<Vec<RiskAuditEntry>, StoreError> {
        let sql = "SELECT id, ts, order_id, code, stage, reason, request, inputs FROM \
                   (SELECT * FROM risk_decisions ORDER BY id DESC LIMIT $1) AS last ORDER BY id";
        let rows = on_pool!(self, pool => {
            sqlx::query_as::<_, AuditRow>(sql)
                .bind(limit)
                .fetch_all(pool)
                .await
                .ctx("reading the risk audit")?
        });
        rows.into_iter()
            .map(|(id, at, order_id, code, stage, reason, request, inputs)| {
                let request: OrderRequest = serde_json::from_str(&request)
                    .map_err(|e| StoreError::Corrupt(format!("risk decision {id} request: {e}")))?;
                let inputs = serde_json::from_str(&inputs)
                    .map_err(|e| StoreError::Corrupt(format!("risk decision {id} inputs: {e}")))?;
                Ok(RiskAuditEntry {
                    id,
                    order_id,
                    decision: RiskDecision {
                        at,
                        request,
                        code,
                        stage,
                        reason,
                        inputs,
                    },
                })
            })
            .collect()
    }

    /// The orders the execution checks read, oldest first: every order recorded at or after
    /// `since`, and the last `last` orders whenever recorded (every purpose and state).
    pub async fn orders_for_risk(
        &self,
        since: DateTime<Utc>,
        last: i64,
    ) -> Result<Vec<RecentOrder>, StoreError> {
        let sql = "SELECT tag, instrument, side, purpose, request, created_at FROM orders \
                   WHERE created_at >= $1 \
                   OR id IN (SELECT id FROM orders ORDER BY id DESC LIMIT $2) ORDER BY id";
        let rows = on_pool!(self, pool => {
            sqlx::query_as::<_, RecentRow>(sql)
                .bind(since)
                .bind(last)
                .fetch_all(pool)
                .await
                .ctx("reading recent orders")?
        });
        rows.into_iter()
            .map(|(tag, instrument, side, purpose, request, at)| {
                let key: InstrumentKey = instrument.parse().map_err(|e| {
                    StoreError::Corrupt(format!("order {tag} instrument {instrument:?}: {e}"))
                })?;
                let side: Side = side
                    .parse()
                    .map_err(|e| StoreError::Corrupt(format!("order {tag} side: {e}")))?;
                let req: OrderRequest = serde_json::from_str(&request)
                    .map_err(|e| StoreError::Corrupt(format!("order {tag} request: {e}")))?;
                Ok(RecentOrder {
                    value: order_value(&req),
                    entry: purpose == "entry",
                    tag,
                    key,
                    side,
                    at,
                })
            })
            .collect()
    }
}
