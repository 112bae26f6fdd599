//! The store's story, run on every backend from `test_stores()` (SQLite always, PostgreSQL when
//! TEST_DATABASE_URL is set): migrations, instruments, candles, summaries, fetched ranges.

mod support;

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use mft::domain::{Candle, Instrument, InstrumentKey, Interval};
use mft::store::{Backend, Store, StoreError};
use sqlx::{Connection, SqliteConnection};
use support::db::{TestDb, test_stores};

fn key(s: &str) -> InstrumentKey {
    s.parse().unwrap()
}

fn day(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

/// `n` 5-minute candles from 2024-01-01 03:45 UTC (09:15 IST), distinct prices per bar.
fn candles(n: usize) -> Vec<Candle> {
    let start = Utc.with_ymd_and_hms(2024, 1, 1, 3, 45, 0).unwrap();
    (0..n)
        .map(|i| {
            let p = 1000.0 + i as f64 * 0.05;
            Candle {
                ts: start + Duration::minutes(5 * i as i64),
                open: p,
                high: p + 1.25,
                low: p - 0.75,
                close: p + 0.5,
                volume: 100 + i as i64,
                oi: if i % 3 == 0 {
                    Some(i as i64 * 10)
                } else {
                    None
                },
            }
        })
        .collect()
}

fn instrument(token: i64, exchange: &str, symbol: &str, expiry: Option<NaiveDate>) -> Instrument {
    Instrument {
        instrument_token: token,
        exchange_token: token / 256,
        tradingsymbol: symbol.into(),
        name: "INFOSYS".into(),
        last_price: 1500.5,
        expiry,
        strike: if expiry.is_some() { 1600.0 } else { 0.0 },
        tick_size: 0.05,
        lot_size: if expiry.is_some() { 400 } else { 1 },
        instrument_type: if expiry.is_some() { "CE" } else { "EQ" }.into(),
        segment: if expiry.is_some() {
            "NFO-OPT"
        } else {
            exchange
        }
        .into(),
        exchange: exchange.into(),
    }
}

#[tokio::test]
async fn store_story_on_every_backend() {
    let dbs = test_stores().await;
    assert!(!dbs.is_empty());
    for db in &dbs {
        eprintln!("store story on {}", db.name);
        migrations_are_idempotent(db).await;
        instruments(db).await;
        candle_upserts_are_idempotent(db).await;
        fetched_ranges_and_atomic_chunks(db).await;
        summary(db).await;
    }
}

async fn migrations_are_idempotent(db: &TestDb) {
    let expected = if db.name == "sqlite" {
        Backend::Sqlite
    } else {
        Backend::Postgres
    };
    assert_eq!(db.store.backend(), expected);
    // connect() already migrated: two more runs apply nothing and fail nothing.
    for _ in 0..2 {
        let report = db.store.migrate().await.unwrap();
        assert!(report.applied.is_empty(), "{}: {report:?}", db.name);
        // No TimescaleDB on the test servers: the plain-table fallback must report false.
        assert!(!report.hypertable, "{}: {report:?}", db.name);
    }
    // A second store on the same database also finds nothing to do.
    let again = Store::connect(&db.url).await.unwrap();
    assert!(again.migrate().await.unwrap().applied.is_empty());
    again.close().await;
}

async fn instruments(db: &TestDb) {
    let s = &db.store;
    let rows = vec![
        instrument(408065, "NSE", "INFY", None),
        instrument(128053508, "BSE", "INFY", None),
        instrument(13238786, "NFO", "INFY24JAN1600CE", Some(day("2024-01-25"))),
    ];
    assert_eq!(s.upsert_instruments(&rows).await.unwrap(), 3, "{}", db.name);
    assert_eq!(s.upsert_instruments(&rows).await.unwrap(), 0, "{}", db.name);
    let mut changed = rows.clone();
    changed[0].last_price = 1510.0;
    assert_eq!(
        s.upsert_instruments(&changed).await.unwrap(),
        1,
        "{}",
        db.name
    );

    let infy = s.instrument(&key("NSE:INFY")).await.unwrap().unwrap();
    assert_eq!(infy, changed[0]);
    let opt = s
        .instrument(&key("NFO:INFY24JAN1600CE"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(opt, rows[2]);
    assert_eq!(opt.expiry, Some(day("2024-01-25")));
    assert!(s.instrument(&key("NSE:TCS")).await.unwrap().is_none());
    assert_eq!(s.instrument_count(None).await.unwrap(), 3);
    assert_eq!(s.instrument_count(Some("NSE")).await.unwrap(), 1);
    assert_eq!(s.instrument_count(Some("MCX")).await.unwrap(), 0);
    assert_eq!(s.upsert_instruments(&[]).await.unwrap(), 0);
}

async fn candle_upserts_are_idempotent(db: &TestDb) {
    let s = &db.store;
    let k = key("NSE:INFY");
    let iv = Interval::Minute5;
    // More than one SQLite batch (1000 rows), with a partial last batch.
    let all = candles(2_345);
    assert_eq!(
        s.upsert_candles(&k, iv, &all).await.unwrap(),
        2_345,
        "{}",
        db.name
    );
    assert_eq!(
        s.upsert_candles(&k, iv, &all).await.unwrap(),
        0,
        "{}",
        db.name
    );

    // Changing a price, a volume and oi (NULL -> value) changes exactly those rows.
    let mut edited = all.clone();
    edited[7].close += 1.0;
    edited[1500].volume += 1;
    edited[2_001].oi = Some(5);
    assert_eq!(
        s.upsert_candles(&k, iv, &edited).await.unwrap(),
        3,
        "{}",
        db.name
    );
    assert_eq!(
        s.upsert_candles(&k, iv, &edited).await.unwrap(),
        0,
        "{}",
        db.name
    );

    let stored = s.candles(&k, iv, None, None).await.unwrap();
    assert_eq!(stored, edited, "{}: full read round-trips", db.name);

    // Inclusive bounds, open ends.
    let part = s
        .candles(&k, iv, Some(edited[10].ts), Some(edited[20].ts))
        .await
        .unwrap();
    assert_eq!(part, edited[10..=20].to_vec());
    let head = s.candles(&k, iv, None, Some(edited[4].ts)).await.unwrap();
    assert_eq!(head, edited[..=4].to_vec());
    let tail = s
        .candles(&k, iv, Some(edited[2_340].ts), None)
        .await
        .unwrap();
    assert_eq!(tail, edited[2_340..].to_vec());
    let between = s
        .candles(
            &k,
            iv,
            Some(edited[3].ts + Duration::seconds(1)),
            Some(edited[5].ts - Duration::seconds(1)),
        )
        .await
        .unwrap();
    assert_eq!(between, vec![edited[4]]);

    // Other interval / instrument see nothing.
    assert!(
        s.candles(&k, Interval::Day, None, None)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        s.candles(&key("NSE:TCS"), iv, None, None)
            .await
            .unwrap()
            .is_empty()
    );

    let last = s.last_candles(&k, iv, 5).await.unwrap();
    assert_eq!(last, edited[edited.len() - 5..].to_vec());
    assert!(s.last_candles(&k, iv, 0).await.unwrap().is_empty());
    assert_eq!(s.last_candles(&k, iv, 10_000).await.unwrap().len(), 2_345);

    // Unsorted input with a duplicate ts: the later one wins, like sequential writes.
    let mut dup = vec![edited[9], edited[8]];
    let mut newer = edited[9];
    newer.close = 1.0;
    newer.low = 1.0;
    dup.push(newer);
    assert_eq!(
        s.upsert_candles(&k, iv, &dup).await.unwrap(),
        1,
        "{}",
        db.name
    );
    let got = s
        .candles(&k, iv, Some(edited[9].ts), Some(edited[9].ts))
        .await
        .unwrap();
    assert_eq!(got, vec![newer]);

    // NaN prices are refused before anything is written.
    let mut bad = candles(1);
    bad[0].ts = edited[0].ts - Duration::days(1);
    bad[0].high = f64::NAN;
    let err = s.upsert_candles(&k, iv, &bad).await.unwrap_err();
    assert!(matches!(err, StoreError::InvalidCandle { .. }), "{err}");
    assert_eq!(s.candles(&k, iv, None, None).await.unwrap().len(), 2_345);

    // Appending new days to a stored series (no overlap and >= 2,000 rows: PostgreSQL's COPY
    // path) counts and reads back every new row, NULL and non-NULL oi alike; a small append
    // (the upsert path) does the same.
    let mut expected = s.candles(&k, iv, None, None).await.unwrap();
    let appended: Vec<Candle> = candles(2_100)
        .into_iter()
        .map(|mut c| {
            c.ts += Duration::days(30);
            c
        })
        .collect();
    assert_eq!(
        s.upsert_candles(&k, iv, &appended).await.unwrap(),
        2_100,
        "{}",
        db.name
    );
    expected.extend_from_slice(&appended);
    assert_eq!(s.candles(&k, iv, None, None).await.unwrap(), expected);
    assert_eq!(s.upsert_candles(&k, iv, &appended).await.unwrap(), 0);
    let small: Vec<Candle> = candles(6)
        .into_iter()
        .map(|mut c| {
            c.ts += Duration::days(60);
            c
        })
        .collect();
    assert_eq!(
        s.upsert_candles(&k, iv, &small).await.unwrap(),
        6,
        "{}",
        db.name
    );
    expected.extend_from_slice(&small);
    assert_eq!(s.candles(&k, iv, None, None).await.unwrap(), expected);
    assert_eq!(s.upsert_candles(&k, iv, &small).await.unwrap(), 0);
}

async fn fetched_ranges_and_atomic_chunks(db: &TestDb) {
    let s = &db.store;
    let k = key("NSE:TCS");
    let iv = Interval::Minute15;
    assert!(s.fetched_ranges(&k, iv).await.unwrap().is_empty());

    let first = candles(1_200);
    let n = s
        .store_fetched_chunk(&k, iv, day("2024-01-01"), day("2024-01-31"), &first)
        .await
        .unwrap();
    assert_eq!(n, 1_200, "{}", db.name);
    // Adjacent and overlapping ranges read back merged.
    s.store_fetched_chunk(&k, iv, day("2024-02-01"), day("2024-02-29"), &[])
        .await
        .unwrap();
    s.store_fetched_chunk(&k, iv, day("2024-04-01"), day("2024-04-30"), &[])
        .await
        .unwrap();
    s.store_fetched_chunk(&k, iv, day("2024-04-01"), day("2024-04-10"), &[])
        .await
        .unwrap();
    let ranges = s.fetched_ranges(&k, iv).await.unwrap();
    assert_eq!(
        ranges,
        vec![
            (day("2024-01-01"), day("2024-02-29")),
            (day("2024-04-01"), day("2024-04-30")),
        ],
        "{}",
        db.name
    );
    // Re-storing the same chunk changes no candle.
    assert_eq!(
        s.store_fetched_chunk(&k, iv, day("2024-01-01"), day("2024-01-31"), &first)
            .await
            .unwrap(),
        0
    );

    // A chunk whose LAST candle violates a constraint (negative volume) fails after its first
    // 1000-row batch was written inside the transaction: neither candles nor the range remain.
    let mut later: Vec<Candle> = candles(1_500)
        .into_iter()
        .map(|mut c| {
            c.ts += Duration::days(200);
            c
        })
        .collect();
    if let Some(last) = later.last_mut() {
        last.volume = -1;
    }
    let err = s
        .store_fetched_chunk(&k, iv, day("2024-07-19"), day("2024-08-31"), &later)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Query { .. }),
        "{}: {err}",
        db.name
    );
    assert_eq!(
        s.candles(&k, iv, None, None).await.unwrap(),
        first,
        "{}",
        db.name
    );
    assert_eq!(
        s.fetched_ranges(&k, iv).await.unwrap(),
        ranges,
        "{}",
        db.name
    );

    // NaN is refused up front; a reversed range too. Neither writes anything.
    later.last_mut().unwrap().volume = 1;
    later[3].open = f64::NAN;
    let err = s
        .store_fetched_chunk(&k, iv, day("2024-07-19"), day("2024-08-31"), &later)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidCandle { .. }), "{err}");
    let err = s
        .store_fetched_chunk(&k, iv, day("2024-08-31"), day("2024-07-19"), &[])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidRange { .. }), "{err}");
    assert_eq!(s.fetched_ranges(&k, iv).await.unwrap(), ranges);
    assert_eq!(s.candles(&k, iv, None, None).await.unwrap().len(), 1_200);
    // Ranges are per (instrument, interval).
    assert!(
        s.fetched_ranges(&k, Interval::Day)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn summary(db: &TestDb) {
    let s = &db.store;
    let rows = s.candle_summary().await.unwrap();
    let ts = |i: usize| -> DateTime<Utc> { candles(i + 1)[i].ts };
    assert_eq!(rows.len(), 2, "{}: {rows:?}", db.name);
    assert_eq!(rows[0].key, key("NSE:INFY"));
    assert_eq!(rows[0].interval, Interval::Minute5);
    // 2,345 candles, 2,100 appended 30 days later and 6 more 60 days later (see
    // candle_upserts_are_idempotent).
    assert_eq!(rows[0].rows, 4_451);
    assert_eq!(rows[0].first, ts(0));
    assert_eq!(rows[0].last, ts(5) + Duration::days(60));
    assert_eq!(rows[1].key, key("NSE:TCS"));
    assert_eq!(rows[1].interval, Interval::Minute15);
    assert_eq!(rows[1].rows, 1_200);
    assert_eq!(rows[1].last, ts(1_199));
}

#[tokio::test]
async fn unsupported_scheme_is_a_clear_error() {
    for url in ["mysql://root@localhost/mft", "data/mft.db", "file:mft.db"] {
        let err = Store::connect(url).await.unwrap_err();
        assert!(
            matches!(err, StoreError::UnsupportedScheme { .. }),
            "{url}: {err}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains("sqlite:") && msg.contains("postgres:"),
            "{msg}"
        );
    }
}

#[tokio::test]
async fn sqlite_creates_file_and_folders_in_wal_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested").join("deeper").join("mft.db");
    let url = format!("sqlite://{}", path.display());
    let store = Store::connect(&url).await.unwrap();
    assert!(path.is_file(), "{} was not created", path.display());
    assert_eq!(store.backend(), Backend::Sqlite);
    assert!(store.migrate().await.unwrap().applied.is_empty());
    store.close().await;

    let mut conn = SqliteConnection::connect(&url).await.unwrap();
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    let applied: Vec<(i64, String)> =
        sqlx::query_as("SELECT version, description FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    // Later modules add their own migrations; the foundation's comes first and none is skipped.
    assert_eq!(applied.first(), Some(&(1, "market_data".to_string())));
    let versions: Vec<i64> = applied.iter().map(|(v, _)| *v).collect();
    // Numbers are reserved per module (0004-0008), so a branch may have gaps until the merges;
    // every applied version is distinct and in order.
    assert!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");
    assert_eq!(&versions[..3], &[1, 2, 3]);
}

#[tokio::test]
async fn sqlite_in_memory_works() {
    let store = Store::connect("sqlite::memory:").await.unwrap();
    let k = key("NSE:INFY");
    assert_eq!(
        store
            .upsert_candles(&k, Interval::Day, &candles(3))
            .await
            .unwrap(),
        3
    );
    assert_eq!(
        store
            .last_candles(&k, Interval::Day, 2)
            .await
            .unwrap()
            .len(),
        2
    );
}
