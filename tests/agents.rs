//! The agents and the proposals store on every backend from `test_stores()` (SQLite always,
//! PostgreSQL when TEST_DATABASE_URL is set): a scan over stored candles creates sized pending
//! proposals with charts, skips pending / open instruments, reports exits and failures, records
//! the scan run; the proposals API is race-safe (CAS, one pending per instrument, expiry sweep).

mod support;

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use mft::agents::{MetaAgent, RuleAnalyst};
use mft::clock::ManualClock;
use mft::config::{ChartSettings, Settings, StrategySettings, TradingSettings};
use mft::domain::{
    Candle, Instrument, InstrumentKey, Interval, NewProposal, Paise, Product, ProposalStatus, Side,
};
use mft::store::Store;
use support::db::test_stores;

fn key(s: &str) -> InstrumentKey {
    s.parse().unwrap()
}

/// 09:15 IST on a Wednesday.
fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 3, 45, 0).unwrap()
}

/// 15-minute candles from `t0`; high/low = close +/- 1 and steps of at most 1 make every true
/// range exactly 2, so ATR3 is exactly 2.
fn series(closes: &[f64]) -> Vec<Candle> {
    closes
        .iter()
        .enumerate()
        .map(|(i, &c)| Candle {
            ts: t0() + Duration::minutes(15 * i as i64),
            open: c,
            high: c + 1.0,
            low: c - 1.0,
            close: c,
            volume: 1000 + i as i64,
            oi: None,
        })
        .collect()
}

/// Falls from 100 to 90, then rises: EMA3 crosses above EMA5 on candle 14 (close 93.5,
/// RSI3 79.2); candle 15 (94.5) is still forming at [`now`].
fn rising(shift: f64) -> Vec<Candle> {
    let mut v: Vec<f64> = (0..11).map(|i| 100.0 - i as f64).collect();
    v.extend([90.5, 91.5, 92.5, 93.5, 94.5]);
    series(&v.iter().map(|c| c + shift).collect::<Vec<_>>())
}

/// The mirror image: EMA3 crosses below EMA5 on candle 14.
fn falling() -> Vec<Candle> {
    let mut v: Vec<f64> = (0..11).map(|i| 90.0 + i as f64).collect();
    v.extend([99.5, 98.5, 97.5, 96.5, 95.5]);
    series(&v)
}

/// One minute after candle 14 closed: candle 15 is forming and must be ignored.
fn now() -> DateTime<Utc> {
    t0() + Duration::minutes(15 * 15 + 1)
}

fn settings(watchlist: &[&str], charts_dir: &std::path::Path) -> Settings {
    Settings {
        trading: TradingSettings {
            watchlist: watchlist.iter().map(|s| key(s)).collect(),
            interval: Interval::Minute15,
            scan_concurrency: 2,
            lookback_bars: 300,
            ..TradingSettings::default()
        },
        strategy: StrategySettings {
            fast: 3,
            slow: 5,
            rsi_period: 3,
            atr_period: 3,
            rsi_min: 50.0,
            rsi_max: 80.0,
            ..StrategySettings::default()
        },
        charts: ChartSettings {
            dir: charts_dir.join("charts").to_string_lossy().into_owned(),
            bars: 120,
            width: 800,
            height: 500,
        },
        ..Settings::default()
    }
}

fn instrument(sym: &str, token: i64, tick: f64) -> Instrument {
    Instrument {
        instrument_token: token,
        exchange_token: token / 256,
        tradingsymbol: sym.into(),
        name: sym.into(),
        last_price: 0.0,
        expiry: None,
        strike: 0.0,
        tick_size: tick,
        lot_size: 1,
        instrument_type: "EQ".into(),
        segment: "NSE".into(),
        exchange: "NSE".into(),
    }
}

fn agent(store: &Store, settings: Settings, clock: &ManualClock) -> MetaAgent {
    let clock: Arc<dyn mft::clock::Clock> = Arc::new(clock.clone());
    let analyst = RuleAnalyst::with_clock(settings.strategy.clone(), clock.clone());
    MetaAgent::new(store.clone(), Arc::new(analyst), Arc::new(settings), clock)
}

