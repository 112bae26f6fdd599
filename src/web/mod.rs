//! The status page (axum): GET / renders the handler's status report as HTML, GET /healthz
//! answers JSON. When a STATUS_TOKEN is set, / requires it; /healthz never does. No secret is
//! ever written into a page.

use crate::config::Secret;
use crate::domain::{Actor, Command, Paise, Proposal, Request};
use crate::ports::CommandHandler;
use crate::ports::Reply;
use crate::ports::{PositionView, StatusReport};
use crate::texts::{esc, ist_datetime};
use axum::{
    Json, Router,
    extract::{Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("cannot listen on STATUS_ADDR {addr}: {error} (pick a free address:port)")]
    Bind { addr: String, error: String },
    #[error("the status page server failed: {0}")]
    Serve(String),
}

#[derive(Clone)]
struct AppState {
    handler: Arc<dyn CommandHandler>,
    token: Option<Arc<Secret>>,
}

/// The routes, for `serve` and for tests. `token`: the STATUS_TOKEN, if any.
pub fn router(handler: Arc<dyn CommandHandler>, token: Option<Secret>) -> Router {
    let state = AppState {
        handler,
        token: token.filter(|t| !t.expose().is_empty()).map(Arc::new),
    };
    Router::new()
        .route("/", get(index))
        .route("/healthz", get(healthz))
        .route("/kite/callback", get(kite_callback))
        .with_state(state)
}

/// Binds the status page's address (done before the service announces its start, so a busy
/// port fails the start instead of a background task).
pub async fn bind(addr: &str) -> Result<tokio::net::TcpListener, WebError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| WebError::Bind {
            addr: addr.to_string(),
            error: e.to_string(),
        })
}

/// Serves the status page on `addr` until `shutdown` is cancelled.
pub async fn serve(
    addr: String,
    handler: Arc<dyn CommandHandler>,
    token: Option<Secret>,
    shutdown: CancellationToken,
) -> Result<(), WebError> {
    serve_on(bind(&addr).await?, handler, token, shutdown).await
}

/// Serves the status page on an already bound listener until `shutdown` is cancelled.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    handler: Arc<dyn CommandHandler>,
    token: Option<Secret>,
    shutdown: CancellationToken,
) -> Result<(), WebError> {
    let local: Option<SocketAddr> = listener.local_addr().ok();
    tracing::info!(addr = ?local, "status page listening");
    axum::serve(listener, router(handler, token))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
        .map_err(|e| WebError::Serve(e.to_string()))
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
        actor: Actor::Cli,
    };
    match state.handler.handle(req).await {
        Ok(Reply::LoggedIn { user_id, .. }) => html(
            StatusCode::OK,
            page(
                "Logged in to Kite",
                &format!("<p>{}</p>", esc(&crate::texts::logged_in_page(&user_id))),
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
        Err(e) => plain(
            StatusCode::BAD_GATEWAY,
            format!("Kite login failed: {}\n", e.0),
        ),
    }
}

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

/// Compares without an early exit on the first differing byte, so the time taken does not
/// reveal how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn authorized(expected: &Secret, headers: &HeaderMap, query: &HashMap<String, String>) -> bool {
    let want = expected.expose().as_bytes();
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    let from_query = query.get("token").map(String::as_str);
    [bearer, from_query]
        .into_iter()
        .flatten()
        .any(|given| constant_time_eq(given.as_bytes(), want))
}

fn html(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    // The token may be in the URL: keep the page out of caches and referrers.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

async fn index(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if let Some(token) = &state.token
        && !authorized(token, &headers, &query)
    {
        let mut r = html(
            StatusCode::UNAUTHORIZED,
            page(
                "Unauthorized",
                "<p>This status page needs the STATUS_TOKEN: send it as \
                 <code>Authorization: Bearer &lt;token&gt;</code> or <code>?token=&lt;token&gt;</code>.</p>",
            ),
        );
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"mft-status\""),
        );
        return r;
    }
    let req = Request {
        command: Command::Status,
        actor: Actor::Cli,
    };
    match state.handler.handle(req).await {
        Ok(Reply::Status(s)) => html(StatusCode::OK, page("MFT-1 status", &status_body(&s))),
        Ok(other) => {
            tracing::error!(reply = ?other, "the handler answered Status with another reply");
            html(
                StatusCode::INTERNAL_SERVER_ERROR,
                page(
                    "MFT-1 status",
                    "<p>The handler gave an unexpected answer.</p>",
                ),
            )
        }
        Err(e) => html(
            StatusCode::SERVICE_UNAVAILABLE,
            page(
                "MFT-1 status",
                &format!("<p>Status unavailable: {}</p>", esc(&e.0)),
            ),
        ),
    }
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta http-equiv=\"refresh\" content=\"30\">\
         <title>{t}</title>\
         <style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:60em}}\
         table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.3em .6em;text-align:left}}\
         .halted{{color:#b00;font-weight:bold}}.num{{text-align:right}}</style></head>\
         <body><h1>{t}</h1>\n{body}\n</body></html>\n",
        t = esc(title)
    )
}

