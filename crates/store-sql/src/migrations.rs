//! The schemas of both stores, embedded at compile time.
//!
//! `build.rs` turns `migrations/<store>/<version>_<name>.sql` into a table that
//! `include_str!`s each file, and [`embedded_migrator`] builds sqlx's [`Migrator`] from it with
//! the version, description and checksum (SHA-384 of the SQL) that `sqlx::migrate!` would give
//! — so a database migrated by either is accepted by the other. The macro is not used because
//! it lives in a proc-macro crate that compiles a second copy of sqlx (and its drivers) for the
//! build host, about a minute of a cold build on two cores (`docs/benchmarks.md`, "Build
//! time").

use std::borrow::Cow;

use sqlx::AssertSqlSafe;
use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};

/// `(store, version, description, sql)` for every migration file, sorted by store then version.
const MIGRATIONS: &[(&str, i64, &str, &str)] = include!(concat!(env!("OUT_DIR"), "/migrations.rs"));

/// The migrator of `store` (`"sqlite"` or `"postgres"`, the directory under `migrations/`).
///
/// # Panics
/// If `store` has no migrations: a programming error, caught by the stores' first test.
pub fn embedded_migrator(store: &str) -> Migrator {
    let migrations: Vec<Migration> = MIGRATIONS
        .iter()
        .filter(|(s, ..)| *s == store)
        .map(|&(_, version, description, sql)| {
            Migration::new(
                version,
                Cow::Borrowed(description),
                MigrationType::Simple,
                AssertSqlSafe(sql).into_sql_str(),
                // sqlx's own rule for a file that opts out of the migration transaction.
                sql.starts_with("-- no-transaction"),
            )
        })
        .collect();
    assert!(
        !migrations.is_empty(),
        "no migrations embedded for store {store:?}"
    );
    Migrator::with_migrations(migrations)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// What a migration is recorded as in `_sqlx_migrations`, and what it runs.
    fn summary(m: &Migration) -> (i64, String, MigrationType, Vec<u8>, String, bool) {
        (
            m.version,
            m.description.to_string(),
            m.migration_type,
            m.checksum.to_vec(),
            m.sql.as_str().to_owned(),
            m.no_tx,
        )
    }

    /// The embedded table matches what sqlx reads from the directory at run time — the same
    /// resolution `sqlx::migrate!` uses — for both stores.
    #[tokio::test]
    async fn embedded_migrations_equal_the_directory_as_sqlx_reads_it() {
        for store in ["sqlite", "postgres"] {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../migrations")
                .join(store);
            let from_dir = Migrator::new(dir.as_path())
                .await
                .expect("the directory resolves");
            let embedded = embedded_migrator(store);
            let expected: Vec<_> = from_dir.iter().map(summary).collect();
            let actual: Vec<_> = embedded.iter().map(summary).collect();
            assert!(
                expected.len() >= 5,
                "{store}: {} migrations",
                expected.len()
            );
            assert_eq!(actual, expected, "{store}");
        }
    }

    #[test]
    #[should_panic(expected = "no migrations embedded")]
    fn an_unknown_store_is_a_programming_error() {
        embedded_migrator("mysql");
    }
}
