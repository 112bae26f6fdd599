//! Shared fakes and helpers for the integration tests (one file per fake).

pub mod kite_fake;
