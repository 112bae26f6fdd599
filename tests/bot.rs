//! The real teloxide dispatcher and the TelegramNotifier against the local Telegram fake, with a
//! recording fake command handler: commands, help, authorization, buttons, confirmations, cards;
//! and with the real handler and a slow broker: an approve tap is answered before the order.

mod support;

use chrono::{TimeZone, Utc};
use mft::app::handler::{Handler, NoScanner};
use mft::bot::{BotConfig, TelegramNotifier, run_bot};
use mft::clock::{Clock, ManualClock};
use mft::config::Mode;
use mft::config::Secret;
use mft::domain::{
    Actor, Candle, Command, DenyReason, InstrumentKey, Interval, NewProposal, OrderRequest, Paise,
    Product, Proposal, ProposalStatus, Request, Side,
};
use mft::oms::{Broker, BrokerAck, BrokerError};
use mft::ports::{
    Alert, ClosedPosition, Decision, KillReport, Notifier, Outcome, ProposalCard, Reply,
    ScanSummary, StatusReport,
};
use mft::ports::{Claimed, CommandError, CommandHandler};
use mft::risk::RiskApproved;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::telegram_fake::{Call, TelegramFake};
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "123456:TEST-token";
const OPERATOR: i64 = 4242;
const STRANGER: i64 = 666;
const WAIT: Duration = Duration::from_secs(15);

/// An Approve of this proposal wins it, then fails (as a broken database after the claim would).
const FAILS_AFTER_CLAIM: i64 = 99;

/// Records every request; Approve is decided once per proposal (like the store's CAS) and
/// signals the claim when it wins, as the real handler does.
#[derive(Default)]
struct FakeHandler {
    requests: Mutex<Vec<Request>>,
    decided: Mutex<HashSet<i64>>,
}

impl FakeHandler {
    fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
    fn commands(&self) -> Vec<Command> {
        self.requests().into_iter().map(|r| r.command).collect()
    }
}

fn status_report() -> StatusReport {
    StatusReport {
        mode: "paper".into(),
        halted: false,
        paused: false,
        last_scan: Some(ScanSummary {
            id: 3,
            started_at: Utc.with_ymd_and_hms(2026, 11, 25, 8, 45, 0).unwrap(),
            finished_at: Some(Utc.with_ymd_and_hms(2026, 11, 25, 8, 45, 5).unwrap()),
            instruments: 2,
            proposals: 1,
            errors: 0,
            stale: Vec::new(),
        }),
        next_scan: Some(Utc.with_ymd_and_hms(2026, 11, 25, 9, 0, 0).unwrap()),
        realized_today: Paise(12_345),
        unrealized: Paise(-500),
        day_pnl: Paise(11_845),
        positions: vec![],
        pending: vec![proposal(7)],
        loss_used: Paise(0),
        loss_limit: Paise::from_rupees(2_000),
        orders_today: 1,
        orders_limit: 20,
        kite: None,
        backtest: None,
    }
}

#[async_trait::async_trait]
impl CommandHandler for FakeHandler {
    async fn handle(&self, req: Request) -> Result<Reply, CommandError> {
        self.requests.lock().unwrap().push(req.clone());
        Ok(match req.command {
            Command::Status => Reply::Status(status_report()),
            Command::Approve { proposal_id } | Command::Reject { proposal_id } => {
                let first = self.decided.lock().unwrap().insert(proposal_id);
                let outcome = if matches!(req.command, Command::Approve { .. }) {
                    Outcome::Executed {
                        side: Side::Buy,
                        quantity: 10,
                        fill_price: Paise(150_075),
                        mode: "paper".into(),
                        order_id: "PAPER-1".into(),
                    }
                } else {
                    Outcome::Rejected
                };
                Reply::Decision(if first {
                    Decision::Decided {
                        proposal_id,
                        outcome,
                    }
                } else {
                    Decision::AlreadyDecided {
                        proposal_id,
                        status: ProposalStatus::Executed,
                    }
                })
            }
            Command::Kill => Reply::Killed(KillReport {
                cancelled_orders: 1,
                closed: vec![ClosedPosition {
                    key: InstrumentKey::new("NSE", "INFY"),
                    quantity: 10,
                    price: Paise(151_000),
                    pnl: Paise(10_000),
                }],
                realized_today: Paise(22_345),
                errors: vec![],
            }),
            Command::Resume => Reply::Resumed { was_halted: true },
            Command::Scan { .. } => Reply::Scan(ScanSummary {
                id: 4,
                started_at: Utc::now(),
                finished_at: Some(Utc::now()),
                instruments: 1,
                proposals: 0,
                errors: 0,
                stale: Vec::new(),
            }),
            _ => Reply::Done { changed: 0 },
        })
    }

