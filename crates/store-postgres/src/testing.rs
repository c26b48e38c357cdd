//! Throwaway databases for tests: each test gets a database of its own on a shared server, so
//! tests run in parallel without seeing each other's rows.
//!
//! Always compiled (it is small) so that other crates' tests (the end-to-end suite, the
//! contract suite) can use it without a feature of their own.

use sqlx::{AssertSqlSafe, Connection, PgConnection};
use uuid::Uuid;
use wxlogin_domain::StoreError;

use wxlogin_store_sql::Dialect as _;

use crate::PostgresBackend;

/// The variables naming the server tests run against, in the order they are read.
pub const URL_VARIABLES: [&str; 2] = ["WXLOGIN_TEST_POSTGRES_URL", "DATABASE_URL"];

/// Every database this module creates starts with this prefix.
pub const DATABASE_PREFIX: &str = "wxlogin_t_";

/// The admin URL of the test server: `WXLOGIN_TEST_POSTGRES_URL`, else `DATABASE_URL` if it
/// names a PostgreSQL server (it may name a SQLite file in a development setup).
pub fn admin_url_from_env() -> Option<String> {
    admin_url_from(|name| std::env::var(name).ok())
}

/// [`admin_url_from_env`], for tests that cannot run without a server: panics with a message
/// saying how to provide one. Tests never skip silently.
pub fn require_admin_url() -> String {
    admin_url_from_env().unwrap_or_else(|| {
        panic!(
            "these tests need a PostgreSQL server: set DATABASE_URL or \
             WXLOGIN_TEST_POSTGRES_URL to an admin URL such as \
             postgres://postgres@127.0.0.1:5432/postgres (the user must be allowed to create \
             databases), or run `cargo xtask test`, which starts a throwaway server"
        )
    })
}

fn admin_url_from(var: impl Fn(&str) -> Option<String>) -> Option<String> {
    let is_postgres = |url: &String| {
        let url = url.trim();
        url.starts_with("postgres://") || url.starts_with("postgresql://")
    };
    if let Some(url) = var(URL_VARIABLES[0]).filter(|u| !u.trim().is_empty()) {
        return Some(url);
    }
    var(URL_VARIABLES[1]).filter(is_postgres)
}

/// A database created for one test. Call [`FreshDatabase::drop_database`] at the end; if the
/// value is dropped instead (a test panicked, or the caller only kept it as a guard), `Drop`
/// removes the database on a thread and runtime of its own and waits for it, best effort.
#[derive(Debug)]
#[must_use = "the database is dropped with this value"]
pub struct FreshDatabase {
    admin_url: String,
    name: String,
    url: String,
    dropped: bool,
}

/// Creates a database with a unique name (`wxlogin_t_<uuid>`) on the server of `admin_url`,
/// whose user must be allowed to create databases. The schema is not applied: connecting a
/// store to [`FreshDatabase::url`] migrates it.
pub async fn fresh_database(admin_url: &str) -> Result<FreshDatabase, StoreError> {
    let name = format!("{DATABASE_PREFIX}{}", Uuid::now_v7().simple());
    let url = database_url(admin_url, &name)?;
    let mut admin = PgConnection::connect(admin_url)
        .await
        .map_err(PostgresBackend::map_err)?;
    // The name is made of the prefix and hex digits only, so quoting it is enough.
    let created = sqlx::query(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&mut admin)
        .await
        .map_err(PostgresBackend::map_err);
    admin.close().await.ok();
    created?;
    Ok(FreshDatabase {
        admin_url: admin_url.to_owned(),
        name,
        url,
        dropped: false,
    })
}

impl FreshDatabase {
    /// The URL of the new database (the admin URL with another database name).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Drops the database, disconnecting whoever is still connected to it.
    pub async fn drop_database(mut self) -> Result<(), StoreError> {
        self.dropped = true;
        drop_named(&self.admin_url, &self.name).await
    }
}

impl Drop for FreshDatabase {
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // `Drop` cannot await, and may run inside or outside a runtime: a thread with its own
        // runtime works in every case. Joining it makes sure the database is gone before the
        // test process can exit.
        let outcome = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| StoreError::Unexpected(format!("cannot start a runtime: {e}")))?
                .block_on(drop_named(&admin_url, &name))
        })
        .join();
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("could not drop test database {}: {e}", self.name),
            Err(_) => eprintln!(
                "could not drop test database {}: thread panicked",
                self.name
            ),
        }
    }
}

async fn drop_named(admin_url: &str, name: &str) -> Result<(), StoreError> {
    let mut admin = PgConnection::connect(admin_url)
        .await
        .map_err(PostgresBackend::map_err)?;
    // WITH (FORCE) (PostgreSQL 13+) disconnects pools the test left open.
    let dropped = sqlx::query(AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await
    .map_err(PostgresBackend::map_err);
    admin.close().await.ok();
    dropped.map(drop)
}

/// `admin_url` with its database name replaced by `name` (user, password, host and query
/// parameters such as `sslmode` are kept).
fn database_url(admin_url: &str, name: &str) -> Result<String, StoreError> {
    let mut url = url::Url::parse(admin_url)
        .map_err(|e| StoreError::Unexpected(format!("invalid Postgres admin URL: {e}")))?;
    if !matches!(url.scheme(), "postgres" | "postgresql") {
        return Err(StoreError::Unexpected(
            "the admin URL must start with postgres:// or postgresql://".into(),
        ));
    }
    url.set_path(&format!("/{name}"));
    Ok(url.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    #[test]
    fn the_dedicated_variable_wins() {
        let vars = env(&[
            ("WXLOGIN_TEST_POSTGRES_URL", "postgres://a@h/x"),
            ("DATABASE_URL", "postgres://b@h/y"),
        ]);
        assert_eq!(admin_url_from(vars).as_deref(), Some("postgres://a@h/x"));
    }

    #[test]
    fn database_url_counts_only_when_it_names_postgres() {
        let pg = env(&[("DATABASE_URL", "postgresql://b@h/y")]);
        assert_eq!(admin_url_from(pg).as_deref(), Some("postgresql://b@h/y"));
        let sqlite = env(&[("DATABASE_URL", "sqlite://wxlogin.db?mode=rwc")]);
        assert_eq!(admin_url_from(sqlite), None);
        assert_eq!(admin_url_from(env(&[])), None);
        let empty = env(&[("WXLOGIN_TEST_POSTGRES_URL", " ")]);
        assert_eq!(admin_url_from(empty), None);
    }

    #[test]
    fn database_urls_keep_everything_but_the_name() {
        assert_eq!(
            database_url(
                "postgres://u:p%40ss@db.example:6543/admin?sslmode=require",
                "wxlogin_t_1"
            )
            .ok()
            .as_deref(),
            Some("postgres://u:p%40ss@db.example:6543/wxlogin_t_1?sslmode=require")
        );
        assert_eq!(
            database_url("postgres://postgres@127.0.0.1:5432", "n")
                .ok()
                .as_deref(),
            Some("postgres://postgres@127.0.0.1:5432/n")
        );
        assert!(database_url("mysql://x@h/db", "n").is_err());
    }
}
