//! Property and edge-case tests for src/ta: streaming equals batch bit for bit on random
//! series (with and without NaN gaps), and degenerate inputs give defined results, never a
//! panic.

use chrono::{DateTime, Duration, TimeZone, Utc};
use mft::domain::Candle;
use mft::ta::{self, TaError};
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct Bars {
    high: Vec<f64>,
    low: Vec<f64>,
    close: Vec<f64>,
    volume: Vec<f64>,
    candles: Vec<Candle>,
}

fn build(steps: &[(f64, f64, f64, u32, bool, u8)], nans: &[u8]) -> Bars {
    let t0: DateTime<Utc> = Utc.with_ymd_and_hms(2024, 3, 4, 3, 45, 0).unwrap();
    let mut price = 100.0;
    let mut t = t0;
    let mut b = Bars {
        high: vec![],
        low: vec![],
        close: vec![],
        volume: vec![],
        candles: vec![],
    };
    for (i, &(ret, up, dn, vol, flat, gap)) in steps.iter().enumerate() {
        let open = price;
        let close = if flat {
            open
        } else {
            (open * (1.0 + ret)).max(0.01)
        };
        let (hi, lo) = if flat {
            (open, open)
        } else {
            (open.max(close) + up, (open.min(close) - dn).max(0.001))
        };
        let mut bar = [hi, lo, close];
        // nans[i]: 0 = clean, 1..=3 = that field is NaN.
        if let Some(&k) = nans.get(i)
            && (1..=3).contains(&k)
        {
            bar[k as usize - 1] = f64::NAN;
        }
        let v = if vol % 5 == 0 { 0.0 } else { vol as f64 };
        b.high.push(bar[0]);
        b.low.push(bar[1]);
        b.close.push(bar[2]);
        b.volume.push(v);
        b.candles.push(Candle {
            ts: t,
            open,
            high: bar[0],
            low: bar[1],
            close: bar[2],
            volume: v as i64,
            oi: None,
        });
        // Mostly 5-minute bars, sometimes a jump to a later day (VWAP resets).
        t += if gap > 240 {
            Duration::hours(18)
        } else {
            Duration::minutes(5)
        };
        price = close;
    }
    b
}

fn bars(max_len: usize, with_nans: bool) -> impl Strategy<Value = Bars> {
    (0..max_len).prop_flat_map(move |n| {
        let steps = prop::collection::vec(
            (
                -0.03f64..0.03,
                0.0f64..2.0,
                0.0f64..2.0,
                0u32..10_000,
                prop::bool::weighted(0.1),
                any::<u8>(),
            ),
            n,
        );
        let nans = if with_nans {
            prop::collection::vec(prop_oneof![20 => Just(0u8), 1 => 1u8..=3], n).boxed()
        } else {
            Just(vec![0u8; n]).boxed()
        };
        (steps, nans).prop_map(|(s, m)| build(&s, &m))
    })
}

fn same(batch: f64, stream: Option<f64>) -> bool {
    match stream {
        None => batch.is_nan(),
        Some(v) => v.to_bits() == batch.to_bits(),
    }
}

fn check1(name: &str, batch: &[f64], stream: &[Option<f64>]) -> Result<(), TestCaseError> {
    prop_assert_eq!(batch.len(), stream.len(), "{} length", name);
    for (i, (&b, &s)) in batch.iter().zip(stream).enumerate() {
        prop_assert!(
            same(b, s),
            "{} differs at {}: batch {} stream {:?}",
            name,
            i,
            b,
            s
        );
    }
    Ok(())
}

