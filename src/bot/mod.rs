//! Telegram: the teloxide dispatcher (typed commands, button callbacks, authorization), the
//! message texts, and the notifier that posts proposal cards and alerts. It never touches tables
//! or the broker: every action is a `Request` handed to the one command handler.

pub mod callback;
pub mod commands;
pub mod notifier;

pub use callback::{CallbackData, CallbackError};
pub use commands::BotCommand;
pub use notifier::TelegramNotifier;

use crate::config::{Secret, TelegramSettings};
use crate::domain::{Actor, Command, InstrumentKey, Request};
use crate::ports::{CommandError, CommandHandler, Reply};
use crate::texts;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use teloxide::dispatching::UpdateHandler;
use teloxide::prelude::*;
use teloxide::types::{InlineKeyboardButton, InlineKeyboardMarkup, Me, MessageId, ParseMode};
use teloxide::update_listeners::{Polling, UpdateListener};
use teloxide::utils::command::{BotCommands, ParseError};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Debug, thiserror::Error)]
pub enum BotError {
    #[error("TELEGRAM_BOT_TOKEN is not set: set it to the token @BotFather gave you")]
    MissingToken,
    #[error("TELEGRAM_CHAT_ID is not set: set it to the id of the operator chat")]
    MissingChatId,
    #[error("TELEGRAM_API_URL {url:?} is not a valid URL: {error}")]
    BadApiUrl { url: String, error: String },
    #[error(
        "no Telegram user may act: set TELEGRAM_ALLOWED_USERS (comma-separated user ids) when TELEGRAM_CHAT_ID is a group"
    )]
    NoAllowedUsers,
    #[error(
        "Telegram API call failed at start-up (check TELEGRAM_BOT_TOKEN and TELEGRAM_API_URL): {0}"
    )]
    Telegram(String),
}

/// What the bot needs from the settings.
#[derive(Debug, Clone)]
pub struct BotConfig {
    pub token: Secret,
    pub api_url: String,
    /// The operator chat: the only chat where anyone may act, and where cards and alerts go.
    pub chat_id: i64,
    pub allowed_users: Vec<i64>,
}

impl BotConfig {
    pub fn from_settings(t: &TelegramSettings) -> Result<BotConfig, BotError> {
        let token = t
            .bot_token
            .clone()
            .filter(|s| !s.expose().is_empty())
            .ok_or(BotError::MissingToken)?;
        let chat_id = t.chat_id.ok_or(BotError::MissingChatId)?;
        let allowed_users = t.allowed_user_ids();
        if allowed_users.is_empty() {
            return Err(BotError::NoAllowedUsers);
        }
        Ok(BotConfig {
            token,
            api_url: t.api_url.clone(),
            chat_id,
            allowed_users,
        })
    }

    /// A teloxide bot pointed at `api_url` (the real API or a local fake).
    pub fn bot(&self) -> Result<Bot, BotError> {
        let url = url::Url::parse(&self.api_url).map_err(|e| BotError::BadApiUrl {
            url: self.api_url.clone(),
            error: e.to_string(),
        })?;
        Ok(Bot::new(self.token.expose()).set_api_url(url))
    }

    pub fn is_authorized(&self, user_id: i64, chat_id: i64) -> bool {
        chat_id == self.chat_id && self.allowed_users.contains(&user_id)
    }
}

/// How long a /kill or /resume confirmation button stays valid.
const CONFIRM_TTL: Duration = Duration::from_secs(120);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Confirm {
    Kill,
    Resume,
}

/// Shared by every update the dispatcher handles.
pub struct BotState {
    config: BotConfig,
    handler: Arc<dyn CommandHandler>,
    /// Outstanding confirmation nonces; each is used at most once.
    confirms: Mutex<HashMap<u64, (Confirm, Instant)>>,
    nonce_seed: std::collections::hash_map::RandomState,
    nonce_counter: std::sync::atomic::AtomicU64,
    /// Approvals still running after their tap was answered; shutdown waits for them.
    approvals: TaskTracker,
}

