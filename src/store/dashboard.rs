//! The dashboard's tables (migration 0008): web login sessions, the action audit with its actor,
//! the alerts sent to the operator, generated secrets; plus the read-only queries the dashboard
//! and `/metrics` need (scan log, recent orders, realized P&L series, counts by status).

use chrono::{DateTime, Utc};

use super::{QueryContext, Store, StoreError, on_pool};
use crate::domain::{Order, Paise};

/// A dashboard login session, found by the hash of its cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSession {
    pub csrf: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// One operator action (Approve, Reject, Pause, Resume, Kill) and who asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionEntry {
    pub id: i64,
    pub ts: DateTime<Utc>,
    /// `web`, `telegram:<user id>`, `cli`, `scheduler`
    pub actor: String,
    pub command: String,
    pub proposal_id: Option<i64>,
    pub result: String,
}

/// One alert as it was sent (or tried) to the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertEntry {
    pub id: i64,
    pub ts: DateTime<Utc>,
    pub kind: String,
    /// The text as rendered for the operator (Telegram HTML, escaped).
    pub text: String,
    pub delivered: bool,
    pub error: Option<String>,
}

/// One row of the scan log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanRun {
    pub id: i64,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub instruments: i64,
    pub proposals: i64,
    pub errors: i64,
    pub error_text: Option<String>,
}

/// A proposal's times, for the approval-latency histogram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecisionTimes {
    pub created_at: DateTime<Utc>,
    pub decided_at: DateTime<Utc>,
}

type ActionRow = (i64, DateTime<Utc>, String, String, Option<i64>, String);

fn action(row: ActionRow) -> ActionEntry {
    let (id, ts, actor, command, proposal_id, result) = row;
    ActionEntry {
        id,
        ts,
        actor,
        command,
        proposal_id,
        result,
    }
}

