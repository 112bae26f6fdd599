//! Building `Settings` from defaults, mft.toml, `MFT__SECTION__KEY` overrides and the environment,
//! collecting every problem instead of stopping at the first.

use super::{
    BacktestSettings, ChartSettings, KiteSettings, Mode, PaperSettings, RiskSettings,
    ScheduleSettings, Secret, Settings, StrategySettings, TradingSettings,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

/// One configuration problem: which setting (`[risk] trading_window`, `TELEGRAM_CHAT_ID`, ...) and
/// what is expected. Never contains a secret's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

impl ConfigError {
    /// Multi-line messages (some crates' errors draw carets) are folded so that the report
    /// stays one problem per line.
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        let message: String = message.into();
        let message = message
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && *l != "^")
            .collect::<Vec<_>>()
            .join(" ");
        Self {
            key: key.into(),
            message,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Every problem found in the configuration, one per line when displayed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", list(.0))]
pub struct ConfigErrors(pub Vec<ConfigError>);

fn list(errors: &[ConfigError]) -> String {
    let mut out = format!(
        "invalid configuration ({} problem{}; fix mft.toml or the environment/.env):",
        errors.len(),
        if errors.len() == 1 { "" } else { "s" }
    );
    for e in errors {
        out.push_str("\n  ");
        out.push_str(&e.to_string());
    }
    out
}

impl ConfigErrors {
    pub fn errors(&self) -> &[ConfigError] {
        &self.0
    }

    /// The key names with a problem, in report order.
    pub fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|e| e.key.as_str()).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    fn into_result(self) -> Result<(), ConfigErrors> {
        if self.0.is_empty() { Ok(()) } else { Err(self) }
    }
}

/// An environment-only setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnvKey {
    pub name: &'static str,
    /// Shown as `***` and reported by name only.
    pub secret: bool,
}

const fn key(name: &'static str) -> EnvKey {
    EnvKey {
        name,
        secret: false,
    }
}

const fn secret(name: &'static str) -> EnvKey {
    EnvKey { name, secret: true }
}

/// Every environment variable MFT-1 reads (besides `MFT__SECTION__KEY` overrides).
pub const ENV_KEYS: &[EnvKey] = &[
    key("MODE"),
    key("DATABASE_URL"),
    key("MFT_CONFIG"),
    secret("ZERODHA_API_KEY"),
    secret("ZERODHA_API_SECRET"),
    secret("ZERODHA_ACCESS_TOKEN"),
    key("ZERODHA_API_URL"),
    secret("TELEGRAM_BOT_TOKEN"),
    key("TELEGRAM_CHAT_ID"),
    key("TELEGRAM_ALLOWED_USERS"),
    key("TELEGRAM_API_URL"),
    secret("OPENAI_API_KEY"),
    key("OPENAI_BASE_URL"),
    key("OPENAI_MODEL"),
    secret("NEWS_API_KEY"),
    key("NEWS_API_URL"),
    key("POSTGRES_USER"),
    secret("POSTGRES_PASSWORD"),
    key("POSTGRES_DB"),
    key("STATUS_ADDR"),
    secret("STATUS_TOKEN"),
    secret("MCP_TOKEN"),
    secret("MFT_SECRET_KEY"),
    key("ZERODHA_TICKER_URL"),
];

/// Prefix of the environment overrides of mft.toml keys: `MFT__RISK__MAX_DAILY_LOSS=1500`.
pub const OVERRIDE_PREFIX: &str = "MFT__";

/// The mft.toml sections with their keys and default values (serialized from the defaults, so
/// the key tree can never drift from the structs).
pub(super) fn default_sections() -> Vec<(&'static str, toml::Table)> {
    fn table<T: Serialize>(t: &T) -> toml::Table {
        match toml::Value::try_from(t) {
            Ok(toml::Value::Table(t)) => t,
            _ => toml::Table::new(),
        }
    }
    vec![
        ("trading", table(&TradingSettings::default())),
        ("risk", table(&RiskSettings::default())),
        ("strategy", table(&StrategySettings::default())),
        ("schedules", table(&ScheduleSettings::default())),
        ("paper", table(&PaperSettings::default())),
        ("live", table(&super::LiveSettings::default())),
        ("charts", table(&ChartSettings::default())),
        ("kite", table(&KiteSettings::default())),
        ("analysis", table(&super::AnalysisSettings::default())),
        ("llm", table(&super::LlmSettings::default())),
        ("backtest", table(&BacktestSettings::default())),
    ]
}

