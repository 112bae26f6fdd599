//! The operator's web dashboard (axum): server-rendered pages (Overview, Queue, History, Trades,
//! Risk, Alerts, Kill), live updates over server-sent events (`/events`), the actions Approve,
//! Reject, Pause, Resume and Kill, `/metrics` (Prometheus text) and `/healthz`.
//!
//! The dashboard acts only by sending Commands as `Actor::Web` to the one command handler (the
//! same exactly-once decision as a Telegram tap); it reads the store for its lists. Access: see
//! [`auth`]. No secret is ever written into a page. Everything it serves (CSS, JS, charts) comes
//! from the binary or the store; no framework, no CDN.
//!
//! `POST /kill` with a bearer token and no session cookie is the local kill endpoint `mft kill`
//! uses while the service runs (see [`kill`]): STATUS_TOKEN or the 0600 token file's secret,
//! answered as JSON. From the page, Kill is a form with a confirmation and a CSRF token.

pub mod auth;
mod kill;
pub mod live;
pub mod metrics;
pub mod pages;
pub mod postback;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};
use tokio_util::sync::CancellationToken;

use crate::clock::{Clock, SystemClock};
use crate::config::Secret;
use crate::domain::{Actor, Command, Paise, Request};
use crate::ports::{CommandError, CommandHandler, Reply, StatusReport};
use crate::store::Store;
use crate::texts;
use auth::{Access, LoginLimiter, Peer};
use live::LiveHub;
use pages::{Ctx, Nav};

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("cannot listen on STATUS_ADDR {addr}: {error} (pick a free address:port)")]
    Bind { addr: String, error: String },
    #[error("the status page server failed: {0}")]
    Serve(String),
}

/// Links from proposals to their analysis traces, for the History page. The analysis-trace
/// store provides one; without it History shows no trace column entries.
#[async_trait::async_trait]
pub trait TraceLinks: Send + Sync {
    /// `proposal id -> href` for those of `ids` that have a trace.
    async fn links(&self, ids: &[i64]) -> HashMap<i64, String>;
}

/// Everything the dashboard needs.
pub struct Dashboard {
    pub handler: Arc<dyn CommandHandler>,
    pub store: Store,
    /// STATUS_TOKEN (configured or generated); None: read-only on loopback.
    pub token: Option<Secret>,
    pub clock: Arc<dyn Clock>,
    /// Capital the proposal captions compute the risk % against.
    pub capital: Paise,
    pub hub: LiveHub,
    pub traces: Option<Arc<dyn TraceLinks>>,
    /// The secret of the kill token file `mft run` writes (for `mft kill`), if any.
    pub kill_token: Option<Secret>,
    /// ZERODHA_API_SECRET: verifies `POST /kite/postback` checksums (None: postbacks refused).
    pub postback_secret: Option<Secret>,
}

impl Dashboard {
    /// A dashboard with the system clock, a fresh live hub and no trace links.
    pub fn new(
        handler: Arc<dyn CommandHandler>,
        store: Store,
        token: Option<Secret>,
        capital: Paise,
    ) -> Self {
        Self {
            handler,
            store,
            token,
            clock: Arc::new(SystemClock),
            capital,
            hub: LiveHub::new(),
            traces: None,
            kill_token: None,
            postback_secret: None,
        }
    }
}

struct Inner {
    handler: Arc<dyn CommandHandler>,
    store: Store,
    token: Option<Secret>,
    clock: Arc<dyn Clock>,
    capital: Paise,
    hub: LiveHub,
    traces: Option<Arc<dyn TraceLinks>>,
    kill_token: Option<Secret>,
    postback_secret: Option<Secret>,
    limiter: LoginLimiter,
    /// (number of fills, PNG) of the last rendered equity chart.
    equity: Mutex<Option<(usize, Arc<Vec<u8>>)>>,
}

