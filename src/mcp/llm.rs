//! The LLM side of the Analysis Agent: prompts (embedded, overridable, hashed), the verdict
//! (parsed and validated against market data before anything is proposed), and an
//! OpenAI-compatible chat client with bounded retries and deadlines.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::types::chat::{
    CreateChatCompletionRequest, CreateChatCompletionResponse, ResponseFormat,
    ResponseFormatJsonSchema,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::config::{AnalysisSettings, LlmSettings, Settings};

/// Built-in prompts (prompts/ at build time).
pub const SYSTEM_PROMPT: &str = include_str!("../../prompts/analyst_system.md");
pub const VERDICT_SCHEMA: &str = include_str!("../../prompts/verdict_schema.json");

/// The longest rationale a verdict may carry (characters).
pub const MAX_RATIONALE: usize = 400;

/// Why an analysis produced no verdict. The text goes to the scan summary, the log and the trace.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LlmError {
    #[error("the LLM endpoint refused OPENAI_API_KEY ({0}): check the key")]
    Unauthorized(String),
    #[error(
        "the LLM endpoint is rate limiting (429) and {retries} retries did not get through: {message}"
    )]
    RateLimited { retries: u32, message: String },
    #[error("the LLM endpoint failed: {0}")]
    Endpoint(String),
    #[error("the LLM endpoint is unreachable: {0}; check OPENAI_BASE_URL")]
    Unreachable(String),
    #[error("the analysis took longer than [llm] analysis_timeout_secs = {0}")]
    Timeout(u64),
    #[error("LLM budget: {0}")]
    Budget(String),
    #[error("the LLM's verdict was rejected: {0}")]
    Verdict(String),
    #[error("a prompt file cannot be used: {0}")]
    Prompt(String),
}

/// The system prompt and verdict schema in use, with their hash (stored on every trace).
#[derive(Debug, Clone)]
pub struct Prompts {
    pub system: String,
    pub schema: serde_json::Value,
    /// sha256 hex of system prompt + "\n" + schema text.
    pub hash: String,
}

impl Prompts {
    /// The built-in prompts, or the files `[analysis] system_prompt` / `verdict_schema` name.
    pub fn load(a: &AnalysisSettings) -> Result<Prompts, LlmError> {
        let read = |path: &str, builtin: &str| -> Result<String, LlmError> {
            if path.is_empty() {
                return Ok(builtin.to_string());
            }
            std::fs::read_to_string(path).map_err(|e| LlmError::Prompt(format!("{path}: {e}")))
        };
        let system = read(&a.system_prompt, SYSTEM_PROMPT)?;
        let schema_text = read(&a.verdict_schema, VERDICT_SCHEMA)?;
        let schema: serde_json::Value = serde_json::from_str(&schema_text)
            .map_err(|e| LlmError::Prompt(format!("verdict schema is not JSON: {e}")))?;
        let mut h = Sha256::new();
        h.update(system.as_bytes());
        h.update(b"\n");
        h.update(schema_text.as_bytes());
        Ok(Prompts {
            system,
            schema,
            hash: hex::encode(h.finalize()),
        })
    }
}

/// One piece of evidence the model cites.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    pub tool: String,
    pub fact: String,
}

/// The model's verdict, as parsed (not yet validated against the market).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlmVerdict {
    pub action: String,
    pub entry: f64,
    pub stop: f64,
    pub target: f64,
    pub confidence: f64,
    pub rationale: String,
    pub evidence: Vec<Evidence>,
}

/// Parses a verdict from the model's reply (a JSON object, possibly inside a ```json fence or
/// surrounded by prose). Every problem is listed, for the repair turn.
pub fn parse_verdict(text: &str) -> Result<LlmVerdict, Vec<String>> {
    let (Some(start), Some(end)) = (text.find('{'), text.rfind('}')) else {
        return Err(vec!["the reply is not a JSON object".into()]);
    };
    if end < start {
        return Err(vec!["the reply is not a JSON object".into()]);
    }
    let v: serde_json::Value = serde_json::from_str(&text[start..=end]).map_err(|e| {
        vec![format!(
            "the reply is not valid JSON ({e}); NaN and Infinity are not JSON numbers"
        )]
    })?;
    let mut problems = Vec::new();
    let action = match v.get("action").and_then(|a| a.as_str()) {
        Some(a) if ["buy", "sell", "hold"].contains(&a.to_ascii_lowercase().as_str()) => {
            a.to_ascii_lowercase()
        }
        Some(a) => {
            problems.push(format!(
                "action {a:?} must be \"buy\", \"sell\" or \"hold\""
            ));
            String::new()
        }
        None => {
            problems.push("action is missing".into());
            String::new()
        }
    };
    let mut num = |name: &str| -> f64 {
        match v.get(name) {
            Some(serde_json::Value::Number(n)) => n.as_f64().unwrap_or(f64::NAN),
            Some(other) => {
                problems.push(format!("{name} must be a number, got {other}"));
                f64::NAN
            }
            None => {
                problems.push(format!("{name} is missing"));
                f64::NAN
            }
        }
    };
    let entry = num("entry");
    let stop = num("stop");
    let target = num("target");
    let confidence = num("confidence");
    let rationale = match v.get("rationale").and_then(|r| r.as_str()) {
        Some(r) => r.trim().to_string(),
        None => {
            problems.push("rationale (a string) is missing".into());
            String::new()
        }
    };
    let evidence = match v.get("evidence") {
        None => Vec::new(),
        Some(e) => match serde_json::from_value::<Vec<Evidence>>(e.clone()) {
            Ok(e) => e,
            Err(_) => {
                problems
                    .push("evidence must be a list of {\"tool\": string, \"fact\": string}".into());
                Vec::new()
            }
        },
    };
    if problems.is_empty() {
        Ok(LlmVerdict {
            action,
            entry,
            stop,
            target,
            confidence,
            rationale,
            evidence,
        })
    } else {
        Err(problems)
    }
}

