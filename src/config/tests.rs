//! Unit tests of loading, validation, redaction and the example files.

use super::*;
use std::collections::HashMap;
use std::path::Path;

const EXAMPLE_TOML: &str = include_str!("../../mft.example.toml");
const EXAMPLE_ENV: &str = include_str!("../../.env.example");
/// A distinctive fake secret: if it shows up in any text output, redaction is broken.
const FAKE: &str = "zz-FAKE-SECRET-9f3k2q";

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn toml_src(text: &str) -> Option<(&Path, &str)> {
    Some((Path::new("mft.toml"), text))
}

fn assert_sections_default(s: &Settings) {
    assert_eq!(s.trading, TradingSettings::default());
    assert_eq!(s.risk, RiskSettings::default());
    assert_eq!(s.strategy, StrategySettings::default());
    assert_eq!(s.schedules, ScheduleSettings::default());
    assert_eq!(s.paper, PaperSettings::default());
    assert_eq!(s.charts, ChartSettings::default());
    assert_eq!(s.kite, KiteSettings::default());
}

#[test]
fn defaults_are_valid() {
    let s = Settings::from_sources(None, &HashMap::new()).unwrap();
    assert_sections_default(&s);
    assert_eq!(s.mode, Mode::Paper);
    assert_eq!(s.database_url, "sqlite://data/mft.db");
    assert_eq!(s.zerodha.api_url, "https://api.kite.trade");
    assert_eq!(s.telegram.api_url, "https://api.telegram.org");
    assert_eq!(s.status.addr, "127.0.0.1:8501");
    Settings::default().validate().unwrap();
}

#[test]
fn example_toml_parses_to_exactly_the_defaults() {
    let s = Settings::from_sources(toml_src(EXAMPLE_TOML), &HashMap::new()).unwrap();
    assert_sections_default(&s);
}

#[test]
fn example_toml_sets_every_key_explicitly() {
    let parsed: toml::Table = toml::from_str(EXAMPLE_TOML).unwrap();
    for (section, keys) in load::default_sections() {
        let given = parsed
            .get(section)
            .and_then(|v| v.as_table())
            .unwrap_or_else(|| panic!("mft.example.toml lacks [{section}]"));
        for (key, default) in &keys {
            assert_eq!(
                given.get(key),
                Some(default),
                "mft.example.toml must set [{section}] {key} to its default"
            );
        }
        assert_eq!(given.len(), keys.len(), "[{section}] has extra keys");
    }
}

#[test]
fn example_toml_comments_every_key() {
    let lines: Vec<&str> = EXAMPLE_TOML.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') || l.starts_with('[') {
            continue;
        }
        assert!(
            i > 0 && lines[i - 1].trim().starts_with('#'),
            "mft.example.toml line {} ({l}) needs a comment above it",
            i + 1
        );
    }
}

