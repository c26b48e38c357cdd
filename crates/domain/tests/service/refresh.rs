//! `LoginService::refresh`: token rotation.

use crate::support::*;

#[tokio::test]
async fn refresh_mints_a_token_and_revokes_the_old_one_in_one_store_call() {
    let record = active_record();
    let mut m = Mocks::with_session(record.clone());
    m.tokens
        .expect_mint()
        .times(1)
        .returning(|| Token::new("wxl_rotated".into()));
    let seen = Arc::new(Mutex::new(None));
    let slot = Arc::clone(&seen);
    m.store
        .expect_refresh_session()
        .times(1)
        .returning(move |refresh| {
            *slot.lock().expect("not poisoned") = Some(refresh);
            Box::pin(async { Ok(()) })
        });
    let refreshed = m.service().refresh(TOKEN).await.expect("refresh succeeds");
    assert_eq!(refreshed.token.expose(), "wxl_rotated");
    assert_eq!(refreshed.expires_at, now() + ttl());
    let refresh = taken(&seen);
    assert_eq!(refresh.old_session_id, record.session.id);
    assert_ne!(refresh.new_session_id, record.session.id);
    assert_eq!(refresh.token_digest, fake_digest("wxl_rotated"));
    assert_eq!(refresh.now, now());
    assert_eq!(refresh.expires_at, now() + ttl());
}

#[tokio::test]
async fn a_refresh_that_lost_a_race_is_an_invalid_token() {
    for (answer, expected) in [
        (StoreError::NotFound, AuthError::InvalidToken),
        (
            StoreError::Unavailable("down".into()),
            AuthError::Store(StoreError::Unavailable("down".into())),
        ),
    ] {
        let mut m = Mocks::with_session(active_record());
        m.tokens
            .expect_mint()
            .returning(|| Token::new("wxl_rotated".into()));
        m.store
            .expect_refresh_session()
            .times(1)
            .returning(move |_| {
                let answer = answer.clone();
                Box::pin(async move { Err(answer) })
            });
        assert_eq!(
            m.service().refresh(TOKEN).await.map(|r| r.expires_at),
            Err(expected)
        );
    }
}

#[tokio::test]
async fn a_revoked_token_cannot_be_refreshed() {
    let user = user("oUser", Profile::default());
    let mut m = Mocks::with_session(SessionRecord {
        session: session_for(&user, now() + Duration::hours(1), Some(now())),
        user,
    });
    m.tokens.expect_mint().never();
    m.store.expect_refresh_session().never();
    assert_eq!(
        m.service().refresh(TOKEN).await.map(|r| r.expires_at),
        Err(AuthError::InvalidToken)
    );
}
