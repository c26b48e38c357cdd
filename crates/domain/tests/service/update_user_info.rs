//! `LoginService::update_user_info`: encrypted profiles, fresh codes and key rotation.

use crate::support::*;
use wxlogin_domain::{InvalidValue, Reason};

fn updated_user() -> User {
    User {
        updated_at: now(),
        ..user("oUser", complete_profile())
    }
}

#[tokio::test]
async fn without_a_code_the_sessions_key_decrypts() {
    let record = active_record();
    let mut m = Mocks::with_session(record.clone());
    m.wechat.expect_code_to_session().never();
    m.cipher
        .expect_decrypt_user_info()
        .withf(|k, app, data| *k == key(SESSION_KEY) && *app == app_id() && *data == encrypted())
        .times(1)
        .returning(|_, _, _| Ok(decrypted(Some("oUser"), complete_profile())));
    let seen = m.capture_update(Ok(updated_user()));

    let user = m
        .service()
        .update_user_info(TOKEN, request(None))
        .await
        .map(|o| o.user)
        .expect("update succeeds");

    assert_eq!(user, updated_user());
    let change = taken(&seen);
    assert_eq!(change.app_id, app_id());
    assert_eq!(change.user_id, record.user.id);
    assert_eq!(change.session_id, record.session.id);
    assert_eq!(change.profile, ProfileUpdate(complete_profile()));
    assert_eq!(change.union_id, None);
    assert_eq!(change.rotated_session_key, None);
    assert_eq!(change.now, now());
}

#[tokio::test]
async fn with_a_fresh_code_its_key_decrypts_and_replaces_the_sessions_key() {
    let mut m = Mocks::with_session(active_record());
    m.exchange_returns(
        "fresh-code",
        Ok(CodeSession {
            open_id: open_id("oUser"),
            union_id: None,
            session_key: key(FRESH_KEY),
        }),
    );
    m.cipher
        .expect_decrypt_user_info()
        .withf(|k, _, _| *k == key(FRESH_KEY))
        .times(1)
        .returning(|_, _, _| Ok(decrypted(Some("oUser"), complete_profile())));
    let seen = m.capture_update(Ok(updated_user()));

    m.service()
        .update_user_info(TOKEN, request(Some(code("fresh-code"))))
        .await
        .expect("update succeeds");

    let change = taken(&seen);
    assert_eq!(change.rotated_session_key, Some(key(FRESH_KEY)));
    assert_eq!(change.profile, ProfileUpdate(complete_profile()));
}

