//! A local fake of the Kite Connect REST endpoints market data uses (instruments dump, historical
//! candles), shaped after Kite's real responses, recording every request and scriptable to fail.
#![allow(dead_code)]

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, Weekday};
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

pub const API_KEY: &str = "test_api_key";
pub const ACCESS_TOKEN: &str = "test_access_token";

/// The fixture dump served by default (tests keep their own fixtures; none come from outside the repo).
pub const INSTRUMENTS_CSV: &str = include_str!("../fixtures/kite/instruments.csv");

/// One request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub path: String,
    pub query: HashMap<String, String>,
    pub at: Instant,
    pub authorization: Option<String>,
    pub kite_version: Option<String>,
}

impl Recorded {
    pub fn is_historical(&self) -> bool {
        self.path.starts_with("/instruments/historical/")
    }

    /// `from`/`to` of a historical request, as the IST wall times Kite takes.
    pub fn span(&self) -> (NaiveDateTime, NaiveDateTime) {
        let p = |k: &str| {
            NaiveDateTime::parse_from_str(&self.query[k], "%Y-%m-%d %H:%M:%S")
                .unwrap_or_else(|e| panic!("bad {k} {:?}: {e}", self.query[k]))
        };
        (p("from"), p("to"))
    }
}

/// A scripted answer: an error envelope with this HTTP status.
#[derive(Debug, Clone)]
pub struct Failure {
    pub status: u16,
    pub error_type: String,
    pub message: String,
}

#[derive(Default)]
struct FakeState {
    requests: Vec<Recorded>,
    instruments_csv: String,
    historical_seen: usize,
    /// 1-based historical request number -> failure.
    fail_historical: HashMap<usize, Failure>,
    /// The next N requests (any endpoint) get 429.
    too_many: usize,
    /// Failures served to the next requests in order (any endpoint).
    queued: VecDeque<Failure>,
    /// When set, every historical answer is these candle rows (absurd-data tests).
    historical_rows: Option<Vec<Value>>,
}

