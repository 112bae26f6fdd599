//! The handler's market side: Kite login (link, callback, pasted token), session expiry with
//! one alert, fresh candles and the stale-data rule before scans, the instruments refresh, live
//! prices for risk checks and views, and the `/kill test` drill.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};

use super::{Handler, HandlerError};
use crate::domain::{Actor, InstrumentKey, Paise};
use crate::market::session::{SessionError, parse_login_input};
use crate::market::{MarketError, MarketLink, NoProgress, fetch_history_with_clock};
use crate::ports::{Alert, ClosedPosition, KillTestReport, Reply};
use crate::texts;

/// A price for risk checks and views: live when the ticker has one, else the latest stored
/// candle's close (timed at the candle's end).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct PricePoint {
    pub price: Paise,
    pub at: Option<DateTime<Utc>>,
}

impl Handler {
    /// Connects the handler to the market: calendar, Kite session, live prices.
    pub fn with_market(mut self, link: Arc<MarketLink>) -> Self {
        self.market = Some(link);
        self
    }

    pub fn market(&self) -> Option<&Arc<MarketLink>> {
        self.market.as_ref()
    }

    fn link(&self) -> Result<&Arc<MarketLink>, HandlerError> {
        self.market.as_ref().ok_or(HandlerError::NoMarket)
    }

    /// The Kite session for /status and the status page.
    pub(super) fn kite_line(&self) -> Option<String> {
        let link = self.market.as_ref()?;
        if !link.session.configured() {
            return None;
        }
        Some(match link.session.current() {
            Ok(s) => texts::kite_session_line(s.expires_at, &s.user_id, self.clock.now()),
            Err(e) => e.to_string(),
        })
    }

    /// Why a scheduled job should not run today (weekend or NSE holiday), if so. Re-reads the
    /// holidays first, so an import (`mft data holidays import`) counts without a restart.
    pub(super) async fn closed_today(&self) -> Option<String> {
        let link = self.market.as_ref()?;
        if let Err(e) = link.calendar.reload(&self.store).await {
            tracing::warn!(error = %e, "could not re-read the holidays; using the loaded ones");
        }
        let today = self.clock.today_ist();
        link.calendar
            .closed_reason(today)
            .map(|r| texts::market_closed(today, &r))
    }

    /// `/login`, the login-link job and `/login <pasted>`.
    pub(super) async fn login(
        &self,
        input: Option<String>,
        actor: Actor,
    ) -> Result<Reply, HandlerError> {
        let link = self.link()?;
        match input.filter(|i| !i.trim().is_empty()) {
            None => {
                if actor == Actor::Scheduler
                    && let Some(reason) = self.closed_today().await
                {
                    return Ok(Reply::Skipped { reason });
                }
                let url = link.session.new_login_link().await.map_err(session_err)?;
                if actor == Actor::Scheduler {
                    self.notify(Alert::LoginLink { url: url.clone() }).await;
                }
                Ok(Reply::LoginLink { url })
            }
            Some(text) => {
                let (token, state) = match parse_login_input(&text) {
                    Ok(x) => x,
                    Err(e) => {
                        return Ok(Reply::LoginRefused {
                            reason: e.to_string(),
                        });
                    }
                };
                if let Some(state) = state
                    && let Err(e) = link.session.take_state(&state).await
                {
                    return refused_or_err(e);
                }
                self.exchange(&token, actor).await
            }
        }
    }

    /// GET /kite/callback: the state is checked before anything else is done.
    pub(super) async fn kite_callback(
        &self,
        request_token: Option<String>,
        state: Option<String>,
        status: Option<String>,
    ) -> Result<Reply, HandlerError> {
        let link = self.link()?;
        let refuse = |reason: String| Ok(Reply::LoginRefused { reason });
        match status.as_deref() {
            Some("success") => {}
            Some(other) => {
                return refuse(texts::login_refused::status(other));
            }
            None => return refuse(texts::login_refused::NO_STATUS.into()),
        }
        let Some(state) = state.filter(|s| !s.is_empty()) else {
            return refuse(texts::login_refused::NO_STATE.into());
        };
        let token = request_token.unwrap_or_default();
        if let Err(e) = crate::market::session::check_request_token(&token) {
            return refuse(texts::login_refused::bad_token(&e));
        }
        if let Err(e) = link.session.take_state(&state).await {
            return refused_or_err(e);
        }
        self.exchange(&token, Actor::Cli).await
    }