fn all_streams_match(b: &Bars, p: usize, q: usize, r: usize) -> Result<(), TestCaseError> {
    let (h, l, c, v) = (&b.high[..], &b.low[..], &b.close[..], &b.volume[..]);
    let mut s = ta::Sma::new(p).unwrap();
    check1(
        "sma",
        &ta::sma(c, p).unwrap(),
        &c.iter().map(|&x| s.next(x)).collect::<Vec<_>>(),
    )?;
    let mut s = ta::Ema::new(p).unwrap();
    check1(
        "ema",
        &ta::ema(c, p).unwrap(),
        &c.iter().map(|&x| s.next(x)).collect::<Vec<_>>(),
    )?;
    let mut s = ta::Wma::new(p).unwrap();
    check1(
        "wma",
        &ta::wma(c, p).unwrap(),
        &c.iter().map(|&x| s.next(x)).collect::<Vec<_>>(),
    )?;
    let mut s = ta::Rsi::new(p).unwrap();
    check1(
        "rsi",
        &ta::rsi(c, p).unwrap(),
        &c.iter().map(|&x| s.next(x)).collect::<Vec<_>>(),
    )?;
    let mut s = ta::Roc::new(p).unwrap();
    check1(
        "roc",
        &ta::roc(c, p).unwrap(),
        &c.iter().map(|&x| s.next(x)).collect::<Vec<_>>(),
    )?;
    let mut s = ta::Atr::new(p).unwrap();
    let st: Vec<_> = (0..c.len()).map(|i| s.next(h[i], l[i], c[i])).collect();
    check1("atr", &ta::atr(h, l, c, p).unwrap(), &st)?;

    let m = ta::macd(c, p, q, r).unwrap();
    let mut s = ta::MacdStream::new(p, q, r).unwrap();
    let st: Vec<_> = c.iter().map(|&x| s.next(x)).collect();
    check1(
        "macd",
        &m.macd,
        &st.iter().map(|o| o.map(|p| p.macd)).collect::<Vec<_>>(),
    )?;
    check1(
        "macd signal",
        &m.signal,
        &st.iter().map(|o| o.map(|p| p.signal)).collect::<Vec<_>>(),
    )?;
    check1(
        "macd hist",
        &m.hist,
        &st.iter().map(|o| o.map(|p| p.hist)).collect::<Vec<_>>(),
    )?;

    let bb = ta::bbands(c, p, 2.0, 1.5).unwrap();
    let mut s = ta::BbandsStream::new(p, 2.0, 1.5).unwrap();
    let st: Vec<_> = c.iter().map(|&x| s.next(x)).collect();
    check1(
        "bb upper",
        &bb.upper,
        &st.iter().map(|o| o.map(|p| p.upper)).collect::<Vec<_>>(),
    )?;
    check1(
        "bb middle",
        &bb.middle,
        &st.iter().map(|o| o.map(|p| p.middle)).collect::<Vec<_>>(),
    )?;
    check1(
        "bb lower",
        &bb.lower,
        &st.iter().map(|o| o.map(|p| p.lower)).collect::<Vec<_>>(),
    )?;

    let a = ta::adx(h, l, c, p).unwrap();
    let mut s = ta::AdxStream::new(p).unwrap();
    let st: Vec<_> = (0..c.len()).map(|i| s.next(h[i], l[i], c[i])).collect();
    check1(
        "+di",
        &a.plus_di,
        &st.iter().map(|o| o.map(|p| p.plus_di)).collect::<Vec<_>>(),
    )?;
    check1(
        "-di",
        &a.minus_di,
        &st.iter().map(|o| o.map(|p| p.minus_di)).collect::<Vec<_>>(),
    )?;
    check1(
        "adx",
        &a.adx,
        &st.iter().map(|o| o.and_then(|p| p.adx)).collect::<Vec<_>>(),
    )?;

    let so = ta::stoch(h, l, c, p, q, r).unwrap();
    let mut s = ta::StochStream::new(p, q, r).unwrap();
    let st: Vec<_> = (0..c.len()).map(|i| s.next(h[i], l[i], c[i])).collect();
    check1(
        "stoch k",
        &so.k,
        &st.iter().map(|o| o.map(|p| p.k)).collect::<Vec<_>>(),
    )?;
    check1(
        "stoch d",
        &so.d,
        &st.iter().map(|o| o.map(|p| p.d)).collect::<Vec<_>>(),
    )?;

    let mut s = ta::Obv::new();
    let st: Vec<_> = (0..c.len()).map(|i| s.next(c[i], v[i])).collect();
    check1("obv", &ta::obv(c, v).unwrap(), &st)?;

    let mut s = ta::Vwap::new();
    let st: Vec<_> = b.candles.iter().map(|k| s.next(k)).collect();
    check1("vwap", &ta::vwap(&b.candles).unwrap(), &st)?;

    let sp = ta::supertrend(h, l, c, p, 2.5).unwrap();
    let mut s = ta::SupertrendStream::new(p, 2.5).unwrap();
    let st: Vec<_> = (0..c.len()).map(|i| s.next(h[i], l[i], c[i])).collect();
    check1(
        "supertrend",
        &sp.line,
        &st.iter().map(|o| o.map(|p| p.line)).collect::<Vec<_>>(),
    )?;
    check1(
        "supertrend dir",
        &sp.direction,
        &st.iter()
            .map(|o| o.map(|p| p.direction))
            .collect::<Vec<_>>(),
    )?;

    let d = ta::donchian(h, l, p).unwrap();
    let mut s = ta::DonchianStream::new(p).unwrap();
    let st: Vec<_> = (0..c.len()).map(|i| s.next(h[i], l[i])).collect();
    check1(
        "donchian upper",
        &d.upper,
        &st.iter().map(|o| o.map(|p| p.upper)).collect::<Vec<_>>(),
    )?;
    check1(
        "donchian middle",
        &d.middle,
        &st.iter().map(|o| o.map(|p| p.middle)).collect::<Vec<_>>(),
    )?;
    check1(
        "donchian lower",
        &d.lower,
        &st.iter().map(|o| o.map(|p| p.lower)).collect::<Vec<_>>(),
    )?;
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn streaming_equals_batch(b in bars(160, false), p in 1usize..25, q in 1usize..30, r in 1usize..10) {
        all_streams_match(&b, p, q, r)?;
    }

    #[test]
    fn streaming_equals_batch_with_nan_gaps(b in bars(160, true), p in 1usize..12, q in 1usize..15, r in 1usize..5) {
        all_streams_match(&b, p, q, r)?;
    }

    #[test]
    fn arbitrary_floats_never_panic(
        x in prop::collection::vec(prop::num::f64::ANY, 0..80),
        p in 1usize..20,
    ) {
        let n = x.len();
        let y: Vec<f64> = x.iter().rev().copied().collect();
        let outs: Vec<usize> = vec![
            ta::sma(&x, p).unwrap().len(),
            ta::ema(&x, p).unwrap().len(),
            ta::wma(&x, p).unwrap().len(),
            ta::rsi(&x, p).unwrap().len(),
            ta::roc(&x, p).unwrap().len(),
            ta::atr(&x, &y, &x, p).unwrap().len(),
            ta::macd(&x, p, p + 3, 2).unwrap().hist.len(),
            ta::bbands(&x, p, 2.0, 2.0).unwrap().upper.len(),
            ta::adx(&x, &y, &x, p).unwrap().adx.len(),
            ta::stoch(&x, &y, &x, p, 3, 3).unwrap().d.len(),
            ta::obv(&x, &y).unwrap().len(),
            ta::supertrend(&x, &y, &x, p, 3.0).unwrap().line.len(),
            ta::donchian(&x, &y, p).unwrap().lower.len(),
        ];
        prop_assert!(outs.iter().all(|&len| len == n));
    }

    #[test]
    fn poison_after_first_nan(b in bars(120, true), p in 1usize..10) {
        // Every output from the first NaN after the series started is NaN.
        let c = &b.close;
        let start = c.iter().position(|v| !v.is_nan()).unwrap_or(c.len());
        if let Some(k) = c[start..].iter().position(|v| v.is_nan()) {
            for out in [ta::sma(c, p).unwrap(), ta::ema(c, p).unwrap(), ta::rsi(c, p).unwrap()] {
                prop_assert!(out[start + k..].iter().all(|v| v.is_nan()));
            }
        }
    }
}

