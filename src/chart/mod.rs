//! PNG charts for the operator's phone: trade-proposal candlesticks and backtest equity curves.
//!
//! Everything renders into an in-memory RGB buffer with plotters' bitmap backend and is encoded
//! as PNG with the `image` crate, so nothing depends on system fonts or a display: text uses
//! DejaVu Sans embedded in the binary (see `assets/LICENSE-DejaVu.txt`).
//!
//! The x axis of every chart is the bar index, not wall time: nights, weekends and holidays take
//! no space, and time labels come from the bars' own timestamps (in IST).
//!
//! Rendering is synchronous CPU work (~10 ms for the default proposal chart in release): call it
//! from async code through `tokio::task::spawn_blocking`.

mod canvas;
mod equity;
mod proposal;
mod timeaxis;

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use plotters::style::RGBColor;

pub use canvas::PixelRect;
pub use equity::{EquityLayout, equity_layout, render_equity, write_equity};
pub use proposal::{
    Levels, ProposalChart, ProposalLayout, proposal_layout, render_proposal, write_proposal,
};

/// Default size of a proposal or equity chart: landscape, readable full-width on a phone.
pub const DEFAULT_WIDTH: u32 = 1280;
pub const DEFAULT_HEIGHT: u32 = 800;

/// Smallest and largest canvas accepted; below the minimum the labels cannot fit.
pub const MIN_WIDTH: u32 = 480;
pub const MIN_HEIGHT: u32 = 320;
pub const MAX_SIDE: u32 = 8192;

// Exact colours, exported so tests (and anyone decoding the PNG) can find each element.
// Lines and fills are drawn without antialiasing inside, so these values appear verbatim.
pub const BACKGROUND: RGBColor = RGBColor(255, 255, 255);
pub const TEXT: RGBColor = RGBColor(28, 28, 30);
pub const MUTED_TEXT: RGBColor = RGBColor(96, 96, 104);
pub const GRID: RGBColor = RGBColor(228, 230, 235);
pub const DAY_SEPARATOR: RGBColor = RGBColor(176, 180, 190);
pub const PANE_BORDER: RGBColor = RGBColor(150, 154, 162);
pub const UP: RGBColor = RGBColor(22, 163, 74);
pub const DOWN: RGBColor = RGBColor(220, 38, 38);
pub const VOLUME_UP: RGBColor = RGBColor(134, 214, 163);
pub const VOLUME_DOWN: RGBColor = RGBColor(244, 160, 160);
pub const EMA_FAST: RGBColor = RGBColor(245, 130, 0);
pub const EMA_SLOW: RGBColor = RGBColor(124, 58, 237);
pub const RSI_LINE: RGBColor = RGBColor(8, 145, 178);
pub const RSI_GUIDE: RGBColor = RGBColor(120, 124, 134);
pub const RSI_BAND: RGBColor = RGBColor(240, 244, 250);
pub const ENTRY: RGBColor = RGBColor(29, 78, 216);
pub const STOP: RGBColor = RGBColor(153, 27, 27);
pub const TARGET: RGBColor = RGBColor(21, 94, 48);
pub const EQUITY_LINE: RGBColor = RGBColor(29, 78, 216);
pub const EQUITY_FILL: RGBColor = RGBColor(219, 230, 254);
pub const DRAWDOWN_LINE: RGBColor = RGBColor(185, 28, 28);
pub const DRAWDOWN_FILL: RGBColor = RGBColor(254, 215, 215);

/// Why a chart could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    #[error("nothing to chart: {what} is empty (fetch or compute some data first)")]
    Empty { what: &'static str },

    #[error(
        "candle #{index} at {ts} has a non-finite {field} ({value}): repair or drop that bar before charting"
    )]
    NonFinitePrice {
        index: usize,
        ts: DateTime<Utc>,
        field: &'static str,
        value: f64,
    },

    #[error(
        "candle #{index} at {ts} is older than the bar before it: sort candles by time before charting"
    )]
    Unordered { index: usize, ts: DateTime<Utc> },

    #[error(
        "{series} has {len} values but there are {candles} candles: pass one value per candle (NaN where there is none yet), or an empty slice to omit it"
    )]
    LengthMismatch {
        series: &'static str,
        len: usize,
        candles: usize,
    },

    #[error("{level} level is {value}: entry, stop and target must be finite prices")]
    NonFiniteLevel { level: &'static str, value: f64 },

    #[error("equity point #{index} at {ts} is {value}: equity values must be finite")]
    NonFiniteEquity {
        index: usize,
        ts: DateTime<Utc>,
        value: f64,
    },

    #[error(
        "chart size {width}x{height} is outside {MIN_WIDTH}x{MIN_HEIGHT}..={MAX_SIDE}x{MAX_SIDE}: pick a size in that range (default {DEFAULT_WIDTH}x{DEFAULT_HEIGHT})"
    )]
    Size { width: u32, height: u32 },

    #[error(
        "the embedded chart font could not be loaded: {0} (the binary's assets are corrupt; rebuild)"
    )]
    Font(String),

    #[error("drawing the chart failed: {0}")]
    Draw(String),

    #[error("encoding the chart as PNG failed: {0}")]
    Encode(String),

    #[error("could not write chart to {}: {source} (check the directory exists and is writable)", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub(crate) fn check_size(width: u32, height: u32) -> Result<(), ChartError> {
    if !(MIN_WIDTH..=MAX_SIDE).contains(&width) || !(MIN_HEIGHT..=MAX_SIDE).contains(&height) {
        return Err(ChartError::Size { width, height });
    }
    Ok(())
}

/// Encode a tightly packed RGB8 buffer as PNG.
pub(crate) fn encode_png(rgb: &[u8], width: u32, height: u32) -> Result<Vec<u8>, ChartError> {
    use image::ImageEncoder;
    use image::codecs::png::{CompressionType, FilterType, PngEncoder};
    // Measured on the default proposal chart: default deflate with adaptive filtering takes
    // ~7 ms more than the fast setting but makes a 60 KiB file instead of ~300 KiB, which is
    // what a phone on a mobile network has to download.
    let mut out = Vec::with_capacity(128 * 1024);
    PngEncoder::new_with_quality(&mut out, CompressionType::Default, FilterType::Adaptive)
        .write_image(rgb, width, height, image::ColorType::Rgb8)
        .map_err(|e| ChartError::Encode(e.to_string()))?;
    Ok(out)
}

pub(crate) fn write_file(path: &Path, bytes: &[u8]) -> Result<(), ChartError> {
    std::fs::write(path, bytes).map_err(|source| ChartError::Write {
        path: path.to_path_buf(),
        source,
    })
}
