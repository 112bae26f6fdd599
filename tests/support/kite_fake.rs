//! A local fake of Kite Connect shaped after Kite's real responses, recording every request
//! and scriptable to fail: market data (instruments dump, historical candles, quotes, ticker)
//! and a small exchange (orders placed with tags, filled at scripted prices at once, partly,
//! later or never, rejected with reasons, cancelled; positions; updates pushed as postbacks
//! and ticker order messages; a response dropped after the order was taken).
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
/// The app secret the fake checks `/session/token` checksums against.
pub const API_SECRET: &str = "test_api_secret";
/// A request token the fake accepts once (tests may add more with `allow_request_token`).
pub const REQUEST_TOKEN: &str = "goodRequestToken42";
/// The user every session belongs to.
pub const USER_ID: &str = "AB1234";

/// Kite's real response samples (copied from kiteconnect-mocks).
pub const PROFILE_JSON: &str = include_str!("../fixtures/kite/mocks/profile.json");
pub const MARGINS_JSON: &str = include_str!("../fixtures/kite/mocks/margins.json");
/// Zerodha's kiteconnect-mocks session sample, its redacted fields filled with fake values; the
/// fake replaces user_id, api_key and access_token per session.
pub const GENERATE_SESSION_JSON: &str =
    include_str!("../fixtures/kite/mocks/generate_session.json");
/// Raw ticker packets (base64, no frame header): a 44-byte quote and a 184-byte full packet
/// for token 408065 (NSE:INFY), last price 1573.15.
pub const TICKER_QUOTE_PACKET: &str = include_str!("../fixtures/kite/mocks/ticker_quote.packet");
pub const TICKER_FULL_PACKET: &str = include_str!("../fixtures/kite/mocks/ticker_full.packet");

/// A ticker frame (u16 count, then u16 length + payload per packet) around raw packets.
pub fn frame(packets: &[Vec<u8>]) -> Vec<u8> {
    let mut out = (packets.len() as u16).to_be_bytes().to_vec();
    for p in packets {
        out.extend_from_slice(&(p.len() as u16).to_be_bytes());
        out.extend_from_slice(p);
    }
    out
}

/// An 8-byte LTP packet.
pub fn ltp_packet(token: u32, price_paise: u32) -> Vec<u8> {
    let mut p = token.to_be_bytes().to_vec();
    p.extend_from_slice(&price_paise.to_be_bytes());
    p
}

/// The fixture packets, decoded.
pub fn fixture_packets() -> Vec<Vec<u8>> {
    use base64::Engine as _;
    [TICKER_QUOTE_PACKET, TICKER_FULL_PACKET]
        .iter()
        .map(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .expect("fixture packet is base64")
        })
        .collect()
}

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
    /// Access tokens the authenticated endpoints accept.
    tokens: Vec<String>,
    /// Request tokens `/session/token` accepts (each once).
    request_tokens: Vec<String>,
    /// Every access token issued by `/session/token`.
    issued: Vec<String>,
    /// `/session/token` answers this instead (e.g. 500).
    session_failure: Option<Failure>,
    /// Ticker connections: (query, subscribe/mode messages received).
    ticker_connections: Vec<HashMap<String, String>>,
    ticker_messages: Vec<String>,
    /// Scripted candles per instrument token (served instead of generated ones).
    series: HashMap<u32, Vec<Value>>,
}

/// The running fake. Dropping it stops the server.
pub struct KiteFake {
    pub url: String,
    /// The ticker WebSocket (ZERODHA_TICKER_URL).
    pub ticker_url: String,
    state: Arc<Mutex<FakeState>>,
    task: tokio::task::JoinHandle<()>,
    pusher: tokio::task::JoinHandle<()>,
    ticks: tokio::sync::broadcast::Sender<TickerCmd>,
    exchange: Arc<Mutex<Exchange>>,
}

#[derive(Debug, Clone)]
enum TickerCmd {
    Frame(Vec<u8>),
    Text(String),
    Close,
}

impl Drop for KiteFake {
    fn drop(&mut self) {
        self.task.abort();
        self.pusher.abort();
    }
}

