//! Drawing primitives shared by the charts: embedded font, pixel rectangles, lines, text, ticks.

use std::sync::OnceLock;

use plotters::backend::DrawingBackend;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::ChartError;

static REGULAR: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");
static BOLD: &[u8] = include_bytes!("../../assets/DejaVuSans-Bold.ttf");

/// A family name of our own, so a font registered elsewhere under "sans-serif" cannot replace it.
const FAMILY: &str = "mft-dejavu-sans";

static FONTS: OnceLock<Result<(), String>> = OnceLock::new();

/// Register the embedded fonts with plotters once per process.
pub(crate) fn ensure_fonts() -> Result<(), ChartError> {
    FONTS
        .get_or_init(|| {
            plotters::style::register_font(FAMILY, FontStyle::Normal, REGULAR)
                .map_err(|_| "DejaVuSans.ttf is not a valid font".to_string())?;
            plotters::style::register_font(FAMILY, FontStyle::Bold, BOLD)
                .map_err(|_| "DejaVuSans-Bold.ttf is not a valid font".to_string())?;
            Ok(())
        })
        .clone()
        .map_err(ChartError::Font)
}

/// A rectangle in image pixels; `right` and `bottom` are inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PixelRect {
    pub left: i32,
    pub top: i32,
    pub right: i32,
    pub bottom: i32,
}

impl PixelRect {
    pub fn width(&self) -> i32 {
        self.right - self.left + 1
    }
    pub fn height(&self) -> i32 {
        self.bottom - self.top + 1
    }
    pub fn contains(&self, x: i32, y: i32) -> bool {
        x >= self.left && x <= self.right && y >= self.top && y <= self.bottom
    }
}

/// Maps a value range onto a pane's rows (higher values higher up).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct YScale {
    pub lo: f64,
    pub hi: f64,
    pub top: i32,
    pub bottom: i32,
}

impl YScale {
    pub fn y(&self, v: f64) -> i32 {
        let f = (self.hi - v) / (self.hi - self.lo);
        (self.top as f64 + f * (self.bottom - self.top) as f64).round() as i32
    }
}

/// Maps bar indices onto columns: `slots` equal slots, the bars right-aligned in them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct XScale {
    pub left: f64,
    pub spacing: f64,
    /// Empty slots before bar 0 (short series are right-aligned, near the price axis).
    pub offset: f64,
}

impl XScale {
    pub fn new(plot: PixelRect, bars: usize, min_slots: usize, right_pad: f64) -> Self {
        let slots = bars.max(min_slots) as f64 + right_pad;
        let spacing = plot.width() as f64 / slots;
        let offset = bars.max(min_slots) as f64 - bars as f64;
        Self {
            left: plot.left as f64,
            spacing,
            offset,
        }
    }
    pub fn xf(&self, i: usize) -> f64 {
        self.left + (self.offset + i as f64 + 0.5) * self.spacing
    }
    pub fn x(&self, i: usize) -> i32 {
        self.xf(i).round() as i32
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Align {
    Left,
    Right,
}

fn style(color: RGBColor, width: u32, filled: bool) -> ShapeStyle {
    ShapeStyle {
        color: color.to_rgba(),
        filled,
        stroke_width: width,
    }
}

/// A bitmap being drawn on, with helpers that speak pixels and convert errors.
pub(crate) struct Canvas<'a> {
    backend: BitMapBackend<'a>,
    /// Base font size in pixels; everything else scales from it.
    pub scale: f64,
}

fn draw_err<E: std::fmt::Display>(e: E) -> ChartError {
    ChartError::Draw(e.to_string())
}

impl<'a> Canvas<'a> {
    /// `buf` must be `width * height * 3` bytes, pre-filled with the background colour.
    pub fn new(buf: &'a mut [u8], width: u32, height: u32) -> Result<Self, ChartError> {
        ensure_fonts()?;
        let backend = BitMapBackend::with_buffer(buf, (width, height));
        Ok(Self {
            backend,
            scale: ui_scale(width, height),
        })
    }

