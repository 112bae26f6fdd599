//! Analysis traces (one per LLM analysis, linked to the proposal it produced) and the news
//! cache, on both backends.

use chrono::{DateTime, Utc};

use super::{QueryContext, Store, StoreError, on_pool};
use crate::domain::{AnalysisTrace, InstrumentKey, Paise, ToolCallRecord};

const COLUMNS: &str = "id, created_at, instrument, analyst, model, prompt_hash, tool_calls, \
     tokens_in, tokens_out, cost_paise, latency_ms, verdict, error, proposal_id";

type TraceRow = (
    i64,
    DateTime<Utc>,
    String,
    String,
    String,
    String,
    String,
    i64,
    i64,
    i64,
    i64,
    Option<String>,
    Option<String>,
    Option<i64>,
);

fn trace_from_row(row: TraceRow) -> Result<AnalysisTrace, StoreError> {
    let (
        id,
        created_at,
        instrument,
        analyst,
        model,
        prompt_hash,
        calls,
        tin,
        tout,
        cost,
        ms,
        v,
        e,
        p,
    ) = row;
    let key = instrument
        .parse::<InstrumentKey>()
        .map_err(|e| StoreError::Corrupt(format!("analysis trace {id} instrument: {e}")))?;
    let tool_calls: Vec<ToolCallRecord> = serde_json::from_str(&calls)
        .map_err(|e| StoreError::Corrupt(format!("analysis trace {id} tool calls: {e}")))?;
    let verdict = match v {
        Some(text) => Some(
            serde_json::from_str(&text)
                .map_err(|e| StoreError::Corrupt(format!("analysis trace {id} verdict: {e}")))?,
        ),
        None => None,
    };
    Ok(AnalysisTrace {
        id,
        created_at,
        key,
        analyst,
        model,
        prompt_hash,
        tool_calls,
        tokens_in: u64::try_from(tin).unwrap_or(0),
        tokens_out: u64::try_from(tout).unwrap_or(0),
        cost: Paise(cost),
        latency_ms: u64::try_from(ms).unwrap_or(0),
        verdict,
        error: e,
        proposal_id: p,
    })
}

impl Store {
    /// Stores a trace; returns its id (the `id` and `proposal_id` fields of `t` are ignored
    /// unless `proposal_id` is set).
    pub async fn insert_analysis_trace(&self, t: &AnalysisTrace) -> Result<i64, StoreError> {
        let calls = serde_json::to_string(&t.tool_calls)
            .map_err(|e| StoreError::Corrupt(format!("encoding tool calls: {e}")))?;
        let verdict = t.verdict.as_ref().map(|v| v.to_string());
        let clamp = |x: u64| i64::try_from(x).unwrap_or(i64::MAX);
        on_pool!(self, pool => {
            sqlx::query_scalar::<_, i64>(
                "INSERT INTO analysis_traces (created_at, instrument, analyst, model, prompt_hash, \
                 tool_calls, tokens_in, tokens_out, cost_paise, latency_ms, verdict, error, proposal_id) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING id",
            )
            .bind(t.created_at)
            .bind(t.key.to_string())
            .bind(t.analyst.as_str())
            .bind(t.model.as_str())
            .bind(t.prompt_hash.as_str())
            .bind(calls)
            .bind(clamp(t.tokens_in))
            .bind(clamp(t.tokens_out))
            .bind(t.cost.0)
            .bind(clamp(t.latency_ms))
            .bind(verdict)
            .bind(t.error.as_deref())
            .bind(t.proposal_id)
            .fetch_one(pool)
            .await
            .ctx("storing an analysis trace")
        })
    }

