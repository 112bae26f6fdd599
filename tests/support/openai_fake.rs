//! An OpenAI-compatible chat completions fake (`POST /v1/chat/completions` on 127.0.0.1:0),
//! scripted per test: tool-call sequences, verdict texts, HTTP errors, slow replies, and a
//! default reply for when the script runs out (e.g. a model that never stops calling tools).
#![allow(dead_code)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};

/// One scripted reply.
#[derive(Debug, Clone)]
pub enum Step {
    /// The assistant calls these tools: (function name, arguments JSON text).
    Tools(Vec<(String, String)>),
    /// The assistant answers with this text.
    Say(String),
    /// The endpoint answers with this HTTP status and body.
    Status(u16, String),
    /// Waits, then replies with the inner step.
    Slow(Duration, Box<Step>),
}

impl Step {
    pub fn tool(name: &str, args: Value) -> Step {
        Step::Tools(vec![(name.to_string(), args.to_string())])
    }
    pub fn verdict(v: Value) -> Step {
        Step::Say(v.to_string())
    }
}

#[derive(Default)]
struct Inner {
    script: VecDeque<Step>,
    default: Option<Step>,
    requests: Vec<Value>,
    call_id: u64,
}

#[derive(Clone)]
pub struct OpenAiFake {
    pub addr: std::net::SocketAddr,
    inner: Arc<Mutex<Inner>>,
}

async fn chat(State(inner): State<Arc<Mutex<Inner>>>, Json(body): Json<Value>) -> Response {
    let step = {
        let mut i = inner.lock().unwrap();
        i.requests.push(body.clone());
        i.script.pop_front().or_else(|| i.default.clone())
    };
    let Some(mut step) = step else {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "the fake's script is empty",
        )
            .into_response();
    };
    while let Step::Slow(d, inner_step) = step {
        tokio::time::sleep(d).await;
        step = *inner_step;
    }
    let model = body["model"].as_str().unwrap_or("fake").to_string();
    let message = match step {
        Step::Status(code, text) => {
            let body = json!({"error": {"message": text, "type": "fake_error", "param": null, "code": null}});
            return (StatusCode::from_u16(code).unwrap(), Json(body)).into_response();
        }
        Step::Tools(calls) => {
            let mut i = inner.lock().unwrap();
            let calls: Vec<Value> = calls
                .into_iter()
                .map(|(name, args)| {
                    i.call_id += 1;
                    json!({"id": format!("call_{}", i.call_id), "type": "function",
                           "function": {"name": name, "arguments": args}})
                })
                .collect();
            json!({"role": "assistant", "content": null, "tool_calls": calls})
        }
        Step::Say(text) => json!({"role": "assistant", "content": text}),
        Step::Slow(..) => unreachable!(),
    };
    let finish = if message.get("tool_calls").is_some() {
        "tool_calls"
    } else {
        "stop"
    };
    Json(json!({
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1_764_000_000u32,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}
    }))
    .into_response()
}

impl OpenAiFake {
    pub async fn start() -> OpenAiFake {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = Router::new()
            .route("/v1/chat/completions", post(chat))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        OpenAiFake { addr, inner }
    }

    /// OPENAI_BASE_URL for this fake.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn script(&self, steps: Vec<Step>) {
        self.inner.lock().unwrap().script.extend(steps);
    }

    /// Reply used when the script is empty.
    pub fn set_default(&self, step: Step) {
        self.inner.lock().unwrap().default = Some(step);
    }

    pub fn requests(&self) -> Vec<Value> {
        self.inner.lock().unwrap().requests.clone()
    }

    pub fn clear(&self) {
        let mut i = self.inner.lock().unwrap();
        i.script.clear();
        i.default = None;
        i.requests.clear();
    }
}

/// A NewsAPI-style fake: `GET /v2/everything` answers the configured articles (or a status).
#[derive(Clone)]
pub struct NewsFake {
    pub addr: std::net::SocketAddr,
    state: Arc<Mutex<NewsState>>,
}

#[derive(Default)]
struct NewsState {
    articles: Vec<Value>,
    status: Option<u16>,
    queries: Vec<String>,
    keys: Vec<String>,
}

async fn everything(
    State(s): State<Arc<Mutex<NewsState>>>,
    headers: axum::http::HeaderMap,
    uri: axum::http::Uri,
) -> Response {
    let mut st = s.lock().unwrap();
    st.queries.push(uri.query().unwrap_or("").to_string());
    st.keys.push(
        headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string(),
    );
    if let Some(code) = st.status {
        return (
            StatusCode::from_u16(code).unwrap(),
            Json(json!({"status": "error", "code": "x", "message": "fake"})),
        )
            .into_response();
    }
    Json(json!({"status": "ok", "totalResults": st.articles.len(), "articles": st.articles}))
        .into_response()
}

impl NewsFake {
    pub async fn start() -> NewsFake {
        let state = Arc::new(Mutex::new(NewsState::default()));
        let app = Router::new()
            .route("/v2/everything", axum::routing::get(everything))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        NewsFake { addr, state }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set_articles(&self, articles: Vec<Value>) {
        self.state.lock().unwrap().articles = articles;
    }

    pub fn set_status(&self, status: Option<u16>) {
        self.state.lock().unwrap().status = status;
    }

    pub fn queries(&self) -> Vec<String> {
        self.state.lock().unwrap().queries.clone()
    }

    pub fn keys(&self) -> Vec<String> {
        self.state.lock().unwrap().keys.clone()
    }
}

/// A NewsAPI article.
pub fn article(source: &str, title: &str, description: &str) -> Value {
    json!({"source": {"id": null, "name": source}, "author": null, "title": title,
           "description": description, "url": "https://example.com/a", "urlToImage": null,
           "publishedAt": "2026-11-25T04:00:00Z", "content": description})
}