#[derive(Clone)]
struct AppState(Arc<Inner>);

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// The routes. Serve them with connect info (as [`serve_on`] does) so access checks see the
/// client's address.
pub fn router(d: Dashboard) -> Router {
    let state = AppState(Arc::new(Inner {
        handler: d.handler,
        store: d.store,
        token: d.token.filter(|t| !t.expose().is_empty()),
        clock: d.clock,
        capital: d.capital,
        hub: d.hub,
        traces: d.traces,
        kill_token: d.kill_token.filter(|t| !t.expose().is_empty()),
        postback_secret: d.postback_secret.filter(|t| !t.expose().is_empty()),
        limiter: LoginLimiter::default(),
        equity: Mutex::new(None),
    }));
    Router::new()
        .route("/", get(overview))
        .route("/queue", get(queue))
        .route("/history", get(history))
        .route("/trades", get(trades))
        .route("/risk", get(risk))
        .route("/alerts", get(alerts))
        .route("/kill", get(kill_page).post(kill))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/pause", post(pause))
        .route("/resume", post(resume))
        .route("/scan", post(scan))
        .route("/proposals/{id}/approve", post(approve))
        .route("/proposals/{id}/reject", post(reject))
        .route("/proposals/{id}/chart.png", get(proposal_chart))
        .route("/equity.png", get(equity_chart))
        .route("/events", get(events))
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(healthz))
        .route("/assets/app.css", get(css))
        .route("/assets/app.js", get(js))
        .route("/kite/callback", get(kite_callback))
        .route("/kite/postback", post(postback::postback))
        .with_state(state)
}

/// Binds the dashboard's address (done before the service announces its start, so a busy
/// port fails the start instead of a background task).
pub async fn bind(addr: &str) -> Result<tokio::net::TcpListener, WebError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| WebError::Bind {
            addr: addr.to_string(),
            error: e.to_string(),
        })
}

/// The address to bind: `addr` itself with a token; without one the dashboard is read-only
/// and loopback only, so a non-loopback host becomes 127.0.0.1 (same port).
pub fn effective_addr(addr: &str, token_set: bool) -> String {
    if token_set {
        return addr.to_string();
    }
    match addr.parse::<SocketAddr>() {
        Ok(a) if !a.ip().is_loopback() => {
            let local = SocketAddr::from(([127, 0, 0, 1], a.port())).to_string();
            tracing::warn!(
                configured = %addr,
                serving = %local,
                "no STATUS_TOKEN: the dashboard is read-only and served on loopback only"
            );
            local
        }
        _ => addr.to_string(),
    }
}

/// Serves the dashboard on `addr` until `shutdown` is cancelled.
pub async fn serve(
    addr: String,
    d: Dashboard,
    shutdown: CancellationToken,
) -> Result<(), WebError> {
    let has_token = d.token.as_ref().is_some_and(|t| !t.expose().is_empty());
    serve_on(bind(&effective_addr(&addr, has_token)).await?, d, shutdown).await
}

/// Serves the dashboard on an already bound listener until `shutdown` is cancelled; also runs
/// the live-update watcher.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    d: Dashboard,
    shutdown: CancellationToken,
) -> Result<(), WebError> {
    let local: Option<SocketAddr> = listener.local_addr().ok();
    tracing::info!(addr = ?local, "dashboard listening");
    let watcher = tokio::spawn(live::watch(
        d.hub.clone(),
        d.store.clone(),
        d.handler.clone(),
        shutdown.clone(),
    ));
    let hub = d.hub.clone();
    let app = router(d).into_make_service_with_connect_info::<SocketAddr>();
    let stop = shutdown.clone();
    let r = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            stop.cancelled().await;
            hub.close();
        })
        .await
        .map_err(|e| WebError::Serve(e.to_string()));
    shutdown.cancel();
    let _ = watcher.await;
    r
}

fn plain(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

/// Kite's login redirect (`request_token`, `action=login`, `status=success`, `state`). Kite
/// calls it from the operator's browser, so it takes no STATUS_TOKEN: the single-use state is
/// the proof. A bad, used or expired state is HTTP 400 with a plain message; nothing is stored
/// and Kite is not called.
async fn kite_callback(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let get = |k: &str| query.get(k).cloned();
    let req = Request {
        command: Command::KiteCallback {
            request_token: get("request_token"),
            state: get("state"),
            status: get("status"),
            action: get("action"),
        },
        actor: Actor::Web,
    };
    match state.handler.handle(req).await {
        Ok(Reply::LoggedIn { user_id, .. }) => html(
            StatusCode::OK,
            pages::layout(
                "Logged in to Kite",
                Nav::Login,
                &Ctx::default(),
                &format!(
                    "<h1>Logged in to Kite</h1><p>{}</p>",
                    texts::esc(&crate::texts::logged_in_page(&user_id))
                ),
            ),
        ),
        Ok(Reply::LoginRefused { reason }) => plain(StatusCode::BAD_REQUEST, format!("{reason}\n")),
        Ok(other) => {
            tracing::error!(reply = ?other, "the handler answered a Kite callback with another reply");
            plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "unexpected answer from the service\n".into(),
            )
        }
        Err(e) => plain(StatusCode::BAD_GATEWAY, format!("Kite login failed: {e}\n")),
    }
}

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

