//! Parsers under random input: the CSV importer, button callback data, the config loader,
//! Telegram command text, the LLM's verdict (parsed, then validated against the market) and Kite's
//! postback body never panic, and what they accept is well-formed.
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
use mft::mcp::llm::{MarketCheck, parse_verdict, validate};
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

/// Any JSON value, nested a few levels: the junk a model may put where a field belongs.
fn json_junk() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::from),
        Just(Value::from("NaN")),
        Just(Value::from("Infinity")),
        Just(Value::from("buy")),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec(("[a-z]{1,8}", inner), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// The JSON text of one verdict field: the right type, a wrong one, numbers JSON cannot hold
/// (1e400, NaN, Infinity), numbers written as strings, or nested junk.
fn verdict_value(right: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop_oneof![
        12 => proptest::sample::select(right).prop_map(str::to_string),
        2 => (-1e7f64..1e7).prop_map(|f| format!("{f}")),
        1 => (1u32..100_000).prop_map(|c| format!("{}.{:02}", c / 100, c % 100)),
        1 => any::<f64>().prop_map(|f| format!("{f:?}")),
        1 => prop_oneof![
            Just("1e400"), Just("-1e400"), Just("NaN"), Just("Infinity"), Just("-0"),
            Just("\"NaN\""), Just("\"1500.5\""), Just("null"), Just("true"), Just("[]"),
            Just("{}"), Just("1e308"), Just("18446744073709551616"), Just("0.000000001"),
        ].prop_map(str::to_string),
        1 => json_junk().prop_map(|v| v.to_string()),
    ]
}

/// A reply from the model: a verdict object with fields right, wrong or missing, extra keys,
/// maybe inside a ```json fence or prose, maybe cut short.
fn verdict_text() -> impl Strategy<Value = String> {
    let field = |name: &'static str, right: &'static [&'static str]| {
        (prop::bool::weighted(0.95), verdict_value(right))
            .prop_map(move |(present, v)| present.then(|| format!("\"{name}\": {v}")))
    };
    (
        (
            field(
                "action",
                &["\"buy\"", "\"sell\"", "\"hold\"", "\"BUY\"", "\"short\""],
            ),
            field("entry", &["1500", "1500.05", "100.5"]),
            field("stop", &["1480", "1520.5", "99"]),
            field("target", &["1540", "1460", "103.5"]),
            field("confidence", &["0.7", "1", "0", "1.5"]),
        ),
        (
            field("rationale", &["\"crossed up\"", "\"\"", "\"  padded  \""]),
            field(
                "evidence",
                &[
                    "[]",
                    "[{\"tool\": \"ta\", \"fact\": \"rsi 60\"}]",
                    "[{\"tool\": 1}]",
                ],
            ),
            proptest::collection::vec(("[a-z_]{1,8}", json_junk()), 0..2),
            0usize..4,
            prop_oneof![4 => Just(None), 1 => (0usize..200).prop_map(Some)],
        ),
    )
        .prop_map(|((a, e, s, t, c), (r, ev, extra, wrap, cut))| {
            let mut fields: Vec<String> = [a, e, s, t, c, r, ev].into_iter().flatten().collect();
            fields.extend(extra.into_iter().map(|(k, v)| format!("\"{k}\": {v}")));
            let object = format!("{{{}}}", fields.join(", "));
            let mut text = match wrap {
                0 => object,
                1 => format!("```json\n{object}\n```"),
                2 => format!("Here is my verdict: {object} -- based on the {{tools}}."),
                _ => format!("}} {object} {{"),
            };
            if let Some(n) = cut {
                let mut at = n.min(text.len());
                while !text.is_char_boundary(at) {
                    at -= 1;
                }
                text.truncate(at);
            }
            text
        })
}

/// A well-formed verdict around the market's last price (a trade the validator may accept), and
/// that market: levels in ticks, sometimes off the tick, outside the circuit band or below the
/// minimum reward:risk.
fn consistent_verdict() -> impl Strategy<Value = (String, MarketCheck)> {
    (
        (
            20u32..200_000,
            any::<bool>(),
            -30i64..30,
            1i64..200,
            1i64..600,
        ),
        (
            0u32..=110,
            prop::bool::weighted(0.9),
            proptest::option::of(0.8f64..1.2),
        ),
        (0.0f64..2.0, 0.5f64..3.0),
    )
        .prop_map(
            |((last, sell, off, stop, target), (conf, on_tick, band), (dev, rr))| {
                let tick = 0.05;
                let last = i64::from(last);
                let entry = last + off;
                let (stop, target) = if sell {
                    (entry + stop, entry - target)
                } else {
                    (entry - stop, entry + target)
                };
                let price = |t: i64| format!("{:.2}", t as f64 * tick);
                let entry_text = if on_tick {
                    price(entry)
                } else {
                    format!("{:.3}", entry as f64 * tick + 0.012)
                };
                let text = format!(
                    "{{\"action\": \"{}\", \"entry\": {entry_text}, \"stop\": {}, \"target\": {}, \
                     \"confidence\": {}, \"rationale\": \"fast MA crossed the slow one\", \
                     \"evidence\": [{{\"tool\": \"technical__compute\", \"fact\": \"rsi 61\"}}]}}",
                    if sell { "sell" } else { "buy" },
                    price(stop),
                    price(target),
                    f64::from(conf) / 100.0,
                );
                let last_price = last as f64 * tick;
                let market = MarketCheck {
                    last_price,
                    tick,
                    circuit: band
                        .map(|b| (last_price * b.min(1.0) * 0.9, last_price * b.max(1.0) * 1.1)),
                    max_deviation_pct: dev,
                    min_reward_risk: rr,
                };
                (text, market)
            },
        )
}

/// What a verdict is checked against, from sane to degenerate (zero or negative prices and ticks).
fn market_check() -> impl Strategy<Value = MarketCheck> {
    (
        prop_oneof![
            8 => (1u32..2_000_000).prop_map(|p| f64::from(p) * 0.05),
            1 => Just(0.0),
            1 => Just(-5.0),
            1 => Just(f64::MAX),
        ],
        prop_oneof![Just(0.05), Just(0.01), Just(1.0), Just(0.0), Just(-0.05)],
        proptest::option::of((0.0f64..5e5, 0.0f64..5e5)),
        0.0f64..20.0,
        0.0f64..5.0,
    )
        .prop_map(
            |(last_price, tick, circuit, max_deviation_pct, min_reward_risk)| MarketCheck {
                last_price,
                tick,
                circuit,
                max_deviation_pct,
                min_reward_risk,
            },
        )
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

    #[test]
    fn llm_verdict_parser_never_panics_and_accepts_only_sane_verdicts(
        (text, market) in prop_oneof![
            3 => consistent_verdict(),
            4 => (
                prop_oneof![
                    6 => verdict_text(),
                    1 => "\\PC{0,200}",
                    1 => "[{}\\[\\]\":,0-9a-z. -]{0,120}",
                    1 => (1usize..400)
                        .prop_map(|n| format!("{}{}", "{\"a\":[".repeat(n), "]}".repeat(n))),
                ],
                market_check(),
            ),
        ],
    ) {
        let Ok(v) = parse_verdict(&text) else {
            return Ok(());
        };
        prop_assert!(["buy", "sell", "hold"].contains(&v.action.as_str()), "{v:?} from {text:?}");
        prop_assert_eq!(v.rationale.trim(), v.rationale.as_str());
        let sane = market.last_price.is_finite() && market.last_price > 0.0 && market.tick > 0.0;
        if validate(&v, &market).is_ok() && v.action != "hold" && sane {
            for p in [v.entry, v.stop, v.target] {
                prop_assert!(p.is_finite() && p > 0.0, "{v:?} from {text:?}");
            }
            prop_assert!((0.0..=1.0).contains(&v.confidence), "{v:?}");
            prop_assert!(!v.rationale.is_empty());
            let (low, high) = if v.action == "buy" { (v.stop, v.target) } else { (v.target, v.stop) };
            prop_assert!(low < v.entry && v.entry < high, "{v:?} against {market:?}");
            let deviation = (v.entry - market.last_price).abs() / market.last_price * 100.0;
            prop_assert!(deviation <= market.max_deviation_pct, "{v:?} against {market:?}");
        }
    }
}

const POSTBACK_SECRET: &str = "fuzz-api-secret";

/// A postback body: Kite's JSON with random (often hostile) field values, signed with the
/// right checksum (so the conversion behind the check is reached) or a wrong one.
fn postback_body() -> impl Strategy<Value = (String, bool)> {
    let text = prop_oneof!["[ -~]{0,30}", "\\PC{0,20}", Just(String::new())];
    let number = prop_oneof![
        any::<f64>().prop_map(|f| serde_json::json!(f)),
        any::<i64>().prop_map(|i| serde_json::json!(i)),
        Just(serde_json::json!("12")),
        Just(serde_json::json!(null)),
        Just(serde_json::json!(1e308)),
        Just(serde_json::json!(-1e308)),
    ];
    let status = prop_oneof![
        Just("COMPLETE".to_string()),
        Just("OPEN".to_string()),
        Just("CANCELLED".to_string()),
        Just("REJECTED".to_string()),
        Just("TRIGGER PENDING".to_string()),
        "[A-Z ]{0,20}",
    ];
    let time = prop_oneof![
        Just("2026-11-30 10:15:02".to_string()),
        "[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}",
        "[ -~]{0,25}",
    ];
    (
        text.clone(),
        time.clone(),
        status,
        text.clone(),
        number.clone(),
        number,
        proptest::option::of(time),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(order_id, ts, status, tag, filled, avg, exch_ts, signed, drop_checksum)| {
                let mut body = serde_json::json!({
                    "order_id": order_id,
                    "order_timestamp": ts,
                    "status": status,
                    "tag": tag,
                    "filled_quantity": filled,
                    "average_price": avg,
                    "exchange_update_timestamp": exch_ts,
                });
                let sum = if signed {
                    mft::web::postback::checksum(&order_id, &ts, POSTBACK_SECRET)
                } else {
                    "0".repeat(64)
                };
                if !drop_checksum {
                    body["checksum"] = serde_json::json!(sum);
                }
                (body.to_string(), signed && !drop_checksum)
            },
        )
}

proptest! {
    #![proptest_config(config())]

    /// The Kite postback body (issue 13 item 11): never a panic; a body is accepted only with
    /// the right checksum, and an accepted update carries the body's order id.
    #[test]
    fn kite_postback_body_never_panics_and_needs_its_checksum((body, signed) in postback_body()) {
        match mft::web::postback::verify(body.as_bytes(), Some(POSTBACK_SECRET)) {
            Ok(update) => {
                prop_assert!(signed, "accepted without the right checksum: {body}");
                let v: serde_json::Value = serde_json::from_str(&body).expect("json");
                prop_assert_eq!(Some(update.broker_order_id.as_str()), v["order_id"].as_str());
            }
            Err(mft::web::postback::PostbackError::BadChecksum) => prop_assert!(!signed, "{body}"),
            Err(_) => {}
        }
    }

    #[test]
    fn kite_postback_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = mft::web::postback::verify(&bytes, Some(POSTBACK_SECRET));
        let _ = mft::web::postback::verify(&bytes, None);
    }
}
