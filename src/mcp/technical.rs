//! MCP server `technical_analysis`: stateless indicator computation on inline arrays, and the
//! `mft ta` snapshot of a stored series (same code, identical values).

use std::collections::BTreeMap;

use rmcp::handler::server::{router::tool::ToolRouter, wrapper::Parameters};
use rmcp::{Json, ServerHandler, schemars, tool, tool_handler, tool_router};
use serde::{Deserialize, Serialize};

use super::{McpContext, finite, ist, known_series_text, parse_interval, parse_symbol};

/// (name, inputs, [(param, default)], outputs)
type Spec = (
    &'static str,
    &'static [&'static str],
    &'static [(&'static str, f64)],
    &'static [&'static str],
);

const INDICATORS: &[Spec] = &[
    ("sma", &["close"], &[("period", 20.0)], &["sma"]),
    ("ema", &["close"], &[("period", 20.0)], &["ema"]),
    ("wma", &["close"], &[("period", 20.0)], &["wma"]),
    ("rsi", &["close"], &[("period", 14.0)], &["rsi"]),
    ("roc", &["close"], &[("period", 10.0)], &["roc"]),
    (
        "macd",
        &["close"],
        &[("fast", 12.0), ("slow", 26.0), ("signal", 9.0)],
        &["macd", "signal", "hist"],
    ),
    (
        "bbands",
        &["close"],
        &[("period", 20.0), ("k_up", 2.0), ("k_down", 2.0)],
        &["upper", "middle", "lower"],
    ),
    (
        "atr",
        &["high", "low", "close"],
        &[("period", 14.0)],
        &["atr"],
    ),
    (
        "adx",
        &["high", "low", "close"],
        &[("period", 14.0)],
        &["adx", "plus_di", "minus_di"],
    ),
    (
        "stoch",
        &["high", "low", "close"],
        &[("fastk", 14.0), ("slowk", 3.0), ("slowd", 3.0)],
        &["k", "d"],
    ),
    (
        "donchian",
        &["high", "low"],
        &[("period", 20.0)],
        &["upper", "middle", "lower"],
    ),
    (
        "supertrend",
        &["high", "low", "close"],
        &[("period", 10.0), ("multiplier", 3.0)],
        &["line", "direction"],
    ),
    ("obv", &["close", "volume"], &[], &["obv"]),
];

