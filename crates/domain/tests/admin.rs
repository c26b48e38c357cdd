//! The operators' use cases (`Admin`) with every port mocked: who gets in (and that an unknown
//! name costs one verification, like a wrong password), what each use case asks the directory,
//! and how its answers become pages, details and errors.

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;
use wxlogin_domain::{
    ActiveAt, Admin, AdminConfig, AdminError, AdminService, AdminUserError, AppId, Credentials,
    MockClock, MockDirectory, MockPasswordVerifier, NickNameQuery, OpenId, OperatorAccount,
    OperatorName, PageLimit, Password, PasswordHash, Profile, Stats, StatsQuery, StoreError, User,
    UserDetail, UserId, UserQuery, UserSearch,
};

const APP_ID: &str = "wx0123456789abcdef";
const ALICE_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$YWxpY2Vfc2FsdA$YWxpY2VfaGFzaA";
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$ZHVtbXlfc2FsdA$ZHVtbXlfaGFzaA";
const IDLE_DAYS: i64 = 7;

type TestAdmin = Admin<MockDirectory, MockPasswordVerifier, MockClock>;

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_714_564_800, 0).expect("valid timestamp")
}

fn app_id() -> AppId {
    AppId::parse(APP_ID).expect("valid app id")
}

fn user(n: u128) -> User {
    User {
        id: UserId::from_uuid(Uuid::from_u128(
            0x0190_0000_0000_7000_8000_0000_0000_0000 + n,
        )),
        open_id: OpenId::parse(&format!("o-user-{n}")).expect("valid openid"),
        union_id: None,
        profile: Profile::default(),
        phone_number: None,
        created_at: now(),
        updated_at: now(),
    }
}

fn alice() -> Credentials {
    Credentials {
        name: "alice".into(),
        password: Password::new("correct horse".into()),
    }
}

/// A verifier that knows alice's password only, and expects `checks` verifications of it.
fn verifier(checks: usize) -> MockPasswordVerifier {
    let mut v = MockPasswordVerifier::new();
    v.expect_dummy_hash()
        .times(1)
        .returning(|| PasswordHash::new(DUMMY_HASH.into()));
    v.expect_verify().times(checks).returning(|hash, password| {
        let ok = hash.as_str() == ALICE_HASH && password.expose() == "correct horse";
        Box::pin(async move { ok })
    });
    v
}

fn clock() -> MockClock {
    let mut c = MockClock::new();
    c.expect_now().returning(now);
    c
}

fn admin(directory: MockDirectory, verifier: MockPasswordVerifier) -> TestAdmin {
    Admin::new(
        directory,
        verifier,
        clock(),
        AdminConfig {
            operators: vec![OperatorAccount {
                name: OperatorName::parse("alice").expect("valid name"),
                password_hash: PasswordHash::new(ALICE_HASH.into()),
            }],
            app_id: app_id(),
            idle_timeout: Duration::days(IDLE_DAYS),
        },
    )
}

fn untouched_directory() -> MockDirectory {
    let mut d = MockDirectory::new();
    d.expect_search_users().never();
    d.expect_user_detail().never();
    d.expect_revoke_user_sessions().never();
    d.expect_stats().never();
    d
}

#[tokio::test]
async fn a_wrong_password_or_an_unknown_operator_is_refused_before_the_directory_is_asked() {
    for credentials in [
        Credentials {
            name: "alice".into(),
            password: Password::new("wrong".into()),
        },
        // The right password under another name: the name decides whose hash is checked.
        Credentials {
            name: "mallory".into(),
            password: Password::new("correct horse".into()),
        },
        Credentials {
            name: "Alice".into(),
            password: Password::new("correct horse".into()),
        },
    ] {
        // Four use cases, one verification each.
        let admin = admin(untouched_directory(), verifier(4));
        assert_eq!(
            admin.search_users(&credentials, UserQuery::default()).await,
            Err(AdminError::InvalidCredentials)
        );
        assert_eq!(
            admin.stats(&credentials).await,
            Err(AdminError::InvalidCredentials)
        );
        assert_eq!(
            admin.user_detail(&credentials, user(1).id).await,
            Err(AdminUserError::InvalidCredentials)
        );
        assert_eq!(
            admin.revoke_sessions(&credentials, user(1).id).await,
            Err(AdminUserError::InvalidCredentials)
        );
    }
}