impl KiteFake {
    pub async fn start() -> KiteFake {
        let state = Arc::new(Mutex::new(FakeState {
            instruments_csv: INSTRUMENTS_CSV.to_string(),
            tokens: vec![ACCESS_TOKEN.to_string()],
            request_tokens: vec![REQUEST_TOKEN.to_string()],
            ..FakeState::default()
        }));
        let (ticks, _) = tokio::sync::broadcast::channel::<TickerCmd>(1024);
        let exchange = Arc::new(Mutex::new(Exchange::default()));
        let app = Router::new()
            // POST /orders/{variety} places; GET /orders/{order_id} is the history.
            .route("/orders/{id}", get(order_history).post(place_order))
            .route("/orders", get(list_orders))
            .route("/orders/{id}/trades", get(order_trades))
            .route(
                "/orders/{variety}/{order_id}",
                axum::routing::delete(cancel_order).put(modify_order),
            )
            .route("/portfolio/positions", get(positions))
            .layer(axum::Extension(exchange.clone()))
            .route("/session/token", axum::routing::post(session_token))
            .route("/user/profile", get(profile))
            .route("/user/margins", get(margins))
            .route("/quote/ltp", get(quote_ltp))
            .route("/margins/orders", axum::routing::post(order_margins))
            .route("/quote", get(quote_full))
            .route("/ws", get(ticker_ws))
            .layer(axum::Extension(ticks.clone()))
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
        let pusher = {
            let exchange = exchange.clone();
            let ticks = ticks.clone();
            tokio::spawn(async move {
                loop {
                    push_updates(&exchange, &ticks).await;
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                }
            })
        };
        KiteFake {
            url: format!("http://{addr}"),
            ticker_url: format!("ws://{addr}/ws"),
            state,
            task,
            pusher,
            ticks,
            exchange,
        }
    }

    /// Sends a binary frame to every connected ticker client.
    pub fn send_frame(&self, frame: Vec<u8>) -> usize {
        self.ticks.send(TickerCmd::Frame(frame)).unwrap_or(0)
    }

    /// Closes every ticker connection (the client reconnects).
    pub fn drop_ticker(&self) {
        let _ = self.ticks.send(TickerCmd::Close);
    }

    /// Ticker connections so far (their query: api_key, access_token).
    pub fn ticker_connections(&self) -> Vec<HashMap<String, String>> {
        self.lock().ticker_connections.clone()
    }

    /// Text messages (subscribe, mode) received from ticker clients.
    pub fn ticker_messages(&self) -> Vec<String> {
        self.lock().ticker_messages.clone()
    }

    /// From now on every authenticated endpoint answers 403 TokenException (the session died).
    pub fn revoke_tokens(&self) {
        self.lock().tokens.clear();
    }

    /// Serves these candles (ts, open, high, low, close, volume) for `token` from now on.
    pub fn set_series(&self, token: u32, candles: &[mft::domain::Candle]) {
        let rows = candles
            .iter()
            .map(|c| {
                let ts =
                    c.ts.with_timezone(&chrono_tz::Asia::Kolkata)
                        .format("%Y-%m-%dT%H:%M:%S+0530")
                        .to_string();
                json!([ts, c.open, c.high, c.low, c.close, c.volume])
            })
            .collect();
        self.lock().series.insert(token, rows);
    }

    pub fn allow_request_token(&self, t: &str) {
        self.lock().request_tokens.push(t.to_string());
    }

    /// Access tokens issued by `/session/token`.
    pub fn issued_tokens(&self) -> Vec<String> {
        self.lock().issued.clone()
    }

    /// `/session/token` answers this failure (until cleared with None).
    pub fn fail_session(&self, status: u16, error_type: &str, message: &str) {
        self.lock().session_failure = Some(Failure {
            status,
            error_type: error_type.into(),
            message: message.into(),
        });
    }

    pub fn clear_session_failure(&self) {
        self.lock().session_failure = None;
    }

