//! Semantic checks of loaded settings (ranges, windows, cron strings, URLs, live-mode
//! requirements) and the parsers that the typed helpers share with them.

use super::load::{ConfigError, ConfigErrors, ENV_KEYS, label};
use super::{Mode, Secret, Settings};
use std::str::FromStr;

impl Settings {
    /// Checks every setting and reports all problems at once, each with its key name.
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        let mut v = Checker(Vec::new());
        self.check_toml_sections(&mut v);
        self.check_env(&mut v);
        self.check_analysis(&mut v);
        if v.0.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(v.0))
        }
    }

    fn check_toml_sections(&self, v: &mut Checker) {
        let t = &self.trading;
        if t.watchlist.is_empty() {
            v.err(
                label("trading", "watchlist"),
                "must name at least one instrument, e.g. [\"NSE:INFY\"]",
            );
        }
        v.positive_paise("trading", "capital", t.capital.0);
        v.range_f(
            "trading",
            "risk_per_trade_pct",
            t.risk_per_trade_pct,
            0.0,
            false,
            100.0,
        );
        v.range_f("trading", "leverage", t.leverage, 1.0, true, 20.0);
        v.range_i(
            "trading",
            "proposal_ttl_minutes",
            t.proposal_ttl_minutes,
            1,
            1440,
        );
        v.range_u(
            "trading",
            "scan_concurrency",
            t.scan_concurrency as u64,
            1,
            64,
        );
        v.range_u(
            "trading",
            "lookback_bars",
            t.lookback_bars as u64,
            2,
            100_000,
        );
        let needed = self
            .strategy
            .slow
            .max(self.strategy.rsi_period)
            .max(self.strategy.atr_period)
            + 1;
        if t.lookback_bars < needed && t.lookback_bars >= 2 {
            v.err(
                label("trading", "lookback_bars"),
                format!(
                    "is {}, fewer than the strategy needs (slow/rsi/atr periods + 1 = {needed})",
                    t.lookback_bars
                ),
            );
        }

        let r = &self.risk;
        v.range_f(
            "risk",
            "max_price_deviation_pct",
            r.max_price_deviation_pct,
            0.0,
            false,
            100.0,
        );
        v.range_f(
            "risk",
            "max_bar_move_pct",
            r.max_bar_move_pct,
            0.0,
            false,
            1000.0,
        );
        v.positive_paise("risk", "max_position_value", r.max_position_value.0);
        v.range_u(
            "risk",
            "max_open_positions",
            r.max_open_positions.into(),
            1,
            100,
        );
        // Kite accepts at most 3000 orders per day per account.
        v.range_u(
            "risk",
            "max_orders_per_day",
            r.max_orders_per_day.into(),
            1,
            3000,
        );
        v.positive_paise("risk", "max_daily_loss", r.max_daily_loss.0);
        if r.max_daily_loss.0 > 0 && t.capital.0 > 0 && r.max_daily_loss > t.capital {
            v.err(
                label("risk", "max_daily_loss"),
                format!(
                    "is {}, more than [trading] capital {}: the limit would never stop trading",
                    r.max_daily_loss, t.capital
                ),
            );
        }

        let s = &self.strategy;
        if s.name != "ma_cross" {
            v.err(
                label("strategy", "name"),
                format!(
                    "unknown strategy {:?}: the only strategy is \"ma_cross\"",
                    s.name
                ),
            );
        }
        v.range_u("strategy", "fast", s.fast as u64, 1, 10_000);
        v.range_u("strategy", "slow", s.slow as u64, 1, 10_000);
        if s.fast >= s.slow {
            v.err(
                label("strategy", "fast"),
                format!(
                    "must be less than [strategy] slow ({} >= {})",
                    s.fast, s.slow
                ),
            );
        }
        v.range_u("strategy", "rsi_period", s.rsi_period as u64, 1, 10_000);
        v.range_f("strategy", "rsi_min", s.rsi_min, 0.0, true, 100.0);
        v.range_f("strategy", "rsi_max", s.rsi_max, 0.0, true, 100.0);
        if s.rsi_min >= s.rsi_max {
            v.err(
                label("strategy", "rsi_min"),
                format!(
                    "must be less than [strategy] rsi_max ({} >= {})",
                    s.rsi_min, s.rsi_max
                ),
            );
        }
        v.range_u("strategy", "atr_period", s.atr_period as u64, 1, 10_000);
        v.range_f("strategy", "stop_atr", s.stop_atr, 0.0, false, 50.0);
        v.range_f("strategy", "reward_risk", s.reward_risk, 0.0, false, 50.0);

        for (name, expr) in self.schedules.entries() {
            if let Err(e) = parse_cron(expr) {
                v.err(label("schedules", name), e);
            }
        }

        v.range_f(
            "paper",
            "slippage_bps",
            self.paper.slippage_bps,
            0.0,
            true,
            1000.0,
        );
        let mp = self.live.market_protection;
        if !(mp == -1.0 || (1.0..=100.0).contains(&mp)) {
            v.err(
                label("live", "market_protection"),
                format!("must be -1 (Kite's automatic protection) or a percentage from 1 to 100, got {mp}"),
            );
        }
        v.range_u("live", "ramp_days", u64::from(self.live.ramp_days), 0, 250);
        v.range_f(
            "live",
            "start_fraction",
            self.live.start_fraction,
            0.0,
            false,
            1.0,
        );
        v.range_u("live", "poll_seconds", self.live.poll_seconds, 1, 60);
        v.range_u(
            "live",
            "reconcile_seconds",
            self.live.reconcile_seconds,
            10,
            3600,
        );
        v.range_u(
            "live",
            "exit_wait_seconds",
            self.live.exit_wait_seconds,
            1,
            120,
        );
        v.range_f(
            "backtest",
            "slippage_bps",
            self.backtest.slippage_bps,
            0.0,
            true,
            1000.0,
        );
        v.positive_paise("backtest", "initial_cash", self.backtest.initial_cash.0);

        let c = &self.charts;
        if c.dir.trim().is_empty() {
            v.err(
                label("charts", "dir"),
                "must be a directory path, e.g. \"charts\"",
            );
        }
        v.range_u("charts", "bars", c.bars as u64, 10, 5000);
        v.range_u("charts", "width", c.width.into(), 200, 8000);
        v.range_u("charts", "height", c.height.into(), 200, 8000);

        let k = &self.kite;
        // Kite allows 3 historical requests per second; more only makes sense against a fake.
        v.range_u(
            "kite",
            "historical_rate_per_sec",
            k.historical_rate_per_sec.into(),
            1,
            100,
        );
        v.range_u("kite", "max_retries", k.max_retries.into(), 0, 20);
        v.range_u("kite", "retry_backoff_ms", k.retry_backoff_ms, 0, 600_000);
    }

    fn check_env(&self, v: &mut Checker) {
        let db = self.database_url.to_ascii_lowercase();
        let scheme_ok = ["sqlite:", "postgres:", "postgresql:"]
            .iter()
            .any(|p| db.starts_with(p));
        if !scheme_ok {
            // The URL may embed a password: only its scheme is echoed.
            let scheme = db.split_once(':').map_or("(none)", |(s, _)| s);
            v.err(
                "DATABASE_URL",
                format!(
                    "scheme {scheme:?} is not supported: use sqlite://path/to.db, or postgres://user:pass@host/db"
                ),
            );
        } else if !db.starts_with("sqlite:") && url::Url::parse(&self.database_url).is_err() {
            v.err(
                "DATABASE_URL",
                "is not a valid postgres URL: expected postgres://user:password@host:5432/db (value not shown)",
            );
        }

        v.url("ZERODHA_API_URL", Some(&self.zerodha.api_url));
        v.url("TELEGRAM_API_URL", Some(&self.telegram.api_url));
        match url::Url::parse(self.zerodha.ticker_url.trim()) {
            Ok(u) if matches!(u.scheme(), "ws" | "wss") && u.has_host() && u.query().is_none() => {}
            _ => v.err(
                "ZERODHA_TICKER_URL",
                format!(
                    "expected a ws(s) URL without a query, e.g. wss://ws.kite.trade, got {:?}",
                    self.zerodha.ticker_url
                ),
            ),
        }
        if let Some(k) = &self.zerodha.secret_key
            && crate::config::parse_secret_key(k.expose()).is_none()
        {
            v.err(
                "MFT_SECRET_KEY",
                "must be 32 bytes as 64 hex digits or base64 (e.g. `openssl rand -hex 32`; value not shown)",
            );
        }
        if self.risk.duplicate_window_seconds > 86_400 {
            v.err(
                label("risk", "duplicate_window_seconds"),
                format!(
                    "must be 0-86400 seconds (0 turns the check off), got {}",
                    self.risk.duplicate_window_seconds
                ),
            );
        }
        if !(1..=400).contains(&self.risk.max_orders_per_minute) {
            v.err(
                label("risk", "max_orders_per_minute"),
                format!(
                    "must be 1-400 (Kite accepts at most 400 order writes a minute), got {}",
                    self.risk.max_orders_per_minute
                ),
            );
        }
        if !(1..=3600).contains(&self.risk.max_price_age_seconds) {
            v.err(
                label("risk", "max_price_age_seconds"),
                format!(
                    "must be 1-3600 seconds, got {}",
                    self.risk.max_price_age_seconds
                ),
            );
        }
        v.url("OPENAI_BASE_URL", self.openai.base_url.as_deref());
        v.url("NEWS_API_URL", self.news.api_url.as_deref());

        if std::net::SocketAddr::from_str(self.status.addr.trim()).is_err() {
            v.err(
                "STATUS_ADDR",
                format!(
                    "expected IP:PORT, e.g. 127.0.0.1:8501 or 0.0.0.0:8501, got {:?}",
                    self.status.addr
                ),
            );
        }

        if self.mode == Mode::Live {
            for (name, value) in [
                ("ZERODHA_API_KEY", &self.zerodha.api_key),
                ("ZERODHA_API_SECRET", &self.zerodha.api_secret),
            ] {
                if value.is_none() {
                    v.err(
                        name,
                        "is required when MODE=live (from the Kite Connect developer console); \
                         or set MODE=paper",
                    );
                }
            }
        }

        if let Some(chat) = self.telegram.chat_id
            && chat == 0
        {
            v.err("TELEGRAM_CHAT_ID", "must be a non-zero integer chat id");
        }
        for id in &self.telegram.allowed_users {
            if *id <= 0 {
                v.err(
                    "TELEGRAM_ALLOWED_USERS",
                    format!("user ids are positive integers, got {id}"),
                );
            }
        }

        if let Some(token) = &self.telegram.bot_token
            && !looks_like_bot_token(token.expose())
        {
            v.err(
                "TELEGRAM_BOT_TOKEN",
                "does not look like a bot token (expected <digits>:<text> from @BotFather; value not shown)",
            );
        }
        for (name, value) in self.secrets() {
            if let Some(s) = value
                && s.expose()
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control())
            {
                v.err(
                    name,
                    "contains spaces, quotes or control characters, probably a copy-paste slip (value not shown)",
                );
            }
        }
    }

    /// Every secret with its environment name.
    pub(super) fn secrets(&self) -> [(&'static str, &Option<Secret>); 10] {
        let all = [
            ("ZERODHA_API_KEY", &self.zerodha.api_key),
            ("ZERODHA_API_SECRET", &self.zerodha.api_secret),
            ("ZERODHA_ACCESS_TOKEN", &self.zerodha.access_token),
            ("TELEGRAM_BOT_TOKEN", &self.telegram.bot_token),
            ("OPENAI_API_KEY", &self.openai.api_key),
            ("NEWS_API_KEY", &self.news.api_key),
            ("POSTGRES_PASSWORD", &self.postgres.password),
            ("STATUS_TOKEN", &self.status.token),
            ("MCP_TOKEN", &self.mcp.token),
            ("MFT_SECRET_KEY", &self.zerodha.secret_key),
        ];
        debug_assert!(
            all.iter()
                .all(|(n, _)| ENV_KEYS.iter().any(|k| k.name == *n && k.secret))
        );
        all
    }
}