#[tokio::test]
async fn an_unknown_operator_costs_one_verification_against_the_dummy_hash() {
    let mut v = MockPasswordVerifier::new();
    v.expect_dummy_hash()
        .times(1)
        .returning(|| PasswordHash::new(DUMMY_HASH.into()));
    // Even a verifier that says yes to the dummy does not let an unknown name in.
    v.expect_verify()
        .withf(|hash, _| hash.as_str() == DUMMY_HASH)
        .times(1)
        .returning(|_, _| Box::pin(async { true }));
    let admin = admin(untouched_directory(), v);
    let stranger = Credentials {
        name: "nobody".into(),
        password: Password::new("anything".into()),
    };
    assert_eq!(
        admin.stats(&stranger).await,
        Err(AdminError::InvalidCredentials)
    );
}

#[tokio::test]
async fn with_no_operators_configured_nobody_gets_in() {
    let mut v = MockPasswordVerifier::new();
    v.expect_dummy_hash()
        .times(1)
        .returning(|| PasswordHash::new(DUMMY_HASH.into()));
    v.expect_verify()
        .times(1)
        .returning(|_, _| Box::pin(async { true }));
    let admin = Admin::new(
        untouched_directory(),
        v,
        clock(),
        AdminConfig {
            operators: vec![],
            app_id: app_id(),
            idle_timeout: Duration::days(IDLE_DAYS),
        },
    );
    assert_eq!(
        admin.stats(&alice()).await,
        Err(AdminError::InvalidCredentials)
    );
}

#[tokio::test]
async fn a_search_asks_for_one_more_than_the_page_and_says_where_the_next_page_starts() {
    let after = user(100).id;
    let mut d = MockDirectory::new();
    d.expect_search_users()
        .withf(move |s: &UserSearch| {
            s.app_id == app_id()
                && s.limit == 3
                && s.after == Some(after)
                && s.open_id.as_ref().map(OpenId::as_str) == Some("o-user-1")
                && s.nick_name.as_ref().map(NickNameQuery::as_str) == Some("ming")
        })
        .times(1)
        .returning(|_| Box::pin(async { Ok(vec![user(1), user(2), user(3)]) }));
    let admin = admin(d, verifier(1));
    let page = admin
        .search_users(
            &alice(),
            UserQuery {
                open_id: Some(OpenId::parse("o-user-1").expect("valid")),
                nick_name: Some(NickNameQuery::parse("ming").expect("valid")),
                after: Some(after),
                limit: PageLimit::parse(2).expect("valid"),
            },
        )
        .await
        .expect("the search succeeds");
    assert_eq!(page.users, [user(1), user(2)]);
    assert_eq!(
        page.next,
        Some(user(2).id),
        "the cursor is the page's last id"
    );
}

#[tokio::test]
async fn the_last_page_has_no_next_cursor() {
    for found in [vec![], vec![user(1)], vec![user(1), user(2)]] {
        let answer = found.clone();
        let mut d = MockDirectory::new();
        d.expect_search_users()
            .withf(|s: &UserSearch| s.limit == 21 && s.after.is_none())
            .times(1)
            .returning(move |_| {
                let answer = answer.clone();
                Box::pin(async move { Ok(answer) })
            });
        let admin = admin(d, verifier(1));
        let page = admin
            .search_users(&alice(), UserQuery::default())
            .await
            .expect("the search succeeds");
        assert_eq!(page.users, found);
        assert_eq!(page.next, None);
    }
}

