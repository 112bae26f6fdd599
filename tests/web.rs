//! The dashboard over HTTP with a recording fake handler and a real store (SQLite always,
//! PostgreSQL when TEST_DATABASE_URL is set): access (bearer, login form, cookie attributes,
//! CSRF, rate limit, read-only without a token), pages escaped and free of secrets, actions sent
//! as `Actor::Web`, `/metrics`, `/events`.

mod support;

use chrono::{TimeZone, Utc};
use mft::config::RiskSettings as RiskSettingsReply;
use mft::config::Secret;
use mft::domain::{
    Actor, Command, InstrumentKey, NewProposal, Paise, Position, Product, Proposal, ProposalStatus,
    Request, Side,
};
use mft::ports::{CommandError, CommandHandler, Decision, Outcome};
use mft::ports::{PositionView, Reply, StatusReport};
use mft::store::Store;
use std::sync::{Arc, Mutex};
use support::db::test_stores;
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "st-9f8e7d6c5b4a";

#[derive(Default)]
struct FakeHandler {
    requests: Mutex<Vec<Request>>,
}

fn pending_proposal() -> Proposal {
    let t = Utc.with_ymd_and_hms(2026, 11, 25, 8, 45, 0).unwrap();
    Proposal {
        id: 9,
        key: InstrumentKey::new("NSE", "INFY"),
        side: Side::Buy,
        quantity: 5,
        entry: Paise(150_000),
        stop: Paise(148_000),
        target: Paise(154_000),
        product: Product::Mis,
        confidence: 0.6,
        rationale: "<script>alert(1)</script>".into(),
        status: ProposalStatus::Pending,
        created_at: t,
        expires_at: t,
        chart_path: None,
        message_id: None,
        decided_at: None,
        decided_by: None,
        outcome: None,
    }
}

fn status() -> StatusReport {
    let t = Utc.with_ymd_and_hms(2026, 11, 25, 8, 45, 0).unwrap();
    StatusReport {
        mode: "paper".into(),
        halted: true,
        paused: false,
        last_scan: None,
        next_scan: None,
        realized_today: Paise(-12_345),
        unrealized: Paise(500),
        day_pnl: Paise(-11_845),
        positions: vec![PositionView {
            position: Position {
                key: InstrumentKey::new("NSE", "M&M"),
                product: Product::Mis,
                quantity: 10,
                avg_price: Paise(150_000),
                realized_pnl: Paise(0),
                stop: Some(Paise(148_000)),
                target: None,
                opened_at: t,
                updated_at: t,
            },
            last_price: Some(Paise(150_050)),
            unrealized: Paise(500),
            price_age_seconds: Some(42),
        }],
        pending: vec![pending_proposal()],
        loss_used: Paise(12_345),
        loss_limit: Paise(200_000),
        orders_today: 2,
        orders_limit: 20,
        kite: Some("active until 06:00 IST tomorrow (user AB1234)".into()),
        backtest: None,
    }
}

#[async_trait::async_trait]
impl CommandHandler for FakeHandler {
    async fn handle(&self, req: Request) -> Result<Reply, CommandError> {
        self.requests.lock().unwrap().push(req.clone());
        Ok(match req.command {
            Command::Approve { proposal_id } => Reply::Decision(Decision::Decided {
                proposal_id,
                outcome: Outcome::Rejected,
            }),
            Command::Pause => Reply::Paused,
            Command::Risk => Reply::Risk(RiskSettingsReply::default()),
            Command::Positions => Reply::Positions(status().positions),
            _ => Reply::Status(status()),
        })
    }
}

impl FakeHandler {
    fn actions(&self) -> Vec<Request> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| {
                !matches!(
                    r.command,
                    Command::Status | Command::Positions | Command::Risk
                )
            })
            .cloned()
            .collect()
    }
}

struct Site {
    base: String,
    handler: Arc<FakeHandler>,
    _stop: tokio_util::sync::DropGuard,
}

async fn site(store: &Store, token: Option<&str>) -> Site {
    let handler = Arc::new(FakeHandler::default());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let stop = CancellationToken::new();
    let d = mft::web::Dashboard::new(
        handler.clone(),
        store.clone(),
        token.map(Secret::new),
        Paise::from_rupees(100_000),
    );
    tokio::spawn(mft::web::serve_on(l, d, stop.clone()));
    Site {
        base: format!("http://{addr}"),
        handler,
        _stop: stop.drop_guard(),
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

struct Got {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

async fn send(req: reqwest::RequestBuilder) -> Got {
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    Got {
        status,
        headers,
        body: resp.text().await.unwrap(),
    }
}

impl Got {
    fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    }
}

/// Logs in through the form; returns the session cookie ("mft_session=...").
async fn login(s: &Site) -> String {
    let r = send(
        client()
            .post(format!("{}/login", s.base))
            .form(&[("token", TOKEN), ("next", "/queue")]),
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(r.header("location"), "/queue");
    let cookie = r.header("set-cookie");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attr), "{attr} missing in {cookie}");
    }
    assert!(!cookie.contains(TOKEN), "the cookie is not the token");
    cookie.split(';').next().unwrap().to_string()
}

