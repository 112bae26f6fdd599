//! The Kite session: the daily access token, encrypted at rest (XChaCha20-Poly1305), the
//! single-use login states, and the provider every Kite call of the service reads its current
//! token from (a new login takes effect without a restart; 06:00 IST or a TokenException ends it).

use std::sync::{Arc, Mutex, RwLock};

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use chrono::{DateTime, Duration, NaiveTime, TimeZone, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::{KiteReader, MarketError};
use crate::clock::{Clock, IST};
use crate::config::{Secret, Settings, parse_secret_key};
use crate::store::{StateCheck, Store, StoreError};

/// Kite's browser login page.
pub const KITE_LOGIN_URL: &str = "https://kite.zerodha.com/connect/login";
/// How long a login link (its state) stays valid.
pub const LOGIN_STATE_TTL_MINUTES: i64 = 15;
const AAD: &[u8] = b"mft-1 kite access token v1";
const HKDF_SALT: &[u8] = b"mft-1 session key";
const HKDF_INFO: &[u8] = b"kite access token at rest";

/// Failures of the session and the login flow. Texts are shown to the operator: no secrets.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("{0} is not set: add it to .env (from the Kite Connect developer console) to log in")]
    MissingCredential(&'static str),
    #[error("Kite session expired: tap Log in")]
    Expired,
    #[error("not logged in to Kite: send /login (or run `mft login`)")]
    NotLoggedIn,
    /// The redirect or the pasted text is unusable; nothing was stored and Kite was not called.
    #[error("{0}")]
    BadLogin(String),
    #[error("Kite refused the login: {0}. Nothing was stored; send /login for a fresh link")]
    KiteRefused(String),
    #[error(
        "the stored Kite session cannot be decrypted (MFT_SECRET_KEY or ZERODHA_API_SECRET changed?): log in again"
    )]
    Undecryptable,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Market(#[from] MarketError),
}

impl SessionError {
    /// Whether the same login step may succeed when retried without anyone changing anything
    /// (the database or Kite failing for the moment). Everything else needs a fresh login or a
    /// setting.
    pub fn is_recoverable(&self) -> bool {
        match self {
            SessionError::Store(e) => e.is_recoverable(),
            SessionError::Market(e) => e.is_recoverable(),
            SessionError::MissingCredential(_)
            | SessionError::Expired
            | SessionError::NotLoggedIn
            | SessionError::BadLogin(_)
            | SessionError::KiteRefused(_)
            | SessionError::Undecryptable => false,
        }
    }
}

/// Encrypts and decrypts the access token. The key never leaves this type.
pub struct Sealer {
    cipher: XChaCha20Poly1305,
}

/// Where the sealing key came from (a derived key draws a warning at start).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    SecretKey,
    DerivedFromApiSecret,
}

impl Sealer {
    pub fn new(key: [u8; 32]) -> Self {
        Self {
            cipher: XChaCha20Poly1305::new(&key.into()),
        }
    }

    /// MFT_SECRET_KEY when set, else HKDF-SHA256 of ZERODHA_API_SECRET; None without either.
    pub fn from_settings(settings: &Settings) -> Option<(Sealer, KeySource)> {
        let z = &settings.zerodha;
        if let Some(key) = z
            .secret_key
            .as_ref()
            .and_then(|k| parse_secret_key(k.expose()))
        {
            return Some((Sealer::new(key), KeySource::SecretKey));
        }
        let secret = z.api_secret.as_ref().filter(|s| !s.expose().is_empty())?;
        let hk = hkdf::Hkdf::<Sha256>::new(Some(HKDF_SALT), secret.expose().as_bytes());
        let mut key = [0u8; 32];
        hk.expand(HKDF_INFO, &mut key).ok()?;
        Some((Sealer::new(key), KeySource::DerivedFromApiSecret))
    }

    /// base64(nonce || ciphertext), with a fresh random nonce each time.
    pub fn seal(&self, plaintext: &str) -> String {
        let mut nonce = [0u8; 24];
        rand::rng().fill_bytes(&mut nonce);
        let ct = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: AAD,
                },
            )
            .unwrap_or_default();
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        base64::engine::general_purpose::STANDARD.encode(out)
    }

    pub fn open(&self, sealed: &str) -> Option<String> {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(sealed)
            .ok()?;
        if raw.len() < 24 + 16 {
            return None;
        }
        let (nonce, ct) = raw.split_at(24);
        let pt = self
            .cipher
            .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad: AAD })
            .ok()?;
        String::from_utf8(pt).ok()
    }
}

