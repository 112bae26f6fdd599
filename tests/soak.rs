//! Soak: the real `mft run` against the Telegram fake under steady traffic (a scan every 10 s,
//! every card approved, `/status`, `/kill` and `/resume` each cycle) for `MFT_SOAK_SECS`
//! (default 120, what `.ci/run` runs). After a warm-up quarter, the process must not grow:
//! RSS (late median against the warm-up's) by at most 5 MB, and the late window's lowest count
//! of file descriptors and threads no higher than the warm-up's highest.
//! The 30-minute run also holds the approval latency's p99 (tap -> card edited) in the last third
//! within 20% of the first third's; the short CI run prints its latencies without judging them
//! (a timing of a shared machine, not of the code). The 30-minute figure:
//!
//! ```sh
//! MFT_SOAK_SECS=1800 cargo test --release --test soak -- --nocapture
//! ```

mod support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use chrono::{DateTime, DurationRound, Utc};
use mft::domain::{InstrumentKey, Interval};
use mft::store::Store;
use sqlx::Connection;
use support::series;
use support::telegram_fake::TelegramFake;
use tokio::process::Command;

const TOKEN: &str = "123456:SOAK-token";
const OPERATOR: i64 = 4242;
// Generous: the soak judges growth, not speed, and CI machines are shared.
const WAIT: Duration = Duration::from_secs(60);
const INSTRUMENTS: usize = 10;

fn keys() -> Vec<InstrumentKey> {
    (0..INSTRUMENTS)
        .map(|i| InstrumentKey::new("NSE", &format!("SOAK{i}")))
        .collect()
}

fn last_boundary() -> DateTime<Utc> {
    Utc::now()
        .duration_trunc(chrono::Duration::minutes(15))
        .expect("truncate to 15 minutes")
}

/// Fresh crossing series ending at the current 15-minute boundary (old candles removed, so
/// each instrument shows the same setup again).
async fn seed(db_url: &str, closed_by: DateTime<Utc>) {
    let path = db_url.trim_start_matches("sqlite://");
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{path}"))
        .await
        .expect("open the database");
    sqlx::query("DELETE FROM candles")
        .execute(&mut conn)
        .await
        .expect("clear candles");
    conn.close().await.expect("close");
    let store = Store::connect(db_url).await.expect("open the store");
    for (i, key) in keys().iter().enumerate() {
        store
            .upsert_candles(
                key,
                Interval::Minute15,
                &series::rising_cross(closed_by, i as f64),
            )
            .await
            .expect("seed candles");
    }
    store.close().await;
}

#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    rss_kb: u64,
    fds: usize,
    threads: usize,
}