/// What a verdict is checked against.
#[derive(Debug, Clone)]
pub struct MarketCheck {
    /// The freshest price (Kite quote or the latest stored candle).
    pub last_price: f64,
    pub tick: f64,
    /// (lower, upper) circuit limits of the day, when Kite's quote gives them.
    pub circuit: Option<(f64, f64)>,
    pub max_deviation_pct: f64,
    pub min_reward_risk: f64,
}

fn on_tick(p: f64, tick: f64) -> bool {
    if tick <= 0.0 {
        return true;
    }
    let steps = p / tick;
    (steps - steps.round()).abs() < 1e-6
}

/// Checks a verdict against market data. Every problem is listed (for the repair turn).
pub fn validate(v: &LlmVerdict, m: &MarketCheck) -> Result<(), Vec<String>> {
    let mut p = Vec::new();
    if !(v.confidence.is_finite() && (0.0..=1.0).contains(&v.confidence)) {
        p.push(format!(
            "confidence {} must be between 0 and 1",
            v.confidence
        ));
    }
    let chars = v.rationale.chars().count();
    if chars > MAX_RATIONALE {
        p.push(format!(
            "rationale has {chars} characters; at most {MAX_RATIONALE}"
        ));
    }
    if v.rationale.is_empty() {
        p.push("rationale is empty".into());
    }
    if v.action == "hold" {
        return if p.is_empty() { Ok(()) } else { Err(p) };
    }
    let levels = [("entry", v.entry), ("stop", v.stop), ("target", v.target)];
    for (name, x) in levels {
        if !x.is_finite() || x <= 0.0 {
            p.push(format!("{name} {x} must be a positive finite price"));
        }
    }
    // From here every level is a positive finite number, so plain comparisons are exact.
    if !p.is_empty() {
        return Err(p);
    }
    let last = m.last_price;
    let dev = (v.entry - last).abs() / last * 100.0;
    if dev > m.max_deviation_pct {
        p.push(format!(
            "entry {} is {dev:.2}% away from the latest price {last}; it must be within {}%",
            v.entry, m.max_deviation_pct
        ));
    }
    let (risk, reward) = match v.action.as_str() {
        "buy" => {
            if v.stop >= v.entry {
                p.push(format!(
                    "for a buy the stop ({}) must be below the entry ({})",
                    v.stop, v.entry
                ));
            }
            if v.target <= v.entry {
                p.push(format!(
                    "for a buy the target ({}) must be above the entry ({})",
                    v.target, v.entry
                ));
            }
            (v.entry - v.stop, v.target - v.entry)
        }
        _ => {
            if v.stop <= v.entry {
                p.push(format!(
                    "for a sell the stop ({}) must be above the entry ({})",
                    v.stop, v.entry
                ));
            }
            if v.target >= v.entry {
                p.push(format!(
                    "for a sell the target ({}) must be below the entry ({})",
                    v.target, v.entry
                ));
            }
            (v.stop - v.entry, v.entry - v.target)
        }
    };
    if risk > 0.0 && reward > 0.0 && reward / risk < m.min_reward_risk - 1e-9 {
        p.push(format!(
            "reward:risk is {:.2}; it must be at least {}",
            reward / risk,
            m.min_reward_risk
        ));
    }
    for (name, x) in levels {
        if !on_tick(x, m.tick) {
            p.push(format!(
                "{name} {x} is not on the tick size {} (e.g. {:.2})",
                m.tick,
                (x / m.tick).round() * m.tick
            ));
        }
        if let Some((lo, hi)) = m.circuit
            && (x < lo || x > hi)
        {
            p.push(format!(
                "{name} {x} is outside today's circuit band {lo}..{hi}"
            ));
        }
    }
    if p.is_empty() { Ok(()) } else { Err(p) }
}

