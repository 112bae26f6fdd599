//! Proposals and scan runs in the store: insert (at most one pending per instrument, enforced
//! by a unique partial index), compare-and-set status transitions, the expiry sweep, and the
//! record of each scan. One query text serves both backends (see `on_pool!`).

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{QueryContext, Store, StoreError, on_pool};
use crate::domain::{InstrumentKey, NewProposal, Paise, Product, Proposal, ProposalStatus, Side};
use crate::ports::ScanSummary;

const COLUMNS: &str = "id, instrument, side, quantity, entry, stop, target, product, confidence, \
     rationale, status, created_at, expires_at, chart_path, message_id, decided_at, decided_by, outcome";

/// Decodes a proposal row of either backend (the macro expands once per row type).
macro_rules! proposal_from_row {
    ($row:expr) => {{
        let row = $row;
        let get = |e: sqlx::Error| StoreError::Query {
            what: "decoding a proposal row",
            source: e,
        };
        let instrument: String = row.try_get("instrument").map_err(get)?;
        let side: String = row.try_get("side").map_err(get)?;
        let product: String = row.try_get("product").map_err(get)?;
        let status: String = row.try_get("status").map_err(get)?;
        Proposal {
            id: row.try_get("id").map_err(get)?,
            key: instrument
                .parse::<InstrumentKey>()
                .map_err(|e| StoreError::Corrupt(format!("proposal instrument: {e}")))?,
            side: parse_side(&side)?,
            quantity: row.try_get("quantity").map_err(get)?,
            entry: Paise(row.try_get("entry").map_err(get)?),
            stop: Paise(row.try_get("stop").map_err(get)?),
            target: Paise(row.try_get("target").map_err(get)?),
            product: parse_product(&product)?,
            confidence: row.try_get("confidence").map_err(get)?,
            rationale: row.try_get("rationale").map_err(get)?,
            status: ProposalStatus::parse(&status)
                .ok_or_else(|| StoreError::Corrupt(format!("proposal status {status:?}")))?,
            created_at: row.try_get("created_at").map_err(get)?,
            expires_at: row.try_get("expires_at").map_err(get)?,
            chart_path: row.try_get("chart_path").map_err(get)?,
            message_id: row.try_get("message_id").map_err(get)?,
            decided_at: row.try_get("decided_at").map_err(get)?,
            decided_by: row.try_get("decided_by").map_err(get)?,
            outcome: row.try_get("outcome").map_err(get)?,
        }
    }};
}

fn parse_side(s: &str) -> Result<Side, StoreError> {
    match s {
        "BUY" => Ok(Side::Buy),
        "SELL" => Ok(Side::Sell),
        other => Err(StoreError::Corrupt(format!("proposal side {other:?}"))),
    }
}

fn parse_product(s: &str) -> Result<Product, StoreError> {
    match s {
        "MIS" => Ok(Product::Mis),
        "CNC" => Ok(Product::Cnc),
        other => Err(StoreError::Corrupt(format!("proposal product {other:?}"))),
    }
}

impl Store {
    /// Stores a new pending proposal. `None` when a pending proposal for the instrument already
    /// exists (enforced by a unique partial index, so two racing scans cannot both insert).
    pub async fn insert_proposal(&self, p: &NewProposal) -> Result<Option<Proposal>, StoreError> {
        let sql = format!(
            "INSERT INTO proposals (instrument, side, quantity, entry, stop, target, product, \
             confidence, rationale, status, created_at, expires_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'pending', $10, $11, $10) \
             ON CONFLICT DO NOTHING RETURNING {COLUMNS}"
        );
        on_pool!(self, pool => {
            let row = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
                .bind(p.key.to_string())
                .bind(p.side.as_str())
                .bind(p.quantity)
                .bind(p.entry.0)
                .bind(p.stop.0)
                .bind(p.target.0)
                .bind(p.product.as_str())
                .bind(p.confidence)
                .bind(p.rationale.as_str())
                .bind(p.created_at)
                .bind(p.expires_at)
                .fetch_optional(pool)
                .await
                .ctx("storing a new proposal")?;
            match row {
                Some(row) => Ok(Some(proposal_from_row!(&row))),
                None => Ok(None),
            }
        })
    }

