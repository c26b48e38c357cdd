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
        .returning(|app, need, fetch| {
            assert_eq!(*app, app_id());
            let config = ServiceConfig::default();
            assert_eq!(
                need,
                AccessTokenNeed {
                    now: now(),
                    fresh_until: now() + config.access_token_margin,
                    fetched_after: now() - config.access_token_refetch_interval,
                    lease: config.access_token_lease,
                }
            );
            Box::pin(async move {
                let fetched = fetch().await?;
                assert_eq!(fetched.fetched_at, now(), "stamped before the call");
                Ok(fetched)
            })
        });
}

fn stable_token_answers(m: &mut Mocks, times: usize, tokens: &'static [&'static str]) {
    stable_token_lasting(m, times, tokens, Duration::seconds(7200));
}

/// `stable_token` answering `tokens` in turn (the last one again and again), each with
/// `expires_in` left to live.
fn stable_token_lasting(
    m: &mut Mocks,
    times: usize,
    tokens: &'static [&'static str],
    expires_in: Duration,
) {
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
                    expires_in,
                })
            })
        });
}

fn phone_code(s: &str) -> PhoneCode {
    PhoneCode::parse(s).expect("valid")
}

/// The store answers `find_session` with `record`, for any number of requests.
fn sessions_found(m: &mut Mocks, record: &SessionRecord) {
    let r = record.clone();
    m.store.expect_find_session().returning(move |_, _| {
        let r = r.clone();
        Box::pin(async move { Ok(Some(r)) })
    });
}

/// The store records the number, for any number of requests.
fn numbers_recorded(m: &mut Mocks) {
    let updated = with_phone(active_record().user);
    m.store.expect_set_phone_number().returning(move |_| {
        let u = updated.clone();
        Box::pin(async move { Ok(u) })
    });
}