    /// Requests to `path` so far.
    pub fn requests_to(&self, path: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
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
    if !version_ok(&headers) || !authorized(&state, &headers) {
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
    let series = state
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .series
        .get(&token)
        .cloned();
    let candles = match (scripted, series) {
        (Some(rows), _) => rows,
        (None, Some(rows)) => rows
            .into_iter()
            .filter(|r| {
                r[0].as_str()
                    .and_then(|s| NaiveDateTime::parse_from_str(&s[..19], "%Y-%m-%dT%H:%M:%S").ok())
                    .is_some_and(|t| t >= from && t <= to)
            })
            .collect(),
        (None, None) => generate_candles(token, &interval, from, to, oi),
    };
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

/// Records the request, then answers it with the scripted failure or, for a bad token, Kite's
/// TokenException; None when the handler should go on.
fn admit(
    state: &Mutex<FakeState>,
    path: String,
    query: HashMap<String, String>,
    headers: &HeaderMap,
) -> Option<Response> {
    if let Some(f) = record(state, path, query, headers) {
        return Some(envelope(&f));
    }
    if !authorized(state, headers) {
        return Some(token_error());
    }
    None
}

/// Whether the request carries `token <API_KEY>:<an accepted access token>`.
fn authorized(state: &Mutex<FakeState>, headers: &HeaderMap) -> bool {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let s = state.lock().unwrap_or_else(|e| e.into_inner());
    s.tokens
        .iter()
        .any(|t| auth == format!("token {API_KEY}:{t}"))
}

fn success(data: Value) -> Response {
    Json(json!({"status": "success", "data": data})).into_response()
}

/// POST /session/token: form api_key, request_token, checksum = sha256(api_key + request_token
/// + api_secret). Issues a fresh access token for user AB1234.
async fn session_token(
    State(state): State<Arc<Mutex<FakeState>>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    use sha2::Digest as _;
    let form = parse_query(Some(body));
    if let Some(f) = record(&state, "/session/token".into(), form.clone(), &headers) {
        return envelope(&f);
    }
    if let Some(f) = state
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .session_failure
        .clone()
    {
        return envelope(&f);
    }
    let get = |k: &str| form.get(k).cloned().unwrap_or_default();
    let (api_key, request_token, checksum) =
        (get("api_key"), get("request_token"), get("checksum"));
    if api_key != API_KEY {
        return token_error();
    }
    let want = hex::encode(sha2::Sha256::digest(
        format!("{api_key}{request_token}{API_SECRET}").as_bytes(),
    ));
    if checksum != want {
        return envelope(&Failure {
            status: 403,
            error_type: "TokenException".into(),
            message: "Invalid checksum".into(),
        });
    }
    let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
    let Some(i) = s.request_tokens.iter().position(|t| *t == request_token) else {
        return envelope(&Failure {
            status: 403,
            error_type: "TokenException".into(),
            message: "Token is invalid or has expired.".into(),
        });
    };
    s.request_tokens.remove(i);
    let token = format!("issued_access_token_{}", s.issued.len() + 1);
    s.issued.push(token.clone());
    s.tokens.push(token.clone());
    drop(s);
    let mut data: Value = serde_json::from_str::<Value>(GENERATE_SESSION_JSON)
        .expect("generate_session fixture")["data"]
        .clone();
    data["user_id"] = json!(USER_ID);
    data["api_key"] = json!(API_KEY);
    data["access_token"] = json!(token);
    success(data)
}

async fn profile(State(state): State<Arc<Mutex<FakeState>>>, headers: HeaderMap) -> Response {
    if let Some(refused) = admit(&state, "/user/profile".into(), HashMap::new(), &headers) {
        return refused;
    }
    let v: Value = serde_json::from_str(PROFILE_JSON).expect("profile fixture");
    success(v["data"].clone())
}

async fn margins(State(state): State<Arc<Mutex<FakeState>>>, headers: HeaderMap) -> Response {
    if let Some(refused) = admit(&state, "/user/margins".into(), HashMap::new(), &headers) {
        return refused;
    }
    let v: Value = serde_json::from_str(MARGINS_JSON).expect("margins fixture");
    success(v["data"].clone())
}

/// POST /margins/orders (the risk engine's INSUFFICIENT_CAPITAL read): a fifth of each order's
/// value as its margin.
async fn order_margins(
    State(state): State<Arc<Mutex<FakeState>>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    if !authorized(&state, &headers) {
        return token_error();
    }
    let orders: Vec<Value> = serde_json::from_str(&body).unwrap_or_default();
    let data: Vec<Value> = orders
        .iter()
        .map(|o| {
            let qty = o["quantity"].as_f64().unwrap_or(0.0);
            let price = o["price"].as_f64().unwrap_or(0.0);
            json!({
                "tradingsymbol": o["tradingsymbol"],
                "exchange": o["exchange"],
                "total": qty * price / 5.0,
            })
        })
        .collect();
    success(Value::Array(data))
}

/// GET /quote?i=NSE:INFY&i=... (the risk engine's CIRCUIT_LIMIT read): no circuit band (zeros).
async fn quote_full(
    State(state): State<Arc<Mutex<FakeState>>>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    if !authorized(&state, &headers) {
        return token_error();
    }
    let mut data = serde_json::Map::new();
    for (k, name) in url::form_urlencoded::parse(q.unwrap_or_default().as_bytes()).into_owned() {
        if k == "i" {
            data.insert(
                name,
                json!({"lower_circuit_limit": 0.0, "upper_circuit_limit": 0.0}),
            );
        }
    }
    success(Value::Object(data))
}

/// GET /quote/ltp?i=NSE:INFY&i=...: prices from the instruments fixture's tokens.
async fn quote_ltp(
    State(state): State<Arc<Mutex<FakeState>>>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    let pairs: Vec<(String, String)> =
        url::form_urlencoded::parse(q.clone().unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    if let Some(refused) = admit(&state, "/quote/ltp".into(), parse_query(q), &headers) {
        return refused;
    }
    let csv = state
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .instruments_csv
        .clone();
    let mut data = serde_json::Map::new();
    for (_, name) in pairs.iter().filter(|(k, _)| k == "i") {
        let Some((ex, sym)) = name.split_once(':') else {
            continue;
        };
        if let Some(line) = csv.lines().find(|l| {
            let c: Vec<&str> = l.split(',').collect();
            c.get(2) == Some(&sym) && c.last() == Some(&ex)
        }) {
            let token: u32 = line
                .split(',')
                .next()
                .and_then(|t| t.parse().ok())
                .unwrap_or(0);
            data.insert(
                name.clone(),
                json!({"instrument_token": token, "last_price": 1573.15}),
            );
        }
    }
    success(Value::Object(data))
}

/// The ticker WebSocket: checks api_key/access_token in the query, records subscriptions, and
/// forwards frames the test sends (`send_frame`); `drop_ticker` closes every connection.
async fn ticker_ws(
    State(state): State<Arc<Mutex<FakeState>>>,
    axum::Extension(ticks): axum::Extension<tokio::sync::broadcast::Sender<TickerCmd>>,
    RawQuery(q): RawQuery,
    ws: axum::extract::ws::WebSocketUpgrade,
) -> Response {
    let query = parse_query(q);
    let ok = query.get("api_key").map(String::as_str) == Some(API_KEY)
        && query.get("access_token").is_some_and(|t| {
            state
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .tokens
                .contains(t)
        });
    if !ok {
        return (
            StatusCode::FORBIDDEN,
            Json(json!({"status":"error","message":"Authentication failed."})),
        )
            .into_response();
    }
    state
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .ticker_connections
        .push(query);
    let mut rx = ticks.subscribe();
    ws.on_upgrade(move |mut socket| async move {
        use axum::extract::ws::Message;
        loop {
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    Ok(TickerCmd::Frame(f)) => {
                        if socket.send(Message::Binary(f.into())).await.is_err() { return; }
                    }
                    Ok(TickerCmd::Text(t)) => {
                        if socket.send(Message::Text(t.into())).await.is_err() { return; }
                    }
                    Ok(TickerCmd::Close) | Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                        let _ = socket.send(Message::Close(None)).await;
                        return;
                    }
                    Err(_) => {}
                },
                msg = socket.recv() => match msg {
                    Some(Ok(Message::Text(t))) => state
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .ticker_messages
                        .push(t.to_string()),
                    Some(Ok(_)) => {}
                    _ => return,
                },
            }
        }
    })
}

// ---------------------------------------------------------------------------------------------
// The exchange: orders (place, list, history, cancel), positions, fills at scripted prices,
// rejections, postbacks (good and bad checksums), ticker order messages, dropped responses.
// ---------------------------------------------------------------------------------------------

/// Kite's postback sample (the template of every postback the fake sends).
pub const POSTBACK_JSON: &str = include_str!("../fixtures/kite/mocks/postback.json");

/// One order at the fake exchange.
#[derive(Debug, Clone)]
pub struct FakeOrder {
    pub order_id: String,
    pub tag: Option<String>,
    pub exchange: String,
    pub tradingsymbol: String,
    pub side: String,
    pub order_type: String,
    pub product: String,
    pub quantity: i64,
    /// Rupees.
    pub price: f64,
    pub trigger_price: f64,
    pub market_protection: Option<String>,
    pub status: String,
    pub status_message: Option<String>,
    pub filled: i64,
    /// Rupees, average of the fills.
    pub average_price: f64,
    pub form: HashMap<String, String>,
    pub seq: u64,
    /// Each fill (exchange trade) of the order: quantity and price in rupees.
    pub trades: Vec<(i64, f64)>,
}

/// What happens to the next placed order (else: the market decides).
#[derive(Debug, Clone)]
pub enum Script {
    /// Recorded, then answered HTTP 500 (as if the connection broke after Kite took it).
    DropResponse,
    /// Refused at placement with an InputException / OrderException envelope.
    RefuseAtPlacement(String),
    /// Accepted, then REJECTED with this status message.
    Reject(String),
    /// Accepted and filled only this much at once (the rest stays open).
    Partial(i64),
    /// Accepted and left OPEN whatever the price.
    Hold,
}

#[derive(Default)]
pub struct Exchange {
    pub orders: Vec<FakeOrder>,
    /// Last price per tradingsymbol, rupees.
    prices: HashMap<String, f64>,
    scripts: VecDeque<Script>,
    held: std::collections::HashSet<String>,
    next_id: u64,
    postback_url: Option<String>,
    postback_secret: String,
    /// Send order updates as ticker text frames too.
    ticker_orders: bool,
    /// Updates queued for delivery (order ids), drained by the pusher task.
    outbox: Vec<(String, bool)>,
}

impl KiteFake {
    fn exchange(&self) -> std::sync::MutexGuard<'_, Exchange> {
        self.exchange.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets the market price of a symbol (rupees) and fills whatever it reaches.
    pub fn set_market(&self, symbol: &str, rupees: f64) {
        let mut x = self.exchange();
        x.prices.insert(symbol.to_string(), rupees);
        let ids: Vec<String> = x.orders.iter().map(|o| o.order_id.clone()).collect();
        for id in ids {
            x.try_fill(&id);
        }
    }

