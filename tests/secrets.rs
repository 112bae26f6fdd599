//! Secrets never leak: the real `mft run` (debug logging) and the CLI run with a planted value
//! in every secret setting, through the operator's flows (status, scan, approve, /why, kill and
//! resume, login without Kite, the dashboard's pages and refusals, `mft kill` through the running
//! service, `mft config check`, a broken configuration). Every log line, chat message, page and
//! error text they produce is collected, and none may contain any planted secret, the generated
//! kill-token secret, or the dashboard's session cookie value.
//!
//! ZERODHA_API_KEY is not planted: it is not secret to Kite (it is part of the login URL the
//! operator opens), so it legitimately appears in the login button.

mod support;

use std::process::Stdio;
use std::time::Duration;

use chrono::{DurationRound, Utc};
use mft::domain::{InstrumentKey, Interval};
use mft::store::Store;
use support::series;
use support::telegram_fake::TelegramFake;
use tokio::process::Command;

const BOT: &str = "777000:PLANTED-bot-token-5b1f";
const OPERATOR: i64 = 4242;
const WAIT: Duration = Duration::from_secs(20);

/// (variable, planted value). Values are distinctive so a substring search is exact.
const PLANTED: &[(&str, &str)] = &[
    ("ZERODHA_API_SECRET", "PLANTED-api-secret-9d2c"),
    ("ZERODHA_ACCESS_TOKEN", "PLANTED-access-token-41aa"),
    ("OPENAI_API_KEY", "PLANTED-openai-key-77e0"),
    ("NEWS_API_KEY", "PLANTED-news-key-0c3d"),
    ("STATUS_TOKEN", "PLANTED-status-token-e81f"),
    ("MCP_TOKEN", "PLANTED-mcp-token-3a9b"),
    (
        "MFT_SECRET_KEY",
        "5f1c2e7a9b3d4c6e8f0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60",
    ),
];

fn status_token() -> &'static str {
    PLANTED
        .iter()
        .find(|(k, _)| *k == "STATUS_TOKEN")
        .map(|(_, v)| *v)
        .expect("planted")
}

fn mft(dir: &std::path::Path, db_url: &str, status_addr: &str, fake: &TelegramFake) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mft"));
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "debug")
        .env("MFT_CONFIG", "mft.toml")
        .env("DATABASE_URL", db_url)
        .env("STATUS_ADDR", status_addr)
        .env("TELEGRAM_BOT_TOKEN", BOT)
        .env("TELEGRAM_CHAT_ID", OPERATOR.to_string())
        .env("TELEGRAM_API_URL", fake.url())
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in PLANTED {
        c.env(k, v);
    }
    c
}

