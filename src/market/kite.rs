//! Read-only Kite client for market data: instruments dump and historical candles, with bounded
//! retries (429, network errors) and historical-request pacing.

use super::MarketError;
use super::rate::RateLimiter;
use crate::config::{KiteSettings, Settings};
use crate::domain::{Candle, Interval};
use chrono::{NaiveDateTime, Utc};
use kiteconnect::error::ErrorKind;
use kiteconnect::{AccessToken, KiteConnect};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Kite reads for market data. Cheap to clone; clones share the connection pool and the limiter.
#[derive(Clone)]
pub struct KiteReader {
    client: KiteConnect,
    settings: KiteSettings,
    historical_limiter: Arc<RateLimiter>,
}

impl std::fmt::Debug for KiteReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KiteReader")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// What one failed attempt means for the retry loop.
enum Attempt {
    /// Worth another try after a pause (429, network, gateway errors); the text says what happened.
    Retry(String),
    Fatal(MarketError),
}

impl KiteReader {
    /// From ZERODHA_API_URL, ZERODHA_API_KEY, ZERODHA_ACCESS_TOKEN and `[kite]`.
    pub fn from_settings(settings: &Settings) -> Result<KiteReader, MarketError> {
        let z = &settings.zerodha;
        let api_key = z
            .api_key
            .as_ref()
            .map(|s| s.expose())
            .filter(|s| !s.trim().is_empty())
            .ok_or(MarketError::MissingCredential("ZERODHA_API_KEY"))?;
        let access_token = z
            .access_token
            .as_ref()
            .map(|s| s.expose())
            .filter(|s| !s.trim().is_empty())
            .ok_or(MarketError::MissingCredential("ZERODHA_ACCESS_TOKEN"))?;
        KiteReader::new(&z.api_url, api_key, access_token, settings.kite.clone())
    }

    /// A reader against `api_url` (no path; e.g. `https://api.kite.trade` or a local fake).
    pub fn new(
        api_url: &str,
        api_key: &str,
        access_token: &str,
        kite_settings: KiteSettings,
    ) -> Result<KiteReader, MarketError> {
        if api_key.trim().is_empty() {
            return Err(MarketError::MissingCredential("ZERODHA_API_KEY"));
        }
        if access_token.trim().is_empty() {
            return Err(MarketError::MissingCredential("ZERODHA_ACCESS_TOKEN"));
        }
        let token = AccessToken::new(access_token)
            .map_err(|e| MarketError::Config(format!("ZERODHA_ACCESS_TOKEN: {e}")))?;
        let client = KiteConnect::builder(api_key)
            .base_url(api_url.trim_end_matches('/'))
            .access_token(token)
            .app_name("mft")
            .build()
            .map_err(|e| MarketError::Config(format!("ZERODHA_API_URL {api_url:?}: {e}")))?;
        let historical_limiter = Arc::new(RateLimiter::per_second(
            kite_settings.historical_rate_per_sec,
        ));
        Ok(KiteReader {
            client,
            settings: kite_settings,
            historical_limiter,
        })
    }

    /// The raw CSV of `GET /instruments` (or `/instruments/{exchange}`). Kite may answer a CSV
    /// endpoint with a JSON error envelope and HTTP 200: that becomes the matching error.
    pub async fn instruments_csv(&self, exchange: Option<&str>) -> Result<Vec<u8>, MarketError> {
        let what = match exchange {
            Some(ex) => format!("Kite instruments dump for {ex}"),
            None => "Kite instruments dump".to_string(),
        };
        let body = self
            .with_retries(&what, None, || async {
                let call = match exchange {
                    Some(ex) => self.client.instruments_by_exchange(ex),
                    None => self.client.instruments(),
                };
                call.response().await
            })
            .await?
            .body()
            .to_vec();
        if body.trim_ascii_start().starts_with(b"{") {
            return Err(envelope_error(&what, &body));
        }
        Ok(body)
    }

