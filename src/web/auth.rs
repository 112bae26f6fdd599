//! Who may do what on the dashboard.
//!
//! - With STATUS_TOKEN: every page and action needs it, as `Authorization: Bearer <token>` (API
//!   clients, no CSRF: a browser never adds that header by itself) or through the login form,
//!   which stores a session (only its SHA-256 in the database) behind an HttpOnly,
//!   SameSite=Strict cookie; cookie requests that change something must carry the session's CSRF
//!   token. Failed logins (and wrong bearer tokens) are rate-limited per client address and
//!   overall.
//! - Without STATUS_TOKEN: read-only, and only for loopback clients.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::{HeaderMap, header, request::Parts};
use rand::RngCore;
use sha2::{Digest, Sha256};

pub const SESSION_COOKIE: &str = "mft_session";
/// How long a login lasts.
pub const SESSION_HOURS: i64 = 12;
/// Failed logins allowed per client address within [`FAIL_WINDOW`].
pub const FAILS_PER_CLIENT: usize = 5;
/// Failed logins allowed from all clients together within [`FAIL_WINDOW`].
pub const FAILS_OVERALL: usize = 50;
pub const FAIL_WINDOW: Duration = Duration::from_secs(300);

/// The client's address, when the server was started with connect info (`serve_on` does).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub Option<IpAddr>);

impl Peer {
    pub fn is_loopback(&self) -> bool {
        self.0.is_some_and(|ip| match ip {
            IpAddr::V4(v4) => v4.is_loopback(),
            IpAddr::V6(v6) => {
                v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
            }
        })
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Peer(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}

/// What a request may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Token given: may read and act. `csrf` is the session's token for cookie logins (a
    /// change must echo it); None for bearer requests.
    Operator { csrf: Option<String> },
    /// No STATUS_TOKEN configured, loopback client: may read, never act.
    ReadOnly,
    /// A token is configured and this request has none (or a wrong one, or an expired session).
    NeedsLogin,
    /// No STATUS_TOKEN configured and the client is not on loopback.
    NotLoopback,
}

impl Access {
    pub fn can_read(&self) -> bool {
        matches!(self, Access::Operator { .. } | Access::ReadOnly)
    }

    pub fn can_act(&self) -> bool {
        matches!(self, Access::Operator { .. })
    }
}

/// Compares two secrets in constant time: both are hashed to SHA-256 digests first, so neither
/// the position of the first differing byte nor a length mismatch changes the time taken, and
/// the digests are compared with `subtle`'s constant-time equality.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use sha2::{Digest, Sha256};
    use subtle::ConstantTimeEq;
    let da = Sha256::digest(a);
    let db = Sha256::digest(b);
    da.as_slice().ct_eq(db.as_slice()).into()
}

/// The bearer token of the request, if any.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
}

/// The value of cookie `name`, if sent.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// 32 random bytes as hex (session ids, CSRF tokens, generated STATUS_TOKENs).
pub fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// What the database keeps of a session id: a hash over the STATUS_TOKEN and the id, so the
/// database never holds a usable cookie and changing STATUS_TOKEN ends every session.
pub fn session_hash(token: &str, id: &str) -> String {
    let mut h = Sha256::new();
    h.update(token.as_bytes());
    h.update([0u8]);
    h.update(id.as_bytes());
    hex::encode(h.finalize())
}

/// The Set-Cookie value of a new session; `Secure` when the browser reached us over HTTPS
/// (a TLS-terminating proxy says so in X-Forwarded-Proto).
pub fn session_cookie(id: &str, https: bool) -> String {
    format!(
        "{SESSION_COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{}",
        SESSION_HOURS * 3600,
        if https { "; Secure" } else { "" }
    )
}

/// The request came through a proxy that terminated HTTPS.
pub fn via_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
}

/// The Set-Cookie value that removes the session cookie.
pub fn clear_cookie() -> String {
    format!("{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0")
}

/// Failed logins per client address and overall, in a sliding window.
#[derive(Debug, Default)]
pub struct LoginLimiter {
    fails: Mutex<HashMap<Option<IpAddr>, Vec<Instant>>>,
}

impl LoginLimiter {
    fn prune(map: &mut HashMap<Option<IpAddr>, Vec<Instant>>, now: Instant) {
        map.retain(|_, v| {
            v.retain(|t| now.duration_since(*t) < FAIL_WINDOW);
            !v.is_empty()
        });
    }

    /// When the client may try again, if it is blocked now.
    pub fn blocked(&self, peer: Peer) -> Option<Duration> {
        let now = Instant::now();
        let mut map = self.fails.lock().unwrap_or_else(|e| e.into_inner());
        Self::prune(&mut map, now);
        let wait = |v: &[Instant]| {
            v.iter()
                .min()
                .map(|t| FAIL_WINDOW.saturating_sub(now.duration_since(*t)))
                .unwrap_or_default()
        };
        if let Some(v) = map.get(&peer.0)
            && v.len() >= FAILS_PER_CLIENT
        {
            return Some(wait(v));
        }
        let all: Vec<Instant> = map.values().flatten().copied().collect();
        (all.len() >= FAILS_OVERALL).then(|| wait(&all))
    }

    pub fn fail(&self, peer: Peer) {
        let now = Instant::now();
        let mut map = self.fails.lock().unwrap_or_else(|e| e.into_inner());
        Self::prune(&mut map, now);
        map.entry(peer.0).or_default().push(now);
    }
}

/// A local path to go back to after a login or an action (never another site).
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.into(),
        _ => "/".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn bearer_and_cookie_parsing() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer s3cret"),
        );
        assert_eq!(bearer(&h), Some("s3cret"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic s3cret"),
        );
        assert_eq!(bearer(&h), None);
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; mft_session=abc; b=2"),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "c"), None);
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        // A length mismatch goes through the same digest comparison (no early return).
        assert!(!constant_time_eq(b"s3cret", b"s3cret-and-more"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn limiter_blocks_after_the_allowed_failures() {
        let l = LoginLimiter::default();
        let a = Peer(Some("10.0.0.1".parse().unwrap()));
        let b = Peer(Some("10.0.0.2".parse().unwrap()));
        for _ in 0..FAILS_PER_CLIENT {
            assert!(l.blocked(a).is_none());
            l.fail(a);
        }
        let wait = l.blocked(a).expect("blocked");
        assert!(wait <= FAIL_WINDOW && wait > Duration::from_secs(200));
        assert!(l.blocked(b).is_none(), "another client is not blocked");
    }

    #[test]
    fn loopback_and_next() {
        assert!(Peer(Some("127.0.0.1".parse().unwrap())).is_loopback());
        assert!(Peer(Some("::1".parse().unwrap())).is_loopback());
        assert!(Peer(Some("::ffff:127.0.0.1".parse().unwrap())).is_loopback());
        assert!(!Peer(Some("192.168.1.2".parse().unwrap())).is_loopback());
        assert!(!Peer(None).is_loopback());
        assert_eq!(safe_next(Some("/queue")), "/queue");
        assert_eq!(safe_next(Some("//evil.example")), "/");
        assert_eq!(safe_next(Some("https://evil.example")), "/");
        assert_eq!(safe_next(None), "/");
        assert_ne!(random_token(), random_token());
        assert_eq!(session_hash("t", "x").len(), 64);
        assert_ne!(session_hash("t", "x"), session_hash("u", "x"));
    }
}
