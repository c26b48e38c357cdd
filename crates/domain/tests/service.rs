//! The use cases of `Service`, with every port mocked (mockall). Each test configures exactly
//! the calls it expects; a port that must not be touched gets `.never()`.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;
use wxlogin_domain::{
    AppId, AuthError, AvatarUrl, CipherError, CodeSession, DecryptedUserInfo, EncryptedData,
    EncryptedProfile, Gender, LoginCode, LoginError, LoginRecord, MockClock, MockTokenMinter,
    MockUserDataCipher, MockUserStore, MockWeChat, NewLogin, NickName, OpenId,
    PLACEHOLDER_NICKNAME, Profile, ProfileChange, ProfileStatus, ProfileText, ProfileUpdate,
    Service, ServiceConfig, Session, SessionId, SessionKey, SessionRecord, StoreError, Token,
    TokenDigest, UnionId, UpdateUserInfoError, User, UserId, WeChatError,
};

type TestService =
    Service<MockUserStore, MockWeChat, MockUserDataCipher, MockTokenMinter, MockClock>;

const APP_ID: &str = "wx0123456789abcdef";
const TTL_HOURS: i64 = 48;
const SESSION_KEY: &str = "c2Vzc2lvbi1rZXktMDAwMQ==";
const FRESH_KEY: &str = "ZnJlc2gta2V5LTAwMDAwMQ==";
const TOKEN: &str = "wxl_the-bearer-token";
const PLACEHOLDER_AVATAR: &str = "https://thirdwx.qlogo.cn/mmopen/vi_32/POgEwh4mIHO4nibH0KlMECNjjGxQUq24ZEaGT4poC6icRiccVGKSyXwibcPq4BWmiaIGuG1icwxaQX6grC9VemZoJ8rg/132";

// ---------------------------------------------------------------------------------------------
// Fixtures

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_714_564_800, 0).expect("valid timestamp")
}

fn ttl() -> Duration {
    Duration::hours(TTL_HOURS)
}

fn app_id() -> AppId {
    AppId::parse(APP_ID).expect("valid app id")
}

fn open_id(s: &str) -> OpenId {
    OpenId::parse(s).expect("valid openid")
}

fn union_id(s: &str) -> UnionId {
    UnionId::parse(s).expect("valid unionid")
}

fn key(s: &str) -> SessionKey {
    SessionKey::from_base64(s).expect("valid session key")
}

fn code(s: &str) -> LoginCode {
    LoginCode::parse(s).expect("valid code")
}

/// A deterministic stand-in for SHA-256: distinct tokens give distinct digests.
fn fake_digest(token: &str) -> TokenDigest {
    let mut bytes = [0u8; 32];
    for (i, b) in token.bytes().enumerate() {
        bytes[i % 32] = bytes[i % 32].wrapping_mul(31).wrapping_add(b);
    }
    bytes[31] ^= u8::try_from(token.len() % 256).expect("fits");
    TokenDigest::from_bytes(bytes)
}

fn complete_profile() -> Profile {
    Profile {
        nick_name: Some(NickName::parse("小明").expect("valid")),
        avatar_url: Some(AvatarUrl::parse("https://example.com/a.png").expect("valid")),
        gender: Some(Gender::Male),
        ..Profile::default()
    }
}

fn user(oid: &str, profile: Profile) -> User {
    User {
        id: UserId::from_uuid(Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001)),
        open_id: open_id(oid),
        union_id: None,
        profile,
        phone_number: None,
        created_at: now() - Duration::days(3),
        updated_at: now() - Duration::days(1),
    }
}

fn session_for(
    user: &User,
    expires_at: DateTime<Utc>,
    revoked_at: Option<DateTime<Utc>>,
) -> Session {
    Session {
        id: SessionId::from_uuid(Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_00aa)),
        user_id: user.id,
        token_digest: fake_digest(TOKEN),
        session_key: key(SESSION_KEY),
        created_at: now() - Duration::hours(1),
        expires_at,
        revoked_at,
    }
}

fn active_record() -> SessionRecord {
    let user = user("oUser", Profile::default());
    SessionRecord {
        session: session_for(&user, now() + Duration::hours(1), None),
        user,
    }
}

fn encrypted() -> EncryptedData {
    EncryptedData {
        encrypted_data: "ZW5jcnlwdGVk".into(),
        iv: "aXZpdml2aXZpdml2aXZpdg==".into(),
    }
}

fn request(code: Option<LoginCode>) -> EncryptedProfile {
    EncryptedProfile {
        data: encrypted(),
        raw_data: None,
        signature: None,
        code,
    }
}

fn decrypted(oid: Option<&str>, profile: Profile) -> DecryptedUserInfo {
    DecryptedUserInfo {
        open_id: oid.map(open_id),
        union_id: None,
        profile: ProfileUpdate(profile),
    }
}

