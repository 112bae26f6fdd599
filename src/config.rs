//! Settings: defaults -> mft.toml -> environment (.env); `validate()` reports every error at once.
//!
//! Where each setting lives:
//! - mft.toml (path from MFT_CONFIG, default ./mft.toml) holds only non-secret tuning in the
//!   sections [trading] [risk] [strategy] [schedules] [paper] [charts] [kite]; each key can be
//!   overridden from the environment as `MFT__SECTION__KEY`.
//! - Secrets, endpoints and deployment choices (MODE, DATABASE_URL, ZERODHA_*, TELEGRAM_*, ...)
//!   are environment-only (a `.env` file is read too): they differ per deployment and must never
//!   sit in a file that gets committed, so mft.toml rejects them with a hint.
//!
//! Loading never stops at the first problem: syntax errors, unknown keys, wrong types and
//! semantic checks are all collected into one [`ConfigErrors`]. Secrets are [`Secret`] and are
//! reported by key name only.

mod load;
mod render;
mod rupees;
#[cfg(test)]
mod tests;
mod validate;
mod window;

pub use load::{ConfigError, ConfigErrors, ENV_KEYS, EnvKey};
pub use window::{TradingDays, TradingWindow};

use crate::domain::{InstrumentKey, Interval, Paise};
use serde::{Deserialize, Serialize};

/// Default of DATABASE_URL.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://data/mft.db";
/// Default of ZERODHA_API_URL.
pub const DEFAULT_ZERODHA_API_URL: &str = "https://api.kite.trade";
/// Default of ZERODHA_TICKER_URL.
pub const DEFAULT_ZERODHA_TICKER_URL: &str = "wss://ws.kite.trade";
/// Default of TELEGRAM_API_URL.
pub const DEFAULT_TELEGRAM_API_URL: &str = "https://api.telegram.org";
/// Default of STATUS_ADDR.
pub const DEFAULT_STATUS_ADDR: &str = "127.0.0.1:8501";

/// A secret string (API keys, tokens, passwords). Never shown: Debug and Display print `***`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    /// The real value, for the one place that must send it (an HTTP header, a DSN).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// Paper (simulated fills, the default) or live (real Kite orders: explicit opt-in).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Paper,
    Live,
}

pub use crate::domain::Product;

/// Moving-average kind for the `ma_cross` strategy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MaKind {
    #[default]
    Ema,
    Sma,
}

#[derive(Clone)]
pub struct Settings {
    /// MODE
    pub mode: Mode,
    /// DATABASE_URL (sqlite://data/mft.db by default; postgres://... for PostgreSQL)
    pub database_url: String,
    pub zerodha: ZerodhaSettings,
    pub telegram: TelegramSettings,
    pub openai: OpenAiSettings,
    pub news: NewsSettings,
    pub postgres: PostgresSettings,
    pub status: StatusSettings,
    /// mft.toml [trading]
    pub trading: TradingSettings,
    /// mft.toml [risk]
    pub risk: RiskSettings,
    /// mft.toml [strategy]
    pub strategy: StrategySettings,
    /// mft.toml [schedules]: 6-field cron strings in Asia/Kolkata; "" disables a job
    pub schedules: ScheduleSettings,
    /// mft.toml [paper]
    pub paper: PaperSettings,
    /// mft.toml [live]: live orders on Kite (MODE=live)
    pub live: LiveSettings,
    /// mft.toml [charts]
    pub charts: ChartSettings,
    /// mft.toml [kite]: request pacing and retries for market-data reads
    pub kite: KiteSettings,
    /// mft.toml [analysis]: which analyst runs the scans, prompts
    pub analysis: AnalysisSettings,
    /// mft.toml [llm]: the LLM analyst's budget, validation and retries
    pub llm: LlmSettings,
    /// MCP_TOKEN: bearer token of `mft mcp serve --http`
    pub mcp: McpSettings,
    /// mft.toml [backtest]: `mft backtest` fills, costs and sizing
    pub backtest: BacktestSettings,
}

#[derive(Debug, Clone)]
pub struct ZerodhaSettings {
    pub api_key: Option<Secret>,
    pub api_secret: Option<Secret>,
    pub access_token: Option<Secret>,
    /// ZERODHA_API_URL, default https://api.kite.trade
    pub api_url: String,
    /// MFT_SECRET_KEY: 32 bytes (hex or base64) that encrypt the stored Kite session.
    pub secret_key: Option<Secret>,
    /// ZERODHA_TICKER_URL, default wss://ws.kite.trade
    pub ticker_url: String,
}

