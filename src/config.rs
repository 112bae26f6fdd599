//! Settings: defaults -> mft.toml -> environment (.env); `validate()` reports every error at once.
//!
//! SHAPE ONLY (contract for the other modules). Loading, environment overlay, validation,
//! redaction and `mft config check` output are still to be written in this file.

use crate::domain::{InstrumentKey, Interval, Paise};
use serde::{Deserialize, Serialize};

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

#[derive(Debug, Clone)]
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
    /// mft.toml [charts]
    pub charts: ChartSettings,
    /// mft.toml [kite]: request pacing and retries for market-data reads
    pub kite: KiteSettings,
}

#[derive(Debug, Clone)]
pub struct ZerodhaSettings {
    pub api_key: Option<Secret>,
    pub api_secret: Option<Secret>,
    pub access_token: Option<Secret>,
    /// ZERODHA_API_URL, default https://api.kite.trade
    pub api_url: String,
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
    /// "HH:MM-HH:MM" IST
    pub trading_window: String,
    /// "Mon-Fri" or a list like "Mon,Tue,Thu"
    pub trading_days: String,
    pub max_price_deviation_pct: f64,
    pub max_position_value: Paise,
    pub max_open_positions: u32,
    pub max_orders_per_day: u32,
    pub max_daily_loss: Paise,
    /// Instruments that may be traded; empty means the watchlist.
    pub allowed_instruments: Vec<InstrumentKey>,
}

impl Default for RiskSettings {
    fn default() -> Self {
        Self {
            trading_window: "09:20-15:10".into(),
            trading_days: "Mon-Fri".into(),
            max_price_deviation_pct: 1.0,
            max_position_value: Paise::from_rupees(50_000),
            max_open_positions: 3,
            max_orders_per_day: 20,
            max_daily_loss: Paise::from_rupees(2_000),
            allowed_instruments: Vec::new(),
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
}

impl Default for ScheduleSettings {
    fn default() -> Self {
        Self {
            scan: "0 */15 9-15 * * Mon-Fri".into(),
            expiry_sweep: "0 * * * * *".into(),
            square_off: "0 15 15 * * Mon-Fri".into(),
            login_link: "0 0 8 * * Mon-Fri".into(),
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
