//! A fake Telegram Bot API (axum on 127.0.0.1:0) for driving the real teloxide dispatcher in tests:
//! it answers the methods MFT-1 uses, keeps the current state of every message the bot sent,
//! records every call, and lets a test inject updates (including the same update twice).

use axum::{
    Json, Router,
    extract::{FromRequest, Multipart, Path, Request, State},
    http::header::CONTENT_TYPE,
    routing::any,
};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::Notify;

/// The fake bot's own user id and username (what getMe returns).
pub const BOT_USER_ID: i64 = 7_000_000_001;
pub const BOT_USERNAME: &str = "mft_test_bot";

/// The longest an empty getUpdates is held open, whatever `timeout` the client asks for, so
/// tests and shutdown stay fast.
const MAX_EMPTY_POLL: Duration = Duration::from_millis(300);

/// One recorded API call.
#[derive(Debug, Clone)]
pub struct Call {
    /// Canonical Bot API name (`sendMessage`, `getUpdates`, ...), whatever case it arrived in.
    pub method: String,
    /// JSON body, or the multipart text parts (chat_id/message_id as numbers, reply_markup as JSON).
    pub params: Value,
    /// Bytes of a multipart file part (sendPhoto), if any.
    pub file: Option<Vec<u8>>,
    pub at: Instant,
}

impl Call {
    pub fn str(&self, key: &str) -> Option<&str> {
        self.params.get(key).and_then(Value::as_str)
    }
    pub fn i64(&self, key: &str) -> Option<i64> {
        self.params.get(key).and_then(Value::as_i64)
    }
}

/// The current state of a message the bot sent (after any edits).
#[derive(Debug, Clone, PartialEq)]
pub struct SentMessage {
    pub message_id: i64,
    pub chat_id: i64,
    pub text: Option<String>,
    pub caption: Option<String>,
    pub parse_mode: Option<String>,
    /// The inline keyboard as sent (`{"inline_keyboard": [[...]]}`), None once removed.
    pub reply_markup: Option<Value>,
    pub photo: Option<Vec<u8>>,
    pub edits: u32,
}

impl SentMessage {
    /// Text of a text message or caption of a photo.
    pub fn body(&self) -> &str {
        self.text
            .as_deref()
            .or(self.caption.as_deref())
            .unwrap_or("")
    }

    /// Every inline button as (label, callback_data).
    pub fn buttons(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Some(rows) = self
            .reply_markup
            .as_ref()
            .and_then(|m| m.get("inline_keyboard"))
            .and_then(Value::as_array)
        {
            for row in rows {
                for b in row.as_array().into_iter().flatten() {
                    out.push((
                        b.get("text").and_then(Value::as_str).unwrap_or("").into(),
                        b.get("callback_data")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .into(),
                    ));
                }
            }
        }
        out
    }
}

/// What answerCallbackQuery said.
#[derive(Debug, Clone, PartialEq)]
pub struct CallbackAnswer {
    pub text: Option<String>,
    pub show_alert: bool,
}

struct Queued {
    update_id: i64,
    delivered: bool,
}

#[derive(Default)]
struct Inner {
    calls: Vec<Call>,
    messages: HashMap<i64, SentMessage>,
    next_message_id: i64,
    next_update_id: i64,
    next_callback: u64,
    /// Every update ever injected, by id (so one can be delivered again).
    updates: HashMap<i64, Value>,
    queue: Vec<Queued>,
    answers: HashMap<String, CallbackAnswer>,
    /// Method -> how many of its next calls are refused with 400 (usize::MAX: all).
    refuse: HashMap<String, usize>,
}

