//! The database: one API over SQLite (default) and PostgreSQL, chosen by the DATABASE_URL scheme.
//!
//! `Store::connect("sqlite://data/mft.db")` creates the file and its folder (WAL, foreign keys,
//! busy timeout); `Store::connect("postgres://user@host/db")` uses PostgreSQL. Both run the
//! migrations embedded in the binary (`migrations/sqlite` and `migrations/postgres`), so `mft`
//! works from any directory. On PostgreSQL `candles` becomes a TimescaleDB hypertable when the
//! extension can be created; otherwise it stays a plain table (see [`MigrateReport::hypertable`]).
//!
//! # Adding tables and queries from a sibling file (e.g. `src/store/trading.rs`)
//!
//! 1. Write the migration twice, `migrations/sqlite/0002_trading.sql` and
//!    `migrations/postgres/0002_trading.sql` (same version number and name in both; never edit a
//!    migration once it has run anywhere: add 0003 instead), and add one entry to
//!    [`migrations::EMBEDDED`] (`src/store/migrations.rs`). A unit test fails if a file in
//!    either folder is missing from that list.
//! 2. Add `mod trading;` below and write an `impl Store { .. }` block in the new file. Write each
//!    query ONCE with the [`on_pool!`] macro: it expands the body once per backend, with the
//!    named variable bound to a `&SqlitePool` or a `&PgPool`. Use `$1..$n` placeholders (SQLite
//!    accepts them), portable SQL (`ON CONFLICT .. DO UPDATE`, `CASE`, `COALESCE`; no `::` casts,
//!    use `CAST(x AS T)`), and types that both drivers encode: `i64`, `f64`, `bool`, `String`/`&str`,
//!    `Option<_>`, `DateTime<Utc>` (TIMESTAMPTZ / RFC 3339 text), `NaiveDate` (DATE / text).
//!    Keep money as `Paise` in BIGINT/INTEGER columns (bind `p.0`), JSON as TEXT.
//!    Map errors with [`QueryContext::ctx`], which names what failed:
//!
//! ```ignore
//! use super::{on_pool, QueryContext, Store, StoreError};
//!
//! impl Store {
//!     pub async fn proposal_status(&self, id: i64) -> Result<Option<String>, StoreError> {
//!         on_pool!(self, pool => {
//!             sqlx::query_scalar::<_, String>("SELECT status FROM proposals WHERE id = $1")
//!                 .bind(id)
//!                 .fetch_optional(pool)
//!                 .await
//!                 .ctx("reading a proposal's status")
//!         })
//!     }
//!
//!     /// Several statements in one transaction: `begin()` works on both pools.
//!     pub async fn decide(&self, id: i64, to: &str) -> Result<bool, StoreError> {
//!         on_pool!(self, pool => {
//!             let mut tx = pool.begin().await.ctx("starting a transaction")?;
//!             let changed = sqlx::query("UPDATE proposals SET status = $1 WHERE id = $2 AND status = 'pending'")
//!                 .bind(to).bind(id)
//!                 .execute(&mut *tx).await.ctx("deciding a proposal")?
//!                 .rows_affected();
//!             tx.commit().await.ctx("committing a decision")?;
//!             Ok(changed == 1)
//!         })
//!     }
//! }
//! ```
//!
//! Rows decode into tuples (`sqlx::query_as::<_, (i64, String, Option<DateTime<Utc>>)>`), which
//! work on both backends without the `macros` feature (kept off for compile time). Where the SQL
//! must differ (bulk writes, PostgreSQL-only features), `match self.pool()` on [`Pool`] instead,
//! or check [`Store::backend`]. `INSERT .. RETURNING id` works on both.
//!
//! # Candles schema (both backends)
//!
//! `series (id, instrument, interval)` maps each (instrument "NSE:INFY", interval "5minute") to an
//! integer id, created on its first write; `candles` keys on `(series_id, ts)` (narrow rows and
//! primary key, integer comparisons: faster bulk upserts and range reads). Query candles through
//! `series_id = (SELECT id FROM series WHERE instrument = $1 AND interval = $2)`; the public API
//! ([`Store::candles`], [`Store::last_candles`], ..) is the usual way and all such SQL lives in
//! `market.rs` (and `day.rs`'s previous-close read). `fetched_ranges` still keys on the (instrument, interval) text.
//!
//! One deliberate exception to portable types: SQLite keeps `candles.ts` as INTEGER epoch seconds
//! (faster bulk writes and reads); `market.rs` binds `ts.timestamp()` there.