/// The label of an mft.toml key in messages: `[risk] trading_window`.
pub(super) fn label(section: &str, key: &str) -> String {
    format!("[{section}] {key}")
}

impl Settings {
    /// Builds settings from mft.toml text (with its path, for messages) and an environment map.
    /// Reads no files and no process state: the testable core of [`Settings::load`].
    pub fn from_sources(
        toml: Option<(&Path, &str)>,
        env: &HashMap<String, String>,
    ) -> Result<Settings, ConfigErrors> {
        let (settings, errors) = build(toml, env);
        errors.into_result().map(|()| settings)
    }

    /// Loads from the real process: `.env` in the working directory (never overriding variables
    /// already set), mft.toml (MFT_CONFIG or ./mft.toml) and the environment. The process
    /// environment itself is not modified.
    pub fn load() -> Result<Settings, ConfigErrors> {
        let mut errors = Vec::new();
        let mut env = HashMap::new();
        for (k, v) in std::env::vars_os() {
            match (k.into_string(), v.into_string()) {
                (Ok(k), Ok(v)) => {
                    env.insert(k, v);
                }
                (Ok(k), Err(_)) if is_ours(&k) => {
                    errors.push(ConfigError::new(k, "is not valid UTF-8"));
                }
                _ => {}
            }
        }
        let dir = match std::env::current_dir() {
            Ok(d) => d,
            Err(e) => {
                errors.push(ConfigError::new(
                    "working directory",
                    format!("cannot be read ({e}); start mft from an existing directory"),
                ));
                return Err(ConfigErrors(errors));
            }
        };
        match Settings::load_in(&dir, env) {
            Ok(s) if errors.is_empty() => Ok(s),
            Ok(_) => Err(ConfigErrors(errors)),
            Err(mut e) => {
                errors.append(&mut e.0);
                Err(ConfigErrors(errors))
            }
        }
    }

    /// [`Settings::load`] with an explicit working directory and environment: reads `dir/.env`
    /// (its values never replace those in `env`), then MFT_CONFIG (relative to `dir`) or
    /// `dir/mft.toml` (optional only when MFT_CONFIG is unset).
    pub fn load_in(dir: &Path, mut env: HashMap<String, String>) -> Result<Settings, ConfigErrors> {
        let mut errors = read_dotenv(&dir.join(".env"), &mut env);
        let (path, explicit) = Settings::config_path_in(dir, &env);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => Some(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => None,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                errors.push(ConfigError::new(
                    "MFT_CONFIG",
                    format!(
                        "file {} does not exist; fix the path or unset MFT_CONFIG to use ./mft.toml",
                        path.display()
                    ),
                ));
                None
            }
            Err(e) => {
                errors.push(ConfigError::new(
                    path.display().to_string(),
                    format!("cannot be read: {e}"),
                ));
                None
            }
        };
        let (settings, mut more) = build(text.as_deref().map(|t| (path.as_path(), t)), &env);
        errors.append(&mut more.0);
        ConfigErrors(errors).into_result().map(|()| settings)
    }

    /// The mft.toml path for a working directory and environment, and whether it was named
    /// explicitly by MFT_CONFIG (then it must exist).
    pub fn config_path_in(dir: &Path, env: &HashMap<String, String>) -> (PathBuf, bool) {
        match env
            .get("MFT_CONFIG")
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
        {
            Some(p) => (dir.join(p), true),
            None => (dir.join("mft.toml"), false),
        }
    }
}

fn is_ours(name: &str) -> bool {
    name.starts_with(OVERRIDE_PREFIX) || ENV_KEYS.iter().any(|k| k.name == name)
}

/// Merges a `.env` file into `env` without overriding. A missing file is fine.
fn read_dotenv(path: &Path, env: &mut HashMap<String, String>) -> Vec<ConfigError> {
    let iter = match dotenvy::from_path_iter(path) {
        Ok(it) => it,
        Err(e) if e.not_found() => return Vec::new(),
        Err(e) => {
            return vec![ConfigError::new(
                path.display().to_string(),
                format!("cannot be read: {e}"),
            )];
        }
    };
    for item in iter {
        match item {
            Ok((k, v)) => {
                env.entry(k).or_insert(v);
            }
            Err(dotenvy::Error::LineParse(line, _)) => {
                // The line may hold a secret: report where it is, never what it says.
                let number = std::fs::read_to_string(path)
                    .ok()
                    .and_then(|text| text.lines().position(|l| l.trim() == line.trim()))
                    .map(|i| format!("line {}", i + 1))
                    .unwrap_or_else(|| "a line".into());
                return vec![ConfigError::new(
                    path.display().to_string(),
                    format!(
                        "{number} is not KEY=value (contents not shown: it may hold a secret); \
                         lines after it were not read"
                    ),
                )];
            }
            Err(e) => {
                return vec![ConfigError::new(
                    path.display().to_string(),
                    format!("cannot be read: {e}"),
                )];
            }
        }
    }
    Vec::new()
}

