//! The multi-indicator snapshot behind `mft ta`: one row per candle, as CSV or a terminal table.

use std::io::Write;

use chrono::{DateTime, Utc};

use super::{TaError, adx, atr, bbands, ema, macd, obv, rsi, sma, stoch};
use crate::clock::IST;
use crate::domain::Candle;

/// The CSV header [`write_csv`] writes, in column order.
pub const SNAPSHOT_HEADER: &str = "time,open,high,low,close,volume,sma20,ema20,rsi14,macd,macd_signal,macd_hist,bb_upper,bb_middle,bb_lower,atr14,adx14,plus_di14,minus_di14,stoch_k,stoch_d,obv";

/// One candle with the standard indicator set; `None` where an indicator is still warming up.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotRow {
    pub time: DateTime<Utc>,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: i64,
    pub sma20: Option<f64>,
    pub ema20: Option<f64>,
    pub rsi14: Option<f64>,
    pub macd: Option<f64>,
    pub macd_signal: Option<f64>,
    pub macd_hist: Option<f64>,
    pub bb_upper: Option<f64>,
    pub bb_middle: Option<f64>,
    pub bb_lower: Option<f64>,
    pub atr14: Option<f64>,
    pub adx14: Option<f64>,
    pub plus_di14: Option<f64>,
    pub minus_di14: Option<f64>,
    pub stoch_k: Option<f64>,
    pub stoch_d: Option<f64>,
    pub obv: Option<f64>,
}

impl SnapshotRow {
    fn indicators(&self) -> [Option<f64>; 16] {
        [
            self.sma20,
            self.ema20,
            self.rsi14,
            self.macd,
            self.macd_signal,
            self.macd_hist,
            self.bb_upper,
            self.bb_middle,
            self.bb_lower,
            self.atr14,
            self.adx14,
            self.plus_di14,
            self.minus_di14,
            self.stoch_k,
            self.stoch_d,
            self.obv,
        ]
    }
}

/// Computes SMA(20), EMA(20), RSI(14), MACD(12,26,9), BBANDS(20,2,2), ATR(14), ADX/+DI/-DI(14),
/// STOCH(14,3,3) and OBV for every candle (candles in time order).
pub fn snapshot(candles: &[Candle]) -> Result<Vec<SnapshotRow>, TaError> {
    let close: Vec<f64> = candles.iter().map(|c| c.close).collect();
    let high: Vec<f64> = candles.iter().map(|c| c.high).collect();
    let low: Vec<f64> = candles.iter().map(|c| c.low).collect();
    let volume: Vec<f64> = candles.iter().map(|c| c.volume as f64).collect();
    let sma20 = sma(&close, 20)?;
    let ema20 = ema(&close, 20)?;
    let rsi14 = rsi(&close, 14)?;
    let m = macd(&close, 12, 26, 9)?;
    let bb = bbands(&close, 20, 2.0, 2.0)?;
    let atr14 = atr(&high, &low, &close, 14)?;
    let dm = adx(&high, &low, &close, 14)?;
    let st = stoch(&high, &low, &close, 14, 3, 3)?;
    let ob = obv(&close, &volume)?;
    let o = |v: &[f64], i: usize| v.get(i).copied().filter(|x| !x.is_nan());
    Ok(candles
        .iter()
        .enumerate()
        .map(|(i, c)| SnapshotRow {
            time: c.ts,
            open: c.open,
            high: c.high,
            low: c.low,
            close: c.close,
            volume: c.volume,
            sma20: o(&sma20, i),
            ema20: o(&ema20, i),
            rsi14: o(&rsi14, i),
            macd: o(&m.macd, i),
            macd_signal: o(&m.signal, i),
            macd_hist: o(&m.hist, i),
            bb_upper: o(&bb.upper, i),
            bb_middle: o(&bb.middle, i),
            bb_lower: o(&bb.lower, i),
            atr14: o(&atr14, i),
            adx14: o(&dm.adx, i),
            plus_di14: o(&dm.plus_di, i),
            minus_di14: o(&dm.minus_di, i),
            stoch_k: o(&st.k, i),
            stoch_d: o(&st.d, i),
            obv: o(&ob, i),
        })
        .collect())
}

/// Writes [`SNAPSHOT_HEADER`] and one line per row: time as RFC 3339 in IST (+05:30), numbers
/// in Rust's shortest round-trip form, warm-up cells empty.
pub fn write_csv(mut w: impl Write, rows: &[SnapshotRow]) -> std::io::Result<()> {
    writeln!(w, "{SNAPSHOT_HEADER}")?;
    for r in rows {
        write!(
            w,
            "{},{},{},{},{},{}",
            r.time.with_timezone(&IST).to_rfc3339(),
            r.open,
            r.high,
            r.low,
            r.close,
            r.volume
        )?;
        for v in r.indicators() {
            match v {
                Some(v) => write!(w, ",{v}")?,
                None => write!(w, ",")?,
            }
        }
        writeln!(w)?;
    }
    w.flush()
}

/// Column title and decimals for the terminal table, after time/open/high/low/close/volume.
const TABLE_COLS: [(&str, usize); 16] = [
    ("sma20", 2),
    ("ema20", 2),
    ("rsi14", 2),
    ("macd", 4),
    ("signal", 4),
    ("hist", 4),
    ("bb_up", 2),
    ("bb_mid", 2),
    ("bb_low", 2),
    ("atr14", 2),
    ("adx14", 2),
    ("+di14", 2),
    ("-di14", 2),
    ("%k", 2),
    ("%d", 2),
    ("obv", 0),
];

