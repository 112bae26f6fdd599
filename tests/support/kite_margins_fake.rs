//! A local fake of the Kite reads the risk engine's execution checks make: `POST /margins/orders`,
//! `GET /user/margins` and `GET /quote`, answering Kite's real samples (tests/fixtures/kite/mocks)
//! with scriptable figures and errors, recording every request.
#![allow(dead_code)]

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

pub const API_KEY: &str = "risk_api_key";
pub const ACCESS_TOKEN: &str = "risk_access_token";

const ORDER_MARGINS_JSON: &str = include_str!("../fixtures/kite/mocks/order_margins.json");
const MARGINS_JSON: &str = include_str!("../fixtures/kite/mocks/margins.json");
const QUOTE_JSON: &str = include_str!("../fixtures/kite/mocks/quote.json");

/// One request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub query: Option<String>,
    pub authorization: Option<String>,
    pub kite_version: Option<String>,
    pub content_type: Option<String>,
    pub body: Option<Value>,
}

#[derive(Default)]
struct FakeState {
    seen: Vec<Seen>,
    /// Overrides of data[0].total (rupees) and equity.net (rupees).
    total: Option<f64>,
    net: Option<f64>,
    /// Overrides of NSE:INFY's circuit limits (rupees).
    band: Option<(f64, f64)>,
    /// The next answer to any request: (HTTP status, error_type, message).
    fail: Option<(u16, String, String)>,
}

pub struct KiteMarginsFake {
    pub url: String,
    state: Arc<Mutex<FakeState>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for KiteMarginsFake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl KiteMarginsFake {
    pub async fn start() -> KiteMarginsFake {
        let state = Arc::new(Mutex::new(FakeState::default()));
        let app = Router::new()
            .route("/margins/orders", post(order_margins))
            .route("/user/margins", get(user_margins))
            .route("/quote", get(quote))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the Kite margins fake");
        let url = format!("http://{}", listener.local_addr().expect("local addr"));
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        KiteMarginsFake { url, state, task }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.lock().seen.clone()
    }

    pub fn set_required(&self, rupees: f64) {
        self.lock().total = Some(rupees);
    }

    pub fn set_available(&self, rupees: f64) {
        self.lock().net = Some(rupees);
    }

    pub fn set_band(&self, lower: f64, upper: f64) {
        self.lock().band = Some((lower, upper));
    }

    pub fn fail_next(&self, status: u16, error_type: &str, message: &str) {
        self.lock().fail = Some((status, error_type.into(), message.into()));
    }
}

fn header(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Records the request; answers a scripted failure or a missing/bad auth with Kite's envelope.
#[allow(clippy::result_large_err)]
fn check(
    state: &Mutex<FakeState>,
    path: &str,
    query: Option<String>,
    headers: &HeaderMap,
    body: Option<Value>,
) -> Result<(), Response> {
    let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
    s.seen.push(Seen {
        path: path.into(),
        query,
        authorization: header(headers, "authorization"),
        kite_version: header(headers, "x-kite-version"),
        content_type: header(headers, "content-type"),
        body,
    });
    let error = |status: u16, error_type: &str, message: &str| {
        (
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            Json(json!({"status": "error", "message": message, "data": null, "error_type": error_type})),
        )
            .into_response()
    };
    if let Some((status, t, m)) = s.fail.take() {
        return Err(error(status, &t, &m));
    }
    if header(headers, "authorization").as_deref()
        != Some(format!("token {API_KEY}:{ACCESS_TOKEN}").as_str())
    {
        return Err(error(
            403,
            "TokenException",
            "Incorrect `api_key` or `access_token`.",
        ));
    }
    Ok(())
}

async fn order_margins(
    State(state): State<Arc<Mutex<FakeState>>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let parsed: Option<Value> = serde_json::from_str(&body).ok();
    if let Err(r) = check(&state, "/margins/orders", None, &headers, parsed.clone()) {
        return r;
    }
    let Some(Value::Array(orders)) = parsed else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"status": "error", "message": "invalid JSON body", "error_type": "InputException"})),
        )
            .into_response();
    };
    let total = state.lock().unwrap_or_else(|e| e.into_inner()).total;
    let mut sample: Value = serde_json::from_str(ORDER_MARGINS_JSON).expect("fixture");
    let template = sample["data"][0].clone();
    let data: Vec<Value> = orders
        .iter()
        .map(|o| {
            let mut m = template.clone();
            m["tradingsymbol"] = o["tradingsymbol"].clone();
            m["exchange"] = o["exchange"].clone();
            if let Some(t) = total {
                m["total"] = json!(t);
            }
            m
        })
        .collect();
    sample["data"] = Value::Array(data);
    Json(sample).into_response()
}

async fn user_margins(State(state): State<Arc<Mutex<FakeState>>>, headers: HeaderMap) -> Response {
    if let Err(r) = check(&state, "/user/margins", None, &headers, None) {
        return r;
    }
    let net = state.lock().unwrap_or_else(|e| e.into_inner()).net;
    let mut sample: Value = serde_json::from_str(MARGINS_JSON).expect("fixture");
    if let Some(n) = net {
        sample["data"]["equity"]["net"] = json!(n);
    }
    Json(sample).into_response()
}

async fn quote(
    State(state): State<Arc<Mutex<FakeState>>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = check(&state, "/quote", query.clone(), &headers, None) {
        return r;
    }
    let band = state.lock().unwrap_or_else(|e| e.into_inner()).band;
    let mut sample: Value = serde_json::from_str(QUOTE_JSON).expect("fixture");
    if let Some((lo, hi)) = band {
        sample["data"]["NSE:INFY"]["lower_circuit_limit"] = json!(lo);
        sample["data"]["NSE:INFY"]["upper_circuit_limit"] = json!(hi);
    }
    // Only the instruments asked for (`i=EXCHANGE:SYMBOL`, repeated) are answered.
    let asked: Vec<String> = query
        .unwrap_or_default()
        .split('&')
        .filter_map(|kv| kv.strip_prefix("i="))
        .map(|v| v.replace("%3A", ":").replace("%3a", ":"))
        .collect();
    if let Some(Value::Object(map)) = sample.get_mut("data") {
        map.retain(|k, _| asked.contains(k));
    }
    Json(sample).into_response()
}
