//! `mft backtest` as a subprocess: the report on stdout and in --out, and bad input answered
//! with a clear message and exit 1, with nothing in the trade log.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

const TOML: &str = r#"
[trading]
watchlist = ["NSE:RELIANCE"]

[strategy]
exit = "cross"
ma = "sma"
fast = 10
slow = 30
rsi_min = 0.0
rsi_max = 100.0

[backtest]
initial_cash = 100000
fill = "next_open"
slippage_bps = 0.0
costs = "none"
fixed_quantity = 10

[risk]
trading_window = "09:15-15:30"
trading_days = "Mon-Sun"
max_price_deviation_pct = 100.0
max_position_value = 10000000
max_daily_loss = 100000
"#;

fn mft(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mft"))
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env(
            "DATABASE_URL",
            format!("sqlite://{}", dir.join("mft.db").display()),
        )
        .output()
        .expect("run mft")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn backtest_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("mft.toml"), TOML).unwrap();
    let csv = fixture("ohlcv/nse_RELIANCE_daily_2020-2025.csv");
    let o = mft(
        d,
        &[
            "data",
            "import",
            csv.to_str().unwrap(),
            "--symbol",
            "NSE:RELIANCE",
            "--interval",
            "day",
        ],
    );
    assert!(o.status.success(), "{:?}", text(&o));

    let bad: [(&[&str], &str); 4] = [
        (
            &[
                "backtest",
                "NSE:NOPE",
                "--interval",
                "day",
                "--from",
                "2021-01-01",
                "--to",
                "2021-12-31",
            ],
            "unknown symbol NSE:NOPE",
        ),
        (
            &[
                "backtest",
                "NSE:RELIANCE",
                "--interval",
                "day",
                "--from",
                "2022-01-01",
                "--to",
                "2021-12-31",
            ],
            "--from 2022-01-01 is after --to 2021-12-31",
        ),
        (
            &[
                "backtest",
                "NSE:RELIANCE",
                "--interval",
                "5minute",
                "--from",
                "2021-01-01",
                "--to",
                "2021-12-31",
            ],
            "no 5minute candles stored for NSE:RELIANCE",
        ),
        (
            &[
                "backtest",
                "NSE:RELIANCE",
                "--interval",
                "day",
                "--from",
                "2021-01-01",
                "--to",
                "2021-01-20",
            ],
            "the strategy needs 31 before its first decision",
        ),
    ];
    for (args, want) in bad {
        let o = mft(d, args);
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {out} {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
    assert!(!d.join("backtests").exists());

    let o = mft(
        d,
        &[
            "backtest",
            "--interval",
            "day",
            "--from",
            "2020-01-01",
            "--to",
            "2025-12-31",
            "--out",
            "rep",
        ],
    );
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out} {err}");
    assert!(
        out.contains("₹1,01,753.00 (1 open position(s) at the last close)"),
        "{out}"
    );
    assert!(out.contains("20 closed (8 won, 12 lost)"), "{out}");
    for f in ["report.json", "trades.csv", "equity.png", "report.html"] {
        assert!(d.join("rep").join(f).exists(), "{f}");
    }
    let csv = std::fs::read_to_string(d.join("rep/trades.csv")).unwrap();
    assert_eq!(csv.lines().count(), 21);
}
