//! Shared helpers and fakes for the integration tests; each test file does `mod support;`.

pub mod db;
pub mod kite_fake;