impl BotState {
    pub fn new(config: BotConfig, handler: Arc<dyn CommandHandler>) -> Self {
        Self {
            config,
            handler,
            confirms: Mutex::new(HashMap::new()),
            nonce_seed: std::collections::hash_map::RandomState::new(),
            nonce_counter: std::sync::atomic::AtomicU64::new(0),
            approvals: TaskTracker::new(),
        }
    }

    /// An unguessable-enough, never-repeating nonce: a per-process random key hashed with a counter.
    fn new_confirm(&self, kind: Confirm) -> u64 {
        let n = self
            .nonce_counter
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut h = self.nonce_seed.build_hasher();
        h.write_u64(n);
        let nonce = h.finish();
        let mut c = self.confirms.lock().unwrap_or_else(|e| e.into_inner());
        c.retain(|_, (_, at)| at.elapsed() < CONFIRM_TTL);
        c.insert(nonce, (kind, Instant::now()));
        nonce
    }

    /// Takes the nonce if it is outstanding, of `kind`, and fresh.
    fn take_confirm(&self, nonce: u64, kind: Confirm) -> bool {
        let mut c = self.confirms.lock().unwrap_or_else(|e| e.into_inner());
        match c.get(&nonce) {
            Some((k, at)) if *k == kind && at.elapsed() < CONFIRM_TTL => {
                c.remove(&nonce);
                true
            }
            _ => false,
        }
    }

    fn cancel_confirm(&self, nonce: u64) -> bool {
        self.confirms
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&nonce)
            .is_some()
    }

    async fn run(&self, user_id: i64, command: Command) -> Result<Reply, CommandError> {
        self.handler
            .handle(Request {
                command,
                actor: Actor::Telegram { user_id },
            })
            .await
    }
}

type HandlerResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// The one handler schema: a message branch and a callback-query branch.
pub fn schema() -> UpdateHandler<Box<dyn std::error::Error + Send + Sync + 'static>> {
    dptree::entry()
        .branch(Update::filter_message().endpoint(on_message))
        .branch(Update::filter_callback_query().endpoint(on_callback))
}

async fn send_html(bot: &Bot, chat: ChatId, text: String) -> HandlerResult {
    bot.send_message(chat, text)
        .parse_mode(ParseMode::Html)
        .await?;
    Ok(())
}

fn confirm_keyboard(confirm: CallbackData, label: &str, nonce: u64) -> InlineKeyboardMarkup {
    InlineKeyboardMarkup::new([[
        InlineKeyboardButton::callback(label, confirm.encode()),
        InlineKeyboardButton::callback(texts::CANCEL, CallbackData::Cancel(nonce).encode()),
    ]])
}

