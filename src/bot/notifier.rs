//! `TelegramNotifier`: the handler's outbound port to the chat — proposal cards (chart photo,
//! caption, Approve / Reject), card edits after an outcome, and alerts.

use super::callback::CallbackData;
use crate::domain::{Paise, Proposal};
use crate::ports::{Alert, Notifier, NotifyError, Outcome, ProposalCard};
use crate::texts;
use std::collections::HashMap;
use std::sync::Mutex;
use teloxide::ApiError;
use teloxide::RequestError;
use teloxide::prelude::*;
use teloxide::types::{
    InlineKeyboardButton, InlineKeyboardMarkup, InputFile, MessageId, ParseMode,
};

/// Posts to the one operator chat.
pub struct TelegramNotifier {
    bot: Bot,
    chat: ChatId,
    /// Capital for the risk % when a card is re-rendered for an edit.
    capital: Paise,
    /// Whether each card posted by this process is a photo (edit the caption) or text.
    kinds: Mutex<HashMap<i64, CardKind>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CardKind {
    Photo,
    Text,
}

/// The two buttons of a pending card.
pub fn proposal_keyboard(proposal_id: i64) -> InlineKeyboardMarkup {
    InlineKeyboardMarkup::new([[
        InlineKeyboardButton::callback(texts::APPROVE, CallbackData::Approve(proposal_id).encode()),
        InlineKeyboardButton::callback(texts::REJECT, CallbackData::Reject(proposal_id).encode()),
    ]])
}

/// One URL button, "Log in to Kite", opening Kite's login page.
pub fn login_keyboard(url: &str) -> Result<InlineKeyboardMarkup, url::ParseError> {
    let u = url::Url::parse(url)?;
    Ok(InlineKeyboardMarkup::new([[InlineKeyboardButton::url(
        texts::LOG_IN_TO_KITE,
        u,
    )]]))
}

/// An explicitly empty keyboard: removes the buttons on edit, with no room for doubt.
fn no_buttons() -> InlineKeyboardMarkup {
    InlineKeyboardMarkup::new(Vec::<Vec<InlineKeyboardButton>>::new())
}

fn notify_err(what: &str, e: impl std::fmt::Display) -> NotifyError {
    NotifyError(format!("{what}: {e}"))
}

impl TelegramNotifier {
    /// A notifier for the operator chat of `config`; `capital` is `[trading] capital`.
    pub fn from_config(config: &super::BotConfig, capital: Paise) -> Result<Self, super::BotError> {
        Ok(Self::new(config.bot()?, config.chat_id, capital))
    }

    pub fn new(bot: Bot, chat_id: i64, capital: Paise) -> Self {
        Self {
            bot,
            chat: ChatId(chat_id),
            capital,
            kinds: Mutex::new(HashMap::new()),
        }
    }

    fn remember(&self, message_id: i64, kind: CardKind) {
        let mut k = self.kinds.lock().unwrap_or_else(|e| e.into_inner());
        // Bounded: the oldest cards are long decided; after a restart the fallback below applies.
        if k.len() > 10_000 {
            k.clear();
        }
        k.insert(message_id, kind);
    }

    fn kind_of(&self, message_id: i64, proposal: &Proposal) -> CardKind {
        let known = self
            .kinds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&message_id)
            .copied();
        known.unwrap_or(if proposal.chart_path.is_some() {
            CardKind::Photo
        } else {
            CardKind::Text
        })
    }

    async fn edit(&self, kind: CardKind, id: MessageId, text: &str) -> Result<(), RequestError> {
        match kind {
            CardKind::Photo => self
                .bot
                .edit_message_caption(self.chat, id)
                .caption(text)
                .parse_mode(ParseMode::Html)
                .reply_markup(no_buttons())
                .await
                .map(|_| ()),
            CardKind::Text => self
                .bot
                .edit_message_text(self.chat, id, text)
                .parse_mode(ParseMode::Html)
                .reply_markup(no_buttons())
                .await
                .map(|_| ()),
        }
    }

    async fn send_text(&self, text: String) -> Result<Message, RequestError> {
        self.bot
            .send_message(self.chat, text)
            .parse_mode(ParseMode::Html)
            .await
    }
}

