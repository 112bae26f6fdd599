//! The service connected to the market, end to end on every store (SQLite always, PostgreSQL
//! when TEST_DATABASE_URL is set): the Kite login from the bot's button through the status
//! server's /kite/callback, the encrypted session, fetching candles before a scan, TokenException,
//! live prices from the ticker WebSocket (fresh -> approved, stopped -> STALE_PRICE), holidays,
//! /preflight, and bad input at each step. Kite and Telegram are the local fakes.

mod support;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use mft::app::{AppError, run_with};
use mft::clock::{IST, ManualClock};
use mft::config::{ScheduleSettings, Secret, Settings};
use mft::domain::{InstrumentKey, Interval};
use mft::store::Store;
use support::db::{TestDb, test_stores};
use support::kite_fake::{self, KiteFake};
use support::series;
use support::telegram_fake::{Call, SentMessage, TelegramFake};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "123456:Market-token";
const OPERATOR: i64 = 4242;
const WAIT: Duration = Duration::from_secs(15);
const INFY_TOKEN: u32 = 408065;
const RELIANCE_TOKEN: u32 = 738561;

fn key(s: &str) -> InstrumentKey {
    s.parse().expect("instrument key")
}

/// 13:00 IST on Wednesday 25 Nov 2026 (a trading day after the 24th's holiday).
fn closed_by() -> DateTime<Utc> {
    IST.with_ymd_and_hms(2026, 11, 25, 13, 0, 0)
        .unwrap()
        .with_timezone(&Utc)
}

fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").to_string()
}

fn settings(
    tg: &TelegramFake,
    kite: &KiteFake,
    db_url: &str,
    charts: &std::path::Path,
) -> Settings {
    let mut s = Settings {
        database_url: db_url.to_string(),
        ..Settings::default()
    };
    s.telegram.bot_token = Some(Secret::new(TOKEN));
    s.telegram.chat_id = Some(OPERATOR);
    s.telegram.api_url = tg.url();
    s.zerodha.api_key = Some(Secret::new(kite_fake::API_KEY));
    s.zerodha.api_secret = Some(Secret::new(kite_fake::API_SECRET));
    s.zerodha.api_url = kite.url.clone();
    s.zerodha.ticker_url = kite.ticker_url.clone();
    s.zerodha.secret_key = Some(Secret::new("42".repeat(32)));
    s.status.addr = free_addr();
    s.trading.watchlist = vec![key("NSE:INFY"), key("NSE:RELIANCE")];
    s.trading.interval = Interval::Minute15;
    s.strategy = series::strategy();
    s.charts.dir = charts.to_string_lossy().into_owned();
    s.schedules = ScheduleSettings {
        scan: String::new(),
        expiry_sweep: String::new(),
        square_off: String::new(),
        login_link: String::new(),
        exit_check: String::new(),
        instruments_refresh: String::new(),
    };
    s.risk.trading_window = "00:00-23:59".parse().expect("valid");
    s.risk.trading_days = "Mon-Sun".parse().expect("valid");
    s
}

async fn store_instruments(store: &Store) {
    let rows = mft::market::parse_instruments_csv(kite_fake::INSTRUMENTS_CSV.as_bytes())
        .expect("instruments fixture");
    store.upsert_instruments(&rows).await.expect("instruments");
}

fn sends(calls: &[Call]) -> Vec<&Call> {
    calls.iter().filter(|c| c.method == "sendMessage").collect()
}

struct Service {
    tg: TelegramFake,
    kite: KiteFake,
    clock: ManualClock,
    settings: Arc<Settings>,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), AppError>>,
    name: &'static str,
    _guard: tokio_util::sync::DropGuard,
    _dir: tempfile::TempDir,
}

async fn poll_until(cond: impl Fn() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cond()
}