async fn on_message(bot: Bot, msg: Message, me: Me, state: Arc<BotState>) -> HandlerResult {
    let Some(text) = msg.text() else {
        return Ok(());
    };
    let chat_id = msg.chat.id.0;
    let Some(user_id) = msg.from.as_ref().map(|u| u.id.0 as i64) else {
        return Ok(());
    };
    if !state.config.is_authorized(user_id, chat_id) {
        tracing::warn!(
            user_id,
            chat_id,
            "ignored a message from an unauthorized user or chat"
        );
        return Ok(());
    }
    let chat = msg.chat.id;
    if !text.starts_with('/') {
        return send_html(&bot, chat, texts::not_a_command()).await;
    }
    let cmd = match BotCommand::parse(text, me.username()) {
        Ok(c) => c,
        // Addressed to another bot in a group: not ours to answer.
        Err(ParseError::WrongBotName(_)) => return Ok(()),
        Err(ParseError::UnknownCommand(_)) => {
            return send_html(&bot, chat, texts::unknown_command(text)).await;
        }
        Err(e) => {
            let name = text
                .trim_start_matches('/')
                .split(|c: char| c.is_whitespace() || c == '@')
                .next()
                .unwrap_or("");
            return send_html(&bot, chat, texts::bad_argument(name, &e.to_string())).await;
        }
    };
    let command = match cmd {
        BotCommand::Start => {
            return send_html(
                &bot,
                chat,
                texts::start(&BotCommand::descriptions().to_string()),
            )
            .await;
        }
        BotCommand::Help => {
            return send_html(
                &bot,
                chat,
                texts::help(&BotCommand::descriptions().to_string()),
            )
            .await;
        }
        BotCommand::Kill(arg) if arg.trim().eq_ignore_ascii_case("test") => Command::KillTest,
        BotCommand::Kill(arg) if !arg.trim().is_empty() => {
            return send_html(
                &bot,
                chat,
                texts::bad_argument("kill", "use /kill, or /kill test for a dry run"),
            )
            .await;
        }
        BotCommand::Login(arg) => Command::Login {
            input: Some(arg.trim().to_string()).filter(|a| !a.is_empty()),
        },
        BotCommand::Preflight => Command::Preflight,
        BotCommand::Kill(_) => {
            let nonce = state.new_confirm(Confirm::Kill);
            bot.send_message(chat, texts::kill_confirm())
                .parse_mode(ParseMode::Html)
                .reply_markup(confirm_keyboard(
                    CallbackData::ConfirmKill(nonce),
                    texts::CONFIRM_KILL,
                    nonce,
                ))
                .await?;
            return Ok(());
        }
        BotCommand::Resume => {
            let nonce = state.new_confirm(Confirm::Resume);
            bot.send_message(chat, texts::resume_confirm())
                .parse_mode(ParseMode::Html)
                .reply_markup(confirm_keyboard(
                    CallbackData::ConfirmResume(nonce),
                    texts::CONFIRM_RESUME,
                    nonce,
                ))
                .await?;
            return Ok(());
        }
        BotCommand::Status => Command::Status,
        BotCommand::Positions => Command::Positions,
        BotCommand::Proposals => Command::Proposals,
        BotCommand::Pause => Command::Pause,
        BotCommand::Risk => Command::Risk,
        BotCommand::Why(arg) => match arg.trim().trim_start_matches('#').parse::<i64>() {
            Ok(id) if id > 0 => Command::Why { proposal_id: id },
            _ => {
                return send_html(
                    &bot,
                    chat,
                    texts::bad_argument("why", "give a proposal number, e.g. /why 12"),
                )
                .await;
            }
        },
        BotCommand::Backtest(arg) => {
            let parts: Vec<&str> = arg.split_whitespace().collect();
            let usage =
                "give an instrument and a span, e.g. /backtest NSE:INFY 1y (span: 30d, 8w, 6m, 1y)";
            if parts.len() != 2 {
                return send_html(&bot, chat, texts::bad_argument("backtest", usage)).await;
            }
            match parts[0].parse::<InstrumentKey>() {
                Ok(key) => Command::Backtest {
                    key,
                    span: parts[1].to_string(),
                },
                Err(e) => {
                    return send_html(&bot, chat, texts::bad_argument("backtest", &e.0)).await;
                }
            }
        }
        BotCommand::Scan(arg) => {
            let arg = arg.trim();
            if arg.is_empty() {
                Command::Scan { only: None }
            } else if arg.split_whitespace().count() > 1 {
                return send_html(
                    &bot,
                    chat,
                    texts::bad_argument("scan", "give at most one instrument, e.g. NSE:INFY"),
                )
                .await;
            } else {
                match arg.parse::<InstrumentKey>() {
                    Ok(k) => Command::Scan { only: Some(k) },
                    Err(e) => {
                        return send_html(&bot, chat, texts::bad_argument("scan", &e.0)).await;
                    }
                }
            }
        }
    };
    let what = format!(
        "/{}",
        text.trim_start_matches('/')
            .split_whitespace()
            .next()
            .unwrap_or("")
    );
    let out = match state.run(user_id, command).await {
        Ok(Reply::LoginLink { url }) => {
            return send_login_button(&bot, chat, &url).await;
        }
        Ok(reply) => texts::reply(&reply),
        Err(e) => texts::command_failed(&what, &e.to_string()),
    };
    send_html(&bot, chat, out).await
}

