//! The public configuration API as other modules and the CLI use it, from outside the crate.

use mft::config::{ConfigErrors, ENV_KEYS, Mode, Settings};
use std::collections::HashMap;

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn load_in_a_project_directory_and_render() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("mft.toml"),
        "[trading]\nwatchlist = [\"NSE:TCS\", \"NSE:SBIN\"]\n[risk]\nallowed_instruments = [\"NSE:TCS\"]\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join(".env"),
        "TELEGRAM_CHAT_ID=424242\nTELEGRAM_BOT_TOKEN=1:abc\n",
    )
    .unwrap();
    let s = Settings::load_in(dir.path(), env(&[("STATUS_ADDR", "0.0.0.0:9000")])).unwrap();
    assert_eq!(s.mode, Mode::Paper);
    assert_eq!(s.telegram.allowed_user_ids(), vec![424242]);
    assert_eq!(s.allowed_instruments().len(), 1);
    assert_eq!(s.status.addr, "0.0.0.0:9000");
    let out = s.render_effective();
    println!("{out}");
    assert!(out.contains("TELEGRAM_BOT_TOKEN = ***"));
    assert!(!out.contains("1:abc"));
    assert!(out.contains("watchlist = [\"NSE:TCS\", \"NSE:SBIN\"]"));
    assert_eq!(ENV_KEYS.len(), 22);
}

#[test]
fn errors_are_one_per_line_with_key_names() {
    let err: ConfigErrors = Settings::load_in(
        tempfile::tempdir().unwrap().path(),
        env(&[
            ("MFT__RISK__TRADING_WINDOW", "9-5"),
            ("MFT__SCHEDULES__SCAN", "0 9 * * *"),
            ("TELEGRAM_ALLOWED_USERS", "12,abc"),
        ]),
    )
    .unwrap_err();
    println!("{err}");
    let lines: Vec<String> = err.to_string().lines().map(String::from).collect();
    assert_eq!(lines.len(), 1 + err.len());
    assert_eq!(err.len(), 3);
    assert!(lines[1..].iter().all(|l| l.starts_with("  ")));
    assert!(err.keys().contains(&"TELEGRAM_ALLOWED_USERS"));
    assert!(
        err.keys()
            .contains(&"[risk] trading_window (set by MFT__RISK__TRADING_WINDOW)")
    );
    assert!(
        err.keys()
            .contains(&"[schedules] scan (set by MFT__SCHEDULES__SCAN)")
    );
}
