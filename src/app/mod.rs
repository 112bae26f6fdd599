//! Wiring: builds the services from Settings for `run` and `backtest`; the one command handler.

pub mod ports;
