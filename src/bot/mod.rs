//! Telegram: the teloxide dispatcher (typed commands, button callbacks, authorization), the
//! message texts, and the notifier that posts proposal cards and alerts. It never touches tables
//! or the broker: every action is a `Request` handed to the one command handler.

pub mod callback;

pub use callback::{CallbackData, CallbackError};
