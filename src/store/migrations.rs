//! Migrations embedded in the binary (one SQL file per backend and version), and the optional
//! TimescaleDB hypertable for `candles` on PostgreSQL.

use std::collections::HashSet;

use sqlx::SqlSafeStr;
use sqlx::migrate::{Migrate, Migration, MigrationType, Migrator};
use sqlx::postgres::PgPool;

use super::{Backend, MigrateReport, Pool, Store, StoreError};

/// One migration version, written once per backend. Files live in `migrations/sqlite/` and
/// `migrations/postgres/` under the same `NNNN_name.sql` file name.
pub(crate) struct EmbeddedMigration {
    pub version: i64,
    /// The part of the file name after `NNNN_`, without `.sql`.
    pub name: &'static str,
    pub sqlite: &'static str,
    pub postgres: &'static str,
}

/// Every migration, in version order. Sibling modules add their entry here.
pub(crate) const EMBEDDED: &[EmbeddedMigration] = &[
    EmbeddedMigration {
        version: 1,
        name: "market_data",
        sqlite: include_str!("../../migrations/sqlite/0001_market_data.sql"),
        postgres: include_str!("../../migrations/postgres/0001_market_data.sql"),
    },
    EmbeddedMigration {
        version: 2,
        name: "proposals",
        sqlite: include_str!("../../migrations/sqlite/0002_proposals.sql"),
        postgres: include_str!("../../migrations/postgres/0002_proposals.sql"),
    },
    EmbeddedMigration {
        version: 3,
        name: "orders",
        sqlite: include_str!("../../migrations/sqlite/0003_orders.sql"),
        postgres: include_str!("../../migrations/postgres/0003_orders.sql"),
    },
    EmbeddedMigration {
        version: 4,
        name: "service_instance",
        sqlite: include_str!("../../migrations/sqlite/0004_service_instance.sql"),
        postgres: include_str!("../../migrations/postgres/0004_service_instance.sql"),
    },
    EmbeddedMigration {
        version: 5,
        name: "market_session",
        sqlite: include_str!("../../migrations/sqlite/0005_market_session.sql"),
        postgres: include_str!("../../migrations/postgres/0005_market_session.sql"),
    },
    EmbeddedMigration {
        version: 6,
        name: "analysis",
        sqlite: include_str!("../../migrations/sqlite/0006_analysis.sql"),
        postgres: include_str!("../../migrations/postgres/0006_analysis.sql"),
    },
    EmbeddedMigration {
        version: 7,
        name: "backtest",
        sqlite: include_str!("../../migrations/sqlite/0007_backtest.sql"),
        postgres: include_str!("../../migrations/postgres/0007_backtest.sql"),
    },
    EmbeddedMigration {
        version: 8,
        name: "dashboard",
        sqlite: include_str!("../../migrations/sqlite/0008_dashboard.sql"),
        postgres: include_str!("../../migrations/postgres/0008_dashboard.sql"),
    },
    EmbeddedMigration {
        version: 9,
        name: "live_orders",
        sqlite: include_str!("../../migrations/sqlite/0009_live_orders.sql"),
        postgres: include_str!("../../migrations/postgres/0009_live_orders.sql"),
    },
    EmbeddedMigration {
        version: 10,
        name: "risk_audit",
        sqlite: include_str!("../../migrations/sqlite/0010_risk_audit.sql"),
        postgres: include_str!("../../migrations/postgres/0010_risk_audit.sql"),
    },
];

const MIGRATIONS_TABLE: &str = "_sqlx_migrations";

/// `0001_market_data`: how a migration is named in reports and in the folders.
fn label(version: i64, name: &str) -> String {
    format!("{version:04}_{name}")
}

pub(crate) fn migrator(backend: Backend) -> Migrator {
    let migrations = EMBEDDED
        .iter()
        .map(|m| {
            let sql = match backend {
                Backend::Sqlite => m.sqlite,
                Backend::Postgres => m.postgres,
            };
            Migration::new(
                m.version,
                m.name.into(),
                MigrationType::Simple,
                sql.into_sql_str(),
                false,
            )
        })
        .collect();
    Migrator::with_migrations(migrations)
}

