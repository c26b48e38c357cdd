//! `LoginService::authenticate`: bearer tokens to active sessions.

use crate::support::*;

#[tokio::test]
async fn tokens_we_never_issued_are_rejected_without_the_store() {
    let too_long = format!("{}{}", Token::PREFIX, "a".repeat(300));
    for token in [
        "",
        "abc",
        "wxl",
        "WXL_abc",
        "Bearer wxl_abc",
        " wxl_abc",
        too_long.as_str(),
    ] {
        let mut m = Mocks::new();
        m.store.expect_find_session().never();
        let result = m.service().authenticate(token).await;
        assert_eq!(
            result.err(),
            Some(AuthError::InvalidToken),
            "token {token:?}"
        );
    }
}

#[tokio::test]
async fn an_unknown_digest_is_an_invalid_token() {
    let mut m = Mocks::new();
    m.store
        .expect_find_session()
        .withf(|app, digest| *app == app_id() && *digest == fake_digest("wxl_unknown"))
        .times(1)
        .returning(|_, _| Box::pin(async { Ok(None) }));

    let result = m.service().authenticate("wxl_unknown").await;
    assert_eq!(result.err(), Some(AuthError::InvalidToken));
}

#[tokio::test]
async fn an_expired_session_is_token_expired() {
    for expires_at in [
        now(),
        now() - Duration::seconds(1),
        now() - Duration::days(40),
    ] {
        let mut record = active_record();
        record.session.expires_at = expires_at;
        let result = Mocks::with_session(record)
            .service()
            .authenticate(TOKEN)
            .await;
        assert_eq!(
            result.err(),
            Some(AuthError::TokenExpired),
            "expires_at {expires_at}"
        );
    }
}

#[tokio::test]
async fn a_revoked_session_is_an_invalid_token() {
    // Revoked while still within its lifetime, revoked just now, and revoked after expiry.
    let cases = [
        (now() + Duration::hours(1), now() - Duration::minutes(5)),
        (now() + Duration::hours(1), now()),
        (now() - Duration::hours(1), now() - Duration::hours(2)),
    ];
    for (expires_at, revoked_at) in cases {
        let mut record = active_record();
        record.session.expires_at = expires_at;
        record.session.revoked_at = Some(revoked_at);
        let result = Mocks::with_session(record)
            .service()
            .authenticate(TOKEN)
            .await;
        assert_eq!(result.err(), Some(AuthError::InvalidToken));
    }
}

#[tokio::test]
async fn an_active_session_authenticates() {
    let record = active_record();
    let result = Mocks::with_session(record.clone())
        .service()
        .authenticate(TOKEN)
        .await
        .expect("active session");
    assert_eq!(result.session, record.session);
    assert_eq!(result.user, record.user);
    assert_eq!(result.status, ProfileStatus::NeedsProfile);

    let complete = User {
        profile: complete_profile(),
        ..record.user.clone()
    };
    let result = Mocks::with_session(SessionRecord {
        user: complete,
        ..record
    })
    .service()
    .authenticate(TOKEN)
    .await
    .expect("active session");
    assert_eq!(result.status, ProfileStatus::Complete);
}

#[tokio::test]
async fn store_errors_propagate_from_authenticate() {
    for error in all_store_errors() {
        let mut m = Mocks::new();
        let answer = error.clone();
        m.store
            .expect_find_session()
            .times(1)
            .returning(move |_, _| {
                let answer = answer.clone();
                Box::pin(async move { Err(answer) })
            });
        let result = m.service().authenticate(TOKEN).await;
        assert_eq!(result.err(), Some(AuthError::Store(error)));
    }
}

#[tokio::test]
async fn use_is_recorded_at_most_once_per_touch_interval() {
    let user = user("oUser", Profile::default());
    let interval = ServiceConfig::default().touch_interval;
    for (seen_ago, touches) in [
        (interval - Duration::seconds(1), 0),
        (interval, 1),
        (Duration::hours(5), 1),
    ] {
        let session = Session {
            last_seen_at: now() - seen_ago,
            ..session_for(&user, now() + Duration::hours(1), None)
        };
        let id = session.id;
        let mut m = Mocks::with_session(SessionRecord {
            session,
            user: user.clone(),
        });
        m.store
            .expect_touch_session()
            .withf(move |sid, at| *sid == id && *at == now())
            .times(touches)
            .returning(|_, _| Box::pin(async { Ok(()) }));
        m.service().authenticate(TOKEN).await.expect("active");
    }
}

#[tokio::test]
async fn a_session_idle_past_the_timeout_is_token_expired() {
    let user = user("oUser", Profile::default());
    let session = Session {
        last_seen_at: now() - ServiceConfig::default().idle_timeout,
        ..session_for(&user, now() + Duration::hours(1), None)
    };
    let mut m = Mocks::with_session(SessionRecord { session, user });
    m.store.expect_touch_session().never();
    assert_eq!(
        m.service().authenticate(TOKEN).await.map(|a| a.user),
        Err(AuthError::TokenExpired)
    );
}