fn looks_like_bot_token(t: &str) -> bool {
    match t.split_once(':') {
        Some((id, rest)) => {
            !id.is_empty() && id.chars().all(|c| c.is_ascii_digit()) && !rest.is_empty()
        }
        None => false,
    }
}

struct Checker(Vec<ConfigError>);

impl Checker {
    fn err(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigError::new(key, message));
    }

    /// `lo < x <= hi` (or `lo <= x` when `lo_inclusive`); NaN is always out of range.
    fn range_f(&mut self, sec: &str, key: &str, x: f64, lo: f64, lo_inclusive: bool, hi: f64) {
        let above = if lo_inclusive { x >= lo } else { x > lo };
        if !(above && x <= hi) {
            let lower = if lo_inclusive { ">=" } else { ">" };
            self.err(
                label(sec, key),
                format!("is {x}, expected a number {lower} {lo} and <= {hi}"),
            );
        }
    }

    fn range_u(&mut self, sec: &str, key: &str, x: u64, lo: u64, hi: u64) {
        if !(lo..=hi).contains(&x) {
            self.err(
                label(sec, key),
                format!("is {x}, expected an integer from {lo} to {hi}"),
            );
        }
    }

    fn range_i(&mut self, sec: &str, key: &str, x: i64, lo: i64, hi: i64) {
        if !(lo..=hi).contains(&x) {
            self.err(
                label(sec, key),
                format!("is {x}, expected an integer from {lo} to {hi}"),
            );
        }
    }

    fn positive_paise(&mut self, sec: &str, key: &str, paise: i64) {
        if paise <= 0 {
            self.err(
                label(sec, key),
                format!(
                    "is {}, expected a positive amount in rupees, e.g. 1500 or 1500.50",
                    crate::domain::Paise(paise).to_decimal_string()
                ),
            );
        }
    }

    fn url(&mut self, name: &str, value: Option<&str>) {
        let Some(value) = value else { return };
        match url::Url::parse(value.trim()) {
            Ok(u) if (u.scheme() == "http" || u.scheme() == "https") && u.has_host() => {}
            Ok(_) => self.err(
                name,
                format!(
                    "expected an http(s) URL such as https://example.com, got {:?}",
                    super::redact_url(value)
                ),
            ),
            Err(e) => self.err(
                name,
                format!("is not a valid URL ({e}); expected e.g. https://example.com"),
            ),
        }
    }
}