/// The session in use.
#[derive(Debug, Clone)]
pub struct ActiveSession {
    /// Stored row id; None for ZERODHA_ACCESS_TOKEN from the environment.
    pub id: Option<i64>,
    pub user_id: String,
    pub user_name: String,
    pub access_token: Secret,
    pub created_at: DateTime<Utc>,
    /// 06:00 IST after the login; None for the environment token (unknown).
    pub expires_at: Option<DateTime<Utc>>,
}

/// What the provider knows right now.
#[derive(Debug, Clone)]
enum State {
    None,
    Active(ActiveSession),
    Expired { reason: String },
}

/// Kite's access tokens end at 06:00 IST the next morning (or today's 06:00 before it).
pub fn session_expiry(login: DateTime<Utc>) -> DateTime<Utc> {
    let local = login.with_timezone(&IST);
    let six = NaiveTime::from_hms_opt(6, 0, 0).unwrap_or(NaiveTime::MIN);
    let mut day = local.date_naive();
    if local.time() >= six {
        day = day.succ_opt().unwrap_or(day);
    }
    IST.from_local_datetime(&day.and_time(six))
        .earliest()
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or(login + Duration::hours(24))
}

/// Pulls `request_token` (and `state`, `status`) out of a pasted redirect URL or takes a bare token.
pub fn parse_login_input(input: &str) -> Result<(String, Option<String>), SessionError> {
    let input = input.trim();
    if input.is_empty() {
        return Err(SessionError::BadLogin(
            "paste the address Kite redirected to (it contains request_token=...) or the request_token itself".into(),
        ));
    }
    if input.contains("://") || input.contains('?') || input.contains("request_token=") {
        let query = input.split_once('?').map_or(input, |(_, q)| q);
        let query = query.split('#').next().unwrap_or("");
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        if let Some(status) = get("status")
            && status != "success"
        {
            return Err(SessionError::BadLogin(format!(
                "Kite reported the login as {status:?}, not success: log in again"
            )));
        }
        let token = get("request_token").ok_or_else(|| {
            SessionError::BadLogin("the pasted address has no request_token parameter".into())
        })?;
        check_request_token(&token)?;
        return Ok((token, get("state")));
    }
    check_request_token(input)?;
    Ok((input.to_string(), None))
}

/// Kite's request tokens are short alphanumeric strings; anything else is refused before any call.
pub fn check_request_token(token: &str) -> Result<(), SessionError> {
    if token.is_empty() {
        return Err(SessionError::BadLogin("request_token is missing".into()));
    }
    if token.len() > 128 || !token.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(SessionError::BadLogin(
            "request_token is malformed (expected letters and digits only)".into(),
        ));
    }
    Ok(())
}

/// SHA-256 hex of a login state: only the hash is stored.
fn state_hash(state: &str) -> String {
    hex::encode(Sha256::digest(state.as_bytes()))
}

/// The current session for every Kite call of the process; cheap to share (`Arc`).
pub struct SessionProvider {
    store: Store,
    settings: Arc<Settings>,
    clock: Arc<dyn Clock>,
    sealer: Option<Sealer>,
    state: RwLock<State>,
    /// The reader built for the current token (rebuilt when the session changes).
    reader: Mutex<Option<(String, KiteReader)>>,
    generation: tokio::sync::watch::Sender<u64>,
}

impl std::fmt::Debug for SessionProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionProvider").finish_non_exhaustive()
    }
}

impl SessionProvider {
    /// Builds the provider and loads the stored session. Logs a warning when the sealing key is
    /// derived from ZERODHA_API_SECRET.
    pub async fn load(
        store: Store,
        settings: Arc<Settings>,
        clock: Arc<dyn Clock>,
    ) -> Result<SessionProvider, SessionError> {
        let sealer = match Sealer::from_settings(&settings) {
            Some((s, KeySource::DerivedFromApiSecret)) => {
                tracing::warn!(
                    "MFT_SECRET_KEY is not set: the stored Kite session is encrypted with a key derived from ZERODHA_API_SECRET; set MFT_SECRET_KEY (openssl rand -hex 32) to keep them apart"
                );
                Some(s)
            }
            Some((s, KeySource::SecretKey)) => Some(s),
            None => None,
        };
        let (generation, _) = tokio::sync::watch::channel(0);
        let p = SessionProvider {
            store,
            settings,
            clock,
            sealer,
            state: RwLock::new(State::None),
            reader: Mutex::new(None),
            generation,
        };
        p.reload().await?;
        Ok(p)
    }