    /// `GET /instruments/historical/{token}/{interval}` between two IST wall times, paced at
    /// `[kite] historical_rate_per_sec` request starts per second (retries included).
    pub async fn historical(
        &self,
        instrument_token: i64,
        interval: Interval,
        from: NaiveDateTime,
        to: NaiveDateTime,
        oi: bool,
    ) -> Result<Vec<Candle>, MarketError> {
        let token = u32::try_from(instrument_token).map_err(|_| MarketError::Request {
            what: "Kite historical data".into(),
            detail: format!("instrument_token {instrument_token} is outside Kite's range"),
        })?;
        let what = format!(
            "Kite historical data ({interval}, token {token}, {} to {})",
            from.format("%Y-%m-%d %H:%M:%S"),
            to.format("%Y-%m-%d %H:%M:%S")
        );
        let limiter = Arc::clone(&self.historical_limiter);
        let rows = self
            .with_retries(&what, Some(&limiter), || {
                self.client
                    .historical_data(token, interval.as_str(), from, to, false, oi)
                    .into_future()
            })
            .await?;
        rows.into_iter()
            .map(|c| {
                let volume = i64::try_from(c.volume).map_err(|_| MarketError::Request {
                    what: what.clone(),
                    detail: format!("volume {} at {} is out of range", c.volume, c.date),
                })?;
                Ok(Candle {
                    ts: c.date.with_timezone(&Utc),
                    open: c.open,
                    high: c.high,
                    low: c.low,
                    close: c.close,
                    volume,
                    oi: c.oi,
                })
            })
            .collect()
    }

    /// `GET /user/profile`: proves the session is valid.
    pub async fn profile(&self) -> Result<kiteconnect::UserProfile, MarketError> {
        self.with_retries("Kite profile", None, || self.client.profile().into_future())
            .await
    }

    /// `GET /user/margins`: the equity segment's net available margin, in paise.
    pub async fn equity_margin(&self) -> Result<crate::domain::Paise, MarketError> {
        let m = self
            .with_retries("Kite margins", None, || self.client.margins().into_future())
            .await?;
        Ok(crate::domain::Paise((m.equity.net * 100.0).round() as i64))
    }

    /// `GET /quote/ltp` for `EXCHANGE:SYMBOL` names: name -> last price (rupees).
    pub async fn ltp(
        &self,
        names: &[String],
    ) -> Result<std::collections::HashMap<String, f64>, MarketError> {
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let map = self
            .with_retries("Kite last prices", None, || {
                self.client.ltp(&refs).into_future()
            })
            .await?;
        Ok(map.into_iter().map(|(k, v)| (k, v.last_price)).collect())
    }

    /// Starts kiteconnect's ticker WebSocket at `url` with this reader's token (it reconnects
    /// with backoff by itself; an auth rejection closes it).
    pub fn ticker(
        &self,
        url: &str,
    ) -> Result<(kiteconnect::KiteTicker, kiteconnect::TickerEvents), MarketError> {
        let u = url::Url::parse(url)
            .map_err(|e| MarketError::Config(format!("ZERODHA_TICKER_URL {url:?}: {e}")))?;
        self.client
            .ticker()
            .url(u)
            .spawn()
            .map_err(|e| MarketError::Config(format!("ZERODHA_TICKER_URL {url:?}: {e}")))
    }