impl Service {
    async fn start(db: &TestDb, at: DateTime<Utc>) -> Service {
        let tg = TelegramFake::start(TOKEN).await;
        let kite = KiteFake::start().await;
        let dir = tempfile::tempdir().expect("dir");
        store_instruments(&db.store).await;
        let s = Arc::new(settings(&tg, &kite, &db.url, &dir.path().join("charts")));
        let clock = ManualClock::new(at);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run_with(
            s.clone(),
            Arc::new(clock.clone()),
            shutdown.clone(),
        ));
        let ok = tg
            .wait_for(
                |c| {
                    sends(c)
                        .iter()
                        .any(|m| m.str("text").is_some_and(|t| t.contains("MFT-1 started")))
                },
                WAIT,
            )
            .await;
        assert!(ok, "{}: no start alert: {:?}", db.name, tg.all_calls());
        Service {
            tg,
            kite,
            clock,
            settings: s,
            _guard: shutdown.clone().drop_guard(),
            shutdown,
            task,
            name: db.name,
            _dir: dir,
        }
    }

    fn sent(&self) -> usize {
        self.tg.calls("sendMessage").len()
    }

    /// Waits for a text message sent after `before` that `want` accepts.
    async fn wait_message(
        &self,
        before: usize,
        want: impl Fn(&SentMessage) -> bool,
    ) -> SentMessage {
        let texts_after = || -> Vec<String> {
            sends(&self.tg.all_calls())
                .into_iter()
                .skip(before)
                .filter_map(|c| c.str("text").map(String::from))
                .collect()
        };
        let find = || {
            let t = texts_after();
            self.tg
                .messages()
                .into_iter()
                .rev()
                .find(|m| m.photo.is_none() && t.iter().any(|x| x == m.body()) && want(m))
        };
        let ok = poll_until(|| find().is_some()).await;
        assert!(
            ok,
            "{}: no expected message; got {:#?}",
            self.name,
            texts_after()
        );
        find().expect("message")
    }

    async fn say(&self, text: &str, want: impl Fn(&str) -> bool) -> SentMessage {
        let before = self.sent();
        self.tg.inject_message(OPERATOR, OPERATOR, text);
        self.wait_message(before, |m| want(m.body())).await
    }

    fn callback_url(&self, query: &str) -> String {
        format!("http://{}/kite/callback?{query}", self.settings.status.addr)
    }

    /// `/login` → the button's URL → its state.
    async fn login_button(&self) -> (String, String) {
        let m = self.say("/login", |t| t.contains("Log in to Kite")).await;
        let button = m
            .reply_markup
            .as_ref()
            .and_then(|k| k["inline_keyboard"][0][0].as_object().cloned())
            .expect("an inline button");
        assert_eq!(button["text"], "Log in to Kite", "{}", self.name);
        let url = button["url"].as_str().expect("a URL button").to_string();
        let prefix = format!(
            "https://kite.zerodha.com/connect/login?api_key={}&v=3&redirect_params=state%3D",
            kite_fake::API_KEY
        );
        assert!(url.starts_with(&prefix), "{}: {url}", self.name);
        let state = url[prefix.len()..].to_string();
        assert!(state.len() >= 20, "{}: state {state:?}", self.name);
        (url, state)
    }

    /// The full login: button, callback, the chat's confirmation.
    async fn login(&self) {
        let (_, state) = self.login_button().await;
        let before = self.sent();
        let r = reqwest::get(self.callback_url(&format!(
            "request_token={}&action=login&status=success&state={state}",
            kite_fake::REQUEST_TOKEN
        )))
        .await
        .expect("callback");
        assert_eq!(r.status(), 200, "{}", self.name);
        let body = r.text().await.unwrap_or_default();
        assert!(
            body.contains("Logged in to Kite as AB1234. You can close this tab."),
            "{}: {body}",
            self.name
        );
        self.wait_message(before, |m| {
            m.body() == "Kite session active until 06:00 IST tomorrow (user AB1234)"
        })
        .await;
    }

    async fn stop(self) {
        self.shutdown.cancel();
        let r = tokio::time::timeout(WAIT, self.task)
            .await
            .expect("stops")
            .expect("no panic");
        assert!(r.is_ok(), "{}: {r:?}", self.name);
    }
}