    fn api_key(&self) -> Result<&str, SessionError> {
        self.settings
            .zerodha
            .api_key
            .as_ref()
            .map(|s| s.expose())
            .filter(|s| !s.trim().is_empty())
            .ok_or(SessionError::MissingCredential("ZERODHA_API_KEY"))
    }

    /// Whether Kite is configured at all (an API key is set).
    pub fn configured(&self) -> bool {
        self.api_key().is_ok()
    }

    /// Re-reads the store: a stored, unexpired session wins over ZERODHA_ACCESS_TOKEN.
    pub async fn reload(&self) -> Result<(), SessionError> {
        let now = self.clock.now();
        let stored = self.store.current_session().await?;
        let state = match stored {
            Some(s) if s.expired_at.is_none() && s.expires_at > now => {
                match self.sealer.as_ref().and_then(|k| k.open(&s.token)) {
                    Some(token) => State::Active(ActiveSession {
                        id: Some(s.id),
                        user_id: s.user_id,
                        user_name: s.user_name,
                        access_token: Secret::new(token),
                        created_at: s.created_at,
                        expires_at: Some(s.expires_at),
                    }),
                    None => {
                        tracing::warn!("{}", SessionError::Undecryptable);
                        self.env_state()
                    }
                }
            }
            _ => self.env_state(),
        };
        self.set_state(state);
        Ok(())
    }

    fn env_state(&self) -> State {
        match self
            .settings
            .zerodha
            .access_token
            .as_ref()
            .filter(|t| !t.expose().trim().is_empty())
        {
            Some(t) => State::Active(ActiveSession {
                id: None,
                user_id: String::new(),
                user_name: String::new(),
                access_token: t.clone(),
                created_at: self.clock.now(),
                expires_at: None,
            }),
            None => State::None,
        }
    }

    fn set_state(&self, state: State) {
        *self.state.write().unwrap_or_else(|e| e.into_inner()) = state;
        *self.reader.lock().unwrap_or_else(|e| e.into_inner()) = None;
        self.generation.send_modify(|g| *g += 1);
    }

    /// Changes whenever the session does (the ticker restarts on it).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// The session in use, or why there is none.
    pub fn current(&self) -> Result<ActiveSession, SessionError> {
        match &*self.state.read().unwrap_or_else(|e| e.into_inner()) {
            State::Active(s) => Ok(s.clone()),
            State::Expired { .. } => Err(SessionError::Expired),
            State::None => Err(SessionError::NotLoggedIn),
        }
    }

    /// Why the last session ended, if it did.
    pub fn expired_reason(&self) -> Option<String> {
        match &*self.state.read().unwrap_or_else(|e| e.into_inner()) {
            State::Expired { reason } => Some(reason.clone()),
            _ => None,
        }
    }

    /// A Kite reader with the current token (shared until the session changes).
    pub fn reader(&self) -> Result<KiteReader, SessionError> {
        let session = self.current()?;
        let token = session.access_token.expose().to_string();
        let mut cached = self.reader.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((t, r)) = cached.as_ref()
            && *t == token
        {
            return Ok(r.clone());
        }
        let r = KiteReader::new(
            &self.settings.zerodha.api_url,
            self.api_key()?,
            &token,
            self.settings.kite.clone(),
        )?;
        *cached = Some((token, r.clone()));
        Ok(r)
    }

    /// A new login link with a fresh single-use state (stored, valid 15 minutes).
    pub async fn new_login_link(&self) -> Result<String, SessionError> {
        let api_key = self.api_key()?.to_string();
        let mut raw = [0u8; 24];
        rand::rng().fill_bytes(&mut raw);
        let nonce = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
        let now = self.clock.now();
        self.store
            .insert_login_state(
                &state_hash(&nonce),
                now,
                now + Duration::minutes(LOGIN_STATE_TTL_MINUTES),
            )
            .await?;
        Ok(login_url(&api_key, &nonce))
    }

