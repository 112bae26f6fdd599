//! Market data against a fake Kite and every test store: instruments sync, chunked resumable
//! history fetch with pacing and retries, Kite error mapping, CSV import.

mod support;

use chrono::{DateTime, NaiveDate, NaiveTime, TimeZone, Utc};
use mft::clock::{IST, ManualClock};
use mft::config::KiteSettings;
use mft::domain::{InstrumentKey, Interval};
use mft::market::{
    self, FetchProgress, KiteReader, MarketError, NoProgress, fetch_history_with_clock, import_csv,
    sync_instruments,
};
use mft::store::Store;
use std::path::PathBuf;
use std::time::Duration;
use support::db::test_stores;
use support::kite_fake::{ACCESS_TOKEN, API_KEY, INSTRUMENTS_CSV, KiteFake};

fn d(s: &str) -> NaiveDate {
    s.parse().expect("date")
}

fn key(s: &str) -> InstrumentKey {
    s.parse().expect("key")
}

/// Fast retries so failure paths take milliseconds.
fn fast_settings() -> KiteSettings {
    KiteSettings {
        historical_rate_per_sec: 3,
        max_retries: 3,
        retry_backoff_ms: 10,
    }
}

fn reader(fake: &KiteFake) -> KiteReader {
    KiteReader::new(&fake.url, API_KEY, ACCESS_TOKEN, fast_settings()).expect("reader")
}

/// A clock at noon IST on `day`.
fn clock_at(day: &str) -> ManualClock {
    let noon = IST
        .from_local_datetime(&d(day).and_hms_opt(12, 0, 0).expect("time"))
        .single()
        .expect("IST");
    ManualClock::new(noon.with_timezone(&Utc))
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/kite/import")
        .join(name)
}

fn weekdays(from: NaiveDate, to: NaiveDate) -> usize {
    use chrono::Datelike;
    from.iter_days()
        .take_while(|x| *x <= to)
        .filter(|x| x.weekday().num_days_from_monday() < 5)
        .count()
}

async fn synced(store: &Store, fake: &KiteFake) {
    sync_instruments(store, &reader(fake), None)
        .await
        .expect("sync instruments");
}

async fn fetch(
    store: &Store,
    kite: &KiteReader,
    k: &str,
    interval: Interval,
    from: &str,
    to: &str,
    today: &str,
) -> Result<market::FetchReport, MarketError> {
    fetch_history_with_clock(
        store,
        kite,
        &key(k),
        interval,
        d(from),
        d(to),
        &mut NoProgress,
        &clock_at(today),
    )
    .await
}

async fn stored_count(store: &Store, k: &str, interval: Interval) -> usize {
    store
        .candles(&key(k), interval, None, None)
        .await
        .expect("candles")
        .len()
}

/// Request spans as IST days, checked to be whole days (00:00:00 .. 23:59:59).
fn request_days(fake: &KiteFake) -> Vec<(NaiveDate, NaiveDate)> {
    fake.historical_requests()
        .iter()
        .map(|r| {
            let (from, to) = r.span();
            assert_eq!(from.time(), NaiveTime::MIN, "{:?}", r.query);
            assert_eq!(to.time(), NaiveTime::from_hms_opt(23, 59, 59).expect("t"));
            (from.date(), to.date())
        })
        .collect()
}