#[tokio::test]
async fn scan_proposes_skips_reports_and_records() {
    for db in test_stores().await {
        let name = db.name;
        let store = &db.store;
        let dir = tempfile::tempdir().unwrap();
        let watchlist = ["NSE:INFY", "NSE:TCS", "NSE:NODATA", "NSE:HELD", "NSE:DOWN"];
        let s = settings(&watchlist, dir.path());
        // INFY has a 0.10 tick; TCS is not in the instruments table (0.05 assumed).
        store
            .upsert_instruments(&[instrument("INFY", 408065, 0.1)])
            .await
            .unwrap();
        let m15 = Interval::Minute15;
        store
            .upsert_candles(&key("NSE:INFY"), m15, &rising(0.03))
            .await
            .unwrap();
        store
            .upsert_candles(&key("NSE:TCS"), m15, &rising(0.03))
            .await
            .unwrap();
        store
            .upsert_candles(&key("NSE:HELD"), m15, &rising(0.0))
            .await
            .unwrap();
        store
            .upsert_candles(&key("NSE:DOWN"), m15, &falling())
            .await
            .unwrap();
        let clock = ManualClock::new(now());
        let agent = agent(store, s.clone(), &clock);
        let open = [key("NSE:HELD"), key("NSE:DOWN")];

        let out = agent.scan(None, &open).await.unwrap();

        // Two proposals, in watchlist order, sized and tick-rounded.
        let keys: Vec<String> = out
            .proposals
            .iter()
            .map(|c| c.proposal.key.to_string())
            .collect();
        assert_eq!(keys, ["NSE:INFY", "NSE:TCS"], "{name}: {out:#?}");
        let infy = &out.proposals[0].proposal;
        // entry 93.53 -> 93.5 on a 0.10 tick; stop 2 x ATR 2 below; target 2R above.
        assert_eq!(infy.side, Side::Buy, "{name}");
        assert_eq!(
            (infy.entry, infy.stop, infy.target),
            (Paise(9350), Paise(8950), Paise(10150)),
            "{name}"
        );
        // 1% of 1,00,000 = 1,000 over a 4.00 stop = 250 (value cap 534, leverage cap 1,069).
        assert_eq!(infy.quantity, 250, "{name}");
        assert_eq!(infy.product, Product::Mis, "{name}");
        assert_eq!(infy.status, ProposalStatus::Pending, "{name}");
        assert_eq!(infy.created_at, now(), "{name}");
        assert_eq!(infy.expires_at, now() + Duration::minutes(10), "{name}");
        assert!(
            infy.rationale.contains("EMA3") && infy.rationale.contains("crossed above"),
            "{name}: {}",
            infy.rationale
        );
        assert!(infy.confidence > 0.4 && infy.confidence <= 1.0, "{name}");
        let tcs = &out.proposals[1].proposal;
        // 0.05 tick: 93.53 -> 93.55
        assert_eq!(
            (tcs.entry, tcs.stop, tcs.target),
            (Paise(9355), Paise(8955), Paise(10155)),
            "{name}"
        );
        assert_eq!(tcs.quantity, 250, "{name}");

        // Each proposal has its chart, a PNG under the charts folder, and the path is stored.
        for card in &out.proposals {
            let p = &card.proposal;
            let png = card
                .chart_png
                .as_ref()
                .unwrap_or_else(|| panic!("{name}: no chart for #{}", p.id));
            let file = format!("p{}-NSE_{}.png", p.id, p.key.tradingsymbol);
            assert!(png.ends_with(&file), "{name}: {}", png.display());
            assert!(png.starts_with(dir.path().join("charts")), "{name}");
            let bytes = std::fs::read(png).unwrap();
            assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{name}");
            let img = image::load_from_memory(&bytes).unwrap();
            assert_eq!((img.width(), img.height()), (800, 500), "{name}");
            let stored = store.proposal(p.id).await.unwrap().unwrap();
            assert_eq!(
                stored.chart_path.as_deref(),
                Some(png.to_string_lossy().as_ref()),
                "{name}"
            );
            assert_eq!(&stored, p, "{name}");
            assert_eq!(card.capital, s.trading.capital, "{name}");
        }

        // The open position with a cross down gets an exit; the open one with a cross up does not
        // get a proposal; the one without candles is an error that did not stop the scan.
        assert_eq!(out.exits.len(), 1, "{name}: {out:#?}");
        assert_eq!(out.exits[0].0, key("NSE:DOWN"));
        assert!(
            out.exits[0].1.contains("crossed below"),
            "{name}: {}",
            out.exits[0].1
        );
        assert_eq!(out.errors.len(), 1, "{name}: {out:#?}");
        assert_eq!(out.errors[0].0, key("NSE:NODATA"));
        assert!(
            out.errors[0].1.contains("no candles"),
            "{name}: {}",
            out.errors[0].1
        );
        assert!(
            out.skipped
                .iter()
                .any(|(k, r)| *k == key("NSE:HELD") && r.contains("position is open")),
            "{name}: {out:#?}"
        );
        assert!(
            !store.has_pending_proposal(&key("NSE:HELD")).await.unwrap(),
            "{name}"
        );

        // The run is recorded.
        assert_eq!(
            (
                out.summary.instruments,
                out.summary.proposals,
                out.summary.errors
            ),
            (5, 2, 1),
            "{name}"
        );
        let last = store.last_scan_run().await.unwrap().unwrap();
        assert_eq!(last, out.summary, "{name}");
        assert_eq!(last.finished_at, Some(now()), "{name}");

        // A second scan skips the instruments whose proposals are pending.
        clock.advance(Duration::minutes(1));
        let again = agent.scan(None, &open).await.unwrap();
        assert!(again.proposals.is_empty(), "{name}: {again:#?}");
        for k in ["NSE:INFY", "NSE:TCS"] {
            assert!(
                again
                    .skipped
                    .iter()
                    .any(|(s, r)| *s == key(k) && r.contains("already pending")),
                "{name}: {again:#?}"
            );
        }
        assert_eq!(store.pending_proposals().await.unwrap().len(), 2, "{name}");
        let last = store.last_scan_run().await.unwrap().unwrap();
        assert_eq!(
            (last.id, last.proposals, last.errors),
            (again.summary.id, 0, 1),
            "{name}"
        );
        assert!(again.summary.id > out.summary.id, "{name}");

        // Scanning one instrument: only it is looked at. Once the INFY proposal is decided, a
        // new one can be made.
        assert!(
            store
                .transition_proposal(
                    infy.id,
                    ProposalStatus::Pending,
                    ProposalStatus::Rejected,
                    now(),
                    Some(7),
                    None
                )
                .await
                .unwrap()
        );
        let one = agent.scan(Some(&key("NSE:INFY")), &[]).await.unwrap();
        assert_eq!(one.summary.instruments, 1, "{name}");
        assert_eq!(one.proposals.len(), 1, "{name}: {one:#?}");
        assert!(one.proposals[0].proposal.id > tcs.id, "{name}");
        db.store.close().await;
    }
}

