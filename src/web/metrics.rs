//! `/metrics` in Prometheus' text exposition format (0.0.4). Counts come from the store at
//! scrape time (they survive restarts and include work done by other processes); Kite API
//! errors and LLM usage come from the process counters in `crate::metrics`.
//!
//! Adding a series: write its `# HELP` / `# TYPE` lines and samples in [`render`] (or, for a
//! counter kept in memory, add it to `crate::metrics` and read it here). The LLM analyst only
//! has to call `crate::metrics::record_llm_usage`; its series appear from then on.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use crate::domain::ProposalStatus;
use crate::store::{Store, StoreError};

/// Upper bounds (seconds) of the scan-duration buckets.
const SCAN_BUCKETS: &[f64] = &[0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0];
/// Upper bounds (seconds) of the approval-latency buckets: from a quick tap to the expiry.
const APPROVAL_BUCKETS: &[f64] = &[5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0];
/// Every order state, so a state with no orders still shows 0.
const ORDER_STATES: &[&str] = &["submitting", "open", "filled", "rejected", "cancelled"];
/// The risk engine's denial codes (see `DenyReason::code`).
const VETO_CODES: &[&str] = &crate::domain::DenyReason::CODES;

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Label values escaped as the format asks (backslash, quote, newline).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn num(v: f64) -> String {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

fn histogram(out: &mut String, name: &str, help: &str, bounds: &[f64], values: &[f64]) {
    header(out, name, "histogram", help);
    for b in bounds {
        let n = values.iter().filter(|v| **v <= *b).count();
        let _ = writeln!(out, "{name}_bucket{{le=\"{}\"}} {n}", num(*b));
    }
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", values.len());
    let _ = writeln!(out, "{name}_sum {}", num(values.iter().sum::<f64>()));
    let _ = writeln!(out, "{name}_count {}", values.len());
}

fn seconds(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    ((to - from).num_milliseconds().max(0)) as f64 / 1000.0
}

/// The whole exposition.
pub async fn render(store: &Store) -> Result<String, StoreError> {
    let mut out = String::new();

    header(
        &mut out,
        "mft_scans_total",
        "counter",
        "Scans of the watchlist started.",
    );
    let _ = writeln!(out, "mft_scans_total {}", store.count_scan_runs().await?);
    let durations: Vec<f64> = store
        .scan_durations()
        .await?
        .into_iter()
        .map(|(s, f)| seconds(s, f))
        .collect();
    histogram(
        &mut out,
        "mft_scan_duration_seconds",
        "Duration of finished scans.",
        SCAN_BUCKETS,
        &durations,
    );

    header(
        &mut out,
        "mft_proposals_total",
        "counter",
        "Proposals by their current outcome (pending, approved, executed, vetoed, rejected, expired, failed).",
    );
    let by_status = store.proposal_counts_by_status().await?;
    for s in ProposalStatus::ALL {
        let n = by_status
            .iter()
            .find(|(k, _)| k == s.as_str())
            .map_or(0, |(_, n)| *n);
        let _ = writeln!(out, "mft_proposals_total{{outcome=\"{}\"}} {n}", s.as_str());
    }

    header(
        &mut out,
        "mft_vetoes_total",
        "counter",
        "Approved proposals the risk engine refused, by denial code.",
    );
    let mut vetoes: Vec<(String, i64)> = VETO_CODES.iter().map(|c| (c.to_string(), 0)).collect();
    for text in store.veto_outcomes().await? {
        let code = text
            .split(':')
            .next()
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .unwrap_or("UNKNOWN");
        match vetoes.iter_mut().find(|(c, _)| c == code) {
            Some((_, n)) => *n += 1,
            None => vetoes.push((code.to_string(), 1)),
        }
    }
    for (code, n) in &vetoes {
        let _ = writeln!(out, "mft_vetoes_total{{code=\"{}\"}} {n}", label(code));
    }

    header(
        &mut out,
        "mft_orders",
        "gauge",
        "Orders by their current state.",
    );
    let by_state = store.order_counts_by_state().await?;
    for s in ORDER_STATES {
        let n = by_state.iter().find(|(k, _)| k == s).map_or(0, |(_, n)| *n);
        let _ = writeln!(out, "mft_orders{{state=\"{s}\"}} {n}");
    }
    for (s, n) in by_state
        .iter()
        .filter(|(k, _)| !ORDER_STATES.contains(&k.as_str()))
    {
        let _ = writeln!(out, "mft_orders{{state=\"{}\"}} {n}", label(s));
    }

    let latencies: Vec<f64> = store
        .approval_times()
        .await?
        .into_iter()
        .map(|t| seconds(t.created_at, t.decided_at))
        .collect();
    histogram(
        &mut out,
        "mft_approval_latency_seconds",
        "Time from a proposal's creation to the operator's approval.",
        APPROVAL_BUCKETS,
        &latencies,
    );

    header(
        &mut out,
        "mft_kite_api_errors_total",
        "counter",
        "Failed Kite API calls since start, by class (api, http, network, session, other).",
    );
    let kite = crate::metrics::kite_errors();
    if kite.is_empty() {
        let _ = writeln!(out, "mft_kite_api_errors_total{{class=\"api\"}} 0");
    }
    for (class, n) in kite {
        let _ = writeln!(
            out,
            "mft_kite_api_errors_total{{class=\"{}\"}} {n}",
            label(class)
        );
    }

    if let Some(llm) = crate::metrics::llm_usage() {
        header(
            &mut out,
            "mft_llm_calls_total",
            "counter",
            "LLM completions since start.",
        );
        let _ = writeln!(out, "mft_llm_calls_total {}", llm.calls);
        header(
            &mut out,
            "mft_llm_tokens_total",
            "counter",
            "LLM tokens since start, by kind.",
        );
        let _ = writeln!(
            out,
            "mft_llm_tokens_total{{kind=\"prompt\"}} {}",
            llm.prompt_tokens
        );
        let _ = writeln!(
            out,
            "mft_llm_tokens_total{{kind=\"completion\"}} {}",
            llm.completion_tokens
        );
        header(
            &mut out,
            "mft_llm_cost_usd_total",
            "counter",
            "LLM cost since start in US dollars.",
        );
        let _ = writeln!(
            out,
            "mft_llm_cost_usd_total {}",
            llm.cost_micro_usd as f64 / 1_000_000.0
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative() {
        let mut out = String::new();
        histogram(&mut out, "x", "h", &[1.0, 10.0], &[0.5, 2.0, 20.0]);
        assert!(out.contains("x_bucket{le=\"1\"} 1\n"));
        assert!(out.contains("x_bucket{le=\"10\"} 2\n"));
        assert!(out.contains("x_bucket{le=\"+Inf\"} 3\n"));
        assert!(out.contains("x_sum 22.5\n"));
        assert!(out.contains("x_count 3\n"));
        assert_eq!(label("a\"b\\"), "a\\\"b\\\\");
    }
}
