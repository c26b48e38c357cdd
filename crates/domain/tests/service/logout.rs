//! `LoginService::logout`: revocation of the token's session.

use crate::support::*;

#[tokio::test]
async fn logout_revokes_the_tokens_session_now() {
    let mut m = Mocks::with_session(active_record());
    m.store
        .expect_revoke_session()
        .withf(|id, at| *id == active_record().session.id && *at == now())
        .times(1)
        .returning(|_, _| Box::pin(async { Ok(()) }));
    assert_eq!(m.service().logout(TOKEN).await, Ok(()));
}

#[tokio::test]
async fn logout_of_a_concurrently_removed_session_still_succeeds_but_outages_do_not() {
    for (store_answer, expected) in [
        (Err(StoreError::NotFound), Ok(())),
        (
            Err(StoreError::Unavailable("down".into())),
            Err(AuthError::Store(StoreError::Unavailable("down".into()))),
        ),
    ] {
        let mut m = Mocks::with_session(active_record());
        m.store
            .expect_revoke_session()
            .times(1)
            .returning(move |_, _| {
                let answer = store_answer.clone();
                Box::pin(async move { answer })
            });
        assert_eq!(m.service().logout(TOKEN).await, expected);
    }
}

#[tokio::test]
async fn logout_with_an_unknown_token_revokes_nothing() {
    let mut m = Mocks::new();
    m.store
        .expect_find_session()
        .times(1)
        .returning(|_, _| Box::pin(async { Ok(None) }));
    m.store.expect_revoke_session().never();
    assert_eq!(
        m.service().logout(TOKEN).await,
        Err(AuthError::InvalidToken)
    );
}

#[tokio::test]
async fn logout_of_an_expired_or_revoked_session_revokes_nothing() {
    let user = user("oUser", Profile::default());
    for (session, expected) in [
        (
            session_for(&user, now() - Duration::seconds(1), None),
            AuthError::TokenExpired,
        ),
        (
            session_for(&user, now() + Duration::hours(1), Some(now())),
            AuthError::InvalidToken,
        ),
    ] {
        let mut m = Mocks::with_session(SessionRecord {
            session,
            user: user.clone(),
        });
        m.store.expect_revoke_session().never();
        assert_eq!(m.service().logout(TOKEN).await, Err(expected));
    }
}
