//! The dashboard in a real browser: Debian's Chromium driven through chromedriver (WebDriver,
//! via fantoccini) against the whole service (`run_with`) and the Telegram fake, on every store
//! from `test_stores()`. Logs in (a wrong token first), sees a proposal made from Telegram appear
//! without a reload, approves it, sees the order on the page and the card edited in the chat;
//! a request without the CSRF token is refused; Kill leaves the book flat and halted; the page
//! shows a dropped connection and reconnects when the service is back. Screenshots
//! at 1280 and 412 px wide go to target/screenshots/.
//!
//! Needs `chromium` and `chromedriver` (Debian: `apt-get install -y chromium chromium-driver`;
//! `.ci/run` installs them). Paths can be given as CHROME_BIN and CHROMEDRIVER. Without them the
//! test fails, unless MFT_SKIP_BROWSER_TESTS=1 says to skip it.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use support::db::{TestDb, test_stores};
use support::service::{BOT_TOKEN, OPERATOR, Running, WAIT, free_addr, poll_until, seed, settings};
use support::telegram_fake::TelegramFake;

const STATUS_TOKEN: &str = "browser-st-5f4e3d2c1b";

fn find_program(env: &str, names: &[&str]) -> Option<PathBuf> {
    if let Ok(p) = std::env::var(env)
        && !p.is_empty()
    {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var("PATH").unwrap_or_default();
    for name in names {
        for dir in std::env::split_paths(&path).chain([PathBuf::from("/usr/bin")]) {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// chromedriver running on a free port (killed on drop) and the Chromium it drives.
struct Driver {
    url: String,
    chrome: PathBuf,
    _child: tokio::process::Child,
}

impl Driver {
    async fn start() -> Option<Driver> {
        let chrome = find_program(
            "CHROME_BIN",
            &["chromium", "chromium-browser", "google-chrome"],
        );
        let driver = find_program("CHROMEDRIVER", &["chromedriver"]);
        let (Some(chrome), Some(driver)) = (chrome, driver) else {
            if std::env::var("MFT_SKIP_BROWSER_TESTS").as_deref() == Ok("1") {
                eprintln!("skipping the browser test: MFT_SKIP_BROWSER_TESTS=1");
                return None;
            }
            panic!(
                "the browser test needs chromium and chromedriver: apt-get install -y chromium \
                 chromium-driver (or set CHROME_BIN / CHROMEDRIVER; MFT_SKIP_BROWSER_TESTS=1 skips it)"
            );
        };
        let port = free_addr().rsplit(':').next().unwrap().to_string();
        let child = tokio::process::Command::new(&driver)
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", driver.display()));
        let url = format!("http://127.0.0.1:{port}");
        let ready = poll_until(|| async {
            reqwest::get(format!("{url}/status"))
                .await
                .is_ok_and(|r| r.status().is_success())
        })
        .await;
        assert!(ready, "chromedriver did not start on {url}");
        Some(Driver {
            url,
            chrome,
            _child: child,
        })
    }

    /// A new headless Chromium session, `width` px wide.
    async fn session(&self, width: u32) -> Client {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": self.chrome.to_string_lossy(),
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--hide-scrollbars", "--force-device-scale-factor=1",
                    format!("--window-size={width},900"),
                ],
            }),
        );
        let c = ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&self.url)
            .await
            .expect("start a Chromium session");
        c.set_window_size(width, 900).await.expect("window size");
        c
    }
}

fn shots_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("screenshots");
    std::fs::create_dir_all(&dir).expect("create target/screenshots");
    dir
}

async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.expect("screenshot");
    let path = shots_dir().join(format!("{name}.png"));
    std::fs::write(&path, &png).expect("write screenshot");
    let img = image::load_from_memory(&png).expect("the screenshot is a PNG");
    assert!(img.width() > 300, "{name}: {}px wide", img.width());
}

async fn js(c: &Client, script: &str) -> serde_json::Value {
    c.execute(script, vec![]).await.expect("run a script")
}

async fn wait_css(c: &Client, css: &str) -> fantoccini::elements::Element {
    c.wait()
        .at_most(WAIT)
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css} never appeared: {e}"))
}

/// Waits until the element's text contains `want`; returns the text.
async fn wait_text(c: &Client, css: &str, want: &str) -> String {
    let mut last = String::new();
    let ok = poll_until(|| {
        let c = c.clone();
        async move {
            match c.find(Locator::Css(css)).await {
                Ok(e) => e.text().await.is_ok_and(|t| t.contains(want)),
                Err(_) => false,
            }
        }
    })
    .await;
    if let Ok(e) = c.find(Locator::Css(css)).await {
        last = e.text().await.unwrap_or_default();
    }
    assert!(ok, "{css} never showed {want:?}; last: {last:?}");
    last
}

