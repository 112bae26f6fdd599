//! The equity-curve chart for backtests and P&L reports: equity over time and its drawdown.

use std::path::Path;

use chrono::{DateTime, Utc};

use super::canvas::{Align, Canvas, PixelRect, XScale, YScale, nice_ticks, padded_range, ui_scale};
use super::proposal::fit_text;
use super::timeaxis;
use super::*;

/// Where an equity chart puts things, in image pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct EquityLayout {
    pub width: u32,
    pub height: u32,
    pub equity: PixelRect,
    pub drawdown: PixelRect,
    pub equity_lo: f64,
    pub equity_hi: f64,
    /// Lowest value of the drawdown axis (percent, or currency when the peak is not positive).
    pub drawdown_lo: f64,
    /// Drawdown is a percentage of the running peak; false when some value is zero or negative
    /// (e.g. cumulative P&L starting at 0), in which case it is in the equity's own unit.
    pub drawdown_percent: bool,
    pub points: usize,
    x: XScale,
    ey: YScale,
    dy: YScale,
    axis_left: i32,
    bottom_axis_y: i32,
}

impl EquityLayout {
    pub fn equity_y(&self, v: f64) -> i32 {
        self.ey.y(v)
    }
    pub fn drawdown_y(&self, dd: f64) -> i32 {
        self.dy.y(dd)
    }
    pub fn point_x(&self, index: usize) -> i32 {
        self.x.x(index)
    }
}

fn validate(points: &[(DateTime<Utc>, f64)]) -> Result<(), ChartError> {
    if points.is_empty() {
        return Err(ChartError::Empty {
            what: "the equity series",
        });
    }
    for (index, (ts, value)) in points.iter().enumerate() {
        if !value.is_finite() {
            return Err(ChartError::NonFiniteEquity {
                index,
                ts: *ts,
                value: *value,
            });
        }
        if index > 0 && *ts < points[index - 1].0 {
            return Err(ChartError::Unordered { index, ts: *ts });
        }
    }
    Ok(())
}

/// Drawdown below the running peak for every point, and whether it is in percent.
fn drawdowns(points: &[(DateTime<Utc>, f64)]) -> (Vec<f64>, bool) {
    let mut peak = f64::NEG_INFINITY;
    let peaks: Vec<f64> = points
        .iter()
        .map(|(_, v)| {
            peak = peak.max(*v);
            peak
        })
        .collect();
    // A percentage of the peak only means something for capital that never reaches zero; bare
    // P&L (starting at 0, possibly negative) is shown in its own unit.
    let percent = points.iter().all(|(_, v)| *v > 0.0);
    let dd = points
        .iter()
        .zip(&peaks)
        .map(|((_, v), p)| if percent { (v - p) / p * 100.0 } else { v - p })
        .collect();
    (dd, percent)
}

/// Compute where everything goes. Validates the input like [`render_equity`].
pub fn equity_layout(
    points: &[(DateTime<Utc>, f64)],
    width: u32,
    height: u32,
) -> Result<EquityLayout, ChartError> {
    check_size(width, height)?;
    validate(points)?;
    let mut buf = vec![255u8; 3];
    let canvas = Canvas::new(&mut buf, 1, 1)?;
    layout_with(&canvas, points, width, height)
}

