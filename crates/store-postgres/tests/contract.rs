//! The store contract (`wxlogin-store-contract`) against the Postgres store, each case in a
//! throwaway database on the server named by `WXLOGIN_TEST_POSTGRES_URL` or `DATABASE_URL`.

use wxlogin_store_postgres::Postgres;
use wxlogin_store_postgres::testing::{FreshDatabase, fresh_database, require_admin_url};

/// A fresh, empty, migrated store; its database is dropped with the guard.
async fn fresh_store() -> (Postgres, FreshDatabase) {
    let db = fresh_database(&require_admin_url())
        .await
        .unwrap_or_else(|e| panic!("cannot create a test database: {e}"));
    let store = Postgres::connect(db.url())
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the test database: {e}"));
    (store, db)
}

wxlogin_store_contract::store_contract_tests!(fresh_store);