#[derive(Clone)]
struct Shared {
    inner: Arc<Mutex<Inner>>,
    /// Woken on every injected update (long polls) and every recorded call (`wait_for`).
    changed: Arc<Notify>,
    token: Arc<String>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The running fake. Dropping it stops the server.
pub struct TelegramFake {
    pub addr: SocketAddr,
    pub token: String,
    shared: Shared,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for TelegramFake {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(1)
}

fn chat_json(chat_id: i64) -> Value {
    if chat_id > 0 {
        json!({"id": chat_id, "type": "private", "first_name": "Operator"})
    } else {
        json!({"id": chat_id, "type": "supergroup", "title": "MFT desk"})
    }
}

fn user_json(user_id: i64) -> Value {
    json!({"id": user_id, "is_bot": false, "first_name": format!("user{user_id}")})
}

fn bot_user_json() -> Value {
    json!({"id": BOT_USER_ID, "is_bot": true, "first_name": "MFT", "username": BOT_USERNAME})
}

fn message_json(m: &SentMessage) -> Value {
    let mut v = json!({
        "message_id": m.message_id,
        "date": now_secs(),
        "chat": chat_json(m.chat_id),
        "from": bot_user_json(),
    });
    let o = v.as_object_mut().expect("object literal");
    if let Some(t) = &m.text {
        o.insert("text".into(), json!(t));
    }
    if m.photo.is_some() {
        o.insert(
            "photo".into(),
            json!([{
                "file_id": format!("photo-{}", m.message_id),
                "file_unique_id": format!("u{}", m.message_id),
                "width": 1280, "height": 800,
                "file_size": m.photo.as_ref().map(|p| p.len()).unwrap_or(0),
            }]),
        );
        if let Some(c) = &m.caption {
            o.insert("caption".into(), json!(c));
        }
    }
    if let Some(k) = &m.reply_markup {
        o.insert("reply_markup".into(), k.clone());
    }
    v
}

/// The inline keyboard of a request; None when absent or empty.
fn keyboard(params: &Value) -> Option<Value> {
    params
        .get("reply_markup")
        .filter(|m| {
            m.get("inline_keyboard")
                .and_then(Value::as_array)
                .is_some_and(|rows| {
                    rows.iter()
                        .any(|r| r.as_array().is_some_and(|r| !r.is_empty()))
                })
        })
        .cloned()
}

fn ok(result: Value) -> Json<Value> {
    Json(json!({"ok": true, "result": result}))
}

fn err(code: u16, description: &str) -> Json<Value> {
    Json(json!({"ok": false, "error_code": code, "description": description}))
}

const METHODS: &[&str] = &[
    "getMe",
    "getWebhookInfo",
    "deleteWebhook",
    "getUpdates",
    "sendMessage",
    "sendPhoto",
    "editMessageCaption",
    "editMessageText",
    "editMessageReplyMarkup",
    "answerCallbackQuery",
    "setMyCommands",
    "close",
    "logOut",
];

fn canonical(method: &str) -> String {
    METHODS
        .iter()
        .find(|m| m.eq_ignore_ascii_case(method))
        .map(|m| m.to_string())
        .unwrap_or_else(|| method.to_string())
}

/// Multipart text values: ids as numbers, reply_markup as JSON, the rest as strings.
fn multipart_value(name: &str, text: String) -> Value {
    match name {
        "chat_id" | "message_id" | "reply_to_message_id" => text
            .parse::<i64>()
            .map(Value::from)
            .unwrap_or(Value::String(text)),
        "reply_markup" => serde_json::from_str(&text).unwrap_or(Value::String(text)),
        _ => Value::String(text),
    }
}

async fn read_params(req: Request) -> Result<(Value, Option<Vec<u8>>), String> {
    let ctype = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    if ctype.starts_with("multipart/form-data") {
        let mut mp = Multipart::from_request(req, &())
            .await
            .map_err(|e| format!("bad multipart: {e}"))?;
        let mut params = Map::new();
        let mut file = None;
        while let Some(field) = mp
            .next_field()
            .await
            .map_err(|e| format!("bad multipart field: {e}"))?
        {
            let name = field.name().unwrap_or("").to_string();
            if field.file_name().is_some() {
                let bytes = field
                    .bytes()
                    .await
                    .map_err(|e| format!("bad multipart file: {e}"))?;
                file = Some(bytes.to_vec());
            } else {
                let text = field
                    .text()
                    .await
                    .map_err(|e| format!("bad multipart text: {e}"))?;
                params.insert(name.clone(), multipart_value(&name, text));
            }
        }
        Ok((Value::Object(params), file))
    } else {
        let bytes = axum::body::to_bytes(req.into_body(), 16 << 20)
            .await
            .map_err(|e| format!("bad body: {e}"))?;
        if bytes.is_empty() {
            return Ok((json!({}), None));
        }
        serde_json::from_slice(&bytes)
            .map(|v| (v, None))
            .map_err(|e| format!("bad JSON body: {e}"))
    }
}

async fn api(
    State(shared): State<Shared>,
    Path((bot_token, method)): Path<(String, String)>,
    req: Request,
) -> Json<Value> {
    if bot_token.strip_prefix("bot") != Some(shared.token.as_str()) {
        return err(401, "Unauthorized");
    }
    let method = canonical(&method);
    let (params, file) = match read_params(req).await {
        Ok(p) => p,
        Err(e) => return err(400, &format!("Bad Request: {e}")),
    };
    {
        let mut inner = shared.lock();
        inner.calls.push(Call {
            method: method.clone(),
            params: params.clone(),
            file: file.clone(),
            at: Instant::now(),
        });
    }
    let response = respond(&shared, &method, params, file).await;
    // After the state change, so a waiter that sees the call also sees its effect.
    shared.changed.notify_waiters();
    response
}

async fn respond(
    shared: &Shared,
    method: &str,
    params: Value,
    file: Option<Vec<u8>>,
) -> Json<Value> {
    {
        let mut inner = shared.lock();
        if let Some(n) = inner.refuse.get_mut(method)
            && *n > 0
        {
            if *n != usize::MAX {
                *n -= 1;
            }
            return err(
                400,
                "Bad Request: refused by the test (IMAGE_PROCESS_FAILED)",
            );
        }
    }
    match method {
        "getMe" => ok(json!({
            "id": BOT_USER_ID,
            "is_bot": true,
            "first_name": "MFT",
            "username": BOT_USERNAME,
            "can_join_groups": true,
            "can_read_all_group_messages": false,
            "supports_inline_queries": false,
            "can_connect_to_business": false,
            "has_main_web_app": false,
        })),
        "getWebhookInfo" => ok(json!({
            "url": "",
            "has_custom_certificate": false,
            "pending_update_count": 0,
        })),
        "deleteWebhook" | "setMyCommands" | "close" | "logOut" => ok(json!(true)),
        "getUpdates" => get_updates(shared, &params).await,
        "sendMessage" | "sendPhoto" => send(shared, method, &params, file),
        "editMessageCaption" | "editMessageText" | "editMessageReplyMarkup" => {
            edit(shared, method, &params)
        }
        "answerCallbackQuery" => {
            let Some(id) = params.get("callback_query_id").and_then(Value::as_str) else {
                return err(400, "Bad Request: callback_query_id is required");
            };
            let answer = CallbackAnswer {
                text: params.get("text").and_then(Value::as_str).map(String::from),
                show_alert: params
                    .get("show_alert")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
            };
            shared.lock().answers.insert(id.to_string(), answer);
            ok(json!(true))
        }
        _ => err(404, "Not Found: method not found"),
    }
}

async fn get_updates(shared: &Shared, params: &Value) -> Json<Value> {
    let offset = params.get("offset").and_then(Value::as_i64).unwrap_or(0);
    let timeout = params.get("timeout").and_then(Value::as_u64).unwrap_or(0);
    let limit = params
        .get("limit")
        .and_then(Value::as_u64)
        .filter(|l| (1..=100).contains(l))
        .unwrap_or(100) as usize;
    let wait = Duration::from_secs(timeout).min(MAX_EMPTY_POLL);
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        // Registered before the check so an injection between check and wait is not missed.
        let notified = shared.changed.notified();
        {
            let mut inner = shared.lock();
            // Delivered updates below the offset are confirmed: drop them. A re-injected copy
            // (not yet delivered) is handed out once even if its id is below the offset.
            inner
                .queue
                .retain(|q| !(q.delivered && q.update_id < offset));
            let mut out = Vec::new();
            let ids: Vec<i64> = inner
                .queue
                .iter_mut()
                .take(limit)
                .map(|q| {
                    q.delivered = true;
                    q.update_id
                })
                .collect();
            for id in ids {
                if let Some(u) = inner.updates.get(&id) {
                    out.push(u.clone());
                }
            }
            if !out.is_empty() {
                return ok(Value::Array(out));
            }
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            return ok(json!([]));
        }
    }
}

fn send(shared: &Shared, method: &str, params: &Value, file: Option<Vec<u8>>) -> Json<Value> {
    let Some(chat_id) = params.get("chat_id").and_then(Value::as_i64) else {
        return err(400, "Bad Request: chat_id is required");
    };
    let mut inner = shared.lock();
    inner.next_message_id += 1;
    let message_id = inner.next_message_id;
    let s = |k: &str| params.get(k).and_then(Value::as_str).map(String::from);
    let msg = if method == "sendPhoto" {
        let Some(photo) = file else {
            return err(400, "Bad Request: there is no photo in the request");
        };
        SentMessage {
            message_id,
            chat_id,
            text: None,
            caption: s("caption"),
            parse_mode: s("parse_mode"),
            reply_markup: keyboard(params),
            photo: Some(photo),
            edits: 0,
        }
    } else {
        let Some(text) = s("text") else {
            return err(400, "Bad Request: message text is empty");
        };
        SentMessage {
            message_id,
            chat_id,
            text: Some(text),
            caption: None,
            parse_mode: s("parse_mode"),
            reply_markup: keyboard(params),
            photo: None,
            edits: 0,
        }
    };
    let out = message_json(&msg);
    inner.messages.insert(message_id, msg);
    ok(out)
}

fn edit(shared: &Shared, method: &str, params: &Value) -> Json<Value> {
    let Some(message_id) = params.get("message_id").and_then(Value::as_i64) else {
        return err(400, "Bad Request: message_id is required");
    };
    let chat_id = params.get("chat_id").and_then(Value::as_i64);
    let mut inner = shared.lock();
    let Some(m) = inner.messages.get_mut(&message_id) else {
        return err(400, "Bad Request: message to edit not found");
    };
    if chat_id.is_some_and(|c| c != m.chat_id) {
        return err(400, "Bad Request: message to edit not found");
    }
    let s = |k: &str| params.get(k).and_then(Value::as_str).map(String::from);
    match method {
        "editMessageCaption" => {
            if m.photo.is_none() {
                return err(
                    400,
                    "Bad Request: there is no caption in the message to edit",
                );
            }
            m.caption = s("caption");
            m.parse_mode = s("parse_mode");
        }
        "editMessageText" => {
            if m.text.is_none() {
                return err(400, "Bad Request: there is no text in the message to edit");
            }
            let Some(t) = s("text") else {
                return err(400, "Bad Request: message text is empty");
            };
            m.text = Some(t);
            m.parse_mode = s("parse_mode");
        }
        _ => {}
    }
    // An edit without reply_markup (or with an empty one) removes the inline keyboard.
    m.reply_markup = keyboard(params);
    m.edits += 1;
    let out = message_json(m);
    ok(out)
}

impl TelegramFake {
    /// Starts the fake on 127.0.0.1:0 for bot token `token`.
    pub async fn start(token: &str) -> TelegramFake {
        let shared = Shared {
            inner: Arc::new(Mutex::new(Inner {
                next_message_id: 1000,
                next_update_id: 5000,
                ..Inner::default()
            })),
            changed: Arc::new(Notify::new()),
            token: Arc::new(token.to_string()),
        };
        let app = Router::new()
            .route("/{bot_token}/{method}", any(api))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the Telegram fake on 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr of the fake");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        TelegramFake {
            addr,
            token: token.to_string(),
            shared,
            server,
        }
    }