fn layout_with(
    cv: &Canvas<'_>,
    points: &[(DateTime<Utc>, f64)],
    width: u32,
    height: u32,
) -> Result<EquityLayout, ChartError> {
    let f = ui_scale(width, height);
    let margin = (f * 0.6).round() as i32;
    let plot_top = margin + (f * 4.0).round() as i32;
    let bottom_axis_h = (f * 1.9).round() as i32;
    let plot_bottom = height as i32 - 1 - bottom_axis_h;
    let gap = (f * 0.5).round() as i32;
    let avail = plot_bottom - plot_top - gap;
    let eq_h = (avail as f64 * 0.68) as i32;

    let lo = points.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let hi = points.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    let (equity_lo, equity_hi) = padded_range(lo, hi, 0.06);
    let (dd, drawdown_percent) = drawdowns(points);
    let min_dd = dd.iter().copied().fold(0.0, f64::min);
    let drawdown_lo = if min_dd < 0.0 {
        min_dd * 1.12
    } else if drawdown_percent {
        -1.0
    } else {
        -(hi.abs().max(1.0)) * 0.01
    };

    let (eticks, edec) = nice_ticks(
        equity_lo,
        equity_hi,
        ((eq_h as f64) / (f * 2.6)).max(2.0) as usize,
    );
    let (dticks, ddec) = nice_ticks(drawdown_lo, 0.0, 3);
    let mut axis_w = 0;
    for t in &eticks {
        axis_w = axis_w.max(cv.text_width(&group_indian(*t, edec), f, false)?);
    }
    for t in &dticks {
        axis_w = axis_w.max(cv.text_width(&dd_label(*t, ddec, drawdown_percent), f, false)?);
    }
    axis_w += (f * 0.9).round() as i32;

    let left = margin;
    let right = width as i32 - 1 - margin - axis_w;
    let equity = PixelRect {
        left,
        top: plot_top,
        right,
        bottom: plot_top + eq_h,
    };
    let drawdown = PixelRect {
        left,
        top: equity.bottom + gap,
        right,
        bottom: plot_bottom,
    };
    Ok(EquityLayout {
        width,
        height,
        equity,
        drawdown,
        equity_lo,
        equity_hi,
        drawdown_lo,
        drawdown_percent,
        points: points.len(),
        x: XScale::new(equity, points.len(), 1, 0.0),
        ey: YScale {
            lo: equity_lo,
            hi: equity_hi,
            top: equity.top,
            bottom: equity.bottom,
        },
        dy: YScale {
            lo: drawdown_lo,
            hi: 0.0,
            top: drawdown.top,
            bottom: drawdown.bottom,
        },
        axis_left: right + 1,
        bottom_axis_y: plot_bottom + bottom_axis_h / 2 + 2,
    })
}

/// Render an equity curve (points oldest first, equal spacing per point) with a drawdown pane.
pub fn render_equity(
    points: &[(DateTime<Utc>, f64)],
    title: &str,
    width: u32,
    height: u32,
) -> Result<Vec<u8>, ChartError> {
    check_size(width, height)?;
    validate(points)?;
    let mut buf = vec![255u8; width as usize * height as usize * 3];
    {
        let mut cv = Canvas::new(&mut buf, width, height)?;
        let l = layout_with(&cv, points, width, height)?;
        draw(&mut cv, points, title, &l)?;
        cv.finish()?;
    }
    encode_png(&buf, width, height)
}

/// Render an equity curve and write it to `path`.
pub fn write_equity(
    points: &[(DateTime<Utc>, f64)],
    title: &str,
    width: u32,
    height: u32,
    path: &Path,
) -> Result<(), ChartError> {
    let png = render_equity(points, title, width, height)?;
    write_file(path, &png)
}

/// 1234567.8 -> "12,34,568" (Indian digit grouping) with `decimals` places.
pub(crate) fn group_indian(v: f64, decimals: usize) -> String {
    let s = format!("{:.*}", decimals, v.abs());
    let (int, frac) = match s.split_once('.') {
        Some((i, fr)) => (i.to_string(), format!(".{fr}")),
        None => (s.clone(), String::new()),
    };
    let digits: Vec<char> = int.chars().collect();
    let mut out = String::new();
    let n = digits.len();
    for (k, ch) in digits.iter().enumerate() {
        out.push(*ch);
        let rest = n - k - 1;
        if rest > 0 && (rest == 3 || (rest > 3 && (rest - 3).is_multiple_of(2))) {
            out.push(',');
        }
    }
    let sign = if v < 0.0 && s.chars().any(|c| c.is_ascii_digit() && c != '0') {
        "-"
    } else {
        ""
    };
    format!("{sign}{out}{frac}")
}

fn dd_label(v: f64, decimals: usize, percent: bool) -> String {
    if percent {
        format!("{v:.decimals$}%")
    } else {
        group_indian(v, decimals)
    }
}

