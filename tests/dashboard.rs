//! The dashboard in the whole service (`run_with`, what `mft run` runs), on every store from
//! `test_stores()`: an approval on the page and a Telegram tap at the same moment place one
//! order; Kill from the page flattens and halts; without a Telegram bot the service runs with the
//! dashboard as its interface and a generated, stored STATUS_TOKEN.

mod support;

use mft::domain::ProposalStatus;
use mft::store::Store;
use support::db::test_stores;
use support::service::{OPERATOR, Running, WAIT, poll_until, seed, settings};
use support::telegram_fake::{SentMessage, TelegramFake};

const STATUS_TOKEN: &str = "dash-st-0123456789";

fn card_id(card: &SentMessage) -> i64 {
    let buttons = card.buttons();
    let data = &buttons.first().expect("card buttons").1;
    data.rsplit(':')
        .next()
        .unwrap()
        .parse()
        .expect("proposal id")
}

async fn cards(fake: &TelegramFake, n: usize) -> Vec<SentMessage> {
    let photos = || -> Vec<SentMessage> {
        fake.messages()
            .into_iter()
            .filter(|m| m.photo.is_some())
            .collect()
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    while photos().len() < n {
        assert!(tokio::time::Instant::now() < deadline, "{n} cards expected");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    photos()
}

async fn status_of(store: &Store, id: i64) -> ProposalStatus {
    store.proposal(id).await.unwrap().unwrap().status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn page_approval_and_telegram_tap_at_once_place_one_order() {
    let watchlist = ["NSE:INFY", "NSE:TCS", "NSE:SBIN"];
    for db in test_stores().await {
        let name = db.name;
        let fake = TelegramFake::start(support::service::BOT_TOKEN).await;
        let dir = tempfile::tempdir().unwrap();
        seed(&db.store, &watchlist).await;
        let mut s = settings(
            Some(&fake),
            &db.url,
            &dir.path().join("charts"),
            &watchlist,
            Some(STATUS_TOKEN),
        );
        s.risk.max_open_positions = 5;
        let svc = Running::start(s).await;

        let (code, scan) = svc.post("/scan", STATUS_TOKEN, &[]).await;
        assert_eq!(code, 200, "{name}: {scan}");
        assert!(
            scan["message"].as_str().unwrap().contains("3 proposals"),
            "{name}: {scan}"
        );
        for card in cards(&fake, 3).await {
            let id = card_id(&card);
            let approve = format!("/proposals/{id}/approve");
            let data = format!("v1:a:{id}");
            // Both at the same moment: the page's POST and the operator's tap.
            let ((code, web), cb) = tokio::join!(svc.post(&approve, STATUS_TOKEN, &[]), async {
                fake.inject_callback(OPERATOR, OPERATOR, card.message_id, &data)
            });
            assert_eq!(code, 200, "{name}: {web}");
            let answered = fake.wait_answered(&cb, WAIT).await;
            let answer = answered.and_then(|a| a.text).unwrap_or_default();
            let web_decided = web["reply"]["Decision"]["Decided"].is_object();
            // A winning tap is answered at once; its outcome goes to the card.
            let tap_decided = answer == "Placing…";
            assert!(
                web_decided ^ tap_decided,
                "{name}: exactly one decides; web {web}, tap {answer:?}"
            );
            let loser = if web_decided {
                answer.clone()
            } else {
                web["message"].as_str().unwrap_or_default().to_string()
            };
            assert!(loser.starts_with("Already decided"), "{name}: {loser}");
            // The card is edited once, with the outcome (after the order, whoever won).
            assert!(
                poll_until(|| async {
                    fake.message(card.message_id).is_some_and(|m| m.edits >= 1)
                })
                .await,
                "{name}: card not edited"
            );
            let orders = db.store.orders_for_proposal(id).await.unwrap();
            assert_eq!(orders.len(), 1, "{name}: one order for #{id}: {orders:?}");
            assert_eq!(status_of(&db.store, id).await, ProposalStatus::Executed);
            let edited = fake.message(card.message_id).unwrap();
            assert_eq!(edited.edits, 1, "{name}: edited once");
            assert!(
                edited
                    .body()
                    .lines()
                    .last()
                    .unwrap()
                    .starts_with("Executed")
            );
            // Both attempts are in the audit, each with its actor. A winning tap is audited
            // when its approval ends, just after the card edit: wait for it.
            let actions_of = || async {
                db.store
                    .recent_actions(50)
                    .await
                    .unwrap()
                    .into_iter()
                    .filter(|a| a.proposal_id == Some(id))
                    .map(|a| a.actor)
                    .collect::<Vec<_>>()
            };
            poll_until(|| async { actions_of().await.len() >= 2 }).await;
            let actions = actions_of().await;
            assert_eq!(actions.len(), 2, "{name}: {actions:?}");
            assert!(actions.contains(&"web".to_string()));
            assert!(actions.contains(&format!("telegram:{OPERATOR}")));
        }
        svc.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_from_the_page_flattens_and_halts_and_every_action_is_audited() {
    for db in test_stores().await {
        let name = db.name;
        let fake = TelegramFake::start(support::service::BOT_TOKEN).await;
        let dir = tempfile::tempdir().unwrap();
        seed(&db.store, &["NSE:INFY"]).await;
        let s = settings(
            Some(&fake),
            &db.url,
            &dir.path().join("charts"),
            &["NSE:INFY"],
            Some(STATUS_TOKEN),
        );
        let svc = Running::start(s).await;
        svc.post("/scan", STATUS_TOKEN, &[]).await;
        let id = db.store.pending_proposals().await.unwrap()[0].id;
        let (_, r) = svc
            .post(&format!("/proposals/{id}/approve"), STATUS_TOKEN, &[])
            .await;
        assert!(
            r["message"].as_str().unwrap().starts_with("Executed"),
            "{name}: {r}"
        );
        assert_eq!(db.store.open_positions().await.unwrap().len(), 1);

        let (code, _) = svc.post("/kill", STATUS_TOKEN, &[]).await;
        assert_eq!(code, 400, "{name}: kill needs its confirmation");
        assert_eq!(db.store.open_positions().await.unwrap().len(), 1);
        let (code, r) = svc.post("/kill", STATUS_TOKEN, &[("confirm", "yes")]).await;
        assert_eq!(code, 200, "{name}: {r}");
        assert_eq!(r["message"], "Kill done: HALTED");
        assert!(
            db.store.open_positions().await.unwrap().is_empty(),
            "{name}: flat"
        );
        let state = db.store.system_state().await.unwrap();
        assert!(state.halted, "{name}");
        assert!(
            state.halted_reason.unwrap().contains("web dashboard"),
            "{name}"
        );
        // The operator hears about it in the chat too, and the page shows it.
        assert!(
            fake.wait_for(
                |c| c
                    .iter()
                    .any(|c| c.str("text").is_some_and(|t| t.starts_with("Kill done"))),
                WAIT
            )
            .await,
            "{name}: no kill report in the chat"
        );
        let (_, page) = svc.get("/", STATUS_TOKEN).await;
        assert!(page.contains("HALTED"), "{name}");
        assert!(page.contains("No open positions."), "{name}");
        let (_, alerts) = svc.get("/alerts", STATUS_TOKEN).await;
        assert!(
            alerts.contains("Kill done"),
            "{name}: the Alerts page lists it"
        );
        // The kill's exit order is on the Trades page with its realized P&L.
        let (_, trades) = svc.get("/trades", STATUS_TOKEN).await;
        let exit_row = trades
            .lines()
            .find(|l| l.contains("exit: kill"))
            .unwrap_or_else(|| panic!("{name}: no exit order in {trades}"));
        let realized = db
            .store
            .realized_since(chrono::DateTime::UNIX_EPOCH)
            .await
            .unwrap();
        assert!(realized.0 != 0, "{name}: the round trip costs something");
        assert!(
            exit_row.contains(&realized.to_string()),
            "{name}: {realized} not in {exit_row}"
        );
        let kill = db
            .store
            .recent_actions(10)
            .await
            .unwrap()
            .into_iter()
            .find(|a| a.command == "kill")
            .expect("kill audited");
        assert_eq!(kill.actor, "web");
        // Resume lifts the halt; Pause stops new proposals; Reject decides without an order.
        let (code, r) = svc.post("/resume", STATUS_TOKEN, &[]).await;
        assert_eq!(
            (code, r["message"].as_str()),
            (200, Some("Resumed")),
            "{name}"
        );
        assert!(!db.store.system_state().await.unwrap().halted, "{name}");
        svc.post("/scan", STATUS_TOKEN, &[]).await;
        let next = db.store.pending_proposals().await.unwrap();
        assert_eq!(next.len(), 1, "{name}: a new proposal after the resume");
        let (_, r) = svc
            .post(
                &format!("/proposals/{}/reject", next[0].id),
                STATUS_TOKEN,
                &[],
            )
            .await;
        assert_eq!(r["message"], "Rejected", "{name}");
        assert_eq!(
            status_of(&db.store, next[0].id).await,
            ProposalStatus::Rejected
        );
        assert!(
            db.store
                .orders_for_proposal(next[0].id)
                .await
                .unwrap()
                .is_empty()
        );
        let (_, r) = svc.post("/pause", STATUS_TOKEN, &[]).await;
        assert_eq!(r["message"], "Paused", "{name}");
        assert!(db.store.system_state().await.unwrap().paused, "{name}");
        let actors: Vec<(String, String)> = db
            .store
            .recent_actions(10)
            .await
            .unwrap()
            .into_iter()
            .map(|a| (a.command, a.actor))
            .collect();
        for cmd in ["approve", "kill", "resume", "reject", "pause"] {
            assert!(
                actors.contains(&(cmd.to_string(), "web".to_string())),
                "{name}: {cmd} by web not in {actors:?}"
            );
        }
        svc.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_telegram_the_dashboard_is_the_interface() {
    for db in test_stores().await {
        let name = db.name;
        let dir = tempfile::tempdir().unwrap();
        seed(&db.store, &["NSE:INFY"]).await;
        let s = settings(
            None,
            &db.url,
            &dir.path().join("charts"),
            &["NSE:INFY"],
            None,
        );
        let svc = Running::start(s).await;
        let token = db
            .store
            .generated_secret(mft::app::GENERATED_TOKEN)
            .await
            .unwrap()
            .expect("a STATUS_TOKEN was generated and stored");
        assert_eq!(token.len(), 64, "{name}");
        let (code, _) = svc.get("/", "wrong").await;
        assert_eq!(code, 401, "{name}: the generated token protects the page");

        let (code, r) = svc.post("/scan", &token, &[]).await;
        assert_eq!(code, 200, "{name}: {r}");
        let (_, queue) = svc.get("/queue", &token).await;
        let id = db.store.pending_proposals().await.unwrap()[0].id;
        assert!(
            queue.contains(&format!("/proposals/{id}/approve")),
            "{name}"
        );
        assert!(
            queue.contains(&format!("/proposals/{id}/chart.png")),
            "{name}"
        );
        let (code, png) = svc.get(&format!("/proposals/{id}/chart.png"), &token).await;
        assert_eq!(code, 200, "{name}");
        assert!(png.len() > 1000, "{name}: the chart");
        let (_, r) = svc
            .post(&format!("/proposals/{id}/approve"), &token, &[])
            .await;
        assert!(
            r["message"].as_str().unwrap().starts_with("Executed"),
            "{name}: {r}"
        );
        assert_eq!(db.store.orders_for_proposal(id).await.unwrap().len(), 1);
        let (_, trades) = svc.get("/trades", &token).await;
        assert!(
            trades.contains("NSE:INFY") && trades.contains("filled"),
            "{name}"
        );
        let (_, alerts) = svc.get("/alerts", &token).await;
        assert!(alerts.contains("MFT-1 started"), "{name}: {alerts}");
        svc.stop().await;

        // The next start keeps the same token.
        let s = settings(
            None,
            &db.url,
            &dir.path().join("charts"),
            &["NSE:INFY"],
            None,
        );
        let svc = Running::start(s).await;
        let (code, _) = svc.get("/", &token).await;
        assert_eq!(code, 200, "{name}: same token after a restart");
        svc.stop().await;
    }
}

mod card_race {
    //! A proposal approved on the page while its Telegram card is still being posted: the card
    //! is edited with the outcome as soon as it exists (not left with live buttons).

    use std::sync::{Arc, Mutex};

    use chrono::{Duration, DurationRound, Utc};
    use mft::app::handler::Handler;
    use mft::clock::{Clock, ManualClock};
    use mft::config::Settings;
    use mft::domain::{
        Actor, Candle, Command, InstrumentKey, Interval, NewProposal, Paise, Product, Proposal,
        Request, Side,
    };
    use mft::oms::PaperBroker;
    use mft::ports::{
        Alert, Notifier, NotifyError, Outcome, ProposalCard, ScanError, ScanResult, ScanSummary,
        Scanner,
    };
    use mft::store::Store;
    use tokio::sync::Notify;

    use super::support::db::test_stores;

    /// Inserts one proposal per scan, like the meta-agent, and returns its card.
    struct OneProposal {
        store: Store,
        clock: ManualClock,
    }

    #[async_trait::async_trait]
    impl Scanner for OneProposal {
        async fn scan(
            &self,
            _only: Option<&InstrumentKey>,
            _open: &[InstrumentKey],
        ) -> Result<ScanResult, ScanError> {
            let now = self.clock.now();
            let p = self
                .store
                .insert_proposal(&NewProposal {
                    key: InstrumentKey::new("NSE", "INFY"),
                    side: Side::Buy,
                    quantity: 10,
                    entry: Paise::from_rupees(1500),
                    stop: Paise::from_rupees(1480),
                    target: Paise::from_rupees(1540),
                    product: Product::Mis,
                    confidence: 0.7,
                    rationale: "test".into(),
                    created_at: now,
                    expires_at: now + Duration::minutes(10),
                })
                .await
                .expect("insert a proposal")
                .expect("no other pending proposal");
            Ok(ScanResult {
                summary: ScanSummary {
                    id: 1,
                    started_at: now,
                    finished_at: Some(now),
                    instruments: 1,
                    proposals: 1,
                    errors: 0,
                    stale: Vec::new(),
                },
                proposals: vec![ProposalCard {
                    proposal: p,
                    chart_png: None,
                    capital: Paise::from_rupees(100_000),
                }],
                exits: vec![],
                errors: vec![],
            })
        }
    }

    /// Posting a card waits until the test opens the gate (a slow Telegram).
    #[derive(Default)]
    struct SlowChat {
        started: Notify,
        gate: Notify,
        updates: Mutex<Vec<(i64, i64, Outcome)>>,
    }

    #[async_trait::async_trait]
    impl Notifier for SlowChat {
        async fn post_proposal(&self, _card: &ProposalCard) -> Result<i64, NotifyError> {
            self.started.notify_one();
            self.gate.notified().await;
            Ok(77)
        }

        async fn update_proposal(
            &self,
            p: &Proposal,
            message_id: i64,
            outcome: &Outcome,
        ) -> Result<(), NotifyError> {
            self.updates
                .lock()
                .unwrap()
                .push((p.id, message_id, outcome.clone()));
            Ok(())
        }

        async fn alert(&self, _alert: &Alert) -> Result<(), NotifyError> {
            Ok(())
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_card_posted_after_the_decision_is_edited_with_it() {
        for db in test_stores().await {
            let name = db.name;
            let key = InstrumentKey::new("NSE", "INFY");
            let mut s = Settings::default();
            s.trading.watchlist = vec![key.clone()];
            s.risk.trading_window = "00:00-23:59".parse().expect("valid");
            s.risk.trading_days = "Mon-Sun".parse().expect("valid");
            let settings = Arc::new(s);
            let clock = ManualClock::new(
                Utc::now().duration_trunc(Duration::minutes(15)).unwrap() + Duration::minutes(1),
            );
            let last_bar = clock.now() - Duration::minutes(20);
            let bar = Candle {
                ts: last_bar,
                open: 1500.0,
                high: 1500.0,
                low: 1500.0,
                close: 1500.0,
                volume: 1000,
                oi: None,
            };
            db.store
                .upsert_candles(&key, Interval::Minute15, &[bar])
                .await
                .unwrap();
            let clock_dyn: Arc<dyn Clock> = Arc::new(clock.clone());
            let chat = Arc::new(SlowChat::default());
            let handler = Arc::new(Handler::new(
                db.store.clone(),
                settings.clone(),
                clock_dyn.clone(),
                Arc::new(PaperBroker::new(db.store.clone(), settings, clock_dyn)),
                chat.clone(),
                Arc::new(OneProposal {
                    store: db.store.clone(),
                    clock: clock.clone(),
                }),
            ));
            let scan = tokio::spawn({
                let h = handler.clone();
                async move {
                    h.handle(Request {
                        command: Command::Scan { only: None },
                        actor: Actor::Scheduler,
                    })
                    .await
                }
            });
            chat.started.notified().await;
            let id = db.store.pending_proposals().await.unwrap()[0].id;
            let reply = handler
                .handle(Request {
                    command: Command::Approve { proposal_id: id },
                    actor: Actor::Web,
                })
                .await
                .unwrap();
            assert!(
                format!("{reply:?}").contains("Executed"),
                "{name}: {reply:?}"
            );
            assert!(
                chat.updates.lock().unwrap().is_empty(),
                "{name}: no card yet"
            );
            chat.gate.notify_one();
            scan.await.unwrap().unwrap();
            let updates = chat.updates.lock().unwrap().clone();
            assert_eq!(updates.len(), 1, "{name}: {updates:?}");
            assert_eq!((updates[0].0, updates[0].1), (id, 77), "{name}");
            assert!(
                matches!(updates[0].2, Outcome::Executed { .. }),
                "{name}: {updates:?}"
            );
        }
    }
}