#[test]
fn empty_input_gives_empty_output() {
    let e: [f64; 0] = [];
    assert!(ta::sma(&e, 5).unwrap().is_empty());
    assert!(ta::ema(&e, 5).unwrap().is_empty());
    assert!(ta::wma(&e, 5).unwrap().is_empty());
    assert!(ta::rsi(&e, 5).unwrap().is_empty());
    assert!(ta::roc(&e, 5).unwrap().is_empty());
    assert!(ta::atr(&e, &e, &e, 5).unwrap().is_empty());
    assert!(ta::macd(&e, 12, 26, 9).unwrap().macd.is_empty());
    assert!(ta::bbands(&e, 20, 2.0, 2.0).unwrap().middle.is_empty());
    assert!(ta::adx(&e, &e, &e, 14).unwrap().adx.is_empty());
    assert!(ta::stoch(&e, &e, &e, 14, 3, 3).unwrap().k.is_empty());
    assert!(ta::obv(&e, &e).unwrap().is_empty());
    assert!(ta::vwap(&[]).unwrap().is_empty());
    assert!(ta::supertrend(&e, &e, &e, 10, 3.0).unwrap().line.is_empty());
    assert!(ta::donchian(&e, &e, 20).unwrap().upper.is_empty());
    assert!(ta::snapshot(&[]).unwrap().is_empty());
}