/// The login message with its inline URL button "Log in to Kite".
async fn send_login_button(bot: &Bot, chat: ChatId, url: &str) -> HandlerResult {
    let markup = notifier::login_keyboard(url)?;
    bot.send_message(chat, texts::login_link())
        .parse_mode(ParseMode::Html)
        .reply_markup(markup)
        .await?;
    Ok(())
}

/// Replaces a confirmation message's text and removes its buttons. Best effort: the callback
/// answer and the command's reply matter more than this edit.
async fn close_confirmation(bot: &Bot, origin: Option<(ChatId, MessageId)>, text: String) {
    if let Some((chat, id)) = origin
        && let Err(e) = bot
            .edit_message_text(chat, id, text)
            .parse_mode(ParseMode::Html)
            .reply_markup(InlineKeyboardMarkup::new(
                Vec::<Vec<InlineKeyboardButton>>::new(),
            ))
            .await
    {
        tracing::warn!(error = %e, "could not close the confirmation message");
    }
}

async fn on_callback(bot: Bot, q: CallbackQuery, state: Arc<BotState>) -> HandlerResult {
    let user_id = q.from.id.0 as i64;
    let chat_id = q.message.as_ref().map(|m| m.chat().id.0);
    let authorized = chat_id.is_some_and(|c| state.config.is_authorized(user_id, c));
    if !authorized {
        tracing::warn!(user_id, chat_id, data = ?q.data, "refused a button tap from an unauthorized user or chat");
        bot.answer_callback_query(q.id.clone())
            .text(texts::not_authorized())
            .show_alert(true)
            .await?;
        return Ok(());
    }
    let answer = |text: String| bot.answer_callback_query(q.id.clone()).text(text);
    let data = match CallbackData::parse(q.data.as_deref().unwrap_or("")) {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(user_id, data = ?q.data, error = %e, "unreadable button data");
            answer(texts::truncate_chars(&e.to_string(), texts::ANSWER_LIMIT)).await?;
            return Ok(());
        }
    };
    // The confirmation message the button sits on (for removing its buttons).
    let origin = q.message.as_ref().map(|m| (m.chat().id, m.id()));
    let chat = ChatId(chat_id.unwrap_or(state.config.chat_id));
    match data {
        CallbackData::Approve(proposal_id) => {
            approve_tap(&bot, &q, &state, user_id, chat, proposal_id).await?;
        }
        CallbackData::Reject(proposal_id) => {
            let text = match state.run(user_id, Command::Reject { proposal_id }).await {
                Ok(reply) => texts::reply_answer(&reply),
                Err(e) => texts::truncate_chars(&format!("Failed: {e}"), texts::ANSWER_LIMIT),
            };
            answer(text).await?;
        }
        CallbackData::ConfirmKill(nonce) | CallbackData::ConfirmResume(nonce) => {
            let (kind, command, confirmed, what) = match data {
                CallbackData::ConfirmKill(_) => (
                    Confirm::Kill,
                    Command::Kill,
                    texts::kill_confirmed(),
                    "/kill",
                ),
                _ => (
                    Confirm::Resume,
                    Command::Resume,
                    texts::resume_confirmed(),
                    "/resume",
                ),
            };
            if !state.take_confirm(nonce, kind) {
                answer(texts::confirm_expired()).await?;
                close_confirmation(&bot, origin, texts::confirm_expired()).await;
                return Ok(());
            }
            // Answer first so the button stops spinning while positions are closed.
            answer(confirmed.clone()).await?;
            close_confirmation(&bot, origin, confirmed).await;
            let out = match state.run(user_id, command).await {
                Ok(reply) => texts::reply(&reply),
                Err(e) => texts::command_failed(what, &e.to_string()),
            };
            send_html(&bot, chat, out).await?;
        }
        CallbackData::Cancel(nonce) => {
            state.cancel_confirm(nonce);
            answer(texts::cancelled()).await?;
            close_confirmation(&bot, origin, texts::cancelled()).await;
        }
    }
    Ok(())
}

