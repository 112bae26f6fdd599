//! Market-connection tables: NSE holidays, the encrypted Kite session, single-use login states,
//! and the few reads the pre-flight checklist needs (paper days, last kill drill).

use chrono::{DateTime, NaiveDate, Utc};

use super::{QueryContext, Store, StoreError, on_pool};

/// A stored Kite session. `token` is the sealed access token (never the raw one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSession {
    pub id: i64,
    pub user_id: String,
    pub user_name: String,
    pub token: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub expired_at: Option<DateTime<Utc>>,
    pub expired_reason: Option<String>,
}

/// What a login state turned out to be when the redirect brought it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateCheck {
    /// Valid: now marked used.
    Accepted,
    Unknown,
    Used,
    Expired,
}

type SessionRow = (
    i64,
    String,
    String,
    String,
    DateTime<Utc>,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
    Option<String>,
);

impl Store {
    /// Inserts or updates holidays in one transaction (all or nothing).
    pub async fn upsert_holidays(&self, rows: &[(NaiveDate, String)]) -> Result<u64, StoreError> {
        on_pool!(self, pool => {
            let mut tx = pool.begin().await.ctx("starting the holidays import")?;
            let mut n = 0;
            for (day, description) in rows {
                n += sqlx::query(
                    "INSERT INTO holidays (day, description) VALUES ($1, $2) \
                     ON CONFLICT (day) DO UPDATE SET description = excluded.description",
                )
                .bind(*day)
                .bind(description.as_str())
                .execute(&mut *tx)
                .await
                .ctx("storing a holiday")?
                .rows_affected();
            }
            tx.commit().await.ctx("committing the holidays import")?;
            Ok(n)
        })
    }

    /// Every stored holiday, oldest first.
    pub async fn holidays(&self) -> Result<Vec<(NaiveDate, String)>, StoreError> {
        on_pool!(self, pool => {
            sqlx::query_as::<_, (NaiveDate, String)>(
                "SELECT day, description FROM holidays ORDER BY day",
            )
            .fetch_all(pool)
            .await
            .ctx("reading the holidays")
        })
    }

    /// Records a login state (its hash) valid until `expires_at`.
    pub async fn insert_login_state(
        &self,
        state_hash: &str,
        created_at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO login_states (state_hash, created_at, expires_at) VALUES ($1, $2, $3)",
            )
            .bind(state_hash)
            .bind(created_at)
            .bind(expires_at)
            .execute(pool)
            .await
            .ctx("storing a login state")?;
        });
        Ok(())
    }

    /// Uses a login state once: one compare-and-set, so a replay (even a concurrent one) finds
    /// it used.
    pub async fn take_login_state(
        &self,
        state_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<StateCheck, StoreError> {
        let changed = on_pool!(self, pool => {
            sqlx::query(
                "UPDATE login_states SET used_at = $2 \
                 WHERE state_hash = $1 AND used_at IS NULL AND expires_at > $2",
            )
            .bind(state_hash)
            .bind(now)
            .execute(pool)
            .await
            .ctx("using a login state")?
            .rows_affected()
        });
        if changed == 1 {
            return Ok(StateCheck::Accepted);
        }
        let row = on_pool!(self, pool => {
            sqlx::query_as::<_, (Option<DateTime<Utc>>,)>(
                "SELECT used_at FROM login_states WHERE state_hash = $1",
            )
            .bind(state_hash)
            .fetch_optional(pool)
            .await
            .ctx("reading a login state")?
        });
        Ok(match row {
            None => StateCheck::Unknown,
            Some((Some(_),)) => StateCheck::Used,
            Some((None,)) => StateCheck::Expired,
        })
    }

    /// Stores a new session; it becomes the current one.
    pub async fn insert_session(
        &self,
        user_id: &str,
        user_name: &str,
        sealed_token: &str,
        created_at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        on_pool!(self, pool => {
            sqlx::query_scalar::<_, i64>(
                "INSERT INTO kite_sessions (user_id, user_name, token, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5) RETURNING id",
            )
            .bind(user_id)
            .bind(user_name)
            .bind(sealed_token)
            .bind(created_at)
            .bind(expires_at)
            .fetch_one(pool)
            .await
            .ctx("storing the Kite session")
        })
    }

    /// The newest stored session, expired or not.
    pub async fn current_session(&self) -> Result<Option<StoredSession>, StoreError> {
        let row = on_pool!(self, pool => {
            sqlx::query_as::<_, SessionRow>(
                "SELECT id, user_id, user_name, token, created_at, expires_at, expired_at, expired_reason \
                 FROM kite_sessions ORDER BY id DESC LIMIT 1",
            )
            .fetch_optional(pool)
            .await
            .ctx("reading the Kite session")?
        });
        Ok(row.map(
            |(
                id,
                user_id,
                user_name,
                token,
                created_at,
                expires_at,
                expired_at,
                expired_reason,
            )| {
                StoredSession {
                    id,
                    user_id,
                    user_name,
                    token,
                    created_at,
                    expires_at,
                    expired_at,
                    expired_reason,
                }
            },
        ))
    }

    /// Marks session `id` expired; true only for the call that changed it (one alert).
    pub async fn expire_session(
        &self,
        id: i64,
        at: DateTime<Utc>,
        reason: &str,
    ) -> Result<bool, StoreError> {
        let changed = on_pool!(self, pool => {
            sqlx::query(
                "UPDATE kite_sessions SET expired_at = $2, expired_reason = $3 \
                 WHERE id = $1 AND expired_at IS NULL",
            )
            .bind(id)
            .bind(at)
            .bind(reason)
            .execute(pool)
            .await
            .ctx("marking the Kite session expired")?
            .rows_affected()
        });
        Ok(changed == 1)
    }

    /// Creation times of every paper order (for counting paper trading days).
    pub async fn order_times(&self) -> Result<Vec<DateTime<Utc>>, StoreError> {
        on_pool!(self, pool => {
            sqlx::query_scalar::<_, DateTime<Utc>>("SELECT created_at FROM orders")
                .fetch_all(pool)
                .await
                .ctx("reading order times")
        })
    }

    /// The newest trade-log entry of `kind` (e.g. "kill", "kill_test"): (time, detail).
    pub async fn last_trade_event(
        &self,
        kind: &str,
    ) -> Result<Option<(DateTime<Utc>, String)>, StoreError> {
        on_pool!(self, pool => {
            sqlx::query_as::<_, (DateTime<Utc>, String)>(
                "SELECT ts, detail FROM trade_log WHERE kind = $1 ORDER BY id DESC LIMIT 1",
            )
            .bind(kind)
            .fetch_optional(pool)
            .await
            .ctx("reading the trade log")
        })
    }
}