#[tokio::test]
async fn a_phone_code_is_exchanged_under_one_access_token_for_many_calls() {
    let record = active_record();
    let mut m = Mocks::new();
    sessions_found(&mut m, &record);
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

/// `stable_token` hands out a token inside the margin with what is left of its life (here two
/// minutes of a five-minute margin): it is used, not fetched again on every call.
#[tokio::test]
async fn a_token_handed_out_inside_the_margin_is_fetched_once_not_per_call() {
    let mut m = Mocks::new();
    sessions_found(&mut m, &active_record());
    store_runs_fetch(&mut m, 1);
    stable_token_lasting(&mut m, 1, &[ACCESS], Duration::minutes(2));
    m.wechat
        .expect_phone_number()
        .withf(|token, _| token.expose() == ACCESS)
        .times(5)
        .returning(|_, _| Box::pin(async { Ok(phone_info()) }));
    numbers_recorded(&mut m);
    let service = m.service();
    for _ in 0..5 {
        service
            .bind_phone(TOKEN, PhoneRequest::Code(phone_code("phone-code")))
            .await
            .expect("bound");
    }
}

/// After a rejection the token is fetched once more; should WeChat hand back the very token it
/// rejected, the answer is `Unavailable` and WeChat is not called with it again.
#[tokio::test]
async fn the_rejected_token_handed_back_is_not_used_again() {
    let mut m = Mocks::with_session(active_record());
    store_runs_fetch(&mut m, 2);
    stable_token_answers(&mut m, 2, &["SAME"]);
    m.wechat.expect_phone_number().times(1).returning(|_, _| {
        Box::pin(async { Err(WeChatError::AccessTokenRejected("errcode 42001".into())) })
    });
    m.store
        .expect_forget_access_token()
        .withf(|_, token| token.expose() == "SAME")
        .times(1)
        .returning(|_, _| Box::pin(async { Ok(()) }));
    m.store.expect_set_phone_number().never();
    let outcome = m
        .service()
        .bind_phone(TOKEN, PhoneRequest::Code(phone_code("phone-code")))
        .await
        .map(|o| o.user);
    assert!(
        matches!(
            outcome,
            Err(PhoneError::WeChat(WeChatError::Unavailable(_)))
        ),
        "{outcome:?}"
    );
}

/// A gate held by a mock until the test opens it, and a signal that the mock got there.
struct Gate {
    reached: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    open: Mutex<Option<tokio::sync::oneshot::Receiver<()>>>,
}

impl Gate {
    /// The gate, the receiver told when a mock reaches it, and the sender that opens it.
    fn new() -> (
        Arc<Self>,
        tokio::sync::oneshot::Receiver<()>,
        tokio::sync::oneshot::Sender<()>,
    ) {
        let (reached, reached_rx) = tokio::sync::oneshot::channel();
        let (open_tx, open) = tokio::sync::oneshot::channel();
        let gate = Self {
            reached: Mutex::new(Some(reached)),
            open: Mutex::new(Some(open)),
        };
        (Arc::new(gate), reached_rx, open_tx)
    }

    /// Waits there, the first time only.
    fn pass(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let reached = self.reached.lock().expect("not poisoned").take();
        let open = self.open.lock().expect("not poisoned").take();
        async move {
            if let Some(reached) = reached {
                let _ = reached.send(());
            }
            if let Some(open) = open {
                let _ = open.await;
            }
        }
    }
}

/// A read of the store that began before a rejection and ends after the fresh token arrived
/// brings back the older token: this instance keeps the fresh one (the late reader uses its
/// own, once), and the read that follows the rejection never joins the older read.
#[tokio::test]
async fn a_read_that_ends_late_never_puts_back_an_older_token() {
    let t0 = now();
    let clock_at = Arc::new(Mutex::new(t0));
    let mut m = Mocks::new();
    let at = Arc::clone(&clock_at);
    m.clock = MockClock::new();
    m.clock
        .expect_now()
        .returning(move || *at.lock().expect("not poisoned"));
    sessions_found(&mut m, &active_record());
    m.store
        .expect_touch_session()
        .returning(|_, _| Box::pin(async { Ok(()) }));
    numbers_recorded(&mut m);

    // The store's reads: T1 (inside the margin from the start); an interval later the
    // margin's refetch, held at a gate, which brings T1 back as fetched then; after T1's
    // rejection, T2. No fourth read: T2 is this instance's copy from then on.
    let t1 = |fetched_at| StoredAccessToken {
        token: AccessToken::new("T1".into()),
        expires_at: t0 + Duration::minutes(4),
        fetched_at,
    };
    let t2 = StoredAccessToken {
        token: AccessToken::new("T2".into()),
        expires_at: t0 + Duration::hours(2),
        fetched_at: t0 + Duration::seconds(71),
    };
    let (refetch, refetch_reached, open_refetch) = Gate::new();
    let reads = Arc::new(Mutex::new(0));
    let late_t1 = t1(t0 + Duration::seconds(70));
    let first_t1 = t1(t0);
    m.store
        .expect_access_token()
        .times(3)
        .returning(move |_, _, _| {
            let mut n = reads.lock().expect("not poisoned");
            *n += 1;
            let answer = match *n {
                1 => first_t1.clone(),
                2 => late_t1.clone(),
                _ => t2.clone(),
            };
            let wait = (*n == 2).then(|| refetch.pass());
            Box::pin(async move {
                if let Some(wait) = wait {
                    wait.await;
                }
                Ok(answer)
            })
        });
    m.store
        .expect_forget_access_token()
        .withf(|_, token| token.expose() == "T1")
        .times(2)
        .returning(|_, _| Box::pin(async { Ok(()) }));
    // T1 is rejected: first for the request that holds it while the refetch is under way,
    // held at a gate; then for the late reader, which tries its T1 once. T2 serves the rest.
    let (rejection, call_reached, open_rejection) = Gate::new();
    m.wechat
        .expect_phone_number()
        .withf(|token, _| token.expose() == "T1")
        .times(2)
        .returning(move |_, _| {
            let wait = rejection.pass();
            Box::pin(async move {
                wait.await;
                Err(WeChatError::AccessTokenRejected("errcode 40001".into()))
            })
        });
    m.wechat
        .expect_phone_number()
        .withf(|token, _| token.expose() == "T2")
        .times(3)
        .returning(|_, _| Box::pin(async { Ok(phone_info()) }));

    let service = m.service();
    let bind = || service.bind_phone(TOKEN, PhoneRequest::Code(phone_code("phone-code")));
    let set_clock = |seconds| {
        *clock_at.lock().expect("not poisoned") = t0 + Duration::seconds(seconds);
    };
    let (done_tx, done) = tokio::sync::oneshot::channel();
    let holding_t1 = async {
        let outcome = bind().await;
        let _ = done_tx.send(());
        outcome
    };
    let refetching = async {
        call_reached.await.expect("the call with T1 began");
        set_clock(70);
        bind().await
    };
    let driver = async {
        refetch_reached.await.expect("the refetch began");
        set_clock(71);
        let _ = open_rejection.send(());
        // (Bounded, so a service whose retry waits for the refetch fails instead of hanging.)
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), done).await;
        let _ = open_refetch.send(());
    };
    let (holding_t1, refetching, ()) = tokio::join!(holding_t1, refetching, driver);
    holding_t1.expect("bound with T2 after the rejection");
    refetching.expect("bound with T2 after its late T1 was rejected");
    set_clock(72);
    bind().await.expect("bound with this instance's copy, T2");
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