mod analysis;
mod backtest;
pub mod dashboard;
mod day;
pub mod live;
pub mod lock;
mod market;
pub(crate) mod migrations;
mod proposals;
pub mod risk_audit;
pub mod service;
pub mod session;
mod sqlite_raw;
pub mod trading;
pub use backtest::{BacktestRun, Exchange, RunLogRow};
pub use dashboard::{ActionEntry, AlertEntry, DashboardMarks, ScanRun, WebSession};
pub use day::FillsSummary;
pub use live::{NewReconciliation, Reconciliation};
pub use lock::BookLock;
pub use risk_audit::RiskAuditEntry;
pub use service::{ServiceInstance, ServiceLock};
pub use session::{StateCheck, StoredSession};
pub use trading::{BookDiscrepancy, RecordedOrder, SystemState, TradeLogEntry};

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::domain::{InstrumentKey, Interval};

/// Which database a [`Store`] talks to, chosen by the DATABASE_URL scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The backend for a database URL: `sqlite:` or `postgres:`/`postgresql:` (case-insensitive).
    pub fn from_url(database_url: &str) -> Result<Backend, StoreError> {
        let scheme = database_url
            .split_once(':')
            .map(|(s, _)| s.trim().to_ascii_lowercase())
            .unwrap_or_default();
        match scheme.as_str() {
            "sqlite" => Ok(Backend::Sqlite),
            "postgres" | "postgresql" => Ok(Backend::Postgres),
            _ => Err(StoreError::UnsupportedScheme { scheme }),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Errors of the store. Messages say what failed and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "unsupported database URL scheme {scheme:?}: DATABASE_URL must start with sqlite: \
         (e.g. sqlite://data/mft.db) or postgres:/postgresql: (e.g. postgres://user@localhost:5432/mft)"
    )]
    UnsupportedScheme { scheme: String },
    #[error("invalid database URL {url}: {source}; fix DATABASE_URL")]
    InvalidUrl {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error(
        "cannot create the folder {path} for the SQLite database: {source}; check DATABASE_URL and the folder's permissions"
    )]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "cannot connect to the database {url}: {source}; check DATABASE_URL and that the database server is running"
    )]
    Connect {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error(
        "database migration failed: {source}; if the database was written by a newer mft, upgrade mft; \
         if a migration file was edited after it ran, restore it and add a new migration instead"
    )]
    Migrate {
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    #[error("database query failed while {what}: {source}")]
    Query {
        what: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error(
        "refusing to store candle {key} {interval} at {ts}: {reason}; fix or drop it in the data source"
    )]
    InvalidCandle {
        key: InstrumentKey,
        interval: Interval,
        ts: DateTime<Utc>,
        reason: String,
    },
    #[error(
        "refusing to record fetched range {from}..{to} for {key} {interval}: the start is after the end"
    )]
    InvalidRange {
        key: InstrumentKey,
        interval: Interval,
        from: chrono::NaiveDate,
        to: chrono::NaiveDate,
    },
    #[error(
        "the database holds a value this mft cannot read ({0}); was it written by another program?"
    )]
    Corrupt(String),
    #[error("cannot open the lock file {path}: {source}; check the data folder's permissions")]
    LockFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "another mft process kept the order book locked ({detail}); retry, and check that no command is stuck"
    )]
    BookLockBusy { detail: String },
    #[error(
        "money arithmetic overflowed while {0}; nothing was written: check the prices involved"
    )]
    Overflow(String),
    #[error(
        "another mft run is using this database (pid {pid}, since {since}); stop it first, or use `mft kill` to reach it"
    )]
    ServiceRunning { pid: i64, since: String },
}

