//! The whole service (`mft::app::run_with`, what `mft run` runs) for dashboard tests: settings
//! against the Telegram fake (or without a bot), seeded candles that make one BUY proposal per
//! instrument, a ManualClock, and a small HTTP client for the dashboard.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use mft::app::{AppError, run_with};
use mft::clock::ManualClock;
use mft::config::{ScheduleSettings, Secret, Settings};
use mft::domain::{InstrumentKey, Interval};
use mft::store::Store;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::series;
use super::telegram_fake::TelegramFake;

pub const BOT_TOKEN: &str = "123456:DASH-token";
pub const OPERATOR: i64 = 4242;
pub const WAIT: Duration = Duration::from_secs(15);

pub fn key(s: &str) -> InstrumentKey {
    s.parse().expect("instrument key")
}

/// 13:00 IST on Wednesday 25 Nov 2026: the last 15-minute candle has just closed.
pub fn closed_by() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 7, 30, 0).unwrap()
}

pub fn start_time() -> DateTime<Utc> {
    closed_by() + chrono::Duration::minutes(1)
}

pub fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").to_string()
}

/// Settings: the fake (when given), the database, a free dashboard address, no schedules, a
/// permissive trading window, short strategy periods.
pub fn settings(
    fake: Option<&TelegramFake>,
    db_url: &str,
    charts: &std::path::Path,
    watchlist: &[&str],
    status_token: Option<&str>,
) -> Settings {
    let mut s = Settings {
        database_url: db_url.to_string(),
        ..Settings::default()
    };
    if let Some(f) = fake {
        s.telegram.bot_token = Some(Secret::new(BOT_TOKEN));
        s.telegram.chat_id = Some(OPERATOR);
        s.telegram.api_url = f.url();
    }
    s.status.addr = free_addr();
    s.status.token = status_token.map(Secret::new);
    s.trading.watchlist = watchlist.iter().map(|k| key(k)).collect();
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

pub async fn seed(store: &Store, keys: &[&str]) {
    for k in keys {
        store
            .upsert_candles(
                &key(k),
                Interval::Minute15,
                &series::rising_cross(closed_by(), 0.0),
            )
            .await
            .expect("seed candles");
    }
}

/// The running service.
pub struct Running {
    pub base: String,
    pub clock: ManualClock,
    pub shutdown: CancellationToken,
    pub task: JoinHandle<Result<(), AppError>>,
    _guard: tokio_util::sync::DropGuard,
}

impl Running {
    /// Starts `run_with` and waits until the dashboard answers /healthz.
    pub async fn start(settings: Settings) -> Running {
        let base = format!("http://{}", settings.status.addr);
        let clock = ManualClock::new(start_time());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run_with(
            Arc::new(settings),
            Arc::new(clock.clone()),
            shutdown.clone(),
        ));
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Ok(r) = reqwest::get(format!("{base}/healthz")).await
                && r.status().is_success()
            {
                break;
            }
            assert!(
                !task.is_finished(),
                "the service stopped at start: {:?}",
                task.await
            );
            assert!(
                tokio::time::Instant::now() < deadline,
                "the dashboard never answered"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Running {
            base,
            clock,
            _guard: shutdown.clone().drop_guard(),
            shutdown,
            task,
        }
    }

    /// Cancels the service and waits for run_with to return Ok.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let r = tokio::time::timeout(WAIT, self.task)
            .await
            .expect("run_with returns after shutdown")
            .expect("service task");
        assert!(r.is_ok(), "run_with failed: {r:?}");
    }

    /// POSTs a form to the dashboard with the bearer token; (status, JSON body).
    pub async fn post(
        &self,
        path: &str,
        token: &str,
        form: &[(&str, &str)],
    ) -> (u16, serde_json::Value) {
        let r = reqwest::Client::new()
            .post(format!("{}{path}", self.base))
            .bearer_auth(token)
            .form(form)
            .send()
            .await
            .expect("POST to the dashboard");
        let status = r.status().as_u16();
        let body = r.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body)),
        )
    }

    pub async fn get(&self, path: &str, token: &str) -> (u16, String) {
        let r = reqwest::Client::new()
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .expect("GET from the dashboard");
        (r.status().as_u16(), r.text().await.unwrap_or_default())
    }
}

/// Polls `cond` until it holds or WAIT passes.
pub async fn poll_until<F, Fut>(mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if cond().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