fn sample(pid: u32) -> Sample {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let count = |dir: &str| {
        std::fs::read_dir(format!("/proc/{pid}/{dir}"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    Sample {
        rss_kb: field("VmRSS:"),
        fds: count("fd"),
        threads: count("task"),
    }
}

fn p99(v: &[f64]) -> f64 {
    assert!(!v.is_empty(), "no approvals in a window: run longer");
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[((s.len() as f64 * 0.99).ceil() as usize).clamp(1, s.len()) - 1]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_traffic_does_not_grow_the_process() {
    let secs: u64 = std::env::var("MFT_SOAK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(120);
    let fake = TelegramFake::start(TOKEN).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let db_url = format!("sqlite://{}", dir.path().join("mft.db").display());
    let watchlist: Vec<String> = keys().iter().map(|k| format!("\"{k}\"")).collect();
    std::fs::write(
        dir.path().join("mft.toml"),
        format!(
            "[trading]\nwatchlist = [{}]\ninterval = \"15minute\"\ncapital = 100000000\n\n\
             [risk]\ntrading_window = \"00:00-23:59\"\ntrading_days = \"Mon-Sun\"\n\
             max_position_value = 100000000\nmax_open_positions = 50\nmax_orders_per_day = 3000\n\
             duplicate_window_seconds = 0\nmax_orders_per_minute = 400\n\
             max_daily_loss = 10000000\nmax_price_deviation_pct = 50\n\n\
             [schedules]\nscan = \"*/10 * * * * *\"\nexpiry_sweep = \"\"\nsquare_off = \"\"\n\
             login_link = \"\"\nexit_check = \"\"\n\n{}",
            watchlist.join(", "),
            series::STRATEGY_TOML
        ),
    )
    .expect("write mft.toml");
    let mut boundary = last_boundary();
    {
        // Creates and migrates the database before the service starts.
        Store::connect(&db_url).await.expect("create").close().await;
    }
    seed(&db_url, boundary).await;

    let mut child = Command::new(env!("CARGO_BIN_EXE_mft"))
        .arg("run")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn")
        .env("MFT_CONFIG", "mft.toml")
        .env("DATABASE_URL", &db_url)
        .env("STATUS_ADDR", "127.0.0.1:0")
        .env("TELEGRAM_BOT_TOKEN", TOKEN)
        .env("TELEGRAM_CHAT_ID", OPERATOR.to_string())
        .env("TELEGRAM_API_URL", fake.url())
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn mft run");
    let pid = child.id().expect("pid");
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

    let started = Instant::now();
    let total = Duration::from_secs(secs);
    let mut samples: Vec<(Duration, Sample)> = Vec::new();
    let mut latencies: Vec<(Duration, f64)> = Vec::new();
    let mut seen_cards = 0usize;
    let (mut cycles, mut kills, mut statuses) = (0u32, 0u32, 0u32);
    while started.elapsed() < total {
        cycles += 1;
        if last_boundary() != boundary {
            boundary = last_boundary();
            seed(&db_url, boundary).await;
        }
        // The next scan's cards (scans fire every 10 s).
        let cards_before = seen_cards;
        let got = fake
            .wait_for(
                |c| {
                    c.iter().filter(|c| c.method == "sendPhoto").count()
                        >= cards_before + INSTRUMENTS
                },
                WAIT,
            )
            .await;
        assert!(got, "cycle {cycles}: no cards from the scan");
        let cards: Vec<_> = fake
            .messages()
            .into_iter()
            .filter(|m| m.photo.is_some())
            .skip(cards_before)
            .collect();
        seen_cards += cards.len();
        for card in &cards {
            let Some((_, data)) = card
                .buttons()
                .into_iter()
                .find(|(_, d)| d.starts_with("v1:a:"))
            else {
                continue;
            };
            let tapped = Instant::now();
            fake.inject_callback(OPERATOR, OPERATOR, card.message_id, &data);
            let id = card.message_id;
            let ok = fake
                .wait_for(
                    |c| {
                        c.iter().any(|c| {
                            c.method == "editMessageCaption" && c.i64("message_id") == Some(id)
                        })
                    },
                    WAIT,
                )
                .await;
            assert!(ok, "cycle {cycles}: card {id} not edited after approval");
            let at = fake
                .calls("editMessageCaption")
                .into_iter()
                .rfind(|c| c.i64("message_id") == Some(id))
                .map(|c| c.at)
                .expect("edit");
            latencies.push((started.elapsed(), (at - tapped).as_secs_f64() * 1e3));
        }
        let sent = fake.calls("sendMessage").len();
        fake.inject_message(OPERATOR, OPERATOR, "/status");
        assert!(
            fake.wait_for(
                |c| c
                    .iter()
                    .filter(|c| c.method == "sendMessage")
                    .skip(sent)
                    .any(|m| m.str("text").is_some_and(|t| t.contains("MFT-1 status"))),
                WAIT
            )
            .await
        );
        statuses += 1;
        fake.confirm(OPERATOR, "/kill", "v1:k:", "Kill", WAIT).await;
        fake.confirm(OPERATOR, "/resume", "v1:u:", "Resumed", WAIT)
            .await;
        kills += 1;
        samples.push((started.elapsed(), sample(pid)));
    }

    let quarter = total / 4;
    let in_window = |from: Duration, to: Duration| -> Vec<Sample> {
        samples
            .iter()
            .filter(|(t, _)| *t >= from && *t <= to)
            .map(|(_, s)| *s)
            .collect()
    };
    // The baseline is taken after the caches (SQLite's page cache per pooled connection, the
    // allocator's arenas) have filled: from the second quarter on.
    let warm = in_window(quarter, quarter * 2);
    let late = in_window(quarter * 3, total * 2);
    assert!(
        !warm.is_empty() && !late.is_empty(),
        "too few samples: {samples:?}"
    );
    let base = warm[0];
    let last = *late.last().expect("a late sample");
    let max = |v: &[Sample], f: fn(&Sample) -> usize| v.iter().map(f).max().unwrap_or(0);
    let third = total / 3;
    let first: Vec<f64> = latencies
        .iter()
        .filter(|(t, _)| *t < third)
        .map(|(_, l)| *l)
        .collect();
    let last_third: Vec<f64> = latencies
        .iter()
        .filter(|(t, _)| *t >= third * 2)
        .map(|(_, l)| *l)
        .collect();
    let (p_first, p_last) = (p99(&first), p99(&last_third));
    println!(
        "soak {secs} s: {cycles} cycles, {} approvals, {statuses} /status, {kills} kill+resume; \
         RSS {} kB after warm-up -> {} kB at the end ({:+} kB); fds {} -> {} (warm-up max {}); \
         threads {} -> {} (warm-up max {}); approval p99 first third {p_first:.1} ms, last third {p_last:.1} ms ({:.2}x)",
        latencies.len(),
        base.rss_kb,
        last.rss_kb,
        last.rss_kb as i64 - base.rss_kb as i64,
        base.fds,
        last.fds,
        max(&warm, |s| s.fds),
        base.threads,
        last.threads,
        max(&warm, |s| s.threads),
        p_last / p_first
    );
    // RSS: the late window's median against the warm-up's, so one sample taken while a scan
    // holds its chart buffers does not decide. SQLite's page cache (up to 2 MB on each of the
    // pool's 4 connections) fills as the database grows; a leak keeps growing past it.
    let median_rss = |v: &[Sample]| {
        let mut r: Vec<u64> = v.iter().map(|s| s.rss_kb).collect();
        r.sort_unstable();
        r[r.len() / 2]
    };
    let (warm_rss, late_rss) = (median_rss(&warm), median_rss(&late));
    println!(
        "RSS median warm-up {warm_rss} kB, late {late_rss} kB ({:+} kB)",
        late_rss as i64 - warm_rss as i64
    );
    assert!(
        late_rss <= warm_rss + 5 * 1024,
        "RSS grew by more than 5 MB: median {warm_rss} kB in the warm-up, {late_rss} kB late"
    );
    // Growth means every late sample is above the warm-up's highest: tokio's blocking pool
    // keeps a thread (chart rendering, file I/O) for 10 s after its last job, so one late sample
    // above the warm-up is churn, not a leak. A leak of one per cycle lifts the late window's
    // lowest sample by several. (The SQLite pool opens all its connections, each a thread and
    // file descriptors, at start: a pool that grew on its first busy moment once failed this.)
    let min = |v: &[Sample], f: fn(&Sample) -> usize| v.iter().map(f).min().unwrap_or(0);
    assert!(
        min(&late, |s| s.fds) <= max(&warm, |s| s.fds),
        "file descriptors grew: late {:?}, warm-up max {}",
        late.iter().map(|s| s.fds).collect::<Vec<_>>(),
        max(&warm, |s| s.fds)
    );
    assert!(
        min(&late, |s| s.threads) <= max(&warm, |s| s.threads),
        "threads grew: late {:?}, warm-up max {}",
        late.iter().map(|s| s.threads).collect::<Vec<_>>(),
        max(&warm, |s| s.threads)
    );
    let median = |v: &[f64]| {
        let mut s = v.to_vec();
        s.sort_by(f64::total_cmp);
        s[s.len() / 2]
    };
    let (m_first, m_last) = (median(&first), median(&last_third));
    println!("approval median first third {m_first:.1} ms, last third {m_last:.1} ms");
    if secs >= 600 {
        assert!(
            p_last <= p_first * 1.2,
            "approval p99 drifted: {p_first:.1} ms -> {p_last:.1} ms"
        );
    } else {
        // The short CI run prints its latencies but does not judge them: a few dozen approvals
        // per third on a shared machine make a p99 (or even a median) a timing of the machine,
        // and the conventions keep timing out of CI tests. The 30-minute run judges the p99.
        println!(
            "short run: approval latencies printed only; run MFT_SOAK_SECS=1800 to judge them"
        );
    }
    let _ = child.start_kill();
    let _ = child.wait().await;
}