#[tokio::test]
async fn scan_survives_a_failing_chart_and_no_data_at_all() {
    for db in test_stores().await {
        let name = db.name;
        let store = &db.store;
        let dir = tempfile::tempdir().unwrap();
        // The charts "folder" is a file: rendering fails, the proposal is still made.
        let blocker = dir.path().join("charts");
        std::fs::write(&blocker, b"not a folder").unwrap();
        let s = settings(&["NSE:INFY", "NSE:EMPTY"], dir.path());
        store
            .upsert_candles(&key("NSE:INFY"), Interval::Minute15, &rising(0.0))
            .await
            .unwrap();
        let clock = ManualClock::new(now());
        let out = agent(store, s, &clock).scan(None, &[]).await.unwrap();
        assert_eq!(out.proposals.len(), 1, "{name}: {out:#?}");
        assert_eq!(out.proposals[0].chart_png, None, "{name}");
        assert_eq!(out.proposals[0].proposal.chart_path, None, "{name}");
        let errs: Vec<String> = out.errors.iter().map(|(k, _)| k.to_string()).collect();
        assert_eq!(errs, ["NSE:INFY", "NSE:EMPTY"], "{name}: {out:#?}");
        assert!(
            out.errors[0].1.contains("without a chart"),
            "{name}: {}",
            out.errors[0].1
        );
        assert_eq!(
            (out.summary.proposals, out.summary.errors),
            (1, 2),
            "{name}"
        );
        db.store.close().await;
    }
}

fn new_proposal(sym: &str, created: DateTime<Utc>, ttl_min: i64) -> NewProposal {
    NewProposal {
        key: key(&format!("NSE:{sym}")),
        side: Side::Buy,
        quantity: 10,
        entry: Paise(150_000),
        stop: Paise(148_000),
        target: Paise(154_000),
        product: Product::Mis,
        confidence: 0.6,
        rationale: "EMA20 1500.00 crossed above EMA50 1498.00".into(),
        created_at: created,
        expires_at: created + Duration::minutes(ttl_min),
    }
}