#[async_trait::async_trait]
impl Notifier for TelegramNotifier {
    async fn post_proposal(&self, card: &ProposalCard) -> Result<i64, NotifyError> {
        let caption = texts::card_caption(card);
        let keyboard = proposal_keyboard(card.proposal.id);
        let png = match &card.chart_png {
            Some(path) => match tokio::fs::read(path).await {
                Ok(bytes) => Some(bytes),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "chart unreadable; posting the card as text");
                    None
                }
            },
            None => None,
        };
        // A photo that fails (Telegram 400, a timeout) is tried once more, then the card goes
        // out as text with the same caption and buttons: a proposal without a card cannot be
        // approved and blocks its instrument until it expires.
        let mut photo_error = None;
        if let Some(bytes) = png {
            for attempt in 1..=2 {
                let sent = self
                    .bot
                    .send_photo(
                        self.chat,
                        InputFile::memory(bytes.clone())
                            .file_name(format!("proposal-{}.png", card.proposal.id)),
                    )
                    .caption(caption.clone())
                    .parse_mode(ParseMode::Html)
                    .reply_markup(keyboard.clone())
                    .await;
                match sent {
                    Ok(msg) => {
                        let id = i64::from(msg.id.0);
                        self.remember(id, CardKind::Photo);
                        return Ok(id);
                    }
                    Err(e) => {
                        tracing::warn!(proposal = card.proposal.id, attempt, error = %e, "sending the proposal card as a photo failed");
                        photo_error = Some(e.to_string());
                    }
                }
            }
        }
        let msg = self
            .bot
            .send_message(self.chat, caption)
            .parse_mode(ParseMode::Html)
            .reply_markup(keyboard)
            .await
            .map_err(|e| {
                let what = match &photo_error {
                    Some(p) => format!(
                        "sending the proposal card failed as a photo twice ({p}) and as text"
                    ),
                    None => "sending the proposal card failed".to_string(),
                };
                notify_err(&what, e)
            })?;
        let kind = CardKind::Text;
        let id = i64::from(msg.id.0);
        self.remember(id, kind);
        Ok(id)
    }

    async fn update_proposal(
        &self,
        proposal: &Proposal,
        message_id: i64,
        outcome: &Outcome,
    ) -> Result<(), NotifyError> {
        let text = texts::proposal_caption(proposal, self.capital, Some(outcome));
        let id = MessageId(
            i32::try_from(message_id)
                .map_err(|_| NotifyError(format!("message id {message_id} is out of range")))?,
        );
        let kind = self.kind_of(message_id, proposal);
        let first = self.edit(kind, id, &text).await;
        let result = match first {
            Ok(()) => Ok(()),
            // Already showing this outcome (e.g. a retried edit): nothing to do.
            Err(RequestError::Api(ApiError::MessageNotModified)) => Ok(()),
            // Wrong guess of the card's kind (restart, or chart dropped): try the other edit.
            Err(RequestError::Api(ApiError::Unknown(ref d)))
                if d.contains("no caption") || d.contains("no text") =>
            {
                let other = match kind {
                    CardKind::Photo => CardKind::Text,
                    CardKind::Text => CardKind::Photo,
                };
                let r = self.edit(other, id, &text).await;
                if r.is_ok() {
                    self.remember(message_id, other);
                }
                r
            }
            Err(e) => Err(e),
        };
        result.map_err(|e| {
            notify_err(
                &format!("editing the card of proposal #{} failed", proposal.id),
                e,
            )
        })
    }

    async fn alert(&self, alert: &Alert) -> Result<(), NotifyError> {
        let url = match alert {
            Alert::LoginLink { url } => Some(url.as_str()),
            Alert::SessionExpired {
                login_url: Some(url),
                ..
            } => Some(url.as_str()),
            _ => None,
        };
        if let Some(url) = url {
            let markup = login_keyboard(url).map_err(|e| notify_err("bad login URL", e))?;
            return self
                .bot
                .send_message(self.chat, texts::alert(alert))
                .parse_mode(ParseMode::Html)
                .reply_markup(markup)
                .await
                .map(|_| ())
                .map_err(|e| notify_err("sending an alert failed", e));
        }
        if let Alert::BacktestDone {
            key,
            chart_png: Some(path),
            ..
        } = alert
        {
            match tokio::fs::read(path).await {
                Ok(bytes) => {
                    self.bot
                        .send_photo(self.chat, InputFile::memory(bytes).file_name("equity.png"))
                        .caption(texts::backtest_chart_caption(key))
                        .parse_mode(ParseMode::Html)
                        .await
                        .map_err(|e| notify_err("sending the backtest chart failed", e))?;
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "backtest chart unreadable; sending the summary only");
                }
            }
        }
        self.send_text(texts::alert(alert))
            .await
            .map(|_| ())
            .map_err(|e| notify_err("sending an alert failed", e))
    }
}