impl StoreError {
    /// Whether the same operation may succeed when retried without anyone changing anything:
    /// the database was unreachable, busy or locked for the moment, or another process held the
    /// book lock. Everything else (a bad URL, a failed migration, a refused or corrupt value,
    /// another service on the database) needs the operator.
    pub fn is_recoverable(&self) -> bool {
        match self {
            StoreError::Connect { .. } | StoreError::BookLockBusy { .. } => true,
            StoreError::Query { source, .. } => transient(source),
            StoreError::UnsupportedScheme { .. }
            | StoreError::InvalidUrl { .. }
            | StoreError::CreateDir { .. }
            | StoreError::Migrate { .. }
            | StoreError::InvalidCandle { .. }
            | StoreError::InvalidRange { .. }
            | StoreError::Corrupt(_)
            | StoreError::LockFile { .. }
            | StoreError::Overflow(_)
            | StoreError::ServiceRunning { .. } => false,
        }
    }
}

/// A database failure that a retry may not meet again: the connection, the pool, or the
/// database busy, locked or aborting a transaction to resolve a conflict.
fn transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|c| transient_code(&c)),
        _ => false,
    }
}

/// PostgreSQL SQLSTATEs are five characters: connection exceptions (08), serialization failure
/// (40001), deadlock (40P01), lock not available (55P03), insufficient resources (53), server
/// shutting down (57P01-57P03). SQLite reports numeric extended result codes whose low byte is
/// SQLITE_BUSY (5) or SQLITE_LOCKED (6) when another connection holds the database.
fn transient_code(code: &str) -> bool {
    if code.len() == 5 {
        code.starts_with("08")
            || code.starts_with("53")
            || matches!(
                code,
                "40001" | "40P01" | "55P03" | "57P01" | "57P02" | "57P03"
            )
    } else {
        code.parse::<i32>().is_ok_and(|n| matches!(n & 0xff, 5 | 6))
    }
}

/// Adds "what was being done" to sqlx errors: `query.execute(pool).await.ctx("storing candles")?`.
pub(crate) trait QueryContext<T> {
    fn ctx(self, what: &'static str) -> Result<T, StoreError>;
}

impl<T> QueryContext<T> for Result<T, sqlx::Error> {
    fn ctx(self, what: &'static str) -> Result<T, StoreError> {
        self.map_err(|source| StoreError::Query { what, source })
    }
}

/// What [`Store::migrate`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrateReport {
    /// Migrations applied by this call, as `0001_market_data`; empty when already up to date.
    pub applied: Vec<String>,
    /// True when `candles` is a TimescaleDB hypertable (PostgreSQL with TimescaleDB only).
    pub hypertable: bool,
}

/// One row of `mft data list`: what is stored for one (instrument, interval).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CandleSummary {
    pub key: InstrumentKey,
    pub interval: Interval,
    pub first: DateTime<Utc>,
    pub last: DateTime<Utc>,
    pub rows: i64,
}

