//! The record of one LLM analysis (what `/why N` and `trade_log.get_proposal` show): model,
//! prompt hash, every tool call, tokens, cost, latency, and the verdict or the error.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{InstrumentKey, Paise};

/// One tool call the model made through MCP.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCallRecord {
    pub server: String,
    pub tool: String,
    /// The arguments as the model sent them (JSON text, possibly invalid).
    pub arguments: String,
    /// Bytes of the result text handed back to the model.
    pub result_bytes: usize,
    pub duration_ms: u64,
    /// The tool error the model was shown, if the call failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A trace as it is stored (before `id` and `proposal_id` are known, both are `None`/0).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnalysisTrace {
    pub id: i64,
    pub created_at: DateTime<Utc>,
    pub key: InstrumentKey,
    /// "llm" or "rules+llm".
    pub analyst: String,
    pub model: String,
    /// sha256 (hex) of the system prompt and verdict schema the model was given.
    pub prompt_hash: String,
    pub tool_calls: Vec<ToolCallRecord>,
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub cost: Paise,
    pub latency_ms: u64,
    /// The validated verdict as JSON, when there was one.
    pub verdict: Option<serde_json::Value>,
    /// Why the analysis produced no verdict (endpoint, budget, validation, ...).
    pub error: Option<String>,
    pub proposal_id: Option<i64>,
}