fn all_wechat_errors() -> Vec<WeChatError> {
    vec![
        WeChatError::InvalidCode,
        WeChatError::CodeUsed,
        WeChatError::RateLimited,
        WeChatError::RiskyUser,
        WeChatError::Unavailable("timeout".into()),
        WeChatError::Unexpected("errcode 40013".into()),
    ]
}

fn all_store_errors() -> Vec<StoreError> {
    vec![
        StoreError::Unavailable("pool timed out".into()),
        StoreError::NotFound,
        StoreError::Unexpected("disk I/O error".into()),
    ]
}

/// The five mocks, with the harmless queries (app id, time, digest) answered.
struct Mocks {
    store: MockUserStore,
    wechat: MockWeChat,
    cipher: MockUserDataCipher,
    tokens: MockTokenMinter,
    clock: MockClock,
}

impl Mocks {
    fn new() -> Self {
        let mut wechat = MockWeChat::new();
        wechat.expect_app_id().return_const(app_id());
        let mut clock = MockClock::new();
        clock.expect_now().return_const(now());
        let mut tokens = MockTokenMinter::new();
        tokens.expect_digest().returning(fake_digest);
        Self {
            store: MockUserStore::new(),
            wechat,
            cipher: MockUserDataCipher::new(),
            tokens,
            clock,
        }
    }

    /// Mocks whose store answers `find_session` with `record` for [`TOKEN`]'s digest.
    fn with_session(record: SessionRecord) -> Self {
        let mut m = Self::new();
        m.store
            .expect_find_session()
            .withf(|app, digest| *app == app_id() && *digest == fake_digest(TOKEN))
            .times(1)
            .returning(move |_, _| {
                let record = record.clone();
                Box::pin(async move { Ok(Some(record)) })
            });
        m
    }

    // The configured mocks themselves go in: `Clone` on a mock gives a fresh, empty one.
    fn service(self) -> TestService {
        Service::new(
            self.store,
            self.wechat,
            self.cipher,
            self.tokens,
            self.clock,
            ServiceConfig { session_ttl: ttl() },
        )
    }

    fn exchange_returns(
        &mut self,
        expected_code: &'static str,
        answer: Result<CodeSession, WeChatError>,
    ) {
        self.wechat
            .expect_code_to_session()
            .withf(move |c| c.as_str() == expected_code)
            .times(1)
            .returning(move |_| {
                let answer = answer.clone();
                Box::pin(async move { answer })
            });
    }

    fn login_never(&mut self) {
        self.store.expect_login().never();
    }

    fn update_never(&mut self) {
        self.store.expect_update_profile().never();
    }

    /// Records the `ProfileChange` the store receives and answers with `answer`.
    fn capture_update(
        &mut self,
        answer: Result<User, StoreError>,
    ) -> Arc<Mutex<Option<ProfileChange>>> {
        let seen = Arc::new(Mutex::new(None));
        let slot = Arc::clone(&seen);
        self.store
            .expect_update_profile()
            .times(1)
            .returning(move |change| {
                *slot.lock().expect("not poisoned") = Some(change);
                let answer = answer.clone();
                Box::pin(async move { answer })
            });
        seen
    }
}

fn taken<T>(slot: &Arc<Mutex<Option<T>>>) -> T {
    slot.lock()
        .expect("not poisoned")
        .take()
        .expect("the port was called")
}

// ---------------------------------------------------------------------------------------------
// login

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

// ---------------------------------------------------------------------------------------------
// authenticate

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

// ---------------------------------------------------------------------------------------------
// update_user_info

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
        let result = m.service().update_user_info(TOKEN, req).await;
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
        let result = m.service().update_user_info(TOKEN, req).await;
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

    let result = m.service().update_user_info(TOKEN, request(None)).await;
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
        let result = m.service().update_user_info(TOKEN, req).await;
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
    let result = m.service().update_user_info(TOKEN, req).await;
    assert_eq!(
        result,
        Err(UpdateUserInfoError::Cipher(CipherError::SignatureMismatch))
    );
}

#[tokio::test]
async fn cipher_failures_store_nothing() {
    for error in [
        CipherError::DecryptFailed,
        CipherError::InvalidInput("iv must be 16 bytes"),
    ] {
        let mut m = Mocks::with_session(active_record());
        let answer = error.clone();
        m.cipher
            .expect_decrypt_user_info()
            .times(1)
            .returning(move |_, _, _| Err(answer.clone()));
        m.update_never();

        let result = m.service().update_user_info(TOKEN, request(None)).await;
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

    let result = m.service().update_user_info(TOKEN, request(None)).await;
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

    let result = m.service().update_user_info(TOKEN, request(None)).await;
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

    let result = m.service().update_user_info(TOKEN, request(None)).await;
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

        let result = m.service().update_user_info(TOKEN, request(None)).await;
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
        .await;
    assert_eq!(
        result,
        Err(UpdateUserInfoError::Auth(AuthError::InvalidToken))
    );
}

// ---------------------------------------------------------------------------------------------
// ready

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