pub(crate) async fn run(store: &Store) -> Result<MigrateReport, StoreError> {
    let migrator = migrator(store.backend());
    let map = |source| StoreError::Migrate { source };
    let before: HashSet<i64> = super::on_pool!(store, pool => {
        let mut conn = pool.acquire().await.map_err(|e| map(e.into()))?;
        conn.ensure_migrations_table(MIGRATIONS_TABLE)
            .await
            .map_err(map)?;
        let applied = conn
            .list_applied_migrations(MIGRATIONS_TABLE)
            .await
            .map_err(map)?;
        drop(conn);
        migrator.run(pool).await.map_err(map)?;
        applied.into_iter().map(|m| m.version).collect()
    });
    let applied: Vec<String> = EMBEDDED
        .iter()
        .filter(|m| !before.contains(&m.version))
        .map(|m| label(m.version, m.name))
        .collect();
    for name in &applied {
        tracing::info!(backend = %store.backend(), migration = %name, "applied database migration");
    }
    let hypertable = match store.pool() {
        Pool::Sqlite(_) => false,
        Pool::Postgres(pool) => ensure_hypertable(pool).await,
    };
    Ok(MigrateReport {
        applied,
        hypertable,
    })
}

/// Makes `candles` a TimescaleDB hypertable when the extension is available and can be created.
/// Never fails: without TimescaleDB, `candles` stays a plain table, which works the same.
async fn ensure_hypertable(pool: &PgPool) -> bool {
    let available = sqlx::query_scalar::<_, bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')",
    )
    .fetch_one(pool)
    .await;
    match available {
        Ok(true) => {}
        Ok(false) => {
            tracing::info!(
                "TimescaleDB is not installed on this PostgreSQL server: candles stay a plain table"
            );
            return false;
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot check for TimescaleDB: candles stay a plain table");
            return false;
        }
    }
    if let Err(e) = sqlx::query("CREATE EXTENSION IF NOT EXISTS timescaledb")
        .execute(pool)
        .await
    {
        tracing::warn!(
            error = %e,
            "TimescaleDB is installed but CREATE EXTENSION failed (is it in shared_preload_libraries, \
             and may this user create extensions?): candles stay a plain table"
        );
        return false;
    }
    // The generalized interface (TimescaleDB >= 2.13) first, then the older one.
    // A month per chunk keeps a year of one instrument in about a dozen chunks.
    let new_api = sqlx::query(
        "SELECT create_hypertable('candles', by_range('ts', INTERVAL '30 days'), \
         if_not_exists => TRUE, migrate_data => TRUE)",
    )
    .execute(pool)
    .await;
    if let Err(new_err) = new_api {
        let old_api = sqlx::query(
            "SELECT create_hypertable('candles', 'ts', chunk_time_interval => INTERVAL '30 days', \
             if_not_exists => TRUE, migrate_data => TRUE)",
        )
        .execute(pool)
        .await;
        if let Err(old_err) = old_api {
            tracing::warn!(
                error = %new_err, fallback_error = %old_err,
                "create_hypertable failed: candles stay a plain table"
            );
            return false;
        }
    }
    match sqlx::query_scalar::<_, bool>(
        "SELECT EXISTS (SELECT 1 FROM timescaledb_information.hypertables \
         WHERE hypertable_name = 'candles' AND hypertable_schema = current_schema())",
    )
    .fetch_one(pool)
    .await
    {
        Ok(is) => is,
        Err(e) => {
            tracing::warn!(error = %e, "cannot confirm that candles is a hypertable");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn files(backend: &str) -> Vec<String> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("migrations")
            .join(backend);
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".sql"))
            .collect();
        names.sort();
        names
    }

    #[test]
    fn every_migration_file_is_embedded_for_both_backends() {
        let embedded: Vec<String> = EMBEDDED
            .iter()
            .map(|m| format!("{}.sql", label(m.version, m.name)))
            .collect();
        assert_eq!(files("sqlite"), embedded, "migrations/sqlite vs EMBEDDED");
        assert_eq!(
            files("postgres"),
            embedded,
            "migrations/postgres vs EMBEDDED"
        );
    }

    #[test]
    fn versions_increase_and_migrator_keeps_them() {
        assert!(EMBEDDED.windows(2).all(|w| w[0].version < w[1].version));
        let m = migrator(Backend::Postgres);
        let versions: Vec<i64> = m.iter().map(|m| m.version).collect();
        assert_eq!(
            versions,
            EMBEDDED.iter().map(|m| m.version).collect::<Vec<_>>()
        );
        assert_eq!(label(1, "market_data"), "0001_market_data");
    }
}