#[tokio::test]
async fn sync_instruments_stores_the_dump_and_is_idempotent() {
    let fake = KiteFake::start().await;
    let kite = reader(&fake);
    let expected_rows = INSTRUMENTS_CSV.lines().count() - 1;
    for db in test_stores().await {
        let store = &db.store;
        let first = sync_instruments(store, &kite, None).await.expect("sync");
        assert_eq!(first.rows, expected_rows, "{}", db.name);
        assert_eq!(first.written, expected_rows as u64, "{}", db.name);
        assert_eq!(first.stored, expected_rows as i64, "{}", db.name);
        let again = sync_instruments(store, &kite, None).await.expect("sync");
        assert_eq!(
            again.written, 0,
            "{}: a second sync changes nothing",
            db.name
        );
        assert_eq!(
            store.instrument_count(None).await.expect("count"),
            expected_rows as i64
        );
        let infy = store
            .instrument(&key("NSE:INFY"))
            .await
            .expect("lookup")
            .expect("INFY stored");
        assert_eq!(infy.instrument_token, 408065);
        assert_eq!(infy.tick_size, 0.05);
        let fut = store
            .instrument(&key("NFO:NIFTY24JANFUT"))
            .await
            .expect("lookup")
            .expect("future stored");
        assert_eq!(fut.expiry, Some(d("2024-01-25")));
        assert_eq!(fut.lot_size, 50);

        let nse = sync_instruments(store, &kite, Some("nse"))
            .await
            .expect("sync NSE");
        assert_eq!(nse.exchange.as_deref(), Some("NSE"));
        assert_eq!(nse.rows, 5);
        assert_eq!(nse.written, 0);
        assert_eq!(nse.stored, 5);
    }
    let paths: Vec<String> = fake.requests().into_iter().map(|r| r.path).collect();
    assert!(paths.contains(&"/instruments".to_string()));
    assert!(paths.contains(&"/instruments/NSE".to_string()));
    assert!(
        fake.requests()
            .iter()
            .all(|r| r.kite_version.as_deref() == Some("3"))
    );
}

#[tokio::test]
async fn a_malformed_dump_names_the_line_and_writes_nothing() {
    let fake = KiteFake::start().await;
    let mut csv: Vec<&str> = INSTRUMENTS_CSV.lines().collect();
    csv[4] = "738561,2885,RELIANCE,RELIANCE INDUSTRIES,zero,,0.0,0.05,1,EQ,NSE,NSE";
    fake.set_instruments_csv(&(csv.join("\n") + "\n"));
    for db in test_stores().await {
        let err = sync_instruments(&db.store, &reader(&fake), None)
            .await
            .expect_err("malformed");
        let text = err.to_string();
        assert!(text.contains("line 5"), "{}: {text}", db.name);
        assert!(text.contains("last_price"), "{text}");
        assert_eq!(db.store.instrument_count(None).await.expect("count"), 0);
    }
}

#[tokio::test]
async fn history_is_fetched_in_chunks_within_kites_span() {
    let fake = KiteFake::start().await;
    let kite = reader(&fake);
    for db in test_stores().await {
        fake.clear_requests();
        let store = &db.store;
        synced(store, &fake).await;
        // 250 days of 5minute bars: Kite allows 100 days per request.
        let report = fetch(
            store,
            &kite,
            "NSE:INFY",
            Interval::Minute5,
            "2024-01-01",
            "2024-09-06",
            "2025-06-01",
        )
        .await
        .expect("fetch");
        let days = request_days(&fake);
        assert_eq!(
            days,
            vec![
                (d("2024-01-01"), d("2024-04-09")),
                (d("2024-04-10"), d("2024-07-18")),
                (d("2024-07-19"), d("2024-09-06")),
            ],
            "{}",
            db.name
        );
        for (a, b) in &days {
            assert!((*b - *a).num_days() < Interval::Minute5.max_span_days());
        }
        for w in days.windows(2) {
            assert_eq!(w[0].1.succ_opt(), Some(w[1].0), "contiguous");
        }
        for r in fake.historical_requests() {
            assert_eq!(r.path, "/instruments/historical/408065/5minute");
            assert_eq!(
                r.authorization.as_deref(),
                Some(format!("token {API_KEY}:{ACCESS_TOKEN}").as_str())
            );
            assert_eq!(r.kite_version.as_deref(), Some("3"));
            assert_eq!(r.query.get("oi").map(String::as_str), Some("0"));
        }
        let bars = weekdays(d("2024-01-01"), d("2024-09-06")) * 75;
        assert_eq!(report.requests, 3);
        assert_eq!(report.candles_received, bars);
        assert_eq!(report.candles_written, bars as u64);
        assert_eq!(report.open_day, None);
        assert_eq!(
            stored_count(store, "NSE:INFY", Interval::Minute5).await,
            bars
        );
        let first = store
            .candles(&key("NSE:INFY"), Interval::Minute5, None, None)
            .await
            .expect("candles")[0];
        assert_eq!(
            first.ts,
            "2024-01-01T03:45:00Z".parse::<DateTime<Utc>>().expect("ts"),
            "09:15 IST is 03:45 UTC"
        );
    }
}