    pub fn finish(mut self) -> Result<(), ChartError> {
        self.backend.present().map_err(draw_err)
    }

    pub fn fill_rect(
        &mut self,
        x0: i32,
        y0: i32,
        x1: i32,
        y1: i32,
        color: RGBColor,
    ) -> Result<(), ChartError> {
        let (x0, x1) = (x0.min(x1), x0.max(x1));
        let (y0, y1) = (y0.min(y1), y0.max(y1));
        self.backend
            // The bitmap backend's fast fill excludes the right and bottom edges.
            .draw_rect((x0, y0), (x1 + 1, y1 + 1), &style(color, 1, true), true)
            .map_err(draw_err)
    }

    pub fn stroke_rect(&mut self, r: PixelRect, color: RGBColor) -> Result<(), ChartError> {
        self.backend
            .draw_rect(
                (r.left, r.top),
                (r.right, r.bottom),
                &style(color, 1, false),
                false,
            )
            .map_err(draw_err)
    }

    pub fn line(
        &mut self,
        from: (i32, i32),
        to: (i32, i32),
        color: RGBColor,
        width: u32,
    ) -> Result<(), ChartError> {
        if width <= 1 || from.0 == to.0 || from.1 == to.1 {
            if width <= 1 {
                return self
                    .backend
                    .draw_line(from, to, &style(color, 1, false))
                    .map_err(draw_err);
            }
            // Axis-aligned thick lines as rectangles: exact width, no polygon edges.
            let h = (width as i32 - 1) / 2;
            let k = width as i32 - 1 - h;
            return if from.1 == to.1 {
                self.fill_rect(from.0, from.1 - h, to.0, from.1 + k, color)
            } else {
                self.fill_rect(from.0 - h, from.1, from.0 + k, to.1, color)
            };
        }
        self.backend
            .draw_line(from, to, &style(color, width, false))
            .map_err(draw_err)
    }

    /// A thick polyline drawn segment by segment: joined paths grow miter spikes on sharp turns.
    /// `None` breaks the line (no value yet).
    pub fn polyline(
        &mut self,
        points: &[Option<(i32, i32)>],
        color: RGBColor,
        width: u32,
    ) -> Result<(), ChartError> {
        for pair in points.windows(2) {
            if let (Some(a), Some(b)) = (pair[0], pair[1]) {
                if a == b {
                    continue;
                }
                self.line(a, b, color, width)?;
            }
        }
        // Round off joints so thick lines look continuous.
        if width >= 3 {
            let r = width / 2;
            for p in points.iter().flatten() {
                self.backend
                    .draw_circle(*p, r, &style(color, 1, true), true)
                    .map_err(draw_err)?;
            }
        }
        Ok(())
    }

    pub fn fill_polygon(
        &mut self,
        points: &[(i32, i32)],
        color: RGBColor,
    ) -> Result<(), ChartError> {
        self.backend
            .fill_polygon(points.iter().copied(), &style(color, 1, true))
            .map_err(draw_err)
    }

    pub fn circle(
        &mut self,
        centre: (i32, i32),
        radius: u32,
        color: RGBColor,
    ) -> Result<(), ChartError> {
        self.backend
            .draw_circle(centre, radius, &style(color, 1, true), true)
            .map_err(draw_err)
    }

    pub fn dashed_hline(
        &mut self,
        x0: i32,
        x1: i32,
        y: i32,
        color: RGBColor,
        width: u32,
        (dash, gap): (i32, i32),
    ) -> Result<(), ChartError> {
        let mut x = x0;
        while x <= x1 {
            let end = (x + dash - 1).min(x1);
            self.line((x, y), (end, y), color, width)?;
            x += dash + gap;
        }
        Ok(())
    }