    pub async fn proposal(&self, id: i64) -> Result<Option<Proposal>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM proposals WHERE id = $1");
        on_pool!(self, pool => {
            let row = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
                .bind(id)
                .fetch_optional(pool)
                .await
                .ctx("reading a proposal")?;
            match row {
                Some(row) => Ok(Some(proposal_from_row!(&row))),
                None => Ok(None),
            }
        })
    }

    /// Pending proposals, oldest first.
    pub async fn pending_proposals(&self) -> Result<Vec<Proposal>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM proposals WHERE status = 'pending' ORDER BY created_at, id"
        );
        on_pool!(self, pool => {
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
                .fetch_all(pool)
                .await
                .ctx("reading pending proposals")?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                out.push(proposal_from_row!(row));
            }
            Ok(out)
        })
    }

    /// The `limit` most recent proposals of any status, newest first.
    pub async fn recent_proposals(&self, limit: i64) -> Result<Vec<Proposal>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM proposals ORDER BY id DESC LIMIT $1");
        on_pool!(self, pool => {
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
                .bind(limit.max(0))
                .fetch_all(pool)
                .await
                .ctx("reading recent proposals")?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                out.push(proposal_from_row!(row));
            }
            Ok(out)
        })
    }

    pub async fn has_pending_proposal(&self, key: &InstrumentKey) -> Result<bool, StoreError> {
        on_pool!(self, pool => {
            let n = sqlx::query_scalar::<_, i64>(
                "SELECT COUNT(*) FROM proposals WHERE instrument = $1 AND status = 'pending'",
            )
            .bind(key.to_string())
            .fetch_one(pool)
            .await
            .ctx("checking for a pending proposal")?;
            Ok(n > 0)
        })
    }

    /// Compare-and-set: moves `id` from `from` to `to` only if it is currently `from`, in ONE
    /// conditional UPDATE, so of any number of racing callers exactly one gets `true`. Sets
    /// decided_at (kept from the first decision), decided_by and outcome when given. An illegal
    /// transition (see [`ProposalStatus::can_become`]) changes nothing and returns false.
    pub async fn transition_proposal(
        &self,
        id: i64,
        from: ProposalStatus,
        to: ProposalStatus,
        at: DateTime<Utc>,
        by: Option<i64>,
        outcome: Option<&str>,
    ) -> Result<bool, StoreError> {
        if !from.can_become(to) {
            tracing::error!(
                proposal = id,
                from = from.as_str(),
                to = to.as_str(),
                "refusing an illegal proposal transition"
            );
            return Ok(false);
        }
        on_pool!(self, pool => {
            let changed = sqlx::query(
                "UPDATE proposals SET status = $1, decided_at = COALESCE(decided_at, $2), \
                 decided_by = COALESCE($3, decided_by), outcome = COALESCE($4, outcome), \
                 updated_at = $2 WHERE id = $5 AND status = $6",
            )
            .bind(to.as_str())
            .bind(at)
            .bind(by)
            .bind(outcome)
            .bind(id)
            .bind(from.as_str())
            .execute(pool)
            .await
            .ctx("changing a proposal's status")?
            .rows_affected();
            Ok(changed == 1)
        })
    }

    /// Moves every pending proposal with `expires_at <= now` to expired, in one conditional
    /// UPDATE; returns the proposals this call moved (a proposal approved in the meantime is
    /// not among them).
    pub async fn expire_due_proposals(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<Proposal>, StoreError> {
        let sql = format!(
            "UPDATE proposals SET status = 'expired', decided_at = COALESCE(decided_at, $1), \
             updated_at = $1 WHERE status = 'pending' AND expires_at <= $1 RETURNING {COLUMNS}"
        );
        on_pool!(self, pool => {
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
                .bind(now)
                .fetch_all(pool)
                .await
                .ctx("expiring due proposals")?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                out.push(proposal_from_row!(row));
            }
            out.sort_by_key(|p| p.id);
            Ok(out)
        })
    }

    /// Records the Telegram message that carries the proposal's card.
    pub async fn set_proposal_message(&self, id: i64, message_id: i64) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query("UPDATE proposals SET message_id = $1 WHERE id = $2")
                .bind(message_id)
                .bind(id)
                .execute(pool)
                .await
                .ctx("recording a proposal's message id")?;
            Ok(())
        })
    }

    /// Corrects a finished scan's counts after its cards were posted: `unposted` proposals
    /// whose card could not be posted move from the proposals to the errors.
    pub async fn count_unposted_cards(&self, id: i64, unposted: u32) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query(
                "UPDATE scan_runs SET proposals = CASE WHEN proposals >= $1 THEN proposals - $1 \
                 ELSE 0 END, errors = errors + $1 WHERE id = $2",
            )
            .bind(i64::from(unposted))
            .bind(id)
            .execute(pool)
            .await
            .ctx("counting unposted cards in a scan")?;
            Ok(())
        })
    }

    /// Records the rendered chart file of a proposal.
    pub async fn set_proposal_chart(&self, id: i64, path: &str) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query("UPDATE proposals SET chart_path = $1 WHERE id = $2")
                .bind(path)
                .bind(id)
                .execute(pool)
                .await
                .ctx("recording a proposal's chart")?;
            Ok(())
        })
    }

    /// Records the start of a scan over `instruments` instruments; returns the run id.
    pub async fn start_scan_run(
        &self,
        at: DateTime<Utc>,
        instruments: u32,
    ) -> Result<i64, StoreError> {
        on_pool!(self, pool => {
            sqlx::query_scalar::<_, i64>(
                "INSERT INTO scan_runs (started_at, instruments) VALUES ($1, $2) RETURNING id",
            )
            .bind(at)
            .bind(i64::from(instruments))
            .fetch_one(pool)
            .await
            .ctx("recording the start of a scan")
        })
    }

    /// Records the end of a scan with its counts; `error_text` summarizes the failures.
    pub async fn finish_scan_run(
        &self,
        id: i64,
        at: DateTime<Utc>,
        proposals: u32,
        errors: u32,
        error_text: Option<&str>,
    ) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query(
                "UPDATE scan_runs SET finished_at = $1, proposals = $2, errors = $3, \
                 error_text = $4 WHERE id = $5",
            )
            .bind(at)
            .bind(i64::from(proposals))
            .bind(i64::from(errors))
            .bind(error_text)
            .bind(id)
            .execute(pool)
            .await
            .ctx("recording the end of a scan")?;
            Ok(())
        })
    }

    /// The most recently started scan (finished or still running).
    pub async fn last_scan_run(&self) -> Result<Option<ScanSummary>, StoreError> {
        on_pool!(self, pool => {
            let row = sqlx::query_as::<_, (i64, DateTime<Utc>, Option<DateTime<Utc>>, i64, i64, i64)>(
                "SELECT id, started_at, finished_at, instruments, proposals, errors \
                 FROM scan_runs ORDER BY id DESC LIMIT 1",
            )
            .fetch_optional(pool)
            .await
            .ctx("reading the last scan run")?;
            Ok(row.map(|(id, started_at, finished_at, instruments, proposals, errors)| ScanSummary {
                id,
                started_at,
                finished_at,
                instruments: count(instruments),
                proposals: count(proposals),
                errors: count(errors),
                stale: Vec::new(),
            }))
        })
    }
}

fn count(n: i64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}
