//! Process-wide counters that no table records, read by the dashboard's `/metrics`: Kite API
//! errors today; the LLM analyst's tokens and cost once it exists (its extension point).
//!
//! Everything a table already holds (scans, proposals, vetoes, orders, approval latency) is
//! computed from the store at scrape time instead, so it survives restarts.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Kite API call failures by class (`api`, `http`, `network`, `session`, `other`), since start.
static KITE_ERRORS: Mutex<Vec<(&'static str, u64)>> = Mutex::new(Vec::new());

/// Counts one failed Kite API call (each attempt, retries included).
pub fn record_kite_error(class: &'static str) {
    let mut v = KITE_ERRORS.lock().unwrap_or_else(|e| e.into_inner());
    match v.iter_mut().find(|(c, _)| *c == class) {
        Some((_, n)) => *n += 1,
        None => v.push((class, 1)),
    }
}

/// (class, count) of Kite API errors since start.
pub fn kite_errors() -> Vec<(&'static str, u64)> {
    let mut v = KITE_ERRORS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    v.sort();
    v
}

static LLM_PROMPT_TOKENS: AtomicU64 = AtomicU64::new(0);
static LLM_COMPLETION_TOKENS: AtomicU64 = AtomicU64::new(0);
/// Millionths of a US dollar, as the provider's price list gives it.
static LLM_COST_MICRO_USD: AtomicU64 = AtomicU64::new(0);
static LLM_CALLS: AtomicU64 = AtomicU64::new(0);

/// The LLM analyst calls this after every completion with the usage the API reported and the
/// cost it computed. Until the first call, `/metrics` shows no LLM series at all (rather than
/// zeros that would suggest an LLM is in use).
pub fn record_llm_usage(prompt_tokens: u64, completion_tokens: u64, cost_micro_usd: u64) {
    LLM_CALLS.fetch_add(1, Ordering::Relaxed);
    LLM_PROMPT_TOKENS.fetch_add(prompt_tokens, Ordering::Relaxed);
    LLM_COMPLETION_TOKENS.fetch_add(completion_tokens, Ordering::Relaxed);
    LLM_COST_MICRO_USD.fetch_add(cost_micro_usd, Ordering::Relaxed);
}

/// LLM usage since start; None until [`record_llm_usage`] has been called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LlmUsage {
    pub calls: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost_micro_usd: u64,
}

pub fn llm_usage() -> Option<LlmUsage> {
    let calls = LLM_CALLS.load(Ordering::Relaxed);
    (calls > 0).then(|| LlmUsage {
        calls,
        prompt_tokens: LLM_PROMPT_TOKENS.load(Ordering::Relaxed),
        completion_tokens: LLM_COMPLETION_TOKENS.load(Ordering::Relaxed),
        cost_micro_usd: LLM_COST_MICRO_USD.load(Ordering::Relaxed),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kite_errors_count_by_class() {
        record_kite_error("test-class");
        record_kite_error("test-class");
        let n = kite_errors()
            .into_iter()
            .find(|(c, _)| *c == "test-class")
            .map(|(_, n)| n);
        assert_eq!(n, Some(2));
    }
}