fn no_store(r: &mut Response) {
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self'; style-src 'self'; script-src 'self'; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
}

fn html(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    no_store(&mut r);
    r
}

impl AppState {
    fn token_set(&self) -> bool {
        self.token.is_some()
    }

    /// Who this request is. Wrong bearer tokens count as failed logins.
    async fn access(&self, headers: &HeaderMap, peer: Peer) -> Access {
        let Some(token) = &self.token else {
            return if peer.is_loopback() {
                Access::ReadOnly
            } else {
                Access::NotLoopback
            };
        };
        if let Some(given) = auth::bearer(headers) {
            if self.limiter.blocked(peer).is_none()
                && auth::constant_time_eq(given.as_bytes(), token.expose().as_bytes())
            {
                return Access::Operator { csrf: None };
            }
            self.limiter.fail(peer);
            return Access::NeedsLogin;
        }
        if let Some(id) = auth::cookie(headers, auth::SESSION_COOKIE) {
            match self
                .store
                .web_session(&auth::session_hash(token.expose(), id), self.clock.now())
                .await
            {
                Ok(Some(s)) => return Access::Operator { csrf: Some(s.csrf) },
                Ok(None) => {}
                Err(e) => tracing::error!("reading a dashboard session: {e}"),
            }
        }
        Access::NeedsLogin
    }

    async fn status(&self) -> Option<StatusReport> {
        match self
            .handler
            .handle(Request {
                command: Command::Status,
                actor: Actor::Web,
            })
            .await
        {
            Ok(Reply::Status(s)) => Some(s),
            Ok(other) => {
                tracing::error!(reply = ?other, "the handler answered Status with another reply");
                None
            }
            Err(e) => {
                tracing::error!("status for the dashboard: {e}");
                None
            }
        }
    }

    /// A new session: its cookie value and the Set-Cookie header.
    async fn new_session(&self, token: &Secret, https: bool) -> Result<String, Response> {
        let id = auth::random_token();
        let now = self.clock.now();
        // Expired sessions go as new ones come (the empty hash matches no session).
        if let Err(e) = self.store.delete_web_session("", now).await {
            tracing::warn!("removing expired dashboard sessions: {e}");
        }
        self.store
            .create_web_session(
                &auth::session_hash(token.expose(), &id),
                &auth::random_token(),
                now,
                now + chrono::Duration::hours(auth::SESSION_HOURS),
            )
            .await
            .map_err(|e| {
                tracing::error!("storing a dashboard session: {e}");
                html(
                    StatusCode::SERVICE_UNAVAILABLE,
                    pages::layout(
                        "Log in",
                        Nav::Login,
                        &Ctx::default(),
                        "<p class=\"error\">Could not store the session (database error); try again.</p>",
                    ),
                )
            })?;
        Ok(auth::session_cookie(&id, https))
    }
}

/// The answer to a request that may not read: a login form (401) or a refusal (403).
fn refuse(state: &AppState, access: &Access, path: &str) -> Response {
    match access {
        Access::NotLoopback => html(
            StatusCode::FORBIDDEN,
            pages::layout(
                "Forbidden",
                Nav::Login,
                &Ctx::default(),
                "<h1>Forbidden</h1><p>Without STATUS_TOKEN the dashboard answers on loopback \
                 only. Set STATUS_TOKEN to reach it from elsewhere.</p>",
            ),
        ),
        _ => {
            let ctx = Ctx {
                token_configured: state.token_set(),
                ..Ctx::default()
            };
            let mut r = html(
                StatusCode::UNAUTHORIZED,
                pages::layout(
                    "Log in",
                    Nav::Login,
                    &ctx,
                    &pages::login(None, &auth::safe_next(Some(path)), state.token_set()),
                ),
            );
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"mft-dashboard\""),
            );
            r
        }
    }
}

