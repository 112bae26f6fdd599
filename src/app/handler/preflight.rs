//! The pre-flight checklist (`/preflight`, `mft preflight`): one line per check, ok / warning /
//! failed with the fix.

use chrono::Duration;

use super::{Handler, HandlerError};
use crate::clock::ist_date;
use crate::domain::Paise;
use crate::ports::{CheckLevel, PreflightLine, PreflightReport};
use crate::texts;

fn line(level: CheckLevel, check: &str, detail: String, fix: Option<&str>) -> PreflightLine {
    PreflightLine {
        level,
        check: check.to_string(),
        detail,
        fix: fix.map(str::to_string),
    }
}

/// Minimum paper trading days before going live.
const MIN_PAPER_DAYS: usize = 5;
/// An order open longer than this is stuck.
const STUCK_MINUTES: i64 = 15;

impl Handler {
    pub(super) async fn preflight(&self) -> Result<PreflightReport, HandlerError> {
        use CheckLevel::{Failed, Ok as Good, Warning};
        let mut lines = Vec::new();
        let now = self.clock.now();
        let capital = self.settings.trading.capital;

        // 1. Kite API and session.
        let mut reader = None;
        match &self.market {
            None => lines.push(line(
                Failed,
                "Kite session",
                "not connected".into(),
                Some("run `mft preflight` or /preflight from the service"),
            )),
            Some(link) if !link.session.configured() => lines.push(line(
                Failed,
                "Kite session",
                "ZERODHA_API_KEY is not set".into(),
                Some("set ZERODHA_API_KEY and ZERODHA_API_SECRET in .env, then send /login"),
            )),
            Some(link) => match link.session.current() {
                Err(e) => lines.push(line(
                    Failed,
                    "Kite session",
                    e.to_string(),
                    Some("send /login (or run `mft login`) and log in on Kite"),
                )),
                Ok(s) => match link.session.reader() {
                    Err(e) => lines.push(line(
                        Failed,
                        "Kite session",
                        e.to_string(),
                        Some("check ZERODHA_API_URL"),
                    )),
                    Ok(r) => match r.profile().await {
                        Ok(p) => {
                            let until = match s.expires_at {
                                Some(at) => {
                                    format!("token expires {}", texts::session_until(at, now))
                                }
                                None => "token from ZERODHA_ACCESS_TOKEN, expires 06:00 IST".into(),
                            };
                            lines.push(line(
                                Good,
                                "Kite session",
                                format!("API reachable, logged in as {} ({until})", p.user_id),
                                None,
                            ));
                            reader = Some(r);
                        }
                        Err(e) if e.is_session_expired() => {
                            self.session_expired("Kite answered TokenException").await;
                            lines.push(line(
                                Failed,
                                "Kite session",
                                "Kite rejected the access token (TokenException)".into(),
                                Some("send /login and log in on Kite"),
                            ));
                        }
                        Err(e) => lines.push(line(
                            Failed,
                            "Kite session",
                            format!("Kite API unreachable: {e}"),
                            Some("check the network and ZERODHA_API_URL"),
                        )),
                    },
                },
            },
        }

        // 2. Margin vs capital.
        match &reader {
            None => lines.push(line(
                Warning,
                "Margin",
                "not checked (no valid Kite session)".into(),
                Some("log in, then run the checklist again"),
            )),
            Some(r) => match r.equity_margin().await {
                Ok(m) if capital > m => lines.push(line(
                    Warning,
                    "Margin",
                    format!("available equity margin {m} is below [trading] capital {capital}"),
                    Some("lower [trading] capital or add funds"),
                )),
                Ok(m) => lines.push(line(
                    Good,
                    "Margin",
                    format!("available equity margin {m} covers [trading] capital {capital}"),
                    None,
                )),
                Err(e) => lines.push(line(
                    Failed,
                    "Margin",
                    format!("cannot read margins: {e}"),
                    Some("check the Kite session and try again"),
                )),
            },
        }

        // 3. Risk limits.
        let risk = &self.settings.risk;
        let pct = |p: Paise| {
            if capital.0 > 0 {
                p.0 as f64 * 100.0 / capital.0 as f64
            } else {
                f64::INFINITY
            }
        };
        let loss_pct = pct(risk.max_daily_loss);
        lines.push(if loss_pct > 2.0 {
            line(
                Warning,
                "Daily loss limit",
                format!(
                    "{} is {loss_pct:.1}% of capital (above 2%)",
                    risk.max_daily_loss
                ),
                Some("lower [risk] max_daily_loss to 2% of capital or less"),
            )
        } else {
            line(
                Good,
                "Daily loss limit",
                format!("{} is {loss_pct:.1}% of capital", risk.max_daily_loss),
                None,
            )
        });
        let pos_pct = pct(risk.max_position_value);
        lines.push(if pos_pct > 20.0 {
            line(
                Warning,
                "Position limit",
                format!(
                    "{} is {pos_pct:.1}% of capital (above 20%)",
                    risk.max_position_value
                ),
                Some("lower [risk] max_position_value to 20% of capital or less"),
            )
        } else {
            line(
                Good,
                "Position limit",
                format!("{} is {pos_pct:.1}% of capital", risk.max_position_value),
                None,
            )
        });
        let lev = self.settings.trading.leverage;
        lines.push(if lev > 1.0 {
            line(
                Warning,
                "Leverage",
                format!("{lev} (above 1)"),
                Some("set [trading] leverage = 1 until the strategy has a track record"),
            )
        } else {
            line(Good, "Leverage", format!("{lev}"), None)
        });

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
        lines.push(if days.len() < MIN_PAPER_DAYS {
            line(
                Warning,
                "Paper trading",
                format!(
                    "{} trading day(s) with paper activity (fewer than {MIN_PAPER_DAYS})",
                    days.len()
                ),
                Some("keep MODE=paper for at least 5 trading days"),
            )
        } else {
            line(
                Good,
                "Paper trading",
                format!("{} trading days with paper activity", days.len()),
                None,
            )
        });

        // 5. Stuck orders: open too long here, or (live) different from Kite's order book and
        // positions (the reconciliation, run as a dry run: nothing is corrected here).
        let mut stuck: Vec<String> = self
            .store
            .open_orders()
            .await?
            .into_iter()
            .filter(|o| now - o.created_at > Duration::minutes(STUCK_MINUTES))
            .map(|o| format!("{} {}", o.request.tag, o.request.key))
            .collect();
        let live = self.oms.broker().mode() == crate::config::Mode::Live;
        if live {
            let book = self.oms.lock_book().await?;
            let r = self.oms.reconcile_with_broker(&book, false).await;
            book.release().await;
            match r {
                Ok(report) => stuck.extend(report.mismatches),
                Err(e) => stuck.push(format!("could not compare with Kite: {e}")),
            }
        }
        lines.push(if stuck.is_empty() {
            line(
                Good,
                "Open orders",
                format!("none open longer than {STUCK_MINUTES} minutes"),
                None,
            )
        } else {
            line(
                Failed,
                "Open orders",
                format!(
                    "{} stuck longer than {STUCK_MINUTES} minutes{}: {}",
                    stuck.len(),
                    if live { " or different from Kite" } else { "" },
                    stuck.join(", ")
                ),
                Some("check them on Kite and cancel or reconcile before trading"),
            )
        });

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
        let n = self.settings.trading.watchlist.len();
        lines.push(if stale.is_empty() {
            line(
                Good,
                "Data freshness",
                format!("{n} of {n} watchlist series up to date"),
                None,
            )
        } else {
            line(
                Warning,
                "Data freshness",
                stale.join("; "),
                Some("log in so scans fetch candles, or `mft data fetch`"),
            )
        });

        // 7. Kill switch drill.
        let kill = self.store.last_trade_event("kill").await?;
        let test = self.store.last_trade_event("kill_test").await?;
        let last = match (kill, test) {
            (Some(k), Some(t)) if t.0 > k.0 => Some((t.0, "dry run")),
            (Some(k), _) => Some((k.0, "real kill")),
            (None, Some(t)) => Some((t.0, "dry run")),
            (None, None) => None,
        };
        lines.push(match last {
            None => line(
                Warning,
                "Kill switch",
                "never exercised".into(),
                Some("send /kill test (a dry run that changes nothing)"),
            ),
            Some((at, what)) if now - at > Duration::days(30) => line(
                Warning,
                "Kill switch",
                format!(
                    "last exercised {} ({what}), over 30 days ago",
                    texts::ist_datetime(at)
                ),
                Some("send /kill test"),
            ),
            Some((at, what)) => line(
                Good,
                "Kill switch",
                format!("last exercised {} ({what})", texts::ist_datetime(at)),
                None,
            ),
        });

        Ok(PreflightReport { lines })
    }
}