    fn text_style(&self, size: f64, bold: bool, color: RGBColor) -> TextStyle<'static> {
        let font = FontDesc::new(
            FontFamily::Name(FAMILY),
            size,
            if bold {
                FontStyle::Bold
            } else {
                FontStyle::Normal
            },
        );
        TextStyle {
            font,
            color: color.to_backend_color(),
            pos: Pos::new(HPos::Left, VPos::Top),
        }
    }

    pub fn text_width(&self, text: &str, size: f64, bold: bool) -> Result<i32, ChartError> {
        let style = self.text_style(size, bold, TEXT_PLACEHOLDER);
        let (w, _) = self
            .backend
            .estimate_text_size(text, &style)
            .map_err(draw_err)?;
        Ok(w as i32)
    }

    /// Draw `text` with its capital letters vertically centred on `y`; returns the drawn
    /// horizontal extent (left, right).
    /// The time axis under the lowest pane: the placed date/time labels (day boundaries in
    /// bold) and "IST" at `right_x`, all on the baseline `y`.
    pub fn time_axis(
        &mut self,
        placed: &[super::timeaxis::Placed],
        y: i32,
        right_x: i32,
        size: f64,
        unit_size: f64,
    ) -> Result<(), ChartError> {
        for p in placed {
            self.text(
                &p.text,
                (p.left, y),
                size,
                p.boundary,
                if p.boundary {
                    super::TEXT
                } else {
                    super::MUTED_TEXT
                },
                Align::Left,
            )?;
        }
        self.text(
            "IST",
            (right_x, y),
            unit_size,
            false,
            super::MUTED_TEXT,
            Align::Right,
        )?;
        Ok(())
    }

    pub fn text(
        &mut self,
        text: &str,
        (x, y): (i32, i32),
        size: f64,
        bold: bool,
        color: RGBColor,
        align: Align,
    ) -> Result<(i32, i32), ChartError> {
        let w = self.text_width(text, size, bold)?;
        let left = match align {
            Align::Left => x,
            Align::Right => x - w,
        };
        // The ab_glyph backend puts the baseline at top + size/2 and capitals are ~0.63 size
        // tall, so their middle sits ~0.19 size below the anchor.
        let top = y - (size * 0.19).round() as i32;
        let style = self.text_style(size, bold, color);
        self.backend
            .draw_text(text, &style, (left, top))
            .map_err(draw_err)?;
        Ok((left, left + w))
    }
}

const TEXT_PLACEHOLDER: RGBColor = RGBColor(0, 0, 0);

/// Base font size for a canvas: 22 px at the default 1280x800, never below 13 px.
pub(crate) fn ui_scale(width: u32, height: u32) -> f64 {
    let s = (width as f64 / 1280.0).min(height as f64 / 800.0);
    (22.0 * s).max(13.0)
}

/// Round tick positions covering `lo..=hi`, about `target` of them.
pub(crate) fn nice_ticks(lo: f64, hi: f64, target: usize) -> (Vec<f64>, usize) {
    let range = (hi - lo).abs();
    if !(range.is_finite()) || range <= 0.0 {
        return (vec![lo], 2);
    }
    let raw = range / target.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    // The round step whose tick count lands closest to the target: always rounding up can
    // halve the number of labels.
    let step = [1.0, 2.0, 2.5, 5.0, 10.0, 20.0]
        .iter()
        .map(|k| k * mag)
        .min_by(|a, b| {
            let da = (range / a - target as f64).abs();
            let db = (range / b - target as f64).abs();
            da.total_cmp(&db)
        })
        .unwrap_or(raw);
    let decimals = (0..=6)
        .find(|d| {
            let m = step * 10f64.powi(*d);
            (m - m.round()).abs() < 1e-6 * m.max(1.0)
        })
        .unwrap_or(6) as usize;
    let mut ticks = Vec::new();
    let mut k = (lo / step).ceil();
    while k * step <= hi + step * 1e-9 {
        ticks.push(k * step);
        k += 1.0;
        if ticks.len() > 200 {
            break;
        }
    }
    (ticks, decimals)
}