#[tokio::test]
async fn historical_requests_start_at_most_three_per_second() {
    let fake = KiteFake::start().await;
    let kite = reader(&fake);
    let day = |n: i64| d("2024-03-01") + chrono::Duration::days(n);
    let mut tasks = Vec::new();
    // Concurrent callers share one limiter, so even a burst is paced.
    for n in 0..7 {
        let kite = kite.clone();
        tasks.push(tokio::spawn(async move {
            kite.historical(
                408065,
                Interval::Day,
                day(n).and_time(NaiveTime::MIN),
                day(n).and_hms_opt(23, 59, 59).expect("t"),
                false,
            )
            .await
        }));
    }
    for t in tasks {
        t.await.expect("task").expect("historical");
    }
    let mut starts: Vec<_> = fake.historical_requests().iter().map(|r| r.at).collect();
    starts.sort();
    assert_eq!(starts.len(), 7);
    for w in starts.windows(4) {
        assert!(
            w[3] - w[0] > Duration::from_secs(1),
            "4 request starts within one second: {:?}",
            w[3] - w[0]
        );
    }
}

#[tokio::test]
async fn an_interrupted_fetch_resumes_with_only_the_missing_days() {
    let fake = KiteFake::start().await;
    let kite = reader(&fake);
    let k = "NSE:TCS";
    let iv = Interval::Minute60;
    for db in test_stores().await {
        let store = &db.store;
        synced(store, &fake).await;
        fake.clear_requests();
        // 2000 days: 5 chunks of 400 days; the session dies on the 3rd request.
        fake.fail_historical(
            3,
            403,
            "TokenException",
            "Incorrect `api_key` or `access_token`.",
        );
        let err = fetch(
            store,
            &kite,
            k,
            iv,
            "2019-01-01",
            "2024-06-22",
            "2025-01-01",
        )
        .await
        .expect_err("session expired");
        assert!(err.is_session_expired(), "{}: {err}", db.name);
        let first_run = request_days(&fake);
        assert_eq!(first_run.len(), 3, "stops at the failing chunk");
        let (c1, c2, c3) = (first_run[0], first_run[1], first_run[2]);
        assert_eq!(c1.0, d("2019-01-01"));
        let per_day = 7; // 09:15 .. 15:15 hourly bars
        assert_eq!(
            stored_count(store, k, iv).await,
            weekdays(c1.0, c2.1) * per_day,
            "chunks 1-2 stored, chunk 3 nothing"
        );
        let c3_from = IST
            .from_local_datetime(&c3.0.and_time(NaiveTime::MIN))
            .single()
            .expect("IST")
            .with_timezone(&Utc);
        assert!(
            store
                .candles(&key(k), iv, Some(c3_from), None)
                .await
                .expect("candles")
                .is_empty()
        );

        fake.clear_requests();
        let report = fetch(
            store,
            &kite,
            k,
            iv,
            "2019-01-01",
            "2024-06-22",
            "2025-01-01",
        )
        .await
        .expect("resume");
        let second_run = request_days(&fake);
        assert_eq!(
            second_run.len(),
            3,
            "{}: only chunks 3-5: {second_run:?}",
            db.name
        );
        assert_eq!(second_run[0], c3, "resumes at the failed chunk");
        assert_eq!(second_run[2].1, d("2024-06-22"));
        assert_eq!(report.missing, vec![(c3.0, d("2024-06-22"))]);
        let all = weekdays(d("2019-01-01"), d("2024-06-22")) * per_day;
        assert_eq!(stored_count(store, k, iv).await, all);

        fake.clear_requests();
        let report = fetch(
            store,
            &kite,
            k,
            iv,
            "2019-01-01",
            "2024-06-22",
            "2025-01-01",
        )
        .await
        .expect("nothing to do");
        assert_eq!(report.requests, 0);
        assert!(
            fake.historical_requests().is_empty(),
            "a complete range makes no requests"
        );

        let report = fetch(
            store,
            &kite,
            k,
            iv,
            "2019-01-01",
            "2024-07-02",
            "2025-01-01",
        )
        .await
        .expect("extend");
        assert_eq!(report.requests, 1);
        assert_eq!(
            request_days(&fake),
            vec![(d("2024-06-23"), d("2024-07-02"))]
        );
        assert_eq!(
            stored_count(store, k, iv).await,
            weekdays(d("2019-01-01"), d("2024-07-02")) * per_day
        );
    }
}