/// Parses a 6-field (seconds first) cron string; `""` disables the job (`Ok(None)`).
pub(crate) fn parse_cron(s: &str) -> Result<Option<cron::Schedule>, String> {
    let t = s.trim();
    if t.is_empty() {
        return Ok(None);
    }
    let fields = t.split_whitespace().count();
    if fields == 5 {
        return Err(format!(
            "{t:?} has 5 fields; MFT-1 cron strings have 6, seconds first (IST): try \"0 {t}\", \
             or \"\" to disable the job"
        ));
    }
    cron::Schedule::from_str(t).map(Some).map_err(|e| {
        // cron's message repeats the input with a caret; its last line says what is wrong.
        let e = e.to_string();
        let e = e.lines().last().unwrap_or_default().trim().to_string();
        format!(
            "invalid cron {t:?} ({e}); expected 6 fields, seconds first, in IST, e.g. \"0 15 9 * * Mon-Fri\", or \"\" to disable"
        )
    })
}

impl Settings {
    /// `[analysis]` and `[llm]`.
    fn check_analysis(&self, v: &mut Checker) {
        let a = &self.analysis;
        if !["auto", "rules", "llm", "rules+llm"].contains(&a.analyst.trim()) {
            v.err(
                label("analysis", "analyst"),
                format!(
                    "expected \"rules\", \"llm\", \"rules+llm\" or \"auto\", got {:?}",
                    a.analyst
                ),
            );
        } else if matches!(a.analyst.trim(), "llm" | "rules+llm") && !self.llm_configured() {
            v.err(
                label("analysis", "analyst"),
                format!(
                    "{:?} needs an OpenAI-compatible endpoint: set OPENAI_BASE_URL (and OPENAI_API_KEY, OPENAI_MODEL)",
                    a.analyst
                ),
            );
        }
        for (key, path) in [
            ("system_prompt", &a.system_prompt),
            ("verdict_schema", &a.verdict_schema),
        ] {
            if !path.is_empty() && !std::path::Path::new(path).is_file() {
                v.err(
                    label("analysis", key),
                    format!(
                        "{path:?} is not a readable file (leave it empty for the built-in one)"
                    ),
                );
            }
        }
        v.range_i(
            "analysis",
            "news_cache_minutes",
            a.news_cache_minutes,
            0,
            10_080,
        );
        let l = &self.llm;
        v.range_u("llm", "max_tool_calls", u64::from(l.max_tool_calls), 0, 100);
        v.range_u(
            "llm",
            "max_output_tokens",
            u64::from(l.max_output_tokens),
            16,
            1_000_000,
        );
        v.range_u(
            "llm",
            "analysis_timeout_secs",
            l.analysis_timeout_secs,
            1,
            3600,
        );
        v.range_u(
            "llm",
            "max_analyses_per_scan",
            u64::from(l.max_analyses_per_scan),
            1,
            10_000,
        );
        v.range_u("llm", "max_retries", u64::from(l.max_retries), 0, 10);
        v.range_u("llm", "retry_backoff_ms", l.retry_backoff_ms, 1, 60_000);
        v.range_u(
            "llm",
            "alert_after_failures",
            u64::from(l.alert_after_failures),
            1,
            1000,
        );
        if l.daily_cost_cap.0 < 0 {
            v.err(
                label("llm", "daily_cost_cap"),
                "must be 0 (no cap) or more rupees",
            );
        }
        v.range_f(
            "llm",
            "price_input_per_mtok",
            l.price_input_per_mtok,
            0.0,
            true,
            1e6,
        );
        v.range_f(
            "llm",
            "price_output_per_mtok",
            l.price_output_per_mtok,
            0.0,
            true,
            1e6,
        );
        v.range_f(
            "llm",
            "min_reward_risk",
            l.min_reward_risk,
            0.0,
            false,
            100.0,
        );
        if !["rules", "none"].contains(&l.fallback.as_str()) {
            v.err(
                label("llm", "fallback"),
                format!("expected \"rules\" or \"none\", got {:?}", l.fallback),
            );
        }
    }
}