fn csrf_of(page: &str) -> String {
    let i = page.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    page[i..i + 64].to_string()
}

#[tokio::test]
async fn healthz_is_open_and_json() {
    let db = support::db::sqlite_store().await;
    let s = site(&db.store, Some(TOKEN)).await;
    let r = send(client().get(format!("{}/healthz", s.base))).await;
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").starts_with("application/json"));
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v, serde_json::json!({"status": "ok"}));
}

#[tokio::test]
async fn pages_need_the_token_and_never_show_it() {
    for db in test_stores().await {
        let name = db.name;
        let s = site(&db.store, Some(TOKEN)).await;
        for path in [
            "/",
            "/queue",
            "/history",
            "/trades",
            "/risk",
            "/alerts",
            "/kill",
            "/metrics",
            "/events",
            "/equity.png",
        ] {
            let r = send(client().get(format!("{}{path}", s.base))).await;
            assert_eq!(r.status, 401, "{name} {path}");
            assert!(!r.body.contains(TOKEN));
        }
        // Fewer than the rate limit allows.
        for path in ["/", "/metrics"] {
            let r = send(
                client()
                    .get(format!("{}{path}", s.base))
                    .bearer_auth("st-9f8e7d6c5b4"),
            )
            .await;
            assert_eq!(r.status, 401, "{name} {path} wrong bearer");
        }
        assert!(s.handler.requests.lock().unwrap().is_empty());

        for path in [
            "/", "/queue", "/history", "/trades", "/risk", "/alerts", "/kill",
        ] {
            let r = send(client().get(format!("{}{path}", s.base)).bearer_auth(TOKEN)).await;
            assert_eq!(r.status, 200, "{name} {path}: {}", r.body);
            assert!(r.header("content-type").starts_with("text/html"));
            assert!(
                !r.body.contains(TOKEN),
                "{name} {path}: the token is in the page"
            );
            assert!(
                !r.body.contains("<script>alert"),
                "{name} {path}: unescaped"
            );
            assert_eq!(r.header("cache-control"), "no-store");
            assert!(
                r.header("content-security-policy")
                    .contains("default-src 'self'")
            );
        }
        let reqs = s.handler.requests.lock().unwrap().clone();
        assert!(reqs.iter().all(|r| r.actor == Actor::Web), "{name}");
    }
}

#[tokio::test]
async fn the_overview_shows_the_status_escaped() {
    let db = support::db::sqlite_store().await;
    let s = site(&db.store, Some(TOKEN)).await;
    let r = send(client().get(format!("{}/", s.base)).bearer_auth(TOKEN)).await;
    for want in [
        "<dd id=\"mode\">paper</dd>",
        "HALTED",
        "<dd id=\"last-scan\">none yet</dd>",
        "<dd id=\"day-pnl\" class=\"neg\">-₹118.45</dd>",
        "<dd id=\"realized\" class=\"neg\">-₹123.45</dd>",
        "₹123.45 of ₹2,000.00",
        "Open positions (1)",
        "NSE:M&amp;M",
        "₹1,500.50",
        "Pending proposals (1)",
        "NSE:INFY",
        "<meter",
    ] {
        assert!(r.body.contains(want), "{want:?} missing from {}", r.body);
    }
}