#[tokio::test]
async fn todays_candles_are_stored_but_today_is_fetched_again() {
    let fake = KiteFake::start().await;
    let kite = reader(&fake);
    let k = "NSE:RELIANCE";
    let iv = Interval::Minute15;
    let evening = ManualClock::new(
        IST.from_local_datetime(&d("2024-03-06").and_hms_opt(16, 0, 0).expect("time"))
            .single()
            .expect("IST")
            .with_timezone(&Utc),
    );
    for db in test_stores().await {
        let store = &db.store;
        synced(store, &fake).await;
        fake.clear_requests();
        // "Today" is Wednesday 2024-03-06; asking beyond today stops at today.
        // At 16:00 IST, after the session: the fake serves the whole day, and candles more
        // than one interval in the future would be refused as absurd.
        let report = fetch_history_with_clock(
            store,
            &kite,
            &key(k),
            iv,
            d("2024-03-01"),
            d("2024-03-31"),
            &mut NoProgress,
            &evening,
        )
        .await
        .expect("fetch");
        assert_eq!(
            request_days(&fake),
            vec![(d("2024-03-01"), d("2024-03-06"))]
        );
        assert_eq!(report.open_day, Some(d("2024-03-06")));
        assert_eq!(stored_count(store, k, iv).await, 4 * 25);
        assert_eq!(
            store.fetched_ranges(&key(k), iv).await.expect("ranges"),
            vec![(d("2024-03-01"), d("2024-03-05"))],
            "{}: today is not recorded",
            db.name
        );
        fake.clear_requests();
        let report = fetch_history_with_clock(
            store,
            &kite,
            &key(k),
            iv,
            d("2024-03-01"),
            d("2024-03-06"),
            &mut NoProgress,
            &evening,
        )
        .await
        .expect("again");
        assert_eq!(
            request_days(&fake),
            vec![(d("2024-03-06"), d("2024-03-06"))]
        );
        assert_eq!(report.candles_written, 0, "same bars, nothing changed");
    }
}

#[tokio::test]
async fn derivatives_are_fetched_with_open_interest() {
    let fake = KiteFake::start().await;
    let kite = reader(&fake);
    for db in test_stores().await {
        synced(&db.store, &fake).await;
        fetch(
            &db.store,
            &kite,
            "NFO:NIFTY24JANFUT",
            Interval::Day,
            "2024-01-01",
            "2024-01-05",
            "2024-02-01",
        )
        .await
        .expect("fetch");
        let candles = db
            .store
            .candles(&key("NFO:NIFTY24JANFUT"), Interval::Day, None, None)
            .await
            .expect("candles");
        assert_eq!(candles.len(), 5);
        assert!(candles.iter().all(|c| c.oi.is_some()), "{}", db.name);
    }
    assert!(
        fake.historical_requests()
            .iter()
            .all(|r| r.query.get("oi").map(String::as_str) == Some("1"))
    );
}