#[tokio::test]
async fn one_pending_proposal_per_instrument_even_under_races() {
    for db in test_stores().await {
        let name = db.name;
        let store = &db.store;
        let t = t0();
        let first = store
            .insert_proposal(&new_proposal("INFY", t, 10))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(first.status, ProposalStatus::Pending);
        assert_eq!(
            (first.chart_path.clone(), first.message_id, first.decided_at),
            (None, None, None)
        );
        assert!(
            store
                .insert_proposal(&new_proposal("INFY", t, 10))
                .await
                .unwrap()
                .is_none(),
            "{name}"
        );
        assert!(store.has_pending_proposal(&key("NSE:INFY")).await.unwrap());
        assert!(!store.has_pending_proposal(&key("NSE:TCS")).await.unwrap());

        // 10 racing inserts for a new instrument: exactly one wins.
        let tasks: Vec<_> = (0..10)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(
                    async move { store.insert_proposal(&new_proposal("TCS", t, 10)).await },
                )
            })
            .collect();
        let mut winners = Vec::new();
        for task in tasks {
            if let Some(p) = task.await.unwrap().unwrap() {
                winners.push(p.id);
            }
        }
        assert_eq!(winners.len(), 1, "{name}");

        // Once decided, the instrument may get a new pending proposal.
        assert!(
            store
                .transition_proposal(
                    first.id,
                    ProposalStatus::Pending,
                    ProposalStatus::Rejected,
                    t,
                    Some(1),
                    None
                )
                .await
                .unwrap()
        );
        let second = store
            .insert_proposal(&new_proposal("INFY", t, 10))
            .await
            .unwrap()
            .unwrap();
        assert!(second.id > first.id);
        let recent = store.recent_proposals(2).await.unwrap();
        assert_eq!(
            recent.iter().map(|p| p.id).collect::<Vec<_>>(),
            [second.id, winners[0]],
            "{name}"
        );
        assert_eq!(
            store.recent_proposals(100).await.unwrap().len(),
            3,
            "{name}"
        );
        let pending = store.pending_proposals().await.unwrap();
        assert_eq!(pending.len(), 2, "{name}");
        assert!(pending.iter().all(|p| p.status == ProposalStatus::Pending));

        store.set_proposal_message(second.id, 4242).await.unwrap();
        store
            .set_proposal_chart(second.id, "charts/p2-NSE_INFY.png")
            .await
            .unwrap();
        let got = store.proposal(second.id).await.unwrap().unwrap();
        assert_eq!(got.message_id, Some(4242));
        assert_eq!(got.chart_path.as_deref(), Some("charts/p2-NSE_INFY.png"));
        assert_eq!(got.entry, Paise(150_000));
        assert_eq!(got.created_at, t);
        assert!(store.proposal(999_999).await.unwrap().is_none());
        db.store.close().await;
    }
}

#[tokio::test]
async fn approval_is_one_compare_and_set() {
    for db in test_stores().await {
        let name = db.name;
        let store = &db.store;
        let t = t0();
        let p = store
            .insert_proposal(&new_proposal("INFY", t, 10))
            .await
            .unwrap()
            .unwrap();

        // 20 concurrent approvals (double taps, two devices, a redelivered update): one wins.
        let tasks: Vec<_> = (0..20)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    store
                        .transition_proposal(
                            p.id,
                            ProposalStatus::Pending,
                            ProposalStatus::Approved,
                            t + Duration::seconds(i),
                            Some(100 + i),
                            None,
                        )
                        .await
                })
            })
            .collect();
        let mut wins = 0;
        for task in tasks {
            if task.await.unwrap().unwrap() {
                wins += 1;
            }
        }
        assert_eq!(wins, 1, "{name}");
        let approved = store.proposal(p.id).await.unwrap().unwrap();
        assert_eq!(approved.status, ProposalStatus::Approved);
        let decided_at = approved.decided_at.unwrap();
        let by = approved.decided_by.unwrap();
        assert_eq!(
            decided_at,
            t + Duration::seconds(by - 100),
            "{name}: decided_at and decided_by come from the same winner"
        );

        // Illegal or stale transitions change nothing.
        assert!(
            !store
                .transition_proposal(
                    p.id,
                    ProposalStatus::Pending,
                    ProposalStatus::Rejected,
                    t,
                    None,
                    None
                )
                .await
                .unwrap()
        );
        assert!(
            !store
                .transition_proposal(
                    p.id,
                    ProposalStatus::Approved,
                    ProposalStatus::Pending,
                    t,
                    None,
                    None
                )
                .await
                .unwrap()
        );
        assert!(
            !store
                .transition_proposal(
                    p.id,
                    ProposalStatus::Expired,
                    ProposalStatus::Approved,
                    t,
                    None,
                    None
                )
                .await
                .unwrap()
        );

        // approved -> executed keeps the decision's time and author, adds the outcome.
        let later = t + Duration::minutes(1);
        assert!(
            store
                .transition_proposal(
                    p.id,
                    ProposalStatus::Approved,
                    ProposalStatus::Executed,
                    later,
                    None,
                    Some("paper order 17")
                )
                .await
                .unwrap()
        );
        let done = store.proposal(p.id).await.unwrap().unwrap();
        assert_eq!(done.status, ProposalStatus::Executed);
        assert_eq!(
            (done.decided_at, done.decided_by),
            (Some(decided_at), Some(by))
        );
        assert_eq!(done.outcome.as_deref(), Some("paper order 17"));
        assert!(
            !store
                .transition_proposal(
                    p.id,
                    ProposalStatus::Approved,
                    ProposalStatus::Failed,
                    later,
                    None,
                    None
                )
                .await
                .unwrap(),
            "{name}"
        );
        db.store.close().await;
    }
}

