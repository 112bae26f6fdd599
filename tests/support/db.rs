//! Test databases: SQLite in a temp dir always, plus a fresh PostgreSQL database per call when
//! TEST_DATABASE_URL is set (created on that server, dropped when the TestDb is dropped).
#![allow(dead_code)]

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use mft::store::Store;
use sqlx::{Connection, Executor, PgConnection};

/// A store under test. Keeps its temp dir alive; drops its PostgreSQL database on drop.
pub struct TestDb {
    /// "sqlite" or "postgres".
    pub name: &'static str,
    pub url: String,
    pub store: Store,
    _dir: Option<tempfile::TempDir>,
    pg: Option<PgDatabase>,
}

struct PgDatabase {
    admin_url: String,
    db_name: String,
}

/// SQLite in a temp dir always, plus a fresh PostgreSQL database when TEST_DATABASE_URL is set.
pub async fn test_stores() -> Vec<TestDb> {
    let mut stores = vec![sqlite_store().await];
    if let Ok(admin_url) = std::env::var("TEST_DATABASE_URL")
        && !admin_url.trim().is_empty()
    {
        stores.push(postgres_store(&admin_url).await);
    }
    stores
}

/// A migrated SQLite store in a new temp dir.
pub async fn sqlite_store() -> TestDb {
    let dir = tempfile::tempdir().expect("create a temp dir for the SQLite test database");
    let url = format!("sqlite://{}", dir.path().join("mft.db").display());
    let store = Store::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
    TestDb {
        name: "sqlite",
        url,
        store,
        _dir: Some(dir),
        pg: None,
    }
}

/// A migrated store on a new database `mft_t_<random>` on TEST_DATABASE_URL's server.
pub async fn postgres_store(admin_url: &str) -> TestDb {
    let (url, db_name) = create_pg_database(admin_url).await;
    let store = Store::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
    TestDb {
        name: "postgres",
        url,
        store,
        _dir: None,
        pg: Some(PgDatabase {
            admin_url: admin_url.to_string(),
            db_name,
        }),
    }
}

/// A random database name, unique across parallel tests and processes.
pub fn random_db_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    h.write_u32(std::process::id());
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    format!("mft_t_{:016x}", h.finish())
}

/// Creates an empty database on `admin_url`'s server (connecting to `admin_url`'s own database)
/// and returns its URL and name.
pub async fn create_pg_database(admin_url: &str) -> (String, String) {
    let db_name = random_db_name();
    let mut admin = PgConnection::connect(admin_url)
        .await
        .unwrap_or_else(|e| panic!("connect to TEST_DATABASE_URL {admin_url}: {e}"));
    admin
        .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db_name}")))
        .await
        .unwrap_or_else(|e| panic!("CREATE DATABASE {db_name}: {e}"));
    let _ = admin.close().await;
    let mut url = url::Url::parse(admin_url).expect("TEST_DATABASE_URL is a URL");
    url.set_path(&format!("/{db_name}"));
    (url.to_string(), db_name)
}

/// Drops a database made by [`create_pg_database`]; best effort (errors are printed, not raised).
pub async fn drop_pg_database(admin_url: &str, db_name: &str) {
    match PgConnection::connect(admin_url).await {
        Ok(mut admin) => {
            let sql = format!("DROP DATABASE IF EXISTS {db_name} WITH (FORCE)");
            if let Err(e) = admin.execute(sqlx::AssertSqlSafe(sql)).await {
                eprintln!("could not drop test database {db_name}: {e}");
            }
            let _ = admin.close().await;
        }
        Err(e) => eprintln!("could not connect to drop test database {db_name}: {e}"),
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(pg) = self.pg.take() else { return };
        // Drop runs inside the test's runtime, which cannot be blocked on: use a thread with
        // its own runtime. WITH (FORCE) ends this store's still-open pool connections.
        let handle =
            std::thread::spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt.block_on(drop_pg_database(&pg.admin_url, &pg.db_name)),
                    Err(e) => eprintln!("could not drop test database {}: {e}", pg.db_name),
                }
            });
        let _ = handle.join();
    }
}
