//! Kite's instruments dump (CSV) into the store: parsed completely first, written in one transaction.

use super::{KiteReader, MarketError};
use crate::domain::Instrument;
use crate::store::Store;
use chrono::NaiveDate;
use std::collections::HashMap;

/// The columns of Kite's dump, in Kite's order.
const COLUMNS: [&str; 12] = [
    "instrument_token",
    "exchange_token",
    "tradingsymbol",
    "name",
    "last_price",
    "expiry",
    "strike",
    "tick_size",
    "lot_size",
    "instrument_type",
    "segment",
    "exchange",
];

/// Outcome of [`sync_instruments`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncReport {
    /// The exchange asked for; `None` for the full dump.
    pub exchange: Option<String>,
    /// Rows in the dump.
    pub rows: usize,
    /// Rows inserted or changed in the store (0 when nothing changed since the last sync).
    pub written: u64,
    /// Instruments stored for that exchange (or in total) after the sync.
    pub stored: i64,
}

/// Downloads the instruments dump (all exchanges, or one) and upserts it in one transaction.
/// A malformed dump writes nothing.
pub async fn sync_instruments(
    store: &Store,
    kite: &KiteReader,
    exchange: Option<&str>,
) -> Result<SyncReport, MarketError> {
    let exchange = exchange.map(|e| e.trim().to_ascii_uppercase());
    let body = kite.instruments_csv(exchange.as_deref()).await?;
    let rows = parse_instruments_csv(&body)?;
    let written = store.upsert_instruments(&rows).await?;
    let stored = store.instrument_count(exchange.as_deref()).await?;
    Ok(SyncReport {
        exchange,
        rows: rows.len(),
        written,
        stored,
    })
}

/// Parses Kite's instruments CSV. The first bad line fails the whole dump, named by its 1-based
/// line number (the header is line 1).
pub fn parse_instruments_csv(body: &[u8]) -> Result<Vec<Instrument>, MarketError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(body);
    let headers = reader
        .headers()
        .map_err(|e| MarketError::MalformedDump {
            line: 1,
            reason: format!("unreadable header: {e}"),
        })?
        .clone();
    let index: HashMap<String, usize> = headers
        .iter()
        .enumerate()
        .map(|(i, h)| (h.trim().to_ascii_lowercase(), i))
        .collect();
    let missing: Vec<&str> = COLUMNS
        .iter()
        .copied()
        .filter(|c| !index.contains_key(*c))
        .collect();
    if !missing.is_empty() {
        return Err(MarketError::MalformedDump {
            line: 1,
            reason: format!("header lacks column(s) {}", missing.join(", ")),
        });
    }
    let col = |name: &str| index[name];
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| MarketError::MalformedDump {
            line: e.position().map_or(0, |p| p.line()),
            reason: e.to_string(),
        })?;
        let line = record.position().map_or(0, |p| p.line());
        let bad = |reason: String| MarketError::MalformedDump { line, reason };
        if record.len() != headers.len() {
            return Err(bad(format!(
                "{} fields where the header has {}",
                record.len(),
                headers.len()
            )));
        }
        let field = |name: &str| record.get(col(name)).unwrap_or("").trim();
        let int = |name: &str| -> Result<i64, MarketError> {
            let v = field(name);
            v.parse::<i64>()
                .ok()
                .or_else(|| {
                    // Kite has sent lot sizes as "1.0"; accept integral floats only.
                    let f = v.parse::<f64>().ok()?;
                    (f.is_finite() && f.fract() == 0.0 && f.abs() < 9.0e15).then_some(f as i64)
                })
                .ok_or_else(|| bad(format!("{name} {v:?} is not an integer")))
        };
        let num = |name: &str| -> Result<f64, MarketError> {
            let v = field(name);
            v.parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .ok_or_else(|| bad(format!("{name} {v:?} is not a number")))
        };
        let text = |name: &str| -> Result<String, MarketError> {
            let v = field(name);
            if v.is_empty() && name != "name" {
                Err(bad(format!("{name} is empty")))
            } else {
                Ok(v.to_string())
            }
        };
        let expiry = match field("expiry") {
            "" => None,
            v => Some(
                NaiveDate::parse_from_str(v, "%Y-%m-%d")
                    .map_err(|_| bad(format!("expiry {v:?} is not a YYYY-MM-DD date")))?,
            ),
        };
        rows.push(Instrument {
            instrument_token: int("instrument_token")?,
            exchange_token: int("exchange_token")?,
            tradingsymbol: text("tradingsymbol")?,
            name: text("name")?,
            last_price: num("last_price")?,
            expiry,
            strike: num("strike")?,
            tick_size: num("tick_size")?,
            lot_size: int("lot_size")?,
            instrument_type: text("instrument_type")?,
            segment: text("segment")?,
            exchange: text("exchange")?.to_ascii_uppercase(),
        });
    }
    if rows.is_empty() {
        return Err(MarketError::MalformedDump {
            line: 1,
            reason: "the dump has a header but no instruments".into(),
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "instrument_token,exchange_token,tradingsymbol,name,last_price,expiry,strike,tick_size,lot_size,instrument_type,segment,exchange\n";

    #[test]
    fn parses_equities_and_derivatives() {
        let csv = format!(
            "{HEADER}408065,1594,INFY,INFOSYS,0.0,,0.0,0.05,1,EQ,NSE,NSE\n\
             12517890,48898,NIFTY24JANFUT,\"NIFTY\",0.0,2024-01-25,0.0,0.05,50,FUT,NFO-FUT,NFO\n"
        );
        let rows = parse_instruments_csv(csv.as_bytes()).expect("parses");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].key().to_string(), "NSE:INFY");
        assert_eq!(rows[0].expiry, None);
        assert_eq!(rows[1].expiry, NaiveDate::from_ymd_opt(2024, 1, 25));
        assert_eq!(rows[1].lot_size, 50);
    }

    #[test]
    fn a_bad_line_is_named() {
        let csv = format!(
            "{HEADER}408065,1594,INFY,INFOSYS,0.0,,0.0,0.05,1,EQ,NSE,NSE\n\
             abc,1594,TCS,TCS,0.0,,0.0,0.05,1,EQ,NSE,NSE\n"
        );
        let err = parse_instruments_csv(csv.as_bytes()).expect_err("bad token");
        let text = err.to_string();
        assert!(text.contains("line 3"), "{text}");
        assert!(text.contains("instrument_token"), "{text}");

        let csv = format!("{HEADER}408065,1594,INFY\n");
        let err = parse_instruments_csv(csv.as_bytes()).expect_err("short row");
        assert!(err.to_string().contains("line 2"), "{err}");

        let err = parse_instruments_csv(b"instrument_token,tradingsymbol\n1,X\n").expect_err("hdr");
        assert!(err.to_string().contains("exchange_token"), "{err}");
    }
}