async fn output(mut c: Command, what: &str, texts: &mut Vec<(String, String)>) {
    let out = c.output().await.expect("run mft");
    texts.push((
        format!("{what} stdout"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    ));
    texts.push((
        format!("{what} stderr"),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ));
}

async fn say(fake: &TelegramFake, text: &str, want: &str) {
    let sent = fake.calls("sendMessage").len();
    fake.inject_message(OPERATOR, OPERATOR, text);
    let ok = fake
        .wait_for(
            |c| {
                c.iter()
                    .filter(|c| c.method == "sendMessage")
                    .skip(sent)
                    .any(|m| m.str("text").is_some_and(|t| t.contains(want)))
            },
            WAIT,
        )
        .await;
    assert!(ok, "{text}: no reply containing {want:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_planted_secret_reaches_a_log_a_chat_a_page_or_an_error() {
    let fake = TelegramFake::start(BOT).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let db_url = format!("sqlite://{}", dir.path().join("mft.db").display());
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").to_string()
    };
    std::fs::write(
        dir.path().join("mft.toml"),
        format!(
            "[trading]\nwatchlist = [\"NSE:INFY\"]\ninterval = \"15minute\"\n\n\
             [risk]\ntrading_window = \"00:00-23:59\"\ntrading_days = \"Mon-Sun\"\n\n\
             [analysis]\nanalyst = \"rules\"\n\n\
             [schedules]\nscan = \"\"\nexpiry_sweep = \"\"\nsquare_off = \"\"\nlogin_link = \"\"\n\
             exit_check = \"\"\ninstruments_refresh = \"\"\n\n{}",
            series::STRATEGY_TOML
        ),
    )
    .expect("write mft.toml");
    {
        let store = Store::connect(&db_url).await.expect("create");
        let infy: InstrumentKey = "NSE:INFY".parse().expect("key");
        let closed_by = Utc::now()
            .duration_trunc(chrono::Duration::minutes(15))
            .expect("truncate");
        store
            .upsert_candles(
                &infy,
                Interval::Minute15,
                &series::rising_cross(closed_by, 0.0),
            )
            .await
            .expect("seed");
        store.close().await;
    }
    let mut texts: Vec<(String, String)> = Vec::new();

    // A configuration error with every secret set: the report names keys, never values.
    let mut bad = mft(dir.path(), &db_url, &addr, &fake);
    bad.args(["config", "check"]).env("MODE", "sideways");
    output(bad, "mft config check (bad MODE)", &mut texts).await;
    let mut check = mft(dir.path(), &db_url, &addr, &fake);
    check.args(["config", "check"]);
    output(check, "mft config check", &mut texts).await;

    // The service logs to files: a debug log would fill a pipe nobody reads while it runs.
    let log_path = dir.path().join("run.log");
    let out_path = dir.path().join("run.out");
    let mut run = mft(dir.path(), &db_url, &addr, &fake);
    run.arg("run")
        .stderr(std::fs::File::create(&log_path).expect("log file"))
        .stdout(std::fs::File::create(&out_path).expect("out file"));
    let mut child = run.spawn().expect("spawn mft run");
    assert!(
        fake.wait_for(
            |c| c
                .iter()
                .any(|c| c.str("text").is_some_and(|t| t.contains("MFT-1 started"))),
            WAIT
        )
        .await,
        "mft run did not start"
    );

    for (text, want) in [
        ("/start", "MFT-1"),
        ("/help", "/status"),
        ("/status", "MFT-1 status"),
        ("/risk", "Risk limits"),
        ("/login", "Kite"),
        ("/preflight", "Kite"),
        ("/scan", "Scan done"),
    ] {
        say(&fake, text, want).await;
    }
    // Approve the card the scan posted, then ask why.
    let card = fake
        .messages()
        .into_iter()
        .rfind(|m| m.photo.is_some())
        .expect("a card");
    let (_, approve) = card
        .buttons()
        .into_iter()
        .find(|(_, d)| d.starts_with("v1:a:"))
        .expect("approve button");
    let id: i64 = approve.trim_start_matches("v1:a:").parse().expect("id");
    let cb = fake.inject_callback(OPERATOR, OPERATOR, card.message_id, &approve);
    assert!(fake.wait_answered(&cb, WAIT).await.is_some());
    // The tap is answered at once; the outcome then edits the card.
    let mid = card.message_id;
    assert!(
        fake.wait_for(
            |c| c
                .iter()
                .any(|c| c.method == "editMessageCaption" && c.i64("message_id") == Some(mid)),
            WAIT
        )
        .await,
        "the approved card is not edited"
    );
    say(&fake, &format!("/why {id}"), &format!("#{id}")).await;
    say(&fake, "/positions", "").await;

    // The dashboard: every page with the token, a login, refusals without it.
    let base = format!("http://{addr}");
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    for path in [
        "/", "/queue", "/history", "/trades", "/risk", "/alerts", "/kill", "/metrics", "/healthz",
    ] {
        let r = client
            .get(format!("{base}{path}"))
            .bearer_auth(status_token())
            .send()
            .await
            .expect("page");
        let status = r.status();
        texts.push((
            format!("GET {path} ({status})"),
            r.text().await.unwrap_or_default(),
        ));
        let r = client
            .get(format!("{base}{path}"))
            .bearer_auth("wrong")
            .send()
            .await
            .expect("page");
        texts.push((
            format!("GET {path} with a wrong token"),
            r.text().await.unwrap_or_default(),
        ));
    }
    let login = client
        .post(format!("{base}/login"))
        .form(&[("token", status_token()), ("next", "/")])
        .send()
        .await
        .expect("login");
    let mut cookie_values = Vec::new();
    for v in login.headers().get_all(reqwest::header::SET_COOKIE) {
        let v = v.to_str().unwrap_or_default();
        if let Some(val) = v.split(';').next().and_then(|kv| kv.split_once('=')) {
            cookie_values.push(val.1.to_string());
        }
    }
    texts.push(("POST /login".into(), login.text().await.unwrap_or_default()));
    let r = client
        .get(format!(
            "{base}/kite/callback?status=success&request_token=x&state=forged"
        ))
        .send()
        .await
        .expect("callback");
    texts.push((
        "GET /kite/callback (forged)".into(),
        r.text().await.unwrap_or_default(),
    ));

    // `mft kill --yes` goes through the running service; then /resume from the chat.
    let mut kill = mft(dir.path(), &db_url, &addr, &fake);
    kill.args(["kill", "--yes"]);
    output(kill, "mft kill --yes", &mut texts).await;
    fake.confirm(OPERATOR, "/resume", "v1:u:", "Resumed", WAIT)
        .await;
    fake.confirm(OPERATOR, "/kill", "v1:k:", "Kill", WAIT).await;

    // The kill endpoint's own secret, generated by `mft run`.
    let mut generated = Vec::new();
    for entry in std::fs::read_dir(dir.path()).expect("dir").flatten() {
        if entry.file_name().to_string_lossy().ends_with("kill-token")
            && let Ok(t) = std::fs::read_to_string(entry.path())
        {
            generated.push(t.trim().to_string());
        }
    }
    assert!(!generated.is_empty(), "mft run wrote no kill token file");

    let pid = child.id().expect("pid").to_string();
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status();
    let _ = tokio::time::timeout(WAIT, child.wait()).await;
    for (name, pipe) in [
        ("stdout", child.stdout.take().map(|_| ())),
        ("stderr", None),
    ] {
        let _ = (name, pipe);
    }
    let err = std::fs::read_to_string(&log_path).unwrap_or_default();
    texts.push(("mft run log (stderr)".into(), err.clone()));
    let out = std::fs::read_to_string(&out_path).unwrap_or_default();
    texts.push(("mft run stdout".into(), out));
    assert!(
        err.lines().count() > 50,
        "debug logging should have produced a log; got {} lines",
        err.lines().count()
    );

    // Everything the operator's chat received.
    for c in fake.all_calls() {
        texts.push((format!("Telegram {}", c.method), c.params.to_string()));
    }

    let mut secrets: Vec<(String, String)> = PLANTED
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    secrets.push(("TELEGRAM_BOT_TOKEN".into(), BOT.into()));
    secrets.extend(generated.into_iter().map(|t| ("kill token file".into(), t)));
    secrets.extend(
        cookie_values
            .into_iter()
            .filter(|v| v.len() >= 16)
            .map(|v| ("dashboard session cookie".into(), v)),
    );
    let total: usize = texts.iter().map(|(_, t)| t.len()).sum();
    let mut leaks = Vec::new();
    for (what, text) in &texts {
        for (name, secret) in &secrets {
            if text.contains(secret.as_str()) {
                leaks.push(format!("{name} in {what}"));
            }
        }
    }
    println!(
        "secrets: {} texts ({total} bytes: logs, chat calls, pages, CLI output) checked for {} secrets: {} leaks",
        texts.len(),
        secrets.len(),
        leaks.len()
    );
    assert!(leaks.is_empty(), "secrets leaked: {leaks:#?}");
}