/// The running fake. Dropping it stops the server.
pub struct KiteFake {
    pub url: String,
    state: Arc<Mutex<FakeState>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for KiteFake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl KiteFake {
    pub async fn start() -> KiteFake {
        let state = Arc::new(Mutex::new(FakeState {
            instruments_csv: INSTRUMENTS_CSV.to_string(),
            ..FakeState::default()
        }));
        let app = Router::new()
            .route("/instruments", get(instruments_all))
            .route("/instruments/{exchange}", get(instruments_exchange))
            .route(
                "/instruments/historical/{token}/{interval}",
                get(historical),
            )
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake Kite");
        let addr = listener.local_addr().expect("fake Kite address");
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("fake Kite server");
        });
        KiteFake {
            url: format!("http://{addr}"),
            state,
            task,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    pub fn historical_requests(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(Recorded::is_historical)
            .collect()
    }

    pub fn clear_requests(&self) {
        self.lock().requests.clear();
    }

    /// Serves `rows` (Kite candle arrays) as every historical answer from now on.
    pub fn set_historical_rows(&self, rows: Vec<Value>) {
        self.lock().historical_rows = Some(rows);
    }

    pub fn set_instruments_csv(&self, csv: &str) {
        self.lock().instruments_csv = csv.to_string();
    }

    /// The `n`th historical request from now on (1-based) answers with this error envelope.
    pub fn fail_historical(&self, n: usize, status: u16, error_type: &str, message: &str) {
        let mut s = self.lock();
        let at = s.historical_seen + n;
        s.fail_historical.insert(
            at,
            Failure {
                status,
                error_type: error_type.into(),
                message: message.into(),
            },
        );
    }

    /// The next `k` requests answer HTTP 429 "Too many requests".
    pub fn too_many_requests(&self, k: usize) {
        self.lock().too_many = k;
    }

    /// The next requests answer these failures, in order (empty `error_type`: plain-text body).
    pub fn queue_failure(&self, status: u16, error_type: &str, message: &str) {
        self.lock().queued.push_back(Failure {
            status,
            error_type: error_type.into(),
            message: message.into(),
        });
    }
}

/// Kite's JSON error envelope; an empty `error_type` sends `message` as a plain-text body instead
/// (what a proxy or gateway in front of Kite answers).
fn envelope(f: &Failure) -> Response {
    let status = StatusCode::from_u16(f.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if f.error_type.is_empty() {
        return (status, f.message.clone()).into_response();
    }
    (
        status,
        Json(json!({
            "status": "error",
            "message": f.message,
            "data": Value::Null,
            "error_type": f.error_type,
        })),
    )
        .into_response()
}

fn input_error(message: &str) -> Response {
    envelope(&Failure {
        status: 400,
        error_type: "InputException".into(),
        message: message.into(),
    })
}

fn parse_query(raw: Option<String>) -> HashMap<String, String> {
    url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

/// Records the request and serves a scripted failure if one is due.
fn record(
    state: &Mutex<FakeState>,
    path: String,
    query: HashMap<String, String>,
    headers: &HeaderMap,
) -> Option<Failure> {
    let at = Instant::now();
    let h = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
    let historical = path.starts_with("/instruments/historical/");
    s.requests.push(Recorded {
        path,
        query,
        at,
        authorization: h("authorization"),
        kite_version: h("x-kite-version"),
    });
    if historical {
        s.historical_seen += 1;
    }
    if s.too_many > 0 {
        s.too_many -= 1;
        return Some(Failure {
            status: 429,
            error_type: "NetworkException".into(),
            message: "Too many requests".into(),
        });
    }
    if let Some(f) = s.queued.pop_front() {
        return Some(f);
    }
    if historical {
        let n = s.historical_seen;
        if let Some(f) = s.fail_historical.remove(&n) {
            return Some(f);
        }
    }
    None
}

fn version_ok(headers: &HeaderMap) -> bool {
    headers.get("x-kite-version").and_then(|v| v.to_str().ok()) == Some("3")
}

fn token_error() -> Response {
    envelope(&Failure {
        status: 403,
        error_type: "TokenException".into(),
        message: "Incorrect `api_key` or `access_token`.".into(),
    })
}

fn csv_response(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/csv")], body).into_response()
}

async fn instruments_all(
    State(state): State<Arc<Mutex<FakeState>>>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    if let Some(f) = record(&state, "/instruments".into(), parse_query(q), &headers) {
        return envelope(&f);
    }
    // kiteconnect 1.0.1 sends the dump requests without Authorization (the dump is public).
    if !version_ok(&headers) {
        return input_error("missing X-Kite-Version header");
    }
    let csv = state
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .instruments_csv
        .clone();
    csv_response(csv)
}

async fn instruments_exchange(
    State(state): State<Arc<Mutex<FakeState>>>,
    Path(exchange): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    if let Some(f) = record(
        &state,
        format!("/instruments/{exchange}"),
        parse_query(q),
        &headers,
    ) {
        return envelope(&f);
    }
    if !version_ok(&headers) {
        return input_error("missing X-Kite-Version header");
    }
    let csv = state
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .instruments_csv
        .clone();
    let mut lines = csv.lines();
    let mut out = String::new();
    if let Some(header) = lines.next() {
        out.push_str(header);
        out.push('\n');
    }
    for line in lines {
        if line.rsplit(',').next() == Some(exchange.as_str()) {
            out.push_str(line);
            out.push('\n');
        }
    }
    csv_response(out)
}

fn max_span_days(interval: &str) -> Option<i64> {
    Some(match interval {
        "minute" => 60,
        "3minute" | "5minute" | "10minute" => 100,
        "15minute" | "30minute" => 200,
        "60minute" => 400,
        "day" => 2000,
        _ => return None,
    })
}

async fn historical(
    State(state): State<Arc<Mutex<FakeState>>>,
    Path((token, interval)): Path<(String, String)>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    let query = parse_query(q);
    if let Some(f) = record(
        &state,
        format!("/instruments/historical/{token}/{interval}"),
        query.clone(),
        &headers,
    ) {
        return envelope(&f);
    }
    let expected_auth = format!("token {API_KEY}:{ACCESS_TOKEN}");
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
    if !version_ok(&headers) || auth != Some(expected_auth.as_str()) {
        return token_error();
    }
    let Ok(token) = token.parse::<u32>() else {
        return input_error("invalid token");
    };
    let Some(max_days) = max_span_days(&interval) else {
        return input_error("invalid interval");
    };
    let parse = |k: &str| {
        query
            .get(k)
            .and_then(|v| NaiveDateTime::parse_from_str(v, "%Y-%m-%d %H:%M:%S").ok())
    };
    let (Some(from), Some(to)) = (parse("from"), parse("to")) else {
        return input_error("invalid from or to");
    };
    if from > to {
        return input_error("invalid from-to range");
    }
    if to - from > Duration::days(max_days) {
        return input_error(&format!("interval exceeds max limit: {max_days} days"));
    }
    let oi = query.get("oi").map(String::as_str) == Some("1");
    let scripted = state
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .historical_rows
        .clone();
    let candles = scripted.unwrap_or_else(|| generate_candles(token, &interval, from, to, oi));
    Json(json!({"status": "success", "data": {"candles": candles}})).into_response()
}

/// Deterministic bars for weekdays: 09:15-15:30 IST at the interval, or one 00:00 bar a day.
pub fn generate_candles(
    token: u32,
    interval: &str,
    from: NaiveDateTime,
    to: NaiveDateTime,
    oi: bool,
) -> Vec<Value> {
    let minutes: i64 = match interval {
        "minute" => 1,
        "day" => 0,
        other => other.trim_end_matches("minute").parse().unwrap_or(1),
    };
    let open_time = NaiveTime::from_hms_opt(9, 15, 0).unwrap_or(NaiveTime::MIN);
    let close_time = NaiveTime::from_hms_opt(15, 30, 0).unwrap_or(NaiveTime::MIN);
    let mut out = Vec::new();
    let mut day: NaiveDate = from.date();
    while day <= to.date() {
        if !matches!(day.weekday(), Weekday::Sat | Weekday::Sun) {
            let mut stamps = Vec::new();
            if minutes == 0 {
                stamps.push(day.and_time(NaiveTime::MIN));
            } else {
                let mut t = day.and_time(open_time);
                while t < day.and_time(close_time) {
                    stamps.push(t);
                    t += Duration::minutes(minutes);
                }
            }
            for ts in stamps.into_iter().filter(|ts| *ts >= from && *ts <= to) {
                let n = ts.and_utc().timestamp() / 60;
                let base = 100.0 + f64::from(token % 997) + (n % 1000) as f64 * 0.05;
                let open = base;
                let close = base + if n % 2 == 0 { 0.35 } else { -0.25 };
                let high = open.max(close) + 0.4;
                let low = open.min(close) - 0.3;
                let volume = 1000 + (n % 5000);
                let stamp = ts.format("%Y-%m-%dT%H:%M:%S+0530").to_string();
                let mut row = vec![
                    json!(stamp),
                    json!(open),
                    json!(high),
                    json!(low),
                    json!(close),
                    json!(volume),
                ];
                if oi {
                    row.push(json!(500_000 + (n % 777)));
                }
                out.push(Value::Array(row));
            }
        }
        match day.succ_opt() {
            Some(next) => day = next,
            None => break,
        }
    }
    out
}