/// The whole pipeline; returns settings (defaults where a value was rejected) and all problems.
fn build(
    toml_src: Option<(&Path, &str)>,
    env: &HashMap<String, String>,
) -> (Settings, ConfigErrors) {
    let mut errors = Vec::new();
    let sections = default_sections();

    let mut root = match toml_src {
        None => toml::Table::new(),
        Some((path, text)) => match toml::from_str::<toml::Table>(text) {
            Ok(t) => t,
            Err(e) => {
                errors.push(syntax_error(path, text, &e));
                toml::Table::new()
            }
        },
    };
    let file = toml_src
        .map(|(p, _)| p.display().to_string())
        .unwrap_or_else(|| "mft.toml".into());
    check_top_level(&mut root, &sections, &file, &mut errors);
    let origins = apply_overrides(&mut root, &sections, env, &mut errors);

    let mut s = Settings {
        trading: section(&root, "trading", &sections, &origins, &mut errors),
        risk: section(&root, "risk", &sections, &origins, &mut errors),
        strategy: section(&root, "strategy", &sections, &origins, &mut errors),
        schedules: section(&root, "schedules", &sections, &origins, &mut errors),
        paper: section(&root, "paper", &sections, &origins, &mut errors),
        live: section(&root, "live", &sections, &origins, &mut errors),
        charts: section(&root, "charts", &sections, &origins, &mut errors),
        kite: section(&root, "kite", &sections, &origins, &mut errors),
        analysis: section(&root, "analysis", &sections, &origins, &mut errors),
        llm: section(&root, "llm", &sections, &origins, &mut errors),
        backtest: section(&root, "backtest", &sections, &origins, &mut errors),
        ..Settings::default()
    };
    apply_env(&mut s, env, &mut errors);

    if let Err(ConfigErrors(semantic)) = s.validate() {
        for mut e in semantic {
            if let Some(var) = origins.get(&e.key) {
                e.key = format!("{} (set by {var})", e.key);
            }
            errors.push(e);
        }
    }
    (s, ConfigErrors(errors))
}