#[tokio::test]
async fn a_full_page_of_exactly_the_limit_is_the_last_one() {
    let twenty: Vec<User> = (1..=20).map(user).collect();
    let answer = twenty.clone();
    let mut d = MockDirectory::new();
    d.expect_search_users().times(1).returning(move |_| {
        let answer = answer.clone();
        Box::pin(async move { Ok(answer) })
    });
    let page = admin(d, verifier(1))
        .search_users(&alice(), UserQuery::default())
        .await
        .expect("the search succeeds");
    assert_eq!(page.users, twenty);
    assert_eq!(page.next, None);
}

#[tokio::test]
async fn detail_counts_sessions_active_now_under_the_idle_timeout() {
    let target = user(7);
    let id = target.id;
    let answer = UserDetail {
        user: target,
        active_sessions: 3,
    };
    let expected = answer.clone();
    let mut d = MockDirectory::new();
    d.expect_user_detail()
        .withf(move |app, user_id, active: &ActiveAt| {
            *app == app_id()
                && *user_id == id
                && active.now == now()
                && active.seen_after == now() - Duration::days(IDLE_DAYS)
        })
        .times(1)
        .returning(move |_, _, _| {
            let answer = answer.clone();
            Box::pin(async move { Ok(Some(answer)) })
        });
    let detail = admin(d, verifier(1))
        .user_detail(&alice(), id)
        .await
        .expect("the user exists");
    assert_eq!(detail, expected);
}

#[tokio::test]
async fn detail_of_an_unknown_user_is_not_found_and_store_failures_pass_through() {
    let mut d = MockDirectory::new();
    d.expect_user_detail()
        .times(1)
        .returning(|_, _, _| Box::pin(async { Ok(None) }));
    assert_eq!(
        admin(d, verifier(1))
            .user_detail(&alice(), user(9).id)
            .await,
        Err(AdminUserError::UserNotFound)
    );
    let mut d = MockDirectory::new();
    d.expect_user_detail()
        .times(1)
        .returning(|_, _, _| Box::pin(async { Err(StoreError::Unavailable("down".into())) }));
    assert_eq!(
        admin(d, verifier(1))
            .user_detail(&alice(), user(9).id)
            .await,
        Err(AdminUserError::Store(StoreError::Unavailable(
            "down".into()
        )))
    );
}

#[tokio::test]
async fn revoking_stamps_now_and_answers_the_count() {
    let id = user(4).id;
    let mut d = MockDirectory::new();
    d.expect_revoke_user_sessions()
        .withf(move |user_id, at| *user_id == id && *at == now())
        .times(1)
        .returning(|_, _| Box::pin(async { Ok(2) }));
    assert_eq!(
        admin(d, verifier(1)).revoke_sessions(&alice(), id).await,
        Ok(2)
    );

    let mut d = MockDirectory::new();
    d.expect_revoke_user_sessions()
        .times(1)
        .returning(|_, _| Box::pin(async { Err(StoreError::NotFound) }));
    assert_eq!(
        admin(d, verifier(1)).revoke_sessions(&alice(), id).await,
        Err(AdminUserError::UserNotFound)
    );
}

#[tokio::test]
async fn stats_count_the_last_hour_and_day_of_logins_and_the_active_sessions() {
    let figures = Stats {
        users: 10,
        active_sessions: 4,
        logins_last_hour: 2,
        logins_last_day: 7,
    };
    let mut d = MockDirectory::new();
    d.expect_stats()
        .withf(|q: &StatsQuery| {
            q.active.now == now()
                && q.active.seen_after == now() - Duration::days(IDLE_DAYS)
                && q.hour_from == now() - Duration::hours(1)
                && q.day_from == now() - Duration::days(1)
        })
        .times(1)
        .returning(move |_| Box::pin(async move { Ok(figures) }));
    assert_eq!(admin(d, verifier(1)).stats(&alice()).await, Ok(figures));

    let mut d = MockDirectory::new();
    d.expect_stats()
        .times(1)
        .returning(|_| Box::pin(async { Err(StoreError::Unexpected("boom".into())) }));
    assert_eq!(
        admin(d, verifier(1)).stats(&alice()).await,
        Err(AdminError::Store(StoreError::Unexpected("boom".into())))
    );
}
