//! The real `mft` binary as a subprocess (environment, mft.toml, signals, exit codes) against the
//! local Telegram fake: it starts and answers, stops cleanly on SIGTERM, runs with the dashboard
//! and a printed login URL without a bot, refuses a bot token without its chat, and `mft kill --yes` flattens and halts a database that a
//! later `mft run` still sees halted.

mod support;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use chrono::{DateTime, DurationRound, Utc};
use mft::domain::{InstrumentKey, Interval};
use mft::store::Store;
use support::series;
use support::telegram_fake::{Call, TelegramFake};
use tokio::process::{Child, Command};

const TOKEN: &str = "123456:BIN-token";
const OPERATOR: i64 = 4242;
const WAIT: Duration = Duration::from_secs(10);

fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").to_string()
}

/// A temp working dir with a permissive mft.toml (no schedules) and a SQLite database path.
struct Workdir {
    dir: tempfile::TempDir,
}

impl Workdir {
    fn new() -> Workdir {
        let dir = tempfile::tempdir().expect("temp dir");
        let toml = format!(
            "[trading]\nwatchlist = [\"NSE:INFY\"]\ninterval = \"15minute\"\n\n\
             [risk]\ntrading_window = \"00:00-23:59\"\ntrading_days = \"Mon-Sun\"\n\n\
             [schedules]\nscan = \"\"\nexpiry_sweep = \"\"\nsquare_off = \"\"\nlogin_link = \"\"\ninstruments_refresh = \"\"\n\n{}",
            series::STRATEGY_TOML
        );
        std::fs::write(dir.path().join("mft.toml"), toml).expect("write mft.toml");
        Workdir { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn db_url(&self) -> String {
        format!(
            "sqlite://{}",
            self.path().join("data").join("mft.db").display()
        )
    }

    /// `mft <args>` in this dir with only the variables given here (nothing from the developer's
    /// environment, no .env).
    fn mft(&self, args: &[&str], fake: Option<&TelegramFake>, status_addr: &str) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_mft"));
        c.args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .env("MFT_CONFIG", "mft.toml")
            .env("DATABASE_URL", self.db_url())
            .env("STATUS_ADDR", status_addr)
            .current_dir(self.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(f) = fake {
            c.env("TELEGRAM_BOT_TOKEN", TOKEN)
                .env("TELEGRAM_CHAT_ID", OPERATOR.to_string())
                .env("TELEGRAM_API_URL", f.url());
        }
        c
    }
}

fn texts_after(fake: &TelegramFake, before: usize) -> Vec<String> {
    fake.calls("sendMessage")
        .iter()
        .skip(before)
        .filter_map(|c| c.str("text").map(String::from))
        .collect()
}

fn has_text_after(calls: &[Call], before: usize, want: &dyn Fn(&str) -> bool) -> bool {
    calls
        .iter()
        .filter(|c| c.method == "sendMessage")
        .skip(before)
        .filter_map(|c| c.str("text"))
        .any(want)
}

async fn wait_text(fake: &TelegramFake, before: usize, want: impl Fn(&str) -> bool) -> String {
    let ok = fake
        .wait_for(|c| has_text_after(c, before, &want), WAIT)
        .await;
    let texts = texts_after(fake, before);
    assert!(ok, "expected message not sent; got {texts:#?}");
    texts.into_iter().find(|t| want(t)).unwrap_or_default()
}

async fn say(fake: &TelegramFake, text: &str, want: impl Fn(&str) -> bool) -> String {
    let before = fake.calls("sendMessage").len();
    fake.inject_message(OPERATOR, OPERATOR, text);
    wait_text(fake, before, want).await
}

/// Spawns `mft run` and waits for its start alert.
async fn start_run(w: &Workdir, fake: &TelegramFake) -> Child {
    let before = fake.calls("sendMessage").len();
    let child = w
        .mft(&["run"], Some(fake), &free_addr())
        .spawn()
        .expect("spawn mft run");
    wait_text(fake, before, |t| t.contains("MFT-1 started")).await;
    child
}

/// SIGTERM, then the exit status (within WAIT) and stderr.
async fn terminate(mut child: Child) -> (std::process::ExitStatus, String) {
    let pid = child.id().expect("child pid").to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("run kill");
    assert!(killed.success(), "kill -TERM {pid} failed");
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .expect("mft exits within 10 s of SIGTERM")
        .expect("wait for mft");
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use tokio::io::AsyncReadExt;
        let _ = e.read_to_string(&mut err).await;
    }
    (status, err)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_starts_answers_and_stops_cleanly_on_sigterm() {
    let fake = TelegramFake::start(TOKEN).await;
    let w = Workdir::new();
    let child = start_run(&w, &fake).await;
    let status = say(&fake, "/status", |t| t.contains("MFT-1 status")).await;
    assert!(status.contains("Mode: paper"), "{status}");
    assert!(status.contains("Trading: active"), "{status}");
    let before = fake.calls("sendMessage").len();
    let (exit, stderr) = terminate(child).await;
    assert!(exit.success(), "exit {exit:?}; stderr:\n{stderr}");
    assert!(
        texts_after(&fake, before)
            .iter()
            .any(|t| t.contains("MFT-1 is stopping")),
        "no stopping alert"
    );
    assert!(!stderr.contains(TOKEN), "the bot token was logged");
    // The database is where DATABASE_URL says.
    assert!(w.path().join("data").join("mft.db").exists());
}

/// Without TELEGRAM_BOT_TOKEN (and without STATUS_TOKEN) `mft run` starts with the dashboard,
/// says so in the log and prints a login URL with a generated token, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_without_telegram_serves_the_dashboard_with_a_printed_login_url() {
    use tokio::io::AsyncBufReadExt;
    let w = Workdir::new();
    let addr = free_addr();
    let mut child = w.mft(&["run"], None, &addr).spawn().expect("spawn mft run");
    let mut lines = tokio::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
    let mut seen = Vec::new();
    let url = tokio::time::timeout(WAIT, async {
        while let Ok(Some(line)) = lines.next_line().await {
            seen.push(line.clone());
            if let Some(i) = line.find("http://") {
                let url = line[i..].trim().to_string();
                if url.contains("/login?token=") {
                    return url;
                }
            }
        }
        String::new()
    })
    .await
    .unwrap_or_default();
    assert!(
        url.starts_with(&format!("http://{addr}/login?token=")),
        "{url:?} in {seen:#?}"
    );
    assert!(
        seen.iter()
            .any(|l| l.contains("the web dashboard is the operator's interface")),
        "{seen:#?}"
    );
    // The printed URL logs in.
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = http.get(&url).send().await.expect("open the login URL");
    assert_eq!(r.status().as_u16(), 303);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    let page = http
        .get(format!("http://{addr}/"))
        .header("cookie", cookie.split(';').next().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 200);
    assert!(page.text().await.unwrap().contains("Overview"));
    let token = url.rsplit('=').next().unwrap().to_string();
    // Printed once, not in the log lines after it.
    let rest = tokio::spawn(async move {
        let mut rest = Vec::new();
        while let Ok(Some(line)) = lines.next_line().await {
            rest.push(line);
        }
        rest
    });
    let pid = child.id().expect("pid").to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    let exit = tokio::time::timeout(WAIT, child.wait())
        .await
        .expect("exits after SIGTERM")
        .expect("wait");
    assert!(exit.success(), "{exit:?}");
    let rest = rest.await.unwrap();
    assert!(
        seen.iter()
            .chain(&rest)
            .filter(|l| l.contains(&token))
            .count()
            == 1,
        "the token appears once: {seen:#?} {rest:#?}"
    );
}

#[tokio::test]
async fn run_with_a_bot_token_but_no_chat_exits_1_naming_it() {
    let w = Workdir::new();
    let out = w
        .mft(&["run"], None, &free_addr())
        .env("TELEGRAM_BOT_TOKEN", TOKEN)
        .output()
        .await
        .expect("run mft");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("TELEGRAM_CHAT_ID"), "{stderr}");
}