fn draw(
    cv: &mut Canvas<'_>,
    points: &[(DateTime<Utc>, f64)],
    title: &str,
    l: &EquityLayout,
) -> Result<(), ChartError> {
    let f = cv.scale;
    let margin = (f * 0.6).round() as i32;
    let line_w = ((f / 7.0).round() as u32).max(2);
    let n = points.len();
    let panes = [l.equity, l.drawdown];
    let (dd, percent) = drawdowns(points);

    let (eticks, edec) = nice_ticks(
        l.equity_lo,
        l.equity_hi,
        ((l.equity.height() as f64) / (f * 2.6)).max(2.0) as usize,
    );
    let (dticks, ddec) = nice_ticks(l.drawdown_lo, 0.0, 3);
    for t in &eticks {
        let y = l.equity_y(*t);
        cv.line((l.equity.left, y), (l.equity.right, y), GRID, 1)?;
    }
    for t in &dticks {
        let y = l.drawdown_y(*t);
        cv.line((l.drawdown.left, y), (l.drawdown.right, y), GRID, 1)?;
    }

    // Time labels.
    let ts: Vec<_> = points.iter().map(|p| p.0).collect();
    let days = timeaxis::day_starts(&ts).len() + 1;
    let long_w = cv.text_width("Wed 28 Nov", f, true)? + (f * 1.5) as i32;
    let cands = timeaxis::candidates(&ts, (days as i32) * long_w <= l.equity.width());
    let half_bar = l.x.spacing / 2.0;
    let placed = {
        let cvr: &Canvas<'_> = cv;
        let widths = |s: &str| {
            cvr.text_width(s, f, true)
                .unwrap_or((s.len() as f64 * f * 0.62) as i32)
        };
        timeaxis::place(
            &cands,
            |i| l.x.xf(i),
            half_bar,
            widths,
            l.equity.left,
            l.axis_left + (f * 2.0) as i32,
            (f * 1.2) as i32,
        )
    };
    for p in &placed {
        let x = if p.boundary {
            (l.x.xf(p.index) - half_bar).round() as i32
        } else {
            l.point_x(p.index)
        };
        let color = if p.boundary { DAY_SEPARATOR } else { GRID };
        for pane in &panes {
            cv.line((x, pane.top), (x, pane.bottom), color, 1)?;
        }
    }

    // Equity: light fill under the curve, then the curve.
    let epts: Vec<(i32, i32)> = (0..n)
        .map(|i| (l.point_x(i), l.equity_y(points[i].1)))
        .collect();
    if n >= 2 {
        let mut poly = epts.clone();
        poly.push((epts[n - 1].0, l.equity.bottom - 1));
        poly.push((epts[0].0, l.equity.bottom - 1));
        cv.fill_polygon(&poly, EQUITY_FILL)?;
        cv.polyline(
            &epts.iter().copied().map(Some).collect::<Vec<_>>(),
            EQUITY_LINE,
            line_w,
        )?;
    } else {
        cv.circle(epts[0], line_w * 2, EQUITY_LINE)?;
    }

    // Drawdown: filled from zero down to the curve.
    let zero = l.drawdown_y(0.0);
    let dpts: Vec<(i32, i32)> = (0..n)
        .map(|i| (l.point_x(i), l.drawdown_y(dd[i])))
        .collect();
    if n >= 2 {
        if dd.iter().any(|d| *d < 0.0) {
            let mut poly = dpts.clone();
            poly.push((dpts[n - 1].0, zero));
            poly.push((dpts[0].0, zero));
            cv.fill_polygon(&poly, DRAWDOWN_FILL)?;
        }
        cv.polyline(
            &dpts.iter().copied().map(Some).collect::<Vec<_>>(),
            DRAWDOWN_LINE,
            line_w,
        )?;
    } else {
        cv.circle(dpts[0], line_w * 2, DRAWDOWN_LINE)?;
    }
    for pane in &panes {
        cv.stroke_rect(*pane, PANE_BORDER)?;
    }

    // Right axes.
    let tick_x = l.axis_left + (f * 0.45) as i32;
    for t in &eticks {
        let y = l.equity_y(*t);
        if y - (f * 0.5) as i32 <= l.equity.top || y + (f * 0.5) as i32 >= l.equity.bottom {
            continue;
        }
        cv.line(
            (l.axis_left, y),
            (l.axis_left + (f * 0.25) as i32, y),
            PANE_BORDER,
            1,
        )?;
        cv.text(
            &group_indian(*t, edec),
            (tick_x, y),
            f,
            false,
            TEXT,
            Align::Left,
        )?;
    }
    for t in &dticks {
        let y = l.drawdown_y(*t);
        let half = (f * 0.5) as i32;
        if y - half < l.drawdown.top || y + half > l.drawdown.bottom + (f * 0.3) as i32 {
            continue;
        }
        cv.line(
            (l.axis_left, y),
            (l.axis_left + (f * 0.25) as i32, y),
            PANE_BORDER,
            1,
        )?;
        cv.text(
            &dd_label(*t, ddec, percent),
            (tick_x, y),
            f,
            false,
            TEXT,
            Align::Left,
        )?;
    }

    // Pane captions.
    let small = f * 0.9;
    let min_dd = dd.iter().copied().fold(0.0, f64::min);
    let dd_caption = if percent {
        format!("Drawdown (max {min_dd:.2}%)")
    } else {
        format!("Drawdown below peak (max {})", group_indian(min_dd, 2))
    };
    let w = cv.text_width(&dd_caption, small, true)?;
    let h = (small * 1.3) as i32;
    cv.fill_rect(
        l.drawdown.left + 1,
        l.drawdown.bottom - h - 1,
        l.drawdown.left + w + (small * 0.8) as i32,
        l.drawdown.bottom - 1,
        BACKGROUND,
    )?;
    cv.text(
        &dd_caption,
        (
            l.drawdown.left + (small * 0.4) as i32,
            l.drawdown.bottom - h / 2 - 1,
        ),
        small,
        true,
        DRAWDOWN_LINE,
        Align::Left,
    )?;

    cv.time_axis(
        &placed,
        l.bottom_axis_y,
        l.width as i32 - 1 - margin,
        f,
        small,
    )?;

    // Title and summary row.
    let title_y = margin + (f * 0.9) as i32;
    let t = fit_text(cv, title, f * 1.5, true, l.width as i32 - 2 * margin)?;
    cv.text(&t, (margin, title_y), f * 1.5, true, TEXT, Align::Left)?;
    let info_y = margin + (f * 2.7) as i32;
    let (first, last) = (points[0].1, points[n - 1].1);
    let mut x = margin;
    let (_, x1) = cv.text(
        &format!(
            "Start {}  →  End {}",
            group_indian(first, 0),
            group_indian(last, 0)
        ),
        (x, info_y),
        f * 1.05,
        true,
        TEXT,
        Align::Left,
    )?;
    x = x1 + (f * 0.6) as i32;
    if percent {
        let pct = (last - first) / first * 100.0;
        let (_, x1) = cv.text(
            &format!("{pct:+.2}%"),
            (x, info_y),
            f * 1.05,
            true,
            if pct >= 0.0 { UP } else { DOWN },
            Align::Left,
        )?;
        x = x1 + (f * 1.5) as i32;
    } else {
        let diff = last - first;
        let (_, x1) = cv.text(
            &format!(
                "{}{}",
                if diff >= 0.0 { "+" } else { "" },
                group_indian(diff, 0)
            ),
            (x, info_y),
            f * 1.05,
            true,
            if diff >= 0.0 { UP } else { DOWN },
            Align::Left,
        )?;
        x = x1 + (f * 1.5) as i32;
    }
    let dd_text = if percent {
        format!("Max drawdown {min_dd:.2}%")
    } else {
        format!("Max drawdown {}", group_indian(min_dd, 0))
    };
    if x + cv.text_width(&dd_text, f * 1.05, false)? <= l.width as i32 - margin {
        cv.text(
            &dd_text,
            (x, info_y),
            f * 1.05,
            false,
            DRAWDOWN_LINE,
            Align::Left,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn indian_grouping() {
        assert_eq!(group_indian(1234567.8, 0), "12,34,568");
        assert_eq!(group_indian(999.0, 0), "999");
        assert_eq!(group_indian(1000.0, 0), "1,000");
        assert_eq!(group_indian(-150000.0, 2), "-1,50,000.00");
    }

    #[test]
    fn drawdown_is_percent_below_running_peak() {
        let t = Utc
            .with_ymd_and_hms(2025, 1, 1, 0, 0, 0)
            .single()
            .expect("valid");
        let pts = vec![(t, 100.0), (t, 120.0), (t, 90.0), (t, 130.0)];
        let (dd, pct) = drawdowns(&pts);
        assert!(pct);
        assert_eq!(dd[0], 0.0);
        assert!((dd[2] + 25.0).abs() < 1e-9);
        assert_eq!(dd[3], 0.0);
        let pnl = vec![(t, 10.0), (t, 50.0), (t, -20.0)];
        let (dd, pct) = drawdowns(&pnl);
        assert!(!pct);
        assert_eq!(dd[2], -70.0);
    }

    #[test]
    fn rejects_empty_and_nan() {
        assert!(matches!(validate(&[]), Err(ChartError::Empty { .. })));
        let t = Utc
            .with_ymd_and_hms(2025, 1, 1, 0, 0, 0)
            .single()
            .expect("valid");
        let err = validate(&[(t, 1.0), (t, f64::NAN)]).expect_err("NaN");
        assert!(matches!(err, ChartError::NonFiniteEquity { index: 1, .. }));
    }
}