/// Compact volume: 950, 12.3K, 4.56M, 1.2B.
pub(crate) fn compact(v: f64) -> String {
    let a = v.abs();
    let (d, suffix) = if a >= 1e9 {
        (1e9, "B")
    } else if a >= 1e6 {
        (1e6, "M")
    } else if a >= 1e3 {
        (1e3, "K")
    } else {
        return format!("{v:.0}");
    };
    let x = v / d;
    if x.abs() >= 100.0 {
        format!("{x:.0}{suffix}")
    } else if x.abs() >= 10.0 {
        format!("{x:.1}{suffix}")
    } else {
        format!("{x:.2}{suffix}")
    }
}

/// Pad a value range so lines do not sit on the pane border; a zero range gets a small band.
pub(crate) fn padded_range(lo: f64, hi: f64, frac: f64) -> (f64, f64) {
    let range = hi - lo;
    if range <= hi.abs().max(1.0) * 1e-9 {
        let pad = (hi.abs() * 0.005).max(0.5);
        (lo - pad, hi + pad)
    } else {
        (lo - range * frac, hi + range * frac)
    }
}

/// Move label boxes (centre y, half height) apart so they do not overlap, keeping them inside
/// `top..=bottom` where possible. Input order is preserved in the output.
pub(crate) fn spread_labels(
    centres: &[i32],
    half: i32,
    gap: i32,
    top: i32,
    bottom: i32,
) -> Vec<i32> {
    let mut idx: Vec<usize> = (0..centres.len()).collect();
    idx.sort_by_key(|&i| centres[i]);
    let mut ys: Vec<i32> = idx
        .iter()
        .map(|&i| centres[i].clamp(top + half, bottom - half))
        .collect();
    let step = 2 * half + gap;
    for k in 1..ys.len() {
        if ys[k] < ys[k - 1] + step {
            ys[k] = ys[k - 1] + step;
        }
    }
    if let Some(&last) = ys.last()
        && last > bottom - half
    {
        let shift = last - (bottom - half);
        let n = ys.len();
        ys[n - 1] -= shift;
        for k in (0..n - 1).rev() {
            if ys[k] > ys[k + 1] - step {
                ys[k] = ys[k + 1] - step;
            }
        }
    }
    let mut out = vec![0; centres.len()];
    for (k, &i) in idx.iter().enumerate() {
        out[i] = ys[k];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_range() {
        let (t, d) = nice_ticks(1487.3, 1561.9, 7);
        assert_eq!(d, 0);
        assert_eq!(t.first().copied(), Some(1490.0));
        assert!(t.iter().all(|v| (v % 10.0).abs() < 1e-9));
        let (t, d) = nice_ticks(0.12, 0.19, 7);
        assert_eq!(d, 2);
        assert!(t.len() >= 5);
    }

    #[test]
    fn zero_range_is_padded() {
        let (lo, hi) = padded_range(100.0, 100.0, 0.06);
        assert!(lo < 100.0 && hi > 100.0);
        let (lo, hi) = padded_range(0.0, 0.0, 0.06);
        assert!(lo < 0.0 && hi > 0.0);
    }

    #[test]
    fn labels_spread_apart_inside_bounds() {
        let out = spread_labels(&[100, 102, 98], 10, 2, 0, 500);
        let mut s = out.clone();
        s.sort();
        assert!(s[1] - s[0] >= 22 && s[2] - s[1] >= 22);
        let out = spread_labels(&[495, 499], 10, 2, 0, 500);
        assert!(out.iter().all(|&y| y <= 490));
        assert!((out[0] - out[1]).abs() >= 22);
    }

    #[test]
    fn compact_volume() {
        assert_eq!(compact(950.0), "950");
        assert_eq!(compact(12_345.0), "12.3K");
        assert_eq!(compact(4_560_000.0), "4.56M");
    }
}
