//! The trade-proposal chart: candlesticks, EMA overlays, volume and RSI panes, entry/stop/target.

use std::path::Path;

use plotters::style::RGBColor;

use super::canvas::{
    Align, Canvas, PixelRect, XScale, YScale, compact, nice_ticks, padded_range, spread_labels,
    ui_scale,
};
use super::timeaxis;
use super::*;
use crate::domain::Candle;

/// Planned prices of a proposal, drawn as labelled horizontal lines.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Levels {
    pub entry: f64,
    pub stop: f64,
    pub target: f64,
}

/// What a proposal chart shows. The indicator slices run parallel to `candles` (NaN where the
/// indicator has no value yet); an empty slice leaves that indicator out.
#[derive(Debug, Clone)]
pub struct ProposalChart<'a> {
    /// e.g. "NSE:INFY · 15minute · BUY proposal"
    pub title: String,
    /// Oldest first; the caller picks how many (typically the last 120).
    pub candles: &'a [Candle],
    pub ema_fast: &'a [f64],
    pub ema_slow: &'a [f64],
    pub rsi: &'a [f64],
    /// Legend text for the overlays, e.g. "EMA 20" and "EMA 50".
    pub fast_label: String,
    pub slow_label: String,
    pub levels: Option<Levels>,
}

/// Where a proposal chart puts things, in image pixels: for callers that annotate the image and
/// for tests that look for elements in the PNG.
#[derive(Debug, Clone, PartialEq)]
pub struct ProposalLayout {
    pub width: u32,
    pub height: u32,
    pub price: PixelRect,
    pub volume: PixelRect,
    /// `None` when no RSI series was given.
    pub rsi: Option<PixelRect>,
    /// Price range of the price pane (bottom, top), padded and including the levels.
    pub price_lo: f64,
    pub price_hi: f64,
    pub bars: usize,
    x: XScale,
    price_y: YScale,
    axis_left: i32,
    bottom_axis_y: i32,
}

impl ProposalLayout {
    /// Row of a price in the price pane.
    pub fn price_y(&self, price: f64) -> i32 {
        self.price_y.y(price)
    }
    /// Centre column of candle `index`.
    pub fn candle_x(&self, index: usize) -> i32 {
        self.x.x(index)
    }
    /// Distance between neighbouring candles in pixels.
    pub fn bar_spacing(&self) -> f64 {
        self.x.spacing
    }
}

/// Fewer candles than this are drawn at this spacing, right-aligned, instead of swelling.
const MIN_SLOTS: usize = 40;
/// Free slots right of the last candle so the level lines show beyond it.
const RIGHT_PAD_SLOTS: f64 = 2.0;

fn validate(input: &ProposalChart<'_>) -> Result<(), ChartError> {
    let candles = input.candles;
    if candles.is_empty() {
        return Err(ChartError::Empty {
            what: "the candle series",
        });
    }
    for (index, c) in candles.iter().enumerate() {
        for (field, value) in [
            ("open", c.open),
            ("high", c.high),
            ("low", c.low),
            ("close", c.close),
        ] {
            if !value.is_finite() {
                return Err(ChartError::NonFinitePrice {
                    index,
                    ts: c.ts,
                    field,
                    value,
                });
            }
        }
        if index > 0 && c.ts < candles[index - 1].ts {
            return Err(ChartError::Unordered { index, ts: c.ts });
        }
    }
    for (series, s) in [
        ("ema_fast", input.ema_fast),
        ("ema_slow", input.ema_slow),
        ("rsi", input.rsi),
    ] {
        if !s.is_empty() && s.len() != candles.len() {
            return Err(ChartError::LengthMismatch {
                series,
                len: s.len(),
                candles: candles.len(),
            });
        }
    }
    if let Some(l) = input.levels {
        for (level, value) in [("entry", l.entry), ("stop", l.stop), ("target", l.target)] {
            if !value.is_finite() {
                return Err(ChartError::NonFiniteLevel { level, value });
            }
        }
    }
    Ok(())
}

fn level_lines(levels: Option<Levels>) -> Vec<(&'static str, f64, RGBColor)> {
    match levels {
        Some(l) => vec![
            ("Target", l.target, TARGET),
            ("Entry", l.entry, ENTRY),
            ("Stop", l.stop, STOP),
        ],
        None => Vec::new(),
    }
}

