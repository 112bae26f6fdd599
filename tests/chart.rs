//! Chart rendering: decode the PNGs and look for each element's colour where it belongs.

use chrono::{DateTime, Duration, TimeZone, Utc};
use image::RgbImage;
use mft::chart::{self, ChartError, Levels, PixelRect, ProposalChart};
use mft::clock::IST;
use mft::domain::Candle;
use plotters::style::RGBColor;

fn decode(png: &[u8]) -> RgbImage {
    image::load_from_memory_with_format(png, image::ImageFormat::Png)
        .expect("renderer must produce a valid PNG")
        .to_rgb8()
}

fn is(img: &RgbImage, x: i32, y: i32, c: RGBColor) -> bool {
    let p = img.get_pixel(x as u32, y as u32);
    p.0 == [c.0, c.1, c.2]
}

fn count(img: &RgbImage, r: PixelRect, c: RGBColor) -> usize {
    let mut n = 0;
    for y in r.top.max(0)..=r.bottom.min(img.height() as i32 - 1) {
        for x in r.left.max(0)..=r.right.min(img.width() as i32 - 1) {
            if is(img, x, y, c) {
                n += 1;
            }
        }
    }
    n
}

/// Rows of `r` where at least `min` pixels have colour `c`.
fn rows_with(img: &RgbImage, r: PixelRect, c: RGBColor, min: usize) -> Vec<i32> {
    (r.top..=r.bottom)
        .filter(|&y| (r.left..=r.right).filter(|&x| is(img, x, y, c)).count() >= min)
        .collect()
}

/// Deterministic pseudo-random walk in [-0.5, 0.5).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) as f64 / (1u64 << 31) as f64) - 0.5
    }
}

fn ist(y: i32, m: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    IST.with_ymd_and_hms(y, m, d, h, mi, 0)
        .single()
        .expect("valid IST time")
        .with_timezone(&Utc)
}

/// 15-minute bars over the given IST trading days (25 bars from 09:15), as Kite serves them:
/// nights, weekends and holidays simply missing.
fn fifteen_minute_days(days: &[(i32, u32, u32)], seed: u64) -> Vec<Candle> {
    let mut rng = Lcg(seed);
    let mut p = 1500.0;
    let mut out = Vec::new();
    for &(y, m, d) in days {
        let open = ist(y, m, d, 9, 15);
        for k in 0..25 {
            let o: f64 = p;
            let c = o + rng.next() * 8.0;
            let h = o.max(c) + rng.next().abs() * 3.0;
            let l = o.min(c) - rng.next().abs() * 3.0;
            out.push(Candle {
                ts: open + Duration::minutes(15 * k),
                open: o,
                high: h,
                low: l,
                close: c,
                volume: (50_000.0 * (1.2 + rng.next())) as i64,
                oi: None,
            });
            p = c;
        }
    }
    out
}

fn ema(xs: &[f64], n: usize) -> Vec<f64> {
    let k = 2.0 / (n as f64 + 1.0);
    let mut out = vec![f64::NAN; xs.len()];
    let mut e = f64::NAN;
    for i in 0..xs.len() {
        if i + 1 == n {
            e = xs[..n].iter().sum::<f64>() / n as f64;
        } else if i + 1 > n {
            e = xs[i] * k + e * (1.0 - k);
        } else {
            continue;
        }
        out[i] = e;
    }
    out
}

fn rsi(xs: &[f64], n: usize) -> Vec<f64> {
    let mut out = vec![f64::NAN; xs.len()];
    let (mut g, mut l) = (0.0, 0.0);
    for i in 1..xs.len() {
        let d = xs[i] - xs[i - 1];
        let (up, dn) = (d.max(0.0), (-d).max(0.0));
        let nf = n as f64;
        if i <= n {
            g += up / nf;
            l += dn / nf;
        } else {
            g = (g * (nf - 1.0) + up) / nf;
            l = (l * (nf - 1.0) + dn) / nf;
        }
        if i >= n {
            out[i] = if l == 0.0 {
                100.0
            } else {
                100.0 - 100.0 / (1.0 + g / l)
            };
        }
    }
    out
}