/// The connection pool of either backend; see [`on_pool!`] for writing a query once for both.
#[derive(Clone, Debug)]
pub(crate) enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Expands `$body` once per backend with `$pool` bound to `&SqlitePool` or `&PgPool`, so one
/// query text and one set of binds serve both databases. See the module docs for an example.
macro_rules! on_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match $store.pool() {
            $crate::store::Pool::Sqlite($pool) => $body,
            $crate::store::Pool::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_pool;

/// The database handle. Cheap to clone: the pool is shared.
#[derive(Clone, Debug)]
pub struct Store {
    pool: Pool,
    /// The SQLite database file (None for PostgreSQL and in-memory SQLite): lock files sit
    /// beside it.
    sqlite_path: Option<PathBuf>,
}

/// How long a SQLite writer waits for another writer's lock before failing.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections in a file database's pool: one writer at a time under WAL, three readers beside it.
const SQLITE_POOL_SIZE: u32 = 4;

impl Store {
    /// Connects to `sqlite:...` (file and parent folder created; WAL, foreign keys, busy timeout)
    /// or `postgres:...`, then runs the migrations. Any other scheme is
    /// [`StoreError::UnsupportedScheme`].
    pub async fn connect(database_url: &str) -> Result<Store, StoreError> {
        Ok(Store::connect_and_report(database_url).await?.0)
    }

    /// [`Store::connect`], also returning what its migration run did (for `mft migrate`).
    pub async fn connect_and_report(
        database_url: &str,
    ) -> Result<(Store, MigrateReport), StoreError> {
        let store = match Backend::from_url(database_url)? {
            Backend::Sqlite => Store::connect_sqlite(database_url).await?,
            Backend::Postgres => Store::connect_postgres(database_url).await?,
        };
        let report = store.migrate().await?;
        Ok((store, report))
    }

    async fn connect_sqlite(database_url: &str) -> Result<Store, StoreError> {
        let options = SqliteConnectOptions::from_str(database_url)
            .map_err(|source| StoreError::InvalidUrl {
                url: redact(database_url),
                source,
            })?
            .create_if_missing(true)
            .foreign_keys(true)
            .busy_timeout(SQLITE_BUSY_TIMEOUT)
            // Rows travel from sqlx's SQLite worker thread in a bounded channel; a deeper buffer
            // means fewer hand-offs when reading a year of candles.
            .row_buffer_size(1024);
        let lower = database_url.to_ascii_lowercase();
        let in_memory = lower.contains(":memory:") || lower.contains("mode=memory");
        let sqlite_path = (!in_memory).then(|| options.get_filename().to_path_buf());
        let pool_options = if in_memory {
            // Every connection to `:memory:` is its own database: keep exactly one, forever.
            SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
        } else {
            if let Some(parent) = options.get_filename().parent()
                && !parent.as_os_str().is_empty()
            {
                std::fs::create_dir_all(parent).map_err(|source| StoreError::CreateDir {
                    path: parent.to_path_buf(),
                    source,
                })?;
            }
            // All four connections open at start and stay: each is a thread and a few file
            // descriptors in sqlx's SQLite driver, so a pool that grew on the first busy moment
            // (or recycled idle connections every 10 minutes) would make the service's footprint
            // move for reasons that are not load. A steady pool makes growth mean a leak.
            SqlitePoolOptions::new()
                .max_connections(SQLITE_POOL_SIZE)
                .min_connections(SQLITE_POOL_SIZE)
                .idle_timeout(None)
                .max_lifetime(None)
        };
        let options = if in_memory {
            options
        } else {
            // WAL lets readers run while one writer writes; NORMAL sync is durable under WAL
            // except for the last transactions on power loss, which a re-fetch repairs.
            options
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
        };
        let connect_error = |source| StoreError::Connect {
            url: redact(database_url),
            source,
        };
        if !in_memory {
            // One connection first creates the file and switches it to WAL (which takes an
            // exclusive lock); the pool then opens its connections at once, and two of them
            // switching a new file's journal mode together would fail with "database is locked".
            use sqlx::{ConnectOptions, Connection};
            options
                .connect()
                .await
                .map_err(connect_error)?
                .close()
                .await
                .map_err(connect_error)?;
        }
        let pool = pool_options
            .connect_with(options)
            .await
            .map_err(connect_error)?;
        Ok(Store {
            pool: Pool::Sqlite(pool),
            sqlite_path,
        })
    }

    async fn connect_postgres(database_url: &str) -> Result<Store, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .connect(database_url)
            .await
            .map_err(|source| StoreError::Connect {
                url: redact(database_url),
                source,
            })?;
        Ok(Store {
            pool: Pool::Postgres(pool),
            sqlite_path: None,
        })
    }

    /// Applies pending migrations (idempotent) and, on PostgreSQL, makes `candles` a TimescaleDB
    /// hypertable when possible.
    pub async fn migrate(&self) -> Result<MigrateReport, StoreError> {
        migrations::run(self).await
    }

    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    /// Closes all connections; waits for running queries to finish.
    pub async fn close(&self) {
        on_pool!(self, pool => pool.close().await)
    }

    /// The SQLite database file, when the store is a SQLite file.
    pub fn sqlite_path(&self) -> Option<&std::path::Path> {
        self.sqlite_path.as_deref()
    }

    /// The pool, for sibling modules' queries (see [`on_pool!`]).
    pub(crate) fn pool(&self) -> &Pool {
        &self.pool
    }
}