impl Store {
    /// Stores a new session under the hash of its cookie value.
    pub async fn create_web_session(
        &self,
        id_hash: &str,
        csrf: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO web_sessions (id_hash, csrf, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(id_hash)
            .bind(csrf)
            .bind(now)
            .bind(expires_at)
            .execute(pool)
            .await
            .ctx("storing a dashboard session")?;
        });
        Ok(())
    }

    /// The session with this cookie hash, if it exists and has not expired at `now`.
    pub async fn web_session(
        &self,
        id_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<WebSession>, StoreError> {
        let row = on_pool!(self, pool => {
            sqlx::query_as::<_, (String, DateTime<Utc>, DateTime<Utc>)>(
                "SELECT csrf, created_at, expires_at FROM web_sessions \
                 WHERE id_hash = $1 AND expires_at > $2",
            )
            .bind(id_hash)
            .bind(now)
            .fetch_optional(pool)
            .await
            .ctx("reading a dashboard session")?
        });
        Ok(row.map(|(csrf, created_at, expires_at)| WebSession {
            csrf,
            created_at,
            expires_at,
        }))
    }

    /// Deletes one session (logout) and every expired one.
    pub async fn delete_web_session(
        &self,
        id_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query("DELETE FROM web_sessions WHERE id_hash = $1 OR expires_at <= $2")
                .bind(id_hash)
                .bind(now)
                .execute(pool)
                .await
                .ctx("deleting a dashboard session")?;
        });
        Ok(())
    }

    /// Appends an operator action to the audit.
    pub async fn record_action(
        &self,
        at: DateTime<Utc>,
        actor: &str,
        command: &str,
        proposal_id: Option<i64>,
        result: &str,
    ) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO action_log (ts, actor, command, proposal_id, result) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(at)
            .bind(actor)
            .bind(command)
            .bind(proposal_id)
            .bind(result)
            .execute(pool)
            .await
            .ctx("recording an operator action")?;
        });
        Ok(())
    }

    /// The most recent actions, newest first.
    pub async fn recent_actions(&self, limit: i64) -> Result<Vec<ActionEntry>, StoreError> {
        let rows = on_pool!(self, pool => {
            sqlx::query_as::<_, ActionRow>(
                "SELECT id, ts, actor, command, proposal_id, result FROM action_log \
                 ORDER BY id DESC LIMIT $1",
            )
            .bind(limit.max(0))
            .fetch_all(pool)
            .await
            .ctx("reading the action log")?
        });
        Ok(rows.into_iter().map(action).collect())
    }

    /// The actions on proposals with id >= `min_id`, oldest first (the history page joins them).
    pub async fn proposal_actions_since(
        &self,
        min_id: i64,
    ) -> Result<Vec<ActionEntry>, StoreError> {
        let rows = on_pool!(self, pool => {
            sqlx::query_as::<_, ActionRow>(
                "SELECT id, ts, actor, command, proposal_id, result FROM action_log \
                 WHERE proposal_id >= $1 ORDER BY id",
            )
            .bind(min_id)
            .fetch_all(pool)
            .await
            .ctx("reading the proposals' actions")?
        });
        Ok(rows.into_iter().map(action).collect())
    }

    /// Appends an alert as sent (or not) to the operator.
    pub async fn record_alert(
        &self,
        at: DateTime<Utc>,
        kind: &str,
        text: &str,
        delivered: bool,
        error: Option<&str>,
    ) -> Result<i64, StoreError> {
        on_pool!(self, pool => {
            sqlx::query_scalar::<_, i64>(
                "INSERT INTO alerts_log (ts, kind, text, delivered, error) \
                 VALUES ($1, $2, $3, $4, $5) RETURNING id",
            )
            .bind(at)
            .bind(kind)
            .bind(text)
            .bind(delivered)
            .bind(error)
            .fetch_one(pool)
            .await
            .ctx("recording an alert")
        })
    }

    /// The most recent alerts, newest first.
    pub async fn recent_alerts(&self, limit: i64) -> Result<Vec<AlertEntry>, StoreError> {
        let rows = on_pool!(self, pool => {
            sqlx::query_as::<_, (i64, DateTime<Utc>, String, String, bool, Option<String>)>(
                "SELECT id, ts, kind, text, delivered, error FROM alerts_log \
                 ORDER BY id DESC LIMIT $1",
            )
            .bind(limit.max(0))
            .fetch_all(pool)
            .await
            .ctx("reading the alerts log")?
        });
        Ok(rows
            .into_iter()
            .map(|(id, ts, kind, text, delivered, error)| AlertEntry {
                id,
                ts,
                kind,
                text,
                delivered,
                error,
            })
            .collect())
    }

    /// A secret the service generated for itself, by name.
    pub async fn generated_secret(&self, name: &str) -> Result<Option<String>, StoreError> {
        on_pool!(self, pool => {
            sqlx::query_scalar::<_, String>("SELECT value FROM generated_secrets WHERE name = $1")
                .bind(name)
                .fetch_optional(pool)
                .await
                .ctx("reading a generated secret")
        })
    }

    /// Stores `value` under `name` unless one is stored already; returns the stored one (so two
    /// processes starting at once agree on one value).
    pub async fn keep_generated_secret(
        &self,
        name: &str,
        value: &str,
        at: DateTime<Utc>,
    ) -> Result<String, StoreError> {
        on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO generated_secrets (name, value, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO NOTHING",
            )
            .bind(name)
            .bind(value)
            .bind(at)
            .execute(pool)
            .await
            .ctx("storing a generated secret")?;
        });
        self.generated_secret(name).await?.ok_or_else(|| {
            StoreError::Corrupt(format!("generated secret {name} vanished after storing it"))
        })
    }

    /// The most recent scan runs, newest first.
    pub async fn recent_scan_runs(&self, limit: i64) -> Result<Vec<ScanRun>, StoreError> {
        let rows = on_pool!(self, pool => {
            sqlx::query_as::<_, (i64, DateTime<Utc>, Option<DateTime<Utc>>, i64, i64, i64, Option<String>)>(
                "SELECT id, started_at, finished_at, instruments, proposals, errors, error_text \
                 FROM scan_runs ORDER BY id DESC LIMIT $1",
            )
            .bind(limit.max(0))
            .fetch_all(pool)
            .await
            .ctx("reading the scan log")?
        });
        Ok(rows
            .into_iter()
            .map(
                |(id, started_at, finished_at, instruments, proposals, errors, error_text)| {
                    ScanRun {
                        id,
                        started_at,
                        finished_at,
                        instruments,
                        proposals,
                        errors,
                        error_text,
                    }
                },
            )
            .collect())
    }

    /// (started, finished) of every finished scan, for the duration histogram.
    pub async fn scan_durations(&self) -> Result<Vec<(DateTime<Utc>, DateTime<Utc>)>, StoreError> {
        on_pool!(self, pool => {
            sqlx::query_as::<_, (DateTime<Utc>, DateTime<Utc>)>(
                "SELECT started_at, finished_at FROM scan_runs WHERE finished_at IS NOT NULL",
            )
            .fetch_all(pool)
            .await
            .ctx("reading scan durations")
        })
    }

    /// How many scans were started.
    pub async fn count_scan_runs(&self) -> Result<i64, StoreError> {
        on_pool!(self, pool => {
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM scan_runs")
                .fetch_one(pool)
                .await
                .ctx("counting scan runs")
        })
    }

    /// The `limit` most recent orders, newest first.
    pub async fn recent_orders(&self, limit: i64) -> Result<Vec<Order>, StoreError> {
        let ids = on_pool!(self, pool => {
            sqlx::query_scalar::<_, i64>("SELECT id FROM orders ORDER BY id DESC LIMIT $1")
                .bind(limit.max(0))
                .fetch_all(pool)
                .await
                .ctx("reading recent orders")?
        });
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(o) = self.order(id).await? {
                out.push(o);
            }
        }
        Ok(out)
    }

    /// Realized P&L per order (sum over its fills) for the orders with id >= `min_id`.
    pub async fn realized_by_order(
        &self,
        min_id: i64,
    ) -> Result<std::collections::HashMap<i64, Paise>, StoreError> {
        let rows = on_pool!(self, pool => {
            sqlx::query_as::<_, (i64, i64)>(
                "SELECT order_id, CAST(SUM(realized_pnl) AS BIGINT) FROM fills \
                 WHERE order_id >= $1 GROUP BY order_id",
            )
            .bind(min_id)
            .fetch_all(pool)
            .await
            .ctx("reading realized P&L per order")?
        });
        Ok(rows.into_iter().map(|(id, p)| (id, Paise(p))).collect())
    }

    /// (state, count) of all orders.
    pub async fn order_counts_by_state(&self) -> Result<Vec<(String, i64)>, StoreError> {
        on_pool!(self, pool => {
            sqlx::query_as::<_, (String, i64)>(
                "SELECT state, COUNT(*) FROM orders GROUP BY state ORDER BY state",
            )
            .fetch_all(pool)
            .await
            .ctx("counting orders by state")
        })
    }

    /// (status, count) of all proposals.
    pub async fn proposal_counts_by_status(&self) -> Result<Vec<(String, i64)>, StoreError> {
        on_pool!(self, pool => {
            sqlx::query_as::<_, (String, i64)>(
                "SELECT status, COUNT(*) FROM proposals GROUP BY status ORDER BY status",
            )
            .fetch_all(pool)
            .await
            .ctx("counting proposals by status")
        })
    }

    /// The stored outcome text of every vetoed proposal ("CODE: explanation").
    pub async fn veto_outcomes(&self) -> Result<Vec<String>, StoreError> {
        on_pool!(self, pool => {
            sqlx::query_scalar::<_, String>(
                "SELECT COALESCE(outcome, '') FROM proposals WHERE status = 'vetoed'",
            )
            .fetch_all(pool)
            .await
            .ctx("reading veto outcomes")
        })
    }

    /// Creation and decision times of proposals the operator approved (whatever followed).
    pub async fn approval_times(&self) -> Result<Vec<DecisionTimes>, StoreError> {
        let rows = on_pool!(self, pool => {
            sqlx::query_as::<_, (DateTime<Utc>, DateTime<Utc>)>(
                "SELECT created_at, decided_at FROM proposals WHERE decided_at IS NOT NULL \
                 AND status IN ('approved', 'executed', 'vetoed', 'failed')",
            )
            .fetch_all(pool)
            .await
            .ctx("reading approval times")?
        });
        Ok(rows
            .into_iter()
            .map(|(created_at, decided_at)| DecisionTimes {
                created_at,
                decided_at,
            })
            .collect())
    }

    /// Every fill's time and realized P&L, oldest first (the equity curve).
    pub async fn realized_series(&self) -> Result<Vec<(DateTime<Utc>, Paise)>, StoreError> {
        let rows = on_pool!(self, pool => {
            sqlx::query_as::<_, (DateTime<Utc>, i64)>(
                "SELECT ts, realized_pnl FROM fills ORDER BY id",
            )
            .fetch_all(pool)
            .await
            .ctx("reading realized P&L")?
        });
        Ok(rows.into_iter().map(|(ts, p)| (ts, Paise(p))).collect())
    }

    /// A cheap fingerprint of what the dashboard shows, read in one round trip; the live-update
    /// watcher compares consecutive readings.
    pub async fn dashboard_marks(&self) -> Result<DashboardMarks, StoreError> {
        let row = on_pool!(self, pool => {
            sqlx::query_as::<_, (i64, i64, i64, Option<DateTime<Utc>>, i64, i64, i64, i64)>(
                "SELECT \
                   (SELECT COALESCE(MAX(id), 0) FROM fills), \
                   (SELECT COALESCE(MAX(id), 0) FROM orders), \
                   (SELECT COUNT(*) FROM orders WHERE state IN ('submitting', 'open')), \
                   (SELECT MAX(updated_at) FROM proposals), \
                   (SELECT COUNT(*) FROM proposals WHERE status = 'pending'), \
                   (SELECT COALESCE(MAX(id), 0) FROM scan_runs), \
                   (SELECT COUNT(*) FROM scan_runs WHERE finished_at IS NOT NULL), \
                   (SELECT COALESCE(MAX(id), 0) FROM alerts_log)",
            )
            .fetch_one(pool)
            .await
            .ctx("reading the dashboard's change marks")?
        });
        let (fill, order, working, proposals_at, pending, scan, scans_finished, alert) = row;
        Ok(DashboardMarks {
            last_fill: fill,
            last_order: order,
            working_orders: working,
            proposals_changed_at: proposals_at,
            pending,
            last_scan: scan,
            scans_finished,
            last_alert: alert,
        })
    }
}

/// See [`Store::dashboard_marks`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DashboardMarks {
    pub last_fill: i64,
    pub last_order: i64,
    pub working_orders: i64,
    pub proposals_changed_at: Option<DateTime<Utc>>,
    pub pending: i64,
    pub last_scan: i64,
    pub scans_finished: i64,
    pub last_alert: i64,
}