#[tokio::test]
async fn login_form_cookie_and_csrf_guard_actions() {
    for db in test_stores().await {
        let name = db.name;
        let s = site(&db.store, Some(TOKEN)).await;
        let t = Utc::now();
        let id = db
            .store
            .insert_proposal(&NewProposal {
                key: InstrumentKey::new("NSE", "INFY"),
                side: Side::Buy,
                quantity: 5,
                entry: Paise(150_000),
                stop: Paise(148_000),
                target: Paise(154_000),
                product: Product::Mis,
                confidence: 0.6,
                rationale: "<b>EMA</b> & RSI".into(),
                created_at: t,
                expires_at: t + chrono::Duration::minutes(10),
            })
            .await
            .unwrap()
            .unwrap()
            .id;
        let cookie = login(&s).await;
        let page = send(
            client()
                .get(format!("{}/queue", s.base))
                .header("cookie", &cookie),
        )
        .await;
        assert_eq!(page.status, 200, "{name}");
        assert!(page.body.contains("Approve") && page.body.contains("Reject"));
        assert!(
            page.body.contains("&lt;b&gt;EMA&lt;/b&gt; &amp; RSI"),
            "{name}: caption escaped"
        );
        assert!(page.body.contains("class=\"countdown\" data-expires="));
        let csrf = csrf_of(&page.body);

        // A cookie without the CSRF token is refused, with a wrong one too.
        for form in [vec![], vec![("csrf", "0".repeat(64))]] {
            let r = send(
                client()
                    .post(format!("{}/proposals/{id}/approve", s.base))
                    .header("cookie", &cookie)
                    .form(&form),
            )
            .await;
            assert_eq!(r.status, 403, "{name}: {}", r.body);
            assert!(r.body.contains("CSRF"));
        }
        assert!(s.handler.actions().is_empty(), "{name}: nothing was sent");

        // With it: the command goes to the handler as Actor::Web; the form redirects back.
        let r = send(
            client()
                .post(format!("{}/proposals/{id}/approve", s.base))
                .header("cookie", &cookie)
                .form(&[("csrf", csrf.as_str()), ("back", "/queue")]),
        )
        .await;
        assert_eq!(r.status, 303, "{name}: {}", r.body);
        assert!(r.header("location").starts_with("/queue?flash="));
        // The script's form: JSON answer.
        let r = send(
            client()
                .post(format!("{}/pause", s.base))
                .header("cookie", &cookie)
                .header("accept", "application/json")
                .form(&[("csrf", csrf.as_str())]),
        )
        .await;
        assert_eq!(r.status, 200, "{name}");
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(v["ok"], true);
        assert_eq!(v["message"], "Paused");
        // Bearer API clients need no CSRF token.
        let r = send(
            client()
                .post(format!("{}/proposals/{id}/approve", s.base))
                .bearer_auth(TOKEN),
        )
        .await;
        assert_eq!(r.status, 200, "{name}: {}", r.body);
        // Kill without its confirmation is refused.
        let r = send(client().post(format!("{}/kill", s.base)).bearer_auth(TOKEN)).await;
        assert_eq!(r.status, 400, "{name}");
        let actions = s.handler.actions();
        assert_eq!(
            actions
                .iter()
                .map(|r| r.command.clone())
                .collect::<Vec<_>>(),
            vec![
                Command::Approve { proposal_id: id },
                Command::Pause,
                Command::Approve { proposal_id: id }
            ],
            "{name}"
        );
        assert!(actions.iter().all(|r| r.actor == Actor::Web));

        // Logout ends the session.
        let r = send(
            client()
                .post(format!("{}/logout", s.base))
                .header("cookie", &cookie)
                .form(&[("csrf", csrf.as_str())]),
        )
        .await;
        assert_eq!(r.status, 303, "{name}");
        let r = send(
            client()
                .get(format!("{}/queue", s.base))
                .header("cookie", &cookie),
        )
        .await;
        assert_eq!(r.status, 401, "{name}: the session is gone");
    }
}

#[tokio::test]
async fn the_login_url_with_the_token_sets_the_cookie_and_drops_the_token() {
    let db = support::db::sqlite_store().await;
    let s = site(&db.store, Some(TOKEN)).await;
    let r = send(client().get(format!("{}/login?token={TOKEN}", s.base))).await;
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), "/");
    assert!(r.header("set-cookie").starts_with("mft_session="));
    assert!(!r.header("set-cookie").contains("Secure"), "plain HTTP");
    let r = send(
        client()
            .get(format!("{}/login?token={TOKEN}", s.base))
            .header("x-forwarded-proto", "https"),
    )
    .await;
    assert!(
        r.header("set-cookie").contains("; Secure"),
        "behind an HTTPS proxy"
    );
    let r = send(client().get(format!("{}/trades?token={TOKEN}", s.base))).await;
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), "/trades");
}