struct Series {
    candles: Vec<Candle>,
    fast: Vec<f64>,
    slow: Vec<f64>,
    rsi: Vec<f64>,
}

fn series(candles: Vec<Candle>) -> Series {
    let closes: Vec<f64> = candles.iter().map(|c| c.close).collect();
    Series {
        fast: ema(&closes, 9),
        slow: ema(&closes, 21),
        rsi: rsi(&closes, 14),
        candles,
    }
}

fn chart_of(s: &Series, levels: Option<Levels>) -> ProposalChart<'_> {
    ProposalChart {
        title: "NSE:INFY · 15minute · BUY proposal".to_string(),
        candles: &s.candles,
        ema_fast: &s.fast,
        ema_slow: &s.slow,
        rsi: &s.rsi,
        fast_label: "EMA 9".to_string(),
        slow_label: "EMA 21".to_string(),
        levels,
    }
}

fn weekdays_from(start: (i32, u32, u32), n: usize) -> Vec<(i32, u32, u32)> {
    use chrono::{Datelike, NaiveDate, Weekday};
    let mut d = NaiveDate::from_ymd_opt(start.0, start.1, start.2).expect("valid date");
    let mut out = Vec::new();
    while out.len() < n {
        if !matches!(d.weekday(), Weekday::Sat | Weekday::Sun) {
            out.push((d.year(), d.month(), d.day()));
        }
        d = d.succ_opt().expect("date in range");
    }
    out
}

#[test]
fn proposal_with_levels_draws_every_element_in_its_pane() {
    // 5 days of 15-minute bars, the last 120 as a caller would pass them.
    let mut all = fifteen_minute_days(&weekdays_from((2025, 11, 17), 5), 7);
    let candles = all.split_off(all.len() - 120);
    let s = series(candles);
    let last = s.candles.last().expect("bars").close;
    let levels = Levels {
        entry: last,
        stop: last - 10.0,
        target: last + 20.0,
    };
    let input = chart_of(&s, Some(levels));
    let png = chart::render_proposal(&input, 1280, 800).expect("render");
    let img = decode(&png);
    assert_eq!(img.dimensions(), (1280, 800));

    let layout = chart::proposal_layout(&input, 1280, 800).expect("layout");
    let price = layout.price;
    let rsi_pane = layout
        .rsi
        .expect("RSI pane present when an RSI series is given");
    assert!(price.bottom < layout.volume.top && layout.volume.bottom < rsi_pane.top);

    // Candles and overlays in the price pane, not below it.
    for (name, c) in [
        ("up candles", chart::UP),
        ("down candles", chart::DOWN),
        ("fast EMA", chart::EMA_FAST),
        ("slow EMA", chart::EMA_SLOW),
    ] {
        assert!(
            count(&img, price, c) > 100,
            "{name} missing from the price pane"
        );
        assert_eq!(
            count(&img, layout.volume, c),
            0,
            "{name} leaked into the volume pane"
        );
        assert_eq!(
            count(&img, rsi_pane, c),
            0,
            "{name} leaked into the RSI pane"
        );
    }
    assert!(
        count(&img, layout.volume, chart::VOLUME_UP) > 100,
        "volume bars missing"
    );
    assert!(
        count(&img, rsi_pane, chart::RSI_LINE) > 200,
        "RSI line missing from its pane"
    );
    assert_eq!(
        count(&img, price, chart::RSI_LINE),
        0,
        "RSI line drawn in the price pane"
    );
    assert!(
        count(&img, rsi_pane, chart::RSI_GUIDE) > 100,
        "30/70 guides missing"
    );

    // Each level is a line across most of the price pane at its price's row.
    let mut rows = Vec::new();
    for (name, price_level, c) in [
        ("target", levels.target, chart::TARGET),
        ("entry", levels.entry, chart::ENTRY),
        ("stop", levels.stop, chart::STOP),
    ] {
        let found = rows_with(&img, price, c, (price.width() / 2) as usize);
        assert!(!found.is_empty(), "{name} line not found");
        let expect = layout.price_y(price_level);
        assert!(
            found.iter().all(|y| (y - expect).abs() <= 3),
            "{name} line rows {found:?}, expected near {expect}"
        );
        // Its labelled tag sits on the right axis, outside the plot.
        let axis = PixelRect {
            left: price.right + 1,
            top: price.top,
            right: 1279,
            bottom: price.bottom,
        };
        assert!(count(&img, axis, c) > 200, "{name} tag missing on the axis");
        rows.push(found[0]);
    }
    assert!(
        rows[0] < rows[1] && rows[1] < rows[2],
        "target above entry above stop for a buy: {rows:?}"
    );
    assert!(rows.iter().all(|&y| y > price.top && y < price.bottom));
}