/// Reads the access of a page request; a `?token=` (the login URL printed at start) logs in
/// and redirects to the same page without it.
async fn page_access(
    state: &AppState,
    headers: &HeaderMap,
    peer: Peer,
    query: &HashMap<String, String>,
    path: &str,
) -> Result<(Access, Ctx), Response> {
    if let Some(given) = query.get("token") {
        return Err(login_with(state, peer, auth::via_https(headers), given, path).await);
    }
    let access = state.access(headers, peer).await;
    if !access.can_read() {
        return Err(refuse(state, &access, path));
    }
    let csrf = match &access {
        Access::Operator { csrf } => csrf.clone(),
        _ => None,
    };
    let ctx = Ctx {
        operator: access.can_act(),
        csrf,
        token_configured: state.token_set(),
        flash: query.get("flash").map(|f| texts::truncate_chars(f, 300)),
        status: state.status().await,
        path: path.to_string(),
        now: Some(state.clock.now()),
    };
    Ok((access, ctx))
}

type Q = Query<HashMap<String, String>>;

fn unavailable(ctx: &Ctx, nav: Nav, title: &str, what: &str) -> Response {
    html(
        StatusCode::SERVICE_UNAVAILABLE,
        pages::layout(
            title,
            nav,
            ctx,
            &format!(
                "<h1>{}</h1><p class=\"error\">{} could not be read; the page retries on the next update.</p>",
                texts::esc(title),
                texts::esc(what)
            ),
        ),
    )
}

async fn overview(
    State(state): State<AppState>,
    headers: HeaderMap,
    peer: Peer,
    Query(q): Q,
) -> Response {
    let (_, ctx) = match page_access(&state, &headers, peer, &q, "/").await {
        Ok(x) => x,
        Err(r) => return r,
    };
    match &ctx.status {
        Some(s) => html(
            StatusCode::OK,
            pages::layout("Overview", Nav::Overview, &ctx, &pages::overview(&ctx, s)),
        ),
        None => unavailable(&ctx, Nav::Overview, "Overview", "The status"),
    }
}

async fn queue(
    State(state): State<AppState>,
    headers: HeaderMap,
    peer: Peer,
    Query(q): Q,
) -> Response {
    let (_, ctx) = match page_access(&state, &headers, peer, &q, "/queue").await {
        Ok(x) => x,
        Err(r) => return r,
    };
    match state.store.pending_proposals().await {
        Ok(list) => html(
            StatusCode::OK,
            pages::layout(
                "Queue",
                Nav::Queue,
                &ctx,
                &pages::queue(&ctx, &list, state.capital),
            ),
        ),
        Err(e) => {
            tracing::error!("queue: {e}");
            unavailable(&ctx, Nav::Queue, "Proposal queue", "The pending proposals")
        }
    }
}

async fn history(
    State(state): State<AppState>,
    headers: HeaderMap,
    peer: Peer,
    Query(q): Q,
) -> Response {
    let (_, ctx) = match page_access(&state, &headers, peer, &q, "/history").await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let list = match state.store.recent_proposals(200).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("history: {e}");
            return unavailable(&ctx, Nav::History, "History", "The proposals");
        }
    };
    let min_id = list.iter().map(|p| p.id).min().unwrap_or(0);
    let actions = state
        .store
        .proposal_actions_since(min_id)
        .await
        .unwrap_or_else(|e| {
            tracing::error!("history actions: {e}");
            Vec::new()
        });
    let traces = match &state.traces {
        Some(t) => {
            let ids: Vec<i64> = list.iter().map(|p| p.id).collect();
            t.links(&ids).await
        }
        None => HashMap::new(),
    };
    html(
        StatusCode::OK,
        pages::layout(
            "History",
            Nav::History,
            &ctx,
            &pages::history(&list, &actions, &traces),
        ),
    )
}

async fn trades(
    State(state): State<AppState>,
    headers: HeaderMap,
    peer: Peer,
    Query(q): Q,
) -> Response {
    let (_, ctx) = match page_access(&state, &headers, peer, &q, "/trades").await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let (orders, fills, scans) = match (
        state.store.recent_orders(200).await,
        state.store.realized_series().await,
        state.store.recent_scan_runs(50).await,
    ) {
        (Ok(o), Ok(f), Ok(s)) => (o, f, s),
        (o, f, s) => {
            for e in [o.err(), f.err(), s.err()].into_iter().flatten() {
                tracing::error!("trades: {e}");
            }
            return unavailable(&ctx, Nav::Trades, "Trades", "The trades");
        }
    };
    let min_id = orders.iter().map(|o| o.id).min().unwrap_or(0);
    let realized = state
        .store
        .realized_by_order(min_id)
        .await
        .unwrap_or_else(|e| {
            tracing::error!("trades P&L: {e}");
            HashMap::new()
        });
    html(
        StatusCode::OK,
        pages::layout(
            "Trades",
            Nav::Trades,
            &ctx,
            &pages::trades(&orders, &realized, !fills.is_empty(), &scans),
        ),
    )
}