    async fn exchange(&self, token: &str, actor: Actor) -> Result<Reply, HandlerError> {
        let link = self.link()?;
        let s = link.session.exchange(token).await.map_err(session_err)?;
        let expires_at = s.expires_at.unwrap_or_else(|| self.clock.now());
        let until = texts::session_until(expires_at, self.clock.now());
        // The chat hears about a login it did not type itself (callback, CLI).
        if !matches!(actor, Actor::Telegram { .. }) {
            self.notify(Alert::SessionActive {
                user_id: s.user_id.clone(),
                expires_at,
                until: until.clone(),
            })
            .await;
        }
        Ok(Reply::LoggedIn {
            user_id: s.user_id,
            user_name: s.user_name,
            expires_at,
            until,
        })
    }

    /// Ends the session once and alerts with a fresh login button.
    pub async fn session_expired(&self, reason: &str) {
        let Some(link) = self.market.as_ref() else {
            return;
        };
        match link.session.expire(reason).await {
            Ok(true) => {
                let login_url = link.session.new_login_link().await.ok();
                self.notify(Alert::SessionExpired {
                    reason: reason.to_string(),
                    login_url,
                })
                .await;
            }
            Ok(false) => {}
            Err(e) => tracing::error!(error = %e, "could not mark the Kite session expired"),
        }
    }

    /// Expires the session when its 06:00 IST has passed (called every few seconds by `run`).
    pub async fn check_session_expiry(&self) {
        let Some(link) = self.market.as_ref() else {
            return;
        };
        if let Ok(s) = link.session.current()
            && s.expires_at.is_some_and(|at| at <= self.clock.now())
        {
            self.session_expired("the daily session ended at 06:00 IST")
                .await;
        }
    }

    /// Maps a Kite failure; a TokenException ends the session (one alert).
    pub(super) async fn kite_failed(&self, e: MarketError) -> HandlerError {
        if e.is_session_expired() {
            self.session_expired("Kite answered TokenException").await;
            return HandlerError::Session(SessionError::Expired);
        }
        HandlerError::Market(e)
    }

    /// The daily instruments refresh (the exchanges of the watchlist).
    pub(super) async fn refresh_instruments(&self, actor: Actor) -> Result<Reply, HandlerError> {
        if actor == Actor::Scheduler
            && let Some(reason) = self.closed_today().await
        {
            return Ok(Reply::Skipped { reason });
        }
        let link = self.link()?;
        let reader = link.session.reader().map_err(session_err)?;
        let mut exchanges: Vec<String> = self
            .settings
            .trading
            .watchlist
            .iter()
            .map(|k| k.exchange.clone())
            .collect();
        exchanges.sort();
        exchanges.dedup();
        let mut changed = 0u32;
        for ex in exchanges {
            match crate::market::sync_instruments(&self.store, &reader, Some(&ex)).await {
                Ok(r) => changed += u32::try_from(r.written).unwrap_or(u32::MAX),
                Err(e) => return Err(self.kite_failed(e).await),
            }
        }
        Ok(Reply::Done { changed })
    }