    async fn handle_claimed(&self, req: Request, claimed: Claimed) -> Result<Reply, CommandError> {
        if let Command::Approve { proposal_id } = req.command {
            if proposal_id == FAILS_AFTER_CLAIM {
                self.requests.lock().unwrap().push(req.clone());
                let _ = claimed.send(());
                return Err(CommandError::Unavailable(
                    "could not record the outcome: database is locked; check the card".into(),
                ));
            }
            if !self.decided.lock().unwrap().contains(&proposal_id) {
                let _ = claimed.send(());
            }
        }
        self.handle(req).await
    }
}

fn proposal(id: i64) -> Proposal {
    Proposal {
        id,
        key: InstrumentKey::new("NSE", "M&M"),
        side: Side::Buy,
        quantity: 10,
        entry: Paise(150_000),
        stop: Paise(148_000),
        target: Paise(154_000),
        product: Product::Mis,
        confidence: 0.7,
        rationale: "EMA20 crossed above EMA50 & RSI 61 <in range>".into(),
        status: ProposalStatus::Pending,
        created_at: Utc.with_ymd_and_hms(2026, 11, 25, 8, 45, 0).unwrap(),
        expires_at: Utc.with_ymd_and_hms(2026, 11, 25, 8, 55, 0).unwrap(),
        chart_path: None,
        message_id: None,
        decided_at: None,
        decided_by: None,
        outcome: None,
    }
}

struct Harness {
    fake: TelegramFake,
    handler: Arc<FakeHandler>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), mft::bot::BotError>>,
    config: BotConfig,
}

impl Harness {
    async fn start() -> Harness {
        let fake = TelegramFake::start(TOKEN).await;
        let handler = Arc::new(FakeHandler::default());
        let config = BotConfig {
            token: Secret::new(TOKEN),
            api_url: fake.url(),
            chat_id: OPERATOR,
            allowed_users: vec![OPERATOR],
        };
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run_bot(config.clone(), handler.clone(), shutdown.clone()));
        assert!(
            fake.wait_for(|c| c.iter().any(|c| c.method == "getUpdates"), WAIT)
                .await,
            "the bot never polled"
        );
        Harness {
            fake,
            handler,
            shutdown,
            task,
            config,
        }
    }

    /// Sends `text` as the operator and returns the bot's next new message text.
    async fn say(&self, text: &str) -> String {
        let before = self.fake.calls("sendMessage").len();
        self.fake.inject_message(OPERATOR, OPERATOR, text);
        assert!(
            self.fake.wait_for(|c| sends(c) > before, WAIT).await,
            "no reply to {text}"
        );
        self.fake.calls("sendMessage")[before]
            .str("text")
            .unwrap_or("")
            .to_string()
    }

    async fn stop(self) {
        self.shutdown.cancel();
        let r = tokio::time::timeout(WAIT, self.task)
            .await
            .expect("the bot did not stop on shutdown")
            .expect("bot task panicked");
        assert!(r.is_ok(), "{r:?}");
    }
}