#[tokio::test]
async fn the_signature_is_checked_with_the_key_that_decrypts() {
    for (fresh_code, expected_key) in [(None, SESSION_KEY), (Some("fresh-code"), FRESH_KEY)] {
        let mut m = Mocks::with_session(active_record());
        if let Some(c) = fresh_code {
            m.exchange_returns(
                c,
                Ok(CodeSession {
                    open_id: open_id("oUser"),
                    union_id: None,
                    session_key: key(FRESH_KEY),
                }),
            );
        }
        m.cipher
            .expect_verify_signature()
            .withf(move |k, raw, sig| {
                *k == key(expected_key) && raw == r#"{"nickName":"小明"}"# && sig == "abc123"
            })
            .times(1)
            .returning(|_, _, _| Ok(()));
        m.cipher
            .expect_decrypt_user_info()
            .withf(move |k, _, _| *k == key(expected_key))
            .times(1)
            .returning(|_, _, _| Ok(decrypted(Some("oUser"), complete_profile())));
        m.capture_update(Ok(updated_user()));

        let req = EncryptedProfile {
            raw_data: Some(r#"{"nickName":"小明"}"#.into()),
            signature: Some("abc123".into()),
            ..request(fresh_code.map(code))
        };
        let result = m
            .service()
            .update_user_info(TOKEN, req)
            .await
            .map(|o| o.user);
        assert_eq!(result, Ok(updated_user()));
    }
}

#[tokio::test]
async fn a_fresh_key_is_kept_on_the_session_even_when_its_data_fails() {
    for failure in [CipherError::DecryptFailed, CipherError::SignatureMismatch] {
        let mut m = Mocks::with_session(active_record());
        m.exchange_returns(
            "fresh-code",
            Ok(CodeSession {
                open_id: open_id("oUser"),
                union_id: None,
                session_key: key(FRESH_KEY),
            }),
        );
        let fail = failure.clone();
        m.cipher
            .expect_decrypt_user_info()
            .withf(|k, _, _| *k == key(FRESH_KEY))
            .returning(move |_, _, _| Err(fail.clone()));
        let fail = failure.clone();
        m.cipher
            .expect_verify_signature()
            .returning(move |_, _, _| match &fail {
                CipherError::SignatureMismatch => Err(CipherError::SignatureMismatch),
                _ => Ok(()),
            });
        m.store
            .expect_rotate_session_key()
            .withf(|id, k| *id == active_record().session.id && *k == key(FRESH_KEY))
            .times(1)
            .returning(|_, _| Box::pin(async { Ok(()) }));
        m.update_never();

        let req = EncryptedProfile {
            raw_data: Some("{}".into()),
            signature: Some("00".into()),
            ..request(Some(code("fresh-code")))
        };
        let result = m
            .service()
            .update_user_info(TOKEN, req)
            .await
            .map(|o| o.user);
        assert_eq!(result, Err(UpdateUserInfoError::Cipher(failure)));
    }
}

#[tokio::test]
async fn without_a_fresh_code_a_decrypt_failure_rotates_nothing() {
    let mut m = Mocks::with_session(active_record());
    m.cipher
        .expect_decrypt_user_info()
        .times(1)
        .returning(|_, _, _| Err(CipherError::DecryptFailed));
    m.store.expect_rotate_session_key().never();
    m.update_never();

    let result = m
        .service()
        .update_user_info(TOKEN, request(None))
        .await
        .map(|o| o.user);
    assert_eq!(
        result,
        Err(UpdateUserInfoError::Cipher(CipherError::DecryptFailed))
    );
}

#[tokio::test]
async fn a_fresh_code_of_another_user_is_refused_and_nothing_is_stored() {
    let mut m = Mocks::with_session(active_record());
    m.exchange_returns(
        "fresh-code",
        Ok(CodeSession {
            open_id: open_id("oIntruder"),
            union_id: None,
            session_key: key(FRESH_KEY),
        }),
    );
    m.cipher.expect_decrypt_user_info().never();
    m.update_never();

    let result = m
        .service()
        .update_user_info(TOKEN, request(Some(code("fresh-code"))))
        .await;
    assert_eq!(result, Err(UpdateUserInfoError::CodeForAnotherUser));
}

#[tokio::test]
async fn a_failed_fresh_code_exchange_is_a_wechat_error() {
    for error in all_wechat_errors() {
        let mut m = Mocks::with_session(active_record());
        m.exchange_returns("fresh-code", Err(error.clone()));
        m.cipher.expect_decrypt_user_info().never();
        m.update_never();

        let result = m
            .service()
            .update_user_info(TOKEN, request(Some(code("fresh-code"))))
            .await;
        assert_eq!(result, Err(UpdateUserInfoError::WeChat(error)));
    }
}

#[tokio::test]
async fn raw_data_and_signature_must_come_together() {
    let halves = [
        (Some("{}".to_owned()), None),
        (None, Some("abc123".to_owned())),
    ];
    for (raw_data, signature) in halves {
        let mut m = Mocks::with_session(active_record());
        m.wechat.expect_code_to_session().never();
        m.cipher.expect_verify_signature().never();
        m.cipher.expect_decrypt_user_info().never();
        m.update_never();

        let req = EncryptedProfile {
            raw_data,
            signature,
            ..request(Some(code("fresh-code")))
        };
        let result = m
            .service()
            .update_user_info(TOKEN, req)
            .await
            .map(|o| o.user);
        assert!(
            matches!(result, Err(UpdateUserInfoError::InvalidRequest(_))),
            "got {result:?}"
        );
    }
}

#[tokio::test]
async fn a_signature_mismatch_stores_nothing() {
    let mut m = Mocks::with_session(active_record());
    m.cipher
        .expect_verify_signature()
        .times(1)
        .returning(|_, _, _| Err(CipherError::SignatureMismatch));
    m.cipher.expect_decrypt_user_info().never();
    m.update_never();

    let req = EncryptedProfile {
        raw_data: Some("{}".into()),
        signature: Some("0000".into()),
        ..request(None)
    };
    let result = m
        .service()
        .update_user_info(TOKEN, req)
        .await
        .map(|o| o.user);
    assert_eq!(
        result,
        Err(UpdateUserInfoError::Cipher(CipherError::SignatureMismatch))
    );
}

#[tokio::test]
async fn cipher_failures_store_nothing() {
    for error in [
        CipherError::DecryptFailed,
        CipherError::InvalidInput(InvalidValue::new("iv", Reason::NotOneBlock)),
    ] {
        let mut m = Mocks::with_session(active_record());
        let answer = error.clone();
        m.cipher
            .expect_decrypt_user_info()
            .times(1)
            .returning(move |_, _, _| Err(answer.clone()));
        m.update_never();

        let result = m
            .service()
            .update_user_info(TOKEN, request(None))
            .await
            .map(|o| o.user);
        assert_eq!(result, Err(UpdateUserInfoError::Cipher(error)));
    }
}

#[tokio::test]
async fn decrypted_data_of_another_openid_is_a_decrypt_failure() {
    let mut m = Mocks::with_session(active_record());
    m.cipher
        .expect_decrypt_user_info()
        .times(1)
        .returning(|_, _, _| Ok(decrypted(Some("oSomeoneElse"), complete_profile())));
    m.update_never();

    let result = m
        .service()
        .update_user_info(TOKEN, request(None))
        .await
        .map(|o| o.user);
    assert_eq!(
        result,
        Err(UpdateUserInfoError::Cipher(CipherError::DecryptFailed))
    );
}

#[tokio::test]
async fn a_fresh_key_is_kept_even_when_its_data_names_another_openid() {
    let mut m = Mocks::with_session(active_record());
    m.exchange_returns(
        "fresh-code",
        Ok(CodeSession {
            open_id: open_id("oUser"),
            union_id: None,
            session_key: key(FRESH_KEY),
        }),
    );
    m.cipher
        .expect_decrypt_user_info()
        .times(1)
        .returning(|_, _, _| Ok(decrypted(Some("oSomeoneElse"), complete_profile())));
    m.store
        .expect_rotate_session_key()
        .withf(|_, k| *k == key(FRESH_KEY))
        .times(1)
        .returning(|_, _| Box::pin(async { Ok(()) }));
    m.update_never();

    let result = m
        .service()
        .update_user_info(TOKEN, request(Some(code("fresh-code"))))
        .await;
    assert_eq!(
        result,
        Err(UpdateUserInfoError::Cipher(CipherError::DecryptFailed))
    );
}

#[tokio::test]
async fn a_session_revoked_before_its_fresh_key_is_kept_is_an_invalid_token() {
    let mut m = Mocks::with_session(active_record());
    m.exchange_returns(
        "fresh-code",
        Ok(CodeSession {
            open_id: open_id("oUser"),
            union_id: None,
            session_key: key(FRESH_KEY),
        }),
    );
    m.cipher
        .expect_decrypt_user_info()
        .times(1)
        .returning(|_, _, _| Err(CipherError::DecryptFailed));
    m.store
        .expect_rotate_session_key()
        .times(1)
        .returning(|_, _| Box::pin(async { Err(StoreError::NotFound) }));
    m.update_never();

    let result = m
        .service()
        .update_user_info(TOKEN, request(Some(code("fresh-code"))))
        .await;
    assert_eq!(
        result,
        Err(UpdateUserInfoError::Auth(AuthError::InvalidToken))
    );
}

#[tokio::test]
async fn decrypted_data_without_an_openid_is_accepted_and_its_unionid_stored() {
    let mut m = Mocks::with_session(active_record());
    m.cipher
        .expect_decrypt_user_info()
        .times(1)
        .returning(|_, _, _| {
            Ok(DecryptedUserInfo {
                union_id: Some(union_id("uUnion")),
                ..decrypted(None, complete_profile())
            })
        });
    let seen = m.capture_update(Ok(updated_user()));

    let result = m
        .service()
        .update_user_info(TOKEN, request(None))
        .await
        .map(|o| o.user);
    assert_eq!(result, Ok(updated_user()));
    assert_eq!(taken(&seen).union_id, Some(union_id("uUnion")));
}

#[tokio::test]
async fn wechat_placeholders_never_overwrite_the_profile() {
    let mut m = Mocks::with_session(active_record());
    m.cipher
        .expect_decrypt_user_info()
        .times(1)
        .returning(|_, _, _| {
            Ok(decrypted(
                Some("oUser"),
                Profile {
                    nick_name: Some(NickName::parse(PLACEHOLDER_NICKNAME).expect("valid")),
                    avatar_url: Some(AvatarUrl::parse(PLACEHOLDER_AVATAR).expect("valid")),
                    gender: Some(Gender::Female),
                    city: Some(ProfileText::place("city", "Shenzhen").expect("valid")),
                    ..Profile::default()
                },
            ))
        });
    let seen = m.capture_update(Ok(updated_user()));

    m.service()
        .update_user_info(TOKEN, request(None))
        .await
        .map(|o| o.user)
        .expect("update succeeds");

    let change = taken(&seen);
    assert_eq!(change.profile.0.nick_name, None);
    assert_eq!(change.profile.0.avatar_url, None);
    assert_eq!(change.profile.0.gender, Some(Gender::Female));
    assert_eq!(
        change.profile.0.city.as_ref().map(ProfileText::as_str),
        Some("Shenzhen")
    );
}

#[tokio::test]
async fn anonymised_unknown_gender_never_overwrites_the_profile() {
    let mut m = Mocks::with_session(active_record());
    m.cipher
        .expect_decrypt_user_info()
        .times(1)
        .returning(|_, _, _| {
            Ok(decrypted(
                Some("oUser"),
                Profile {
                    nick_name: Some(NickName::parse("Band").expect("valid")),
                    gender: Some(Gender::Unknown),
                    ..Profile::default()
                },
            ))
        });
    let seen = m.capture_update(Ok(updated_user()));

    m.service()
        .update_user_info(TOKEN, request(None))
        .await
        .map(|o| o.user)
        .expect("update succeeds");

    let change = taken(&seen);
    assert_eq!(change.profile.0.gender, None);
    assert_eq!(
        change.profile.0.nick_name.as_ref().map(NickName::as_str),
        Some("Band")
    );
}

#[tokio::test]
async fn a_user_gone_from_the_store_is_an_invalid_token() {
    let mut m = Mocks::with_session(active_record());
    m.cipher
        .expect_decrypt_user_info()
        .times(1)
        .returning(|_, _, _| Ok(decrypted(Some("oUser"), complete_profile())));
    m.capture_update(Err(StoreError::NotFound));

    let result = m
        .service()
        .update_user_info(TOKEN, request(None))
        .await
        .map(|o| o.user);
    assert_eq!(
        result,
        Err(UpdateUserInfoError::Auth(AuthError::InvalidToken))
    );
}

#[tokio::test]
async fn other_store_errors_propagate_from_update_user_info() {
    for error in [
        StoreError::Unavailable("pool timed out".into()),
        StoreError::Unexpected("disk I/O error".into()),
    ] {
        let mut m = Mocks::with_session(active_record());
        m.cipher
            .expect_decrypt_user_info()
            .times(1)
            .returning(|_, _, _| Ok(decrypted(Some("oUser"), complete_profile())));
        m.capture_update(Err(error.clone()));

        let result = m
            .service()
            .update_user_info(TOKEN, request(None))
            .await
            .map(|o| o.user);
        assert_eq!(result, Err(UpdateUserInfoError::Store(error)));
    }
}

#[tokio::test]
async fn update_user_info_needs_an_active_session() {
    let mut record = active_record();
    record.session.expires_at = now() - Duration::minutes(1);
    let mut m = Mocks::with_session(record);
    m.wechat.expect_code_to_session().never();
    m.cipher.expect_decrypt_user_info().never();
    m.update_never();

    let result = m
        .service()
        .update_user_info(TOKEN, request(Some(code("fresh-code"))))
        .await;
    assert_eq!(
        result,
        Err(UpdateUserInfoError::Auth(AuthError::TokenExpired))
    );

    let mut m = Mocks::new();
    m.store.expect_find_session().never();
    m.update_never();
    let result = m
        .service()
        .update_user_info("not-ours", request(None))
        .await
        .map(|o| o.user);
    assert_eq!(
        result,
        Err(UpdateUserInfoError::Auth(AuthError::InvalidToken))
    );
}

#[tokio::test]
async fn the_profile_status_is_the_state_machines_after_the_update() {
    // The session's user needs a profile; the update completes it (or, with a placeholder
    // nickname stored, does not).
    for (stored, expected) in [
        (updated_user(), ProfileStatus::Complete),
        (
            User {
                profile: Profile {
                    nick_name: NickName::parse(PLACEHOLDER_NICKNAME).ok(),
                    ..complete_profile()
                },
                ..updated_user()
            },
            ProfileStatus::NeedsProfile,
        ),
    ] {
        let mut m = Mocks::with_session(active_record());
        m.cipher
            .expect_decrypt_user_info()
            .times(1)
            .returning(|_, _, _| Ok(decrypted(Some("oUser"), complete_profile())));
        m.capture_update(Ok(stored.clone()));
        let outcome = m
            .service()
            .update_user_info(TOKEN, request(None))
            .await
            .expect("update succeeds");
        assert_eq!((outcome.user, outcome.status), (stored, expected));
    }
}

#[tokio::test]
async fn a_store_that_updates_another_user_is_an_unexpected_error() {
    let mut m = Mocks::with_session(active_record());
    m.cipher
        .expect_decrypt_user_info()
        .times(1)
        .returning(|_, _, _| Ok(decrypted(Some("oUser"), complete_profile())));
    let other = User {
        id: UserId::from_uuid(Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0bad)),
        ..updated_user()
    };
    m.capture_update(Ok(other));
    let result = m.service().update_user_info(TOKEN, request(None)).await;
    assert!(
        matches!(result, Err(UpdateUserInfoError::Unexpected(_))),
        "{result:?}"
    );
}