#[test]
fn example_env_lists_every_key_with_a_comment_and_loads_cleanly() {
    assert!(EXAMPLE_ENV.starts_with("# DO NOT COMMIT REAL KEYS HERE\n"));
    let lines: Vec<&str> = EXAMPLE_ENV.lines().collect();
    for k in ENV_KEYS {
        let i = lines
            .iter()
            .position(|l| l.starts_with(&format!("{}=", k.name)))
            .unwrap_or_else(|| panic!(".env.example lacks {}", k.name));
        assert!(
            lines[i - 1].starts_with('#'),
            ".env.example: {} needs a comment above it",
            k.name
        );
    }
    let vars: HashMap<String, String> = dotenvy::from_read_iter(EXAMPLE_ENV.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(vars.len(), ENV_KEYS.len(), "every variable is a known key");
    let s = Settings::from_sources(None, &vars).unwrap();
    assert_eq!(s.mode, Mode::Paper);
    assert!(s.zerodha.api_key.is_none(), "empty values count as unset");
}

#[test]
fn broken_toml_reports_every_problem_with_its_key() {
    let text = r#"
mode = "live"
[trading]
watchlist = ["NSE:INFY"]
capitol = 5000
scan_concurrency = "four"
[risk]
trading_window = "15:10-09:20"
max_dailyloss = 10
max_open_positions = -1
[risk.extra]
x = 1
[schedules]
scan = "*/15 9-15 * * Mon-Fri"
square_off = "not a cron"
[bogus]
a = 1
"#;
    let err = Settings::from_sources(toml_src(text), &HashMap::new()).unwrap_err();
    let shown = err.to_string();
    let keys = err.keys();
    for expected in [
        "mode",
        "[trading] capitol (trading.capitol)",
        "[trading] scan_concurrency",
        "[risk] trading_window",
        "[risk] max_dailyloss (risk.max_dailyloss)",
        "[risk] max_open_positions",
        "[risk] extra (risk.extra)",
        "[schedules] scan",
        "[schedules] square_off",
        "[bogus]",
    ] {
        assert!(
            keys.contains(&expected),
            "missing {expected:?} in:\n{shown}"
        );
    }
    assert_eq!(err.len(), 10, "{shown}");
    assert_eq!(
        shown.lines().count(),
        11,
        "header + one line per problem:\n{shown}"
    );
    assert!(shown.contains("did you mean `capital`"), "{shown}");
    assert!(shown.contains("did you mean `max_daily_loss`"), "{shown}");
    assert!(shown.contains("try \"0 */15 9-15 * * Mon-Fri\""), "{shown}");
    assert!(shown.contains("set MODE in the environment"), "{shown}");
    assert!(shown.contains("risk.extra.x"), "{shown}");
}

#[test]
fn syntax_errors_have_line_and_column() {
    let text = "[trading]\ncapital = 100\nleverage = = 2\n";
    let err = Settings::from_sources(toml_src(text), &HashMap::new()).unwrap_err();
    assert_eq!(err.len(), 1, "{err}");
    assert!(
        err.keys()[0].starts_with("mft.toml (line 3, column "),
        "{err}"
    );
    assert!(err.to_string().contains("TOML syntax error"), "{err}");
}

#[test]
fn semantic_checks_cover_strategy_days_and_ranges() {
    let text = r#"
[trading]
risk_per_trade_pct = 0
watchlist = []
[risk]
trading_days = "Fri-Mon"
max_price_deviation_pct = 150
[strategy]
fast = 60
slow = 50
rsi_min = 80
rsi_max = 70
atr_period = 0
name = "other"
[charts]
width = 10
"#;
    let err = Settings::from_sources(toml_src(text), &HashMap::new()).unwrap_err();
    let keys = err.keys();
    for expected in [
        "[trading] risk_per_trade_pct",
        "[trading] watchlist",
        "[risk] trading_days",
        "[risk] max_price_deviation_pct",
        "[strategy] fast",
        "[strategy] rsi_min",
        "[strategy] atr_period",
        "[strategy] name",
        "[charts] width",
    ] {
        assert!(keys.contains(&expected), "missing {expected:?} in:\n{err}");
    }
}

#[test]
fn money_is_rupees_with_at_most_two_places() {
    let s = Settings::from_sources(
        toml_src("[trading]\ncapital = 250000.5\n[risk]\nmax_position_value = 40000\nmax_daily_loss = \"1500.25\"\n"),
        &HashMap::new(),
    )
    .unwrap();
    assert_eq!(s.trading.capital, Paise(25_000_050));
    assert_eq!(s.risk.max_position_value, Paise(4_000_000));
    assert_eq!(s.risk.max_daily_loss, Paise(150_025));

    let err = Settings::from_sources(
        toml_src("[risk]\nmax_daily_loss = 10.125\n"),
        &HashMap::new(),
    )
    .unwrap_err();
    assert_eq!(err.keys(), vec!["[risk] max_daily_loss"], "{err}");
    assert!(err.to_string().contains("2 decimal places"), "{err}");

    assert_eq!(rupees::parse_rupees("0.1"), Ok(Paise(10)));
    assert_eq!(rupees::parse_rupees("-3.05"), Ok(Paise(-305)));
    assert!(rupees::parse_rupees("1.").is_err());
    assert!(rupees::parse_rupees("1e3").is_err());
    assert!(rupees::parse_rupees("99999999999999999999").is_err());
}

#[test]
fn env_overrides_beat_the_toml() {
    let text = "[trading]\nwatchlist = [\"NSE:SBIN\"]\ncapital = 90000\n[risk]\nmax_daily_loss = 900\n[schedules]\nscan = \"0 0 10 * * *\"\n";
    let e = env(&[
        ("MFT__TRADING__WATCHLIST", "nse:infy, NSE:TCS"),
        ("MFT__RISK__MAX_DAILY_LOSS", "1500.50"),
        ("MFT__STRATEGY__ALLOW_SHORT", "true"),
        ("MFT__SCHEDULES__SCAN", ""),
        ("MFT__KITE__MAX_RETRIES", "7"),
        ("MODE", "LIVE"),
        ("ZERODHA_API_KEY", "k"),
        ("ZERODHA_API_SECRET", "s"),
        ("DATABASE_URL", "postgres://u:p@localhost:5432/mft"),
    ]);
    let s = Settings::from_sources(toml_src(text), &e).unwrap();
    assert_eq!(
        s.trading.watchlist,
        vec![
            InstrumentKey::new("NSE", "INFY"),
            InstrumentKey::new("NSE", "TCS")
        ]
    );
    assert_eq!(s.trading.capital, Paise::from_rupees(90_000), "toml kept");
    assert_eq!(s.risk.max_daily_loss, Paise(150_050));
    assert!(s.strategy.allow_short);
    assert_eq!(s.kite.max_retries, 7);
    assert_eq!(s.schedules.scan, "");
    assert_eq!(s.schedules.jobs()[0].0, "scan");
    assert!(s.schedules.jobs()[0].1.is_none(), "\"\" disables the job");
    assert!(s.is_live());
    assert_eq!(s.database_url, "postgres://u:p@localhost:5432/mft");
}

#[test]
fn bad_and_unknown_overrides_are_errors() {
    let e = env(&[
        ("MFT__TRADING__WATCHLST", "NSE:INFY"),
        ("MFT__NOPE__X", "1"),
        ("MFT__RISK", "1"),
        ("MFT__KITE__MAX_RETRIES", "many"),
        ("MFT__CHARTS__WIDTH", "-5"),
        ("MFT__RISK__MAX_DAILY_LOSS", "50000000"),
    ]);
    let err = Settings::from_sources(None, &e).unwrap_err();
    let keys = err.keys();
    for expected in [
        "MFT__TRADING__WATCHLST",
        "MFT__NOPE__X",
        "MFT__RISK",
        "MFT__KITE__MAX_RETRIES ([kite] max_retries)",
        "[charts] width (set by MFT__CHARTS__WIDTH)",
        "[risk] max_daily_loss (set by MFT__RISK__MAX_DAILY_LOSS)",
    ] {
        assert!(keys.contains(&expected), "missing {expected:?} in:\n{err}");
    }
    assert!(
        err.to_string().contains("did you mean `watchlist`"),
        "{err}"
    );
}

#[test]
fn environment_only_settings_are_checked() {
    let e = env(&[
        ("MODE", "yolo"),
        ("DATABASE_URL", "mysql://root:hunter2@db/mft"),
        ("TELEGRAM_CHAT_ID", "me"),
        ("TELEGRAM_ALLOWED_USERS", "1, x, 3"),
        ("STATUS_ADDR", "localhost"),
        ("ZERODHA_API_URL", "not a url"),
        ("OPENAI_BASE_URL", "ftp://example.com"),
    ]);
    let err = Settings::from_sources(None, &e).unwrap_err();
    let shown = err.to_string();
    let mut keys = err.keys();
    keys.sort();
    assert_eq!(
        keys,
        vec![
            "DATABASE_URL",
            "MODE",
            "OPENAI_BASE_URL",
            "STATUS_ADDR",
            "TELEGRAM_ALLOWED_USERS",
            "TELEGRAM_CHAT_ID",
            "ZERODHA_API_URL",
        ],
        "{shown}"
    );
    assert!(
        !shown.contains("hunter2"),
        "a DATABASE_URL password leaked:\n{shown}"
    );

    let err = Settings::from_sources(None, &env(&[("MODE", "live")])).unwrap_err();
    assert_eq!(
        err.keys(),
        vec!["ZERODHA_API_KEY", "ZERODHA_API_SECRET"],
        "{err}"
    );
}

#[test]
fn secrets_never_appear_in_text_output() {
    let secret_keys: Vec<&str> = ENV_KEYS
        .iter()
        .filter(|k| k.secret)
        .map(|k| k.name)
        .collect();
    // Every secret in ENV_KEYS is one `validate` knows (and checks) as a secret.
    let s = Settings::default();
    let known: Vec<&str> = s.secrets().iter().map(|(n, _)| *n).collect();
    assert_eq!(
        secret_keys.len(),
        known.len(),
        "{secret_keys:?} vs {known:?}"
    );
    assert!(
        secret_keys.iter().all(|k| known.contains(k)),
        "{secret_keys:?} vs {known:?}"
    );

    // Valid secrets: Debug and render_effective must mask them.
    let mut pairs: Vec<(String, String)> = secret_keys
        .iter()
        .map(|k| (k.to_string(), format!("{FAKE}-{k}")))
        .collect();
    pairs.push(("TELEGRAM_BOT_TOKEN".into(), format!("123:{FAKE}")));
    // MFT_SECRET_KEY must be 32 bytes; its hex must not leak either.
    let key_hex = "5e".repeat(32);
    pairs.push(("MFT_SECRET_KEY".into(), key_hex.clone()));
    pairs.push((
        "DATABASE_URL".into(),
        format!("postgres://mft:{FAKE}@localhost/mft"),
    ));
    let e: HashMap<String, String> = pairs.into_iter().collect();
    let s = Settings::from_sources(None, &e).unwrap();
    assert_eq!(
        s.zerodha.api_key.as_ref().map(Secret::expose),
        Some(format!("{FAKE}-ZERODHA_API_KEY").as_str())
    );
    let rendered = s.render_effective();
    for text in [
        format!("{s:?}"),
        rendered.clone(),
        format!("{}", s.zerodha.api_key.clone().unwrap()),
    ] {
        assert!(!text.contains(FAKE), "secret leaked:\n{text}");
        assert!(!text.contains(&key_hex), "MFT_SECRET_KEY leaked:\n{text}");
    }
    assert!(rendered.contains("ZERODHA_API_KEY = ***"), "{rendered}");
    assert!(
        rendered.contains("postgres://mft:***@localhost/mft"),
        "{rendered}"
    );

    // Invalid secrets: reported by key name only.
    let mut bad: HashMap<String, String> = secret_keys
        .iter()
        .map(|k| (k.to_string(), format!("{FAKE} \"{k}\"")))
        .collect();
    bad.insert("DATABASE_URL".into(), format!("mysql://x:{FAKE}@h/db"));
    bad.insert("MODE".into(), "live".into());
    let err = Settings::from_sources(None, &bad).unwrap_err();
    let shown = format!("{err}\n{err:?}");
    assert!(!shown.contains(FAKE), "secret leaked:\n{shown}");
    for k in &secret_keys {
        assert!(err.keys().contains(k), "{k} not reported:\n{shown}");
    }
}

#[test]
fn render_effective_lists_every_key() {
    let mut s = Settings::default();
    s.status.token = Some(Secret::new(FAKE));
    let out = s.render_effective();
    for k in ENV_KEYS.iter().filter(|k| k.name != "MFT_CONFIG") {
        assert!(
            out.contains(&format!("\n{} = ", k.name)),
            "{} missing:\n{out}",
            k.name
        );
    }
    assert!(out.contains("ZERODHA_API_KEY = (unset)"), "{out}");
    assert!(out.contains("STATUS_TOKEN = ***"), "{out}");
    // The section part is valid TOML that reads back to the same settings.
    let sections = &out[out.find("\n[trading]").unwrap()..];
    let back = Settings::from_sources(toml_src(sections), &HashMap::new()).unwrap();
    assert_sections_default(&back);
    for (section, keys) in load::default_sections() {
        for key in keys.keys() {
            assert!(
                out.contains(&format!("\n{key} = ")),
                "[{section}] {key} missing:\n{out}"
            );
        }
    }
}

#[test]
fn typed_helpers_read_the_values_parsed_at_load() {
    let mut r = RiskSettings::default();
    let nt = |h, m| chrono::NaiveTime::from_hms_opt(h, m, 0).unwrap();
    assert_eq!(r.window(), (nt(9, 20), nt(15, 10)));
    use chrono::Weekday::*;
    assert_eq!(r.days(), vec![Mon, Tue, Wed, Thu, Fri]);
    r.trading_days = "fri, Mon-Tue,Mon".parse().unwrap();
    assert_eq!(r.days(), vec![Mon, Tue, Fri]);
    // A bad string cannot reach a check: it is refused where the settings are built.
    assert!("garbage".parse::<crate::config::TradingWindow>().is_err());

    let mut sch = ScheduleSettings::default();
    let jobs = sch.jobs();
    let names: Vec<&str> = jobs.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        names,
        [
            "scan",
            "expiry_sweep",
            "square_off",
            "login_link",
            "exit_check",
            "instruments_refresh"
        ]
    );
    assert!(jobs.iter().all(|(_, s)| s.is_some()));
    sch.scan = "bad".into();
    sch.login_link = String::new();
    let jobs = sch.jobs();
    assert_eq!(
        jobs[0].1.as_ref().map(|s| s.source().to_string()),
        Some(ScheduleSettings::default().scan),
        "invalid falls back to the default"
    );
    assert!(jobs[3].1.is_none());

    let mut t = TelegramSettings::default();
    assert!(t.allowed_user_ids().is_empty());
    t.chat_id = Some(-100123);
    assert!(t.allowed_user_ids().is_empty(), "a group id names no user");
    t.chat_id = Some(42);
    assert_eq!(t.allowed_user_ids(), vec![42]);
    t.allowed_users = vec![7, 8];
    assert_eq!(t.allowed_user_ids(), vec![7, 8]);

    let mut s = Settings::default();
    assert_eq!(s.allowed_instruments(), s.trading.watchlist);
    s.risk.allowed_instruments = vec![InstrumentKey::new("NSE", "TCS")];
    assert_eq!(
        s.allowed_instruments(),
        vec![InstrumentKey::new("NSE", "TCS")]
    );
}