/// Sizes derived from the base font size.
struct Metrics {
    f: f64,
    margin: i32,
    line: u32,
}

impl Metrics {
    fn new(width: u32, height: u32) -> Self {
        let f = ui_scale(width, height);
        Self {
            f,
            margin: (f * 0.6).round() as i32,
            line: ((f / 7.0).round() as u32).max(2),
        }
    }
}

/// Compute where everything goes. Validates the input like [`render_proposal`].
pub fn proposal_layout(
    input: &ProposalChart<'_>,
    width: u32,
    height: u32,
) -> Result<ProposalLayout, ChartError> {
    check_size(width, height)?;
    validate(input)?;
    let mut buf = Vec::new();
    // Text measurement needs a backend; a 1x1 one is enough and costs nothing.
    buf.resize(3, 255);
    let canvas = Canvas::new(&mut buf, 1, 1)?;
    layout_with(&canvas, input, width, height)
}

fn layout_with(
    canvas: &Canvas<'_>,
    input: &ProposalChart<'_>,
    width: u32,
    height: u32,
) -> Result<ProposalLayout, ChartError> {
    let m = Metrics::new(width, height);
    let f = m.f;
    let plot_top = m.margin + (f * 4.0).round() as i32;
    let bottom_axis_h = (f * 1.9).round() as i32;
    let plot_bottom = height as i32 - 1 - bottom_axis_h;
    let gap = (f * 0.5).round() as i32;
    let has_rsi = !input.rsi.is_empty();
    let avail = plot_bottom - plot_top - if has_rsi { 2 * gap } else { gap };
    let (price_h, vol_h) = if has_rsi {
        ((avail as f64 * 0.62) as i32, (avail as f64 * 0.14) as i32)
    } else {
        ((avail as f64 * 0.80) as i32, (avail as f64 * 0.20) as i32)
    };

    // Price range: everything drawn in the price pane must fit, levels included.
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    for c in input.candles {
        lo = lo.min(c.low.min(c.high)).min(c.open.min(c.close));
        hi = hi.max(c.high.max(c.low)).max(c.open.max(c.close));
    }
    for v in input
        .ema_fast
        .iter()
        .chain(input.ema_slow)
        .filter(|v| v.is_finite())
    {
        lo = lo.min(*v);
        hi = hi.max(*v);
    }
    for (_, v, _) in level_lines(input.levels) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    let (price_lo, price_hi) = padded_range(lo, hi, 0.06);

    // The right axis must hold the widest tick label and the widest level tag.
    let price_pane_h = price_h;
    let (ticks, decimals) = nice_ticks(
        price_lo,
        price_hi,
        ((price_pane_h as f64) / (f * 2.6)).max(2.0) as usize,
    );
    let mut axis_w = 0;
    for t in &ticks {
        axis_w = axis_w.max(canvas.text_width(&format!("{t:.decimals$}"), f, false)?);
    }
    for (name, v, _) in level_lines(input.levels) {
        let w = canvas.text_width(&format!("{name} {v:.2}"), f, true)? + (f * 0.8) as i32;
        axis_w = axis_w.max(w);
    }
    axis_w += (f * 0.9).round() as i32;

    let left = m.margin;
    let right = width as i32 - 1 - m.margin - axis_w;
    let price = PixelRect {
        left,
        top: plot_top,
        right,
        bottom: plot_top + price_h,
    };
    let volume = PixelRect {
        left,
        top: price.bottom + gap,
        right,
        bottom: price.bottom + gap + vol_h,
    };
    let rsi = has_rsi.then(|| PixelRect {
        left,
        top: volume.bottom + gap,
        right,
        bottom: plot_bottom,
    });
    let x = XScale::new(price, input.candles.len(), MIN_SLOTS, RIGHT_PAD_SLOTS);
    Ok(ProposalLayout {
        width,
        height,
        price,
        volume,
        rsi,
        price_lo,
        price_hi,
        bars: input.candles.len(),
        x,
        price_y: YScale {
            lo: price_lo,
            hi: price_hi,
            top: price.top,
            bottom: price.bottom,
        },
        axis_left: right + 1,
        bottom_axis_y: plot_bottom + bottom_axis_h / 2 + 2,
    })
}

