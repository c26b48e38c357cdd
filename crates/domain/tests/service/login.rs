//! `LoginService::login`: the code exchange, find-or-create and the new session.

use crate::support::*;

/// Sets up a successful exchange and mint, and records the `NewLogin` the store receives.
fn login_mocks(
    exchanged: CodeSession,
    answer: Result<LoginRecord, StoreError>,
) -> (Mocks, Arc<Mutex<Option<NewLogin>>>) {
    let mut m = Mocks::new();
    m.exchange_returns("the-code", Ok(exchanged));
    m.tokens
        .expect_mint()
        .times(1)
        .returning(|| Token::new("wxl_minted-token".into()));
    let seen = Arc::new(Mutex::new(None));
    let slot = Arc::clone(&seen);
    m.store.expect_login().times(1).returning(move |login| {
        *slot.lock().expect("not poisoned") = Some(login);
        let answer = answer.clone();
        Box::pin(async move { answer })
    });
    (m, seen)
}

#[tokio::test]
async fn login_of_a_new_user_stores_the_exchange_and_the_token_digest() {
    let exchanged = CodeSession {
        open_id: open_id("oNewUser"),
        union_id: Some(union_id("uUnion")),
        session_key: key(SESSION_KEY),
    };
    let stored = User {
        union_id: Some(union_id("uUnion")),
        ..user("oNewUser", Profile::default())
    };
    let (m, seen) = login_mocks(
        exchanged,
        Ok(LoginRecord {
            user: stored.clone(),
            is_new_user: true,
        }),
    );

    let outcome = m
        .service()
        .login(&code("the-code"))
        .await
        .expect("login succeeds");

    let login = taken(&seen);
    assert_eq!(login.app_id, app_id());
    assert_eq!(login.open_id, open_id("oNewUser"));
    assert_eq!(login.union_id, Some(union_id("uUnion")));
    assert_eq!(login.session_key, key(SESSION_KEY));
    assert_eq!(login.token_digest, fake_digest("wxl_minted-token"));
    assert_eq!(login.now, now());
    assert_eq!(login.expires_at, now() + ttl());
    assert_ne!(login.new_user_id.as_uuid(), login.session_id.as_uuid());

    assert_eq!(outcome.token.expose(), "wxl_minted-token");
    assert_eq!(outcome.expires_at, now() + ttl());
    assert!(outcome.is_new_user);
    assert_eq!(outcome.user, stored);
    assert_eq!(outcome.status, ProfileStatus::NeedsProfile);
}

#[tokio::test]
async fn login_of_an_existing_user_with_a_complete_profile() {
    let exchanged = CodeSession {
        open_id: open_id("oKnown"),
        union_id: None,
        session_key: key(FRESH_KEY),
    };
    let stored = user("oKnown", complete_profile());
    let (m, seen) = login_mocks(
        exchanged,
        Ok(LoginRecord {
            user: stored.clone(),
            is_new_user: false,
        }),
    );

    let outcome = m
        .service()
        .login(&code("the-code"))
        .await
        .expect("login succeeds");

    let login = taken(&seen);
    assert_eq!(login.open_id, open_id("oKnown"));
    assert_eq!(login.union_id, None);
    assert_eq!(login.session_key, key(FRESH_KEY));
    assert_eq!(login.token_digest, fake_digest("wxl_minted-token"));
    assert_eq!(login.expires_at, now() + ttl());

    assert_eq!(outcome.token.expose(), "wxl_minted-token");
    assert!(!outcome.is_new_user);
    assert_eq!(outcome.user, stored);
    assert_eq!(outcome.status, ProfileStatus::Complete);
}

#[tokio::test]
async fn login_with_placeholder_profile_still_needs_a_profile() {
    let placeholder = Profile {
        nick_name: Some(NickName::parse(PLACEHOLDER_NICKNAME).expect("valid")),
        avatar_url: Some(AvatarUrl::parse(PLACEHOLDER_AVATAR).expect("valid")),
        ..Profile::default()
    };
    let exchanged = CodeSession {
        open_id: open_id("oKnown"),
        union_id: None,
        session_key: key(SESSION_KEY),
    };
    let (m, _) = login_mocks(
        exchanged,
        Ok(LoginRecord {
            user: user("oKnown", placeholder),
            is_new_user: false,
        }),
    );

    let outcome = m
        .service()
        .login(&code("the-code"))
        .await
        .expect("login succeeds");
    assert_eq!(outcome.status, ProfileStatus::NeedsProfile);
}