#[test]
fn redact_url_masks_only_passwords() {
    assert_eq!(
        redact_url("postgres://u:pw@h:5432/db"),
        "postgres://u:***@h:5432/db"
    );
    assert_eq!(redact_url("postgres://u:p@w@h/db"), "postgres://u:***@h/db");
    assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
    assert_eq!(redact_url("sqlite://data/mft.db"), "sqlite://data/mft.db");
    assert_eq!(redact_url("sqlite::memory:"), "sqlite::memory:");
}

#[test]
fn load_in_reads_dotenv_without_overriding_and_finds_the_toml() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(".env"),
        "MODE=live\nZERODHA_API_KEY=from-dotenv\nZERODHA_API_SECRET=s\nMFT__KITE__MAX_RETRIES=9\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("mft.toml"),
        "[kite]\nmax_retries = 2\nretry_backoff_ms = 10\n",
    )
    .unwrap();
    let process = env(&[("ZERODHA_API_KEY", "from-process")]);
    let s = Settings::load_in(dir.path(), process).unwrap();
    assert!(s.is_live(), ".env fills what the process lacks");
    assert_eq!(
        s.zerodha.api_key.as_ref().map(Secret::expose),
        Some("from-process")
    );
    assert_eq!(s.kite.max_retries, 9, "MFT__ from .env beats mft.toml");
    assert_eq!(s.kite.retry_backoff_ms, 10);

    // MFT_CONFIG names another file, relative to the directory.
    std::fs::write(
        dir.path().join("other.toml"),
        "[paper]\nslippage_bps = 1.5\n",
    )
    .unwrap();
    let s = Settings::load_in(dir.path(), env(&[("MFT_CONFIG", "other.toml")])).unwrap();
    assert_eq!(s.paper.slippage_bps, 1.5);
    assert_eq!(s.kite.retry_backoff_ms, 500, "./mft.toml was not read");

    // A named file that does not exist is an error; a missing default file is not.
    let err = Settings::load_in(dir.path(), env(&[("MFT_CONFIG", "missing.toml")])).unwrap_err();
    assert_eq!(err.keys(), vec!["MFT_CONFIG"], "{err}");
    let empty = tempfile::tempdir().unwrap();
    let s = Settings::load_in(empty.path(), HashMap::new()).unwrap();
    assert_sections_default(&s);
}