    /// The next placed order follows this script.
    pub fn script(&self, s: Script) {
        self.exchange().scripts.push_back(s);
    }

    /// Fills `qty` more of an order at `rupees` (a manual, scripted fill).
    pub fn fill(&self, order_id: &str, qty: i64, rupees: f64) {
        let mut x = self.exchange();
        x.fill_at(order_id, qty, rupees);
    }

    /// Postbacks go to this URL (the status server's /kite/postback), signed with `secret`.
    pub fn postbacks_to(&self, url: &str, secret: &str) {
        let mut x = self.exchange();
        x.postback_url = Some(url.to_string());
        x.postback_secret = secret.to_string();
    }

    /// Order updates are also sent as ticker text frames.
    pub fn ticker_order_updates(&self, on: bool) {
        self.exchange().ticker_orders = on;
    }

    pub fn orders(&self) -> Vec<FakeOrder> {
        self.exchange().orders.clone()
    }

    pub fn orders_tagged(&self, tag: &str) -> Vec<FakeOrder> {
        self.orders()
            .into_iter()
            .filter(|o| o.tag.as_deref() == Some(tag))
            .collect()
    }

    pub fn order(&self, order_id: &str) -> Option<FakeOrder> {
        self.orders().into_iter().find(|o| o.order_id == order_id)
    }

