//! End-to-end: the real service (`mft::app::run_with`, exactly what `mft run` runs) against the
//! local Telegram fake, on every store from `test_stores()` (SQLite always, PostgreSQL when
//! TEST_DATABASE_URL is set), with a ManualClock. The operator's side is played through the
//! fake: commands, button taps, redeliveries; assertions are on what reaches the chat and on
//! the store.

mod support;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use mft::app::{AppError, run_with};
use mft::clock::{IST, ManualClock};
use mft::config::{ScheduleSettings, Secret, Settings};
use mft::domain::{InstrumentKey, Interval, OrderState, Paise, Proposal, ProposalStatus};
use mft::store::Store;
use support::db::{TestDb, test_stores};
use support::series;
use support::telegram_fake::{Call, SentMessage, TelegramFake};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "123456:E2E-token";
/// The operator; the chat is private, so its id is the operator's user id.
const OPERATOR: i64 = 4242;
const STRANGER: i64 = 666;
const WAIT: Duration = Duration::from_secs(10);

fn key(s: &str) -> InstrumentKey {
    s.parse().expect("instrument key")
}

/// 13:00 IST on Wednesday 25 Nov 2026: the last 15-minute candle has just closed.
fn closed_by() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 7, 30, 0).unwrap()
}

/// One minute after the last candle closed.
fn start_time() -> DateTime<Utc> {
    closed_by() + chrono::Duration::minutes(1)
}

fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    let addr = l.local_addr().expect("local addr");
    addr.to_string()
}

/// Settings of every test: the fake, the test database, a permissive window, no schedules
/// (tests send /scan), short strategy periods.
fn settings(
    fake: &TelegramFake,
    db_url: &str,
    charts: &std::path::Path,
    watchlist: &[&str],
) -> Settings {
    let mut s = Settings {
        database_url: db_url.to_string(),
        ..Settings::default()
    };
    s.telegram.bot_token = Some(Secret::new(TOKEN));
    s.telegram.chat_id = Some(OPERATOR);
    s.telegram.api_url = fake.url();
    s.status.addr = free_addr();
    s.trading.watchlist = watchlist.iter().map(|k| key(k)).collect();
    s.trading.interval = Interval::Minute15;
    s.strategy = series::strategy();
    s.charts.dir = charts.to_string_lossy().into_owned();
    s.schedules = ScheduleSettings {
        scan: String::new(),
        expiry_sweep: String::new(),
        square_off: String::new(),
        login_link: String::new(),
        exit_check: String::new(),
        instruments_refresh: String::new(),
    };
    s.risk.trading_window = "00:00-23:59".parse().expect("valid");
    s.risk.trading_days = "Mon-Sun".parse().expect("valid");
    s
}

async fn seed(store: &Store, keys: &[&str]) {
    for k in keys {
        store
            .upsert_candles(
                &key(k),
                Interval::Minute15,
                &series::rising_cross(closed_by(), 0.0),
            )
            .await
            .expect("seed candles");
    }
}

/// The running service and the operator's side of the chat.
struct Service {
    fake: TelegramFake,
    clock: ManualClock,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), AppError>>,
    name: &'static str,
    /// Stops the service if a test fails half-way.
    _guard: tokio_util::sync::DropGuard,
}

fn sends(calls: &[Call]) -> Vec<&Call> {
    calls.iter().filter(|c| c.method == "sendMessage").collect()
}

impl Service {
    /// Starts `run_with` and waits for the start alert.
    async fn start(name: &'static str, fake: TelegramFake, settings: Settings) -> Service {
        Service::start_at(name, fake, settings, ManualClock::new(start_time())).await
    }

    async fn start_at(
        name: &'static str,
        fake: TelegramFake,
        settings: Settings,
        clock: ManualClock,
    ) -> Service {
        let settings = Arc::new(settings);
        let shutdown = CancellationToken::new();
        let before = fake.calls("sendMessage").len();
        let task = tokio::spawn(run_with(
            settings.clone(),
            Arc::new(clock.clone()),
            shutdown.clone(),
        ));
        let started = fake
            .wait_for(
                |c| {
                    sends(c)
                        .iter()
                        .skip(before)
                        .any(|m| m.str("text").is_some_and(|t| t.contains("MFT-1 started")))
                },
                WAIT,
            )
            .await;
        assert!(
            started,
            "{name}: no start alert; calls: {:?}",
            fake.all_calls()
        );
        Service {
            fake,
            clock,
            _guard: shutdown.clone().drop_guard(),
            shutdown,
            task,
            name,
        }
    }