#[test]
fn broken_dotenv_line_is_reported_without_its_contents() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(".env"),
        format!("MODE=paper\nthis is {FAKE} not an assignment\n"),
    )
    .unwrap();
    let err = Settings::load_in(dir.path(), HashMap::new()).unwrap_err();
    let shown = err.to_string();
    assert!(shown.contains("line 2"), "{shown}");
    assert!(!shown.contains(FAKE), "{shown}");
}

#[test]
fn analyst_mode_follows_the_endpoint_and_rejects_llm_without_one() {
    let s = Settings::from_sources(None, &env(&[])).unwrap();
    assert_eq!(s.analyst_mode(), AnalystMode::Rules);
    let s = Settings::from_sources(
        None,
        &env(&[("OPENAI_BASE_URL", "http://127.0.0.1:11434/v1")]),
    )
    .unwrap();
    assert_eq!(
        s.analyst_mode(),
        AnalystMode::RulesLlm,
        "rules+llm is the default with an endpoint"
    );
    let s = Settings::from_sources(
        Some((Path::new("mft.toml"), "[analysis]\nanalyst = \"llm\"\n")),
        &env(&[("OPENAI_API_KEY", "sk-x")]),
    )
    .unwrap();
    assert_eq!(s.analyst_mode(), AnalystMode::Llm);
    let err = Settings::from_sources(
        Some((
            Path::new("mft.toml"),
            "[analysis]\nanalyst = \"llm\"\n[llm]\nfallback = \"maybe\"\nmax_tool_calls = 1000\n",
        )),
        &env(&[]),
    )
    .unwrap_err();
    let text = err.to_string();
    for want in [
        "[analysis] analyst",
        "needs an OpenAI-compatible endpoint",
        "[llm] fallback",
        "[llm] max_tool_calls",
    ] {
        assert!(text.contains(want), "{want} missing from {text}");
    }
    let s = Settings::from_sources(None, &env(&[("MCP_TOKEN", "t0k3n-value")])).unwrap();
    assert!(!format!("{s:?}").contains("t0k3n-value"));
    assert!(!s.render_effective().contains("t0k3n-value"));
}