    /// Refuses the next `n` calls of `method` (e.g. "sendPhoto") with a 400; `usize::MAX`
    /// refuses every call from now on. Refused calls are still recorded.
    pub fn refuse(&self, method: &str, n: usize) {
        self.shared.lock().refuse.insert(method.to_string(), n);
    }

    /// The base URL to give teloxide (`Bot::set_api_url`) / TELEGRAM_API_URL.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    fn push_update(&self, build: impl FnOnce(i64, &mut Inner) -> Value) -> i64 {
        let id = {
            let mut inner = self.shared.lock();
            inner.next_update_id += 1;
            let id = inner.next_update_id;
            let update = build(id, &mut inner);
            inner.updates.insert(id, update);
            inner.queue.push(Queued {
                update_id: id,
                delivered: false,
            });
            id
        };
        self.shared.changed.notify_waiters();
        id
    }

    /// A text message from `from_user_id` in `chat_id`. Returns the update id.
    pub fn inject_message(&self, from_user_id: i64, chat_id: i64, text: &str) -> i64 {
        self.push_update(|update_id, inner| {
            inner.next_message_id += 1;
            json!({
                "update_id": update_id,
                "message": {
                    "message_id": inner.next_message_id,
                    "date": now_secs(),
                    "chat": chat_json(chat_id),
                    "from": user_json(from_user_id),
                    "text": text,
                }
            })
        })
    }

    /// A button tap on message `message_id` (which the bot sent; its current state is attached).
    /// Returns the callback query id.
    pub fn inject_callback(
        &self,
        from_user_id: i64,
        chat_id: i64,
        message_id: i64,
        data: &str,
    ) -> String {
        let (_, cb) = self.inject_callback_update(from_user_id, chat_id, message_id, data);
        cb
    }

    /// Like `inject_callback`, also returning the update id (for `redeliver`).
    pub fn inject_callback_update(
        &self,
        from_user_id: i64,
        chat_id: i64,
        message_id: i64,
        data: &str,
    ) -> (i64, String) {
        let mut cb_id = String::new();
        let update_id = self.push_update(|update_id, inner| {
            inner.next_callback += 1;
            cb_id = format!("cbq-{}", inner.next_callback);
            // The bot's message as it is now, when it is in that chat.
            let message = inner
                .messages
                .get(&message_id)
                .filter(|m| m.chat_id == chat_id)
                .map(message_json)
                .unwrap_or_else(|| {
                    json!({
                        "message_id": message_id,
                        "date": now_secs(),
                        "chat": chat_json(chat_id),
                        "from": bot_user_json(),
                        "text": "(unknown message)",
                    })
                });
            json!({
                "update_id": update_id,
                "callback_query": {
                    "id": cb_id,
                    "from": user_json(from_user_id),
                    "chat_instance": format!("ci{chat_id}"),
                    "message": message,
                    "data": data,
                }
            })
        });
        (update_id, cb_id)
    }

    /// Queues update `update_id` again, as Telegram does when a delivery was not confirmed.
    /// Returns false when no such update was ever injected.
    pub fn redeliver(&self, update_id: i64) -> bool {
        {
            let mut inner = self.shared.lock();
            if !inner.updates.contains_key(&update_id) {
                return false;
            }
            inner.queue.push(Queued {
                update_id,
                delivered: false,
            });
        }
        self.shared.changed.notify_waiters();
        true
    }

    /// Every call so far, in order.
    pub fn all_calls(&self) -> Vec<Call> {
        self.shared.lock().calls.clone()
    }

    /// How many calls have been recorded so far (an index for [`TelegramFake::calls_since`]).
    pub fn call_count(&self) -> usize {
        self.shared.lock().calls.len()
    }

    /// The calls recorded after the first `start` ones.
    pub fn calls_since(&self, start: usize) -> Vec<Call> {
        let inner = self.shared.lock();
        inner.calls.get(start..).unwrap_or_default().to_vec()
    }

    /// The calls of one method (case-insensitive: `sendMessage`, `SendMessage`).
    pub fn calls(&self, method: &str) -> Vec<Call> {
        self.shared
            .lock()
            .calls
            .iter()
            .filter(|c| c.method.eq_ignore_ascii_case(method))
            .cloned()
            .collect()
    }

    /// The current state of a message the bot sent.
    pub fn message(&self, message_id: i64) -> Option<SentMessage> {
        self.shared.lock().messages.get(&message_id).cloned()
    }

    /// Every message the bot sent, in id order.
    pub fn messages(&self) -> Vec<SentMessage> {
        let mut v: Vec<SentMessage> = self.shared.lock().messages.values().cloned().collect();
        v.sort_by_key(|m| m.message_id);
        v
    }

    /// How the bot answered callback query `callback_id`, if it did.
    pub fn answered(&self, callback_id: &str) -> Option<CallbackAnswer> {
        self.shared.lock().answers.get(callback_id).cloned()
    }

    /// Waits until the approve tap `cb` on card `mid` is answered "Placing…" and the card is
    /// then edited "Executed: BUY" (the winning tap of a paper approval); panics otherwise.
    pub async fn expect_placing_then_executed(&self, cb: &str, mid: i64, wait: Duration) {
        assert!(
            self.wait_for(
                |c| c.iter().any(|c| c.method == "answerCallbackQuery"
                    && c.str("callback_query_id") == Some(cb)
                    && c.str("text") == Some("Placing…")),
                wait
            )
            .await,
            "the approve tap is not answered \"Placing…\": {:?}",
            self.calls("answerCallbackQuery")
        );
        assert!(
            self.wait_for(
                |c| c.iter().any(|c| c.method == "editMessageCaption"
                    && c.i64("message_id") == Some(mid)
                    && c.str("caption")
                        .is_some_and(|t| t.contains("Executed: BUY"))),
                wait
            )
            .await,
            "approval not executed: {:?}",
            self.message(mid)
        );
    }

    /// `command` from `user` in their own chat, then a tap on the confirmation button whose data
    /// starts with `prefix`, then waits for a message containing `done`.
    pub async fn confirm(
        &self,
        user: i64,
        command: &str,
        prefix: &str,
        done: &str,
        wait: Duration,
    ) {
        let sent = self.calls("sendMessage").len();
        self.inject_message(user, user, command);
        let found = self
            .wait_for(
                |c| {
                    c.iter()
                        .filter(|c| c.method == "sendMessage")
                        .skip(sent)
                        .any(|m| {
                            m.params
                                .get("reply_markup")
                                .is_some_and(|r| r.to_string().contains(prefix))
                        })
                },
                wait,
            )
            .await;
        assert!(found, "{command}: no confirmation");
        let msg = self
            .messages()
            .into_iter()
            .rev()
            .find(|m| m.buttons().iter().any(|(_, d)| d.starts_with(prefix)))
            .expect("the confirmation message");
        let data = msg
            .buttons()
            .into_iter()
            .find(|(_, d)| d.starts_with(prefix))
            .expect("confirm button")
            .1;
        let sent = self.calls("sendMessage").len();
        self.inject_callback(user, user, msg.message_id, &data);
        let ok = self
            .wait_for(
                |c| {
                    c.iter()
                        .filter(|c| c.method == "sendMessage")
                        .skip(sent)
                        .any(|m| m.str("text").is_some_and(|t| t.contains(done)))
                },
                wait,
            )
            .await;
        assert!(ok, "{command}: no {done:?} reply");
    }

    /// Waits until `pred` holds over the recorded calls, or `timeout` passes. Returns whether
    /// it held.
    pub async fn wait_for(&self, pred: impl Fn(&[Call]) -> bool, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.shared.changed.notified();
            if pred(&self.shared.lock().calls) {
                return true;
            }
            // Bounded waits so a missed wake-up costs at most 50 ms.
            let step = (tokio::time::Instant::now() + Duration::from_millis(50)).min(deadline);
            if tokio::time::timeout_at(step, notified).await.is_err()
                && tokio::time::Instant::now() >= deadline
            {
                return pred(&self.shared.lock().calls);
            }
        }
    }

    /// Waits until callback `callback_id` has been answered.
    pub async fn wait_answered(
        &self,
        callback_id: &str,
        timeout: Duration,
    ) -> Option<CallbackAnswer> {
        let id = callback_id.to_string();
        self.wait_for(
            |calls| {
                calls.iter().any(|c| {
                    c.method == "answerCallbackQuery" && c.str("callback_query_id") == Some(&id)
                })
            },
            timeout,
        )
        .await;
        self.answered(callback_id)
    }
}