fn syntax_error(path: &Path, text: &str, e: &toml::de::Error) -> ConfigError {
    let position = e.span().map(|span| {
        let before = &text[..span.start.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        format!(" (line {line}, column {column})")
    });
    ConfigError::new(
        format!("{}{}", path.display(), position.unwrap_or_default()),
        format!("TOML syntax error: {}", e.message().trim()),
    )
}

/// Reports top-level keys that are not sections (and sections that are not tables), and
/// removes them so that the rest of the file can still be checked.
fn check_top_level(
    root: &mut toml::Table,
    sections: &[(&'static str, toml::Table)],
    file: &str,
    errors: &mut Vec<ConfigError>,
) {
    let names: Vec<&str> = sections.iter().map(|(n, _)| *n).collect();
    let mut remove = Vec::new();
    for (k, v) in root.iter() {
        if names.contains(&k.as_str()) {
            if !v.is_table() {
                errors.push(ConfigError::new(
                    format!("[{k}]"),
                    format!("must be a table (a [{k}] section), found {}", v.type_str()),
                ));
                remove.push(k.clone());
            }
            continue;
        }
        remove.push(k.clone());
        let upper = k.to_ascii_uppercase();
        let message = if let Some(env_key) = ENV_KEYS.iter().find(|e| e.name == upper) {
            format!(
                "is not an mft.toml setting: set {} in the environment or .env{}",
                env_key.name,
                if env_key.secret {
                    " (secrets never go in mft.toml)"
                } else {
                    ""
                }
            )
        } else if v.is_table() {
            format!(
                "unknown section in {file}; known sections: {}{}",
                names.join(", "),
                suggest(k, names.iter().copied())
            )
        } else {
            format!(
                "unknown top-level key in {file}: settings belong in a section ({}){}",
                names.join(", "),
                suggest(k, names.iter().copied())
            )
        };
        let key = if v.is_table() {
            format!("[{k}]")
        } else {
            k.clone()
        };
        errors.push(ConfigError::new(key, message));
    }
    for k in remove {
        root.remove(&k);
    }
}

/// Applies `MFT__SECTION__KEY` variables onto the TOML tree. Returns which variable set which
/// key label, so that later messages can name the variable.
fn apply_overrides(
    root: &mut toml::Table,
    sections: &[(&'static str, toml::Table)],
    env: &HashMap<String, String>,
    errors: &mut Vec<ConfigError>,
) -> HashMap<String, String> {
    let mut origins = HashMap::new();
    let sorted: BTreeMap<&String, &String> = env.iter().collect();
    for (name, raw) in sorted {
        let Some(rest) = name.strip_prefix(OVERRIDE_PREFIX) else {
            continue;
        };
        let parts: Vec<&str> = rest.split("__").collect();
        let [sec, key] = parts.as_slice() else {
            errors.push(ConfigError::new(
                name,
                "expected MFT__SECTION__KEY, e.g. MFT__RISK__MAX_DAILY_LOSS=1500",
            ));
            continue;
        };
        let (sec, key) = (sec.to_ascii_lowercase(), key.to_ascii_lowercase());
        let Some((sec_name, defaults)) = sections.iter().find(|(n, _)| *n == sec) else {
            errors.push(ConfigError::new(
                name,
                format!(
                    "unknown section {sec:?}; known: {}{}",
                    sections
                        .iter()
                        .map(|(n, _)| n.to_ascii_uppercase())
                        .collect::<Vec<_>>()
                        .join(", "),
                    suggest(&sec, sections.iter().map(|(n, _)| *n))
                ),
            ));
            continue;
        };
        let Some(default) = defaults.get(&key) else {
            errors.push(ConfigError::new(
                name,
                format!(
                    "unknown key {key:?} in [{sec_name}]; known: {}{}",
                    defaults.keys().cloned().collect::<Vec<_>>().join(", "),
                    suggest(&key, defaults.keys().map(String::as_str))
                ),
            ));
            continue;
        };
        let value = match env_value(default, raw) {
            Ok(v) => v,
            Err(expected) => {
                errors.push(ConfigError::new(
                    format!("{name} ({})", label(sec_name, &key)),
                    format!("expected {expected}, got {raw:?}"),
                ));
                continue;
            }
        };
        let table = root
            .entry(sec_name.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if let toml::Value::Table(t) = table {
            t.insert(key.clone(), value);
        }
        origins.insert(label(sec_name, &key), name.clone());
    }
    origins
}

/// Converts an environment string to the TOML type of the key's default value.
fn env_value(default: &toml::Value, raw: &str) -> Result<toml::Value, &'static str> {
    let t = raw.trim();
    match default {
        toml::Value::Integer(_) | toml::Value::Float(_) => {
            if let Ok(i) = t.parse::<i64>() {
                Ok(toml::Value::Integer(i))
            } else if let Ok(f) = t.parse::<f64>() {
                Ok(toml::Value::Float(f))
            } else {
                Err("a number")
            }
        }
        toml::Value::Boolean(_) => match t.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(toml::Value::Boolean(true)),
            "false" | "0" | "no" | "off" => Ok(toml::Value::Boolean(false)),
            _ => Err("true or false"),
        },
        toml::Value::Array(_) => Ok(toml::Value::Array(
            t.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| toml::Value::String(s.to_string()))
                .collect(),
        )),
        _ => Ok(toml::Value::String(raw.to_string())),
    }
}

/// Deserializes one section key by key, so that every wrong key is reported (serde alone stops
/// at the first), and unknown keys are listed with their dotted path.
fn section<T: DeserializeOwned + Default>(
    root: &toml::Table,
    name: &str,
    sections: &[(&'static str, toml::Table)],
    origins: &HashMap<String, String>,
    errors: &mut Vec<ConfigError>,
) -> T {
    let Some(toml::Value::Table(given)) = root.get(name) else {
        return T::default();
    };
    let known = sections
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, t)| t.clone())
        .unwrap_or_default();
    let mut good = toml::Table::new();
    for (key, value) in given {
        let lbl = label(name, key);
        if !known.contains_key(key) {
            let mut message = format!(
                "unknown key; known keys in [{name}]: {}{}",
                known.keys().cloned().collect::<Vec<_>>().join(", "),
                suggest(key, known.keys().map(String::as_str))
            );
            if let toml::Value::Table(sub) = value {
                let nested: Vec<String> = sub.keys().map(|k| format!("{name}.{key}.{k}")).collect();
                if !nested.is_empty() {
                    message.push_str(&format!(" (also ignored: {})", nested.join(", ")));
                }
            }
            errors.push(ConfigError::new(format!("{lbl} ({name}.{key})"), message));
            continue;
        }
        let mut one = toml::Table::new();
        one.insert(key.clone(), value.clone());
        match T::deserialize(toml::Value::Table(one)) {
            Ok(_) => {
                good.insert(key.clone(), value.clone());
            }
            Err(e) => {
                let key_text = match origins.get(&lbl) {
                    Some(var) => format!("{lbl} (set by {var})"),
                    None => lbl,
                };
                errors.push(ConfigError::new(key_text, e.message().trim().to_string()));
            }
        }
    }
    match T::deserialize(toml::Value::Table(good)) {
        Ok(t) => t,
        Err(e) => {
            errors.push(ConfigError::new(
                format!("[{name}]"),
                e.message().trim().to_string(),
            ));
            T::default()
        }
    }
}

/// " (did you mean `x`?)" when a known name is one or two edits away.
fn suggest<'a>(given: &str, known: impl Iterator<Item = &'a str>) -> String {
    known
        .map(|k| (edit_distance(given, k), k))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, k)| format!(" (did you mean `{k}`?)"))
        .unwrap_or_default()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Reads the environment-only settings. Empty values count as unset (as in .env.example).
fn apply_env(s: &mut Settings, env: &HashMap<String, String>, errors: &mut Vec<ConfigError>) {
    let text = |name: &str| -> Option<String> {
        env.get(name)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    // Secrets are kept verbatim (not trimmed): validate() reports stray whitespace by name.
    let secret = |name: &str| -> Option<Secret> {
        env.get(name)
            .filter(|v| !v.trim().is_empty())
            .map(|v| Secret::new(v.clone()))
    };

    if let Some(m) = text("MODE") {
        match m.to_ascii_lowercase().as_str() {
            "paper" => s.mode = Mode::Paper,
            "live" => s.mode = Mode::Live,
            _ => errors.push(ConfigError::new(
                "MODE",
                format!("expected paper or live, got {m:?}"),
            )),
        }
    }
    if let Some(v) = text("DATABASE_URL") {
        s.database_url = v;
    }

    s.zerodha.api_key = secret("ZERODHA_API_KEY");
    s.zerodha.api_secret = secret("ZERODHA_API_SECRET");
    s.zerodha.access_token = secret("ZERODHA_ACCESS_TOKEN");
    if let Some(v) = text("ZERODHA_API_URL") {
        s.zerodha.api_url = v;
    }

    s.telegram.bot_token = secret("TELEGRAM_BOT_TOKEN");
    if let Some(v) = text("TELEGRAM_CHAT_ID") {
        match v.parse::<i64>() {
            Ok(id) if id != 0 => s.telegram.chat_id = Some(id),
            _ => errors.push(ConfigError::new(
                "TELEGRAM_CHAT_ID",
                format!(
                    "expected a non-zero integer chat id (e.g. 123456789, or -100... for a group), got {v:?}"
                ),
            )),
        }
    }
    if let Some(v) = text("TELEGRAM_ALLOWED_USERS") {
        for item in v.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            match item.parse::<i64>() {
                Ok(id) if id > 0 => s.telegram.allowed_users.push(id),
                _ => errors.push(ConfigError::new(
                    "TELEGRAM_ALLOWED_USERS",
                    format!(
                        "expected comma-separated positive integer Telegram user ids, got {item:?}"
                    ),
                )),
            }
        }
    }
    if let Some(v) = text("TELEGRAM_API_URL") {
        s.telegram.api_url = v;
    }

    s.openai.api_key = secret("OPENAI_API_KEY");
    s.openai.base_url = text("OPENAI_BASE_URL");
    s.openai.model = text("OPENAI_MODEL");

    s.news.api_key = secret("NEWS_API_KEY");
    s.news.api_url = text("NEWS_API_URL");

    s.postgres.user = text("POSTGRES_USER");
    s.postgres.password = secret("POSTGRES_PASSWORD");
    s.postgres.db = text("POSTGRES_DB");

    if let Some(v) = text("STATUS_ADDR") {
        s.status.addr = v;
    }
    s.status.token = secret("STATUS_TOKEN");
    s.mcp.token = secret("MCP_TOKEN");

    s.zerodha.secret_key = secret("MFT_SECRET_KEY");
    if let Some(v) = text("ZERODHA_TICKER_URL") {
        s.zerodha.ticker_url = v;
    }
}
