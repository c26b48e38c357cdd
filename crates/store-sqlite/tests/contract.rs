//! The store contract (`wxlogin-store-contract`) against the SQLite store, each case on a
//! fresh database file in a temporary directory.

use tempfile::TempDir;
use wxlogin_store_sqlite::Sqlite;

/// A fresh, empty store; the directory (and the file in it) lives as long as the guard.
async fn fresh_store() -> (Sqlite, TempDir) {
    let dir = TempDir::new().expect("temporary directory");
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("wxlogin.db").display()
    );
    let store = Sqlite::connect(&url).await.expect("store opens");
    (store, dir)
}

wxlogin_store_contract::store_contract_tests!(fresh_store);
