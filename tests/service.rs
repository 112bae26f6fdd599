//! One service per database and `mft kill` through the running service, with the real binary
//! against the Telegram fake, on SQLite and (with TEST_DATABASE_URL) PostgreSQL: a second
//! `mft run` exits 1 naming the first one's pid; `mft kill --yes` while the service runs is
//! carried out by the service (its Telegram kill alert included) and flattens and halts.

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

const TOKEN: &str = "123456:SVC-token";
const OPERATOR: i64 = 4242;
const WAIT: Duration = Duration::from_secs(15);

fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").to_string()
}

struct Workdir {
    dir: tempfile::TempDir,
    db_url: String,
}

impl Workdir {
    fn new(db_url: Option<String>) -> Workdir {
        let dir = tempfile::tempdir().expect("temp dir");
        let toml = format!(
            "[trading]\nwatchlist = [\"NSE:INFY\"]\ninterval = \"15minute\"\n\n\
             [risk]\ntrading_window = \"00:00-23:59\"\ntrading_days = \"Mon-Sun\"\n\n\
             [schedules]\nscan = \"\"\nexpiry_sweep = \"\"\nsquare_off = \"\"\nlogin_link = \"\"\n\n{}",
            series::STRATEGY_TOML
        );
        std::fs::write(dir.path().join("mft.toml"), toml).expect("write mft.toml");
        let db_url = db_url.unwrap_or_else(|| {
            format!(
                "sqlite://{}",
                dir.path().join("data").join("mft.db").display()
            )
        });
        Workdir { dir, db_url }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn mft(&self, args: &[&str], fake: Option<&TelegramFake>, status_addr: &str) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_mft"));
        c.args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .env("MFT_CONFIG", "mft.toml")
            .env("DATABASE_URL", &self.db_url)
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
    let texts: Vec<String> = fake
        .calls("sendMessage")
        .iter()
        .skip(before)
        .filter_map(|c| c.str("text").map(String::from))
        .collect();
    assert!(ok, "expected message not sent; got {texts:#?}");
    texts.into_iter().find(|t| want(t)).unwrap_or_default()
}

async fn say(fake: &TelegramFake, text: &str, want: impl Fn(&str) -> bool) -> String {
    let before = fake.calls("sendMessage").len();
    fake.inject_message(OPERATOR, OPERATOR, text);
    wait_text(fake, before, want).await
}

async fn start_run(w: &Workdir, fake: &TelegramFake) -> Child {
    let before = fake.calls("sendMessage").len();
    let child = w
        .mft(&["run"], Some(fake), &free_addr())
        .spawn()
        .expect("spawn mft run");
    wait_text(fake, before, |t| t.contains("MFT-1 started")).await;
    child
}

async fn terminate(mut child: Child) -> (std::process::ExitStatus, String) {
    let pid = child.id().expect("child pid").to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("run kill");
    assert!(killed.success(), "kill -TERM {pid} failed");
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .expect("mft exits after SIGTERM")
        .expect("wait for mft");
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use tokio::io::AsyncReadExt;
        let _ = e.read_to_string(&mut err).await;
    }
    (status, err)
}

fn last_boundary() -> DateTime<Utc> {
    Utc::now()
        .duration_trunc(chrono::Duration::minutes(15))
        .expect("truncate to 15 minutes")
}

