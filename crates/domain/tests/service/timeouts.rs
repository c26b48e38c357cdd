//! Every WeChat call is bounded by the service, whatever the adapter: a call that never
//! answers ends as `Unavailable`, writes nothing, and leaves no exchange stuck in flight.

use crate::support::*;

/// A bound short enough for a test, long enough that an answering call never hits it.
fn bounded_config() -> ServiceConfig {
    ServiceConfig {
        session_ttl: ttl(),
        wechat_timeout: std::time::Duration::from_millis(100),
        ..ServiceConfig::default()
    }
}

fn is_timeout(e: &WeChatError) -> bool {
    matches!(e, WeChatError::Unavailable(why) if why.contains("timed out"))
}

#[tokio::test]
async fn a_stalled_exchange_is_unavailable_and_the_code_can_be_tried_again() {
    let mut m = Mocks::new();
    // The first call never answers; the second (the client trying again) does.
    let calls = Arc::new(Mutex::new(0u32));
    let answer = CodeSession {
        open_id: open_id("oStalled"),
        union_id: None,
        session_key: key(SESSION_KEY),
    };
    m.wechat
        .expect_code_to_session()
        .times(2)
        .returning(move |_| {
            let mut n = calls.lock().expect("not poisoned");
            *n += 1;
            let answer = answer.clone();
            if *n == 1 {
                Box::pin(std::future::pending())
            } else {
                Box::pin(async move { Ok(answer) })
            }
        });
    m.tokens
        .expect_mint()
        .times(1)
        .returning(|| Token::new("wxl_after-the-stall".into()));
    let stored = user("oStalled", Profile::default());
    let record = stored.clone();
    m.store.expect_login().times(1).returning(move |_| {
        let user = record.clone();
        Box::pin(async move {
            Ok(LoginRecord {
                user,
                is_new_user: true,
            })
        })
    });
    let service = m.service_with(bounded_config());
    let c = code("the-code");

    // Two callers of the stalled exchange: both are answered when the bound passes.
    let (first, second) = tokio::join!(service.login(&c), service.login(&c));
    for result in [first, second] {
        match result {
            Err(LoginError::WeChat(e)) => assert!(is_timeout(&e), "{e:?}"),
            other => panic!("expected a timeout, got {:?}", other.map(|o| o.user)),
        }
    }
    // The single flight forgot the stalled call: this one reaches WeChat again.
    let outcome = service
        .login(&c)
        .await
        .expect("the second exchange answers");
    assert_eq!(outcome.user, stored);
}

#[tokio::test]
async fn a_stalled_phone_number_call_is_unavailable_and_writes_nothing() {
    let mut m = Mocks::with_session(active_record());
    m.store
        .expect_touch_session()
        .returning(|_, _| Box::pin(async { Ok(()) }));
    m.store.expect_access_token().times(1).returning(|_, _, _| {
        Box::pin(async {
            Ok(StoredAccessToken {
                token: AccessToken::new("ACCESS".into()),
                expires_at: now() + Duration::hours(2),
                fetched_at: now(),
            })
        })
    });
    m.wechat
        .expect_phone_number()
        .times(1)
        .returning(|_, _| Box::pin(std::future::pending()));
    m.store.expect_set_phone_number().never();
    let service = m.service_with(bounded_config());
    let code = PhoneCode::parse("phone-code").expect("valid");
    match service.bind_phone(TOKEN, PhoneRequest::Code(code)).await {
        Err(PhoneError::WeChat(e)) => assert!(is_timeout(&e), "{e:?}"),
        other => panic!("expected a timeout, got {:?}", other.map(|o| o.user)),
    }
}

#[tokio::test]
async fn a_stalled_access_token_fetch_is_unavailable() {
    let mut m = Mocks::with_session(active_record());
    m.store
        .expect_touch_session()
        .returning(|_, _| Box::pin(async { Ok(()) }));
    // The store runs the fetch it is given, as a store with no token does.
    m.store
        .expect_access_token()
        .times(1)
        .returning(|_, _, fetch| Box::pin(async move { Ok(fetch().await?) }));
    m.wechat
        .expect_stable_access_token()
        .times(1)
        .returning(|| Box::pin(std::future::pending()));
    m.wechat.expect_phone_number().never();
    m.store.expect_set_phone_number().never();
    let service = m.service_with(bounded_config());
    let code = PhoneCode::parse("phone-code").expect("valid");
    match service.bind_phone(TOKEN, PhoneRequest::Code(code)).await {
        Err(PhoneError::WeChat(e)) => assert!(is_timeout(&e), "{e:?}"),
        other => panic!("expected a timeout, got {:?}", other.map(|o| o.user)),
    }
}