/// Render the proposal chart as PNG bytes (default size [`DEFAULT_WIDTH`]x[`DEFAULT_HEIGHT`]).
pub fn render_proposal(
    input: &ProposalChart<'_>,
    width: u32,
    height: u32,
) -> Result<Vec<u8>, ChartError> {
    check_size(width, height)?;
    validate(input)?;
    let mut buf = vec![255u8; width as usize * height as usize * 3];
    {
        let mut canvas = Canvas::new(&mut buf, width, height)?;
        let layout = layout_with(&canvas, input, width, height)?;
        draw(&mut canvas, input, &layout)?;
        canvas.finish()?;
    }
    encode_png(&buf, width, height)
}

/// Render the proposal chart and write it to `path`.
pub fn write_proposal(
    input: &ProposalChart<'_>,
    width: u32,
    height: u32,
    path: &Path,
) -> Result<(), ChartError> {
    let png = render_proposal(input, width, height)?;
    write_file(path, &png)
}

fn last_finite(s: &[f64]) -> Option<f64> {
    s.iter().rev().copied().find(|v| v.is_finite())
}

fn draw(
    cv: &mut Canvas<'_>,
    input: &ProposalChart<'_>,
    l: &ProposalLayout,
) -> Result<(), ChartError> {
    let m = Metrics::new(l.width, l.height);
    let f = m.f;
    let candles = input.candles;
    let n = candles.len();
    let panes: Vec<PixelRect> = [Some(l.price), Some(l.volume), l.rsi]
        .into_iter()
        .flatten()
        .collect();

    // RSI band under everything else in its pane.
    let rsi_y = l.rsi.map(|r| YScale {
        lo: 0.0,
        hi: 100.0,
        top: r.top,
        bottom: r.bottom,
    });
    if let (Some(r), Some(ys)) = (l.rsi, rsi_y) {
        cv.fill_rect(r.left, ys.y(70.0), r.right, ys.y(30.0), RSI_BAND)?;
    }

    // Horizontal price grid.
    let (ticks, decimals) = nice_ticks(
        l.price_lo,
        l.price_hi,
        ((l.price.height() as f64) / (f * 2.6)).max(2.0) as usize,
    );
    for t in &ticks {
        let y = l.price_y(*t);
        cv.line((l.price.left, y), (l.price.right, y), GRID, 1)?;
    }

    // Time labels and vertical grid / day separators.
    let ts: Vec<_> = candles.iter().map(|c| c.ts).collect();
    let intraday = timeaxis::is_intraday(&ts);
    let days = timeaxis::day_starts(&ts).len() + 1;
    let long_w = cv.text_width("Wed 28 Nov", f, true)? + (f * 1.5) as i32;
    let long_dates = (days as i32) * long_w <= l.price.width();
    let cands = timeaxis::candidates(&ts, long_dates);
    let half_bar = l.x.spacing / 2.0;
    let placed = {
        let cvr: &Canvas<'_> = cv;
        let mut widths = |s: &str| {
            cvr.text_width(s, f, true)
                .unwrap_or((s.len() as f64 * f * 0.62) as i32)
        };
        timeaxis::place(
            &cands,
            |i| l.x.xf(i),
            half_bar,
            &mut widths,
            l.price.left,
            l.axis_left + (f * 2.0) as i32,
            (f * 1.2) as i32,
        )
    };
    let mut separators: Vec<i32> = Vec::new();
    if intraday && days <= 40 {
        for i in timeaxis::day_starts(&ts) {
            separators.push((l.x.xf(i) - half_bar).round() as i32);
        }
    }
    for p in &placed {
        if p.boundary {
            let x = (l.x.xf(p.index) - half_bar).round() as i32;
            if !separators.contains(&x) && p.index > 0 {
                separators.push(x);
            }
        } else {
            let x = l.candle_x(p.index);
            for pane in &panes {
                cv.line((x, pane.top), (x, pane.bottom), GRID, 1)?;
            }
        }
    }
    for &x in &separators {
        for pane in &panes {
            cv.line((x, pane.top), (x, pane.bottom), DAY_SEPARATOR, 1)?;
        }
    }

    // Volume bars.
    let max_vol = candles.iter().map(|c| c.volume.max(0)).max().unwrap_or(0) as f64;
    let body_w = ((l.x.spacing * 0.7).round() as i32).clamp(1, (f * 2.2) as i32);
    let wick_w = ((body_w as f64 / 4.0).round() as i32).clamp(1, 3);
    if max_vol > 0.0 {
        let vy = YScale {
            lo: 0.0,
            hi: max_vol * 1.08,
            top: l.volume.top,
            bottom: l.volume.bottom,
        };
        for (i, c) in candles.iter().enumerate() {
            let x0 = l.candle_x(i) - body_w / 2;
            let color = if c.close >= c.open {
                VOLUME_UP
            } else {
                VOLUME_DOWN
            };
            let y = vy.y(c.volume.max(0) as f64).min(l.volume.bottom - 1);
            cv.fill_rect(x0, y, x0 + body_w - 1, l.volume.bottom, color)?;
        }
    }

    // Candles.
    for (i, c) in candles.iter().enumerate() {
        let x = l.candle_x(i);
        let color = if c.close >= c.open { UP } else { DOWN };
        let (hi, lo) = (c.high.max(c.low), c.low.min(c.high));
        let wx = x - (wick_w - 1) / 2;
        cv.fill_rect(wx, l.price_y(hi), wx + wick_w - 1, l.price_y(lo), color)?;
        let (yt, yb) = (
            l.price_y(c.open.max(c.close)),
            l.price_y(c.open.min(c.close)),
        );
        let yb = yb.max(yt + 1);
        let x0 = x - body_w / 2;
        cv.fill_rect(x0, yt, x0 + body_w - 1, yb, color)?;
    }

    // EMA overlays, slow first so the fast one stays visible where they cross.
    for (series, color) in [(input.ema_slow, EMA_SLOW), (input.ema_fast, EMA_FAST)] {
        let pts: Vec<Option<(i32, i32)>> = series
            .iter()
            .enumerate()
            .map(|(i, v)| v.is_finite().then(|| (l.candle_x(i), l.price_y(*v))))
            .collect();
        cv.polyline(&pts, color, m.line)?;
    }

    // Entry / stop / target lines across the pane.
    let levels = level_lines(input.levels);
    for (name, v, color) in &levels {
        let y = l.price_y(*v);
        if *name == "Entry" {
            cv.line((l.price.left, y), (l.price.right, y), *color, m.line)?;
        } else {
            let dash = (f * 0.8) as i32;
            cv.dashed_hline(
                l.price.left,
                l.price.right,
                y,
                *color,
                m.line,
                (dash, dash / 2),
            )?;
        }
    }

    // RSI line and guides.
    if let (Some(r), Some(ys)) = (l.rsi, rsi_y) {
        for g in [30.0, 70.0] {
            cv.dashed_hline(r.left, r.right, ys.y(g), RSI_GUIDE, 1, (6, 5))?;
        }
        let pts: Vec<Option<(i32, i32)>> = input
            .rsi
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.is_finite()
                    .then(|| (l.candle_x(i), ys.y(v.clamp(0.0, 100.0))))
            })
            .collect();
        cv.polyline(&pts, RSI_LINE, m.line)?;
    }

    for pane in &panes {
        cv.stroke_rect(*pane, PANE_BORDER)?;
    }

    // Right axis: level tags first (they win), then the tick labels that do not collide.
    let tag_h = (f * 1.45).round() as i32;
    let tag_x0 = l.axis_left + 3;
    let tag_ys = spread_labels(
        &levels
            .iter()
            .map(|(_, v, _)| l.price_y(*v))
            .collect::<Vec<_>>(),
        tag_h / 2,
        2,
        l.price.top,
        l.price.bottom,
    );
    let tick_x = l.axis_left + (f * 0.45) as i32;
    for t in &ticks {
        let y = l.price_y(*t);
        if y - (f * 0.5) as i32 <= l.price.top || y + (f * 0.5) as i32 >= l.price.bottom {
            continue;
        }
        if tag_ys
            .iter()
            .any(|ty| (ty - y).abs() < tag_h / 2 + (f * 0.6) as i32)
        {
            continue;
        }
        cv.line(
            (l.axis_left, y),
            (l.axis_left + (f * 0.25) as i32, y),
            PANE_BORDER,
            1,
        )?;
        cv.text(
            &format!("{t:.decimals$}"),
            (tick_x, y),
            f,
            false,
            TEXT,
            Align::Left,
        )?;
    }
    for ((name, v, color), ty) in levels.iter().zip(&tag_ys) {
        let text = format!("{name} {v:.2}");
        let w = cv.text_width(&text, f, true)? + (f * 0.8) as i32;
        let y_line = l.price_y(*v);
        if (y_line - ty).abs() > 1 {
            cv.line((l.axis_left, y_line), (tag_x0, *ty), *color, 2)?;
        }
        cv.fill_rect(tag_x0, ty - tag_h / 2, tag_x0 + w, ty + tag_h / 2, *color)?;
        cv.text(
            &text,
            (tag_x0 + (f * 0.4) as i32, *ty),
            f,
            true,
            BACKGROUND,
            Align::Left,
        )?;
    }

    // Volume and RSI axes and pane captions.
    let small = f * 0.9;
    let caption = |cv: &mut Canvas<'_>,
                   pane: PixelRect,
                   text: &str,
                   color: RGBColor|
     -> Result<(), ChartError> {
        let w = cv.text_width(text, small, true)?;
        let (x0, y0) = (pane.left + 1, pane.top + 1);
        let h = (small * 1.3) as i32;
        cv.fill_rect(x0, y0, x0 + w + (small * 0.8) as i32, y0 + h, BACKGROUND)?;
        cv.text(
            text,
            (x0 + (small * 0.4) as i32, y0 + h / 2),
            small,
            true,
            color,
            Align::Left,
        )?;
        Ok(())
    };
    if max_vol > 0.0 {
        let vy = YScale {
            lo: 0.0,
            hi: max_vol * 1.08,
            top: l.volume.top,
            bottom: l.volume.bottom,
        };
        let y = vy.y(max_vol);
        cv.line(
            (l.axis_left, y),
            (l.axis_left + (f * 0.25) as i32, y),
            PANE_BORDER,
            1,
        )?;
        cv.text(
            &compact(max_vol),
            (tick_x, y.max(l.volume.top + (small * 0.6) as i32)),
            small,
            false,
            MUTED_TEXT,
            Align::Left,
        )?;
    }
    let last_vol = candles[n - 1].volume;
    caption(
        cv,
        l.volume,
        &format!("Volume {}", compact(last_vol as f64)),
        MUTED_TEXT,
    )?;
    if let (Some(r), Some(ys)) = (l.rsi, rsi_y) {
        for g in [30.0, 70.0] {
            let y = ys.y(g);
            cv.line(
                (l.axis_left, y),
                (l.axis_left + (f * 0.25) as i32, y),
                PANE_BORDER,
                1,
            )?;
            cv.text(
                &format!("{g:.0}"),
                (tick_x, y),
                small,
                false,
                MUTED_TEXT,
                Align::Left,
            )?;
        }
        let text = match last_finite(input.rsi) {
            Some(v) => format!("RSI {v:.1}"),
            None => "RSI".to_string(),
        };
        caption(cv, r, &text, RSI_LINE)?;
    }

    // Time axis.
    cv.time_axis(
        &placed,
        l.bottom_axis_y,
        l.width as i32 - 1 - m.margin,
        f,
        small,
    )?;

    // Title and the info row (last price, change, legend with latest values, reward:risk).
    let title_y = m.margin + (f * 0.9) as i32;
    let title_size = f * 1.5;
    let mut right_edge = l.width as i32 - 1 - m.margin;
    if let Some(lv) = input.levels {
        let risk = (lv.entry - lv.stop).abs();
        if risk > 0.0 {
            let rr = format!("R:R 1:{:.2}", (lv.target - lv.entry).abs() / risk);
            let w = cv.text_width(&rr, f * 1.1, true)?;
            let title_w = cv.text_width(&input.title, title_size, true)?;
            if m.margin + title_w + w + (f * 2.0) as i32 <= right_edge {
                cv.text(
                    &rr,
                    (right_edge, title_y),
                    f * 1.1,
                    true,
                    TEXT,
                    Align::Right,
                )?;
                right_edge -= w + f as i32;
            }
        }
    }
    let title = fit_text(cv, &input.title, title_size, true, right_edge - m.margin)?;
    cv.text(
        &title,
        (m.margin, title_y),
        title_size,
        true,
        TEXT,
        Align::Left,
    )?;

    let info_y = m.margin + (f * 2.7) as i32;
    let info = f * 1.05;
    let mut x = m.margin;
    let max_x = l.width as i32 - 1 - m.margin;
    let last = &candles[n - 1];
    let (_, x1) = cv.text(
        &format!("Last {:.2}", last.close),
        (x, info_y),
        info,
        true,
        TEXT,
        Align::Left,
    )?;
    x = x1 + (f * 0.5) as i32;
    if n >= 2 && candles[n - 2].close != 0.0 {
        let prev = candles[n - 2].close;
        let pct = (last.close - prev) / prev * 100.0;
        let color = if pct >= 0.0 { UP } else { DOWN };
        let (_, x1) = cv.text(
            &format!("{pct:+.2}%"),
            (x, info_y),
            info,
            true,
            color,
            Align::Left,
        )?;
        x = x1;
    }
    x += (f * 1.5) as i32;
    for (label, series, color) in [
        (&input.fast_label, input.ema_fast, EMA_FAST),
        (&input.slow_label, input.ema_slow, EMA_SLOW),
    ] {
        if series.is_empty() {
            continue;
        }
        let text = match last_finite(series) {
            Some(v) => format!("{label} {v:.2}"),
            None => label.clone(),
        };
        let sw = (f * 1.4) as i32;
        let w = cv.text_width(&text, info, false)?;
        if x + sw + (f * 0.4) as i32 + w > max_x {
            break;
        }
        cv.line((x, info_y), (x + sw, info_y), color, m.line + 2)?;
        let (_, x1) = cv.text(
            &text,
            (x + sw + (f * 0.4) as i32, info_y),
            info,
            false,
            TEXT,
            Align::Left,
        )?;
        x = x1 + (f * 1.5) as i32;
    }
    Ok(())
}