#[tokio::test]
async fn expiry_sweep_moves_only_due_pending_proposals() {
    for db in test_stores().await {
        let name = db.name;
        let store = &db.store;
        let t = t0();
        let a = store
            .insert_proposal(&new_proposal("A", t, 10))
            .await
            .unwrap()
            .unwrap();
        let b = store
            .insert_proposal(&new_proposal("B", t, 20))
            .await
            .unwrap()
            .unwrap();
        let c = store
            .insert_proposal(&new_proposal("C", t, 5))
            .await
            .unwrap()
            .unwrap();
        assert!(
            store
                .transition_proposal(
                    c.id,
                    ProposalStatus::Pending,
                    ProposalStatus::Approved,
                    t,
                    Some(1),
                    None
                )
                .await
                .unwrap()
        );

        assert!(
            store
                .expire_due_proposals(t + Duration::minutes(9))
                .await
                .unwrap()
                .is_empty(),
            "{name}"
        );
        // expires_at <= now is due: exactly at 10 minutes A goes, B stays, approved C is untouched.
        let gone = store
            .expire_due_proposals(t + Duration::minutes(10))
            .await
            .unwrap();
        assert_eq!(
            gone.iter().map(|p| p.id).collect::<Vec<_>>(),
            [a.id],
            "{name}"
        );
        assert_eq!(gone[0].status, ProposalStatus::Expired);
        assert_eq!(gone[0].decided_at, Some(t + Duration::minutes(10)));
        assert!(
            store
                .expire_due_proposals(t + Duration::minutes(10))
                .await
                .unwrap()
                .is_empty(),
            "{name}"
        );
        assert_eq!(
            store.proposal(c.id).await.unwrap().unwrap().status,
            ProposalStatus::Approved
        );
        assert_eq!(
            store.proposal(b.id).await.unwrap().unwrap().status,
            ProposalStatus::Pending
        );
        // An expired proposal cannot be approved any more.
        assert!(
            !store
                .transition_proposal(
                    a.id,
                    ProposalStatus::Pending,
                    ProposalStatus::Approved,
                    t,
                    Some(1),
                    None
                )
                .await
                .unwrap()
        );

        // Approval racing the sweep: exactly one of them moves each proposal.
        for round in 0..10 {
            let sym = format!("R{round}");
            let p = store
                .insert_proposal(&new_proposal(&sym, t, 1))
                .await
                .unwrap()
                .unwrap();
            let (s1, s2) = (store.clone(), store.clone());
            let approve = tokio::spawn(async move {
                s1.transition_proposal(
                    p.id,
                    ProposalStatus::Pending,
                    ProposalStatus::Approved,
                    t + Duration::minutes(2),
                    Some(1),
                    None,
                )
                .await
            });
            let sweep =
                tokio::spawn(
                    async move { s2.expire_due_proposals(t + Duration::minutes(2)).await },
                );
            let approved = approve.await.unwrap().unwrap();
            let expired = sweep.await.unwrap().unwrap().iter().any(|x| x.id == p.id);
            assert!(
                approved ^ expired,
                "{name} round {round}: approved {approved}, expired {expired}"
            );
            let status = store.proposal(p.id).await.unwrap().unwrap().status;
            let expected = if approved {
                ProposalStatus::Approved
            } else {
                ProposalStatus::Expired
            };
            assert_eq!(status, expected, "{name}");
        }
        db.store.close().await;
    }
}