/// Token counts of one response.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    pub input: u64,
    pub output: u64,
}

/// The chat endpoint with retries (429, 5xx, network) and a per-analysis deadline.
#[derive(Clone)]
pub struct ChatClient {
    client: Client<OpenAIConfig>,
    pub model: String,
    settings: LlmSettings,
    /// Cleared when the endpoint rejects `response_format`, so later requests go without it.
    structured: Arc<AtomicBool>,
}

impl std::fmt::Debug for ChatClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatClient")
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

/// Model used when OPENAI_MODEL is unset.
pub const DEFAULT_MODEL: &str = "gpt-4o-mini";

impl ChatClient {
    pub fn from_settings(s: &Settings) -> ChatClient {
        let mut config = OpenAIConfig::new();
        if let Some(base) = &s.openai.base_url {
            config = config.with_api_base(base.trim_end_matches('/'));
        }
        // Local servers (Ollama, llama.cpp) need no key; async-openai sends the header anyway.
        let key = s
            .openai
            .api_key
            .as_ref()
            .map(|k| k.expose().trim().to_string())
            .unwrap_or_default();
        config = config.with_api_key(key);
        // Without the default executor's built-in retry layer: retries are ours ([llm]
        // max_retries, retry_backoff_ms), bounded by the analysis deadline.
        let http = async_openai::middleware::ReqwestService::new(reqwest::Client::new());
        ChatClient {
            client: Client::with_config(config).with_http_service(http),
            model: s
                .openai
                .model
                .clone()
                .unwrap_or_else(|| DEFAULT_MODEL.to_string()),
            settings: s.llm.clone(),
            structured: Arc::new(AtomicBool::new(s.llm.structured_output)),
        }
    }

    /// The response_format to send, while the endpoint accepts it.
    pub fn response_format(&self, schema: &serde_json::Value) -> Option<ResponseFormat> {
        self.structured
            .load(Ordering::Relaxed)
            .then(|| ResponseFormat::JsonSchema {
                json_schema: ResponseFormatJsonSchema {
                    description: Some("The Analysis Agent's verdict".into()),
                    name: "verdict".into(),
                    schema: schema.clone(),
                    strict: Some(true),
                },
            })
    }

    /// Sends `req`, retrying 429, 5xx and network errors with doubling backoff, all before
    /// `deadline`.
    pub async fn complete(
        &self,
        mut req: CreateChatCompletionRequest,
        deadline: Instant,
        timeout_secs: u64,
    ) -> Result<(CreateChatCompletionResponse, Usage), LlmError> {
        let mut attempt = 0u32;
        loop {
            let sent =
                tokio::time::timeout_at(deadline, self.client.chat().create(req.clone())).await;
            let err = match sent {
                Err(_) => return Err(LlmError::Timeout(timeout_secs)),
                Ok(Ok(resp)) => {
                    let usage = resp.usage.as_ref().map_or(Usage::default(), |u| Usage {
                        input: u64::from(u.prompt_tokens),
                        output: u64::from(u.completion_tokens),
                    });
                    return Ok((resp, usage));
                }
                Ok(Err(e)) => e,
            };
            let (retry, failure) = classify(&err, attempt, self.settings.max_retries);
            // An endpoint without structured output support: once more, without it.
            if req.response_format.is_some() && is_response_format_rejection(&err) {
                tracing::warn!(error = %err, "the LLM endpoint rejected response_format; continuing without structured output");
                self.structured.store(false, Ordering::Relaxed);
                req.response_format = None;
                continue;
            }
            if !retry {
                return Err(failure);
            }
            let backoff = Duration::from_millis(
                self.settings
                    .retry_backoff_ms
                    .saturating_mul(1 << attempt.min(10)),
            );
            tracing::warn!(error = %err, attempt = attempt + 1, backoff_ms = backoff.as_millis() as u64, "LLM request failed; retrying");
            if Instant::now() + backoff >= deadline {
                return Err(failure);
            }
            tokio::time::sleep(backoff).await;
            attempt += 1;
        }
    }
}

fn is_response_format_rejection(e: &OpenAIError) -> bool {
    match e {
        OpenAIError::ApiError(a) => {
            a.status_code.as_u16() == 400 && {
                let m = a.api_error.message.to_ascii_lowercase();
                m.contains("response_format")
                    || m.contains("json_schema")
                    || m.contains("structured")
            }
        }
        _ => false,
    }
}