/// Today's button gives a phone code *and* encrypted data; a client forwarding `e.detail`
/// whole sends both. The code is tried as a phone code first: it works, and nothing is
/// exchanged or decrypted.
#[tokio::test]
async fn a_phone_code_sent_with_encrypted_data_is_used_as_a_phone_code() {
    let mut m = Mocks::with_session(active_record());
    store_runs_fetch(&mut m, 1);
    stable_token_answers(&mut m, 1, &[ACCESS]);
    m.wechat
        .expect_phone_number()
        .withf(|_, code| code.as_str() == "button-code")
        .times(1)
        .returning(|_, _| Box::pin(async { Ok(phone_info()) }));
    m.wechat.expect_code_to_session().never();
    m.cipher.expect_decrypt_phone_number().never();
    m.store.expect_rotate_session_key().never();
    numbers_recorded(&mut m);
    let outcome = m
        .service()
        .bind_phone(
            TOKEN,
            PhoneRequest::Encrypted {
                data: encrypted(),
                code: Some(code("button-code")),
            },
        )
        .await
        .expect("bound");
    assert_eq!(
        outcome.user.phone_number.as_deref(),
        Some("+86 13800138000")
    );
}

/// The legacy flow's fresh `wx.login` code with the data: WeChat refuses it as a phone code
/// (which leaves it unspent), so it is exchanged and its key decrypts the data.
#[tokio::test]
async fn a_login_code_sent_with_encrypted_data_decrypts_with_its_fresh_key() {
    let mut m = Mocks::with_session(active_record());
    store_runs_fetch(&mut m, 1);
    stable_token_answers(&mut m, 1, &[ACCESS]);
    m.wechat
        .expect_phone_number()
        .times(1)
        .returning(|_, _| Box::pin(async { Err(WeChatError::InvalidCode) }));
    m.exchange_returns(
        "fresh-login-code",
        Ok(CodeSession {
            open_id: open_id("oUser"),
            session_key: key(FRESH_KEY),
            union_id: None,
        }),
    );
    m.store
        .expect_rotate_session_key()
        .withf(|id, k| *id == active_record().session.id && *k == key(FRESH_KEY))
        .times(1)
        .returning(|_, _| Box::pin(async { Ok(()) }));
    m.cipher
        .expect_decrypt_phone_number()
        .withf(|k, _, data| *k == key(FRESH_KEY) && *data == encrypted())
        .times(1)
        .returning(|_, _, _| Ok(phone_info()));
    numbers_recorded(&mut m);
    m.service()
        .bind_phone(
            TOKEN,
            PhoneRequest::Encrypted {
                data: encrypted(),
                code: Some(code("fresh-login-code")),
            },
        )
        .await
        .expect("bound");

    // A phone-path failure other than "not a phone code" is answered as it is: the code is
    // not spent on an exchange.
    let mut m = Mocks::with_session(active_record());
    store_runs_fetch(&mut m, 1);
    stable_token_answers(&mut m, 1, &[ACCESS]);
    m.wechat
        .expect_phone_number()
        .times(1)
        .returning(|_, _| Box::pin(async { Err(WeChatError::Unavailable("busy".into())) }));
    m.wechat.expect_code_to_session().never();
    m.store.expect_set_phone_number().never();
    assert!(matches!(
        m.service()
            .bind_phone(
                TOKEN,
                PhoneRequest::Encrypted {
                    data: encrypted(),
                    code: Some(code("some-code")),
                },
            )
            .await,
        Err(PhoneError::WeChat(WeChatError::Unavailable(_)))
    ));
}

/// A number had from WeChat but not stored: with a code (now spent) the answer says a new one
/// is needed; legacy data without a code can simply be sent again.
#[tokio::test]
async fn a_number_not_recorded_after_its_code_was_spent_says_so() {
    let unavailable = || StoreError::Unavailable("pool timed out".into());
    let mut m = Mocks::with_session(active_record());
    store_runs_fetch(&mut m, 1);
    stable_token_answers(&mut m, 1, &[ACCESS]);
    m.wechat
        .expect_phone_number()
        .times(1)
        .returning(|_, _| Box::pin(async { Ok(phone_info()) }));
    m.store
        .expect_set_phone_number()
        .times(1)
        .returning(move |_| Box::pin(async move { Err(unavailable()) }));
    assert_eq!(
        m.service()
            .bind_phone(TOKEN, PhoneRequest::Code(phone_code("spent-code")))
            .await
            .map(|o| o.user),
        Err(PhoneError::NotRecorded(unavailable()))
    );

    let mut m = Mocks::with_session(active_record());
    m.cipher
        .expect_decrypt_phone_number()
        .times(1)
        .returning(|_, _, _| Ok(phone_info()));
    m.store
        .expect_set_phone_number()
        .times(1)
        .returning(move |_| Box::pin(async move { Err(unavailable()) }));
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
        Err(PhoneError::Store(unavailable()))
    );
}
