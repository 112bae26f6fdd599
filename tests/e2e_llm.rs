//! End-to-end with the LLM on: the real service (`run_with`) with `[analysis] analyst =
//! "rules+llm"` against the Telegram fake and the OpenAI-compatible fake. `/scan` posts a card
//! whose rationale came from the fake model (after it queried market_data over MCP), `/why N`
//! shows the trace, and `mft why N` prints the same from the binary. Both backends.

mod support;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use mft::app::run_with;
use mft::clock::ManualClock;
use mft::config::{ScheduleSettings, Secret, Settings};
use mft::domain::{InstrumentKey, Interval};
use serde_json::json;
use support::db::test_stores;
use support::openai_fake::{OpenAiFake, Step};
use support::series;
use support::telegram_fake::{Call, TelegramFake};
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "123456:LLM-token";
const OPERATOR: i64 = 4242;
const WAIT: Duration = Duration::from_secs(15);

fn closed_by() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 7, 30, 0).unwrap()
}

fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

fn texts_after(calls: &[Call], before: usize) -> Vec<String> {
    calls
        .iter()
        .filter(|c| c.method == "sendMessage")
        .skip(before)
        .filter_map(|c| c.str("text").map(String::from))
        .collect()
}

async fn say(fake: &TelegramFake, text: &str, want: &str) -> String {
    let before = fake.calls("sendMessage").len();
    fake.inject_message(OPERATOR, OPERATOR, text);
    let ok = fake
        .wait_for(
            |c| texts_after(c, before).iter().any(|t| t.contains(want)),
            WAIT,
        )
        .await;
    let texts = texts_after(&fake.all_calls(), before);
    assert!(ok, "no reply containing {want:?} to {text:?}: {texts:#?}");
    texts.into_iter().find(|t| t.contains(want)).unwrap()
}

#[tokio::test]
async fn scan_with_the_llm_posts_a_card_with_its_rationale_and_why_shows_the_trace() {
    for db in test_stores().await {
        let name = db.name;
        let key = InstrumentKey::new("NSE", "INFY");
        db.store
            .upsert_candles(
                &key,
                Interval::Minute15,
                &series::rising_cross(closed_by(), 0.0),
            )
            .await
            .unwrap();
        let fake = TelegramFake::start(TOKEN).await;
        let llm = OpenAiFake::start().await;
        let charts = tempfile::tempdir().unwrap();
        let mut s = Settings {
            database_url: db.url.clone(),
            ..Settings::default()
        };
        s.telegram.bot_token = Some(Secret::new(TOKEN));
        s.telegram.chat_id = Some(OPERATOR);
        s.telegram.api_url = fake.url();
        s.status.addr = free_addr();
        s.trading.watchlist = vec![key.clone()];
        s.trading.interval = Interval::Minute15;
        s.strategy = series::strategy();
        s.charts.dir = charts.path().to_string_lossy().into_owned();
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
        s.openai.base_url = Some(llm.base_url());
        s.openai.model = Some("fake-e2e-model".into());
        s.analysis.analyst = "rules+llm".into();
        s.validate().unwrap();

        llm.script(vec![
            Step::tool(
                "market_data__get_candles",
                json!({"symbol": "NSE:INFY", "interval": "15minute", "limit": 20}),
            ),
            Step::verdict(json!({
                "action": "buy", "entry": 93.5, "stop": 91.5, "target": 97.5, "confidence": 0.72,
                "rationale": "FAKE-LLM says: higher lows and the EMA cross hold; stop under the last swing",
                "evidence": [{"tool": "market_data__get_candles", "fact": "closes rose 90.5 -> 93.5"}]
            })),
        ]);

        let shutdown = CancellationToken::new();
        let _guard = shutdown.clone().drop_guard();
        let clock = ManualClock::new(closed_by() + chrono::Duration::minutes(1));
        let task = tokio::spawn(run_with(Arc::new(s), Arc::new(clock), shutdown.clone()));
        assert!(
            fake.wait_for(
                |c| texts_after(c, 0)
                    .iter()
                    .any(|t| t.contains("MFT-1 started")),
                WAIT
            )
            .await,
            "{name}: no start alert"
        );

        let reply = say(&fake, "/scan", "Scan done").await;
        assert!(reply.contains("1 proposals"), "{name}: {reply}");
        let ok = fake
            .wait_for(
                |c| c.iter().any(|c| c.method.eq_ignore_ascii_case("sendPhoto")),
                WAIT,
            )
            .await;
        assert!(ok, "{name}: no card");
        let card = fake
            .messages()
            .into_iter()
            .find(|m| m.photo.is_some())
            .unwrap();
        let caption = card.caption.clone().unwrap_or_default();
        assert!(
            caption.contains("FAKE-LLM says: higher lows and the EMA cross hold"),
            "{name}: {caption}"
        );
        // Levels from the model, quantity from sizing: 1,000 rupees risk / 2 rupees = 500.
        for want in [
            "Entry: ₹93.50",
            "Stop: ₹91.50",
            "Target: ₹97.50",
            "Quantity: 500",
        ] {
            assert!(caption.contains(want), "{name}: {want} not in {caption}");
        }
        let id = db.store.recent_proposals(1).await.unwrap()[0].id;

        let why = say(&fake, &format!("/why {id}"), &format!("Why #{id}")).await;
        for want in [
            "model fake-e2e-model",
            "market_data.get_candles",
            "Verdict: buy",
            "FAKE-LLM says",
            "Tokens 200 in / 40 out",
        ] {
            assert!(why.contains(want), "{name}: {want:?} not in {why}");
        }
        let bad = say(&fake, "/why abc", "why").await;
        assert!(bad.contains("proposal number"), "{name}: {bad}");

        shutdown.cancel();
        let _ = tokio::time::timeout(WAIT, task).await;

        // `mft why N` prints the same trace from the binary.
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_mft"))
            .args(["why", &id.to_string()])
            .current_dir(charts.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DATABASE_URL", &db.url)
            .output()
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{name}: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.contains("market_data.get_candles") && text.contains("FAKE-LLM says"),
            "{name}: {text}"
        );
    }
}