#[tokio::test]
async fn wrong_tokens_are_refused_and_rate_limited() {
    let db = support::db::sqlite_store().await;
    let s = site(&db.store, Some(TOKEN)).await;
    for i in 0..mft::web::auth::FAILS_PER_CLIENT {
        let r = send(
            client()
                .post(format!("{}/login", s.base))
                .form(&[("token", format!("guess-{i}"))]),
        )
        .await;
        assert_eq!(r.status, 401, "attempt {i}");
        assert!(r.body.contains("Wrong token"));
        assert!(r.header("set-cookie").is_empty());
    }
    // Blocked now, even with the right token.
    let r = send(
        client()
            .post(format!("{}/login", s.base))
            .form(&[("token", TOKEN)]),
    )
    .await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(!r.header("retry-after").is_empty());
    assert!(r.header("set-cookie").is_empty());
    let r = send(client().get(format!("{}/", s.base)).bearer_auth(TOKEN)).await;
    assert_eq!(r.status, 401, "bearer attempts are limited too");
}

#[tokio::test]
async fn without_a_token_it_is_read_only() {
    let db = support::db::sqlite_store().await;
    let s = site(&db.store, None).await;
    let r = send(client().get(format!("{}/queue", s.base))).await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("Read-only"));
    assert!(
        !r.body.contains("/proposals/9/approve"),
        "no action buttons"
    );
    for (path, form) in [
        ("/proposals/9/approve", vec![]),
        ("/pause", vec![]),
        ("/kill", vec![("confirm", "yes")]),
    ] {
        let r = send(
            client()
                .post(format!("{}{path}", s.base))
                .bearer_auth("anything")
                .form(&form),
        )
        .await;
        assert_eq!(r.status, 403, "{path}");
    }
    let r = send(
        client()
            .post(format!("{}/login", s.base))
            .form(&[("token", "x")]),
    )
    .await;
    assert_eq!(r.status, 403);
    assert!(s.handler.actions().is_empty());
}

#[tokio::test]
async fn metrics_are_prometheus_text_behind_the_token() {
    for db in test_stores().await {
        let name = db.name;
        let t = Utc.with_ymd_and_hms(2026, 11, 25, 8, 45, 0).unwrap();
        let p = db
            .store
            .insert_proposal(&NewProposal {
                key: InstrumentKey::new("NSE", "INFY"),
                side: Side::Buy,
                quantity: 5,
                entry: Paise(150_000),
                stop: Paise(148_000),
                target: Paise(154_000),
                product: Product::Mis,
                confidence: 0.6,
                rationale: "r".into(),
                created_at: t,
                expires_at: t + chrono::Duration::minutes(10),
            })
            .await
            .unwrap()
            .unwrap();
        let decided = t + chrono::Duration::seconds(42);
        assert!(
            db.store
                .transition_proposal(
                    p.id,
                    ProposalStatus::Pending,
                    ProposalStatus::Approved,
                    decided,
                    None,
                    None
                )
                .await
                .unwrap()
        );
        assert!(
            db.store
                .transition_proposal(
                    p.id,
                    ProposalStatus::Approved,
                    ProposalStatus::Vetoed,
                    decided,
                    None,
                    Some("MAX_DAILY_LOSS: today's loss ₹2,500.00 has reached the limit")
                )
                .await
                .unwrap()
        );
        let run = db.store.start_scan_run(t, 3).await.unwrap();
        db.store
            .finish_scan_run(run, t + chrono::Duration::milliseconds(1500), 1, 0, None)
            .await
            .unwrap();

        let s = site(&db.store, Some(TOKEN)).await;
        let r = send(client().get(format!("{}/metrics", s.base))).await;
        assert_eq!(r.status, 401, "{name}");
        let r = send(
            client()
                .get(format!("{}/metrics", s.base))
                .bearer_auth(TOKEN),
        )
        .await;
        assert_eq!(r.status, 200, "{name}: {}", r.body);
        assert!(
            r.header("content-type")
                .starts_with("text/plain; version=0.0.4")
        );
        for want in [
            "# TYPE mft_scans_total counter\nmft_scans_total 1\n",
            "mft_scan_duration_seconds_bucket{le=\"1\"} 0\n",
            "mft_scan_duration_seconds_bucket{le=\"2.5\"} 1\n",
            "mft_scan_duration_seconds_sum 1.5\n",
            "mft_proposals_total{outcome=\"vetoed\"} 1\n",
            "mft_proposals_total{outcome=\"executed\"} 0\n",
            "mft_vetoes_total{code=\"MAX_DAILY_LOSS\"} 1\n",
            "mft_vetoes_total{code=\"HALTED\"} 0\n",
            "mft_orders{state=\"filled\"} 0\n",
            "# TYPE mft_approval_latency_seconds histogram\n",
            "mft_approval_latency_seconds_bucket{le=\"30\"} 0\n",
            "mft_approval_latency_seconds_bucket{le=\"60\"} 1\n",
            "mft_approval_latency_seconds_count 1\n",
            "# TYPE mft_kite_api_errors_total counter\n",
        ] {
            assert!(
                r.body.contains(want),
                "{name}: {want:?} missing from\n{}",
                r.body
            );
        }
        assert!(!r.body.contains("mft_llm"), "no LLM series without an LLM");
        // Every sample line is `name{labels} value`.
        for line in r.body.lines().filter(|l| !l.starts_with('#')) {
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "{name}: bad sample {line:?}");
        }
    }
}

