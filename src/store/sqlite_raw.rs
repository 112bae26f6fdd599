//! The SQLite range read of candles through SQLite's C API on sqlx's own connection handle.
//!
//! Why: sqlx's SQLite driver runs each statement on a worker thread and hands every row to the
//! caller through a channel (about 1 us per row): 18 ms for a year of 5-minute bars (18,750 rows),
//! almost all of it hand-offs. Stepping the statement here, on the caller's thread, decodes the
//! same values in a few ms. The values are bit-identical to sqlx's: sqlx decodes `f64` with
//! `sqlite3_value_double`, `i64` with `sqlite3_value_int64` and `DateTime<Utc>` from INTEGER
//! seconds with `Utc.timestamp_opt(secs, 0)`, which is what this file does column by column.
//!
//! Safety rests on two things: `libsqlite3-sys` is the very version sqlx-sqlite links (Cargo.lock
//! has a single `libsqlite3-sys`; bump both together), and the handle is used only while
//! [`sqlx::sqlite::LockedSqliteHandle`] is held, which parks sqlx's worker thread so nothing else
//! touches the connection. The statement is finalized on every path by [`Statement`]'s `Drop`.

// The crate denies unsafe code; this module is one of its few documented exceptions (see above and
// each `// SAFETY:` below). benches/store.rs prints this read beside sqlx's own for the same rows.
#![allow(unsafe_code)]

use std::ffi::{CStr, c_char, c_int};
use std::ptr::{self, NonNull};

use chrono::{DateTime, Utc};
use libsqlite3_sys as ffi;
use sqlx::SqlitePool;

use crate::domain::Candle;

/// Same predicate as the PostgreSQL read (see `market.rs`); SQLite walks the `(series_id, ts)`
/// primary key, so ORDER BY costs nothing here.
const RANGE_SQL: &CStr = c"SELECT ts, open, high, low, close, volume, oi FROM candles \
    WHERE series_id = (SELECT id FROM series WHERE instrument = ?1 AND interval = ?2) \
    AND ts >= ?3 AND ts <= ?4 ORDER BY ts";

/// A prepared statement, finalized when dropped.
struct Statement(NonNull<ffi::sqlite3_stmt>);

impl Drop for Statement {
    fn drop(&mut self) {
        // SAFETY: the pointer came from a successful sqlite3_prepare_v2 and is finalized once.
        unsafe {
            ffi::sqlite3_finalize(self.0.as_ptr());
        }
    }
}

/// Candles of the series `instrument`/`interval` with `from <= ts <= to` (epoch seconds),
/// ascending by ts.
pub(crate) async fn read_range(
    pool: &SqlitePool,
    instrument: &str,
    interval: &str,
    from: i64,
    to: i64,
) -> Result<Vec<Candle>, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let mut handle = conn.lock_handle().await?;
    let db = handle.as_raw_handle();
    // SAFETY: `db` is a live connection handle that no other thread uses while `handle` (the
    // lock on sqlx's worker) lives, which is until the end of this function; nothing below awaits.
    unsafe { read_locked(db, instrument, interval, from, to) }
}

/// SAFETY: the caller guarantees `db` is an open connection used by no one else meanwhile.
unsafe fn read_locked(
    db: NonNull<ffi::sqlite3>,
    instrument: &str,
    interval: &str,
    from: i64,
    to: i64,
) -> Result<Vec<Candle>, sqlx::Error> {
    let db = db.as_ptr();
    let fail = |what: &str| {
        // SAFETY: `db` is open; sqlite3_errmsg returns a NUL-terminated string owned by SQLite,
        // copied here before any other call on the handle.
        let msg = unsafe { CStr::from_ptr(ffi::sqlite3_errmsg(db)) };
        sqlx::Error::Protocol(format!(
            "SQLite {what} failed while reading candles: {}",
            msg.to_string_lossy()
        ))
    };
    let mut raw: *mut ffi::sqlite3_stmt = ptr::null_mut();
    // SAFETY: RANGE_SQL is NUL-terminated (-1 = read up to the NUL); `raw` receives the statement.
    let rc =
        unsafe { ffi::sqlite3_prepare_v2(db, RANGE_SQL.as_ptr(), -1, &mut raw, ptr::null_mut()) };
    let stmt = match NonNull::new(raw) {
        Some(p) if rc == ffi::SQLITE_OK => Statement(p),
        Some(p) => {
            drop(Statement(p));
            return Err(fail("prepare"));
        }
        None => return Err(fail("prepare")),
    };
    let s = stmt.0.as_ptr();
    for (index, text) in [(1, instrument), (2, interval)] {
        let len = c_int::try_from(text.len())
            .map_err(|_| sqlx::Error::Protocol("candle series name too long".into()))?;
        // SAFETY: `text` is valid for `len` bytes; SQLITE_TRANSIENT makes SQLite copy it.
        let rc = unsafe {
            ffi::sqlite3_bind_text(
                s,
                index,
                text.as_ptr().cast::<c_char>(),
                len,
                ffi::SQLITE_TRANSIENT(),
            )
        };
        if rc != ffi::SQLITE_OK {
            return Err(fail("bind"));
        }
    }
    for (index, value) in [(3, from), (4, to)] {
        // SAFETY: `s` is a prepared statement with four parameters.
        if unsafe { ffi::sqlite3_bind_int64(s, index, value) } != ffi::SQLITE_OK {
            return Err(fail("bind"));
        }
    }
    let mut out = Vec::new();
    loop {
        // SAFETY: `s` is a prepared, bound statement; columns are read only after SQLITE_ROW,
        // by index within the 7 selected columns.
        match unsafe { ffi::sqlite3_step(s) } {
            ffi::SQLITE_ROW => unsafe {
                let secs = ffi::sqlite3_column_int64(s, 0);
                let ts = DateTime::<Utc>::from_timestamp(secs, 0).ok_or_else(|| {
                    sqlx::Error::Protocol(format!("candles.ts {secs} is out of range"))
                })?;
                let oi = if ffi::sqlite3_column_type(s, 6) == ffi::SQLITE_NULL {
                    None
                } else {
                    Some(ffi::sqlite3_column_int64(s, 6))
                };
                out.push(Candle {
                    ts,
                    open: ffi::sqlite3_column_double(s, 1),
                    high: ffi::sqlite3_column_double(s, 2),
                    low: ffi::sqlite3_column_double(s, 3),
                    close: ffi::sqlite3_column_double(s, 4),
                    volume: ffi::sqlite3_column_int64(s, 5),
                    oi,
                });
            },
            ffi::SQLITE_DONE => break,
            _ => return Err(fail("step")),
        }
    }
    Ok(out)
}