/// An Approve tap. The approval runs in its own task; the tap is answered as soon as the
/// handler has claimed the proposal ("Placing…"), before the risk check and the broker, and
/// the handler then edits the card with the outcome. A tap that does not win (already decided,
/// not found, an error before the claim) is answered with the final reply instead. Either way
/// the callback is answered exactly once. An error after the claim reaches the chat as a
/// message (the card edit is the handler's).
async fn approve_tap(
    bot: &Bot,
    q: &CallbackQuery,
    state: &Arc<BotState>,
    user_id: i64,
    chat: ChatId,
    proposal_id: i64,
) -> HandlerResult {
    let (claimed, won) = tokio::sync::oneshot::channel();
    let handler = state.handler.clone();
    let request = Request {
        command: Command::Approve { proposal_id },
        actor: Actor::Telegram { user_id },
    };
    let run = state
        .approvals
        .spawn(async move { handler.handle_claimed(request, claimed).await });
    if won.await.is_err() {
        // Ended without winning the proposal: the final reply is quick and is the answer.
        let text = match run.await {
            Ok(Ok(reply)) => texts::reply_answer(&reply),
            Ok(Err(e)) => texts::truncate_chars(&format!("Failed: {e}"), texts::ANSWER_LIMIT),
            Err(e) => {
                tracing::error!(proposal_id, error = %e, "the approval task failed");
                texts::approval_stopped(proposal_id)
            }
        };
        bot.answer_callback_query(q.id.clone()).text(text).await?;
        return Ok(());
    }
    // The rest (risk, broker, the card edit) may take a while: it must not hold this update,
    // nor the next taps in the chat, which the dispatcher handles in order.
    let bot_for_outcome = bot.clone();
    state.approvals.spawn(async move {
        let failed = match run.await {
            Ok(Ok(_)) => None,
            Ok(Err(e)) => Some(texts::command_failed(
                &texts::approve_what(proposal_id),
                &e.to_string(),
            )),
            Err(e) => {
                tracing::error!(proposal_id, error = %e, "the approval task failed");
                Some(texts::approval_stopped(proposal_id))
            }
        };
        if let Some(text) = failed
            && let Err(e) = send_html(&bot_for_outcome, chat, text).await
        {
            tracing::error!(proposal_id, error = %e, "could not report a failed approval");
        }
    });
    bot.answer_callback_query(q.id.clone())
        .text(texts::PLACING)
        .await?;
    Ok(())
}

