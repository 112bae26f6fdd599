//! `POST /kite/postback`: Kite's order updates pushed to the status server. The body's
//! checksum, hex sha256(order_id + order_timestamp + api_secret), is verified in constant time
//! before anything else: a bad or missing one gets 403 and changes nothing. A good one becomes
//! a [`Command::OrderUpdate`] for the handler (merged idempotently with the ticker and the
//! poll).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{NaiveDateTime, Utc};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::AppState;
use crate::clock::IST;
use crate::domain::{Actor, BrokerOrderUpdate, BrokerStatus, Command, Paise, Request};

/// The fields of Kite's postback body MFT-1 reads (the rest is ignored).
#[derive(Debug, Deserialize)]
pub struct Postback {
    pub order_id: String,
    pub order_timestamp: String,
    #[serde(default)]
    pub checksum: String,
    pub status: String,
    #[serde(default)]
    pub tag: Option<String>,
    #[serde(default)]
    pub status_message: Option<String>,
    #[serde(default)]
    pub filled_quantity: f64,
    #[serde(default)]
    pub quantity: Option<f64>,
    #[serde(default)]
    pub average_price: f64,
    #[serde(default)]
    pub exchange_update_timestamp: Option<String>,
}

/// Why a postback was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PostbackError {
    #[error("the postback body is not Kite's order JSON: {0}")]
    Malformed(String),
    #[error("the postback checksum does not match")]
    BadChecksum,
    #[error("postbacks are not accepted: ZERODHA_API_SECRET is not set")]
    NoSecret,
}

/// Kite's checksum of a postback.
pub fn checksum(order_id: &str, order_timestamp: &str, api_secret: &str) -> String {
    hex::encode(Sha256::digest(
        format!("{order_id}{order_timestamp}{api_secret}").as_bytes(),
    ))
}

fn kite_time(s: &str) -> Option<chrono::DateTime<Utc>> {
    NaiveDateTime::parse_from_str(s.trim(), "%Y-%m-%d %H:%M:%S")
        .ok()?
        .and_local_timezone(IST)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
}

/// Parses and verifies a postback body.
pub fn verify(body: &[u8], api_secret: Option<&str>) -> Result<BrokerOrderUpdate, PostbackError> {
    let secret = api_secret
        .filter(|s| !s.is_empty())
        .ok_or(PostbackError::NoSecret)?;
    let p: Postback =
        serde_json::from_slice(body).map_err(|e| PostbackError::Malformed(e.to_string()))?;
    let want = checksum(&p.order_id, &p.order_timestamp, secret);
    if !super::auth::constant_time_eq(want.as_bytes(), p.checksum.trim().as_bytes()) {
        return Err(PostbackError::BadChecksum);
    }
    let at = p
        .exchange_update_timestamp
        .as_deref()
        .and_then(kite_time)
        .or_else(|| kite_time(&p.order_timestamp))
        .unwrap_or_else(Utc::now);
    Ok(BrokerOrderUpdate {
        broker_order_id: p.order_id,
        tag: p.tag.filter(|t| !t.is_empty()),
        status: BrokerStatus::from_kite(&p.status),
        status_text: p.status,
        status_message: p.status_message,
        filled_quantity: p.filled_quantity.round() as i64,
        quantity: p
            .quantity
            .filter(|q| q.is_finite() && *q > 0.0)
            .map(|q| q.round() as i64),
        average_price: Paise::try_from_rupees_f64(p.average_price).unwrap_or(Paise::ZERO),
        at,
    })
}

pub(super) async fn postback(State(state): State<AppState>, body: Bytes) -> Response {
    let update = match verify(&body, state.postback_secret.as_ref().map(|s| s.expose())) {
        Ok(u) => u,
        Err(e @ PostbackError::Malformed(_)) => {
            tracing::warn!("refused a Kite postback: {e}");
            return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response();
        }
        Err(e) => {
            tracing::warn!("refused a Kite postback: {e}");
            return (StatusCode::FORBIDDEN, format!("{e}\n")).into_response();
        }
    };
    let req = Request {
        command: Command::OrderUpdate(Box::new(update)),
        actor: Actor::Web,
    };
    match state.handler.handle(req).await {
        Ok(_) => (StatusCode::OK, "ok\n").into_response(),
        Err(e) => {
            tracing::error!("a Kite postback could not be merged: {e}");
            // Kite does not retry postbacks: the 5-second poll picks the update up.
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "not merged; the poll will pick it up\n",
            )
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(checksum: &str) -> Vec<u8> {
        serde_json::json!({
            "order_id": "220303000308932",
            "order_timestamp": "2026-11-30 10:15:02",
            "exchange_update_timestamp": "2026-11-30 10:15:03",
            "checksum": checksum,
            "status": "COMPLETE",
            "tag": "MFTP7E",
            "filled_quantity": 5,
            "quantity": 5,
            "average_price": 1500.5,
            "status_message": null,
            "tradingsymbol": "INFY"
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn a_good_checksum_gives_the_update() {
        let sum = checksum("220303000308932", "2026-11-30 10:15:02", "s3cret");
        let u = verify(&body(&sum), Some("s3cret")).expect("verified");
        assert_eq!(u.tag.as_deref(), Some("MFTP7E"));
        assert_eq!(u.status, BrokerStatus::Complete);
        assert_eq!(u.filled_quantity, 5);
        assert_eq!(
            u.quantity,
            Some(5),
            "the order's whole quantity, as Kite holds it"
        );
        assert_eq!(u.average_price, Paise(150050));
        assert_eq!(u.at.to_rfc3339(), "2026-11-30T04:45:03+00:00");
    }

    #[test]
    fn bad_missing_or_unverifiable_checksums_are_refused() {
        let sum = checksum("220303000308932", "2026-11-30 10:15:02", "other");
        assert_eq!(
            verify(&body(&sum), Some("s3cret")),
            Err(PostbackError::BadChecksum)
        );
        assert_eq!(
            verify(&body(""), Some("s3cret")),
            Err(PostbackError::BadChecksum)
        );
        assert_eq!(verify(&body(&sum), None), Err(PostbackError::NoSecret));
        assert!(matches!(
            verify(b"not json", Some("s3cret")),
            Err(PostbackError::Malformed(_))
        ));
    }
}