    /// Runs `op` up to `1 + max_retries` times; only 429 and network failures are retried, with
    /// a delay of `retry_backoff_ms * 2^n`.
    async fn with_retries<T, F, Fut>(
        &self,
        what: &str,
        limiter: Option<&RateLimiter>,
        mut op: F,
    ) -> Result<T, MarketError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = kiteconnect::Result<T>>,
    {
        let max_retries = self.settings.max_retries;
        let mut attempt: u32 = 0;
        loop {
            if let Some(l) = limiter {
                l.acquire().await;
            }
            let err = match op().await {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            match classify(what, err) {
                Attempt::Fatal(e) => return Err(e),
                Attempt::Retry(last) => {
                    if attempt >= max_retries {
                        return Err(MarketError::RetriesExhausted {
                            what: what.to_string(),
                            attempts: attempt + 1,
                            retries: max_retries,
                            last,
                        });
                    }
                    let delay = backoff(self.settings.retry_backoff_ms, attempt);
                    tracing::warn!(
                        "{what}: {last}; retry {} of {max_retries} in {} ms",
                        attempt + 1,
                        delay.as_millis()
                    );
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
            }
        }
    }
}

/// `base * 2^attempt`, saturating (no overflow with large retry counts).
fn backoff(base_ms: u64, attempt: u32) -> Duration {
    Duration::from_millis(base_ms.saturating_mul(1u64.checked_shl(attempt).unwrap_or(u64::MAX)))
}

fn classify(what: &str, err: kiteconnect::Error) -> Attempt {
    use kiteconnect::Error as E;
    crate::metrics::record_kite_error(match &err {
        E::Api(api) if api.is_session_expired() => "session",
        E::Api(_) => "api",
        E::Http { .. } => "http",
        E::Transport(_) => "network",
        _ => "other",
    });
    match err {
        E::Api(api) if api.is_session_expired() => Attempt::Fatal(MarketError::SessionExpired),
        E::Api(api) if api.status == 429 || api.kind == ErrorKind::Network => {
            Attempt::Retry(format!("HTTP {} {}: {}", api.status, api.kind, api.message))
        }
        E::Api(api) => Attempt::Fatal(MarketError::Kite {
            error_type: api.kind.to_string(),
            message: api.message,
            status: api.status,
        }),
        E::Http { status, path } if matches!(status, 429 | 502 | 503 | 504) => {
            Attempt::Retry(format!("HTTP {status} from {path}"))
        }
        E::Transport(source) => Attempt::Retry(format!("network error: {}", chain(&*source))),
        other => Attempt::Fatal(MarketError::Request {
            what: what.to_string(),
            detail: chain(&other),
        }),
    }
}

/// An error and its causes on one line (reqwest hides the useful part in the source chain).
fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    kiteconnect::error::sanitize_error(&text)
}

/// A JSON envelope where CSV was expected (Kite does this with HTTP 200).
fn envelope_error(what: &str, body: &[u8]) -> MarketError {
    crate::metrics::record_kite_error("api");
    #[derive(serde::Deserialize)]
    struct Envelope {
        status: Option<String>,
        message: Option<String>,
        error_type: Option<String>,
    }
    match serde_json::from_slice::<Envelope>(body) {
        Ok(env) if env.status.as_deref() != Some("success") => {
            let error_type = env.error_type.unwrap_or_else(|| "Unknown".to_string());
            if error_type == "TokenException" {
                MarketError::SessionExpired
            } else {
                MarketError::Kite {
                    error_type,
                    message: env.message.unwrap_or_default(),
                    status: 200,
                }
            }
        }
        _ => MarketError::Request {
            what: what.to_string(),
            detail: "Kite sent JSON where a CSV dump was expected".to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_saturates() {
        assert_eq!(backoff(500, 0), Duration::from_millis(500));
        assert_eq!(backoff(500, 1), Duration::from_millis(1000));
        assert_eq!(backoff(500, 3), Duration::from_millis(4000));
        assert_eq!(backoff(500, 80), Duration::from_millis(u64::MAX));
    }

    #[test]
    fn missing_credentials_name_the_variable() {
        let err = KiteReader::new("http://127.0.0.1:1", "", "tok", KiteSettings::default())
            .expect_err("blank key");
        assert!(err.to_string().contains("ZERODHA_API_KEY"), "{err}");
        let err = KiteReader::new("http://127.0.0.1:1", "key", " ", KiteSettings::default())
            .expect_err("blank token");
        assert!(err.to_string().contains("ZERODHA_ACCESS_TOKEN"), "{err}");
    }

    #[test]
    fn from_settings_names_the_missing_variable() {
        use crate::config::Secret;
        let mut settings = Settings::default();
        let err = KiteReader::from_settings(&settings).expect_err("no key");
        assert!(
            err.to_string().starts_with("ZERODHA_API_KEY is not set"),
            "{err}"
        );
        settings.zerodha.api_key = Some(Secret::new("key"));
        let err = KiteReader::from_settings(&settings).expect_err("no token");
        assert!(
            err.to_string()
                .starts_with("ZERODHA_ACCESS_TOKEN is not set"),
            "{err}"
        );
        settings.zerodha.access_token = Some(Secret::new("tok"));
        assert!(KiteReader::from_settings(&settings).is_ok());
    }

    #[test]
    fn a_url_with_a_path_is_a_config_error() {
        let err = KiteReader::new(
            "http://127.0.0.1:1/api",
            "key",
            "tok",
            KiteSettings::default(),
        )
        .expect_err("path");
        assert!(matches!(err, MarketError::Config(_)), "{err}");
        assert!(err.to_string().contains("ZERODHA_API_URL"), "{err}");
    }

    #[test]
    fn json_where_csv_was_expected_is_a_kite_error() {
        let err = envelope_error(
            "dump",
            br#"{"status":"error","message":"invalid exchange","data":null,"error_type":"InputException"}"#,
        );
        assert_eq!(
            err.to_string(),
            "Kite error InputException: invalid exchange"
        );
        let err = envelope_error(
            "dump",
            br#"{"status":"error","message":"x","error_type":"TokenException"}"#,
        );
        assert!(err.is_session_expired());
    }
}