#[tokio::test]
async fn an_unknown_instrument_asks_for_a_sync() {
    let fake = KiteFake::start().await;
    for db in test_stores().await {
        let err = fetch(
            &db.store,
            &reader(&fake),
            "NSE:XYZ",
            Interval::Day,
            "2024-01-01",
            "2024-01-05",
            "2024-02-01",
        )
        .await
        .expect_err("unknown");
        assert_eq!(
            err.to_string(),
            "unknown instrument NSE:XYZ: run `mft data sync-instruments` first"
        );
    }
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn rate_limited_reads_are_retried_then_succeed() {
    let fake = KiteFake::start().await;
    let kite = reader(&fake);
    for db in test_stores().await {
        synced(&db.store, &fake).await;
        fake.clear_requests();
        fake.too_many_requests(2);
        let report = fetch(
            &db.store,
            &kite,
            "NSE:INFY",
            Interval::Day,
            "2024-01-01",
            "2024-01-31",
            "2024-06-01",
        )
        .await
        .expect("retried");
        assert_eq!(report.requests, 1);
        assert_eq!(
            fake.historical_requests().len(),
            3,
            "{}: 2 x 429 then 200",
            db.name
        );
        assert_eq!(stored_count(&db.store, "NSE:INFY", Interval::Day).await, 23);
    }
    // The dump is retried the same way.
    fake.clear_requests();
    fake.too_many_requests(1);
    let dbs = test_stores().await;
    sync_instruments(&dbs[0].store, &kite, None)
        .await
        .expect("dump retried");
    assert_eq!(fake.requests().len(), 2);
}

#[tokio::test]
async fn endless_rate_limiting_gives_up_after_bounded_retries() {
    let fake = KiteFake::start().await;
    let kite = reader(&fake);
    for db in test_stores().await {
        synced(&db.store, &fake).await;
        fake.clear_requests();
        fake.too_many_requests(1000);
        let err = fetch(
            &db.store,
            &kite,
            "NSE:INFY",
            Interval::Day,
            "2024-01-01",
            "2024-01-31",
            "2024-06-01",
        )
        .await
        .expect_err("gives up");
        fake.too_many_requests(0);
        assert!(
            matches!(
                err,
                MarketError::RetriesExhausted {
                    attempts: 4,
                    retries: 3,
                    ..
                }
            ),
            "{err}"
        );
        let text = err.to_string();
        assert!(text.contains("Kite historical data"), "{text}");
        assert!(text.contains("failed 4 times (3 retries"), "{text}");
        assert!(text.contains("429"), "{text}");
        assert!(text.contains("Too many requests"), "{text}");
        assert_eq!(fake.historical_requests().len(), 4);
        assert_eq!(stored_count(&db.store, "NSE:INFY", Interval::Day).await, 0);
        assert!(
            db.store
                .fetched_ranges(&key("NSE:INFY"), Interval::Day)
                .await
                .expect("r")
                .is_empty()
        );
    }
}

#[tokio::test]
async fn network_errors_are_retried() {
    let fake = KiteFake::start().await;
    let kite = reader(&fake);
    for db in test_stores().await {
        synced(&db.store, &fake).await;
        fake.clear_requests();
        fake.queue_failure(503, "NetworkException", "Upstream unavailable");
        fake.queue_failure(429, "", "Too many requests");
        fake.queue_failure(502, "", "<html><body>502 Bad Gateway</body></html>");
        fetch(
            &db.store,
            &kite,
            "NSE:INFY",
            Interval::Day,
            "2024-01-01",
            "2024-01-31",
            "2024-06-01",
        )
        .await
        .expect("retried");
        assert_eq!(fake.historical_requests().len(), 4, "{}", db.name);
    }
    // Nothing listening: a connection error, retried, then reported with the count.
    let dead = KiteReader::new("http://127.0.0.1:9", API_KEY, ACCESS_TOKEN, fast_settings())
        .expect("reader");
    let err = dead.instruments_csv(None).await.expect_err("no server");
    let text = err.to_string();
    assert!(text.contains("failed 4 times"), "{text}");
    assert!(text.contains("network error"), "{text}");
}

#[tokio::test]
async fn input_exception_is_shown_with_its_type_and_message() {
    let fake = KiteFake::start().await;
    let kite = reader(&fake);
    for db in test_stores().await {
        synced(&db.store, &fake).await;
        fake.clear_requests();
        fake.fail_historical(1, 400, "InputException", "invalid token");
        let err = fetch(
            &db.store,
            &kite,
            "NSE:INFY",
            Interval::Day,
            "2024-01-01",
            "2024-01-31",
            "2024-06-01",
        )
        .await
        .expect_err("input");
        assert_eq!(err.to_string(), "Kite error InputException: invalid token");
        assert_eq!(fake.historical_requests().len(), 1, "not retried");
        fake.fail_historical(1, 500, "GeneralException", "Something went wrong");
        let err = fetch(
            &db.store,
            &kite,
            "NSE:INFY",
            Interval::Day,
            "2024-01-01",
            "2024-01-31",
            "2024-06-01",
        )
        .await
        .expect_err("general");
        assert_eq!(
            err.to_string(),
            "Kite error GeneralException: Something went wrong"
        );
        assert_eq!(stored_count(&db.store, "NSE:INFY", Interval::Day).await, 0);
    }
}

#[tokio::test]
async fn a_rejected_token_says_log_in_again() {
    let fake = KiteFake::start().await;
    let wrong = KiteReader::new(&fake.url, API_KEY, "expired_token", fast_settings()).expect("r");
    for db in test_stores().await {
        synced(&db.store, &fake).await;
        fake.clear_requests();
        let err = fetch(
            &db.store,
            &wrong,
            "NSE:INFY",
            Interval::Day,
            "2024-01-01",
            "2024-01-31",
            "2024-06-01",
        )
        .await
        .expect_err("token");
        assert!(err.is_session_expired(), "{err}");
        assert!(
            err.to_string()
                .starts_with("Kite session expired or invalid: log in again"),
            "{err}"
        );
        let reqs = fake.historical_requests();
        assert_eq!(reqs.len(), 1, "a token error is not retried");
        assert_eq!(
            reqs[0].authorization.as_deref(),
            Some(format!("token {API_KEY}:expired_token").as_str())
        );
    }
}

#[derive(Default)]
struct Recorder {
    total: Option<usize>,
    done: Vec<(NaiveDate, NaiveDate, usize)>,
    finished: bool,
}

impl FetchProgress for Recorder {
    fn start(&mut self, total_chunks: usize) {
        self.total = Some(total_chunks);
    }
    fn chunk_done(&mut self, from: NaiveDate, to: NaiveDate, candles: usize) {
        self.done.push((from, to, candles));
    }
    fn finish(&mut self) {
        self.finished = true;
    }
}

#[tokio::test]
async fn progress_is_reported_per_chunk() {
    let fake = KiteFake::start().await;
    let kite = reader(&fake);
    let db = test_stores().await.remove(0);
    synced(&db.store, &fake).await;
    let mut progress = Recorder::default();
    fetch_history_with_clock(
        &db.store,
        &kite,
        &key("NSE:INFY"),
        Interval::Minute,
        d("2024-01-01"),
        d("2024-03-15"),
        &mut progress,
        &clock_at("2024-06-01"),
    )
    .await
    .expect("fetch");
    assert_eq!(progress.total, Some(2));
    assert_eq!(
        progress
            .done
            .iter()
            .map(|(a, b, _)| (*a, *b))
            .collect::<Vec<_>>(),
        vec![
            (d("2024-01-01"), d("2024-02-29")),
            (d("2024-03-01"), d("2024-03-15"))
        ]
    );
    assert_eq!(
        progress.done[1].2,
        weekdays(d("2024-03-01"), d("2024-03-15")) * 375
    );
    assert!(progress.finished);
}

#[tokio::test]
async fn csv_import_daily_and_intraday_files() {
    for db in test_stores().await {
        let store = &db.store;
        let infy = key("NSE:INFY");
        let report = import_csv(store, &fixture("infy_daily.csv"), &infy, Interval::Day)
            .await
            .expect("daily");
        assert_eq!(
            (report.rows_read, report.rows_written),
            (5, 5),
            "{}",
            db.name
        );
        assert!(report.ignored_columns.is_empty());
        let daily = store
            .candles(&infy, Interval::Day, None, None)
            .await
            .expect("c");
        assert_eq!(daily.len(), 5);
        assert_eq!(
            daily[0].ts,
            "2020-09-30T18:30:00Z".parse::<DateTime<Utc>>().expect("ts")
        );
        assert_eq!(daily[0].volume, 5_563_432);
        assert_eq!(daily[0].oi, Some(0));

        let report = import_csv(
            store,
            &fixture("infy_5minute_naive.csv"),
            &infy,
            Interval::Minute5,
        )
        .await
        .expect("intraday");
        assert_eq!((report.rows_read, report.rows_written), (4, 4));
        assert_eq!(report.ignored_columns, vec!["Symbol".to_string()]);
        let bars = store
            .candles(&infy, Interval::Minute5, None, None)
            .await
            .expect("c");
        assert_eq!(
            bars.iter().map(|c| c.ts).collect::<Vec<_>>(),
            ["03:45", "03:50", "03:55", "04:00"]
                .iter()
                .map(|t| format!("2024-01-02T{t}:00Z")
                    .parse::<DateTime<Utc>>()
                    .expect("ts"))
                .collect::<Vec<_>>(),
            "naive times are IST"
        );
        assert_eq!(bars[1].volume, 80321);

        let again = import_csv(store, &fixture("infy_daily.csv"), &infy, Interval::Day)
            .await
            .expect("again");
        assert_eq!((again.rows_read, again.rows_written), (5, 0), "idempotent");
        let again = import_csv(
            store,
            &fixture("infy_5minute_naive.csv"),
            &infy,
            Interval::Minute5,
        )
        .await
        .expect("again");
        assert_eq!(again.rows_written, 0);
        assert_eq!(
            store
                .candles(&infy, Interval::Day, None, None)
                .await
                .expect("c")
                .len(),
            5
        );
    }
}

#[tokio::test]
async fn csv_import_reports_every_bad_row_and_writes_nothing() {
    for db in test_stores().await {
        let infy = key("NSE:INFY");
        let err = import_csv(
            &db.store,
            &fixture("infy_bad_rows.csv"),
            &infy,
            Interval::Minute5,
        )
        .await
        .expect_err("bad rows");
        let text = err.to_string();
        assert!(text.contains("infy_bad_rows.csv"), "{text}");
        assert!(text.contains("7 bad rows"), "{text}");
        for expected in [
            "line 3: high 100.2 is below max(open, close) 100.5",
            "line 4: volume \"-5\" is negative",
            "line 5: open \"abc\" is not a number",
            "line 6: duplicate timestamp 2024-01-02 09:15:00+05:30 (first on line 2)",
            "line 7: volume \"12.5\" is not a whole number",
            "line 8: timestamp \"yesterday\"",
            "line 9: 4 fields where the header has 6",
            "nothing was imported",
        ] {
            assert!(
                text.contains(expected),
                "{}: missing {expected:?} in:\n{text}",
                db.name
            );
        }
        assert!(!text.contains("line 2:"), "line 2 is fine: {text}");
        assert!(
            db.store
                .candles(&infy, Interval::Minute5, None, None)
                .await
                .expect("c")
                .is_empty(),
            "nothing written"
        );
        let err = import_csv(&db.store, &fixture("missing.csv"), &infy, Interval::Day)
            .await
            .expect_err("no file");
        assert!(err.to_string().contains("cannot read"), "{err}");
    }
}