/// The last 15-minute boundary before now: candles that closed by then are closed for the
/// binary's system clock too.
fn last_boundary() -> DateTime<Utc> {
    Utc::now()
        .duration_trunc(chrono::Duration::minutes(15))
        .expect("truncate to 15 minutes")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_on_the_command_line_flattens_and_halts_and_run_stays_halted() {
    let fake = TelegramFake::start(TOKEN).await;
    let w = Workdir::new();
    let infy: InstrumentKey = "NSE:INFY".parse().unwrap();
    {
        let store = Store::connect(&w.db_url())
            .await
            .expect("open the database");
        store
            .upsert_candles(
                &infy,
                Interval::Minute15,
                &series::rising_cross(last_boundary(), 0.0),
            )
            .await
            .expect("seed candles");
        store.close().await;
    }

    // Open a position the way the operator does: /scan, then Approve.
    let child = start_run(&w, &fake).await;
    let before = fake.calls("sendPhoto").len();
    let scan = say(&fake, "/scan", |t| t.contains("Scan done")).await;
    assert!(scan.contains("1 proposals"), "{scan}");
    assert!(
        fake.wait_for(
            |c| c.iter().filter(|c| c.method == "sendPhoto").count() > before,
            WAIT
        )
        .await
    );
    let card = fake
        .messages()
        .into_iter()
        .rfind(|m| m.photo.is_some())
        .expect("the card");
    let approve = card.buttons()[0].1.clone();
    assert!(approve.starts_with("v1:a:"), "{approve}");
    let cb = fake.inject_callback(OPERATOR, OPERATOR, card.message_id, &approve);
    // The tap is answered "Placing…" at once; the outcome then edits the card.
    fake.expect_placing_then_executed(&cb, card.message_id, WAIT)
        .await;
    let (exit, stderr) = terminate(child).await;
    assert!(exit.success(), "{stderr}");

    // `mft kill --yes`, no Telegram needed.
    let out = w
        .mft(&["kill", "--yes"], None, &free_addr())
        .output()
        .await
        .expect("run mft kill");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("halted"), "{stdout}");
    assert!(stdout.contains("closed NSE:INFY x250"), "{stdout}");
    {
        let store = Store::connect(&w.db_url())
            .await
            .expect("open the database");
        assert!(store.open_positions().await.unwrap().is_empty());
        assert!(store.system_state().await.unwrap().halted);
        // The dashboard's audit and Alerts page know who killed it.
        let kill = store.recent_actions(5).await.unwrap();
        assert!(
            kill.iter().any(|a| a.command == "kill" && a.actor == "cli"),
            "{kill:?}"
        );
        let alerts = store.recent_alerts(5).await.unwrap();
        assert!(
            alerts.iter().any(|a| a.text.starts_with("Kill done")),
            "{alerts:?}"
        );
        store.close().await;
    }

    // The halt survives into the next `mft run`.
    let child = start_run(&w, &fake).await;
    let status = say(&fake, "/status", |t| t.contains("MFT-1 status")).await;
    assert!(status.contains("HALTED"), "{status}");
    assert!(status.contains("Open positions: 0"), "{status}");
    let (exit, stderr) = terminate(child).await;
    assert!(exit.success(), "{stderr}");
}