async fn risk(
    State(state): State<AppState>,
    headers: HeaderMap,
    peer: Peer,
    Query(q): Q,
) -> Response {
    let (_, ctx) = match page_access(&state, &headers, peer, &q, "/risk").await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let limits = state
        .handler
        .handle(Request {
            command: Command::Risk,
            actor: Actor::Web,
        })
        .await;
    match (limits, &ctx.status) {
        (Ok(Reply::Risk(r)), Some(s)) => html(
            StatusCode::OK,
            pages::layout("Risk", Nav::Risk, &ctx, &pages::risk(&r, s)),
        ),
        _ => unavailable(&ctx, Nav::Risk, "Risk limits", "The risk limits"),
    }
}

async fn alerts(
    State(state): State<AppState>,
    headers: HeaderMap,
    peer: Peer,
    Query(q): Q,
) -> Response {
    let (_, ctx) = match page_access(&state, &headers, peer, &q, "/alerts").await {
        Ok(x) => x,
        Err(r) => return r,
    };
    match state.store.recent_alerts(200).await {
        Ok(list) => html(
            StatusCode::OK,
            pages::layout("Alerts", Nav::Alerts, &ctx, &pages::alerts(&list)),
        ),
        Err(e) => {
            tracing::error!("alerts: {e}");
            unavailable(&ctx, Nav::Alerts, "Alerts", "The alerts")
        }
    }
}

async fn kill_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    peer: Peer,
    Query(q): Q,
) -> Response {
    let (_, ctx) = match page_access(&state, &headers, peer, &q, "/kill").await {
        Ok(x) => x,
        Err(r) => return r,
    };
    html(
        StatusCode::OK,
        pages::layout(
            "Kill",
            Nav::Kill,
            &ctx,
            &pages::kill(&ctx, ctx.status.as_ref()),
        ),
    )
}

async fn login_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    peer: Peer,
    Query(q): Q,
) -> Response {
    let next = auth::safe_next(q.get("next").map(String::as_str));
    if let Some(given) = q.get("token") {
        return login_with(&state, peer, auth::via_https(&headers), given, &next).await;
    }
    let ctx = Ctx {
        token_configured: state.token_set(),
        ..Ctx::default()
    };
    html(
        StatusCode::OK,
        pages::layout(
            "Log in",
            Nav::Login,
            &ctx,
            &pages::login(None, &next, state.token_set()),
        ),
    )
}

fn form(body: &Bytes) -> HashMap<String, String> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    peer: Peer,
    body: Bytes,
) -> Response {
    let f = form(&body);
    let next = auth::safe_next(f.get("next").map(String::as_str));
    let given = f.get("token").map(String::as_str).unwrap_or("");
    login_with(&state, peer, auth::via_https(&headers), given, &next).await
}

async fn login_with(
    state: &AppState,
    peer: Peer,
    https: bool,
    given: &str,
    next: &str,
) -> Response {
    let ctx = Ctx {
        token_configured: state.token_set(),
        ..Ctx::default()
    };
    let page = |status, msg: &str| {
        html(
            status,
            pages::layout(
                "Log in",
                Nav::Login,
                &ctx,
                &pages::login(Some(msg), next, state.token_set()),
            ),
        )
    };
    let Some(token) = &state.token else {
        return page(
            StatusCode::FORBIDDEN,
            "No STATUS_TOKEN is set, so there is nothing to log in to: the dashboard is read-only.",
        );
    };
    if let Some(wait) = state.limiter.blocked(peer) {
        let mut r = page(
            StatusCode::TOO_MANY_REQUESTS,
            &format!(
                "Too many failed logins: try again in {} s.",
                wait.as_secs().max(1)
            ),
        );
        if let Ok(v) = HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return r;
    }
    if !auth::constant_time_eq(given.as_bytes(), token.expose().as_bytes()) {
        state.limiter.fail(peer);
        tracing::warn!(client = ?peer.0, "dashboard login failed: wrong token");
        return page(StatusCode::UNAUTHORIZED, "Wrong token.");
    }
    let cookie = match state.new_session(token, https).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let mut r = Redirect::to(next).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    no_store(&mut r);
    r
}

