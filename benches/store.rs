//! Store benchmark: bulk upsert of 1,000,000 candles into SQLite (temp file) and PostgreSQL
//! (fresh database on BENCH_DATABASE_URL's or TEST_DATABASE_URL's server, when set), and the read
//! time of one instrument's year of 5-minute candles. Prints figures; asserts nothing.

#[path = "../tests/support/db.rs"]
mod db;

use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use mft::domain::{Candle, InstrumentKey, Interval};
use mft::store::Store;

const INSTRUMENTS: usize = 50;
const PER_INSTRUMENT: usize = 20_000;
/// A year of 5-minute bars: 250 trading days x 75 bars.
const YEAR_ROWS: usize = 18_750;
const WRITE_RUNS: usize = 3;
const READS: usize = 25;

fn series(seed: usize) -> Vec<Candle> {
    let start = Utc.with_ymd_and_hms(2023, 1, 2, 3, 45, 0).unwrap();
    (0..PER_INSTRUMENT)
        .map(|i| {
            // 75 bars a day, then jump to the next day's open.
            let day = (i / 75) as i64;
            let bar = (i % 75) as i64;
            let p = 100.0 + seed as f64 + (i as f64 * 0.37).sin() * 5.0;
            Candle {
                ts: start + chrono::Duration::days(day) + chrono::Duration::minutes(5 * bar),
                open: p,
                high: p + 1.0,
                low: p - 1.0,
                close: p + 0.25,
                volume: 1_000 + i as i64,
                oi: None,
            }
        })
        .collect()
}

fn keys() -> Vec<InstrumentKey> {
    (0..INSTRUMENTS)
        .map(|i| InstrumentKey::new("NSE", &format!("SYM{i:03}")))
        .collect()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

async fn write_all(store: &Store, data: &[(InstrumentKey, Vec<Candle>)]) -> (Duration, u64) {
    let t = Instant::now();
    let mut changed = 0;
    for (key, candles) in data {
        changed += store
            .upsert_candles(key, Interval::Minute5, candles)
            .await
            .expect("upsert candles");
    }
    (t.elapsed(), changed)
}

async fn measure(name: &str, make_store: impl AsyncFn() -> (Store, Option<db::TestDb>)) {
    let data: Vec<(InstrumentKey, Vec<Candle>)> = keys()
        .into_iter()
        .enumerate()
        .map(|(i, k)| (k, series(i)))
        .collect();
    let total = (INSTRUMENTS * PER_INSTRUMENT) as f64;

    let mut times = Vec::new();
    let mut last_store = None;
    for run in 0..WRITE_RUNS {
        let (store, guard) = make_store().await;
        let (elapsed, changed) = write_all(&store, &data).await;
        assert_eq!(changed as usize, INSTRUMENTS * PER_INSTRUMENT);
        println!(
            "{name}: run {}: {} candles in {:.2} s = {:.0} rows/s",
            run + 1,
            changed,
            elapsed.as_secs_f64(),
            total / elapsed.as_secs_f64()
        );
        times.push(elapsed);
        if let Some((old, old_guard)) = last_store.replace((store, guard)) {
            let old: Store = old;
            old.close().await;
            drop(old_guard);
        }
    }
    let m = median(times);
    println!(
        "{name}: insert 1,000,000 candles: median {:.2} s = {:.0} rows/s",
        m.as_secs_f64(),
        total / m.as_secs_f64()
    );

    let (store, guard) = last_store.expect("at least one run");
    let (elapsed, changed) = write_all(&store, &data).await;
    println!(
        "{name}: re-import of identical candles: {changed} changed in {:.2} s = {:.0} rows/s",
        elapsed.as_secs_f64(),
        total / elapsed.as_secs_f64()
    );

    let (key, candles) = &data[7];
    let (from, to) = (candles[0].ts, candles[YEAR_ROWS - 1].ts);
    // The SQLite read goes through SQLite's C API (the crate's one unsafe store module): it
    // stays only while it beats sqlx's own decoding of the same rows by a clear margin. The two
    // reads alternate, so that machine noise falls on both alike.
    let mut reads = Vec::new();
    let mut safe = Vec::new();
    let mut has_safe = true;
    for _ in 0..READS {
        let t = Instant::now();
        let got = store
            .candles(key, Interval::Minute5, Some(from), Some(to))
            .await
            .expect("read candles");
        reads.push(t.elapsed());
        assert_eq!(got.len(), YEAR_ROWS);
        if has_safe {
            let t = Instant::now();
            let got = store
                .candles_via_sqlx(key, Interval::Minute5, from, to)
                .await
                .expect("read candles through sqlx");
            safe.push(t.elapsed());
            match got {
                Some(got) => assert_eq!(got.len(), YEAR_ROWS),
                None => has_safe = false,
            }
        }
    }
    let read = median(reads);
    println!(
        "{name}: read one instrument's year of 5-minute candles ({YEAR_ROWS} rows): median {:.2} ms over {READS} reads",
        read.as_secs_f64() * 1e3
    );
    if has_safe {
        let safe = median(safe);
        println!(
            "{name}: the same read through sqlx's row decoding: median {:.2} ms ({:.1}x the C API read)",
            safe.as_secs_f64() * 1e3,
            safe.as_secs_f64() / read.as_secs_f64()
        );
    }
    store.close().await;
    drop(guard);
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        measure("sqlite", async || {
            let t = db::sqlite_store().await;
            (t.store.clone(), Some(t))
        })
        .await;
        let admin = std::env::var("BENCH_DATABASE_URL")
            .or_else(|_| std::env::var("TEST_DATABASE_URL"))
            .ok()
            .filter(|u| !u.trim().is_empty());
        match admin {
            Some(admin) => {
                measure("postgres", async || {
                    let t = db::postgres_store(&admin).await;
                    (t.store.clone(), Some(t))
                })
                .await
            }
            None => println!("postgres: skipped (set BENCH_DATABASE_URL or TEST_DATABASE_URL)"),
        }
    });
}