fn sends(calls: &[Call]) -> usize {
    calls.iter().filter(|c| c.method == "sendMessage").count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_lists_every_command_and_commands_are_registered() {
    let h = Harness::start().await;
    let reg = h.fake.calls("setMyCommands");
    assert_eq!(reg.len(), 1);
    let names: Vec<String> = reg[0].params["commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["command"].as_str().unwrap().to_string())
        .collect();
    // Every command the enum declares is registered, in the Bot API's form (no slash), and the
    // operator's core commands are among them.
    let declared: Vec<String> = {
        use teloxide::utils::command::BotCommands;
        mft::bot::BotCommand::bot_commands()
            .into_iter()
            .map(|c| c.command.trim_start_matches('/').to_string())
            .collect()
    };
    assert_eq!(names, declared);
    for core in [
        "start",
        "help",
        "status",
        "positions",
        "proposals",
        "scan",
        "pause",
        "resume",
        "risk",
        "kill",
    ] {
        assert!(names.iter().any(|n| n == core), "/{core} not registered");
    }
    let all = names.clone();

    let help = h.say("/help").await;
    for c in &all {
        assert!(help.contains(&format!("/{c}")), "/{c} missing from {help}");
    }
    assert!(help.contains("EXCHANGE:SYMBOL"));
    let sent = &h.fake.calls("sendMessage")[0];
    assert_eq!(sent.i64("chat_id"), Some(OPERATOR));
    assert_eq!(sent.str("parse_mode"), Some("HTML"));
    assert!(h.handler.requests().is_empty(), "/help needs no handler");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_renders_the_report() {
    let h = Harness::start().await;
    let text = h.say("/status").await;
    assert_eq!(
        h.handler.requests(),
        vec![Request {
            command: Command::Status,
            actor: Actor::Telegram { user_id: OPERATOR }
        }]
    );
    for want in [
        "Mode: paper",
        "Trading: active",
        "Last scan: 25 Nov 14:15 IST",
        "Next scan: 25 Nov 14:30 IST",
        "Today's P&amp;L: +₹118.45 (realized +₹123.45, open positions since yesterday's close -₹5.00)",
        "Daily loss used: ₹0.00 of ₹2,000.00",
        "Orders today: 1 of 20",
        "Pending proposals: 1",
        "#7 BUY 10 NSE:M&amp;M",
    ] {
        assert!(text.contains(want), "{want:?} missing from {text}");
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_change_nothing_and_their_taps_are_answered() {
    let h = Harness::start().await;
    let notifier = TelegramNotifier::new(h.config.bot().unwrap(), OPERATOR, Paise(10_000_000));
    let card = notifier
        .post_proposal(&ProposalCard {
            proposal: proposal(7),
            chart_png: None,
            capital: Paise(10_000_000),
        })
        .await
        .unwrap();

    // A stranger in the operator chat, the operator in another chat, a stranger's tap, and the
    // operator's tap relayed from another chat.
    h.fake.inject_message(STRANGER, OPERATOR, "/kill");
    h.fake.inject_message(OPERATOR, -100777, "/status");
    let cb = h.fake.inject_callback(STRANGER, OPERATOR, card, "v1:a:7");
    let cb2 = h.fake.inject_callback(OPERATOR, -100777, card, "v1:a:7");
    let a = h
        .fake
        .wait_answered(&cb, WAIT)
        .await
        .expect("stranger's tap not answered");
    assert_eq!(a.text.as_deref(), Some("Not authorized."));
    let a2 = h
        .fake
        .wait_answered(&cb2, WAIT)
        .await
        .expect("other chat's tap not answered");
    assert_eq!(a2.text.as_deref(), Some("Not authorized."));

    // Flush: the operator's own /help is answered after the strangers' updates.
    h.say("/help").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        h.handler.requests().is_empty(),
        "{:?}",
        h.handler.requests()
    );
    assert_eq!(
        h.fake.calls("sendMessage").len(),
        2,
        "card + the /help reply only"
    );
    let m = h.fake.message(card).unwrap();
    assert_eq!(m.buttons().len(), 2, "the card is untouched");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approve_tap_sends_one_approve_and_a_redelivery_is_already_decided() {
    let h = Harness::start().await;
    let notifier = TelegramNotifier::new(h.config.bot().unwrap(), OPERATOR, Paise(10_000_000));
    let card = notifier
        .post_proposal(&ProposalCard {
            proposal: proposal(7),
            chart_png: None,
            capital: Paise(10_000_000),
        })
        .await
        .unwrap();
    let (update, cb) = h
        .fake
        .inject_callback_update(OPERATOR, OPERATOR, card, "v1:a:7");
    let a = h
        .fake
        .wait_answered(&cb, WAIT)
        .await
        .expect("tap not answered");
    // Answered as soon as the handler claimed the proposal; the outcome is the card's.
    assert_eq!(a.text.as_deref(), Some("Placing…"));
    assert_eq!(
        h.handler.commands(),
        vec![Command::Approve { proposal_id: 7 }]
    );
    assert_eq!(
        h.handler.requests()[0].actor,
        Actor::Telegram { user_id: OPERATOR }
    );

    // The same update delivered again: the handler decides it is already decided.
    assert!(h.fake.redeliver(update));
    assert!(
        h.fake
            .wait_for(
                |c| c
                    .iter()
                    .filter(|c| c.method == "answerCallbackQuery")
                    .count()
                    == 2,
                WAIT
            )
            .await
    );
    assert_eq!(
        h.fake.answered(&cb).unwrap().text.as_deref(),
        Some("Already decided (executed)")
    );

    // Reject of another card.
    let cb = h.fake.inject_callback(OPERATOR, OPERATOR, card, "v1:r:8");
    let a = h.fake.wait_answered(&cb, WAIT).await.unwrap();
    assert_eq!(a.text.as_deref(), Some("Rejected"));
    assert_eq!(
        h.handler.commands().last(),
        Some(&Command::Reject { proposal_id: 8 })
    );

    // Garbage and other-version data: answered, nothing sent to the handler.
    let n = h.handler.commands().len();
    for data in ["v2:a:7", "hello"] {
        let cb = h.fake.inject_callback(OPERATOR, OPERATOR, card, data);
        let a = h.fake.wait_answered(&cb, WAIT).await.unwrap();
        assert!(a.text.is_some());
    }
    assert_eq!(h.handler.commands().len(), n);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_asks_to_confirm_and_runs_once() {
    let h = Harness::start().await;
    let ask = h.say("/kill").await;
    assert!(ask.contains("square off"), "{ask}");
    assert!(
        h.handler.requests().is_empty(),
        "nothing before the confirmation"
    );
    let confirm_msg = h.fake.messages().last().unwrap().clone();
    let buttons = confirm_msg.buttons();
    assert_eq!(buttons.len(), 2);
    assert_eq!(buttons[0].0, "Confirm kill");
    assert!(buttons[0].1.starts_with("v1:k:"));
    assert!(buttons[1].1.starts_with("v1:x:"));

    let before = h.fake.calls("sendMessage").len();
    let cb = h
        .fake
        .inject_callback(OPERATOR, OPERATOR, confirm_msg.message_id, &buttons[0].1);
    assert!(h.fake.wait_answered(&cb, WAIT).await.is_some());
    assert!(h.fake.wait_for(|c| sends(c) > before, WAIT).await);
    assert_eq!(h.handler.commands(), vec![Command::Kill]);
    let report = h.fake.calls("sendMessage")[before]
        .str("text")
        .unwrap()
        .to_string();
    assert!(report.starts_with("Kill done"), "{report}");
    assert!(report.contains("NSE:INFY 10 @ ₹1,510.00"));
    assert!(report.contains("Today's realized P&amp;L: +₹223.45"));
    // The confirmation lost its buttons.
    assert!(
        h.fake
            .message(confirm_msg.message_id)
            .unwrap()
            .buttons()
            .is_empty()
    );

    // A second tap of the same confirmation does nothing.
    let cb = h
        .fake
        .inject_callback(OPERATOR, OPERATOR, confirm_msg.message_id, &buttons[0].1);
    let a = h.fake.wait_answered(&cb, WAIT).await.unwrap();
    assert!(a.text.unwrap().contains("expired or was already used"));
    assert_eq!(h.handler.commands(), vec![Command::Kill]);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_asks_to_confirm_and_cancel_changes_nothing() {
    let h = Harness::start().await;
    let ask = h.say("/resume").await;
    assert!(ask.starts_with("Resume"), "{ask}");
    let msg = h.fake.messages().last().unwrap().clone();
    let buttons = msg.buttons();
    assert_eq!(buttons[0].0, "Confirm resume");
    assert!(buttons[0].1.starts_with("v1:u:"));

    let cb = h
        .fake
        .inject_callback(OPERATOR, OPERATOR, msg.message_id, &buttons[1].1);
    let a = h.fake.wait_answered(&cb, WAIT).await.unwrap();
    assert!(a.text.unwrap().starts_with("Cancelled"));
    let mid = msg.message_id;
    assert!(
        h.fake
            .wait_for(
                |c| c
                    .iter()
                    .any(|c| c.method == "editMessageText" && c.i64("message_id") == Some(mid)),
                WAIT
            )
            .await
    );
    assert!(h.fake.message(mid).unwrap().buttons().is_empty());
    // The cancelled confirmation can no longer be used.
    let cb = h
        .fake
        .inject_callback(OPERATOR, OPERATOR, msg.message_id, &buttons[0].1);
    h.fake.wait_answered(&cb, WAIT).await.unwrap();
    assert!(h.handler.requests().is_empty());

    // A fresh /resume confirmed goes through.
    h.say("/resume").await;
    let msg = h.fake.messages().last().unwrap().clone();
    let before = h.fake.calls("sendMessage").len();
    let cb = h
        .fake
        .inject_callback(OPERATOR, OPERATOR, msg.message_id, &msg.buttons()[0].1);
    h.fake.wait_answered(&cb, WAIT).await.unwrap();
    assert!(h.fake.wait_for(|c| sends(c) > before, WAIT).await);
    assert_eq!(h.handler.commands(), vec![Command::Resume]);
    let text = h.fake.calls("sendMessage")[before]
        .str("text")
        .unwrap()
        .to_string();
    assert!(text.contains("halt is lifted"), "{text}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_commands_and_bad_arguments_get_a_hint() {
    let h = Harness::start().await;
    let t = h.say("/frobnicate now").await;
    assert!(
        t.contains("Unknown command /frobnicate") && t.contains("/help"),
        "{t}"
    );
    let t = h.say("/scan INFY").await;
    assert!(t.contains("Bad argument for /scan"), "{t}");
    assert!(
        t.contains("EXCHANGE:TRADINGSYMBOL") && t.contains("/help"),
        "{t}"
    );
    let t = h.say("hello").await;
    assert!(t.contains("/help"), "{t}");
    assert!(h.handler.requests().is_empty());

    let t = h.say("/scan nse:infy").await;
    assert!(t.starts_with("Scan done"), "{t}");
    let t = h.say("/scan").await;
    assert!(t.starts_with("Scan done"), "{t}");
    assert_eq!(
        h.handler.commands(),
        vec![
            Command::Scan {
                only: Some(InstrumentKey::new("NSE", "INFY"))
            },
            Command::Scan { only: None }
        ]
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifier_posts_a_photo_card_and_edits_it_with_the_outcome() {
    let fake = TelegramFake::start(TOKEN).await;
    let config = BotConfig {
        token: Secret::new(TOKEN),
        api_url: fake.url(),
        chat_id: OPERATOR,
        allowed_users: vec![OPERATOR],
    };
    let notifier = TelegramNotifier::new(config.bot().unwrap(), OPERATOR, Paise(10_000_000));
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("chart.png");
    image::RgbImage::from_pixel(4, 3, image::Rgb([10, 200, 30]))
        .save(&png)
        .unwrap();
    let bytes = std::fs::read(&png).unwrap();

    let mut p = proposal(7);
    p.chart_path = Some(png.display().to_string());
    let id = notifier
        .post_proposal(&ProposalCard {
            proposal: p.clone(),
            chart_png: Some(png.clone()),
            capital: Paise(10_000_000),
        })
        .await
        .unwrap();
    let photo = &fake.calls("sendPhoto")[0];
    assert_eq!(photo.i64("chat_id"), Some(OPERATOR));
    assert_eq!(photo.str("parse_mode"), Some("HTML"));
    let m = fake.message(id).unwrap();
    assert_eq!(m.photo.as_deref(), Some(bytes.as_slice()));
    assert!(m.photo.as_ref().unwrap().starts_with(b"\x89PNG"));
    let caption = m.caption.clone().unwrap();
    let original = caption.clone();
    for want in [
        "BUY NSE:M&amp;M",
        "Quantity: 10",
        "Entry: ₹1,500.00",
        "Stop: ₹1,480.00",
        "Target: ₹1,540.00",
        "Risk: ₹200.00 (0.20% of capital",
        "Reward:risk 2.00",
        "&amp; RSI 61 &lt;in range&gt;",
        "expires 14:25 IST",
    ] {
        assert!(caption.contains(want), "{want:?} missing from {caption}");
    }
    assert_eq!(
        m.buttons(),
        vec![
            ("Approve".to_string(), "v1:a:7".to_string()),
            ("Reject".to_string(), "v1:r:7".to_string())
        ]
    );

    notifier
        .update_proposal(
            &p,
            id,
            &Outcome::Executed {
                side: Side::Buy,
                quantity: 10,
                fill_price: Paise(150_075),
                mode: "paper".into(),
                order_id: "PAPER-1".into(),
            },
        )
        .await
        .unwrap();
    let m = fake.message(id).unwrap();
    assert!(m.buttons().is_empty(), "buttons must be gone");
    let caption = m.caption.unwrap();
    assert!(
        caption.starts_with(&original),
        "the card keeps its caption: {caption}"
    );
    assert_eq!(
        caption.lines().last(),
        Some("Executed: BUY 10 @ ₹1,500.75 (paper, order PAPER-1)")
    );
    assert_eq!(fake.calls("editMessageCaption").len(), 1);

    // A text card (no chart) is edited with editMessageText; a veto shows its code.
    let id2 = notifier
        .post_proposal(&ProposalCard {
            proposal: proposal(8),
            chart_png: None,
            capital: Paise(10_000_000),
        })
        .await
        .unwrap();
    assert_eq!(fake.message(id2).unwrap().buttons().len(), 2);
    notifier
        .update_proposal(
            &proposal(8),
            id2,
            &Outcome::Vetoed(DenyReason::MaxDailyLoss {
                loss: Paise(250_000),
                max: Paise(200_000),
            }),
        )
        .await
        .unwrap();
    let m2 = fake.message(id2).unwrap();
    assert!(m2.buttons().is_empty());
    assert!(
        m2.text
            .unwrap()
            .lines()
            .last()
            .unwrap()
            .starts_with("Vetoed: MAX_DAILY_LOSS")
    );

    // A card posted before a restart (unknown kind, wrong guess) is still edited.
    let fresh = TelegramNotifier::new(config.bot().unwrap(), OPERATOR, Paise(10_000_000));
    let mut guess_wrong = proposal(8);
    guess_wrong.chart_path = Some("charts/gone.png".into());
    fresh
        .update_proposal(&guess_wrong, id2, &Outcome::Expired)
        .await
        .unwrap();
    assert!(
        fake.message(id2)
            .unwrap()
            .text
            .unwrap()
            .lines()
            .last()
            .unwrap()
            .starts_with("Expired")
    );

    notifier
        .alert(&Alert::DailyLossHalt {
            loss: Paise(250_000),
            limit: Paise(200_000),
        })
        .await
        .unwrap();
    let alert = fake.calls("sendMessage").last().unwrap().clone();
    assert!(alert.str("text").unwrap().starts_with("HALTED"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_fails_start_up_with_an_error_not_a_panic() {
    let fake = TelegramFake::start(TOKEN).await;
    let config = BotConfig {
        token: Secret::new("999:wrong"),
        api_url: fake.url(),
        chat_id: OPERATOR,
        allowed_users: vec![OPERATOR],
    };
    let r = tokio::time::timeout(
        WAIT,
        run_bot(
            config,
            Arc::new(FakeHandler::default()),
            CancellationToken::new(),
        ),
    )
    .await
    .expect("start-up did not give up");
    let e = r.unwrap_err().to_string();
    assert!(e.contains("TELEGRAM_BOT_TOKEN"), "{e}");
    assert!(
        !e.contains("999:wrong"),
        "the token must not be in the error: {e}"
    );
}

/// Prints the bot's own share of the approve latency (tap injected -> callback answered, fake
/// handler, debug build). Ignored by default: a figure, not an assertion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn tap_to_answer_latency_figures() {
    let h = Harness::start().await;
    let mut lat = Vec::new();
    for i in 0..300 {
        let t0 = std::time::Instant::now();
        let cb = h
            .fake
            .inject_callback(OPERATOR, OPERATOR, 1, &format!("v1:a:{}", 1000 + i));
        h.fake.wait_answered(&cb, WAIT).await.expect("answered");
        let at = h
            .fake
            .calls("answerCallbackQuery")
            .into_iter()
            .find(|c| c.str("callback_query_id") == Some(cb.as_str()))
            .unwrap()
            .at;
        lat.push(at - t0);
    }
    lat.sort();
    println!(
        "tap -> answer over {} taps: p50 {:?}, p99 {:?}, max {:?}",
        lat.len(),
        lat[lat.len() / 2],
        lat[lat.len() * 99 / 100],
        lat[lat.len() - 1]
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_failing_after_its_claim_is_reported_in_the_chat() {
    let h = Harness::start().await;
    let before = h.fake.calls("sendMessage").len();
    let cb = h
        .fake
        .inject_callback(OPERATOR, OPERATOR, 1, &format!("v1:a:{FAILS_AFTER_CLAIM}"));
    let a = h.fake.wait_answered(&cb, WAIT).await.expect("answered");
    assert_eq!(a.text.as_deref(), Some("Placing…"));
    assert!(h.fake.wait_for(|c| sends(c) > before, WAIT).await);
    let text = h.fake.calls("sendMessage")[before]
        .str("text")
        .unwrap()
        .to_string();
    assert_eq!(
        text,
        "Failed: Approve #99 could not be done: could not record the outcome: database is locked; check the card"
    );
    // Answered once.
    assert_eq!(
        h.fake
            .calls("answerCallbackQuery")
            .iter()
            .filter(|c| c.str("callback_query_id") == Some(cb.as_str()))
            .count(),
        1
    );
    h.stop().await;
}

/// A broker slower than any tap: each placement waits until the test opens the gate, then
/// fills at ₹100 and notes when it finished. (A gate rather than a sleep: the test proves the
/// answer cannot depend on the placement, instead of hoping a delay is long enough.)
struct SlowBroker {
    gate: tokio::sync::Semaphore,
    placed: Mutex<Vec<(String, std::time::Instant)>>,
}

#[async_trait::async_trait]
impl Broker for SlowBroker {
    fn name(&self) -> &str {
        "slow"
    }

    fn mode(&self) -> Mode {
        Mode::Paper
    }

    async fn place(&self, order: RiskApproved<OrderRequest>) -> Result<BrokerAck, BrokerError> {
        self.gate.acquire().await.expect("gate open").forget();
        let req = order.into_inner();
        self.placed
            .lock()
            .unwrap()
            .push((req.tag.clone(), std::time::Instant::now()));
        Ok(BrokerAck::Filled {
            broker_order_id: format!("S-{}", req.tag),
            price: Paise::from_rupees(100),
            quantity: req.quantity,
            at: Utc::now(),
        })
    }

    async fn cancel(&self, _broker_order_id: &str) -> Result<(), BrokerError> {
        Ok(())
    }

    async fn find_by_tag(&self, _tag: &str) -> Result<Option<BrokerAck>, BrokerError> {
        Ok(None)
    }
}

/// The real handler behind the bot, with a broker that does not answer until the test lets it:
/// the tap is answered "Placing…" while the order is still being placed, a second tap meanwhile
/// is answered "Already decided" at once, then the card shows the outcome; one order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_broker_does_not_hold_the_tap_and_a_double_tap_places_one_order() {
    for db in support::db::test_stores().await {
        let name = db.name;
        let now = Utc.with_ymd_and_hms(2026, 11, 25, 5, 0, 0).unwrap();
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(now));
        let key = InstrumentKey::new("NSE", "INFY");
        db.store
            .upsert_candles(
                &key,
                Interval::Minute15,
                &[Candle {
                    ts: now - chrono::Duration::minutes(15),
                    open: 100.0,
                    high: 100.0,
                    low: 100.0,
                    close: 100.0,
                    volume: 1,
                    oi: None,
                }],
            )
            .await
            .expect("a price");
        let p = db
            .store
            .insert_proposal(&NewProposal {
                key: key.clone(),
                side: Side::Buy,
                quantity: 1,
                entry: Paise::from_rupees(100),
                stop: Paise::from_rupees(90),
                target: Paise::from_rupees(120),
                product: Product::Cnc,
                confidence: 0.5,
                rationale: "slow broker".into(),
                created_at: now,
                expires_at: now + chrono::Duration::minutes(10),
            })
            .await
            .expect("insert")
            .expect("no other pending proposal");
        let mut settings = mft::config::Settings::default();
        settings.risk.trading_window = "00:00-23:59".parse().expect("valid");
        settings.risk.trading_days = "Mon-Sun".parse().expect("valid");
        let settings = Arc::new(settings);

        let fake = TelegramFake::start(TOKEN).await;
        let config = BotConfig {
            token: Secret::new(TOKEN),
            api_url: fake.url(),
            chat_id: OPERATOR,
            allowed_users: vec![OPERATOR],
        };
        let notifier = Arc::new(TelegramNotifier::new(
            config.bot().unwrap(),
            OPERATOR,
            settings.trading.capital,
        ));
        let card = notifier
            .post_proposal(&ProposalCard {
                proposal: p.clone(),
                chart_png: None,
                capital: settings.trading.capital,
            })
            .await
            .expect("card posted");
        db.store
            .set_proposal_message(p.id, card)
            .await
            .expect("message id");
        let broker = Arc::new(SlowBroker {
            gate: tokio::sync::Semaphore::new(0),
            placed: Mutex::new(Vec::new()),
        });
        let handler = Arc::new(Handler::new(
            db.store.clone(),
            settings,
            clock,
            broker.clone(),
            notifier,
            Arc::new(NoScanner),
        ));
        let shutdown = CancellationToken::new();
        let bot = tokio::spawn(run_bot(config, handler, shutdown.clone()));

        let data = format!("v1:a:{}", p.id);
        let first = fake.inject_callback(OPERATOR, OPERATOR, card, &data);
        let a = fake.wait_answered(&first, WAIT).await.expect("first tap");
        assert_eq!(a.text.as_deref(), Some("Placing…"), "{name}");
        assert!(
            broker.placed.lock().unwrap().is_empty(),
            "{name}: answered while the broker still holds the order"
        );
        // The second tap is not queued behind the first one's placement.
        let second = fake.inject_callback(OPERATOR, OPERATOR, card, &data);
        let a = fake.wait_answered(&second, WAIT).await.expect("second tap");
        assert_eq!(
            a.text.as_deref(),
            Some("Already decided (approved)"),
            "{name}"
        );
        assert!(broker.placed.lock().unwrap().is_empty(), "{name}");

        broker.gate.add_permits(10);
        let deadline = tokio::time::Instant::now() + WAIT;
        while fake.message(card).is_none_or(|m| m.edits == 0) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name}: the card never showed the outcome"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let edited = fake.message(card).unwrap();
        let outcome = edited.body().lines().last().unwrap_or("");
        assert_eq!(
            outcome,
            format!(
                "Executed: BUY 1 @ ₹100.00 (paper, order S-{})",
                mft::oms::proposal_tag(p.id)
            ),
            "{name}"
        );
        assert!(edited.buttons().is_empty(), "{name}: buttons removed");

        // Ordering, not timing: the answer was recorded before the placement finished.
        let placed = broker.placed.lock().unwrap().clone();
        assert_eq!(placed.len(), 1, "{name}: one placement: {placed:?}");
        let answers = fake.calls("answerCallbackQuery");
        let placing = answers
            .iter()
            .find(|c| c.str("callback_query_id") == Some(first.as_str()))
            .unwrap();
        assert!(placing.at < placed[0].1, "{name}");
        let texts: Vec<&str> = answers.iter().filter_map(|c| c.str("text")).collect();
        assert_eq!(
            texts,
            vec!["Placing…", "Already decided (approved)"],
            "{name}"
        );
        let orders = db.store.orders_for_proposal(p.id).await.unwrap();
        assert_eq!(orders.len(), 1, "{name}: {orders:?}");
        assert_eq!(
            db.store.proposal(p.id).await.unwrap().unwrap().status,
            ProposalStatus::Executed,
            "{name}"
        );
        shutdown.cancel();
        let r = tokio::time::timeout(WAIT, bot)
            .await
            .expect("the bot stops")
            .expect("bot task");
        assert!(r.is_ok(), "{name}: {r:?}");
    }
}