/// The URL with its password replaced, for error messages and logs.
pub(crate) fn redact(database_url: &str) -> String {
    match url::Url::parse(database_url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => database_url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_follows_the_scheme() {
        assert_eq!(
            Backend::from_url("sqlite://data/mft.db").unwrap(),
            Backend::Sqlite
        );
        assert_eq!(
            Backend::from_url("sqlite::memory:").unwrap(),
            Backend::Sqlite
        );
        assert_eq!(
            Backend::from_url("postgres://u@h/db").unwrap(),
            Backend::Postgres
        );
        assert_eq!(
            Backend::from_url("PostgreSQL://u@h/db").unwrap(),
            Backend::Postgres
        );
        let err = Backend::from_url("mysql://u@h/db").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("\"mysql\""), "{msg}");
        assert!(
            msg.contains("sqlite:") && msg.contains("postgres:"),
            "{msg}"
        );
        assert!(matches!(
            Backend::from_url("data/mft.db"),
            Err(StoreError::UnsupportedScheme { .. })
        ));
    }

    #[test]
    fn redact_hides_passwords_only() {
        assert_eq!(
            redact("postgres://bob:secret@db:5432/mft"),
            "postgres://bob:***@db:5432/mft"
        );
        assert_eq!(redact("postgres://bob@db/mft"), "postgres://bob@db/mft");
        assert_eq!(redact("sqlite://data/mft.db"), "sqlite://data/mft.db");
    }

    #[test]
    fn only_passing_database_trouble_is_recoverable() {
        let query = |source| StoreError::Query {
            what: "testing",
            source,
        };
        assert!(query(sqlx::Error::PoolTimedOut).is_recoverable());
        assert!(
            query(sqlx::Error::Io(std::io::ErrorKind::ConnectionReset.into())).is_recoverable()
        );
        assert!(!query(sqlx::Error::RowNotFound).is_recoverable());
        assert!(!query(sqlx::Error::PoolClosed).is_recoverable());
        assert!(
            StoreError::BookLockBusy {
                detail: "held".into()
            }
            .is_recoverable()
        );
        assert!(!StoreError::Corrupt("side X".into()).is_recoverable());
        assert!(!StoreError::Overflow("adding fills".into()).is_recoverable());
        assert!(
            !StoreError::ServiceRunning {
                pid: 1,
                since: "now".into()
            }
            .is_recoverable()
        );
    }

    #[test]
    fn busy_locked_and_conflicting_database_codes_are_transient() {
        // PostgreSQL: serialization failure, deadlock, lock timeout, connection, shutdown.
        for code in ["40001", "40P01", "55P03", "08006", "53300", "57P01"] {
            assert!(transient_code(code), "{code}");
        }
        // Unique and foreign-key violations, syntax: retrying meets them again.
        for code in ["23505", "23503", "42601"] {
            assert!(!transient_code(code), "{code}");
        }
        // SQLite: BUSY (5), BUSY_SNAPSHOT (517), LOCKED (6), LOCKED_SHAREDCACHE (262).
        for code in ["5", "517", "6", "262"] {
            assert!(transient_code(code), "{code}");
        }
        // SQLite: CONSTRAINT_UNIQUE (2067), READONLY (8), CORRUPT (11).
        for code in ["2067", "8", "11", "x"] {
            assert!(!transient_code(code), "{code}");
        }
    }
}