/// No sideways scrolling at this width.
async fn fits(c: &Client, what: &str) {
    let w = js(
        c,
        "return [document.documentElement.scrollWidth, window.innerWidth];",
    )
    .await;
    let (scroll, inner) = (w[0].as_i64().unwrap(), w[1].as_i64().unwrap());
    assert!(
        scroll <= inner,
        "{what}: page is {scroll}px wide in a {inner}px window"
    );
}

async fn scenario(driver: &Driver, db: TestDb) {
    let name = db.name;
    let fake = TelegramFake::start(BOT_TOKEN).await;
    let dir = tempfile::tempdir().unwrap();
    let watchlist = ["NSE:INFY", "NSE:TCS"];
    seed(&db.store, &watchlist).await;
    let config = settings(
        Some(&fake),
        &db.url,
        &dir.path().join("charts"),
        &watchlist,
        Some(STATUS_TOKEN),
    );
    let svc = Running::start(config.clone()).await;
    let base = svc.base.clone();
    let c = driver.session(1280).await;

    // Log in: a wrong token is refused, the right one opens the queue.
    c.goto(&format!("{base}/queue")).await.unwrap();
    wait_css(&c, "#login-form").await;
    c.find(Locator::Id("token"))
        .await
        .unwrap()
        .send_keys("not-the-token")
        .await
        .unwrap();
    c.find(Locator::Id("login-button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(&c, "p.error", "Wrong token.").await;
    assert!(c.find(Locator::Id("login-form")).await.is_ok(), "{name}");
    let token = c.find(Locator::Id("token")).await.unwrap();
    token.clear().await.unwrap();
    token.send_keys(STATUS_TOKEN).await.unwrap();
    c.find(Locator::Id("login-button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(&c, "h1", "Proposal queue (0)").await;
    assert_eq!(c.current_url().await.unwrap().path(), "/queue", "{name}");
    let html = c.source().await.unwrap();
    assert!(
        !html.contains(STATUS_TOKEN),
        "{name}: the token is in the page"
    );
    wait_text(&c, "#live", "live").await;

    // A scan from Telegram: its proposals appear without a reload.
    js(&c, "window.__mft_marker = 42; return null;").await;
    fake.inject_message(OPERATOR, OPERATOR, "/scan");
    wait_css(&c, "article.proposal[data-id]").await;
    wait_text(&c, "h1", "Proposal queue (2)").await;
    assert_eq!(
        js(&c, "return window.__mft_marker;").await,
        serde_json::json!(42),
        "{name}: the page was reloaded"
    );
    let loaded = poll_until(|| {
        let c = c.clone();
        async move {
            c.execute(
                "var i = document.querySelector('article.proposal img.chart'); \
                 return !!i && i.complete && i.naturalWidth === 1280;",
                vec![],
            )
            .await
            .is_ok_and(|v| v == serde_json::json!(true))
        }
    })
    .await;
    assert!(loaded, "{name}: the chart PNG did not load");
    let caption = wait_text(&c, "article.proposal .caption", "Quantity:").await;
    assert!(
        caption.contains("Entry:") && caption.contains("Risk:"),
        "{caption}"
    );
    wait_text(&c, "article.proposal .countdown", "left").await;
    shot(&c, &format!("{name}-1280-queue")).await;

    // Approve the INFY proposal on the page (once its card is in the chat, to see it edited).
    let posted = poll_until(|| async {
        db.store
            .pending_proposals()
            .await
            .is_ok_and(|l| l.len() == 2 && l.iter().all(|p| p.message_id.is_some()))
    })
    .await;
    assert!(posted, "{name}: the cards were not posted");
    let infy = db
        .store
        .pending_proposals()
        .await
        .unwrap()
        .into_iter()
        .find(|p| p.key.to_string() == "NSE:INFY")
        .expect("an INFY proposal");
    c.find(Locator::Css(&format!("#p{} button.approve", infy.id)))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let flash = wait_text(&c, "p.flash", "Executed").await;
    assert!(flash.contains("Executed BUY"), "{name}: {flash}");
    wait_text(&c, "h1", "Proposal queue (1)").await;
    let orders = db.store.orders_for_proposal(infy.id).await.unwrap();
    assert_eq!(orders.len(), 1, "{name}");
    // The card in the chat is edited with the outcome.
    let card = infy.message_id.expect("the card was posted");
    let edited = poll_until(|| async {
        fake.message(card).is_some_and(|m| {
            m.edits >= 1
                && m.body()
                    .lines()
                    .last()
                    .is_some_and(|l| l.starts_with("Executed"))
        })
    })
    .await;
    assert!(edited, "{name}: card not edited: {:?}", fake.message(card));

    // The order on the Trades page, the position on the overview.
    c.goto(&format!("{base}/trades")).await.unwrap();
    let table = wait_text(&c, "#orders", "NSE:INFY").await;
    assert!(table.contains("filled"), "{name}: {table}");
    let equity = poll_until(|| {
        let c = c.clone();
        async move {
            c.execute(
                "var i = document.getElementById('equity'); return !!i && i.complete && i.naturalWidth > 0;",
                vec![],
            )
            .await
            .is_ok_and(|v| v == serde_json::json!(true))
        }
    })
    .await;
    assert!(equity, "{name}: the equity chart did not load");
    shot(&c, &format!("{name}-1280-trades")).await;
    c.goto(&format!("{base}/")).await.unwrap();
    wait_text(&c, "#positions", "NSE:INFY").await;
    shot(&c, &format!("{name}-1280-overview")).await;
    c.goto(&format!("{base}/history")).await.unwrap();
    let history = wait_text(&c, "#history", "executed").await;
    assert!(history.contains("web"), "{name}: the decider: {history}");
    shot(&c, &format!("{name}-1280-history")).await;
    c.goto(&format!("{base}/risk")).await.unwrap();
    wait_text(&c, "#limits", "Max daily loss").await;
    shot(&c, &format!("{name}-1280-risk")).await;
    c.goto(&format!("{base}/alerts")).await.unwrap();
    wait_text(&c, "#alerts", "MFT-1 started").await;
    shot(&c, &format!("{name}-1280-alerts")).await;

    // A change without the CSRF token is refused (the session cookie alone is not enough).
    let status = c
        .execute_async(
            "var done = arguments[arguments.length - 1]; \
             fetch('/pause', {method: 'POST', headers: {'Accept': 'application/json'}}) \
               .then(function (r) { done(r.status); });",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(status, serde_json::json!(403), "{name}");
    assert!(!db.store.system_state().await.unwrap().paused, "{name}");

    // Phone-sized.
    c.set_window_size(412, 915).await.unwrap();
    c.goto(&format!("{base}/")).await.unwrap();
    wait_text(&c, "#positions", "NSE:INFY").await;
    fits(&c, "overview at 412").await;
    shot(&c, &format!("{name}-412-overview")).await;
    c.goto(&format!("{base}/queue")).await.unwrap();
    wait_css(&c, "article.proposal button.approve").await;
    fits(&c, "queue at 412").await;
    shot(&c, &format!("{name}-412-queue")).await;

    // Kill, with its confirmation step: flat and halted.
    c.goto(&format!("{base}/kill")).await.unwrap();
    wait_text(&c, ".warning", "Kill").await;
    fits(&c, "kill at 412").await;
    shot(&c, &format!("{name}-412-kill")).await;
    c.find(Locator::Id("confirm-kill"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_css(&c, "#halted-badge").await;
    wait_text(&c, "main", "No open positions.").await;
    assert!(
        db.store.open_positions().await.unwrap().is_empty(),
        "{name}: flat"
    );
    assert!(
        db.store.system_state().await.unwrap().halted,
        "{name}: halted"
    );
    shot(&c, &format!("{name}-412-halted")).await;

    // The connection drops (the service stops, the page stays open) and comes back by itself.
    wait_text(&c, "#live", "live").await;
    svc.stop().await;
    wait_text(&c, "#live", "reconnecting").await;
    shot(&c, &format!("{name}-412-reconnecting")).await;
    let svc = Running::start(config).await;
    let back = poll_until(|| {
        let c = c.clone();
        async move {
            match c.find(Locator::Id("live")).await {
                Ok(e) => e.text().await.is_ok_and(|t| t == "live"),
                Err(_) => false,
            }
        }
    })
    .await;
    assert!(back, "{name}: the page did not reconnect");

    c.close().await.unwrap();
    svc.stop().await;
    tokio::time::sleep(Duration::from_millis(50)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_dashboard_in_chromium() {
    let Some(driver) = Driver::start().await else {
        return;
    };
    for db in test_stores().await {
        scenario(&driver, db).await;
    }
}