    /// Checks a state from a redirect: single use, known, fresh. Consumes it.
    pub async fn take_state(&self, state: &str) -> Result<(), SessionError> {
        let check = if state.is_empty() || state.len() > 256 {
            StateCheck::Unknown
        } else {
            self.store
                .take_login_state(&state_hash(state), self.clock.now())
                .await?
        };
        match check {
            StateCheck::Accepted => Ok(()),
            StateCheck::Unknown => Err(SessionError::BadLogin(
                "this login link is not one MFT-1 issued: send /login for a fresh one".into(),
            )),
            StateCheck::Used => Err(SessionError::BadLogin(
                "this login link was already used: send /login for a fresh one".into(),
            )),
            StateCheck::Expired => Err(SessionError::BadLogin(format!(
                "this login link expired (links are valid {LOGIN_STATE_TTL_MINUTES} minutes): send /login for a fresh one"
            ))),
        }
    }

    /// Exchanges a request token (generate_session: sha256 checksum of api_key + request_token
    /// + api_secret), stores the session encrypted and makes it current.
    pub async fn exchange(&self, request_token: &str) -> Result<ActiveSession, SessionError> {
        check_request_token(request_token)?;
        let api_key = self.api_key()?.to_string();
        let secret = self
            .settings
            .zerodha
            .api_secret
            .as_ref()
            .filter(|s| !s.expose().is_empty())
            .ok_or(SessionError::MissingCredential("ZERODHA_API_SECRET"))?;
        let sealer = self
            .sealer
            .as_ref()
            .ok_or(SessionError::MissingCredential("ZERODHA_API_SECRET"))?;
        let api_secret = kiteconnect::ApiSecret::new(secret.expose())
            .map_err(|e| SessionError::BadLogin(format!("ZERODHA_API_SECRET is unusable: {e}")))?;
        let client = kiteconnect::KiteConnect::builder(api_key.as_str())
            .base_url(self.settings.zerodha.api_url.trim_end_matches('/'))
            .app_name("mft")
            .build()
            .map_err(|e| MarketError::Config(format!("ZERODHA_API_URL: {e}")))?;
        let session = client
            .generate_session(request_token, &api_secret)
            .await
            .map_err(|e| SessionError::KiteRefused(describe(&e)))?;
        let token = session.access_token.expose().to_string();
        let now = self.clock.now();
        let expires_at = session_expiry(now);
        let sealed = sealer.seal(&token);
        let id = self
            .store
            .insert_session(
                &session.profile.user_id,
                &session.profile.user_name,
                &sealed,
                now,
                expires_at,
            )
            .await?;
        let active = ActiveSession {
            id: Some(id),
            user_id: session.profile.user_id.clone(),
            user_name: session.profile.user_name.clone(),
            access_token: Secret::new(token),
            created_at: now,
            expires_at: Some(expires_at),
        };
        self.set_state(State::Active(active.clone()));
        tracing::info!(user = %active.user_id, expires = %expires_at, "Kite session stored");
        Ok(active)
    }

    /// Ends the current session (06:00 IST, or Kite answered TokenException). True only for the
    /// call that ended it, so one alert goes out.
    pub async fn expire(&self, reason: &str) -> Result<bool, SessionError> {
        let current = match &*self.state.read().unwrap_or_else(|e| e.into_inner()) {
            State::Active(s) => Some(s.clone()),
            _ => None,
        };
        let Some(s) = current else {
            return Ok(false);
        };
        if let Some(id) = s.id {
            self.store
                .expire_session(id, self.clock.now(), reason)
                .await?;
        }
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        // Another caller may have replaced or expired it meanwhile.
        let same =
            matches!(&*state, State::Active(x) if x.id == s.id && x.access_token == s.access_token);
        if !same {
            return Ok(false);
        }
        *state = State::Expired {
            reason: reason.to_string(),
        };
        drop(state);
        *self.reader.lock().unwrap_or_else(|e| e.into_inner()) = None;
        self.generation.send_modify(|g| *g += 1);
        tracing::warn!("Kite session ended: {reason}");
        Ok(true)
    }

