//! Live prices: the latest traded price of each instrument with its time, fed by kiteconnect's
//! ticker WebSocket (LTP mode) for the watchlist and open positions while a session exists and
//! the market is open. Risk checks, paper fills, P&L and the status views read it. The same
//! connection's order messages go to an [`OnOrderUpdate`] callback (the service merges them).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use kiteconnect::{CloseReason, Mode, TickerEvent};
use tokio_util::sync::CancellationToken;

use super::calendar::MarketCalendar;
use super::session::SessionProvider;
use crate::clock::Clock;
use crate::config::Settings;
use crate::domain::{InstrumentKey, Paise};
use crate::store::Store;

/// A price and when it was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LivePrice {
    pub price: Paise,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Default)]
struct Book {
    /// instrument token -> instrument key (from the stored instruments dump).
    keys: HashMap<u32, InstrumentKey>,
    prices: HashMap<InstrumentKey, LivePrice>,
}

/// The price cache. Cheap to share (`Arc`); one short write lock per WebSocket frame.
#[derive(Debug, Default)]
pub struct PriceCache {
    book: RwLock<Book>,
}

/// What applying one frame did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    pub updated: usize,
    /// Ticks for unknown tokens, or without a usable price (malformed): ignored.
    pub ignored: usize,
}

impl PriceCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// Maps instrument tokens to keys (the ticker speaks tokens).
    pub fn set_tokens(&self, tokens: impl IntoIterator<Item = (u32, InstrumentKey)>) {
        let mut b = self.book.write().unwrap_or_else(|e| e.into_inner());
        b.keys = tokens.into_iter().collect();
    }

    /// Records a price seen at `at` (ignored when older than what is cached).
    pub fn set(&self, key: &InstrumentKey, price: Paise, at: DateTime<Utc>) {
        let mut b = self.book.write().unwrap_or_else(|e| e.into_inner());
        let entry = b
            .prices
            .entry(key.clone())
            .or_insert(LivePrice { price, at });
        if at >= entry.at {
            *entry = LivePrice { price, at };
        }
    }

    /// Applies one frame of ticks received at `at`. Non-finite, zero or negative prices and
    /// unknown tokens are ignored (a malformed tick never becomes a price).
    pub fn apply_ticks(&self, ticks: &[kiteconnect::Tick], at: DateTime<Utc>) -> Applied {
        let mut out = Applied::default();
        let mut b = self.book.write().unwrap_or_else(|e| e.into_inner());
        let Book { keys, prices } = &mut *b;
        for t in ticks {
            let price = match t.last_price {
                Some(p) if p.is_finite() && p > 0.0 && p < 1e12 => {
                    Paise((p * 100.0).round() as i64)
                }
                _ => {
                    out.ignored += 1;
                    continue;
                }
            };
            let Some(key) = keys.get(&t.instrument_token) else {
                out.ignored += 1;
                continue;
            };
            match prices.get_mut(key) {
                Some(lp) => {
                    if at >= lp.at {
                        *lp = LivePrice { price, at };
                    }
                }
                None => {
                    prices.insert(key.clone(), LivePrice { price, at });
                }
            }
            out.updated += 1;
        }
        out
    }

    pub fn get(&self, key: &InstrumentKey) -> Option<LivePrice> {
        self.book
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .prices
            .get(key)
            .copied()
    }

    pub fn len(&self) -> usize {
        self.book
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .prices
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Everything the service needs to be connected to the market.
pub struct MarketLink {
    pub calendar: Arc<MarketCalendar>,
    pub session: Arc<SessionProvider>,
    pub prices: Arc<PriceCache>,
}

/// Called with a reason when Kite rejects the token (the handler marks the session expired and
/// alerts once).
pub type OnRejected = Arc<dyn Fn(String) + Send + Sync>;

/// Called with each order update the ticker receives as a text message (the service merges it
/// like a postback).
pub type OnOrderUpdate = Arc<dyn Fn(Box<kiteconnect::Order>) + Send + Sync>;

/// Instruments to subscribe: the watchlist plus open positions, with their tokens from the
/// stored instruments dump (instruments missing from it are logged and skipped).
async fn wanted_tokens(store: &Store, settings: &Settings) -> HashMap<u32, InstrumentKey> {
    let mut keys: Vec<InstrumentKey> = settings.trading.watchlist.clone();
    if let Ok(open) = store.open_positions().await {
        keys.extend(open.into_iter().map(|p| p.key));
    }
    let mut seen = HashSet::new();
    let mut out = HashMap::new();
    for k in keys {
        if !seen.insert(k.clone()) {
            continue;
        }
        match store.instrument(&k).await {
            Ok(Some(i)) => match u32::try_from(i.instrument_token) {
                Ok(t) => {
                    out.insert(t, k);
                }
                Err(_) => tracing::warn!(instrument = %k, "instrument token out of range"),
            },
            Ok(None) => tracing::warn!(
                instrument = %k,
                "not in the instruments dump: no live price (run `mft data sync-instruments`)"
            ),
            Err(e) => tracing::warn!(instrument = %k, error = %e, "cannot read the instrument"),
        }
    }
    out
}

/// Keeps the ticker subscribed while a session exists and the market is open; reconnects with
/// backoff (kiteconnect's within a connection, ours when the ticker closes); stops on `shutdown`.
pub async fn run_ticker(
    link: Arc<MarketLink>,
    store: Store,
    settings: Arc<Settings>,
    clock: Arc<dyn Clock>,
    on_rejected: OnRejected,
    on_order: OnOrderUpdate,
    shutdown: CancellationToken,
) {
    let mut generation = link.session.subscribe();
    let mut failures: u32 = 0;
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        let ready = link.session.configured()
            && link.calendar.is_market_open(clock.now())
            && link.session.current().is_ok();
        if !ready {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = generation.changed() => {}
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            }
            continue;
        }
        let reader = match link.session.reader() {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "ticker: no Kite client");
                tokio::time::sleep(Duration::from_secs(5)).await;
                continue;
            }
        };
        let tokens = wanted_tokens(&store, &settings).await;
        if tokens.is_empty() {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(30)) => {}
            }
            continue;
        }
        link.prices.set_tokens(tokens.clone());
        let (ticker, mut events) = match reader.ticker(&settings.zerodha.ticker_url) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(error = %e, "ticker cannot start");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(60)) => {}
                }
                continue;
            }
        };
        let list: Vec<u32> = tokens.keys().copied().collect();
        if let Err(e) = ticker.subscribe(&list, Mode::Ltp) {
            tracing::error!(error = %e, "ticker subscribe failed");
        }
        tracing::info!(instruments = list.len(), "ticker started (LTP mode)");
        let mut current = tokens;
        let mut resubscribe = tokio::time::interval(Duration::from_secs(30));
        resubscribe.tick().await;
        let _ = generation.borrow_and_update();
        let end = loop {
            tokio::select! {
                _ = shutdown.cancelled() => { ticker.close(); return; }
                _ = generation.changed() => { ticker.close(); break None; }
                _ = resubscribe.tick() => {
                    if !link.calendar.is_market_open(clock.now()) {
                        tracing::info!("market closed: ticker stopped");
                        ticker.close();
                        break None;
                    }
                    let now_wanted = wanted_tokens(&store, &settings).await;
                    if now_wanted != current && !now_wanted.is_empty() {
                        link.prices.set_tokens(now_wanted.clone());
                        let all = now_wanted.keys().map(|t| (*t, Mode::Ltp)).collect();
                        if let Err(e) = ticker.set_subscriptions(all) {
                            tracing::warn!(error = %e, "ticker resubscribe failed");
                        }
                        current = now_wanted;
                    }
                }
                ev = events.recv() => match ev {
                    Some(TickerEvent::Ticks(ticks)) => {
                        failures = 0;
                        let a = link.prices.apply_ticks(&ticks, clock.now());
                        if a.ignored > 0 {
                            tracing::debug!(ignored = a.ignored, "ticker: ignored malformed or unknown ticks");
                        }
                    }
                    Some(TickerEvent::OrderUpdate(order)) => on_order(order),
                    Some(TickerEvent::InvalidOrderUpdate { error, .. }) => {
                        tracing::warn!(%error, "ticker: skipped an order update that does not decode");
                    }
                    Some(TickerEvent::Connected) => tracing::info!("ticker connected"),
                    Some(TickerEvent::Reconnecting { attempt, delay, reason }) => {
                        tracing::warn!(attempt, delay_ms = delay.as_millis() as u64, %reason, "ticker dropped: reconnecting");
                    }
                    Some(TickerEvent::Closed(reason)) => break Some(reason),
                    Some(_) => {}
                    None => break Some(CloseReason::Requested),
                },
            }
        };
        match end {
            None => failures = 0,
            Some(CloseReason::AuthRejected(msg)) => {
                on_rejected(format!("the ticker was refused: {msg}"));
            }
            Some(reason) => {
                failures = failures.saturating_add(1);
                let delay = Duration::from_secs((1u64 << failures.min(6)).min(60));
                tracing::warn!(%reason, delay_s = delay.as_secs(), "ticker closed: restarting");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn frames_update_known_tokens_and_skip_bad_ticks() {
        let c = PriceCache::new();
        let infy = InstrumentKey::new("NSE", "INFY");
        c.set_tokens([(408065, infy.clone())]);
        // Kite's LTP packet: token 408065, price 157315 paise.
        let mut frame = vec![0, 2, 0, 8];
        frame.extend_from_slice(&408065u32.to_be_bytes());
        frame.extend_from_slice(&157315u32.to_be_bytes());
        frame.extend_from_slice(&[0, 8]);
        frame.extend_from_slice(&999u32.to_be_bytes());
        frame.extend_from_slice(&1u32.to_be_bytes());
        let ticks = kiteconnect::parse_binary(&frame);
        let t = Utc.with_ymd_and_hms(2026, 11, 25, 5, 0, 0).unwrap();
        let a = c.apply_ticks(&ticks, t);
        assert_eq!(
            a,
            Applied {
                updated: 1,
                ignored: 1
            }
        );
        assert_eq!(
            c.get(&infy),
            Some(LivePrice {
                price: Paise(157_315),
                at: t
            })
        );
        // A truncated frame decodes to nothing; an older tick never overwrites a newer one.
        assert!(kiteconnect::parse_binary(&frame[..7]).is_empty());
        c.set(&infy, Paise(1), t - chrono::Duration::seconds(5));
        assert_eq!(c.get(&infy).unwrap().price, Paise(157_315));
    }
}