async fn db_bytes_contain(db: &TestDb, needle: &str) -> bool {
    if db.name == "sqlite" {
        let path = db.url.trim_start_matches("sqlite://");
        let mut hay = std::fs::read(path).unwrap_or_default();
        hay.extend(std::fs::read(format!("{path}-wal")).unwrap_or_default());
        hay.windows(needle.len()).any(|w| w == needle.as_bytes())
    } else {
        let s = db.store.current_session().await.expect("session row");
        s.is_some_and(|s| s.token.contains(needle) || s.user_id.contains(needle))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn login_from_the_button_stores_an_encrypted_session_the_next_fetch_sends() {
    for db in test_stores().await {
        let svc = Service::start(&db, closed_by() + chrono::Duration::minutes(1)).await;
        let (_, state) = svc.login_button().await;
        // A forged state: 400, plain text, nothing stored, Kite not called.
        let forged = reqwest::get(svc.callback_url(&format!(
            "request_token={}&action=login&status=success&state=forged",
            kite_fake::REQUEST_TOKEN
        )))
        .await
        .unwrap();
        assert_eq!(forged.status(), 400, "{}", db.name);
        assert!(
            forged.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/plain")
        );
        assert!(
            forged
                .text()
                .await
                .unwrap()
                .contains("not one MFT-1 issued")
        );
        assert!(
            svc.kite.requests_to("/session/token").is_empty(),
            "{}",
            db.name
        );
        assert!(db.store.current_session().await.unwrap().is_none());

        // The real redirect.
        let before = svc.sent();
        let ok = reqwest::get(svc.callback_url(&format!(
            "request_token={}&action=login&status=success&state={state}",
            kite_fake::REQUEST_TOKEN
        )))
        .await
        .unwrap();
        assert_eq!(ok.status(), 200, "{}", db.name);
        assert!(
            ok.text()
                .await
                .unwrap()
                .contains("Logged in to Kite as AB1234. You can close this tab.")
        );
        svc.wait_message(before, |m| {
            m.body() == "Kite session active until 06:00 IST tomorrow (user AB1234)"
        })
        .await;
        let issued = svc.kite.issued_tokens();
        assert_eq!(issued.len(), 1, "{}", db.name);
        let stored = db.store.current_session().await.unwrap().expect("stored");
        assert_eq!(stored.user_id, "AB1234");
        assert!(
            !db_bytes_contain(&db, &issued[0]).await,
            "{}: raw token at rest",
            db.name
        );

        // Replaying the same redirect: 400, no second exchange.
        let replay = reqwest::get(svc.callback_url(&format!(
            "request_token={}&action=login&status=success&state={state}",
            kite_fake::REQUEST_TOKEN
        )))
        .await
        .unwrap();
        assert_eq!(replay.status(), 400, "{}", db.name);
        assert!(replay.text().await.unwrap().contains("already used"));
        assert_eq!(
            svc.kite.requests_to("/session/token").len(),
            1,
            "{}",
            db.name
        );

        // The scan fetches its candles from Kite with the new token, then proposes.
        svc.kite
            .set_series(INFY_TOKEN, &series::rising_cross(closed_by(), 0.0));
        svc.kite
            .set_series(RELIANCE_TOKEN, &series::rising_cross(closed_by(), 0.0));
        let photos = svc.tg.calls("sendPhoto").len();
        let reply = svc.say("/scan", |t| t.contains("Scan done")).await;
        assert!(
            reply.body().contains("2 proposals"),
            "{}: {}",
            db.name,
            reply.body()
        );
        let hist = svc.kite.historical_requests();
        assert!(!hist.is_empty(), "{}: no fetch", db.name);
        let want = format!("token {}:{}", kite_fake::API_KEY, issued[0]);
        assert!(
            hist.iter()
                .all(|r| r.authorization.as_deref() == Some(want.as_str())),
            "{}: {:?}",
            db.name,
            hist.iter()
                .map(|r| r.authorization.clone())
                .collect::<Vec<_>>()
        );
        assert!(poll_until(|| svc.tg.calls("sendPhoto").len() >= photos + 2).await);
        svc.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_redirects_and_kite_failures_store_nothing() {
    for db in test_stores().await {
        let svc = Service::start(&db, closed_by()).await;
        let (_, state) = svc.login_button().await;
        for (query, want) in [
            (
                format!("request_token=abc&action=login&status=cancelled&state={state}"),
                "not success",
            ),
            (
                format!("action=login&status=success&state={state}"),
                "request_token is missing",
            ),
            (
                format!("request_token=%3Cscript%3E&action=login&status=success&state={state}"),
                "malformed",
            ),
            (
                "request_token=abc&action=login&status=success".to_string(),
                "no state",
            ),
        ] {
            let r = reqwest::get(svc.callback_url(&query)).await.unwrap();
            assert_eq!(r.status(), 400, "{}: {query}", db.name);
            let body = r.text().await.unwrap();
            assert!(body.contains(want), "{}: {query}: {body}", db.name);
        }
        assert!(svc.kite.requests_to("/session/token").is_empty());
        // The state survived the refusals above; Kite now answers 500, then 403.
        svc.kite
            .fail_session(500, "GeneralException", "Kite is down");
        let r = reqwest::get(svc.callback_url(&format!(
            "request_token={}&action=login&status=success&state={state}",
            kite_fake::REQUEST_TOKEN
        )))
        .await
        .unwrap();
        assert_eq!(r.status(), 502, "{}", db.name);
        assert!(r.text().await.unwrap().contains("Kite is down"));
        assert!(
            db.store.current_session().await.unwrap().is_none(),
            "{}",
            db.name
        );
        svc.kite.clear_session_failure();
        // /login <pasted token> with a token Kite does not know: Kite's 403 is reported.
        let m = svc
            .say("/login wrongToken1", |t| t.contains("Failed"))
            .await;
        assert!(
            m.body().contains("Token is invalid or has expired"),
            "{}: {}",
            db.name,
            m.body()
        );
        assert!(db.store.current_session().await.unwrap().is_none());
        // The pasted redirect URL completes the login without a reachable callback.
        let (_, state) = svc.login_button().await;
        let m = svc
            .say(
                &format!(
                    "/login https://example.invalid/kite/callback?request_token={}&action=login&status=success&state={state}",
                    kite_fake::REQUEST_TOKEN
                ),
                |t| t.contains("Kite session active"),
            )
            .await;
        assert_eq!(
            m.body(),
            "Kite session active until 06:00 IST tomorrow (user AB1234)"
        );
        svc.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn token_exception_ends_the_session_with_one_alert_and_a_login_button() {
    for db in test_stores().await {
        let svc = Service::start(&db, closed_by() + chrono::Duration::minutes(1)).await;
        svc.login().await;
        svc.kite
            .set_series(INFY_TOKEN, &series::rising_cross(closed_by(), 0.0));
        svc.kite
            .set_series(RELIANCE_TOKEN, &series::rising_cross(closed_by(), 0.0));
        svc.kite.revoke_tokens();
        let before = svc.sent();
        svc.tg.inject_message(OPERATOR, OPERATOR, "/scan");
        let alert = svc
            .wait_message(before, |m| {
                m.body().starts_with("Kite session expired: tap Log in")
            })
            .await;
        let buttons = alert.reply_markup.clone().expect("login button");
        assert_eq!(buttons["inline_keyboard"][0][0]["text"], "Log in to Kite");
        assert!(
            buttons["inline_keyboard"][0][0]["url"]
                .as_str()
                .unwrap()
                .starts_with("https://kite.zerodha.com/connect/login?api_key=")
        );
        // The scan still answers (stale data is named), and a second failure does not alert again.
        let reply = svc
            .wait_message(before, |m| m.body().contains("Scan done"))
            .await;
        assert!(
            reply.body().contains("stale data for NSE:INFY"),
            "{}: {}",
            db.name,
            reply.body()
        );
        let m = svc.say("/scan", |t| t.contains("Scan done")).await;
        let _ = m;
        let expired_alerts = sends(&svc.tg.all_calls())
            .iter()
            .filter(|c| {
                c.str("text")
                    .is_some_and(|t| t.starts_with("Kite session expired"))
            })
            .count();
        assert_eq!(expired_alerts, 1, "{}", db.name);
        let s = db.store.current_session().await.unwrap().expect("session");
        assert!(s.expired_at.is_some(), "{}", db.name);
        svc.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn live_ticks_pass_an_approval_and_stopped_ticks_veto_stale_price() {
    for db in test_stores().await {
        let svc = Service::start(&db, closed_by() + chrono::Duration::minutes(1)).await;
        svc.login().await;
        assert!(
            poll_until(|| !svc.kite.ticker_connections().is_empty()).await,
            "{}: the ticker never connected",
            db.name
        );
        let conn = &svc.kite.ticker_connections()[0];
        assert_eq!(conn["access_token"], svc.kite.issued_tokens()[0]);
        assert!(poll_until(|| svc.kite.ticker_messages().iter().any(|m| m.contains("ltp"))).await);
        svc.kite
            .set_series(INFY_TOKEN, &series::rising_cross(closed_by(), 0.0));
        svc.kite
            .set_series(RELIANCE_TOKEN, &series::rising_cross(closed_by(), 0.0));
        svc.say("/scan", |t| t.contains("Scan done")).await;
        assert!(
            poll_until(|| svc
                .tg
                .messages()
                .iter()
                .filter(|m| m.photo.is_some())
                .count()
                >= 2)
            .await
        );
        let cards: Vec<SentMessage> = svc
            .tg
            .messages()
            .into_iter()
            .filter(|m| m.photo.is_some())
            .collect();
        let id_of = |m: &SentMessage| -> (i64, String) {
            let data = m.buttons()[0].1.clone();
            (m.message_id, data)
        };
        let infy = cards
            .iter()
            .find(|c| c.body().contains("NSE:INFY"))
            .expect("INFY card");
        let reliance = cards
            .iter()
            .find(|c| c.body().contains("NSE:RELIANCE"))
            .expect("RELIANCE card");

        // A malformed frame and an unknown token change nothing; then real LTP ticks at the entry.
        svc.kite.send_frame(vec![0, 1, 0, 3, 1, 2, 3]);
        svc.kite.send_frame(kite_fake::frame(&[
            kite_fake::ltp_packet(INFY_TOKEN, 9350),
            kite_fake::ltp_packet(RELIANCE_TOKEN, 9350),
            kite_fake::ltp_packet(999, 1),
        ]));
        tokio::time::sleep(Duration::from_millis(300)).await;
        // A winning tap is answered "Placing…" at once; the outcome then edits the card.
        let outcome = |mid: i64| {
            svc.tg
                .message(mid)
                .filter(|m| m.edits > 0)
                .map(|m| m.body().lines().last().unwrap_or("").to_string())
        };
        let (mid, data) = id_of(infy);
        let cb = svc.tg.inject_callback(OPERATOR, OPERATOR, mid, &data);
        let answer = svc.tg.wait_answered(&cb, WAIT).await;
        let text = answer.and_then(|a| a.text).unwrap_or_default();
        assert_eq!(text, "Placing…", "{}", db.name);
        assert!(poll_until(|| outcome(mid).is_some()).await, "{}", db.name);
        let text = outcome(mid).unwrap_or_default();
        assert!(text.starts_with("Executed: BUY"), "{}: {text}", db.name);

        // The ticks stop: two minutes later the RELIANCE price is too old.
        svc.clock.advance(chrono::Duration::seconds(120));
        let (mid, data) = id_of(reliance);
        let cb = svc.tg.inject_callback(OPERATOR, OPERATOR, mid, &data);
        let text = svc
            .tg
            .wait_answered(&cb, WAIT)
            .await
            .and_then(|a| a.text)
            .unwrap_or_default();
        assert_eq!(text, "Placing…", "{}", db.name);
        assert!(poll_until(|| outcome(mid).is_some()).await, "{}", db.name);
        let text = outcome(mid).unwrap_or_default();
        assert!(text.contains("STALE_PRICE"), "{}: {text}", db.name);
        assert!(text.contains("120s old (max 60s)"), "{}: {text}", db.name);

        // The ticker drops: the client reconnects.
        let n = svc.kite.ticker_connections().len();
        svc.kite.drop_ticker();
        assert!(
            poll_until(|| svc.kite.ticker_connections().len() > n).await,
            "{}: no reconnect",
            db.name
        );
        // /status shows the position with its price age.
        let status = svc.say("/status", |t| t.contains("MFT-1 status")).await;
        assert!(
            status.body().contains("old)"),
            "{}: {}",
            db.name,
            status.body()
        );
        assert!(
            status
                .body()
                .contains("Kite: session active until 06:00 IST tomorrow (user AB1234)"),
            "{}: {}",
            db.name,
            status.body()
        );
        let page = reqwest::get(format!("http://{}/", svc.settings.status.addr))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            page.contains("session active until 06:00 IST tomorrow"),
            "{page}"
        );
        assert!(page.contains("old)"), "{page}");
        svc.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_fixture_packets_reach_the_price_cache() {
    // Kite's own ticker packets (quote and full, token 408065 = NSE:INFY at 1573.15).
    let cache = mft::market::PriceCache::new();
    cache.set_tokens([(INFY_TOKEN, key("NSE:INFY"))]);
    let packets = kite_fake::fixture_packets();
    let at = closed_by();
    let quote = kiteconnect::parse_binary(&kite_fake::frame(&packets[..1]));
    assert_eq!(cache.apply_ticks(&quote, at).updated, 1);
    assert_eq!(
        cache.get(&key("NSE:INFY")).map(|p| p.price.0),
        Some(157_315)
    );
    // The full packet in one frame with the quote: the last one wins.
    let both = kiteconnect::parse_binary(&kite_fake::frame(&packets));
    assert_eq!(both.len(), 2);
    let later = at + chrono::Duration::seconds(1);
    assert_eq!(cache.apply_ticks(&both, later).updated, 2);
    let p = cache.get(&key("NSE:INFY")).expect("price");
    assert_eq!((p.price.0, p.at), (157_370, later));
}

/// A scanner that only counts calls (holiday tests: it must not be called).
#[derive(Default)]
struct CountingScanner(std::sync::atomic::AtomicUsize);

#[async_trait::async_trait]
impl mft::ports::Scanner for CountingScanner {
    async fn scan(
        &self,
        _only: Option<&InstrumentKey>,
        _open: &[InstrumentKey],
    ) -> Result<mft::ports::ScanResult, mft::ports::ScanError> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Err(mft::ports::ScanError::Failed {
            message: "counted".into(),
            recoverable: true,
        })
    }
}

/// The handler as `mft run` wires it, with a recording notifier, at `at`.
async fn handler_at(
    db: &TestDb,
    s: Settings,
    at: DateTime<Utc>,
) -> (
    mft::app::handler::Handler,
    Arc<support::notifier::RecordingNotifier>,
    Arc<CountingScanner>,
    ManualClock,
) {
    let clock = ManualClock::new(at);
    let dyn_clock: Arc<dyn mft::clock::Clock> = Arc::new(clock.clone());
    let s = Arc::new(s);
    let link = mft::app::market_link(&db.store, &s, &dyn_clock)
        .await
        .expect("market link");
    let notifier = Arc::new(support::notifier::RecordingNotifier::default());
    let scanner = Arc::new(CountingScanner::default());
    let broker = Arc::new(mft::oms::PaperBroker::new(
        db.store.clone(),
        s.clone(),
        dyn_clock.clone(),
    ));
    let h = mft::app::handler::Handler::new(
        db.store.clone(),
        s,
        dyn_clock,
        broker,
        notifier.clone(),
        scanner.clone(),
    )
    .with_market(link);
    (h, notifier, scanner, clock)
}

fn req(command: mft::domain::Command, actor: mft::domain::Actor) -> mft::domain::Request {
    mft::domain::Request { command, actor }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holidays_skip_scheduled_scans_and_the_login_link() {
    use mft::domain::{Actor, Command};
    use mft::ports::{Alert, Reply};
    for db in test_stores().await {
        let tg = TelegramFake::start(TOKEN).await;
        let kite = KiteFake::start().await;
        let dir = tempfile::tempdir().unwrap();
        let s = settings(&tg, &kite, &db.url, dir.path());
        // Tuesday 24 Nov 2026, 10:00 IST: Guru Nanak Jayanti (from the shipped calendar).
        let holiday = IST
            .with_ymd_and_hms(2026, 11, 24, 10, 0, 0)
            .unwrap()
            .with_timezone(&Utc);
        let (h, notifier, scanner, clock) = handler_at(&db, s, holiday).await;
        let r = h
            .handle(req(Command::Scan { only: None }, Actor::Scheduler))
            .await
            .unwrap();
        let Reply::Skipped { reason } = r else {
            panic!("{}: {r:?}", db.name)
        };
        assert!(reason.contains("Prakash Gurpurb"), "{}: {reason}", db.name);
        let r = h
            .handle(req(Command::Login { input: None }, Actor::Scheduler))
            .await
            .unwrap();
        assert!(matches!(r, Reply::Skipped { .. }), "{}: {r:?}", db.name);
        assert_eq!(scanner.0.load(std::sync::atomic::Ordering::SeqCst), 0);
        assert!(notifier.alerts().is_empty(), "{}", db.name);

        // A bad holidays file is refused whole, with its line; a good one counts at once.
        let bad = dir.path().join("bad.csv");
        std::fs::write(
            &bad,
            "date,description\n2026-11-26,Extra\n2026-11-31,Nope\n",
        )
        .unwrap();
        let before = db.store.holidays().await.unwrap();
        let err = mft::market::import_holidays(&db.store, &bad)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 3") && err.contains("nothing was imported"),
            "{err}"
        );
        assert_eq!(db.store.holidays().await.unwrap(), before, "{}", db.name);
        let good = dir.path().join("good.csv");
        std::fs::write(&good, "date,description\n2026-11-26,Exchange closed\n").unwrap();
        mft::market::import_holidays(&db.store, &good)
            .await
            .unwrap();
        clock.set(holiday + chrono::Duration::days(2));
        let r = h
            .handle(req(Command::Scan { only: None }, Actor::Scheduler))
            .await
            .unwrap();
        assert!(
            matches!(&r, Reply::Skipped { reason } if reason.contains("Exchange closed")),
            "{r:?}"
        );

        // A trading day: the job posts the link with its button.
        clock.set(holiday + chrono::Duration::days(1));
        let r = h
            .handle(req(Command::Login { input: None }, Actor::Scheduler))
            .await
            .unwrap();
        let Reply::LoginLink { url } = r else {
            panic!("{r:?}")
        };
        assert!(matches!(notifier.alerts().last(), Some(Alert::LoginLink { url: u }) if *u == url));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_on_a_good_and_a_bad_setup() {
    use mft::domain::{Actor, Command, Paise};
    use mft::ports::{CheckLevel, Reply};
    for db in test_stores().await {
        let tg = TelegramFake::start(TOKEN).await;
        let kite = KiteFake::start().await;
        let dir = tempfile::tempdir().unwrap();
        store_instruments(&db.store).await;
        for k in ["NSE:INFY", "NSE:RELIANCE"] {
            db.store
                .upsert_candles(
                    &key(k),
                    Interval::Minute15,
                    &series::rising_cross(closed_by(), 0.0),
                )
                .await
                .unwrap();
        }
        let mut s = settings(&tg, &kite, &db.url, dir.path());
        s.trading.capital = Paise::from_rupees(50_000);
        s.risk.max_daily_loss = Paise::from_rupees(1_000);
        s.risk.max_position_value = Paise::from_rupees(10_000);
        let at = closed_by() + chrono::Duration::minutes(1);
        let (h, _, _, _) = handler_at(&db, s, at).await;
        let r = h
            .handle(req(
                Command::Login {
                    input: Some(kite_fake::REQUEST_TOKEN.into()),
                },
                Actor::Cli,
            ))
            .await
            .unwrap();
        assert!(matches!(r, Reply::LoggedIn { .. }), "{r:?}");
        let r = h.handle(req(Command::KillTest, Actor::Cli)).await.unwrap();
        assert!(matches!(r, Reply::KillTest(_)), "{r:?}");
        let Reply::Preflight(good) = h.handle(req(Command::Preflight, Actor::Cli)).await.unwrap()
        else {
            panic!()
        };
        let text = mft::texts::preflight(&good);
        assert!(!good.failed(), "{}: {text}", db.name);
        for want in [
            "ok      Kite session: API reachable, logged in as AB1234 (token expires 06:00 IST tomorrow)",
            "ok      Margin: available equity margin ₹99,725.05 covers [trading] capital ₹50,000.00",
            "ok      Daily loss limit",
            "ok      Position limit",
            "ok      Leverage",
            "warning Paper trading: 0 trading day(s) with paper activity (fewer than 5)",
            "ok      Open orders",
            "ok      Data freshness: 2 of 2 watchlist series up to date",
            "ok      Kill switch: last exercised",
        ] {
            assert!(text.contains(want), "{}: {want:?} not in\n{text}", db.name);
        }

        // Bad: no Kite keys, loose limits, a stuck order, stale data, no kill drill.
        let db2 = match db.name {
            "sqlite" => support::db::sqlite_store().await,
            _ => support::db::postgres_store(&std::env::var("TEST_DATABASE_URL").unwrap()).await,
        };
        let mut bad = Settings {
            database_url: db2.url.clone(),
            ..Settings::default()
        };
        bad.trading.leverage = 3.0;
        bad.risk.max_daily_loss = Paise::from_rupees(10_000);
        let order = mft::domain::OrderRequest {
            key: key("NSE:INFY"),
            side: mft::domain::Side::Buy,
            quantity: 1,
            order_type: mft::domain::OrderType::Market,
            product: mft::domain::Product::Mis,
            tag: "mft-stuck".into(),
            purpose: mft::domain::OrderPurpose::Entry { proposal_id: 1 },
            reference_price: Paise::from_rupees(100),
        };
        db2.store
            .record_order(&order, at - chrono::Duration::minutes(20))
            .await
            .unwrap();
        let (h2, _, _, _) = handler_at(&db2, bad, at).await;
        let Reply::Preflight(report) = h2
            .handle(req(Command::Preflight, Actor::Cli))
            .await
            .unwrap()
        else {
            panic!()
        };
        let text = mft::texts::preflight(&report);
        assert!(report.failed(), "{text}");
        for want in [
            "failed  Kite session: ZERODHA_API_KEY is not set -> set ZERODHA_API_KEY",
            "warning Daily loss limit: ₹10,000.00 is 10.0% of capital (above 2%)",
            "warning Leverage: 3 (above 1)",
            "failed  Open orders: 1 stuck longer than 15 minutes: mft-stuck NSE:INFY",
            "warning Data freshness: stale data for NSE:INFY (last candle none, expected 12:45)",
            "warning Kill switch: never exercised -> send /kill test",
        ] {
            assert!(text.contains(want), "{}: {want:?} not in\n{text}", db.name);
        }
        let levels: Vec<CheckLevel> = report.lines.iter().map(|l| l.level).collect();
        assert!(levels.contains(&CheckLevel::Failed));
    }
}

#[test]
fn mft_preflight_exits_1_on_a_broken_setup() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mft"))
        .arg("preflight")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env(
            "DATABASE_URL",
            format!("sqlite://{}", dir.path().join("m.db").display()),
        )
        .current_dir(dir.path())
        .output()
        .expect("run mft preflight");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("failed  Kite session: ZERODHA_API_KEY is not set"),
        "{stdout}"
    );
    assert!(
        stdout.contains("warning Kill switch: never exercised"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_session_ends_at_six_ist_with_one_alert() {
    for db in test_stores().await {
        let svc = Service::start(&db, closed_by()).await;
        svc.login().await;
        let before = svc.sent();
        // 06:00:01 IST the next morning.
        svc.clock.set(
            IST.with_ymd_and_hms(2026, 11, 26, 6, 0, 1)
                .unwrap()
                .with_timezone(&Utc),
        );
        let alert = svc
            .wait_message(before, |m| {
                m.body().starts_with("Kite session expired: tap Log in")
            })
            .await;
        assert!(
            alert.body().contains("06:00 IST"),
            "{}: {}",
            db.name,
            alert.body()
        );
        assert_eq!(
            alert.reply_markup.as_ref().unwrap()["inline_keyboard"][0][0]["text"],
            "Log in to Kite"
        );
        tokio::time::sleep(Duration::from_secs(3)).await;
        let alerts = sends(&svc.tg.all_calls())
            .iter()
            .filter(|c| {
                c.str("text")
                    .is_some_and(|t| t.starts_with("Kite session expired"))
            })
            .count();
        assert_eq!(alerts, 1, "{}", db.name);
        let status = svc.say("/status", |t| t.contains("MFT-1 status")).await;
        assert!(
            status
                .body()
                .contains("Kite: Kite session expired: tap Log in"),
            "{}",
            status.body()
        );
        svc.stop().await;
    }
}

/// `mft login` without a reachable callback: prints the URL, reads the redirected address from
/// standard input, stores the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mft_login_reads_the_redirected_address_from_stdin() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let kite = KiteFake::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db_url = format!("sqlite://{}", dir.path().join("m.db").display());
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_mft"))
        .arg("login")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", &db_url)
        .env("ZERODHA_API_KEY", kite_fake::API_KEY)
        .env("ZERODHA_API_SECRET", kite_fake::API_SECRET)
        .env("ZERODHA_API_URL", &kite.url)
        .env("MFT_SECRET_KEY", "ab".repeat(32))
        .current_dir(dir.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn mft login");
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut url = String::new();
    while let Some(line) = tokio::time::timeout(WAIT, out.next_line())
        .await
        .unwrap()
        .unwrap()
    {
        if line.starts_with("https://kite.zerodha.com/connect/login?") {
            url = line;
            break;
        }
    }
    let state = url
        .split("state%3D")
        .nth(1)
        .expect("state in the URL")
        .to_string();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(
            format!(
                "https://my.host/kite/callback?request_token={}&action=login&status=success&state={state}\n",
                kite_fake::REQUEST_TOKEN
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    drop(stdin);
    let rest = tokio::time::timeout(WAIT, async {
        let mut all = String::new();
        while let Ok(Some(l)) = out.next_line().await {
            all.push_str(&l);
            all.push('\n');
        }
        all
    })
    .await
    .unwrap();
    let status = child.wait().await.unwrap();
    assert!(status.success(), "{rest}");
    assert!(
        rest.contains("Kite session active until 06:00 IST"),
        "{rest}"
    );
    assert!(rest.contains("(user AB1234)"), "{rest}");
    let store = Store::connect(&db_url).await.unwrap();
    assert_eq!(
        store.current_session().await.unwrap().unwrap().user_id,
        "AB1234"
    );
}