#[derive(Debug, Clone)]
pub struct TelegramSettings {
    pub bot_token: Option<Secret>,
    pub chat_id: Option<i64>,
    /// TELEGRAM_ALLOWED_USERS; empty means: the chat id when it is a private chat (> 0)
    pub allowed_users: Vec<i64>,
    /// TELEGRAM_API_URL, default https://api.telegram.org
    pub api_url: String,
}

#[derive(Debug, Clone, Default)]
pub struct OpenAiSettings {
    pub api_key: Option<Secret>,
    pub base_url: Option<String>,
    pub model: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct NewsSettings {
    pub api_key: Option<Secret>,
    pub api_url: Option<String>,
}

/// Used by docker-compose to build DATABASE_URL for the bundled database.
#[derive(Debug, Clone, Default)]
pub struct PostgresSettings {
    pub user: Option<String>,
    pub password: Option<Secret>,
    pub db: Option<String>,
}

#[derive(Debug, Clone)]
pub struct StatusSettings {
    /// STATUS_ADDR, default 127.0.0.1:8501
    pub addr: String,
    /// STATUS_TOKEN: when set, the status page requires it
    pub token: Option<Secret>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TradingSettings {
    pub watchlist: Vec<InstrumentKey>,
    pub interval: Interval,
    /// Rupees (whole or with paise) in the TOML; paise here.
    #[serde(with = "rupees")]
    pub capital: Paise,
    pub risk_per_trade_pct: f64,
    pub leverage: f64,
    pub product: Product,
    pub proposal_ttl_minutes: i64,
    /// How many instruments a scan analyses at once.
    pub scan_concurrency: usize,
    /// How many stored candles the analyst reads per instrument.
    pub lookback_bars: usize,
}

impl Default for TradingSettings {
    fn default() -> Self {
        Self {
            watchlist: vec![
                InstrumentKey::new("NSE", "INFY"),
                InstrumentKey::new("NSE", "RELIANCE"),
            ],
            interval: Interval::Minute15,
            capital: Paise::from_rupees(100_000),
            risk_per_trade_pct: 1.0,
            leverage: 1.0,
            product: Product::Mis,
            proposal_ttl_minutes: 10,
            scan_concurrency: 4,
            lookback_bars: 300,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RiskSettings {
    /// "HH:MM-HH:MM" IST, parsed when the settings load
    pub trading_window: TradingWindow,
    /// "Mon-Fri" or a list like "Mon,Tue,Thu", parsed when the settings load
    pub trading_days: TradingDays,
    pub max_price_deviation_pct: f64,
    #[serde(with = "rupees")]
    pub max_position_value: Paise,
    pub max_open_positions: u32,
    pub max_orders_per_day: u32,
    #[serde(with = "rupees")]
    pub max_daily_loss: Paise,
    /// Instruments that may be traded; empty means the watchlist.
    pub allowed_instruments: Vec<InstrumentKey>,
    /// A candle moving more than this percent from the previous one does not trigger an exit
    /// by itself (bad ticks, absurd imports): the next candle decides.
    pub max_bar_move_pct: f64,
    /// During market hours, an entry is refused (STALE_PRICE) when its price is older than this.
    pub max_price_age_seconds: u64,
    /// An entry for the same instrument and side as an order recorded this many seconds ago or
    /// less is refused (DUPLICATE_ORDER); 0 turns the check off.
    pub duplicate_window_seconds: u64,
    /// An entry is refused (ORDER_RATE) when this many orders were recorded in the last 60 s.
    pub max_orders_per_minute: u32,
}

impl Default for RiskSettings {
    fn default() -> Self {
        Self {
            trading_window: TradingWindow::default(),
            trading_days: TradingDays::default(),
            max_price_deviation_pct: 1.0,
            max_position_value: Paise::from_rupees(50_000),
            max_open_positions: 3,
            max_orders_per_day: 20,
            max_daily_loss: Paise::from_rupees(2_000),
            allowed_instruments: Vec::new(),
            max_bar_move_pct: 20.0,
            max_price_age_seconds: 60,
            duplicate_window_seconds: 30,
            max_orders_per_minute: 20,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StrategySettings {
    /// Only "ma_cross" for now.
    pub name: String,
    pub ma: MaKind,
    pub fast: usize,
    pub slow: usize,
    pub rsi_period: usize,
    pub rsi_min: f64,
    pub rsi_max: f64,
    pub atr_period: usize,
    pub stop_atr: f64,
    pub reward_risk: f64,
    pub allow_short: bool,
    /// How positions end: "bracket" (stop/target from the entry, or the opposite cross) or
    /// "cross" (only the opposite crossover, no stop and no target).
    pub exit: ExitRule,
}

impl Default for StrategySettings {
    fn default() -> Self {
        Self {
            name: "ma_cross".into(),
            ma: MaKind::Ema,
            fast: 20,
            slow: 50,
            rsi_period: 14,
            rsi_min: 50.0,
            rsi_max: 75.0,
            atr_period: 14,
            stop_atr: 2.0,
            reward_risk: 2.0,
            allow_short: false,
            exit: ExitRule::Bracket,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleSettings {
    pub scan: String,
    pub expiry_sweep: String,
    pub square_off: String,
    /// Daily Kite login link to the chat.
    pub login_link: String,
    /// Paper bracket exits (stop/target) against the freshest price, between scans.
    pub exit_check: String,
    /// Daily download of Kite's instruments dump.
    pub instruments_refresh: String,
}

impl Default for ScheduleSettings {
    fn default() -> Self {
        Self {
            scan: "0 */15 9-15 * * Mon-Fri".into(),
            expiry_sweep: "0 * * * * *".into(),
            square_off: "0 15 15 * * Mon-Fri".into(),
            login_link: "0 30 8 * * Mon-Fri".into(),
            exit_check: "30 * 9-15 * * Mon-Fri".into(),
            instruments_refresh: "0 0 8 * * Mon-Fri".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PaperSettings {
    pub slippage_bps: f64,
}

impl Default for PaperSettings {
    fn default() -> Self {
        Self { slippage_bps: 5.0 }
    }
}

/// `[live] entry_order`: how an approved entry is sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryOrder {
    /// LIMIT at the approved entry price (on the instrument's tick).
    #[default]
    Limit,
    /// MARKET with `[live] market_protection`.
    Market,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LiveSettings {
    pub entry_order: EntryOrder,
    /// Kite's market protection for every MARKET order, in percent (1-100), or -1 for Kite's
    /// automatic protection.
    pub market_protection: f64,
    /// For this many trading days from the first live day, capital is capped at
    /// `start_fraction` of `[trading] capital` (start small).
    pub ramp_days: u32,
    pub start_fraction: f64,
    /// Seconds between polls of Kite's order history for orders still open (the fallback
    /// when postbacks and ticker messages are lost).
    pub poll_seconds: u64,
    /// Seconds between reconciliations of the store with Kite's orders and positions.
    pub reconcile_seconds: u64,
    /// How long /kill and the square-off wait for their MARKET exits to fill, in seconds.
    pub exit_wait_seconds: u64,
    /// Not a setting: the last trading day of the capital ramp, which a MODE=live start works
    /// out from the first live day and the trading calendar. Through that day
    /// [`Settings::capital_on`] is `start_fraction` of `[trading] capital`; from the next, all
    /// of it, with no restart.
    #[serde(skip)]
    pub capped_until: Option<chrono::NaiveDate>,
}

impl Default for LiveSettings {
    fn default() -> Self {
        Self {
            entry_order: EntryOrder::Limit,
            market_protection: -1.0,
            ramp_days: 10,
            start_fraction: 0.1,
            poll_seconds: 5,
            reconcile_seconds: 60,
            exit_wait_seconds: 10,
            capped_until: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChartSettings {
    pub dir: String,
    pub bars: usize,
    pub width: u32,
    pub height: u32,
}

impl Default for ChartSettings {
    fn default() -> Self {
        Self {
            dir: "charts".into(),
            bars: 120,
            width: 1280,
            height: 800,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KiteSettings {
    /// Historical-data requests per second (Kite allows 3).
    pub historical_rate_per_sec: u32,
    /// Retries of a read after 429 or a network error.
    pub max_retries: u32,
    /// First retry delay in milliseconds; doubles each time.
    pub retry_backoff_ms: u64,
}

impl Default for KiteSettings {
    fn default() -> Self {
        Self {
            historical_rate_per_sec: 3,
            max_retries: 4,
            retry_backoff_ms: 500,
        }
    }
}

impl Default for ZerodhaSettings {
    fn default() -> Self {
        Self {
            api_key: None,
            api_secret: None,
            access_token: None,
            api_url: DEFAULT_ZERODHA_API_URL.into(),
            secret_key: None,
            ticker_url: DEFAULT_ZERODHA_TICKER_URL.into(),
        }
    }
}

impl Default for TelegramSettings {
    fn default() -> Self {
        Self {
            bot_token: None,
            chat_id: None,
            allowed_users: Vec::new(),
            api_url: DEFAULT_TELEGRAM_API_URL.into(),
        }
    }
}

impl Default for StatusSettings {
    fn default() -> Self {
        Self {
            addr: DEFAULT_STATUS_ADDR.into(),
            token: None,
        }
    }
}

impl Default for Settings {
    /// Built-in defaults: paper mode, SQLite, no credentials (what an empty environment gives).
    fn default() -> Self {
        Self {
            mode: Mode::Paper,
            database_url: DEFAULT_DATABASE_URL.into(),
            zerodha: ZerodhaSettings::default(),
            telegram: TelegramSettings::default(),
            openai: OpenAiSettings::default(),
            news: NewsSettings::default(),
            postgres: PostgresSettings::default(),
            status: StatusSettings::default(),
            trading: TradingSettings::default(),
            risk: RiskSettings::default(),
            strategy: StrategySettings::default(),
            schedules: ScheduleSettings::default(),
            paper: PaperSettings::default(),
            live: LiveSettings::default(),
            charts: ChartSettings::default(),
            kite: KiteSettings::default(),
            analysis: AnalysisSettings::default(),
            llm: LlmSettings::default(),
            mcp: McpSettings::default(),
            backtest: BacktestSettings::default(),
        }
    }
}

impl std::fmt::Debug for Settings {
    /// Written by hand because DATABASE_URL may embed a PostgreSQL password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("mode", &self.mode)
            .field("database_url", &redact_url(&self.database_url))
            .field("zerodha", &self.zerodha)
            .field("telegram", &self.telegram)
            .field("openai", &self.openai)
            .field("news", &self.news)
            .field("postgres", &self.postgres)
            .field("status", &self.status)
            .field("trading", &self.trading)
            .field("risk", &self.risk)
            .field("strategy", &self.strategy)
            .field("schedules", &self.schedules)
            .field("paper", &self.paper)
            .field("live", &self.live)
            .field("charts", &self.charts)
            .field("kite", &self.kite)
            .field("analysis", &self.analysis)
            .field("llm", &self.llm)
            .field("mcp", &self.mcp)
            .finish()
    }
}

/// Masks the password of a `scheme://user:password@host/...` URL; other strings are unchanged.
/// Done by hand (not with `url`) so that a URL too broken to parse is still masked.
pub fn redact_url(s: &str) -> String {
    let Some(start) = s.find("://").map(|i| i + 3) else {
        return s.to_string();
    };
    let rest = &s[start..];
    let auth_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..auth_end];
    let Some(at) = authority.rfind('@') else {
        return s.to_string();
    };
    let userinfo = &authority[..at];
    let Some(colon) = userinfo.find(':') else {
        return s.to_string();
    };
    format!(
        "{}{}:***{}",
        &s[..start],
        &userinfo[..colon],
        &s[start + at..]
    )
}

impl Settings {
    /// True when orders go to the real broker (MODE=live).
    pub fn is_live(&self) -> bool {
        self.mode == Mode::Live
    }

    /// The capital sizing and risk use on `today` (IST): `[trading] capital`, or
    /// `[live] start_fraction` of it through the live capital ramp's last day.
    pub fn capital_on(&self, today: chrono::NaiveDate) -> Paise {
        let capital = self.trading.capital;
        match self.live.capped_until {
            Some(last) if today <= last => {
                Paise((capital.0 as f64 * self.live.start_fraction).floor() as i64)
            }
            _ => capital,
        }
    }

    /// The slippage risk and sizing value an entry with: `[paper] slippage_bps` in paper mode,
    /// where the paper broker fills at the last price moved by it; 0 live, where Kite's margin
    /// figure prices the order.
    pub fn entry_slippage_bps(&self) -> f64 {
        match self.mode {
            Mode::Paper => self.paper.slippage_bps,
            Mode::Live => 0.0,
        }
    }

    /// Instruments that may be traded: `[risk] allowed_instruments`, or the watchlist when empty.
    pub fn allowed_instruments(&self) -> Vec<InstrumentKey> {
        if self.risk.allowed_instruments.is_empty() {
            self.trading.watchlist.clone()
        } else {
            self.risk.allowed_instruments.clone()
        }
    }
}

impl RiskSettings {
    /// The trading window in IST.
    pub fn window(&self) -> (chrono::NaiveTime, chrono::NaiveTime) {
        (self.trading_window.start(), self.trading_window.end())
    }

    /// The trading days, Monday first.
    pub fn days(&self) -> Vec<chrono::Weekday> {
        self.trading_days.days()
    }
}

impl ScheduleSettings {
    /// Job names with their schedules (IST); `None` means the job is disabled (""). An invalid
    /// cron string (only possible when `validate()` was skipped) falls back to the default.
    pub fn jobs(&self) -> Vec<(&'static str, Option<cron::Schedule>)> {
        let defaults = ScheduleSettings::default();
        self.entries()
            .into_iter()
            .zip(defaults.entries())
            .map(|((name, expr), (_, default))| {
                let schedule = match validate::parse_cron(expr) {
                    Ok(s) => s,
                    Err(_) => validate::parse_cron(default).ok().flatten(),
                };
                (name, schedule)
            })
            .collect()
    }

    /// `(name, cron string)` of every job, in a fixed order.
    pub fn entries(&self) -> [(&'static str, &str); 6] {
        [
            ("scan", self.scan.as_str()),
            ("expiry_sweep", self.expiry_sweep.as_str()),
            ("square_off", self.square_off.as_str()),
            ("login_link", self.login_link.as_str()),
            ("exit_check", self.exit_check.as_str()),
            ("instruments_refresh", self.instruments_refresh.as_str()),
        ]
    }
}

impl TelegramSettings {
    /// Users allowed to command the bot: TELEGRAM_ALLOWED_USERS, or else the chat id when it is
    /// a private chat (positive id; group ids are negative and name no user).
    pub fn allowed_user_ids(&self) -> Vec<i64> {
        if !self.allowed_users.is_empty() {
            return self.allowed_users.clone();
        }
        match self.chat_id {
            Some(id) if id > 0 => vec![id],
            _ => Vec::new(),
        }
    }
}

/// Which analyst a scan uses (`[analysis] analyst`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnalystMode {
    /// The rule-based `ma_cross` only.
    Rules,
    /// The LLM analyses every instrument.
    Llm,
    /// The rules screen every instrument; the LLM deep-dives only the rules' candidates.
    RulesLlm,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnalysisSettings {
    /// "rules", "llm", "rules+llm", or "auto" (rules+llm when OPENAI_BASE_URL or
    /// OPENAI_API_KEY is set, otherwise rules).
    pub analyst: String,
    /// Path of a system prompt replacing the built-in prompts/analyst_system.md ("" = built in).
    pub system_prompt: String,
    /// Path of a verdict JSON schema replacing prompts/verdict_schema.json ("" = built in).
    pub verdict_schema: String,
    /// How long a news answer is served from the store's cache.
    pub news_cache_minutes: i64,
}

impl Default for AnalysisSettings {
    fn default() -> Self {
        Self {
            analyst: "auto".into(),
            system_prompt: String::new(),
            verdict_schema: String::new(),
            news_cache_minutes: 60,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LlmSettings {
    /// Tool calls the model may make in one analysis.
    pub max_tool_calls: u32,
    /// max_tokens of each completion request.
    pub max_output_tokens: u32,
    /// Wall-clock seconds one analysis may take (all requests and tool calls).
    pub analysis_timeout_secs: u64,
    /// LLM analyses per scan; instruments beyond it get no LLM analysis in that scan.
    pub max_analyses_per_scan: u32,
    /// Tokens (in + out) per IST day; 0 = no limit.
    pub daily_token_limit: u64,
    /// Rupees per IST day, from the prices below; 0 = no limit.
    #[serde(with = "rupees")]
    pub daily_cost_cap: Paise,
    /// Rupees per million input tokens.
    pub price_input_per_mtok: f64,
    /// Rupees per million output tokens.
    pub price_output_per_mtok: f64,
    /// Smallest reward:risk ((target - entry) / (entry - stop)) a verdict may have.
    pub min_reward_risk: f64,
    /// After the daily budget is spent: "rules" (the rule analyst alone) or "none".
    pub fallback: String,
    /// Retries of a request after 429, 5xx or a network error.
    pub max_retries: u32,
    /// First retry delay in milliseconds; doubles each time.
    pub retry_backoff_ms: u64,
    /// Ask for the verdict with a JSON schema (response_format) when the endpoint accepts it.
    pub structured_output: bool,
    /// Consecutive failed analyses that send one alert.
    pub alert_after_failures: u32,
}

impl Default for LlmSettings {
    fn default() -> Self {
        Self {
            max_tool_calls: 8,
            max_output_tokens: 1024,
            analysis_timeout_secs: 60,
            max_analyses_per_scan: 10,
            daily_token_limit: 500_000,
            daily_cost_cap: Paise::from_rupees(100),
            price_input_per_mtok: 0.0,
            price_output_per_mtok: 0.0,
            min_reward_risk: 1.5,
            fallback: "rules".into(),
            max_retries: 3,
            retry_backoff_ms: 500,
            structured_output: true,
            alert_after_failures: 3,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct McpSettings {
    /// MCP_TOKEN: `Authorization: Bearer` token of the HTTP transport.
    pub token: Option<Secret>,
}

impl Settings {
    /// True when an OpenAI-compatible endpoint is configured (OPENAI_BASE_URL or OPENAI_API_KEY).
    pub fn llm_configured(&self) -> bool {
        self.openai.base_url.is_some() || self.openai.api_key.is_some()
    }

    /// The analyst `[analysis] analyst` selects ("auto" resolved; invalid values only pass
    /// when validate() was skipped, and then mean rules).
    pub fn analyst_mode(&self) -> AnalystMode {
        match self.analysis.analyst.trim() {
            "llm" => AnalystMode::Llm,
            "rules+llm" => AnalystMode::RulesLlm,
            "auto" | "" if self.llm_configured() => AnalystMode::RulesLlm,
            _ => AnalystMode::Rules,
        }
    }
}

/// MFT_SECRET_KEY's 32 bytes, from 64 hex digits or base64 (standard or URL-safe, padded or not).
pub fn parse_secret_key(s: &str) -> Option<[u8; 32]> {
    use base64::Engine as _;
    let s = s.trim();
    let bytes = if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        hex::decode(s).ok()?
    } else {
        let engines = [
            base64::engine::general_purpose::STANDARD,
            base64::engine::general_purpose::STANDARD_NO_PAD,
            base64::engine::general_purpose::URL_SAFE,
            base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ];
        engines.iter().find_map(|e| e.decode(s).ok())?
    };
    bytes.try_into().ok()
}

/// `[strategy] exit`: how a position ends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExitRule {
    /// Stop and target from the entry (paper brackets), or the opposite crossover.
    #[default]
    Bracket,
    /// Only the opposite crossover: no stop, no target.
    Cross,
}

impl StrategySettings {
    /// `rsi_min = 0` and `rsi_max = 100` switch the RSI filter off.
    pub fn rsi_filter_off(&self) -> bool {
        self.rsi_min <= 0.0 && self.rsi_max >= 100.0
    }
}

/// `[backtest] fill`: the price a simulated order fills at.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BacktestFill {
    /// The open of the bar after the signal bar (the order is sent once the bar has closed).
    #[default]
    NextOpen,
    /// The close of the signal bar itself.
    Close,
}

/// `[backtest] costs`: which charges a simulated fill pays.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BacktestCosts {
    /// Zerodha's equity charges (brokerage, STT, exchange transaction, SEBI, GST, stamp duty).
    #[default]
    Zerodha,
    /// No charges at all.
    None,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BacktestSettings {
    /// Rupees in the TOML; paise here. The cash a run starts with.
    #[serde(with = "rupees")]
    pub initial_cash: Paise,
    pub fill: BacktestFill,
    /// Against the trade: buys fill higher, sells lower (basis points, 0-1000).
    pub slippage_bps: f64,
    pub costs: BacktestCosts,
    /// Shares per entry; 0 = risk-based sizing ([trading] risk_per_trade_pct and the limits).
    pub fixed_quantity: u32,
}

impl Default for BacktestSettings {
    fn default() -> Self {
        Self {
            initial_cash: Paise::from_rupees(100_000),
            fill: BacktestFill::NextOpen,
            slippage_bps: 5.0,
            costs: BacktestCosts::Zerodha,
            fixed_quantity: 0,
        }
    }
}