#[test]
fn shorter_than_warmup_is_all_nan() {
    let x = [1.0, 2.0, 3.0, 4.0];
    let nan = |v: &[f64]| v.len() == 4 && v.iter().all(|x| x.is_nan());
    assert!(nan(&ta::sma(&x, 5).unwrap()));
    assert!(nan(&ta::ema(&x, 5).unwrap()));
    assert!(nan(&ta::wma(&x, 5).unwrap()));
    assert!(nan(&ta::rsi(&x, 4).unwrap()));
    assert!(nan(&ta::roc(&x, 4).unwrap()));
    assert!(nan(&ta::atr(&x, &x, &x, 4).unwrap()));
    assert!(nan(&ta::macd(&x, 2, 4, 2).unwrap().macd));
    assert!(!nan(&ta::macd(&x, 2, 3, 2).unwrap().macd));
    assert!(nan(&ta::bbands(&x, 5, 2.0, 2.0).unwrap().upper));
    assert!(nan(&ta::adx(&x, &x, &x, 3).unwrap().adx));
    assert!(!nan(&ta::adx(&x, &x, &x, 3).unwrap().plus_di));
    assert!(nan(&ta::stoch(&x, &x, &x, 2, 2, 3).unwrap().d));
    assert!(nan(&ta::donchian(&x, &x, 5).unwrap().upper));
    assert!(nan(&ta::supertrend(&x, &x, &x, 4, 3.0).unwrap().line));
}

#[test]
fn invalid_parameters_are_errors() {
    let x = [1.0, 2.0, 3.0];
    let bad = |r: Result<Vec<f64>, TaError>| matches!(r, Err(TaError::InvalidPeriod { .. }));
    assert!(bad(ta::sma(&x, 0)));
    assert!(bad(ta::ema(&x, 0)));
    assert!(bad(ta::wma(&x, 0)));
    assert!(bad(ta::rsi(&x, 0)));
    assert!(bad(ta::roc(&x, 0)));
    assert!(bad(ta::atr(&x, &x, &x, 0)));
    assert!(bad(ta::sma(&x, ta::MAX_PERIOD + 1)));
    assert!(bad(ta::sma(&x, usize::MAX)));
    assert!(ta::macd(&x, 0, 26, 9).is_err());
    assert!(ta::macd(&x, 12, 26, 0).is_err());
    assert!(ta::bbands(&x, 0, 2.0, 2.0).is_err());
    assert!(ta::bbands(&x, 5, f64::NAN, 2.0).is_err());
    assert!(ta::adx(&x, &x, &x, 0).is_err());
    assert!(ta::stoch(&x, &x, &x, 14, 0, 3).is_err());
    assert!(ta::supertrend(&x, &x, &x, 10, -1.0).is_err());
    assert!(ta::supertrend(&x, &x, &x, 10, f64::INFINITY).is_err());
    assert!(ta::donchian(&x, &x, 0).is_err());
    assert!(ta::Sma::new(0).is_err() && ta::MacdStream::new(12, 26, 0).is_err());
    assert!(ta::Sma::new(usize::MAX).is_err());
    assert!(ta::StochStream::new(usize::MAX, 3, 3).is_err());
}