    /// Links a stored trace to the proposal it produced.
    pub async fn link_analysis_trace(
        &self,
        trace_id: i64,
        proposal_id: i64,
    ) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query("UPDATE analysis_traces SET proposal_id = $1 WHERE id = $2")
                .bind(proposal_id)
                .bind(trace_id)
                .execute(pool)
                .await
                .ctx("linking an analysis trace to its proposal")?;
        });
        Ok(())
    }

    pub async fn analysis_trace(&self, id: i64) -> Result<Option<AnalysisTrace>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM analysis_traces WHERE id = $1");
        let row = on_pool!(self, pool => {
            sqlx::query_as::<_, TraceRow>(sqlx::AssertSqlSafe(sql.as_str()))
                .bind(id)
                .fetch_optional(pool)
                .await
                .ctx("reading an analysis trace")?
        });
        row.map(trace_from_row).transpose()
    }

    /// The trace of the analysis that produced proposal `proposal_id`, if an LLM made it.
    pub async fn analysis_trace_for_proposal(
        &self,
        proposal_id: i64,
    ) -> Result<Option<AnalysisTrace>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM analysis_traces WHERE proposal_id = $1 ORDER BY id DESC LIMIT 1"
        );
        let row = on_pool!(self, pool => {
            sqlx::query_as::<_, TraceRow>(sqlx::AssertSqlSafe(sql.as_str()))
                .bind(proposal_id)
                .fetch_optional(pool)
                .await
                .ctx("reading a proposal's analysis trace")?
        });
        row.map(trace_from_row).transpose()
    }

    /// The most recent traces, newest first.
    pub async fn recent_analysis_traces(
        &self,
        limit: i64,
    ) -> Result<Vec<AnalysisTrace>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM analysis_traces ORDER BY id DESC LIMIT $1");
        let rows = on_pool!(self, pool => {
            sqlx::query_as::<_, TraceRow>(sqlx::AssertSqlSafe(sql.as_str()))
                .bind(limit)
                .fetch_all(pool)
                .await
                .ctx("reading analysis traces")?
        });
        rows.into_iter().map(trace_from_row).collect()
    }

    /// Tokens (in + out) and cost of the analyses since `since` (the daily budget).
    pub async fn llm_usage_since(&self, since: DateTime<Utc>) -> Result<(u64, Paise), StoreError> {
        let (tokens, cost) = on_pool!(self, pool => {
            sqlx::query_as::<_, (i64, i64)>(
                "SELECT CAST(COALESCE(SUM(tokens_in + tokens_out), 0) AS BIGINT), \
                 CAST(COALESCE(SUM(cost_paise), 0) AS BIGINT) FROM analysis_traces WHERE created_at >= $1",
            )
            .bind(since)
            .fetch_one(pool)
            .await
            .ctx("summing today's LLM usage")?
        });
        Ok((u64::try_from(tokens).unwrap_or(0), Paise(cost)))
    }

    /// A cached news response no older than `max_age`.
    pub async fn news_cached(
        &self,
        key: &str,
        fresh_since: DateTime<Utc>,
    ) -> Result<Option<String>, StoreError> {
        on_pool!(self, pool => {
            sqlx::query_scalar::<_, String>(
                "SELECT body FROM news_cache WHERE cache_key = $1 AND fetched_at >= $2",
            )
            .bind(key)
            .bind(fresh_since)
            .fetch_optional(pool)
            .await
            .ctx("reading the news cache")
        })
    }

    pub async fn put_news_cache(
        &self,
        key: &str,
        at: DateTime<Utc>,
        body: &str,
    ) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO news_cache (cache_key, fetched_at, body) VALUES ($1, $2, $3) \
                 ON CONFLICT (cache_key) DO UPDATE SET fetched_at = excluded.fetched_at, body = excluded.body",
            )
            .bind(key)
            .bind(at)
            .bind(body)
            .execute(pool)
            .await
            .ctx("writing the news cache")?;
        });
        Ok(())
    }

    /// Instruments whose symbol or name contains `query` (case-insensitive), NSE/BSE equities
    /// first, at most `limit`.
    pub async fn search_instruments(
        &self,
        query: &str,
        exchange: Option<&str>,
        limit: i64,
    ) -> Result<Vec<crate::domain::Instrument>, StoreError> {
        let pattern = format!("%{}%", query.to_uppercase());
        let keys = on_pool!(self, pool => {
            sqlx::query_as::<_, (String, String)>(
                "SELECT exchange, tradingsymbol FROM instruments \
                 WHERE (UPPER(tradingsymbol) LIKE $1 OR UPPER(name) LIKE $1) \
                 AND ($2 = '' OR exchange = $2) \
                 ORDER BY CASE WHEN UPPER(tradingsymbol) = $3 THEN 0 ELSE 1 END, \
                 CASE WHEN instrument_type = 'EQ' THEN 0 ELSE 1 END, tradingsymbol LIMIT $4",
            )
            .bind(pattern.as_str())
            .bind(exchange.unwrap_or("").to_uppercase())
            .bind(query.to_uppercase())
            .bind(limit)
            .fetch_all(pool)
            .await
            .ctx("searching instruments")?
        });
        let mut out = Vec::with_capacity(keys.len());
        for (ex, sym) in keys {
            if let Some(i) = self.instrument(&InstrumentKey::new(&ex, &sym)).await? {
                out.push(i);
            }
        }
        Ok(out)
    }
}