/// Checks an action request: token (bearer) or session cookie with the matching CSRF token.
async fn action_access(
    state: &AppState,
    headers: &HeaderMap,
    peer: Peer,
    f: &HashMap<String, String>,
) -> Result<(), Response> {
    let access = state.access(headers, peer).await;
    match access {
        Access::Operator { csrf: None } => Ok(()),
        Access::Operator { csrf: Some(want) } => {
            let given = f
                .get("csrf")
                .map(String::as_str)
                .or_else(|| headers.get("x-csrf-token").and_then(|v| v.to_str().ok()))
                .unwrap_or("");
            if !given.is_empty() && auth::constant_time_eq(given.as_bytes(), want.as_bytes()) {
                Ok(())
            } else {
                tracing::warn!(client = ?peer.0, "dashboard action refused: missing or wrong CSRF token");
                Err(action_error(
                    headers,
                    StatusCode::FORBIDDEN,
                    "Refused: the form's CSRF token is missing or wrong. Reload the page and try again.",
                ))
            }
        }
        Access::ReadOnly => Err(action_error(
            headers,
            StatusCode::FORBIDDEN,
            "Refused: the dashboard is read-only without STATUS_TOKEN.",
        )),
        Access::NotLoopback => Err(action_error(
            headers,
            StatusCode::FORBIDDEN,
            "Refused: without STATUS_TOKEN the dashboard answers on loopback only.",
        )),
        Access::NeedsLogin => {
            let mut r = action_error(
                headers,
                StatusCode::UNAUTHORIZED,
                "Refused: log in (or send Authorization: Bearer STATUS_TOKEN) first.",
            );
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"mft-dashboard\""),
            );
            Err(r)
        }
    }
}

fn wants_json(headers: &HeaderMap) -> bool {
    auth::bearer(headers).is_some()
        || headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("application/json"))
}