/// Shorten `text` with an ellipsis until it fits `max_w` pixels.
pub(crate) fn fit_text(
    cv: &Canvas<'_>,
    text: &str,
    size: f64,
    bold: bool,
    max_w: i32,
) -> Result<String, ChartError> {
    if cv.text_width(text, size, bold)? <= max_w {
        return Ok(text.to_string());
    }
    let mut chars: Vec<char> = text.chars().collect();
    while !chars.is_empty() {
        chars.pop();
        let s: String = chars.iter().collect::<String>() + "…";
        if cv.text_width(&s, size, bold)? <= max_w {
            return Ok(s);
        }
    }
    Ok(String::new())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone, Utc};

    fn candles(n: usize) -> Vec<Candle> {
        let t0 = Utc
            .with_ymd_and_hms(2025, 1, 6, 3, 45, 0)
            .single()
            .expect("valid");
        (0..n)
            .map(|i| Candle {
                ts: t0 + Duration::minutes(15 * i as i64),
                open: 100.0 + i as f64,
                high: 102.0 + i as f64,
                low: 99.0 + i as f64,
                close: 101.0 + i as f64,
                volume: 1000,
                oi: None,
            })
            .collect()
    }

    fn chart(c: &[Candle]) -> ProposalChart<'_> {
        ProposalChart {
            title: "t".into(),
            candles: c,
            ema_fast: &[],
            ema_slow: &[],
            rsi: &[],
            fast_label: "EMA 20".into(),
            slow_label: "EMA 50".into(),
            levels: None,
        }
    }

    #[test]
    fn rejects_bad_input_with_named_bar() {
        let mut c = candles(5);
        c[3].high = f64::NAN;
        let err = validate(&chart(&c)).expect_err("NaN high must be rejected");
        assert!(
            matches!(
                err,
                ChartError::NonFinitePrice {
                    index: 3,
                    field: "high",
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("#3"));

        let c = candles(5);
        let mut ch = chart(&c);
        let short = [1.0, 2.0];
        ch.rsi = &short;
        assert!(matches!(
            validate(&ch),
            Err(ChartError::LengthMismatch {
                series: "rsi",
                len: 2,
                candles: 5
            })
        ));

        let mut ch = chart(&c);
        ch.levels = Some(Levels {
            entry: 1.0,
            stop: f64::INFINITY,
            target: 2.0,
        });
        assert!(matches!(
            validate(&ch),
            Err(ChartError::NonFiniteLevel { level: "stop", .. })
        ));

        assert!(matches!(
            validate(&chart(&[])),
            Err(ChartError::Empty { .. })
        ));
    }

    #[test]
    fn levels_widen_the_price_range() {
        let c = candles(10);
        let mut ch = chart(&c);
        ch.levels = Some(Levels {
            entry: 105.0,
            stop: 50.0,
            target: 300.0,
        });
        let l = proposal_layout(&ch, 1280, 800).expect("layout");
        assert!(l.price_lo < 50.0 && l.price_hi > 300.0);
        assert!(l.price_y(300.0) > l.price.top && l.price_y(50.0) < l.price.bottom);
    }
}
