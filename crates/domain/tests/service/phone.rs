//! `LoginService::bind_phone`: phone codes under the shared access token, and legacy data.

use crate::support::*;

const ACCESS: &str = "ACCESS_TOKEN_1";

fn phone_info() -> PhoneInfo {
    PhoneInfo {
        phone_number: PhoneNumber::parse("+86 13800138000").expect("valid"),
        pure_phone_number: "13800138000".into(),
        country_code: "86".into(),
    }
}

fn with_phone(user: User) -> User {
    User {
        phone_number: Some("+86 13800138000".into()),
        ..user
    }
}

/// The store hands out the shared token by running the fetch it is given (as a store whose row
/// is empty does), and counts how often it is asked.
fn store_runs_fetch(m: &mut Mocks, times: usize) {
    m.store
        .expect_access_token()
        .times(times)
        .returning(|app, fresh_until, fetch| {
            assert_eq!(*app, app_id());
            assert_eq!(
                fresh_until,
                now() + ServiceConfig::default().access_token_margin
            );
            Box::pin(async move { fetch().await.map_err(Into::into) })
        });
}

fn stable_token_answers(m: &mut Mocks, times: usize, tokens: &'static [&'static str]) {
    let calls = Arc::new(Mutex::new(0usize));
    m.wechat
        .expect_stable_access_token()
        .times(times)
        .returning(move || {
            let mut n = calls.lock().expect("not poisoned");
            let token = tokens[(*n).min(tokens.len() - 1)];
            *n += 1;
            Box::pin(async move {
                Ok(IssuedAccessToken {
                    token: AccessToken::new(token.into()),
                    expires_in: Duration::seconds(7200),
                })
            })
        });
}

fn phone_code(s: &str) -> PhoneCode {
    PhoneCode::parse(s).expect("valid")
}

#[tokio::test]
async fn a_phone_code_is_exchanged_under_one_access_token_for_many_calls() {
    let record = active_record();
    let mut m = Mocks::new();
    for _ in 0..2 {
        let r = record.clone();
        m.store.expect_find_session().returning(move |_, _| {
            let r = r.clone();
            Box::pin(async move { Ok(Some(r)) })
        });
    }
    store_runs_fetch(&mut m, 1);
    stable_token_answers(&mut m, 1, &[ACCESS]);
    m.wechat
        .expect_phone_number()
        .withf(|token, code| token.expose() == ACCESS && code.as_str() == "phone-code")
        .times(2)
        .returning(|_, _| Box::pin(async { Ok(phone_info()) }));
    let user_id = record.user.id;
    let updated = with_phone(record.user.clone());
    m.store
        .expect_set_phone_number()
        .withf(move |change| {
            change.user_id == user_id
                && change.phone_number.as_str() == "+86 13800138000"
                && change.now == now()
        })
        .times(2)
        .returning(move |_| {
            let u = updated.clone();
            Box::pin(async move { Ok(u) })
        });
    let service = m.service();
    for _ in 0..2 {
        let outcome = service
            .bind_phone(TOKEN, PhoneRequest::Code(phone_code("phone-code")))
            .await
            .expect("bound");
        assert_eq!(
            outcome.user.phone_number.as_deref(),
            Some("+86 13800138000")
        );
        assert_eq!(outcome.status, ProfileStatus::NeedsProfile);
    }
}

#[tokio::test]
async fn a_rejected_access_token_is_forgotten_and_the_call_made_once_more() {
    let mut m = Mocks::with_session(active_record());
    store_runs_fetch(&mut m, 2);
    stable_token_answers(&mut m, 2, &["OLD", "NEW"]);
    m.wechat
        .expect_phone_number()
        .withf(|token, _| token.expose() == "OLD")
        .times(1)
        .returning(|_, _| {
            Box::pin(async { Err(WeChatError::AccessTokenRejected("errcode 40001".into())) })
        });
    m.wechat
        .expect_phone_number()
        .withf(|token, _| token.expose() == "NEW")
        .times(1)
        .returning(|_, _| Box::pin(async { Ok(phone_info()) }));
    m.store
        .expect_forget_access_token()
        .withf(|app, token| *app == app_id() && token.expose() == "OLD")
        .times(1)
        .returning(|_, _| Box::pin(async { Ok(()) }));
    let updated = with_phone(active_record().user);
    m.store
        .expect_set_phone_number()
        .times(1)
        .returning(move |_| {
            let u = updated.clone();
            Box::pin(async move { Ok(u) })
        });
    m.service()
        .bind_phone(TOKEN, PhoneRequest::Code(phone_code("phone-code")))
        .await
        .expect("bound with the fresh token");
}

#[tokio::test]
async fn a_login_code_sent_as_a_phone_code_is_named_and_stores_nothing() {
    let mut m = Mocks::with_session(active_record());
    store_runs_fetch(&mut m, 1);
    stable_token_answers(&mut m, 1, &[ACCESS]);
    m.wechat
        .expect_phone_number()
        .times(1)
        .returning(|_, _| Box::pin(async { Err(WeChatError::InvalidCode) }));
    m.store.expect_set_phone_number().never();
    assert_eq!(
        m.service()
            .bind_phone(TOKEN, PhoneRequest::Code(phone_code("a-wx-login-code")))
            .await
            .map(|o| o.user),
        Err(PhoneError::InvalidPhoneCode)
    );
}

#[tokio::test]
async fn legacy_phone_data_decrypts_with_the_sessions_key() {
    let mut m = Mocks::with_session(active_record());
    m.wechat.expect_phone_number().never();
    m.store.expect_access_token().never();
    m.cipher
        .expect_decrypt_phone_number()
        .withf(|k, app, data| *k == key(SESSION_KEY) && *app == app_id() && *data == encrypted())
        .times(1)
        .returning(|_, _, _| Ok(phone_info()));
    let updated = with_phone(active_record().user);
    m.store
        .expect_set_phone_number()
        .times(1)
        .returning(move |_| {
            let u = updated.clone();
            Box::pin(async move { Ok(u) })
        });
    let outcome = m
        .service()
        .bind_phone(
            TOKEN,
            PhoneRequest::Encrypted {
                data: encrypted(),
                code: None,
            },
        )
        .await
        .expect("bound");
    assert_eq!(
        outcome.user.phone_number.as_deref(),
        Some("+86 13800138000")
    );

    let mut m = Mocks::with_session(active_record());
    m.cipher
        .expect_decrypt_phone_number()
        .returning(|_, _, _| Err(CipherError::DecryptFailed));
    m.store.expect_set_phone_number().never();
    assert_eq!(
        m.service()
            .bind_phone(
                TOKEN,
                PhoneRequest::Encrypted {
                    data: encrypted(),
                    code: None
                }
            )
            .await
            .map(|o| o.user),
        Err(PhoneError::Cipher(CipherError::DecryptFailed))
    );
}
