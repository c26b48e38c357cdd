//! `LoginService::ready`: readiness follows the store.

use crate::support::*;

#[tokio::test]
async fn ready_passes_the_stores_ping_through() {
    let mut m = Mocks::new();
    m.store
        .expect_ping()
        .times(1)
        .returning(|| Box::pin(async { Ok(()) }));
    assert_eq!(m.service().ready().await, Ok(()));

    let mut m = Mocks::new();
    m.store.expect_ping().times(1).returning(|| {
        Box::pin(async { Err(StoreError::Unavailable("connection refused".into())) })
    });
    assert_eq!(
        m.service().ready().await,
        Err(StoreError::Unavailable("connection refused".into()))
    );
}
