//! `LoginService::erase` and `purge_ended_sessions`: what the server forgets.

use crate::support::*;

#[tokio::test]
async fn erase_deletes_the_tokens_user() {
    let record = active_record();
    let mut m = Mocks::with_session(record.clone());
    let user_id = record.user.id;
    m.store
        .expect_erase_user()
        .withf(move |id| *id == user_id)
        .times(1)
        .returning(|_| Box::pin(async { Ok(()) }));
    assert_eq!(m.service().erase(TOKEN).await, Ok(()));
}

#[tokio::test]
async fn erase_of_an_already_erased_user_succeeds_but_outages_do_not() {
    for (answer, expected) in [
        (StoreError::NotFound, Ok(())),
        (
            StoreError::Unavailable("down".into()),
            Err(AuthError::Store(StoreError::Unavailable("down".into()))),
        ),
    ] {
        let mut m = Mocks::with_session(active_record());
        m.store.expect_erase_user().times(1).returning(move |_| {
            let answer = answer.clone();
            Box::pin(async move { Err(answer) })
        });
        assert_eq!(m.service().erase(TOKEN).await, expected);
    }
}

#[tokio::test]
async fn erase_with_an_unknown_token_erases_nothing() {
    let mut m = Mocks::new();
    m.store
        .expect_find_session()
        .returning(|_, _| Box::pin(async { Ok(None) }));
    m.store.expect_erase_user().never();
    assert_eq!(m.service().erase(TOKEN).await, Err(AuthError::InvalidToken));
}

#[tokio::test]
async fn purge_counts_from_now_and_the_idle_timeout() {
    let mut m = Mocks::new();
    m.store
        .expect_purge_sessions()
        .withf(|before| {
            before.now == now() && before.last_seen == now() - ServiceConfig::default().idle_timeout
        })
        .times(1)
        .returning(|_| Box::pin(async { Ok(3) }));
    assert_eq!(m.service().purge_ended_sessions().await, Ok(3));
}
