//! Shared helpers and local fakes of the outside services (each fake an axum server on
//! 127.0.0.1:0) for the integration tests; each test file does `mod support;` and uses only some.
#![allow(dead_code)]

pub mod cut;
pub mod db;
pub mod kite_fake;
pub mod kite_margins_fake;
pub mod notifier;
pub mod openai_fake;
pub mod series;
pub mod service;
pub mod telegram_fake;