    /// Expires the session when its 06:00 IST has passed; true when it did now.
    pub async fn expire_if_due(&self) -> Result<bool, SessionError> {
        let due = matches!(
            self.current(),
            Ok(ActiveSession { expires_at: Some(at), .. }) if at <= self.clock.now()
        );
        if due {
            self.expire("the daily session ended at 06:00 IST").await
        } else {
            Ok(false)
        }
    }
}

/// The login URL: `https://kite.zerodha.com/connect/login?api_key=<key>&v=3&redirect_params=<urlencoded "state=<nonce>">`.
pub fn login_url(api_key: &str, nonce: &str) -> String {
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!(
        "{KITE_LOGIN_URL}?api_key={}&v=3&redirect_params={}",
        enc(api_key),
        enc(&format!("state={nonce}"))
    )
}

/// Kite's message for a failed call, without secrets.
pub fn describe(e: &kiteconnect::Error) -> String {
    match e {
        kiteconnect::Error::Api(api) => {
            format!(
                "HTTP {} {}: {}",
                api.status,
                api.kind,
                api.message.trim_end_matches('.')
            )
        }
        other => kiteconnect::error::sanitize_error(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealing_round_trips_and_hides_the_token() {
        let s = Sealer::new([7u8; 32]);
        let a = s.seal("tok_abc123");
        let b = s.seal("tok_abc123");
        assert_ne!(a, b, "fresh nonce each time");
        assert!(!a.contains("tok_abc123"));
        assert_eq!(s.open(&a).as_deref(), Some("tok_abc123"));
        assert_eq!(Sealer::new([8u8; 32]).open(&a), None, "wrong key");
        let mut bad = a.clone();
        bad.replace_range(40..41, if &a[40..41] == "A" { "B" } else { "A" });
        assert_eq!(s.open(&bad), None, "tampered");
    }

    #[test]
    fn keys_from_settings() {
        let mut st = Settings::default();
        assert!(Sealer::from_settings(&st).is_none());
        st.zerodha.api_secret = Some(Secret::new("sec"));
        let (derived, src) = Sealer::from_settings(&st).unwrap();
        assert_eq!(src, KeySource::DerivedFromApiSecret);
        st.zerodha.secret_key = Some(Secret::new("11".repeat(32)));
        let (explicit, src) = Sealer::from_settings(&st).unwrap();
        assert_eq!(src, KeySource::SecretKey);
        assert_eq!(explicit.open(&derived.seal("x")), None, "different keys");
        assert_eq!(parse_secret_key(&"ab".repeat(32)), Some([0xab; 32]));
        let b64 = base64::engine::general_purpose::STANDARD.encode([3u8; 32]);
        assert_eq!(parse_secret_key(&b64), Some([3; 32]));
        assert_eq!(parse_secret_key("short"), None);
    }

    #[test]
    fn the_login_url_is_exact() {
        assert_eq!(
            login_url("kitekey", "n0nce_-x"),
            "https://kite.zerodha.com/connect/login?api_key=kitekey&v=3&redirect_params=state%3Dn0nce_-x"
        );
    }

    #[test]
    fn expiry_is_the_next_six_ist() {
        let at = |d, h, m| {
            IST.with_ymd_and_hms(2026, 11, d, h, m, 0)
                .unwrap()
                .with_timezone(&Utc)
        };
        assert_eq!(session_expiry(at(25, 8, 30)), at(26, 6, 0));
        assert_eq!(session_expiry(at(25, 5, 30)), at(25, 6, 0));
    }

    #[test]
    fn login_input_forms() {
        let (t, s) = parse_login_input(
            "https://mft.example.com/kite/callback?request_token=AbC123&action=login&status=success&state=xyz",
        )
        .unwrap();
        assert_eq!((t.as_str(), s.as_deref()), ("AbC123", Some("xyz")));
        let (t, s) = parse_login_input("  AbC123 ").unwrap();
        assert_eq!((t.as_str(), s), ("AbC123", None));
        for bad in [
            "",
            "a b",
            "https://x/?status=cancelled&request_token=a",
            "https://x/?action=login",
            "tok;drop",
        ] {
            assert!(parse_login_input(bad).is_err(), "{bad:?}");
        }
    }
}