#[tokio::test]
async fn events_stream_a_new_proposal_and_a_halt() {
    for db in test_stores().await {
        let name = db.name;
        let s = site(&db.store, Some(TOKEN)).await;
        let mut resp = client()
            .get(format!("{}/events", s.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        let mut seen = String::new();
        // The hello event, then give the watcher its baseline.
        while !seen.contains("event: hello") {
            seen.push_str(&String::from_utf8_lossy(
                &resp.chunk().await.unwrap().unwrap(),
            ));
        }
        tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
        let t = Utc::now();
        db.store
            .insert_proposal(&NewProposal {
                key: InstrumentKey::new("NSE", "TCS"),
                side: Side::Buy,
                quantity: 1,
                entry: Paise(100),
                stop: Paise(90),
                target: Paise(120),
                product: Product::Mis,
                confidence: 0.5,
                rationale: "r".into(),
                created_at: t,
                expires_at: t + chrono::Duration::minutes(10),
            })
            .await
            .unwrap()
            .unwrap();
        let got = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            while !seen.contains("event: proposal") {
                match resp.chunk().await.unwrap() {
                    Some(b) => seen.push_str(&String::from_utf8_lossy(&b)),
                    None => break,
                }
            }
        })
        .await;
        assert!(got.is_ok(), "{name}: no proposal event in {seen}");
        assert!(seen.contains("New proposal"), "{name}: {seen}");
        // A halt stored by another process (`mft kill`) reaches the page too.
        db.store
            .set_halt("kill from the command line", Utc::now())
            .await
            .unwrap();
        let got = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            while !seen.contains("event: halt") {
                match resp.chunk().await.unwrap() {
                    Some(b) => seen.push_str(&String::from_utf8_lossy(&b)),
                    None => break,
                }
            }
        })
        .await;
        assert!(got.is_ok(), "{name}: no halt event in {seen}");
        assert!(seen.contains("HALTED"), "{name}: {seen}");
    }
}

#[tokio::test]
async fn serve_binds_and_stops_on_shutdown() {
    let db = support::db::sqlite_store().await;
    let shutdown = CancellationToken::new();
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let d = mft::web::Dashboard::new(
        Arc::new(FakeHandler::default()),
        db.store.clone(),
        Some(Secret::new(TOKEN)),
        Paise::from_rupees(100_000),
    );
    let task = tokio::spawn(mft::web::serve(addr.to_string(), d, shutdown.clone()));
    let url = format!("http://{addr}/healthz");
    let mut ok = false;
    for _ in 0..100 {
        if let Ok(r) = reqwest::get(&url).await {
            assert_eq!(r.status().as_u16(), 200);
            ok = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(ok, "dashboard never answered");
    let r = reqwest::get(format!("http://{addr}/")).await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    shutdown.cancel();
    let res = tokio::time::timeout(std::time::Duration::from_secs(10), task)
        .await
        .expect("serve did not stop")
        .unwrap();
    assert!(res.is_ok());

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let d = mft::web::Dashboard::new(
        Arc::new(FakeHandler::default()),
        db.store.clone(),
        None,
        Paise::from_rupees(100_000),
    );
    let e = mft::web::serve(
        taken.local_addr().unwrap().to_string(),
        d,
        CancellationToken::new(),
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("STATUS_ADDR"), "{e}");
}

#[tokio::test]
async fn changing_the_token_ends_every_session() {
    let db = support::db::sqlite_store().await;
    let s = site(&db.store, Some(TOKEN)).await;
    let cookie = login(&s).await;
    let r = send(
        client()
            .get(format!("{}/", s.base))
            .header("cookie", &cookie),
    )
    .await;
    assert_eq!(r.status, 200);
    // The same database, a new STATUS_TOKEN (say, after the old one leaked).
    let rotated = site(&db.store, Some("st-rotated-1234567")).await;
    let r = send(
        client()
            .get(format!("{}/", rotated.base))
            .header("cookie", &cookie),
    )
    .await;
    assert_eq!(
        r.status, 401,
        "an old session must not survive a token change"
    );
}
