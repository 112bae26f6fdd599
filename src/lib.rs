//! MFT-1: a chat-first trading co-pilot for Zerodha Kite Connect, operated from Telegram.
//!
//! See ARCHITECTURE.md (shared) for the layers; each module's own docs say what it is for.

// Unsafe code is denied but at four places, each with its `#[allow]`, a `// SAFETY:` note and
// an A/B benchmark against its safe alternative: the SQLite C-API candle read
// (`store::sqlite_raw`, benches/store.rs), and in `ta` the madvise on large outputs, the FMA
// kernel dispatch and `Sink::feed`'s `set_len` (benches/ta.rs, `cargo bench --bench ta -- ab`).
#![deny(unsafe_code)]

pub mod agents;
pub mod app;
pub mod backtest;
pub mod bot;
pub mod chart;
pub mod clock;
pub mod config;
pub mod domain;
pub mod jobs;
pub mod market;
pub mod mcp;
pub mod metrics;
pub mod oms;
pub mod ports;
pub mod risk;
pub mod store;
pub mod ta;
pub mod texts;
pub mod web;