/// The database URLs to run on: SQLite always, plus a fresh PostgreSQL database.
async fn databases() -> Vec<(Option<String>, Option<(String, String)>)> {
    let mut out = vec![(None, None)];
    if let Ok(admin) = std::env::var("TEST_DATABASE_URL")
        && !admin.trim().is_empty()
    {
        let (url, name) = support::db::create_pg_database(&admin).await;
        out.push((Some(url), Some((admin, name))));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_service_per_database_and_kill_goes_through_it() {
    for (url, pg) in databases().await {
        let fake = TelegramFake::start(TOKEN).await;
        let w = Workdir::new(url);
        let name = if pg.is_some() { "postgres" } else { "sqlite" };
        let infy: InstrumentKey = "NSE:INFY".parse().unwrap();
        {
            let store = Store::connect(&w.db_url).await.expect("open the database");
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
        let first = start_run(&w, &fake).await;
        let first_pid = first.id().expect("pid");

        // A second service on the same database exits 1 naming the first.
        let out = tokio::time::timeout(WAIT, w.mft(&["run"], Some(&fake), &free_addr()).output())
            .await
            .expect("the second mft run exits at once")
            .expect("run mft");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {stderr}");
        assert!(
            stderr.contains(&format!(
                "another mft run is using this database (pid {first_pid}, since "
            )),
            "{name}: {stderr}"
        );

        // Open a position: /scan, then Approve.
        let scan = say(&fake, "/scan", |t| t.contains("Scan done")).await;
        assert!(scan.contains("1 proposals"), "{name}: {scan}");
        assert!(
            fake.wait_for(|c| c.iter().any(|c| c.method == "sendPhoto"), WAIT)
                .await
        );
        let card = fake
            .messages()
            .into_iter()
            .rfind(|m| m.photo.is_some())
            .expect("the card");
        let approve = card.buttons()[0].1.clone();
        let cb = fake.inject_callback(OPERATOR, OPERATOR, card.message_id, &approve);
        // The tap is answered "Placing…" at once; the outcome then edits the card.
        fake.expect_placing_then_executed(&cb, card.message_id, WAIT)
            .await;

        // `mft kill --yes` while the service runs: carried out by the service.
        let before = fake.calls("sendMessage").len();
        let out =
            tokio::time::timeout(WAIT, w.mft(&["kill", "--yes"], None, &free_addr()).output())
                .await
                .expect("mft kill returns")
                .expect("run mft kill");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{name}: {stdout}\n{stderr}");
        assert!(
            stdout.contains(&format!("sent to the running mft run (pid {first_pid}")),
            "{name}: {stdout}"
        );
        assert!(stdout.contains("closed NSE:INFY x250"), "{name}: {stdout}");
        // The same alert as /kill in Telegram, sent by the service.
        let alert = wait_text(&fake, before, |t| t.contains("Kill done")).await;
        assert!(alert.contains("NSE:INFY"), "{name}: {alert}");
        {
            let store = Store::connect(&w.db_url).await.expect("open the database");
            assert!(store.open_positions().await.unwrap().is_empty());
            assert!(store.system_state().await.unwrap().halted);
            assert!(store.book_discrepancies().await.unwrap().is_empty());
            store.close().await;
        }
        let (exit, stderr) = terminate(first).await;
        assert!(exit.success(), "{name}: {stderr}");

        // With the service gone, the lock is free: a new service starts, and `mft kill` with
        // no service acts directly.
        let again = start_run(&w, &fake).await;
        let (exit, stderr) = terminate(again).await;
        assert!(exit.success(), "{name}: {stderr}");
        let out = w
            .mft(&["kill", "--yes"], None, &free_addr())
            .output()
            .await
            .expect("run mft kill");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{name}: {stdout}");
        assert!(!stdout.contains("sent to the running"), "{name}: {stdout}");
        assert!(stdout.contains("no open positions"), "{name}: {stdout}");

        if let Some((admin, db)) = pg {
            support::db::drop_pg_database(&admin, &db).await;
        }
    }
}

/// MODE=live without a Kite session: `mft kill` refuses with a clear message and exit 1,
/// touching nothing.
#[tokio::test]
async fn live_mode_kill_refuses_with_exit_1() {
    let w = Workdir::new(None);
    let out = w
        .mft(&["kill", "--yes"], None, &free_addr())
        .env("MODE", "live")
        .env("ZERODHA_API_KEY", "k")
        .env("ZERODHA_API_SECRET", "s")
        .output()
        .await
        .expect("run mft kill");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("MODE=live"), "{stderr}");
    assert!(stderr.contains("Nothing was changed"), "{stderr}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("closed"));
}

/// Opens `qty` of `key` (CNC) through the OMS of a handler on `store`, as a fill would.
async fn seed_position(store: &Store, key: &InstrumentKey, qty: i64, tag: &str) {
    use mft::domain::{OrderPurpose, OrderRequest, OrderType, Product, Side};
    use std::sync::Arc;
    let mut s = mft::config::Settings {
        database_url: String::new(),
        ..mft::config::Settings::default()
    };
    s.risk.trading_window = "00:00-23:59".parse().expect("valid");
    s.risk.trading_days = "Mon-Sun".parse().expect("valid");
    s.risk.max_position_value = mft::domain::Paise::from_rupees(10_000_000);
    s.trading.watchlist = vec![key.clone()];
    let settings = Arc::new(s);
    let clock: Arc<dyn mft::clock::Clock> = Arc::new(mft::clock::SystemClock);
    let oms = mft::oms::Oms::new(
        store.clone(),
        Arc::new(mft::oms::PaperBroker::new(
            store.clone(),
            settings.clone(),
            clock.clone(),
        )),
        mft::risk::RiskEngine::new(settings.clone(), clock.clone()),
        settings.clone(),
        clock.clone(),
    );
    let last = store
        .last_price(key, Interval::Minute15)
        .await
        .expect("price")
        .expect("a stored price");
    let req = OrderRequest {
        key: key.clone(),
        side: Side::Buy,
        quantity: qty,
        order_type: OrderType::Market,
        product: Product::Cnc,
        tag: tag.into(),
        purpose: OrderPurpose::Entry { proposal_id: 0 },
        reference_price: last,
    };
    let risk = mft::risk::RiskEngine::new(settings, clock);
    let ctx = mft::risk::RiskContext {
        last_price: Some(last),
        ..mft::risk::RiskContext::default()
    };
    let approved = risk.check(req, &ctx).expect("entry approved");
    let book = oms.lock_book().await.expect("book lock");
    oms.place(&book, approved, None).await.expect("placed");
    book.release().await;
}

/// Two real `mft kill --yes` processes racing over 10 open positions, 20 rounds: every
/// position is closed exactly once (never sold twice, never short) and positions = net fills.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_mft_kill_processes_racing_close_each_position_once() {
    const N: usize = 10;
    const ROUNDS: usize = 20;
    const QTY: i64 = 188;
    for (url, pg) in databases().await {
        let w = Workdir::new(url);
        let name = if pg.is_some() { "postgres" } else { "sqlite" };
        let store = Store::connect(&w.db_url).await.expect("open the database");
        let keys: Vec<InstrumentKey> = (0..N)
            .map(|i| InstrumentKey::new("NSE", &format!("H{i}")))
            .collect();
        for (i, k) in keys.iter().enumerate() {
            let c = mft::domain::Candle {
                ts: last_boundary() - chrono::Duration::minutes(15),
                open: 70.0 + i as f64,
                high: 70.0 + i as f64,
                low: 70.0 + i as f64,
                close: 70.0 + i as f64,
                volume: 1,
                oi: None,
            };
            store
                .upsert_candles(k, Interval::Minute15, &[c])
                .await
                .expect("price");
        }
        let mut ms = Vec::new();
        let mut split = [0usize; 2];
        for round in 0..ROUNDS {
            store.resume(Utc::now()).await.expect("resume");
            for (i, k) in keys.iter().enumerate() {
                seed_position(&store, k, QTY, &format!("b{round}-{i}")).await;
            }
            let started = std::time::Instant::now();
            let (a, b) = tokio::join!(
                w.mft(&["kill", "--yes"], None, &free_addr()).output(),
                w.mft(&["kill", "--yes"], None, &free_addr()).output()
            );
            ms.push(started.elapsed().as_secs_f64() * 1000.0);
            let mut closed = 0;
            for (j, out) in [a.expect("kill a"), b.expect("kill b")].iter().enumerate() {
                let stdout = String::from_utf8_lossy(&out.stdout);
                assert!(
                    out.status.success(),
                    "{name} round {round}: {stdout}\n{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                let n = stdout.lines().filter(|l| l.starts_with("closed ")).count();
                assert!(
                    stdout
                        .lines()
                        .filter(|l| l.starts_with("closed "))
                        .all(|l| l.contains(&format!(" x{QTY} "))),
                    "{name}: {stdout}"
                );
                split[j] += n;
                closed += n;
            }
            assert_eq!(closed, N, "{name} round {round}: closes");
            assert!(store.open_positions().await.expect("positions").is_empty());
            assert!(
                store.book_discrepancies().await.expect("book").is_empty(),
                "{name} round {round}: positions != net fills"
            );
        }
        let sells = store
            .fills_since(Utc::now() - chrono::Duration::days(1))
            .await
            .expect("fills")
            .iter()
            .filter(|f| f.side == mft::domain::Side::Sell)
            .count();
        assert_eq!(sells, N * ROUNDS, "{name}: double sells");
        ms.sort_by(|a, b| a.total_cmp(b));
        println!(
            "binary stress [{name}]: {ROUNDS} rounds of two `mft kill --yes` processes over {N} positions: \
             {sells} exit fills (expected {}), closes first/second {}/{}, race wall time median {:.0} ms, max {:.0} ms",
            N * ROUNDS,
            split[0],
            split[1],
            (ms[ROUNDS / 2 - 1] + ms[ROUNDS / 2]) / 2.0,
            ms[ROUNDS - 1]
        );
        store.close().await;
        if let Some((admin, db)) = pg {
            support::db::drop_pg_database(&admin, &db).await;
        }
    }
}

/// `mft data list` never shows a year-1 timestamp with a local-mean-time offset: times before
/// 1990 (absurd data stored by an older mft) are shown in UTC.
#[tokio::test]
async fn data_list_shows_absurd_old_times_in_utc() {
    let w = Workdir::new(None);
    {
        let store = Store::connect(&w.db_url).await.expect("open the database");
        let year1 = DateTime::<Utc>::from_timestamp(-62_135_596_800, 0).expect("year 1");
        let c = |ts| mft::domain::Candle {
            ts,
            open: 10.0,
            high: 10.0,
            low: 10.0,
            close: 10.0,
            volume: 1,
            oi: None,
        };
        store
            .upsert_candles(
                &"NSE:OLD".parse().unwrap(),
                Interval::Day,
                &[c(year1), c(last_boundary())],
            )
            .await
            .expect("store");
        store.close().await;
    }
    let out = w
        .mft(&["data", "list"], None, &free_addr())
        .output()
        .await
        .expect("run mft data list");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("0001-01-01 00:00 UTC"), "{stdout}");
    assert!(!stdout.contains("+05:53"), "{stdout}");
    assert!(stdout.contains("+05:30"), "{stdout}");
}