    /// Net quantity per (symbol, product) from the fills.
    pub fn net(&self, symbol: &str, product: &str) -> i64 {
        self.exchange().net(symbol, product).0
    }

    /// The postback body Kite would send for an order now, signed with `secret`.
    pub fn postback_body(&self, order_id: &str, secret: &str) -> String {
        let x = self.exchange();
        let o = x
            .orders
            .iter()
            .find(|o| o.order_id == order_id)
            .expect("order exists");
        postback_json(o, secret).to_string()
    }

    /// Delivers queued updates (postbacks, ticker frames). The pusher task calls this every
    /// few milliseconds; tests may call it to deliver at once.
    pub async fn push_updates(&self) {
        push_updates(&self.exchange, &self.ticks).await;
    }
}

async fn push_updates(
    exchange: &Arc<Mutex<Exchange>>,
    ticks: &tokio::sync::broadcast::Sender<TickerCmd>,
) {
    let (bodies, url, ticker) = {
        let mut x = exchange.lock().unwrap_or_else(|e| e.into_inner());
        let outbox = std::mem::take(&mut x.outbox);
        let mut bodies = Vec::new();
        for (id, _) in outbox {
            if let Some(o) = x.orders.iter().find(|o| o.order_id == id) {
                bodies.push(postback_json(o, &x.postback_secret));
            }
        }
        (bodies, x.postback_url.clone(), x.ticker_orders)
    };
    for b in bodies {
        if ticker {
            let frame = json!({"type": "order", "data": b}).to_string();
            let _ = ticks.send(TickerCmd::Text(frame));
        }
        if let Some(url) = &url {
            let _ = reqwest::Client::new()
                .post(url)
                .header("content-type", "application/json")
                .body(b.to_string())
                .send()
                .await;
        }
    }
}

fn kite_now() -> String {
    chrono::Utc::now()
        .with_timezone(&chrono_tz::Asia::Kolkata)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

fn order_json(o: &FakeOrder) -> Value {
    let ts = kite_now();
    json!({
        "placed_by": USER_ID,
        "order_id": o.order_id,
        "exchange_order_id": format!("1{}", o.order_id),
        "parent_order_id": null,
        "status": o.status,
        "status_message": o.status_message,
        "status_message_raw": o.status_message,
        "order_timestamp": ts,
        "exchange_update_timestamp": ts,
        "exchange_timestamp": ts,
        "variety": "regular",
        "modified": false,
        "exchange": o.exchange,
        "tradingsymbol": o.tradingsymbol,
        "instrument_token": 408065,
        "order_type": o.order_type,
        "transaction_type": o.side,
        "validity": "DAY",
        "product": o.product,
        "quantity": o.quantity,
        "disclosed_quantity": 0,
        "price": o.price,
        "trigger_price": o.trigger_price,
        "average_price": o.average_price,
        "filled_quantity": o.filled,
        "pending_quantity": if o.status == "OPEN" || o.status == "TRIGGER PENDING" { o.quantity - o.filled } else { 0 },
        "cancelled_quantity": if o.status == "CANCELLED" { o.quantity - o.filled } else { 0 },
        "market_protection": 0,
        "meta": {},
        "tag": o.tag,
        "guid": format!("g{}", o.order_id),
    })
}

/// Kite's postback for `o`, checksum sha256(order_id + order_timestamp + secret).
pub fn postback_json(o: &FakeOrder, secret: &str) -> Value {
    use sha2::Digest as _;
    let mut v: Value = serde_json::from_str(POSTBACK_JSON).expect("postback fixture");
    let base = order_json(o);
    if let (Value::Object(dst), Value::Object(src)) = (&mut v, base) {
        for (k, val) in src {
            dst.insert(k, val);
        }
    }
    let ts = v["order_timestamp"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    v["unfilled_quantity"] = json!(o.quantity - o.filled);
    v["checksum"] = json!(hex::encode(sha2::Sha256::digest(
        format!("{}{ts}{secret}", o.order_id).as_bytes()
    )));
    v
}

impl Exchange {
    fn net(&self, symbol: &str, product: &str) -> (i64, f64) {
        let mut qty = 0;
        let mut value = 0.0;
        for o in self
            .orders
            .iter()
            .filter(|o| o.tradingsymbol == symbol && o.product == product)
        {
            let sign = if o.side == "BUY" { 1 } else { -1 };
            qty += sign * o.filled;
            if sign > 0 {
                value += o.filled as f64 * o.average_price;
            }
        }
        let bought: i64 = self
            .orders
            .iter()
            .filter(|o| o.tradingsymbol == symbol && o.product == product && o.side == "BUY")
            .map(|o| o.filled)
            .sum();
        (
            qty,
            if bought > 0 {
                value / bought as f64
            } else {
                0.0
            },
        )
    }

    fn fill_at(&mut self, id: &str, qty: i64, rupees: f64) {
        let Some(o) = self.orders.iter_mut().find(|o| o.order_id == id) else {
            return;
        };
        let qty = qty.min(o.quantity - o.filled);
        if qty <= 0 {
            return;
        }
        let total = o.average_price * o.filled as f64 + rupees * qty as f64;
        o.trades.push((qty, rupees));
        o.filled += qty;
        o.average_price = (total / o.filled as f64 * 100.0).round() / 100.0;
        o.status = if o.filled == o.quantity {
            "COMPLETE".into()
        } else {
            "OPEN".into()
        };
        self.outbox.push((id.to_string(), true));
    }

    /// Fills an open order if the market reaches it.
    fn try_fill(&mut self, id: &str) {
        if self.held.contains(id) {
            return;
        }
        let Some(o) = self.orders.iter().find(|o| o.order_id == id) else {
            return;
        };
        if !(o.status == "OPEN" || o.status == "TRIGGER PENDING") {
            return;
        }
        let Some(&px) = self.prices.get(&o.tradingsymbol) else {
            return;
        };
        let buy = o.side == "BUY";
        let fill_px = match o.order_type.as_str() {
            "MARKET" => Some(px),
            "LIMIT" if (buy && px <= o.price) || (!buy && px >= o.price) => Some(o.price),
            "SL-M" if (buy && px >= o.trigger_price) || (!buy && px <= o.trigger_price) => Some(px),
            _ => None,
        };
        let qty = o.quantity - o.filled;
        if let Some(p) = fill_px {
            self.fill_at(id, qty, p);
        }
    }
}

/// POST /orders/{variety}
async fn place_order(
    State(state): State<Arc<Mutex<FakeState>>>,
    axum::Extension(exchange): axum::Extension<Arc<Mutex<Exchange>>>,
    Path(variety): Path<String>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let form = parse_query(Some(body));
    if let Some(f) = record(&state, format!("/orders/{variety}"), form.clone(), &headers) {
        return envelope(&f);
    }
    if !version_ok(&headers) || !authorized(&state, &headers) {
        return token_error();
    }
    if variety != "regular" {
        return input_error("only the regular variety is open in this fake");
    }
    let get = |k: &str| form.get(k).cloned().unwrap_or_default();
    let quantity: i64 = get("quantity").parse().unwrap_or(0);
    let order_type = get("order_type");
    if quantity <= 0 {
        return input_error("Invalid `quantity`.");
    }
    if (order_type == "MARKET" || order_type == "SL-M") && !form.contains_key("market_protection") {
        return input_error("Market orders without market protection are not allowed via API.");
    }
    if let Some(tag) = form.get("tag")
        && (tag.len() > 20 || !tag.bytes().all(|b| b.is_ascii_alphanumeric()))
    {
        return input_error("Invalid `tag`.");
    }
    let mut x = exchange.lock().unwrap_or_else(|e| e.into_inner());
    let script = x.scripts.pop_front();
    if let Some(Script::RefuseAtPlacement(reason)) = &script {
        return envelope(&Failure {
            status: 400,
            error_type: "InputException".into(),
            message: reason.clone(),
        });
    }
    x.next_id += 1;
    let order_id = format!("2611{:011}", x.next_id);
    let seq = x.next_id;
    let o = FakeOrder {
        order_id: order_id.clone(),
        tag: form.get("tag").cloned(),
        exchange: get("exchange"),
        tradingsymbol: get("tradingsymbol"),
        side: get("transaction_type"),
        order_type: order_type.clone(),
        product: get("product"),
        quantity,
        price: get("price").parse().unwrap_or(0.0),
        trigger_price: get("trigger_price").parse().unwrap_or(0.0),
        market_protection: form.get("market_protection").cloned(),
        status: if order_type == "SL-M" {
            "TRIGGER PENDING".into()
        } else {
            "OPEN".into()
        },
        status_message: None,
        filled: 0,
        average_price: 0.0,
        form: form.clone(),
        seq,
        trades: Vec::new(),
    };
    x.orders.push(o);
    x.outbox.push((order_id.clone(), false));
    let dropped = matches!(script, Some(Script::DropResponse));
    match script {
        Some(Script::Reject(reason)) => {
            if let Some(o) = x.orders.iter_mut().find(|o| o.order_id == order_id) {
                o.status = "REJECTED".into();
                o.status_message = Some(reason);
            }
        }
        Some(Script::Partial(q)) => {
            let px = x
                .prices
                .get(&get("tradingsymbol"))
                .copied()
                .unwrap_or_else(|| get("price").parse().unwrap_or(0.0));
            x.fill_at(&order_id, q, px);
            x.held.insert(order_id.clone());
        }
        Some(Script::Hold) => {
            x.held.insert(order_id.clone());
        }
        _ => x.try_fill(&order_id),
    }
    if dropped {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "upstream connection reset",
        )
            .into_response();
    }
    success(json!({"order_id": order_id}))
}

/// GET /orders
async fn list_orders(
    State(state): State<Arc<Mutex<FakeState>>>,
    axum::Extension(exchange): axum::Extension<Arc<Mutex<Exchange>>>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = admit(&state, "/orders".into(), HashMap::new(), &headers) {
        return refused;
    }
    let x = exchange.lock().unwrap_or_else(|e| e.into_inner());
    success(Value::Array(x.orders.iter().map(order_json).collect()))
}

/// GET /orders/{order_id}: the history (the current state as its last entry).
async fn order_history(
    State(state): State<Arc<Mutex<FakeState>>>,
    axum::Extension(exchange): axum::Extension<Arc<Mutex<Exchange>>>,
    Path(order_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = admit(
        &state,
        format!("/orders/{order_id}"),
        HashMap::new(),
        &headers,
    ) {
        return refused;
    }
    let x = exchange.lock().unwrap_or_else(|e| e.into_inner());
    match x.orders.iter().find(|o| o.order_id == order_id) {
        Some(o) => {
            let mut first = order_json(o);
            first["status"] = json!("PUT ORDER REQ RECEIVED");
            first["filled_quantity"] = json!(0);
            first["average_price"] = json!(0);
            success(json!([first, order_json(o)]))
        }
        None => envelope(&unknown_order()),
    }
}

/// GET /orders/{order_id}/trades: the order's fills at their own prices.
async fn order_trades(
    State(state): State<Arc<Mutex<FakeState>>>,
    axum::Extension(exchange): axum::Extension<Arc<Mutex<Exchange>>>,
    Path(order_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = admit(
        &state,
        format!("/orders/{order_id}/trades"),
        HashMap::new(),
        &headers,
    ) {
        return refused;
    }
    let x = exchange.lock().unwrap_or_else(|e| e.into_inner());
    let Some(o) = x.orders.iter().find(|o| o.order_id == order_id) else {
        return envelope(&unknown_order());
    };
    let trades: Vec<Value> = o
        .trades
        .iter()
        .enumerate()
        .map(|(i, (qty, px))| {
            json!({
                "trade_id": format!("{}{:03}", o.order_id, i + 1),
                "order_id": o.order_id,
                "exchange_order_id": format!("1300000{}", o.seq),
                "exchange": o.exchange,
                "tradingsymbol": o.tradingsymbol,
                "instrument_token": 408065,
                "product": o.product,
                "average_price": px,
                "quantity": qty,
                "transaction_type": o.side,
                "fill_timestamp": "2026-11-25 10:00:00",
                "exchange_timestamp": "2026-11-25 10:00:00",
            })
        })
        .collect();
    success(json!(trades))
}

/// DELETE /orders/{variety}/{order_id}
async fn cancel_order(
    State(state): State<Arc<Mutex<FakeState>>>,
    axum::Extension(exchange): axum::Extension<Arc<Mutex<Exchange>>>,
    Path((variety, order_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = admit(
        &state,
        format!("DELETE /orders/{variety}/{order_id}"),
        HashMap::new(),
        &headers,
    ) {
        return refused;
    }
    let mut x = exchange.lock().unwrap_or_else(|e| e.into_inner());
    let o = match working_order(&mut x, &order_id, "cancelled") {
        Ok(o) => o,
        Err(f) => return envelope(&f),
    };
    o.status = "CANCELLED".into();
    x.outbox.push((order_id.clone(), false));
    success(json!({"order_id": order_id}))
}

/// Kite's answer for an order id it does not have.
fn unknown_order() -> Failure {
    Failure {
        status: 400,
        error_type: "OrderException".into(),
        message: "Couldn't find that `order_id`.".into(),
    }
}

/// The working order `order_id`, or Kite's OrderException for a missing or final one.
fn working_order<'a>(
    x: &'a mut Exchange,
    order_id: &str,
    what: &str,
) -> Result<&'a mut FakeOrder, Failure> {
    let Some(o) = x.orders.iter_mut().find(|o| o.order_id == order_id) else {
        return Err(unknown_order());
    };
    if !(o.status == "OPEN" || o.status == "TRIGGER PENDING") {
        return Err(Failure {
            status: 400,
            error_type: "OrderException".into(),
            message: format!("Order cannot be {what} as it is {}.", o.status),
        });
    }
    Ok(o)
}

/// PUT /orders/{variety}/{order_id}: Kite's modify of a working order. `quantity` is the new
/// total (it may not go below what has filled); price and trigger change when sent.
async fn modify_order(
    State(state): State<Arc<Mutex<FakeState>>>,
    axum::Extension(exchange): axum::Extension<Arc<Mutex<Exchange>>>,
    Path((variety, order_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let form = parse_query(Some(body));
    if let Some(refused) = admit(
        &state,
        format!("PUT /orders/{variety}/{order_id}"),
        form.clone(),
        &headers,
    ) {
        return refused;
    }
    let mut x = exchange.lock().unwrap_or_else(|e| e.into_inner());
    let o = match working_order(&mut x, &order_id, "modified") {
        Ok(o) => o,
        Err(f) => return envelope(&f),
    };
    if let Some(q) = form.get("quantity") {
        match q.parse::<i64>() {
            Ok(q) if q > 0 && q >= o.filled => o.quantity = q,
            _ => return input_error("Invalid `quantity`."),
        }
    }
    if let Some(p) = form.get("price").and_then(|p| p.parse().ok()) {
        o.price = p;
    }
    if let Some(t) = form.get("trigger_price").and_then(|t| t.parse().ok()) {
        o.trigger_price = t;
    }
    for (k, v) in &form {
        o.form.insert(k.clone(), v.clone());
    }
    x.outbox.push((order_id.clone(), false));
    x.try_fill(&order_id);
    success(json!({"order_id": order_id}))
}

/// GET /portfolio/positions: net positions from the fills.
async fn positions(
    State(state): State<Arc<Mutex<FakeState>>>,
    axum::Extension(exchange): axum::Extension<Arc<Mutex<Exchange>>>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = admit(
        &state,
        "/portfolio/positions".into(),
        HashMap::new(),
        &headers,
    ) {
        return refused;
    }
    let x = exchange.lock().unwrap_or_else(|e| e.into_inner());
    let mut keys: Vec<(String, String, String)> = x
        .orders
        .iter()
        .filter(|o| o.filled > 0)
        .map(|o| {
            (
                o.exchange.clone(),
                o.tradingsymbol.clone(),
                o.product.clone(),
            )
        })
        .collect();
    keys.sort();
    keys.dedup();
    let net: Vec<Value> = keys
        .into_iter()
        .map(|(ex, sym, product)| {
            let (qty, avg) = x.net(&sym, &product);
            json!({
                "tradingsymbol": sym, "exchange": ex, "instrument_token": 408065,
                "product": product, "quantity": qty, "overnight_quantity": 0,
                "multiplier": 1, "average_price": avg, "close_price": 0, "last_price": avg,
                "value": 0, "pnl": 0, "m2m": 0, "unrealised": 0, "realised": 0,
                "buy_quantity": 0, "buy_price": 0, "buy_value": 0, "buy_m2m": 0,
                "sell_quantity": 0, "sell_price": 0, "sell_value": 0, "sell_m2m": 0,
                "day_buy_quantity": 0, "day_buy_price": 0, "day_buy_value": 0,
                "day_sell_quantity": 0, "day_sell_price": 0, "day_sell_value": 0
            })
        })
        .collect();
    success(json!({"net": net, "day": []}))
}