#[tokio::test]
async fn every_wechat_error_fails_the_login_before_the_store() {
    for error in all_wechat_errors() {
        let mut m = Mocks::new();
        m.exchange_returns("the-code", Err(error.clone()));
        m.login_never();
        m.tokens.expect_mint().never();

        let result = m.service().login(&code("the-code")).await;
        assert_eq!(result.err(), Some(LoginError::WeChat(error)));
    }
}

#[tokio::test]
async fn store_errors_propagate_from_login() {
    for error in all_store_errors() {
        let exchanged = CodeSession {
            open_id: open_id("oUser"),
            union_id: None,
            session_key: key(SESSION_KEY),
        };
        let (m, _) = login_mocks(exchanged, Err(error.clone()));

        let result = m.service().login(&code("the-code")).await;
        assert_eq!(result.err(), Some(LoginError::Store(error)));
    }
}

#[tokio::test]
async fn a_store_known_to_be_down_refuses_the_login_before_the_code_is_spent() {
    let mut m = Mocks::new();
    let down = StoreError::Unavailable("not migrated yet".into());
    m.store = MockUserStore::new();
    let answer = down.clone();
    m.store
        .expect_available()
        .times(1)
        .returning(move || Err(answer.clone()));
    m.wechat.expect_code_to_session().never();
    m.login_never();
    m.tokens.expect_mint().never();

    let result = m.service().login(&code("the-code")).await;
    assert_eq!(result.err(), Some(LoginError::Unavailable(down)));
}

#[tokio::test]
async fn a_store_that_binds_another_openid_is_an_unexpected_error() {
    let exchanged = CodeSession {
        open_id: open_id("oAsked"),
        union_id: None,
        session_key: key(SESSION_KEY),
    };
    let (m, _) = login_mocks(
        exchanged,
        Ok(LoginRecord {
            user: user("oSomeoneElse", complete_profile()),
            is_new_user: false,
        }),
    );

    let result = m.service().login(&code("the-code")).await;
    assert!(
        matches!(result, Err(LoginError::Unexpected(_))),
        "got {result:?}"
    );
}

#[tokio::test]
async fn the_same_code_twice_at_once_is_exchanged_once_and_signs_in_both() {
    let mut m = Mocks::new();
    let exchanged = CodeSession {
        open_id: open_id("oTwice"),
        union_id: None,
        session_key: key(SESSION_KEY),
    };
    let answer = exchanged.clone();
    m.wechat
        .expect_code_to_session()
        .times(1)
        .returning(move |_| {
            let answer = answer.clone();
            Box::pin(async move {
                // Still in flight when the second request arrives.
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                Ok(answer)
            })
        });
    let minted = Arc::new(Mutex::new(0u32));
    let counter = Arc::clone(&minted);
    m.tokens.expect_mint().times(2).returning(move || {
        let mut n = counter.lock().expect("not poisoned");
        *n += 1;
        Token::new(format!("wxl_token-{n}"))
    });
    let stored = user("oTwice", Profile::default());
    let record = stored.clone();
    m.store.expect_login().times(2).returning(move |login| {
        assert_eq!(login.open_id, open_id("oTwice"));
        assert_eq!(login.session_key, key(SESSION_KEY));
        let user = record.clone();
        Box::pin(async move {
            Ok(LoginRecord {
                user,
                is_new_user: false,
            })
        })
    });
    let service = m.service();
    let c = code("the-code");
    let (first, second) = tokio::join!(service.login(&c), service.login(&c));
    let (first, second) = (first.expect("first"), second.expect("second"));
    assert_eq!(first.user, stored);
    assert_eq!(second.user, stored);
    assert_ne!(
        first.token.expose(),
        second.token.expose(),
        "a session each"
    );
}

#[tokio::test]
async fn a_code_sent_again_after_its_exchange_ended_is_exchanged_again() {
    let mut m = Mocks::new();
    m.wechat
        .expect_code_to_session()
        .times(2)
        .returning(|_| Box::pin(async { Err(WeChatError::CodeUsed) }));
    m.login_never();
    let service = m.service();
    for _ in 0..2 {
        assert_eq!(
            service.login(&code("the-code")).await.map(|o| o.user),
            Err(LoginError::WeChat(WeChatError::CodeUsed))
        );
    }
}