#[tokio::test]
async fn scan_runs_are_recorded() {
    for db in test_stores().await {
        let name = db.name;
        let store = &db.store;
        assert!(store.last_scan_run().await.unwrap().is_none(), "{name}");
        let t = t0();
        let id = store.start_scan_run(t, 12).await.unwrap();
        let running = store.last_scan_run().await.unwrap().unwrap();
        assert_eq!(
            (
                running.id,
                running.started_at,
                running.finished_at,
                running.instruments
            ),
            (id, t, None, 12)
        );
        store
            .finish_scan_run(
                id,
                t + Duration::seconds(3),
                2,
                1,
                Some("NSE:X: no candles"),
            )
            .await
            .unwrap();
        let done = store.last_scan_run().await.unwrap().unwrap();
        assert_eq!(
            (done.finished_at, done.proposals, done.errors),
            (Some(t + Duration::seconds(3)), 2, 1),
            "{name}"
        );
        let id2 = store
            .start_scan_run(t + Duration::minutes(15), 12)
            .await
            .unwrap();
        assert!(id2 > id);
        assert_eq!(
            store.last_scan_run().await.unwrap().unwrap().id,
            id2,
            "{name}"
        );
        db.store.close().await;
    }
}

/// An analyst that fails on one instrument and counts how many analyses run at once.
struct CountingAnalyst {
    in_flight: std::sync::atomic::AtomicUsize,
    max_in_flight: std::sync::atomic::AtomicUsize,
    calls: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl mft::agents::Analyst for CountingAnalyst {
    fn name(&self) -> &str {
        "counting"
    }

    async fn analyse(
        &self,
        key: &InstrumentKey,
        _interval: Interval,
        _candles: &[Candle],
    ) -> Result<mft::domain::Signal, mft::agents::AgentError> {
        use std::sync::atomic::Ordering::SeqCst;
        let now = self.in_flight.fetch_add(1, SeqCst) + 1;
        self.max_in_flight.fetch_max(now, SeqCst);
        self.calls.fetch_add(1, SeqCst);
        // Yield a few times so that other analyses get the chance to overlap with this one.
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        self.in_flight.fetch_sub(1, SeqCst);
        if key.tradingsymbol == "S3" {
            return Err(mft::agents::AgentError::InvalidStrategy(
                "scripted failure".into(),
            ));
        }
        Ok(mft::domain::Signal::None {
            key: key.clone(),
            reason: "scripted: nothing to do".into(),
        })
    }
}

#[tokio::test]
async fn scan_is_bounded_and_an_analyst_error_does_not_stop_it() {
    for db in test_stores().await {
        let name = db.name;
        let store = &db.store;
        let dir = tempfile::tempdir().unwrap();
        let syms: Vec<String> = (0..8).map(|i| format!("NSE:S{i}")).collect();
        let refs: Vec<&str> = syms.iter().map(|s| s.as_str()).collect();
        let s = settings(&refs, dir.path());
        for sym in &syms {
            store
                .upsert_candles(&key(sym), Interval::Minute15, &rising(0.0))
                .await
                .unwrap();
        }
        let analyst = Arc::new(CountingAnalyst {
            in_flight: 0.into(),
            max_in_flight: 0.into(),
            calls: 0.into(),
        });
        let clock: Arc<dyn mft::clock::Clock> = Arc::new(ManualClock::new(now()));
        let agent = MetaAgent::new(store.clone(), analyst.clone(), Arc::new(s), clock);
        let out = agent.scan(None, &[]).await.unwrap();
        use std::sync::atomic::Ordering::SeqCst;
        assert_eq!(analyst.calls.load(SeqCst), 8, "{name}");
        assert!(
            analyst.max_in_flight.load(SeqCst) <= 2,
            "{name}: scan_concurrency is 2"
        );
        assert_eq!(out.errors.len(), 1, "{name}: {out:#?}");
        assert_eq!(out.errors[0].0, key("NSE:S3"));
        assert!(out.errors[0].1.contains("scripted failure"), "{name}");
        assert_eq!(out.skipped.len(), 7, "{name}");
        assert!(out.proposals.is_empty() && out.exits.is_empty(), "{name}");
        assert_eq!(
            (out.summary.instruments, out.summary.errors),
            (8, 1),
            "{name}"
        );
        db.store.close().await;
    }
}
