//! The service lock: one `mft run` per database. PostgreSQL: a session advisory lock held by a
//! dedicated connection for the life of the process (the server drops it with the connection,
//! also when the process dies). SQLite: an exclusive OS lock on `<db>.service.lock` beside the
//! database file (the kernel drops it when the process dies). The holder is recorded in
//! `service_instance` (pid, start time, status address, kill-token file), which a second
//! instance quotes in its refusal and `mft kill` uses to reach the running service.

use chrono::{DateTime, Utc};
use sqlx::Connection;

use super::lock::sqlite_side_file;
use super::{Pool, QueryContext, Store, StoreError};

/// Advisory-lock key of the service ("mft_serv" in ASCII).
const SERVICE_LOCK_KEY: i64 = 0x6d66_745f_7365_7276;

/// Who holds the service lock, as recorded in `service_instance`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceInstance {
    pub pid: i64,
    pub host: String,
    pub started_at: DateTime<Utc>,
    /// The status server's bound address (the kill endpoint), once it listens.
    pub status_addr: Option<String>,
    /// The 0600 file holding the kill endpoint's token.
    pub token_path: Option<String>,
}

/// The held service lock; released when dropped (or by the process ending).
pub struct ServiceLock {
    inner: Inner,
}

enum Inner {
    Postgres(sqlx::PgConnection),
    File(#[allow(dead_code)] std::fs::File),
    /// In-memory SQLite: nothing else can open it.
    None,
}

impl std::fmt::Debug for ServiceLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServiceLock")
    }
}

impl ServiceLock {
    /// Gives the lock up (closing the PostgreSQL session that holds it).
    pub async fn release(self) {
        if let Inner::Postgres(conn) = self.inner {
            let _ = conn.close().await;
        }
    }
}

fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.trim().is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

impl Store {
    /// Takes the service lock without waiting. `Ok(None)` when another process holds it (see
    /// [`Store::service_instance`] for who).
    pub async fn try_lock_service(&self) -> Result<Option<ServiceLock>, StoreError> {
        match self.pool() {
            Pool::Postgres(pool) => {
                // A connection of its own, out of the pool, so the session (and the lock) lives
                // exactly as long as the ServiceLock.
                let mut conn = pool
                    .acquire()
                    .await
                    .ctx("opening the service lock connection")?
                    .detach();
                let got = sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_lock($1)")
                    .bind(SERVICE_LOCK_KEY)
                    .fetch_one(&mut conn)
                    .await
                    .ctx("taking the service lock")?;
                if !got {
                    let _ = conn.close().await;
                    return Ok(None);
                }
                Ok(Some(ServiceLock {
                    inner: Inner::Postgres(conn),
                }))
            }
            Pool::Sqlite(_) => {
                let Some(path) = sqlite_side_file(self, "service.lock") else {
                    return Ok(Some(ServiceLock { inner: Inner::None }));
                };
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .read(true)
                    .write(true)
                    .open(&path)
                    .map_err(|source| StoreError::LockFile {
                        path: path.clone(),
                        source,
                    })?;
                match file.try_lock() {
                    Ok(()) => Ok(Some(ServiceLock {
                        inner: Inner::File(file),
                    })),
                    Err(std::fs::TryLockError::WouldBlock) => Ok(None),
                    Err(std::fs::TryLockError::Error(source)) => {
                        Err(StoreError::LockFile { path, source })
                    }
                }
            }
        }
    }

    /// Takes the service lock for `mft run` and records this process as the holder, or fails
    /// with [`StoreError::ServiceRunning`] naming the process that holds it.
    pub async fn lock_service(
        &self,
        pid: u32,
        started_at: DateTime<Utc>,
    ) -> Result<ServiceLock, StoreError> {
        let Some(lock) = self.try_lock_service().await? else {
            let holder = self.service_instance().await?;
            return Err(StoreError::ServiceRunning {
                pid: holder.as_ref().map_or(0, |h| h.pid),
                since: holder
                    .map(|h| h.started_at.format("%Y-%m-%d %H:%M:%S UTC").to_string())
                    .unwrap_or_else(|| "an unknown time".into()),
            });
        };
        let host = host_name();
        on_pool_record(self, i64::from(pid), &host, started_at).await?;
        Ok(lock)
    }

    /// The process recorded as holding the service lock (the last one that took it).
    pub async fn service_instance(&self) -> Result<Option<ServiceInstance>, StoreError> {
        let row = super::on_pool!(self, pool => {
            sqlx::query_as::<_, (i64, String, DateTime<Utc>, Option<String>, Option<String>)>(
                "SELECT pid, host, started_at, status_addr, token_path FROM service_instance \
                 WHERE id = 1",
            )
            .fetch_optional(pool)
            .await
            .ctx("reading the running service")?
        });
        Ok(row.map(
            |(pid, host, started_at, status_addr, token_path)| ServiceInstance {
                pid,
                host,
                started_at,
                status_addr,
                token_path,
            },
        ))
    }

    /// Records where the running service's kill endpoint listens and its token file.
    pub async fn set_service_endpoint(
        &self,
        status_addr: &str,
        token_path: &str,
    ) -> Result<(), StoreError> {
        super::on_pool!(self, pool => {
            sqlx::query("UPDATE service_instance SET status_addr = $1, token_path = $2 WHERE id = 1")
                .bind(status_addr)
                .bind(token_path)
                .execute(pool)
                .await
                .ctx("recording the kill endpoint")?;
        });
        Ok(())
    }
}

async fn on_pool_record(
    store: &Store,
    pid: i64,
    host: &str,
    started_at: DateTime<Utc>,
) -> Result<(), StoreError> {
    super::on_pool!(store, pool => {
        sqlx::query(
            "INSERT INTO service_instance (id, pid, host, started_at, status_addr, token_path) \
             VALUES (1, $1, $2, $3, NULL, NULL) ON CONFLICT (id) DO UPDATE SET pid = excluded.pid, \
             host = excluded.host, started_at = excluded.started_at, status_addr = NULL, \
             token_path = NULL",
        )
        .bind(pid)
        .bind(host)
        .bind(started_at)
        .execute(pool)
        .await
        .ctx("recording the running service")?;
    });
    Ok(())
}
