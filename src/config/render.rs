//! `mft config check` output: the effective settings, every key, secrets masked.

use super::Settings;
use super::load::default_sections;
use serde::Serialize;
use std::fmt::Write as _;

impl Settings {
    /// The effective settings as TOML-like text: environment-only settings first (secrets as
    /// `***` when set, `(unset)` when not), then every mft.toml section with every key.
    pub fn render_effective(&self) -> String {
        let mut out = String::new();
        out.push_str("# MFT-1 effective settings: defaults -> mft.toml -> environment (.env)\n");
        out.push_str("# secrets: *** when set, (unset) when not\n\n");
        out.push_str("# environment-only settings\n");
        let quoted = |v: &str| format!("{v:?}");
        let opt = |v: &Option<String>| v.as_deref().map_or("(unset)".to_string(), quoted);
        let secret =
            |v: &Option<super::Secret>| if v.is_some() { "***" } else { "(unset)" }.to_string();
        let mode = match self.mode {
            super::Mode::Paper => "paper",
            super::Mode::Live => "live",
        };
        let chat = self
            .telegram
            .chat_id
            .map_or("(unset)".to_string(), |c| c.to_string());
        let users = self.telegram.allowed_user_ids();
        let users = format!(
            "[{}]{}",
            users
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            if self.telegram.allowed_users.is_empty() {
                "  # TELEGRAM_ALLOWED_USERS unset: the chat id if it is a private chat"
            } else {
                ""
            }
        );
        let rows: Vec<(&str, String)> = vec![
            ("MODE", quoted(mode)),
            (
                "DATABASE_URL",
                quoted(&super::redact_url(&self.database_url)),
            ),
            ("ZERODHA_API_KEY", secret(&self.zerodha.api_key)),
            ("ZERODHA_API_SECRET", secret(&self.zerodha.api_secret)),
            ("ZERODHA_ACCESS_TOKEN", secret(&self.zerodha.access_token)),
            ("ZERODHA_API_URL", quoted(&self.zerodha.api_url)),
            ("TELEGRAM_BOT_TOKEN", secret(&self.telegram.bot_token)),
            ("TELEGRAM_CHAT_ID", chat),
            ("TELEGRAM_ALLOWED_USERS", users),
            ("TELEGRAM_API_URL", quoted(&self.telegram.api_url)),
            ("OPENAI_API_KEY", secret(&self.openai.api_key)),
            ("OPENAI_BASE_URL", opt(&self.openai.base_url)),
            ("OPENAI_MODEL", opt(&self.openai.model)),
            ("NEWS_API_KEY", secret(&self.news.api_key)),
            ("NEWS_API_URL", opt(&self.news.api_url)),
            ("POSTGRES_USER", opt(&self.postgres.user)),
            ("POSTGRES_PASSWORD", secret(&self.postgres.password)),
            ("POSTGRES_DB", opt(&self.postgres.db)),
            ("STATUS_ADDR", quoted(&self.status.addr)),
            ("STATUS_TOKEN", secret(&self.status.token)),
            ("MCP_TOKEN", secret(&self.mcp.token)),
            ("MFT_SECRET_KEY", secret(&self.zerodha.secret_key)),
            ("ZERODHA_TICKER_URL", quoted(&self.zerodha.ticker_url)),
        ];
        for (k, v) in rows {
            let _ = writeln!(out, "{k} = {v}");
        }

        let sections: [(&str, &dyn ErasedSection); 11] = [
            ("trading", &self.trading),
            ("risk", &self.risk),
            ("strategy", &self.strategy),
            ("schedules", &self.schedules),
            ("paper", &self.paper),
            ("live", &self.live),
            ("charts", &self.charts),
            ("kite", &self.kite),
            ("analysis", &self.analysis),
            ("llm", &self.llm),
            ("backtest", &self.backtest),
        ];
        debug_assert_eq!(sections.len(), default_sections().len());
        for (name, section) in sections {
            let _ = write!(out, "\n[{name}]\n{}", section.to_toml());
        }
        out
    }
}

/// Lets the sections of different types be rendered in one loop.
trait ErasedSection {
    fn to_toml(&self) -> String;
}

impl<T: Serialize> ErasedSection for T {
    fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}