/// The HTTP status of a command that failed: refused now or invalid as asked (409), failing for
/// the moment so a retry may work (503), needing the operator (500).
pub(crate) fn command_status(e: &CommandError) -> StatusCode {
    match e {
        CommandError::Refused(_) | CommandError::Invalid(_) => StatusCode::CONFLICT,
        CommandError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        CommandError::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn action_error(headers: &HeaderMap, status: StatusCode, message: &str) -> Response {
    if wants_json(headers) {
        let mut r = (
            status,
            Json(serde_json::json!({"ok": false, "message": message})),
        )
            .into_response();
        no_store(&mut r);
        r
    } else {
        html(
            status,
            pages::layout(
                "Refused",
                Nav::Login,
                &Ctx::default(),
                &format!(
                    "<h1>Refused</h1><p class=\"error\">{}</p><p><a href=\"/\">Back to the dashboard</a></p>",
                    texts::esc(message)
                ),
            ),
        )
    }
}

/// Sends `command` as `Actor::Web` after the access check, then answers JSON (API, page
/// script) or redirects back with the result as a notice (plain forms).
async fn act(
    state: &AppState,
    headers: &HeaderMap,
    peer: Peer,
    body: &Bytes,
    command: Command,
) -> Response {
    let f = form(body);
    if let Err(r) = action_access(state, headers, peer, &f).await {
        return r;
    }
    if command == Command::Kill && f.get("confirm").map(String::as_str) != Some("yes") {
        return action_error(
            headers,
            StatusCode::BAD_REQUEST,
            "Kill needs confirmation: use the Confirm kill button on the Kill page (confirm=yes).",
        );
    }
    let reply = state
        .handler
        .handle(Request {
            command,
            actor: Actor::Web,
        })
        .await;
    state.hub.nudge();
    let (status, ok, message, json) = match &reply {
        Ok(r) => (
            StatusCode::OK,
            true,
            match r {
                Reply::Scan(summary) => texts::scan(summary),
                other => texts::reply_answer(other),
            },
            serde_json::to_value(r).unwrap_or_default(),
        ),
        Err(e) => (
            command_status(e),
            false,
            format!("Failed: {e}"),
            serde_json::Value::Null,
        ),
    };
    if wants_json(headers) {
        let mut r = (
            status,
            Json(serde_json::json!({"ok": ok, "message": message, "reply": json})),
        )
            .into_response();
        no_store(&mut r);
        return r;
    }
    let back = auth::safe_next(f.get("back").map(String::as_str));
    let sep = if back.contains('?') { '&' } else { '?' };
    let flash: String = url::form_urlencoded::byte_serialize(message.as_bytes()).collect();
    let mut r = Redirect::to(&format!("{back}{sep}flash={flash}")).into_response();
    no_store(&mut r);
    r
}

async fn approve(
    State(state): State<AppState>,
    headers: HeaderMap,
    peer: Peer,
    Path(id): Path<i64>,
    body: Bytes,
) -> Response {
    act(
        &state,
        &headers,
        peer,
        &body,
        Command::Approve { proposal_id: id },
    )
    .await
}

async fn reject(
    State(state): State<AppState>,
    headers: HeaderMap,
    peer: Peer,
    Path(id): Path<i64>,
    body: Bytes,
) -> Response {
    act(
        &state,
        &headers,
        peer,
        &body,
        Command::Reject { proposal_id: id },
    )
    .await
}

async fn pause(
    State(state): State<AppState>,
    headers: HeaderMap,
    peer: Peer,
    body: Bytes,
) -> Response {
    act(&state, &headers, peer, &body, Command::Pause).await
}

async fn resume(
    State(state): State<AppState>,
    headers: HeaderMap,
    peer: Peer,
    body: Bytes,
) -> Response {
    act(&state, &headers, peer, &body, Command::Resume).await
}

/// Scan now (what /scan does in the chat): without a bot this is how a new user gets a
/// proposal before the next scheduled scan.
async fn scan(
    State(state): State<AppState>,
    headers: HeaderMap,
    peer: Peer,
    body: Bytes,
) -> Response {
    act(&state, &headers, peer, &body, Command::Scan { only: None }).await
}

async fn kill(
    State(state): State<AppState>,
    headers: HeaderMap,
    peer: Peer,
    body: Bytes,
) -> Response {
    // `mft kill` with the secret of the token file `mft run` wrote: the local kill endpoint
    // (recorded as `cli`, answered {"report": ..}). Everything else is the dashboard's Kill, which
    // needs confirm=yes (and, from a browser session, the CSRF token).
    let file_token = matches!(
        (&state.kill_token, auth::bearer(&headers)),
        (Some(k), Some(b)) if auth::constant_time_eq(k.expose().as_bytes(), b.as_bytes())
    );
    if file_token || (auth::bearer(&headers).is_some() && state.token.is_none()) {
        return kill::kill(State(state), headers).await;
    }
    act(&state, &headers, peer, &body, Command::Kill).await
}

async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    peer: Peer,
    body: Bytes,
) -> Response {
    let f = form(&body);
    if let Err(r) = action_access(&state, &headers, peer, &f).await {
        return r;
    }
    if let Some(id) = auth::cookie(&headers, auth::SESSION_COOKIE)
        && let Some(token) = &state.token
        && let Err(e) = state
            .store
            .delete_web_session(&auth::session_hash(token.expose(), id), state.clock.now())
            .await
    {
        tracing::error!("deleting a dashboard session: {e}");
    }
    let mut r = Redirect::to("/login").into_response();
    if let Ok(v) = HeaderValue::from_str(&auth::clear_cookie()) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    no_store(&mut r);
    r
}

fn png(bytes: Vec<u8>) -> Response {
    let mut r = bytes.into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("image/png"));
    no_store(&mut r);
    r
}

fn not_found(what: &str) -> Response {
    (StatusCode::NOT_FOUND, what.to_string()).into_response()
}

async fn read_access(
    state: &AppState,
    headers: &HeaderMap,
    peer: Peer,
) -> Result<Access, Response> {
    let access = state.access(headers, peer).await;
    if access.can_read() {
        Ok(access)
    } else {
        let status = match access {
            Access::NotLoopback => StatusCode::FORBIDDEN,
            _ => StatusCode::UNAUTHORIZED,
        };
        Err((
            status,
            "log in or send Authorization: Bearer STATUS_TOKEN\n",
        )
            .into_response())
    }
}