#[test]
fn mismatched_lengths_are_errors() {
    let a = [1.0, 2.0, 3.0];
    let b = [1.0, 2.0];
    let mm = |r: Result<(), TaError>| matches!(r, Err(TaError::LengthMismatch { .. }));
    assert!(mm(ta::atr(&a, &b, &a, 2).map(|_| ())));
    assert!(mm(ta::adx(&a, &a, &b, 2).map(|_| ())));
    assert!(mm(ta::stoch(&b, &a, &a, 2, 1, 1).map(|_| ())));
    assert!(mm(ta::obv(&a, &b).map(|_| ())));
    assert!(mm(ta::supertrend(&a, &b, &a, 2, 3.0).map(|_| ())));
    assert!(mm(ta::donchian(&a, &b, 2).map(|_| ())));
}

#[test]
fn constant_prices_have_defined_values() {
    let x = vec![50.0; 60];
    let rsi = ta::rsi(&x, 14).unwrap();
    assert!(
        rsi[14..].iter().all(|&v| v == 0.0),
        "TA-Lib: no gain and no loss gives 0"
    );
    let st = ta::stoch(&x, &x, &x, 14, 3, 3).unwrap();
    assert!(st.k[17..].iter().all(|&v| v == 0.0));
    let bb = ta::bbands(&x, 20, 2.0, 2.0).unwrap();
    assert!((19..60).all(|i| bb.upper[i] == 50.0 && bb.lower[i] == 50.0 && bb.middle[i] == 50.0));
    let atr = ta::atr(&x, &x, &x, 14).unwrap();
    assert!(atr[14..].iter().all(|&v| v == 0.0));
    let a = ta::adx(&x, &x, &x, 14).unwrap();
    assert!(a.adx[27..].iter().all(|&v| v == 0.0));
    assert!(a.plus_di[14..].iter().all(|&v| v == 0.0));
    let roc = ta::roc(&x, 10).unwrap();
    assert!(roc[10..].iter().all(|&v| v == 0.0));
    let m = ta::macd(&x, 12, 26, 9).unwrap();
    assert!(m.hist[33..].iter().all(|&v| v == 0.0) && m.hist[32].is_nan());
    let s = ta::supertrend(&x, &x, &x, 10, 3.0).unwrap();
    assert!(s.line[10..].iter().all(|&v| v == 50.0) && s.direction[10] == -1.0);
}

#[test]
fn zero_volume() {
    let c = [10.0, 11.0, 10.5, 12.0];
    let v = [0.0; 4];
    assert_eq!(ta::obv(&c, &v).unwrap(), vec![0.0; 4]);
    let t0 = Utc.with_ymd_and_hms(2024, 3, 4, 3, 45, 0).unwrap();
    let candle = |i: i64, vol: i64| Candle {
        ts: t0 + Duration::minutes(5 * i),
        open: 10.0,
        high: 12.0,
        low: 9.0,
        close: 10.5 + i as f64,
        volume: vol,
        oi: None,
    };
    let cs = [candle(0, 0), candle(1, 0), candle(2, 300), candle(3, 0)];
    let w = ta::vwap(&cs).unwrap();
    assert!(w[0].is_nan() && w[1].is_nan());
    assert_eq!(w[2], (12.0 + 9.0 + 12.5) / 3.0);
    assert_eq!(w[3], w[2]);
    let mut s = ta::Vwap::new();
    assert_eq!(s.next(&cs[0]), None);
    assert_eq!(s.next(&cs[1]), None);
    assert_eq!(s.next(&cs[2]), Some(w[2]));
}

#[test]
fn vwap_resets_at_ist_midnight() {
    // 18:25 UTC = 23:55 IST and 18:35 UTC = 00:05 IST next day.
    let mk = |h: u32, m: u32, price: f64| Candle {
        ts: Utc.with_ymd_and_hms(2024, 3, 4, h, m, 0).unwrap(),
        open: price,
        high: price,
        low: price,
        close: price,
        volume: 100,
        oi: None,
    };
    let cs = [
        mk(17, 0, 10.0),
        mk(18, 25, 20.0),
        mk(18, 35, 40.0),
        mk(18, 40, 50.0),
    ];
    let w = ta::vwap(&cs).unwrap();
    assert_eq!(w, vec![10.0, 15.0, 40.0, 45.0]);
}

