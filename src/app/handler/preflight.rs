//! The pre-flight checklist (`/preflight`, `mft preflight`): one line per check, ok / warning /
//! failed with the fix.

use chrono::Duration;

use super::{Handler, HandlerError};
use crate::clock::ist_date;
use crate::domain::Paise;
use crate::ports::PreflightReport;
use crate::texts;
use crate::texts::preflight as says;

/// Minimum paper trading days before going live.
const MIN_PAPER_DAYS: usize = 5;
/// An order open longer than this is stuck.
const STUCK_MINUTES: i64 = 15;
/// A careful start risks at most this share of capital in a day (percent).
const CAREFUL_DAILY_LOSS_PCT: f64 = 2.0;
/// ... and puts at most this share of capital in one position (percent).
const CAREFUL_POSITION_PCT: f64 = 20.0;
/// A kill-switch drill older than this is due again.
const DRILL_MAX_AGE_DAYS: i64 = 30;

impl Handler {
    pub(super) async fn preflight(&self) -> Result<PreflightReport, HandlerError> {
        let mut lines = Vec::new();
        let now = self.clock.now();
        let capital = self.settings.capital_on(self.clock.today_ist());

        // 1. Kite API and session.
        let mut reader = None;
        match &self.market {
            None => lines.push(says::not_connected()),
            Some(link) if !link.session.configured() => lines.push(says::no_api_key()),
            Some(link) => match link.session.current() {
                Err(e) => lines.push(says::no_session(&e)),
                Ok(s) => match link.session.reader() {
                    Err(e) => lines.push(says::bad_api_url(&e)),
                    Ok(r) => match r.profile().await {
                        Ok(p) => {
                            lines.push(says::session_ok(&p.user_id, s.expires_at, now));
                            reader = Some(r);
                        }
                        Err(e) if e.is_session_expired() => {
                            self.session_expired("Kite answered TokenException").await;
                            lines.push(says::token_rejected());
                        }
                        Err(e) => lines.push(says::api_unreachable(&e)),
                    },
                },
            },
        }

        // 2. Margin vs capital.
        lines.push(match &reader {
            None => says::margin_unchecked(),
            Some(r) => match r.equity_margin().await {
                Ok(m) => says::margin(m, capital),
                Err(e) => says::margin_unreadable(&e),
            },
        });

        // 3. Risk limits.
        let risk = &self.settings.risk;
        let pct = |p: Paise| {
            if capital.0 > 0 {
                p.0 as f64 * 100.0 / capital.0 as f64
            } else {
                f64::INFINITY
            }
        };
        lines.push(says::daily_loss(
            risk.max_daily_loss,
            pct(risk.max_daily_loss),
            CAREFUL_DAILY_LOSS_PCT,
        ));
        lines.push(says::position_limit(
            risk.max_position_value,
            pct(risk.max_position_value),
            CAREFUL_POSITION_PCT,
        ));
        lines.push(says::leverage(self.settings.trading.leverage));

        // 4. Paper trading days.
        let mut days: Vec<_> = self
            .store
            .order_times()
            .await?
            .into_iter()
            .map(ist_date)
            .collect();
        days.sort();
        days.dedup();
        lines.push(says::paper_days(days.len(), MIN_PAPER_DAYS));

        // 5. Stuck orders: open too long here, or (live) different from Kite's order book and
        // positions (the reconciliation, run as a dry run: nothing is corrected here).
        let mut stuck: Vec<String> = self
            .store
            .open_orders()
            .await?
            .into_iter()
            .filter(|o| now - o.created_at > Duration::minutes(STUCK_MINUTES))
            .map(|o| texts::order_ref(&o.request.tag, &o.request.key))
            .collect();
        let live = self.oms.broker().mode() == crate::config::Mode::Live;
        if live {
            let book = self.oms.lock_book().await?;
            let r = self.oms.reconcile_with_broker(&book, false).await;
            book.release().await;
            match r {
                Ok(report) => stuck.extend(report.mismatches),
                Err(e) => stuck.push(says::compare_failed(&e)),
            }
        }
        lines.push(says::open_orders(&stuck, STUCK_MINUTES, live));

        // 6. Data freshness.
        let interval = self.settings.trading.interval;
        let mut stale = Vec::new();
        if let Some(link) = &self.market {
            let expected = link.calendar.expected_last_candle(now, interval);
            for k in &self.settings.trading.watchlist {
                let last = self
                    .store
                    .last_candles(k, interval, 1)
                    .await?
                    .last()
                    .map(|c| c.ts);
                if last.is_none_or(|t| t < expected) {
                    stale.push(texts::stale_data(&k.to_string(), last, expected));
                }
            }
        }
        lines.push(says::data(self.settings.trading.watchlist.len(), &stale));

        // 7. Kill switch drill.
        let kill = self.store.last_trade_event("kill").await?;
        let test = self.store.last_trade_event("kill_test").await?;
        let last = match (kill, test) {
            (Some(k), Some(t)) if t.0 > k.0 => Some((t.0, says::Drill::DryRun)),
            (Some(k), _) => Some((k.0, says::Drill::RealKill)),
            (None, Some(t)) => Some((t.0, says::Drill::DryRun)),
            (None, None) => None,
        };
        lines.push(says::kill_switch(last, now, DRILL_MAX_AGE_DAYS));

        Ok(PreflightReport { lines })
    }
}
