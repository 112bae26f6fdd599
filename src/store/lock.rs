//! The book lock: serializes everything that reads the book and then trades (placement, fills,
//! exits, flattening) across processes sharing one database, e.g. `mft run` and `mft kill`.
//!
//! PostgreSQL: a transaction-scoped advisory lock (`pg_advisory_xact_lock`) held by a dedicated
//! connection for as long as the [`BookLock`] lives; the server releases it when that
//! transaction ends, also when the process dies. SQLite: an exclusive OS lock (flock) on a file
//! beside the database, `<db>.book.lock`, released by the kernel when the process dies. SQLite
//! cannot use `BEGIN IMMEDIATE` for this outer lock because the work done under it writes
//! through other pool connections, which that transaction would block; the fill itself is
//! written in a `BEGIN IMMEDIATE` transaction (see `record_fill`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{Pool, QueryContext, Store, StoreError};

/// Advisory-lock key of the book ("mft_book" in ASCII).
pub(crate) const BOOK_LOCK_KEY: i64 = 0x6d66_745f_626f_6f6b;
/// Advisory-lock key taken inside each fill's transaction ("mft_fill").
pub(crate) const FILL_LOCK_KEY: i64 = 0x6d66_745f_6669_6c6c;

/// How long a book operation waits for another process's before failing.
pub const BOOK_LOCK_TIMEOUT: Duration = Duration::from_secs(30);

/// The held book lock; released on drop (or explicitly with [`BookLock::release`]).
pub struct BookLock {
    inner: Inner,
}

enum Inner {
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
    File(std::fs::File),
    /// In-memory SQLite: one connection, one process; the caller's in-process lock suffices.
    None,
}

impl std::fmt::Debug for BookLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.inner {
            Inner::Postgres(_) => "postgres advisory lock",
            Inner::File(_) => "lock file",
            Inner::None => "in-process only",
        };
        f.debug_struct("BookLock").field("kind", &kind).finish()
    }
}

impl BookLock {
    /// Releases the lock now (ending the PostgreSQL transaction cleanly).
    pub async fn release(self) {
        match self.inner {
            Inner::Postgres(tx) => {
                if let Err(e) = tx.commit().await {
                    tracing::warn!(error = %e, "releasing the book lock failed; the server drops it with the connection");
                }
            }
            Inner::File(file) => {
                let _ = file.unlock();
            }
            Inner::None => {}
        }
    }
}

/// The file a SQLite database's lock of `suffix` lives in: `<db file>.<suffix>`; None for an
/// in-memory database.
pub(crate) fn sqlite_side_file(store: &Store, suffix: &str) -> Option<PathBuf> {
    let db = store.sqlite_path.as_ref()?;
    let mut name = db.file_name()?.to_os_string();
    name.push(".");
    name.push(suffix);
    Some(db.with_file_name(name))
}

fn open_lock_file(path: &Path) -> Result<std::fs::File, StoreError> {
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .map_err(|source| StoreError::LockFile {
            path: path.to_path_buf(),
            source,
        })
}

impl Store {
    /// Takes the book lock, waiting up to [`BOOK_LOCK_TIMEOUT`] for another process to finish.
    pub async fn lock_book(&self) -> Result<BookLock, StoreError> {
        match self.pool() {
            Pool::Postgres(pool) => {
                let mut tx = pool.begin().await.ctx("starting the book lock")?;
                sqlx::query("SET LOCAL lock_timeout = '30s'")
                    .execute(&mut *tx)
                    .await
                    .ctx("setting the book lock timeout")?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(BOOK_LOCK_KEY)
                    .execute(&mut *tx)
                    .await
                    .map_err(|source| StoreError::BookLockBusy {
                        detail: source.to_string(),
                    })?;
                Ok(BookLock {
                    inner: Inner::Postgres(tx),
                })
            }
            Pool::Sqlite(_) => {
                let Some(path) = sqlite_side_file(self, "book.lock") else {
                    return Ok(BookLock { inner: Inner::None });
                };
                let file = open_lock_file(&path)?;
                let deadline = tokio::time::Instant::now() + BOOK_LOCK_TIMEOUT;
                let mut pause = Duration::from_millis(1);
                loop {
                    match file.try_lock() {
                        Ok(()) => {
                            return Ok(BookLock {
                                inner: Inner::File(file),
                            });
                        }
                        Err(std::fs::TryLockError::WouldBlock) => {
                            if tokio::time::Instant::now() >= deadline {
                                return Err(StoreError::BookLockBusy {
                                    detail: format!(
                                        "{} stayed locked for {}s",
                                        path.display(),
                                        BOOK_LOCK_TIMEOUT.as_secs()
                                    ),
                                });
                            }
                            tokio::time::sleep(pause).await;
                            pause = (pause * 2).min(Duration::from_millis(20));
                        }
                        Err(std::fs::TryLockError::Error(source)) => {
                            return Err(StoreError::LockFile { path, source });
                        }
                    }
                }
            }
        }
    }
}
