//! Parsers under random input: the CSV importer, button callback data, the config loader and
//! Telegram command text never panic, and what they accept is well-formed.
//!
//! Each property runs `PROPTEST_CASES` cases (default 2,000 here, which `.ci/run` uses). The
//! figure for the hardening issue, one million cases each, is:
//!
//! ```sh
//! PROPTEST_CASES=1000000 cargo test --release --test fuzz -- --nocapture
//! ```

use std::collections::HashMap;
use std::path::Path;

use mft::bot::{BotCommand, CallbackData};
use mft::config::Settings;
use mft::market::parse_candles_csv;
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};
use teloxide::utils::command::BotCommands;

fn config() -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    Config {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Off)),
        ..Config::default()
    }
}

/// One CSV field: numbers of every kind (huge, negative, NaN, exponents), dates and times in
/// several shapes, and junk.
fn field() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<f64>().prop_map(|f| f.to_string()),
        (-5i64..100_000).prop_map(|i| i.to_string()),
        Just("1e308".to_string()),
        Just("-0".to_string()),
        Just("NaN".to_string()),
        Just("inf".to_string()),
        Just(String::new()),
        (1u32..3000, 1u32..13, 1u32..32).prop_map(|(y, m, d)| format!("{y:04}-{m:02}-{d:02}")),
        (0u32..25, 0u32..61).prop_map(|(h, m)| format!("2024-01-02 {h:02}:{m:02}:00")),
        Just("2024-01-02T09:15:00+05:30".to_string()),
        Just("0001-01-01 00:00".to_string()),
        "[ -~]{0,12}",
        "\\PC{0,6}",
    ]
}

fn csv_text() -> impl Strategy<Value = String> {
    let header = prop_oneof![
        Just("timestamp,open,high,low,close,volume".to_string()),
        Just("date,time,open,high,low,close,volume,oi".to_string()),
        Just("Date,Open,High,Low,Close,Volume".to_string()),
        "[a-z,]{0,40}",
    ];
    let row = proptest::collection::vec(field(), 0..9).prop_map(|f| f.join(","));
    (header, proptest::collection::vec(row, 0..12)).prop_map(|(h, rows)| {
        let mut s = h;
        for r in rows {
            s.push('\n');
            s.push_str(&r);
        }
        s
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn csv_import_never_panics_and_accepts_only_sane_candles(text in csv_text()) {
        if let Ok(candles) = parse_candles_csv(text.as_bytes()) {
            for c in &candles {
                for p in [c.open, c.high, c.low, c.close] {
                    prop_assert!(p.is_finite() && p > 0.0, "{c:?} from {text:?}");
                }
                prop_assert!(c.low <= c.high && c.volume >= 0, "{c:?} from {text:?}");
            }
            prop_assert!(candles.windows(2).all(|w| w[0].ts < w[1].ts));
        }
    }

    #[test]
    fn csv_import_never_panics_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = parse_candles_csv(bytes.as_slice());
    }

    #[test]
    fn callback_data_round_trips_what_it_accepts(
        data in prop_oneof![
            "[ -~]{0,80}",
            "v[0-9]{1,2}:[arkux]:[0-9a-f-]{0,20}",
            "\\PC{0,70}",
        ]
    ) {
        if let Ok(parsed) = CallbackData::parse(&data) {
            prop_assert!(data.len() <= 64);
            prop_assert_eq!(CallbackData::parse(&parsed.encode()), Ok(parsed));
        }
    }

    #[test]
    fn config_loader_never_panics(
        lines in proptest::collection::vec(
            (
                prop_oneof![
                    Just("[trading]"), Just("[risk]"), Just("[strategy]"), Just("[schedules]"),
                    Just("[paper]"), Just("[charts]"), Just("[kite]"), Just("[nope]"), Just(""),
                ],
                prop_oneof![
                    Just("capital"), Just("watchlist"), Just("interval"), Just("trading_window"),
                    Just("trading_days"), Just("max_daily_loss"), Just("max_position_value"),
                    Just("scan"), Just("fast"), Just("slow"), Just("rsi_min"), Just("slippage_bps"),
                    Just("exit_check"), Just("unknown_key"), Just("a b"),
                ],
                prop_oneof![
                    Just("\"09:20-15:10\"".to_string()),
                    Just("\"Fri-Mon\"".to_string()),
                    Just("[\"NSE:INFY\", \"BSE\"]".to_string()),
                    Just("\"0 */15 9-15 * * Mon-Fri\"".to_string()),
                    any::<i64>().prop_map(|i| i.to_string()),
                    any::<f64>().prop_map(|f| format!("{f:?}")),
                    "\"[ -~]{0,20}\"",
                    "[ -~]{0,10}",
                ],
            ),
            0..10,
        ),
        env in proptest::collection::vec(
            (
                prop_oneof![
                    Just("MODE"), Just("DATABASE_URL"), Just("TELEGRAM_CHAT_ID"),
                    Just("TELEGRAM_ALLOWED_USERS"), Just("MFT__RISK__MAX_DAILY_LOSS"),
                    Just("MFT__TRADING__WATCHLIST"), Just("STATUS_ADDR"), Just("MFT__X__Y"),
                ],
                "\\PC{0,20}",
            ),
            0..4,
        ),
    ) {
        let mut text = String::new();
        for (section, key, value) in lines {
            if !section.is_empty() {
                text.push_str(section);
                text.push('\n');
            }
            text.push_str(&format!("{key} = {value}\n"));
        }
        let env: HashMap<String, String> =
            env.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        if let Ok(settings) = Settings::from_sources(Some((Path::new("mft.toml"), &text)), &env) {
            let _ = settings.validate();
        }
    }

    #[test]
    fn telegram_command_text_never_panics(
        text in prop_oneof![
            "/[a-z]{1,10}( [ -~]{0,30})?",
            "/(scan|status|kill|resume|pause|help|start|positions|proposals|risk)(@mft_bot)? [\\PC]{0,20}",
            "\\PC{0,40}",
        ]
    ) {
        let _ = BotCommand::parse(&text, "mft_bot");
    }
}