async fn proposal_chart(
    State(state): State<AppState>,
    headers: HeaderMap,
    peer: Peer,
    Path(id): Path<i64>,
) -> Response {
    if let Err(r) = read_access(&state, &headers, peer).await {
        return r;
    }
    // The path comes from the store (written by the chart renderer), never from the request.
    let path = match state.store.proposal(id).await {
        Ok(Some(p)) => p.chart_path,
        Ok(None) => return not_found("no such proposal"),
        Err(e) => {
            tracing::error!("proposal chart: {e}");
            return (StatusCode::SERVICE_UNAVAILABLE, "database error").into_response();
        }
    };
    let Some(path) = path else {
        return not_found("this proposal has no chart");
    };
    match tokio::fs::read(&path).await {
        Ok(bytes) => png(bytes),
        Err(e) => {
            tracing::warn!(proposal = id, "chart file {path}: {e}");
            not_found("the chart file is gone")
        }
    }
}

async fn equity_chart(State(state): State<AppState>, headers: HeaderMap, peer: Peer) -> Response {
    if let Err(r) = read_access(&state, &headers, peer).await {
        return r;
    }
    let fills = match state.store.realized_series().await {
        Ok(f) => f,
        Err(e) => {
            tracing::error!("equity: {e}");
            return (StatusCode::SERVICE_UNAVAILABLE, "database error").into_response();
        }
    };
    if fills.is_empty() {
        return not_found("no fills yet");
    }
    if let Some((n, bytes)) = state
        .equity
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        && *n == fills.len()
    {
        return png(bytes.as_ref().clone());
    }
    let capital = state.capital;
    let n = fills.len();
    let rendered = tokio::task::spawn_blocking(move || {
        let mut equity = capital;
        let mut points = Vec::with_capacity(fills.len() + 1);
        points.push((fills[0].0, capital.0 as f64 / 100.0));
        for (ts, pnl) in fills {
            equity += pnl;
            points.push((ts, equity.0 as f64 / 100.0));
        }
        crate::chart::render_equity(&points, "Equity (realized)", 1280, 640)
    })
    .await;
    match rendered {
        Ok(Ok(bytes)) => {
            let bytes = Arc::new(bytes);
            *state.equity.lock().unwrap_or_else(|e| e.into_inner()) = Some((n, bytes.clone()));
            png(bytes.as_ref().clone())
        }
        Ok(Err(e)) => {
            tracing::error!("equity chart: {e}");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "could not render the equity chart",
            )
                .into_response()
        }
        Err(e) => {
            tracing::error!("equity chart task: {e}");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "could not render the equity chart",
            )
                .into_response()
        }
    }
}

async fn events(State(state): State<AppState>, headers: HeaderMap, peer: Peer) -> Response {
    if let Err(r) = read_access(&state, &headers, peer).await {
        return r;
    }
    let mut r = live::sse(&state.hub).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

async fn metrics_text(State(state): State<AppState>, headers: HeaderMap, peer: Peer) -> Response {
    if let Err(r) = read_access(&state, &headers, peer).await {
        return r;
    }
    match metrics::render(&state.store).await {
        Ok(text) => {
            let mut r = text.into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(metrics::CONTENT_TYPE),
            );
            no_store(&mut r);
            r
        }
        Err(e) => {
            tracing::error!("metrics: {e}");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("metrics unavailable: {e}\n"),
            )
                .into_response()
        }
    }
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

async fn css() -> Response {
    asset(include_str!("assets/app.css"), "text/css; charset=utf-8")
}

async fn js() -> Response {
    asset(
        include_str!("assets/app.js"),
        "text/javascript; charset=utf-8",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_commands_answer_by_class() {
        let status = |e: CommandError| command_status(&e).as_u16();
        assert_eq!(
            status(CommandError::Refused(crate::domain::DenyReason::Halted)),
            409
        );
        assert_eq!(status(CommandError::Invalid("bad span".into())), 409);
        assert_eq!(status(CommandError::Unavailable("busy".into())), 503);
        assert_eq!(status(CommandError::Failed("unknown order".into())), 500);
    }

    #[test]
    fn without_a_token_only_loopback_is_bound() {
        assert_eq!(effective_addr("0.0.0.0:8501", false), "127.0.0.1:8501");
        assert_eq!(effective_addr("0.0.0.0:8501", true), "0.0.0.0:8501");
        assert_eq!(effective_addr("127.0.0.1:9000", false), "127.0.0.1:9000");
        assert_eq!(effective_addr("[::1]:9000", false), "[::1]:9000");
    }
}
