//! Local fakes of the outside services (each an axum server on 127.0.0.1:0) shared by the
//! integration tests; each test file uses only some of them.
#![allow(dead_code)]

pub mod telegram_fake;