#[test]
fn levels_far_outside_the_candles_widen_the_range() {
    let s = series(fifteen_minute_days(&weekdays_from((2025, 3, 3), 2), 3));
    let levels = Levels {
        entry: 1500.0,
        stop: 1200.0,
        target: 1900.0,
    };
    let input = chart_of(&s, Some(levels));
    let img = decode(&chart::render_proposal(&input, 1280, 800).expect("render"));
    let layout = chart::proposal_layout(&input, 1280, 800).expect("layout");
    for c in [chart::STOP, chart::TARGET, chart::ENTRY] {
        assert!(!rows_with(&img, layout.price, c, (layout.price.width() / 2) as usize).is_empty());
    }
}

#[test]
fn one_candle_renders() {
    let c = vec![Candle {
        ts: ist(2025, 11, 24, 9, 15),
        open: 100.0,
        high: 104.0,
        low: 98.0,
        close: 103.0,
        volume: 1200,
        oi: None,
    }];
    let s = series(c);
    let input = chart_of(
        &s,
        Some(Levels {
            entry: 103.0,
            stop: 99.0,
            target: 111.0,
        }),
    );
    let img = decode(&chart::render_proposal(&input, 1280, 800).expect("one candle must render"));
    assert_eq!(img.dimensions(), (1280, 800));
    let layout = chart::proposal_layout(&input, 1280, 800).expect("layout");
    assert!(
        count(&img, layout.price, chart::UP) > 50,
        "the single up candle is missing"
    );
}

#[test]
fn flat_prices_render_with_a_padded_range() {
    let t0 = ist(2025, 11, 24, 9, 15);
    let c: Vec<Candle> = (0..30)
        .map(|i| Candle {
            ts: t0 + Duration::minutes(5 * i),
            open: 250.0,
            high: 250.0,
            low: 250.0,
            close: 250.0,
            volume: 0,
            oi: None,
        })
        .collect();
    let s = series(c);
    let input = chart_of(&s, None);
    let img = decode(&chart::render_proposal(&input, 1280, 800).expect("flat series must render"));
    let layout = chart::proposal_layout(&input, 1280, 800).expect("layout");
    assert!(layout.price_lo < 250.0 && layout.price_hi > 250.0);
    let y = layout.price_y(250.0);
    assert!(y > layout.price.top && y < layout.price.bottom);
    assert!(
        count(&img, layout.price, chart::UP) > 30,
        "doji bodies must stay visible"
    );
}

#[test]
fn gap_filled_week_has_no_empty_stretches() {
    // Thu, Fri, (weekend), Mon, Tue, Wed: nights and a weekend are missing from the data.
    let days = [
        (2025, 11, 20),
        (2025, 11, 21),
        (2025, 11, 24),
        (2025, 11, 25),
        (2025, 11, 26),
    ];
    let s = series(fifteen_minute_days(&days, 11));
    let input = chart_of(&s, None);
    let img = decode(&chart::render_proposal(&input, 1280, 800).expect("render"));
    let layout = chart::proposal_layout(&input, 1280, 800).expect("layout");
    let p = layout.price;
    let has_candle: Vec<bool> = (p.left..=p.right)
        .map(|x| {
            (p.top..=p.bottom).any(|y| is(&img, x, y, chart::UP) || is(&img, x, y, chart::DOWN))
        })
        .collect();
    let first = has_candle.iter().position(|b| *b).expect("candles drawn");
    let last = has_candle.iter().rposition(|b| *b).expect("candles drawn");
    let mut run = 0;
    let mut worst = 0;
    for &b in &has_candle[first..=last] {
        run = if b { 0 } else { run + 1 };
        worst = worst.max(run);
    }
    let spacing = layout.bar_spacing();
    assert!(
        (worst as f64) < spacing,
        "empty stretch of {worst}px between candles (spacing {spacing:.1}px)"
    );
    // And the candles span most of the pane.
    assert!((last - first) as f64 > 0.9 * (s.candles.len() as f64 - 1.0) * spacing);
}