/// The columns of `compute_for` (the `mft ta` snapshot).
pub const SNAPSHOT_COLUMNS: [&str; 16] = [
    "sma20",
    "ema20",
    "rsi14",
    "macd",
    "macd_signal",
    "macd_hist",
    "bb_upper",
    "bb_middle",
    "bb_lower",
    "atr14",
    "adx14",
    "plus_di14",
    "minus_di14",
    "stoch_k",
    "stoch_d",
    "obv",
];

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Param {
    pub name: String,
    pub default: f64,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct IndicatorInfo {
    pub name: String,
    /// Input arrays compute needs
    pub inputs: Vec<String>,
    pub params: Vec<Param>,
    pub outputs: Vec<String>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct IndicatorList {
    pub indicators: Vec<IndicatorInfo>,
    /// Indicator columns compute_for accepts (the `mft ta` snapshot), or "all"
    pub compute_for_columns: Vec<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct ComputeArgs {
    /// Indicator name from list_indicators, e.g. "rsi"
    pub indicator: String,
    /// Parameters by name, e.g. {"period": 14}; defaults from list_indicators
    pub params: Option<BTreeMap<String, f64>>,
    pub open: Option<Vec<f64>>,
    pub high: Option<Vec<f64>>,
    pub low: Option<Vec<f64>>,
    pub close: Option<Vec<f64>>,
    pub volume: Option<Vec<f64>>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Computed {
    pub indicator: String,
    /// The parameters used (given or default)
    pub params: BTreeMap<String, f64>,
    /// One array per output, as long as the input; null during warm-up
    pub outputs: BTreeMap<String, Vec<Option<f64>>>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct ComputeForArgs {
    /// EXCHANGE:TRADINGSYMBOL, e.g. NSE:INFY
    pub symbol: String,
    /// Candle interval, e.g. 15minute
    pub interval: String,
    /// Snapshot columns, e.g. ["rsi14", "ema20", "atr14"], or ["all"]
    pub indicators: Vec<String>,
    /// Only the last N rows (default 5, max 2000)
    pub last: Option<u32>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct SnapshotOut {
    /// Candle open time, RFC 3339 in IST
    pub time: String,
    pub close: f64,
    /// Indicator values by column; null during warm-up
    pub values: BTreeMap<String, Option<f64>>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct ComputedFor {
    pub symbol: String,
    pub interval: String,
    pub rows: Vec<SnapshotOut>,
}

#[derive(Clone)]
pub struct TechnicalAnalysis {
    ctx: McpContext,
    tool_router: ToolRouter<Self>,
}

fn period(p: &BTreeMap<String, f64>, name: &str) -> Result<usize, String> {
    let v = p[name];
    if !(v.is_finite() && v >= 1.0 && v.fract() == 0.0 && v <= crate::ta::MAX_PERIOD as f64) {
        return Err(format!(
            "{name} must be a whole number from 1 to {}, got {v}",
            crate::ta::MAX_PERIOD
        ));
    }
    Ok(v as usize)
}

/// Runs one indicator; `Err` is a message for the model.
pub fn compute(a: &ComputeArgs) -> Result<Computed, String> {
    let name = a.indicator.trim().to_ascii_lowercase();
    let Some(&(_, inputs, defaults, outputs)) = INDICATORS.iter().find(|s| s.0 == name) else {
        let known: Vec<&str> = INDICATORS.iter().map(|s| s.0).collect();
        return Err(format!(
            "unknown indicator {:?}; known: {}",
            a.indicator,
            known.join(", ")
        ));
    };
    let mut params: BTreeMap<String, f64> =
        defaults.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    for (k, v) in a.params.iter().flatten() {
        if !params.contains_key(k) {
            let names: Vec<&str> = defaults.iter().map(|d| d.0).collect();
            return Err(format!(
                "{name} has no parameter {k:?}; its parameters: {}",
                if names.is_empty() {
                    "none".into()
                } else {
                    names.join(", ")
                }
            ));
        }
        params.insert(k.clone(), *v);
    }
    let get = |n: &str| -> Result<&[f64], String> {
        let arr = match n {
            "open" => &a.open,
            "high" => &a.high,
            "low" => &a.low,
            "close" => &a.close,
            _ => &a.volume,
        };
        arr.as_deref().ok_or_else(|| {
            format!(
                "{name} needs the arrays {}; {n} is missing",
                inputs.join(", ")
            )
        })
    };
    let mut arrays = Vec::new();
    for n in inputs {
        arrays.push(get(n)?);
    }
    if arrays.iter().any(|x| x.len() > 100_000) {
        return Err("arrays longer than 100000 values are not accepted".into());
    }
    let ta = |e: crate::ta::TaError| format!("{name}: {e}");
    let series: Vec<Vec<f64>> = match name.as_str() {
        "sma" => vec![crate::ta::sma(arrays[0], period(&params, "period")?).map_err(ta)?],
        "ema" => vec![crate::ta::ema(arrays[0], period(&params, "period")?).map_err(ta)?],
        "wma" => vec![crate::ta::wma(arrays[0], period(&params, "period")?).map_err(ta)?],
        "rsi" => vec![crate::ta::rsi(arrays[0], period(&params, "period")?).map_err(ta)?],
        "roc" => vec![crate::ta::roc(arrays[0], period(&params, "period")?).map_err(ta)?],
        "macd" => {
            let m = crate::ta::macd(
                arrays[0],
                period(&params, "fast")?,
                period(&params, "slow")?,
                period(&params, "signal")?,
            )
            .map_err(ta)?;
            vec![m.macd, m.signal, m.hist]
        }
        "bbands" => {
            let b = crate::ta::bbands(
                arrays[0],
                period(&params, "period")?,
                params["k_up"],
                params["k_down"],
            )
            .map_err(ta)?;
            vec![b.upper, b.middle, b.lower]
        }
        "atr" => vec![
            crate::ta::atr(arrays[0], arrays[1], arrays[2], period(&params, "period")?)
                .map_err(ta)?,
        ],
        "adx" => {
            let d = crate::ta::adx(arrays[0], arrays[1], arrays[2], period(&params, "period")?)
                .map_err(ta)?;
            vec![d.adx, d.plus_di, d.minus_di]
        }
        "stoch" => {
            let s = crate::ta::stoch(
                arrays[0],
                arrays[1],
                arrays[2],
                period(&params, "fastk")?,
                period(&params, "slowk")?,
                period(&params, "slowd")?,
            )
            .map_err(ta)?;
            vec![s.k, s.d]
        }
        "donchian" => {
            let d = crate::ta::donchian(arrays[0], arrays[1], period(&params, "period")?)
                .map_err(ta)?;
            vec![d.upper, d.middle, d.lower]
        }
        "supertrend" => {
            let s = crate::ta::supertrend(
                arrays[0],
                arrays[1],
                arrays[2],
                period(&params, "period")?,
                params["multiplier"],
            )
            .map_err(ta)?;
            vec![s.line, s.direction]
        }
        _ => vec![crate::ta::obv(arrays[0], arrays[1]).map_err(ta)?],
    };
    Ok(Computed {
        indicator: name,
        params,
        outputs: outputs
            .iter()
            .zip(series)
            .map(|(o, v)| (o.to_string(), v.into_iter().map(finite).collect()))
            .collect(),
    })
}

fn snapshot_value(r: &crate::ta::SnapshotRow, col: &str) -> Option<f64> {
    match col {
        "sma20" => r.sma20,
        "ema20" => r.ema20,
        "rsi14" => r.rsi14,
        "macd" => r.macd,
        "macd_signal" => r.macd_signal,
        "macd_hist" => r.macd_hist,
        "bb_upper" => r.bb_upper,
        "bb_middle" => r.bb_middle,
        "bb_lower" => r.bb_lower,
        "atr14" => r.atr14,
        "adx14" => r.adx14,
        "plus_di14" => r.plus_di14,
        "minus_di14" => r.minus_di14,
        "stoch_k" => r.stoch_k,
        "stoch_d" => r.stoch_d,
        _ => r.obv,
    }
    .and_then(finite)
}

#[tool_router]
impl TechnicalAnalysis {
    pub fn new(ctx: McpContext) -> Self {
        Self {
            ctx,
            tool_router: Self::tool_router(),
        }
    }

    #[tool(
        description = "Indicators compute knows: names, input arrays, parameters with defaults, outputs.",
        annotations(read_only_hint = true)
    )]
    async fn list_indicators(&self) -> Result<Json<IndicatorList>, String> {
        Ok(Json(IndicatorList {
            indicators: INDICATORS
                .iter()
                .map(|(n, i, p, o)| IndicatorInfo {
                    name: n.to_string(),
                    inputs: i.iter().map(|s| s.to_string()).collect(),
                    params: p
                        .iter()
                        .map(|(k, v)| Param {
                            name: k.to_string(),
                            default: *v,
                        })
                        .collect(),
                    outputs: o.iter().map(|s| s.to_string()).collect(),
                })
                .collect(),
            compute_for_columns: SNAPSHOT_COLUMNS.iter().map(|s| s.to_string()).collect(),
        }))
    }

    #[tool(
        description = "Compute one indicator on arrays given inline (TA-Lib compatible; null during warm-up).",
        annotations(read_only_hint = true)
    )]
    async fn compute(
        &self,
        Parameters(a): Parameters<ComputeArgs>,
    ) -> Result<Json<Computed>, String> {
        compute(&a).map(Json)
    }

    #[tool(
        description = "The `mft ta` indicator snapshot of a stored series: the last N rows of the chosen columns.",
        annotations(read_only_hint = true)
    )]
    async fn compute_for(
        &self,
        Parameters(a): Parameters<ComputeForArgs>,
    ) -> Result<Json<ComputedFor>, String> {
        let key = parse_symbol(&a.symbol)?;
        let interval = parse_interval(&a.interval)?;
        let mut cols: Vec<&str> = Vec::new();
        for i in &a.indicators {
            let i = i.trim().to_ascii_lowercase();
            if i == "all" {
                cols = SNAPSHOT_COLUMNS.to_vec();
                break;
            }
            match SNAPSHOT_COLUMNS.iter().find(|c| **c == i) {
                Some(c) => cols.push(c),
                None => {
                    return Err(format!(
                        "unknown column {i:?}; compute_for knows: {} (or \"all\"); use compute for other periods",
                        SNAPSHOT_COLUMNS.join(", ")
                    ));
                }
            }
        }
        if cols.is_empty() {
            return Err(
                "name at least one column in indicators, e.g. [\"rsi14\"] or [\"all\"]".into(),
            );
        }
        let last = a.last.unwrap_or(5).clamp(1, 2000) as usize;
        let candles = self
            .ctx
            .store
            .candles(&key, interval, None, None)
            .await
            .map_err(|e| e.to_string())?;
        if candles.is_empty() {
            return Err(format!(
                "no candles for {key} {interval}; known series: {}",
                known_series_text(&self.ctx.store).await
            ));
        }
        let rows = crate::ta::snapshot(&candles).map_err(|e| e.to_string())?;
        let skip = rows.len().saturating_sub(last);
        Ok(Json(ComputedFor {
            symbol: key.to_string(),
            interval: interval.to_string(),
            rows: rows[skip..]
                .iter()
                .map(|r| SnapshotOut {
                    time: ist(r.time),
                    close: r.close,
                    values: cols
                        .iter()
                        .map(|c| (c.to_string(), snapshot_value(r, c)))
                        .collect(),
                })
                .collect(),
        }))
    }
}

#[tool_handler(
    router = self.tool_router,
    name = "technical_analysis",
    version = "0.1.0",
    instructions = "Stateless technical indicators (TA-Lib compatible) on inline arrays or stored candles."
)]
impl ServerHandler for TechnicalAnalysis {}
