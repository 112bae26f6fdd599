//! POST /kill: the local kill endpoint. `mft kill` sends the kill here while `mft run` holds
//! the database, so it runs inside the service exactly like /kill in Telegram (same handler,
//! same book lock, same KillDone alert in the chat) instead of racing it from a second
//! process. Authenticated by `Authorization: Bearer <token>` where the token is STATUS_TOKEN or
//! the secret in the 0600 token file `mft run` writes beside its data; with neither
//! configured the endpoint refuses everything. Answers JSON: `{"report": KillReport}` or
//! `{"error": "..."}`.

use axum::{
    Json,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};

use super::AppState;
use super::auth::{bearer, constant_time_eq};
use crate::domain::{Actor, Command, Request};
use crate::ports::Reply;

fn error(status: StatusCode, text: &str) -> Response {
    (status, Json(serde_json::json!({ "error": text }))).into_response()
}

pub(super) async fn kill(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let accepted: Vec<&str> = [&state.token, &state.kill_token]
        .into_iter()
        .flatten()
        .map(|s| s.expose())
        .collect();
    if accepted.is_empty() {
        return error(
            StatusCode::FORBIDDEN,
            "the kill endpoint is disabled: no STATUS_TOKEN and no token file",
        );
    }
    let given = bearer(&headers).unwrap_or("");
    // Every configured token is compared (no early exit), each in constant time.
    let ok = accepted.iter().fold(false, |ok, want| {
        constant_time_eq(given.as_bytes(), want.as_bytes()) | ok
    });
    if !ok {
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthorized: send Authorization: Bearer <STATUS_TOKEN or the token file's secret>",
        );
    }
    let req = Request {
        command: Command::Kill,
        actor: Actor::Cli,
    };
    match state.handler.handle(req).await {
        Ok(Reply::Killed(report)) => (
            StatusCode::OK,
            Json(serde_json::json!({ "report": report })),
        )
            .into_response(),
        Ok(other) => {
            tracing::error!(reply = ?other, "the handler answered Kill with another reply");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the handler gave an unexpected answer",
            )
        }
        Err(e) => error(super::command_status(&e), &e.to_string()),
    }
}