    /// Sends `text` as the operator and waits for a chat message, sent after it, that `want`
    /// accepts; returns its text.
    async fn say(&self, text: &str, want: impl Fn(&str) -> bool) -> String {
        self.say_as(OPERATOR, OPERATOR, text, want).await
    }

    async fn say_as(
        &self,
        user: i64,
        chat: i64,
        text: &str,
        want: impl Fn(&str) -> bool,
    ) -> String {
        let before = self.fake.calls("sendMessage").len();
        self.fake.inject_message(user, chat, text);
        self.wait_text_after(before, &want, text).await
    }

    async fn wait_text_after(
        &self,
        before: usize,
        want: &dyn Fn(&str) -> bool,
        what: &str,
    ) -> String {
        let found = |calls: &[Call]| {
            sends(calls)
                .into_iter()
                .skip(before)
                .filter_map(|c| c.str("text"))
                .find(|t| want(t))
                .map(String::from)
        };
        let ok = self.fake.wait_for(|c| found(c).is_some(), WAIT).await;
        let texts: Vec<String> = self
            .fake
            .calls("sendMessage")
            .iter()
            .skip(before)
            .filter_map(|c| c.str("text").map(String::from))
            .collect();
        assert!(
            ok,
            "{}: no expected reply to {what:?}; got {texts:#?}",
            self.name
        );
        found(&self.fake.all_calls()).unwrap_or_default()
    }

    /// Waits for a message (sent after `before` sendMessage calls) that `want` accepts.
    async fn wait_text(&self, before: usize, want: impl Fn(&str) -> bool, what: &str) -> String {
        self.wait_text_after(before, &want, what).await
    }

    fn sent_count(&self) -> usize {
        self.fake.calls("sendMessage").len()
    }

    /// Sends /scan and waits for its summary and `cards` photo cards; returns the cards.
    async fn scan(&self, cards: usize) -> Vec<SentMessage> {
        let photos_before = self.fake.calls("sendPhoto").len();
        let reply = self.say("/scan", |t| t.contains("Scan done")).await;
        assert!(
            reply.contains(&format!("{cards} proposals")),
            "{}: {reply}",
            self.name
        );
        let photos = || -> Vec<SentMessage> {
            self.fake
                .messages()
                .into_iter()
                .filter(|m| m.photo.is_some())
                .collect()
        };
        assert!(
            poll_until(|| photos().len() >= photos_before + cards).await,
            "{}: {cards} cards expected",
            self.name
        );
        let photos = photos();
        photos[photos.len() - cards..].to_vec()
    }

    /// Taps a button as `user` on message `message_id` in the operator chat; returns the
    /// callback id.
    fn tap(&self, user: i64, message_id: i64, data: &str) -> String {
        self.fake.inject_callback(user, OPERATOR, message_id, data)
    }

    /// The texts of every answer to callback `cb` so far.
    fn answers(&self, cb: &str) -> Vec<String> {
        self.fake
            .calls("answerCallbackQuery")
            .iter()
            .filter(|c| c.str("callback_query_id") == Some(cb))
            .map(|c| c.str("text").unwrap_or("").to_string())
            .collect()
    }

    /// Waits for the first answer to callback `cb`.
    async fn answer(&self, cb: &str) -> String {
        let ok = poll_until(|| !self.answers(cb).is_empty()).await;
        assert!(ok, "{}: callback {cb} not answered", self.name);
        self.answers(cb).remove(0)
    }

    /// Waits for the answer to the winning approve tap `cb` ("Placing…", before any order),
    /// then for card `message_id`'s outcome edit; returns the outcome line.
    async fn placed(&self, cb: &str, message_id: i64) -> String {
        let answer = self.answer(cb).await;
        assert_eq!(
            answer, "Placing…",
            "{}: the tap is answered at once",
            self.name
        );
        let edited = self.wait_edited(message_id, 1).await;
        edited.body().lines().last().unwrap_or("").to_string()
    }

    /// Waits until message `message_id` has been edited at least `edits` times.
    async fn wait_edited(&self, message_id: i64, edits: u32) -> SentMessage {
        let ok = poll_until(|| {
            self.fake
                .message(message_id)
                .is_some_and(|m| m.edits >= edits)
        })
        .await;
        let m = self.fake.message(message_id).expect("message exists");
        assert!(ok, "{}: message {message_id} not edited: {m:?}", self.name);
        m
    }

