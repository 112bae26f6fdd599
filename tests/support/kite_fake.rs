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
    ticks: tokio::sync::broadcast::Sender<TickerCmd>,
}

#[derive(Debug, Clone)]
enum TickerCmd {
    Frame(Vec<u8>),
    Close,
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
            tokens: vec![ACCESS_TOKEN.to_string()],
            request_tokens: vec![REQUEST_TOKEN.to_string()],
            ..FakeState::default()
        }));
        let (ticks, _) = tokio::sync::broadcast::channel::<TickerCmd>(1024);
        let app = Router::new()
            .route("/session/token", axum::routing::post(session_token))
            .route("/user/profile", get(profile))
            .route("/user/margins", get(margins))
            .route("/quote/ltp", get(quote_ltp))
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
        KiteFake {
            url: format!("http://{addr}"),
            ticker_url: format!("ws://{addr}/ws"),
            state,
            task,
            ticks,
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
    if let Some(f) = record(&state, "/user/profile".into(), HashMap::new(), &headers) {
        return envelope(&f);
    }
    if !authorized(&state, &headers) {
        return token_error();
    }
    let v: Value = serde_json::from_str(PROFILE_JSON).expect("profile fixture");
    success(v["data"].clone())
}

async fn margins(State(state): State<Arc<Mutex<FakeState>>>, headers: HeaderMap) -> Response {
    if let Some(f) = record(&state, "/user/margins".into(), HashMap::new(), &headers) {
        return envelope(&f);
    }
    if !authorized(&state, &headers) {
        return token_error();
    }
    let v: Value = serde_json::from_str(MARGINS_JSON).expect("margins fixture");
    success(v["data"].clone())
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
    if let Some(f) = record(&state, "/quote/ltp".into(), parse_query(q), &headers) {
        return envelope(&f);
    }
    if !authorized(&state, &headers) {
        return token_error();
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