/// A right-aligned text table for a terminal: IST time to the minute, prices with 2 decimals,
/// MACD lines with 4, volume and OBV as whole numbers, `-` for warm-up cells.
pub fn format_table(rows: &[SnapshotRow]) -> String {
    let mut header: Vec<String> = ["time (IST)", "open", "high", "low", "close", "volume"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    header.extend(TABLE_COLS.iter().map(|(name, _)| name.to_string()));
    let mut cells: Vec<Vec<String>> = Vec::with_capacity(rows.len() + 1);
    cells.push(header);
    for r in rows {
        let mut line = vec![
            r.time
                .with_timezone(&IST)
                .format("%Y-%m-%d %H:%M")
                .to_string(),
            format!("{:.2}", r.open),
            format!("{:.2}", r.high),
            format!("{:.2}", r.low),
            format!("{:.2}", r.close),
            r.volume.to_string(),
        ];
        for (v, (_, decimals)) in r.indicators().into_iter().zip(TABLE_COLS) {
            line.push(match v {
                Some(v) => format!("{v:.decimals$}"),
                None => "-".to_string(),
            });
        }
        cells.push(line);
    }
    let mut widths = vec![0usize; cells[0].len()];
    for line in &cells {
        for (w, c) in widths.iter_mut().zip(line) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for line in &cells {
        let mut first = true;
        for (i, (c, w)) in line.iter().zip(&widths).enumerate() {
            if !first {
                out.push_str("  ");
            }
            first = false;
            let pad = w - c.chars().count();
            if i == 0 {
                out.push_str(c);
                out.push_str(&" ".repeat(pad));
            } else {
                out.push_str(&" ".repeat(pad));
                out.push_str(c);
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn candles(n: usize) -> Vec<Candle> {
        let t0 = Utc.with_ymd_and_hms(2024, 1, 1, 3, 45, 0).unwrap();
        (0..n)
            .map(|i| {
                let base = 100.0 + (i as f64 * 0.7).sin() * 5.0 + i as f64 * 0.1;
                Candle {
                    ts: t0 + chrono::Duration::minutes(5 * i as i64),
                    open: base,
                    high: base + 1.25,
                    low: base - 0.75,
                    close: base + 0.5,
                    volume: 1000 + (i as i64 % 7) * 100,
                    oi: None,
                }
            })
            .collect()
    }

    #[test]
    fn snapshot_matches_batch_functions_and_warms_up() {
        let c = candles(60);
        let rows = snapshot(&c).unwrap();
        assert_eq!(rows.len(), 60);
        let close: Vec<f64> = c.iter().map(|c| c.close).collect();
        let s = sma(&close, 20).unwrap();
        assert_eq!(rows[18].sma20, None);
        assert_eq!(rows[19].sma20, Some(s[19]));
        assert_eq!(rows[13].rsi14, None);
        assert!(rows[14].rsi14.is_some());
        assert_eq!(rows[32].macd, None);
        assert!(rows[33].macd.is_some() && rows[33].macd_hist.is_some());
        assert_eq!(rows[26].adx14, None);
        assert!(rows[27].adx14.is_some());
        assert!(rows[14].plus_di14.is_some() && rows[13].plus_di14.is_none());
        assert!(rows[16].stoch_d.is_none() && rows[17].stoch_k.is_some());
        assert_eq!(rows[0].obv, Some(1000.0));
    }

    #[test]
    fn csv_has_exact_header_ist_times_empty_warmup_and_round_trip_numbers() {
        let c = candles(40);
        let rows = snapshot(&c).unwrap();
        let mut buf = Vec::new();
        write_csv(&mut buf, &rows).unwrap();
        let text = String::from_utf8(buf).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 41);
        assert_eq!(lines[0], SNAPSHOT_HEADER);
        let first: Vec<&str> = lines[1].split(',').collect();
        assert_eq!(first.len(), 22);
        assert_eq!(first[0], "2024-01-01T09:15:00+05:30");
        assert_eq!(first[5], "1000");
        assert!(first[6..21].iter().all(|c| c.is_empty()), "{first:?}");
        assert_eq!(first[21], "1000");
        let row20: Vec<&str> = lines[20].split(',').collect();
        let parsed: f64 = row20[6].parse().unwrap();
        assert_eq!(Some(parsed), rows[19].sma20);
        assert_eq!(row20[6], format!("{}", rows[19].sma20.unwrap()));
        for line in &lines[1..] {
            assert_eq!(line.split(',').count(), 22);
        }
    }

    #[test]
    fn table_is_aligned_with_dashes_for_warmup() {
        let rows = snapshot(&candles(40)).unwrap();
        let t = format_table(&rows);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 41);
        let width = lines[0].chars().count();
        assert!(lines.iter().all(|l| l.chars().count() == width));
        assert!(lines[0].starts_with("time (IST)"));
        assert!(lines[1].starts_with("2024-01-01 09:15"));
        assert!(lines[1].contains(" - "));
        let last = rows[39].rsi14.unwrap();
        assert!(lines[40].contains(&format!("{last:.2}")));
        assert_eq!(format_table(&[]).lines().count(), 1);
    }
}