fn signed(p: Paise) -> String {
    if p.0 > 0 {
        format!("+{p}")
    } else {
        p.to_string()
    }
}

fn status_body(s: &StatusReport) -> String {
    let mut out = String::new();
    let state = if s.halted {
        "<span class=\"halted\">HALTED</span> (new entries blocked until /resume)"
    } else if s.paused {
        "paused (no new proposals until /resume)"
    } else {
        "active"
    };
    let _ = write!(
        out,
        "<table>\
         <tr><th>Mode</th><td id=\"mode\">{}</td></tr>\
         <tr><th>Halted</th><td id=\"halted\">{}</td></tr>\
         <tr><th>Paused</th><td id=\"paused\">{}</td></tr>\
         <tr><th>Trading</th><td>{}</td></tr>",
        esc(&s.mode),
        if s.halted { "yes" } else { "no" },
        if s.paused { "yes" } else { "no" },
        state
    );
    if let Some(k) = &s.kite {
        let _ = write!(out, "<tr><th>Kite</th><td id=\"kite\">{}</td></tr>", esc(k));
    }
    let last = match &s.last_scan {
        Some(l) => format!(
            "{}: {} instruments, {} proposals, {} errors{}",
            ist_datetime(l.started_at),
            l.instruments,
            l.proposals,
            l.errors,
            if l.finished_at.is_none() {
                " (running)"
            } else {
                ""
            }
        ),
        None => "none yet".into(),
    };
    let next = s
        .next_scan
        .map(ist_datetime)
        .unwrap_or_else(|| "not scheduled".into());
    let _ = write!(
        out,
        "<tr><th>Last scan</th><td id=\"last-scan\">{}</td></tr>\
         <tr><th>Next scan</th><td>{}</td></tr>\
         <tr><th>Today's P&amp;L</th><td id=\"pnl\">realized {}, unrealized {}</td></tr>\
         <tr><th>Daily loss used</th><td>{} of {}</td></tr>\
         <tr><th>Orders today</th><td>{} of {}</td></tr></table>",
        esc(&last),
        esc(&next),
        signed(s.realized_today),
        signed(s.unrealized),
        s.loss_used,
        s.loss_limit,
        s.orders_today,
        s.orders_limit
    );
    out.push('\n');
    let _ = write!(
        out,
        "<h2>Open positions ({})</h2>\n{}",
        s.positions.len(),
        positions_table(&s.positions)
    );
    let _ = write!(
        out,
        "<h2>Pending proposals ({})</h2>\n{}",
        s.pending.len(),
        proposals_table(&s.pending)
    );
    out
}

fn positions_table(list: &[PositionView]) -> String {
    if list.is_empty() {
        return "<p>None.</p>\n".into();
    }
    let mut out = String::from(
        "<table id=\"positions\"><tr><th>Instrument</th><th>Product</th><th>Quantity</th>\
         <th>Average</th><th>Last</th><th>Unrealized</th><th>Stop</th><th>Target</th></tr>\n",
    );
    for v in list {
        let p = &v.position;
        let opt = |x: Option<Paise>| x.map(|x| x.to_string()).unwrap_or_else(|| "-".into());
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            esc(&p.key.to_string()),
            p.product.as_str(),
            p.quantity,
            p.avg_price,
            match (v.last_price, v.price_age_seconds) {
                (Some(l), Some(a)) => format!("{l} ({} old)", crate::texts::age(a)),
                (l, _) => opt(l),
            },
            signed(v.unrealized),
            opt(p.stop),
            opt(p.target)
        );
    }
    out.push_str("</table>\n");
    out
}

fn proposals_table(list: &[Proposal]) -> String {
    if list.is_empty() {
        return "<p>None.</p>\n".into();
    }
    let mut out = String::from(
        "<table id=\"proposals\"><tr><th>#</th><th>Instrument</th><th>Side</th><th>Quantity</th>\
         <th>Entry</th><th>Stop</th><th>Target</th><th>Expires</th></tr>\n",
    );
    for p in list {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
            p.id,
            esc(&p.key.to_string()),
            p.side,
            p.quantity,
            p.entry,
            p.stop,
            p.target,
            esc(&ist_datetime(p.expires_at))
        );
    }
    out.push_str("</table>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_checks() {
        let t = Secret::new("s3cret");
        let mut h = HeaderMap::new();
        let q = HashMap::new();
        assert!(!authorized(&t, &h, &q));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer s3cret"),
        );
        assert!(authorized(&t, &h, &q));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer s3cre"),
        );
        assert!(!authorized(&t, &h, &q));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic s3cret"),
        );
        assert!(!authorized(&t, &h, &q));
        let q: HashMap<String, String> = [("token".to_string(), "s3cret".to_string())].into();
        assert!(authorized(&t, &HeaderMap::new(), &q));
        assert!(constant_time_eq(b"", b""));
        assert!(!constant_time_eq(b"a", b"b"));
    }
}