    /// Cancels the service, waits for run_with to return Ok and for the stopping alert.
    async fn stop(self) -> TelegramFake {
        let before = self.sent_count();
        self.shutdown.cancel();
        let result = tokio::time::timeout(WAIT, self.task)
            .await
            .unwrap_or_else(|_| panic!("{}: run_with did not return after shutdown", self.name))
            .expect("service task panicked");
        assert!(result.is_ok(), "{}: run_with failed: {result:?}", self.name);
        let stopping = sends(&self.fake.all_calls())
            .into_iter()
            .skip(before)
            .any(|c| c.str("text").is_some_and(|t| t.contains("stopping")));
        assert!(stopping, "{}: no stopping alert", self.name);
        self.fake
    }
}

/// Polls `cond` until it holds or WAIT passes (the fake records a call just before applying
/// it, so state is polled rather than inferred from the call list).
async fn poll_until(cond: impl Fn() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if cond() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn card_id(card: &SentMessage) -> i64 {
    let buttons = card.buttons();
    let data = &buttons.first().expect("card buttons").1;
    data.rsplit(':')
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("proposal id in {data}"))
}

async fn proposal(store: &Store, id: i64) -> Proposal {
    store
        .proposal(id)
        .await
        .expect("read proposal")
        .expect("proposal exists")
}

