//! Backtest runs and their trade-log rows, and recorded analyst exchanges (--llm record /
//! replay). A run is written as 'running' first; its trade-log rows and the 'complete' status
//! land together in one transaction at the end, so a crash or Ctrl-C never leaves a partial run
//! that counts as complete.

use chrono::{DateTime, Utc};

use super::{QueryContext, Store, StoreError, on_pool};
use crate::domain::InstrumentKey;

/// One trade-log row of a backtest run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunLogRow {
    pub ts: DateTime<Utc>,
    pub kind: String,
    pub key: InstrumentKey,
    pub detail: String,
}

/// A stored backtest run.
#[derive(Debug, Clone, PartialEq)]
pub struct BacktestRun {
    pub id: String,
    pub status: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub params: String,
    pub summary: Option<String>,
    pub error: Option<String>,
}

/// A recorded analyst exchange.
#[derive(Debug, Clone, PartialEq)]
pub struct Exchange {
    pub request_hash: String,
    pub analyst: String,
    pub key: InstrumentKey,
    pub bar_ts: DateTime<Utc>,
    pub request: String,
    pub response: String,
}

impl Store {
    /// Records the start of run `id` (status 'running').
    pub async fn start_backtest_run(
        &self,
        id: &str,
        params: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO backtest_runs (id, status, started_at, params) VALUES ($1, 'running', $2, $3)",
            )
            .bind(id)
            .bind(at)
            .bind(params)
            .execute(pool)
            .await
            .ctx("recording the start of a backtest run")?;
        });
        Ok(())
    }

    /// Appends the run's trade-log rows, its recorded exchanges and marks it 'complete', all in
    /// one transaction.
    pub async fn complete_backtest_run(
        &self,
        id: &str,
        rows: &[RunLogRow],
        exchanges: &[Exchange],
        summary: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            let mut tx = pool.begin().await.ctx("starting to store a backtest run")?;
            for r in rows {
                sqlx::query(
                    "INSERT INTO trade_log (ts, kind, order_id, instrument, detail, run_id) \
                     VALUES ($1, $2, NULL, $3, $4, $5)",
                )
                .bind(r.ts)
                .bind(r.kind.as_str())
                .bind(r.key.to_string())
                .bind(r.detail.as_str())
                .bind(id)
                .execute(&mut *tx)
                .await
                .ctx("storing a backtest trade")?;
            }
            for e in exchanges {
                sqlx::query(
                    "INSERT INTO llm_exchanges (request_hash, analyst, instrument, bar_ts, request, response, run_id, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (request_hash) DO NOTHING",
                )
                .bind(e.request_hash.as_str())
                .bind(e.analyst.as_str())
                .bind(e.key.to_string())
                .bind(e.bar_ts)
                .bind(e.request.as_str())
                .bind(e.response.as_str())
                .bind(id)
                .bind(at)
                .execute(&mut *tx)
                .await
                .ctx("storing a recorded analyst exchange")?;
            }
            sqlx::query(
                "UPDATE backtest_runs SET status = 'complete', finished_at = $1, summary = $2 WHERE id = $3",
            )
            .bind(at)
            .bind(summary)
            .bind(id)
            .execute(&mut *tx)
            .await
            .ctx("completing a backtest run")?;
            tx.commit().await.ctx("committing a backtest run")?;
        });
        Ok(())
    }

    /// Marks run `id` failed (cancelled, crashed into an error) with the reason.
    pub async fn fail_backtest_run(
        &self,
        id: &str,
        error: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query(
                "UPDATE backtest_runs SET status = 'failed', finished_at = $1, error = $2 \
                 WHERE id = $3 AND status = 'running'",
            )
            .bind(at)
            .bind(error)
            .bind(id)
            .execute(pool)
            .await
            .ctx("recording a failed backtest run")?;
        });
        Ok(())
    }

    pub async fn backtest_run(&self, id: &str) -> Result<Option<BacktestRun>, StoreError> {
        type Row = (
            String,
            String,
            DateTime<Utc>,
            Option<DateTime<Utc>>,
            String,
            Option<String>,
            Option<String>,
        );
        let row = on_pool!(self, pool => {
            sqlx::query_as::<_, Row>(
                "SELECT id, status, started_at, finished_at, params, summary, error \
                 FROM backtest_runs WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(pool)
            .await
            .ctx("reading a backtest run")?
        });
        Ok(row.map(
            |(id, status, started_at, finished_at, params, summary, error)| BacktestRun {
                id,
                status,
                started_at,
                finished_at,
                params,
                summary,
                error,
            },
        ))
    }

    /// Trade-log rows of one backtest run, oldest first.
    pub async fn backtest_trade_log(&self, run_id: &str) -> Result<Vec<RunLogRow>, StoreError> {
        let rows = on_pool!(self, pool => {
            sqlx::query_as::<_, (DateTime<Utc>, String, Option<String>, String)>(
                "SELECT ts, kind, instrument, detail FROM trade_log WHERE run_id = $1 ORDER BY id",
            )
            .bind(run_id)
            .fetch_all(pool)
            .await
            .ctx("reading a backtest run's trade log")?
        });
        let mut out = Vec::with_capacity(rows.len());
        for (ts, kind, instrument, detail) in rows {
            let key = instrument
                .as_deref()
                .unwrap_or_default()
                .parse::<InstrumentKey>()
                .map_err(|e| StoreError::Corrupt(format!("trade_log instrument: {e}")))?;
            out.push(RunLogRow {
                ts,
                kind,
                key,
                detail,
            });
        }
        Ok(out)
    }

    /// Number of trade-log rows that belong to any backtest run.
    pub async fn count_backtest_log_rows(&self) -> Result<i64, StoreError> {
        Ok(on_pool!(self, pool => {
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM trade_log WHERE run_id IS NOT NULL")
                .fetch_one(pool)
                .await
                .ctx("counting backtest trade-log rows")?
        }))
    }

    /// The recorded response for a request hash.
    pub async fn llm_exchange(&self, request_hash: &str) -> Result<Option<String>, StoreError> {
        Ok(on_pool!(self, pool => {
            sqlx::query_scalar::<_, String>(
                "SELECT response FROM llm_exchanges WHERE request_hash = $1",
            )
            .bind(request_hash)
            .fetch_optional(pool)
            .await
            .ctx("reading a recorded analyst exchange")?
        }))
    }
}