/// Runs the bot until `shutdown` is cancelled: registers the commands, then long-polls
/// `config.api_url`. On shutdown, in-flight updates finish and polling stops.
pub async fn run_bot(
    config: BotConfig,
    handler: Arc<dyn CommandHandler>,
    shutdown: CancellationToken,
) -> Result<(), BotError> {
    let bot = config.bot()?;
    if shutdown.is_cancelled() {
        return Ok(());
    }
    // The Bot API specifies command names without the leading "/" (1-32 of a-z, 0-9, _);
    // teloxide's derive includes it, so strip it rather than rely on Telegram being lenient.
    let commands: Vec<teloxide::types::BotCommand> = BotCommand::bot_commands()
        .into_iter()
        .map(|c| teloxide::types::BotCommand::new(c.command.trim_start_matches('/'), c.description))
        .collect();
    if let Err(e) = bot.set_my_commands(commands).await {
        // Not fatal: commands still work, the client just does not suggest them.
        tracing::warn!(error = %e, "setMyCommands failed");
    }
    let state = Arc::new(BotState::new(config, handler));
    let mut dispatcher = Dispatcher::builder(bot.clone(), schema())
        .dependencies(dptree::deps![state.clone()])
        .default_handler(|_| async {})
        .error_handler(LoggingErrorHandler::with_custom_text(
            "handling a Telegram update failed",
        ))
        .build();
    let mut listener = Polling::builder(bot.clone())
        .timeout(Duration::from_secs(10))
        .delete_webhook()
        .await
        .build();
    // Stop the listener itself rather than through the dispatcher's ShutdownToken: teloxide
    // 0.17 loses that token's wake-up when it arrives while an update is being processed, and
    // shutdown then hangs. A stopped listener makes one last getUpdates to confirm what was
    // received, the dispatcher drains its in-flight updates and returns.
    let stop = listener.stop_token();
    let stopper = tokio::spawn(async move {
        shutdown.cancelled().await;
        stop.stop();
    });
    tracing::info!("Telegram bot polling");
    let result = dispatcher
        .try_dispatch_with_listener(
            listener,
            LoggingErrorHandler::with_custom_text("Telegram polling failed"),
        )
        .await;
    stopper.abort();
    // Approvals answered "Placing…" finish (their cards are edited) before the bot is gone.
    state.approvals.close();
    state.approvals.wait().await;
    tracing::info!("Telegram bot stopped");
    result.map_err(|e| BotError::Telegram(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(chat_id: Option<i64>, allowed: Vec<i64>) -> TelegramSettings {
        TelegramSettings {
            bot_token: Some(Secret::new("123:abc")),
            chat_id,
            allowed_users: allowed,
            api_url: "http://127.0.0.1:1/".into(),
        }
    }

    #[test]
    fn private_chat_defaults_to_its_own_user() {
        let c = BotConfig::from_settings(&settings(Some(42), vec![])).unwrap();
        assert_eq!(c.allowed_users, vec![42]);
        assert!(c.is_authorized(42, 42));
        assert!(!c.is_authorized(43, 42));
        assert!(!c.is_authorized(42, 7), "right user, wrong chat");
    }

    #[test]
    fn group_needs_explicit_users() {
        assert!(matches!(
            BotConfig::from_settings(&settings(Some(-100), vec![])),
            Err(BotError::NoAllowedUsers)
        ));
        let c = BotConfig::from_settings(&settings(Some(-100), vec![1, 2])).unwrap();
        assert!(c.is_authorized(2, -100));
        assert!(!c.is_authorized(3, -100));
    }

    #[test]
    fn missing_settings_are_named() {
        let mut s = settings(None, vec![]);
        let e = BotConfig::from_settings(&s).unwrap_err().to_string();
        assert!(e.contains("TELEGRAM_CHAT_ID"), "{e}");
        s.bot_token = None;
        let e = BotConfig::from_settings(&s).unwrap_err().to_string();
        assert!(e.contains("TELEGRAM_BOT_TOKEN"), "{e}");
        // The token never shows in Debug output.
        let c = BotConfig::from_settings(&settings(Some(1), vec![])).unwrap();
        assert!(!format!("{c:?}").contains("abc"));
    }

    #[test]
    fn confirmations_are_single_use_and_typed() {
        struct Nope;
        #[async_trait::async_trait]
        impl CommandHandler for Nope {
            async fn handle(&self, _: Request) -> Result<Reply, CommandError> {
                Err(CommandError::Failed("unused".into()))
            }
        }
        let c = BotConfig::from_settings(&settings(Some(1), vec![])).unwrap();
        let s = BotState::new(c, Arc::new(Nope));
        let k = s.new_confirm(Confirm::Kill);
        let r = s.new_confirm(Confirm::Resume);
        assert_ne!(k, r);
        assert!(!s.take_confirm(k, Confirm::Resume), "wrong kind");
        assert!(s.take_confirm(k, Confirm::Kill));
        assert!(!s.take_confirm(k, Confirm::Kill), "second use");
        assert!(s.cancel_confirm(r));
        assert!(!s.take_confirm(r, Confirm::Resume), "cancelled");
    }
}