#[test]
fn leading_nans_are_skipped_and_a_later_nan_ends_the_series() {
    let n = f64::NAN;
    let x = [n, n, 1.0, 2.0, 3.0, n, 4.0, 5.0];
    let s = ta::sma(&x, 2).unwrap();
    let want = [n, n, n, 1.5, 2.5, n, n, n];
    assert!(
        s.iter()
            .zip(want)
            .all(|(a, b)| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()))
    );
    assert_eq!(s[3], 1.5);
    assert_eq!(s[4], 2.5);
    let mut st = ta::Sma::new(2).unwrap();
    let got: Vec<_> = x.iter().map(|&v| st.next(v)).collect();
    assert_eq!(
        got,
        vec![None, None, None, Some(1.5), Some(2.5), None, None, None]
    );
    st.reset();
    assert_eq!(st.next(4.0), None);
    assert_eq!(st.next(5.0), Some(4.5));
}

#[test]
fn supertrend_flips_on_a_breakout() {
    let mut close: Vec<f64> = (0..30).map(|i| 100.0 - i as f64 * 0.5).collect();
    close.extend((0..30).map(|i| 90.0 + i as f64 * 3.0));
    let high: Vec<f64> = close.iter().map(|c| c + 1.0).collect();
    let low: Vec<f64> = close.iter().map(|c| c - 1.0).collect();
    let s = ta::supertrend(&high, &low, &close, 10, 3.0).unwrap();
    assert_eq!(s.direction[20], -1.0);
    assert_eq!(s.direction[59], 1.0);
    assert!(s.line[59] < close[59]);
    assert!(s.line[20] > close[20]);
}

/// Long steady trends (the window extreme leaves on every bar, across many block boundaries
/// of the batch van Herk scan): the batch sliding max/min must equal a naive window scan and
/// the streaming deque, for Donchian and the stochastic.
#[test]
fn sliding_extremes_on_steady_trends() {
    let n = 3000;
    let p = 50;
    let falling: Vec<f64> = (0..n).map(|i| 10_000.0 - i as f64 * 0.5).collect();
    let rising: Vec<f64> = (0..n).map(|i| 100.0 + i as f64 * 0.5).collect();
    // Falling then rising then falling, so the fallback starts mid-series.
    let zigzag: Vec<f64> = (0..n)
        .map(|i| 5_000.0 + ((i / 700) % 2 * 2) as f64 * (i % 700) as f64 - (i % 700) as f64)
        .collect();
    for series in [&falling, &rising, &zigzag] {
        let high: Vec<f64> = series.iter().map(|x| x + 1.0).collect();
        let low: Vec<f64> = series.iter().map(|x| x - 1.0).collect();
        let d = ta::donchian(&high, &low, p).unwrap();
        let mut s = ta::DonchianStream::new(p).unwrap();
        for i in 0..n {
            let st = s.next(high[i], low[i]);
            if i + 1 < p {
                assert!(d.upper[i].is_nan() && d.lower[i].is_nan() && st.is_none());
                continue;
            }
            let w = i + 1 - p..=i;
            let hh = high[w.clone()].iter().copied().fold(f64::MIN, f64::max);
            let ll = low[w].iter().copied().fold(f64::MAX, f64::min);
            let st = st.unwrap();
            assert_eq!(d.upper[i], hh, "upper at {i}");
            assert_eq!(d.lower[i], ll, "lower at {i}");
            assert_eq!(
                st.upper.to_bits(),
                d.upper[i].to_bits(),
                "stream upper at {i}"
            );
            assert_eq!(
                st.lower.to_bits(),
                d.lower[i].to_bits(),
                "stream lower at {i}"
            );
        }
        let k = ta::stoch(&high, &low, series, p, 3, 3).unwrap();
        let mut s = ta::StochStream::new(p, 3, 3).unwrap();
        for i in 0..n {
            let st = s.next(high[i], low[i], series[i]);
            assert!(same(k.k[i], st.map(|p| p.k)), "stoch k at {i}");
            assert!(same(k.d[i], st.map(|p| p.d)), "stoch d at {i}");
        }
    }
}