async fn fixture(db: &TestDb, watchlist: &[&str]) -> (TelegramFake, tempfile::TempDir, Settings) {
    let fake = TelegramFake::start(TOKEN).await;
    let dir = tempfile::tempdir().expect("temp dir");
    seed(&db.store, watchlist).await;
    let s = settings(&fake, &db.url, &dir.path().join("charts"), watchlist);
    (fake, dir, s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scan_card_approve_executes_once_and_positions_show_it() {
    for db in test_stores().await {
        let name = db.name;
        let (fake, _dir, s) = fixture(&db, &["NSE:INFY"]).await;
        let svc = Service::start(name, fake, s).await;

        let cards = svc.scan(1).await;
        let card = &cards[0];
        assert_eq!(card.chat_id, OPERATOR, "{name}");
        // The photo is the chart: a 1280x800 PNG.
        let png = card.photo.as_ref().expect("photo");
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{name}: PNG magic");
        let img = image::load_from_memory(png).expect("the photo decodes");
        assert_eq!((img.width(), img.height()), (1280, 800), "{name}");
        let id = card_id(card);
        let caption = card.caption.clone().unwrap_or_default();
        let expires = (start_time() + chrono::Duration::minutes(10))
            .with_timezone(&IST)
            .format("%H:%M")
            .to_string();
        for want in [
            "BUY NSE:INFY".to_string(),
            "Quantity: 250".into(),
            "Entry: ₹93.50".into(),
            "Stop: ₹89.50".into(),
            "Target: ₹101.50".into(),
            "Risk: ₹1,000.00 (1.00% of capital".into(),
            "Reward:risk 2.00".into(),
            format!("expires {expires} IST"),
        ] {
            assert!(caption.contains(&want), "{name}: {want:?} not in {caption}");
        }
        assert_eq!(
            card.buttons(),
            vec![
                ("Approve".to_string(), format!("v1:a:{id}")),
                ("Reject".to_string(), format!("v1:r:{id}")),
            ],
            "{name}"
        );
        let p = proposal(&db.store, id).await;
        assert_eq!(p.status, ProposalStatus::Pending, "{name}");
        assert_eq!(p.message_id, Some(card.message_id), "{name}");

        let cb = svc.tap(OPERATOR, card.message_id, &format!("v1:a:{id}"));
        let outcome = svc.placed(&cb, card.message_id).await;
        assert!(
            outcome.starts_with("Executed: BUY 250 @ ₹93.55 (paper"),
            "{name}: {outcome}"
        );
        let edited = svc.wait_edited(card.message_id, 1).await;
        assert_eq!(edited.reply_markup, None, "{name}: buttons gone");
        assert!(
            svc.fake
                .calls("editMessageCaption")
                .iter()
                .any(|c| c.i64("message_id") == Some(card.message_id)),
            "{name}: the photo's caption is edited"
        );
        let orders = db.store.orders_for_proposal(id).await.unwrap();
        assert_eq!(orders.len(), 1, "{name}: {orders:?}");
        let OrderState::Filled {
            broker_order_id, ..
        } = &orders[0].state
        else {
            panic!("{name}: order not filled: {:?}", orders[0].state);
        };
        let outcome = edited.body().lines().last().unwrap_or("");
        assert!(outcome.starts_with("Executed"), "{name}: {outcome}");
        assert!(
            outcome.contains("paper") && outcome.contains(broker_order_id.as_str()),
            "{name}: {outcome} lacks paper / {broker_order_id}"
        );
        assert_eq!(
            proposal(&db.store, id).await.status,
            ProposalStatus::Executed,
            "{name}"
        );

        let positions = svc
            .say("/positions", |t| t.contains("Open positions"))
            .await;
        assert!(
            positions.contains("NSE:INFY long 250 (MIS) @ ₹93.55"),
            "{name}: {positions}"
        );
        svc.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reject_edits_the_card_and_places_nothing() {
    for db in test_stores().await {
        let name = db.name;
        let (fake, _dir, s) = fixture(&db, &["NSE:INFY"]).await;
        let svc = Service::start(name, fake, s).await;
        let card = svc.scan(1).await.remove(0);
        let id = card_id(&card);
        let cb = svc.tap(OPERATOR, card.message_id, &format!("v1:r:{id}"));
        assert_eq!(svc.answer(&cb).await, "Rejected", "{name}");
        let edited = svc.wait_edited(card.message_id, 1).await;
        assert_eq!(edited.reply_markup, None, "{name}");
        assert!(
            edited
                .body()
                .lines()
                .last()
                .unwrap_or("")
                .starts_with("Rejected"),
            "{name}: {}",
            edited.body()
        );
        assert_eq!(
            proposal(&db.store, id).await.status,
            ProposalStatus::Rejected,
            "{name}"
        );
        assert!(db.store.orders_for_proposal(id).await.unwrap().is_empty());
        assert!(
            db.store.open_positions().await.unwrap().is_empty(),
            "{name}"
        );
        svc.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn double_taps_redeliveries_and_two_devices_give_one_order() {
    for db in test_stores().await {
        let name = db.name;
        let (fake, _dir, s) = fixture(&db, &["NSE:INFY", "NSE:TCS"]).await;
        let svc = Service::start(name, fake, s).await;
        let cards = svc.scan(2).await;

        // Card A: tap, tap again, and the first update delivered a second time.
        let a = &cards[0];
        let ida = card_id(a);
        let (update, cb1) = svc.fake.inject_callback_update(
            OPERATOR,
            OPERATOR,
            a.message_id,
            &format!("v1:a:{ida}"),
        );
        let outcome = svc.placed(&cb1, a.message_id).await;
        assert!(outcome.starts_with("Executed"), "{name}: {outcome}");
        let cb2 = svc.tap(OPERATOR, a.message_id, &format!("v1:a:{ida}"));
        assert_eq!(
            svc.answer(&cb2).await,
            "Already decided (executed)",
            "{name}"
        );
        assert!(svc.fake.redeliver(update), "{name}");
        assert!(
            poll_until(|| svc.answers(&cb1).len() >= 2).await,
            "{name}: the redelivered tap is answered"
        );
        assert_eq!(svc.answers(&cb1)[1], "Already decided (executed)", "{name}");
        assert_eq!(
            db.store.orders_for_proposal(ida).await.unwrap().len(),
            1,
            "{name}"
        );

        // Card B: two devices tap at once.
        let b = &cards[1];
        let idb = card_id(b);
        let d1 = svc.tap(OPERATOR, b.message_id, &format!("v1:a:{idb}"));
        let d2 = svc.tap(OPERATOR, b.message_id, &format!("v1:a:{idb}"));
        let (x, y) = (svc.answer(&d1).await, svc.answer(&d2).await);
        let mut both = [x.clone(), y.clone()];
        both.sort();
        // The loser may tap while the winner's order is still being placed.
        assert!(
            (both[0] == "Already decided (approved)" || both[0] == "Already decided (executed)")
                && both[1] == "Placing…",
            "{name}: {x:?} / {y:?}"
        );
        let edited = svc.wait_edited(b.message_id, 1).await;
        let outcome = edited.body().lines().last().unwrap_or("");
        assert!(outcome.starts_with("Executed"), "{name}: {outcome}");
        assert_eq!(
            db.store.orders_for_proposal(idb).await.unwrap().len(),
            1,
            "{name}"
        );
        // Each card was edited with its outcome exactly once.
        for card in [a, b] {
            let edits = svc
                .fake
                .calls("editMessageCaption")
                .iter()
                .filter(|c| c.i64("message_id") == Some(card.message_id))
                .count();
            assert_eq!(edits, 1, "{name}: card {}", card.message_id);
        }
        assert_eq!(db.store.open_positions().await.unwrap().len(), 2, "{name}");
        svc.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_strangers_tap_and_kill_change_nothing() {
    for db in test_stores().await {
        let name = db.name;
        let (fake, _dir, s) = fixture(&db, &["NSE:INFY"]).await;
        let svc = Service::start(name, fake, s).await;
        let card = svc.scan(1).await.remove(0);
        let id = card_id(&card);

        let cb = svc.tap(STRANGER, card.message_id, &format!("v1:a:{id}"));
        let answer = svc.answer(&cb).await;
        assert!(
            answer.to_lowercase().contains("not authorized"),
            "{name}: {answer}"
        );
        let before = svc.sent_count();
        // In the operator's chat, then from the stranger's own chat.
        svc.fake.inject_message(STRANGER, OPERATOR, "/kill");
        svc.fake.inject_message(STRANGER, STRANGER, "/kill");
        svc.fake.inject_message(STRANGER, OPERATOR, "/scan");
        // The operator's /status is handled after the stranger's messages in the same chat.
        let status = svc.say("/status", |t| t.contains("MFT-1 status")).await;
        assert!(!status.contains("HALTED"), "{name}: {status}");
        assert!(status.contains("Pending proposals: 1"), "{name}: {status}");
        let calls = svc.fake.all_calls();
        let texts: Vec<&str> = sends(&calls)
            .into_iter()
            .skip(before)
            .filter_map(|c| c.str("text"))
            .collect();
        assert!(
            texts
                .iter()
                .all(|t| !t.starts_with("Kill") && !t.contains("Scan done")),
            "{name}: the stranger got an answer: {texts:?}"
        );
        assert!(
            sends(&calls)
                .iter()
                .all(|c| c.i64("chat_id") != Some(STRANGER)),
            "{name}: nothing is ever sent to the stranger"
        );
        assert_eq!(
            proposal(&db.store, id).await.status,
            ProposalStatus::Pending,
            "{name}"
        );
        assert_eq!(
            svc.fake.message(card.message_id).unwrap().edits,
            0,
            "{name}"
        );
        assert!(!db.store.system_state().await.unwrap().halted, "{name}");
        assert!(db.store.orders_for_proposal(id).await.unwrap().is_empty());
        svc.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn expiry_sweep_expires_the_card_and_a_late_approve_places_nothing() {
    for db in test_stores().await {
        let name = db.name;
        let (fake, _dir, mut s) = fixture(&db, &["NSE:INFY"]).await;
        s.schedules.expiry_sweep = "* * * * * *".into();
        let svc = Service::start(name, fake, s).await;
        let card = svc.scan(1).await.remove(0);
        let id = card_id(&card);
        assert_eq!(svc.fake.message(card.message_id).unwrap().edits, 0);

        svc.clock.advance(chrono::Duration::minutes(11));
        let edited = svc.wait_edited(card.message_id, 1).await;
        assert_eq!(edited.reply_markup, None, "{name}");
        assert!(
            edited
                .body()
                .lines()
                .last()
                .unwrap_or("")
                .starts_with("Expired"),
            "{name}: {}",
            edited.body()
        );
        assert_eq!(
            proposal(&db.store, id).await.status,
            ProposalStatus::Expired,
            "{name}"
        );
        let cb = svc.tap(OPERATOR, card.message_id, &format!("v1:a:{id}"));
        assert_eq!(svc.answer(&cb).await, "Already decided (expired)", "{name}");
        assert!(db.store.orders_for_proposal(id).await.unwrap().is_empty());
        assert!(
            db.store.open_positions().await.unwrap().is_empty(),
            "{name}"
        );
        svc.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn daily_loss_vetoes_the_next_entry_and_halts_with_an_alert() {
    for db in test_stores().await {
        let name = db.name;
        let (fake, _dir, mut s) = fixture(&db, &["NSE:INFY", "NSE:TCS"]).await;
        // The first fill's slippage costs 12.50 (250 x 0.05): under the limit.
        s.risk.max_daily_loss = Paise::from_rupees(20);
        let svc = Service::start(name, fake, s).await;
        let cards = svc.scan(2).await;
        let (a, b) = (&cards[0], &cards[1]);
        let (ida, idb) = (card_id(a), card_id(b));
        let cb = svc.tap(OPERATOR, a.message_id, &format!("v1:a:{ida}"));
        let outcome = svc.placed(&cb, a.message_id).await;
        assert!(outcome.starts_with("Executed"), "{name}: {outcome}");
        // The card is edited before the approval's daily-loss check; the approval is over
        // when its action is audited. Only then does the price move (else that check would
        // already see the drop below and halt before the next tap).
        let deadline = tokio::time::Instant::now() + WAIT;
        while !db
            .store
            .recent_actions(10)
            .await
            .unwrap()
            .iter()
            .any(|a| a.proposal_id == Some(ida))
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name}: approval of #{ida} never ended"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(!db.store.system_state().await.unwrap().halted, "{name}");

        // INFY drops 0.15: the open position is now 37.50 down, over the 20 limit.
        db.store
            .upsert_candles(
                &key("NSE:INFY"),
                Interval::Minute15,
                &[series::last_candle(closed_by(), 93.4)],
            )
            .await
            .unwrap();
        let before = svc.sent_count();
        let cb = svc.tap(OPERATOR, b.message_id, &format!("v1:a:{idb}"));
        // The tap wins the proposal ("Placing…"); the risk check then vetoes it on the card.
        svc.placed(&cb, b.message_id).await;
        let edited = svc.wait_edited(b.message_id, 1).await;
        assert_eq!(edited.reply_markup, None, "{name}");
        let outcome = edited.body().lines().last().unwrap_or("").to_string();
        assert!(
            outcome.starts_with("Vetoed: MAX_DAILY_LOSS")
                && outcome.contains("today's loss ₹37.50 has reached the limit ₹20.00"),
            "{name}: {outcome}"
        );
        let halt = svc
            .wait_text(
                before,
                |t| t.starts_with("HALTED: today's loss"),
                "halt alert",
            )
            .await;
        assert!(
            halt.contains("₹37.50") && halt.contains("₹20.00"),
            "{name}: {halt}"
        );
        svc.wait_text(before, |t| t.starts_with("Vetoed: proposal"), "veto alert")
            .await;
        assert_eq!(
            proposal(&db.store, idb).await.status,
            ProposalStatus::Vetoed,
            "{name}"
        );
        assert!(db.store.orders_for_proposal(idb).await.unwrap().is_empty());
        assert!(db.store.system_state().await.unwrap().halted, "{name}");
        svc.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_flattens_and_halts_and_the_halt_survives_a_restart() {
    for db in test_stores().await {
        let name = db.name;
        let (fake, dir, s) = fixture(&db, &["NSE:INFY"]).await;
        let svc = Service::start(name, fake, s.clone()).await;
        let card = svc.scan(1).await.remove(0);
        let id = card_id(&card);
        let cb = svc.tap(OPERATOR, card.message_id, &format!("v1:a:{id}"));
        let outcome = svc.placed(&cb, card.message_id).await;
        assert!(outcome.starts_with("Executed"), "{name}: {outcome}");
        assert_eq!(db.store.open_positions().await.unwrap().len(), 1);

        let confirm = svc.say("/kill", |t| t.starts_with("Kill:")).await;
        assert!(confirm.contains("Confirm kill"), "{name}: {confirm}");
        let prompt = svc
            .fake
            .messages()
            .into_iter()
            .rev()
            .find(|m| m.body().starts_with("Kill:"))
            .expect("kill prompt");
        let buttons = prompt.buttons();
        assert_eq!(buttons.len(), 2, "{name}: {buttons:?}");
        assert_eq!(buttons[0].0, "Confirm kill", "{name}");
        // Nothing happens before the confirmation.
        assert!(!db.store.system_state().await.unwrap().halted, "{name}");
        let before = svc.sent_count();
        let cb = svc.tap(OPERATOR, prompt.message_id, &buttons[0].1);
        let _ = svc.answer(&cb).await;
        let report = svc
            .wait_text(before, |t| t.starts_with("Kill done"), "kill report")
            .await;
        // Sold at 93.50 less 5 bps = 93.45 after buying at 93.55: 250 x -0.10.
        assert!(
            report.contains("Closed positions: 1")
                && report.contains("NSE:INFY 250 @ ₹93.45, P&amp;L -₹25.00")
                && report.contains("Today's realized P&amp;L: -₹25.00"),
            "{name}: {report}"
        );
        assert!(
            db.store.open_positions().await.unwrap().is_empty(),
            "{name}"
        );
        assert!(db.store.system_state().await.unwrap().halted, "{name}");
        let fake = svc.stop().await;

        // Restart on the same database.
        let mut s2 = s.clone();
        s2.status.addr = free_addr();
        let svc = Service::start(name, fake, s2).await;
        let started = sends(&svc.fake.all_calls())
            .into_iter()
            .filter_map(|c| c.str("text"))
            .rfind(|t| t.contains("MFT-1 started"))
            .unwrap_or_default()
            .to_string();
        assert!(started.contains("HALTED"), "{name}: {started}");
        let status = svc.say("/status", |t| t.contains("MFT-1 status")).await;
        assert!(status.contains("HALTED"), "{name}: {status}");
        let scan = svc.say("/scan", |t| t.starts_with("Failed: /scan")).await;
        assert!(scan.contains("HALTED"), "{name}: {scan}");
        let prompt = svc.say("/resume", |t| t.starts_with("Resume:")).await;
        assert!(prompt.contains("Confirm resume"), "{name}");
        assert!(db.store.system_state().await.unwrap().halted, "{name}");
        let msg = svc
            .fake
            .messages()
            .into_iter()
            .rev()
            .find(|m| m.body().starts_with("Resume:"))
            .expect("resume prompt");
        let before = svc.sent_count();
        let cb = svc.tap(OPERATOR, msg.message_id, &msg.buttons()[0].1);
        let _ = svc.answer(&cb).await;
        let resumed = svc
            .wait_text(before, |t| t.starts_with("Resumed"), "resume reply")
            .await;
        assert!(resumed.contains("halt is lifted"), "{name}: {resumed}");
        assert!(!db.store.system_state().await.unwrap().halted, "{name}");
        let status = svc.say("/status", |t| t.contains("MFT-1 status")).await;
        assert!(!status.contains("HALTED"), "{name}: {status}");
        svc.stop().await;
        drop(dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn status_help_unknown_start_and_stop() {
    for db in test_stores().await {
        let name = db.name;
        let (fake, _dir, mut s) = fixture(&db, &["NSE:INFY", "NSE:TCS"]).await;
        // Scheduled but never reached by the ManualClock: /status shows the next one.
        s.schedules.scan = "0 0 9 * * Mon-Fri".into();
        let svc = Service::start(name, fake, s).await;
        assert!(
            svc.fake
                .wait_for(|c| c.iter().any(|c| c.method == "setMyCommands"), WAIT)
                .await,
            "{name}: commands registered"
        );
        let commands = svc.fake.calls("setMyCommands").remove(0).params;
        let names: Vec<&str> = commands["commands"]
            .as_array()
            // The Bot API's form: names without the leading "/".
            .map(|a| a.iter().filter_map(|c| c["command"].as_str()).collect())
            .unwrap_or_default();
        for c in ["status", "scan", "kill", "resume", "help"] {
            assert!(names.contains(&c), "{name}: {c} not registered: {names:?}");
        }
        let started = sends(&svc.fake.all_calls())
            .into_iter()
            .filter_map(|c| c.str("text"))
            .find(|t| t.contains("MFT-1 started"))
            .unwrap_or_default()
            .to_string();
        assert!(
            started.contains("paper") && started.contains("watching 2 instruments"),
            "{name}: {started}"
        );

        let help = svc.say("/help", |t| t.contains("/status")).await;
        for c in [
            "/start",
            "/help",
            "/status",
            "/positions",
            "/proposals",
            "/scan",
            "/pause",
            "/resume",
            "/risk",
            "/kill",
        ] {
            assert!(help.contains(c), "{name}: {c} missing from {help}");
        }
        let unknown = svc
            .say("/frobnicate", |t| t.contains("Unknown command"))
            .await;
        assert!(unknown.contains("/help"), "{name}: {unknown}");

        let cards = svc.scan(2).await;
        let ida = card_id(&cards[0]);
        let cb = svc.tap(OPERATOR, cards[0].message_id, &format!("v1:a:{ida}"));
        let outcome = svc.placed(&cb, cards[0].message_id).await;
        assert!(outcome.starts_with("Executed"), "{name}: {outcome}");

        let status = svc.say("/status", |t| t.contains("MFT-1 status")).await;
        for want in [
            "Mode: paper",
            "Trading: active",
            "Last scan: 25 Nov 13:01 IST: 2 instruments, 2 proposals, 0 errors",
            "Next scan: 26 Nov 09:00 IST",
            "Today's P&amp;L: -₹12.50 (realized ₹0.00, open positions since yesterday's close -₹12.50)",
            "Daily loss used: ₹12.50 of ₹2,000.00",
            "Orders today: 1 of 20",
            "Open positions: 1",
            "NSE:INFY long 250 (MIS) @ ₹93.55, last ₹93.50 (1m old), unrealized -₹12.50",
            "Pending proposals: 1",
            "BUY 250 NSE:TCS @ ₹93.50",
        ] {
            assert!(status.contains(want), "{name}: {want:?} not in {status}");
        }
        assert!(!status.contains("HALTED"), "{name}");
        let risk = svc.say("/risk", |t| t.contains("Risk limits")).await;
        assert!(risk.contains("Max daily loss: ₹2,000.00"), "{name}: {risk}");
        let proposals = svc.say("/proposals", |t| t.contains("Proposals")).await;
        assert!(
            proposals.contains(&format!("#{ida}")),
            "{name}: {proposals}"
        );
        svc.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn status_page_needs_its_token_and_healthz_is_open() {
    for db in test_stores().await {
        let name = db.name;
        let (fake, _dir, mut s) = fixture(&db, &["NSE:INFY"]).await;
        s.status.token = Some(Secret::new("page-s3cret"));
        let addr = s.status.addr.clone();
        let svc = Service::start(name, fake, s).await;
        let card = svc.scan(1).await.remove(0);
        let id = card_id(&card);
        let cb = svc.tap(OPERATOR, card.message_id, &format!("v1:a:{id}"));
        let outcome = svc.placed(&cb, card.message_id).await;
        assert!(outcome.starts_with("Executed"), "{name}: {outcome}");

        let http = reqwest::Client::new();
        let base = format!("http://{addr}");
        let r = http.get(format!("{base}/")).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 401, "{name}");
        let body = r.text().await.unwrap();
        assert!(!body.contains("page-s3cret"), "{name}");
        let r = http
            .get(format!("{base}/?token=wrong"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 401, "{name}");
        // The login URL sets the session cookie and drops the token from the address.
        let no_redirect = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let r = no_redirect
            .get(format!("{base}/?token=page-s3cret"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 303, "{name}");
        let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
        assert!(
            cookie.contains("HttpOnly") && !cookie.contains("page-s3cret"),
            "{name}"
        );
        let r = http
            .get(format!("{base}/"))
            .header("cookie", cookie.split(';').next().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{name}");
        let page = r.text().await.unwrap();
        for want in [
            "<dd id=\"mode\">paper</dd>",
            "<strong class=\"pos\">Active</strong>",
            "Open positions (1)",
            "NSE:INFY",
            "₹93.55",
        ] {
            assert!(page.contains(want), "{name}: {want:?} not in {page}");
        }
        for secret in ["page-s3cret", TOKEN] {
            assert!(!page.contains(secret), "{name}: a secret on the page");
        }
        let r = http
            .get(format!("{base}/"))
            .bearer_auth("page-s3cret")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{name}");
        let r = http.get(format!("{base}/healthz")).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "{name}");
        let j: serde_json::Value = r.json().await.expect("healthz is JSON");
        assert_eq!(j["status"], "ok", "{name}");
        svc.stop().await;
    }
}

#[tokio::test]
async fn missing_telegram_settings_are_named() {
    let fake = TelegramFake::start(TOKEN).await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("mft.db").display());
    let base = settings(&fake, &url, dir.path(), &["NSE:INFY"]);
    let clock = Arc::new(ManualClock::new(start_time()));

    // Without TELEGRAM_BOT_TOKEN the service runs with the dashboard (tests/dashboard.rs); a
    // token without its chat id is still refused.
    let mut s = base.clone();
    s.telegram.chat_id = None;
    let e = run_with(Arc::new(s), clock.clone(), CancellationToken::new())
        .await
        .expect_err("no chat id");
    assert!(e.to_string().contains("TELEGRAM_CHAT_ID"), "{e}");
    // Nothing reached Telegram and no database was created.
    assert!(fake.all_calls().is_empty());
    assert!(!dir.path().join("mft.db").exists());
}

/// `/backtest NSE:INFY 1y` from the chat: started in the background, then the equity chart
/// (sendPhoto) and the summary arrive; a stranger's /backtest changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backtest_from_the_chat_sends_the_chart_and_summary() {
    let db = support::db::sqlite_store().await;
    let name = db.name;
    let (fake, _dir, s) = fixture(&db, &["NSE:INFY"]).await;
    let svc = Service::start(name, fake, s).await;
    let bad = svc
        .say("/backtest NSE:INFY", |t| t.contains("Bad argument"))
        .await;
    assert!(bad.contains("/backtest NSE:INFY 1y"), "{bad}");
    let started = svc
        .say("/backtest NSE:INFY 1y", |t| t.contains("Backtest of"))
        .await;
    assert!(started.contains("started in the background"), "{started}");
    assert!(
        svc.fake
            .wait_for(
                |c| c.iter().any(|c| c.method == "sendMessage"
                    && c.str("text")
                        .is_some_and(|t| t.contains("Backtest of NSE:INFY done"))),
                WAIT
            )
            .await,
        "{name}: summary sent"
    );
    let photos = svc.fake.calls("sendPhoto");
    assert_eq!(photos.len(), 1, "{name}: the equity chart");
    let summary = sends(&svc.fake.all_calls())
        .into_iter()
        .filter_map(|c| c.str("text"))
        .find(|t| t.contains("Backtest of NSE:INFY done"))
        .unwrap_or_default()
        .to_string();
    assert!(summary.contains("Sharpe (daily, √252, rf 0)"), "{summary}");
    svc.stop().await;
}