    /// Before a scan: fetch the missing closed candles of `keys` (when a session exists), then
    /// split them into fresh ones and stale lines.
    pub(super) async fn prepare_scan(
        &self,
        keys: Vec<InstrumentKey>,
    ) -> (Vec<InstrumentKey>, Vec<String>) {
        let Some(link) = self.market.as_ref() else {
            return (keys, Vec::new());
        };
        if !link.session.configured() {
            return (keys, Vec::new());
        }
        let interval = self.settings.trading.interval;
        let now = self.clock.now();
        if let Ok(reader) = link.session.reader() {
            let today = self.clock.today_ist();
            let per_day = (375 / interval.minutes()).max(1) as usize;
            let days = (self.settings.trading.lookback_bars / per_day + 1) * 7 / 5 + 4;
            let from = today - Duration::days(days as i64);
            for k in &keys {
                let r = fetch_history_with_clock(
                    &self.store,
                    &reader,
                    k,
                    interval,
                    from,
                    today,
                    &mut NoProgress,
                    self.clock.as_ref(),
                )
                .await;
                if let Err(e) = r {
                    if e.is_session_expired() {
                        self.session_expired("Kite answered TokenException").await;
                        break;
                    }
                    tracing::warn!(instrument = %k, error = %e, "could not fetch fresh candles");
                }
            }
        }
        let expected = link.calendar.expected_last_candle(now, interval);
        let mut fresh = Vec::new();
        let mut stale = Vec::new();
        for k in keys {
            let last = match self.store.last_candles(&k, interval, 1).await {
                Ok(c) => c.last().map(|c| c.ts),
                Err(e) => {
                    tracing::warn!(instrument = %k, error = %e, "cannot read the last candle");
                    None
                }
            };
            if last.is_some_and(|t| t >= expected) {
                fresh.push(k);
            } else {
                stale.push(texts::stale_data(&k.to_string(), last, expected));
            }
        }
        (fresh, stale)
    }

    /// The freshest price of `key`: the ticker's, else the last stored candle's close.
    pub(super) async fn price_point(
        &self,
        key: &InstrumentKey,
    ) -> Result<Option<PricePoint>, crate::store::StoreError> {
        if let Some(lp) = self.market.as_ref().and_then(|l| l.prices.get(key)) {
            return Ok(Some(PricePoint {
                price: lp.price,
                at: Some(lp.at),
            }));
        }
        let interval = self.settings.trading.interval;
        let candles = self.store.last_candles(key, interval, 1).await?;
        if let Some(c) = candles.last() {
            return Ok(Some(PricePoint {
                price: Paise::from_rupees_f64(c.close),
                at: Some(c.ts + Duration::minutes(interval.minutes())),
            }));
        }
        Ok(self
            .store
            .last_price(key, interval)
            .await?
            .map(|price| PricePoint { price, at: None }))
    }

    /// Whether entries need a live price right now (market open and a session to get one).
    pub(super) fn freshness_required(&self) -> Option<u64> {
        let link = self.market.as_ref()?;
        let open = link.calendar.is_market_open(self.clock.now());
        (open && link.session.current().is_ok()).then_some(self.settings.risk.max_price_age_seconds)
    }

    /// `/kill test`: what a kill would cancel and close; records the drill, changes nothing else.
    pub(super) async fn kill_test(&self, actor: Actor) -> Result<Reply, HandlerError> {
        let orders = self.store.open_orders().await?;
        let positions = self.store.open_positions().await?;
        let mut would_close = Vec::new();
        for p in positions {
            let price = self
                .price_point(&p.key)
                .await?
                .map_or(p.avg_price, |x| x.price);
            would_close.push(ClosedPosition {
                key: p.key.clone(),
                quantity: p.quantity,
                price,
                pnl: p.unrealized(price),
            });
        }
        let report = KillTestReport {
            would_cancel: orders
                .iter()
                .map(|o| texts::order_ref(&o.request.tag, &o.request.key))
                .collect(),
            would_close,
            at: self.clock.now(),
        };
        self.store
            .log_trade_event(
                self.clock.now(),
                "kill_test",
                None,
                None,
                &texts::kill_test_logged(
                    actor,
                    report.would_cancel.len(),
                    report.would_close.len(),
                ),
            )
            .await?;
        Ok(Reply::KillTest(report))
    }
}

fn session_err(e: SessionError) -> HandlerError {
    HandlerError::Session(e)
}

fn refused_or_err(e: SessionError) -> Result<Reply, HandlerError> {
    match e {
        SessionError::BadLogin(reason) => Ok(Reply::LoginRefused { reason }),
        other => Err(session_err(other)),
    }
}