#[test]
fn equity_curve_with_drawdown() {
    let t0 = ist(2025, 1, 1, 15, 30);
    let mut v = 1_000_000.0;
    let points: Vec<(DateTime<Utc>, f64)> = (0..200)
        .map(|i| {
            v *= match i {
                0..=79 => 1.002,
                80..=119 => 0.994,
                _ => 1.003,
            };
            (t0 + Duration::days(i), v)
        })
        .collect();
    let png = chart::render_equity(&points, "Backtest · EMA cross", 1280, 800).expect("render");
    let img = decode(&png);
    assert_eq!(img.dimensions(), (1280, 800));
    let layout = chart::equity_layout(&points, 1280, 800).expect("layout");
    assert!(layout.drawdown_percent);
    assert!(count(&img, layout.equity, chart::EQUITY_LINE) > 500);
    assert_eq!(count(&img, layout.drawdown, chart::EQUITY_LINE), 0);
    assert!(
        count(&img, layout.drawdown, chart::DRAWDOWN_FILL) > 1000,
        "drawdown area missing"
    );
    assert!(
        count(&img, layout.drawdown, chart::DRAWDOWN_LINE) > 300,
        "drawdown line missing"
    );
    // The deepest drawdown (about -21.4%) is drawn at its row.
    let peak = points[79].1;
    let trough = points[119].1;
    let max_dd = (trough - peak) / peak * 100.0;
    let expect = layout.drawdown_y(max_dd);
    // Look only at the trough's columns: the pane caption uses the same colour.
    let x = layout.point_x(119);
    let column = PixelRect {
        left: x - 2,
        right: x + 2,
        ..layout.drawdown
    };
    let lowest = rows_with(&img, column, chart::DRAWDOWN_LINE, 1)
        .into_iter()
        .max()
        .expect("rows");
    assert!(
        (lowest - expect).abs() <= 4,
        "deepest drawdown row {lowest}, expected near {expect}"
    );
}

#[test]
fn bad_input_gives_clear_errors() {
    let s = series(Vec::new());
    let err = chart::render_proposal(&chart_of(&s, None), 1280, 800).expect_err("empty");
    assert!(matches!(err, ChartError::Empty { .. }), "{err}");

    let mut c = fifteen_minute_days(&[(2025, 11, 24)], 5);
    c[7].close = f64::NAN;
    let s = series(c);
    let err = chart::render_proposal(&chart_of(&s, None), 1280, 800).expect_err("NaN close");
    assert!(
        matches!(
            err,
            ChartError::NonFinitePrice {
                index: 7,
                field: "close",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("#7"), "{err}");

    let err = chart::render_equity(&[], "x", 1280, 800).expect_err("empty equity");
    assert!(matches!(err, ChartError::Empty { .. }));

    let s = series(fifteen_minute_days(&[(2025, 11, 24)], 5));
    let err = chart::render_proposal(&chart_of(&s, None), 100, 100).expect_err("too small");
    assert!(matches!(err, ChartError::Size { .. }));

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("missing-dir").join("chart.png");
    let err = chart::write_proposal(&chart_of(&s, None), 1280, 800, &path).expect_err("unwritable");
    assert!(matches!(err, ChartError::Write { .. }));
    assert!(err.to_string().contains("missing-dir"), "{err}");

    let ok = dir.path().join("chart.png");
    chart::write_proposal(&chart_of(&s, None), 1280, 800, &ok).expect("write");
    assert_eq!(
        decode(&std::fs::read(&ok).expect("read back")).dimensions(),
        (1280, 800)
    );
}