/// (worth retrying, the error if not retried).
fn classify(e: &OpenAIError, attempt: u32, max_retries: u32) -> (bool, LlmError) {
    let more = attempt < max_retries;
    match e {
        OpenAIError::ApiError(a) => {
            let code = a.status_code.as_u16();
            let msg: String = a.api_error.message.chars().take(300).collect();
            match code {
                401 | 403 => (false, LlmError::Unauthorized(format!("HTTP {code}"))),
                429 => (
                    more,
                    LlmError::RateLimited {
                        retries: attempt,
                        message: msg,
                    },
                ),
                500..=599 => (more, LlmError::Endpoint(format!("HTTP {code}: {msg}"))),
                _ => (false, LlmError::Endpoint(format!("HTTP {code}: {msg}"))),
            }
        }
        OpenAIError::Reqwest(r) => {
            let text = r.to_string();
            (more, LlmError::Unreachable(text))
        }
        OpenAIError::JSONDeserialize(err, _) => (
            false,
            LlmError::Endpoint(format!("the reply is not a chat completion: {err}")),
        ),
        other => (false, LlmError::Endpoint(other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check() -> MarketCheck {
        MarketCheck {
            last_price: 1500.0,
            tick: 0.05,
            circuit: Some((1350.0, 1650.0)),
            max_deviation_pct: 1.0,
            min_reward_risk: 1.5,
        }
    }

    fn verdict(action: &str, entry: f64, stop: f64, target: f64) -> LlmVerdict {
        LlmVerdict {
            action: action.into(),
            entry,
            stop,
            target,
            confidence: 0.7,
            rationale: "EMA20 above EMA50".into(),
            evidence: vec![],
        }
    }

    #[test]
    fn parses_fenced_json_and_lists_every_problem() {
        let v = parse_verdict("Here:\n```json\n{\"action\":\"BUY\",\"entry\":1500,\"stop\":1490,\"target\":1520,\"confidence\":0.6,\"rationale\":\"x\",\"evidence\":[{\"tool\":\"t\",\"fact\":\"f\"}]}\n```").unwrap();
        assert_eq!(v.action, "buy");
        assert_eq!(v.evidence.len(), 1);
        let e = parse_verdict("{\"action\":\"maybe\",\"entry\":\"1500\"}").unwrap_err();
        assert!(e.iter().any(|p| p.contains("action \"maybe\"")), "{e:?}");
        assert!(
            e.iter().any(|p| p.contains("entry must be a number")),
            "{e:?}"
        );
        assert!(e.iter().any(|p| p.contains("stop is missing")), "{e:?}");
        assert!(parse_verdict("I think buy").is_err());
        assert!(
            parse_verdict("{\"action\":\"buy\",\"entry\":NaN}").unwrap_err()[0]
                .contains("not valid JSON")
        );
    }

    #[test]
    fn validation_rejects_made_up_prices() {
        assert!(validate(&verdict("buy", 1500.0, 1490.0, 1520.0), &check()).is_ok());
        assert!(validate(&verdict("sell", 1500.0, 1510.0, 1480.0), &check()).is_ok());
        let e = validate(&verdict("buy", 15000.0, 14900.0, 15200.0), &check()).unwrap_err();
        assert!(
            e.iter().any(|p| p.contains("away from the latest price")),
            "{e:?}"
        );
        let e = validate(&verdict("buy", 1500.0, 1510.0, 1520.0), &check()).unwrap_err();
        assert!(
            e.iter().any(|p| p.contains("stop (1510) must be below")),
            "{e:?}"
        );
        let e = validate(&verdict("buy", 1500.0, 1490.0, 1505.0), &check()).unwrap_err();
        assert!(e.iter().any(|p| p.contains("reward:risk is 0.50")), "{e:?}");
        let e = validate(&verdict("buy", 1500.03, 1490.0, 1520.0), &check()).unwrap_err();
        assert!(
            e.iter().any(|p| p.contains("not on the tick size")),
            "{e:?}"
        );
        let e = validate(&verdict("buy", 1500.0, 1300.0, 1800.0), &check()).unwrap_err();
        assert!(e.iter().any(|p| p.contains("circuit band")), "{e:?}");
        let e = validate(&verdict("buy", f64::NAN, 1490.0, 1520.0), &check()).unwrap_err();
        assert!(e.iter().any(|p| p.contains("positive finite")), "{e:?}");
        let mut long = verdict("hold", 0.0, 0.0, 0.0);
        assert!(validate(&long, &check()).is_ok());
        long.rationale = "x".repeat(401);
        assert!(validate(&long, &check()).is_err());
    }

    #[test]
    fn builtin_prompts_load_and_hash() {
        let p = Prompts::load(&AnalysisSettings::default()).unwrap();
        assert_eq!(p.hash.len(), 64);
        assert!(p.schema["properties"]["action"].is_object());
    }
}
