//! The contract cases. Each takes a fresh, empty store and panics on the first broken promise.
//!
//! The semantics are those of the port's documentation, made precise where it is silent
//! (the SQLite adapter was the reference): a re-login neither changes the user nor its
//! timestamps; a unionid is recorded only while none is known; profile updates write only the
//! given fields; `NotFound` for a missing user or session; revoking twice keeps the first time;
//! and every method is atomic.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Duration, SubsecRound, Utc};
use tokio::sync::Barrier;

use crate::fixtures::{KEY_A, KEY_B, KEY_C, app, digest, key, login_at, other_app, union};
use wxlogin_domain::{
    AvatarUrl, Gender, NewLogin, NickName, Profile, ProfileChange, ProfileText, ProfileUpdate,
    SessionId, SessionRecord, StoreError, UserId, UserStore,
};

/// How many first logins of one openid race in [`concurrent_first_logins_create_one_user`].
pub const RACERS: u32 = 100;

/// A microsecond-precise time, which every store keeps exactly (see the crate docs).
fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_714_550_400, 123_456_000).expect("valid time")
}

fn login_for(open_id: &str, n: u32, session_key: &str) -> NewLogin {
    login_at(open_id, n, session_key, t0())
}

fn profile_change(
    user_id: UserId,
    session_id: SessionId,
    profile: Profile,
    now: DateTime<Utc>,
) -> ProfileChange {
    ProfileChange {
        app_id: app(),
        user_id,
        session_id,
        profile: ProfileUpdate(profile),
        union_id: None,
        rotated_session_key: None,
        now,
    }
}

fn full_profile() -> Profile {
    Profile {
        nick_name: NickName::parse("小明").ok(),
        avatar_url: AvatarUrl::parse("https://example.com/a.png").ok(),
        gender: Some(Gender::Male),
        country: ProfileText::place("country", "China").ok(),
        province: ProfileText::place("province", "Guangdong").ok(),
        city: ProfileText::place("city", "Guangzhou").ok(),
        language: ProfileText::language("zh_CN").ok(),
    }
}

async fn login<S: UserStore>(store: &S, login: NewLogin) -> wxlogin_domain::LoginRecord {
    store
        .login(login)
        .await
        .unwrap_or_else(|e| panic!("login failed: {e}"))
}

/// The session with digest `n` in the main app, which must exist.
async fn session<S: UserStore>(store: &S, n: u32) -> SessionRecord {
    store
        .find_session(&app(), &digest(n))
        .await
        .unwrap_or_else(|e| panic!("find_session({n}) failed: {e}"))
        .unwrap_or_else(|| panic!("session {n} not found"))
}

/// The time a store gives back for `written`: exactly it, or it truncated to microseconds.
fn assert_same_instant(read: DateTime<Utc>, written: DateTime<Utc>, what: &str) {
    assert!(
        read == written || read == written.trunc_subsecs(6),
        "{what}: read back {read:?} for {written:?}; a store must keep it exactly or truncated \
         to the microsecond"
    );
}

/// A first login creates the user (with the proposed id); later logins of the same
/// `(app_id, open_id)` find it unchanged; another openid, or the same openid in another app,
/// is another user.
pub async fn find_or_create<S: UserStore>(store: S) {
    let first_login = login_for("oUser1", 1, KEY_A);
    let proposed = first_login.new_user_id;
    let first = login(&store, first_login).await;
    assert!(first.is_new_user);
    assert_eq!(first.user.id, proposed, "a new user gets the proposed id");
    assert_eq!(first.user.open_id.as_str(), "oUser1");
    assert_eq!(first.user.union_id, None);
    assert_eq!(first.user.profile, Profile::default());
    assert!(!first.user.profile_complete());
    assert_eq!(first.user.phone_number, None);
    assert_eq!(first.user.created_at, t0());
    assert_eq!(first.user.updated_at, t0());

    // A re-login, later, finds the same user and changes nothing about it.
    let mut again = login_for("oUser1", 2, KEY_B);
    again.now = t0() + Duration::hours(1);
    let unused = again.new_user_id;
    let second = login(&store, again).await;
    assert!(!second.is_new_user);
    assert_eq!(second.user, first.user);
    assert_ne!(second.user.id, unused);

    let other = login(&store, login_for("oUser2", 3, KEY_C)).await;
    assert!(other.is_new_user);
    assert_ne!(other.user.id, first.user.id);
    assert_eq!(other.user.open_id.as_str(), "oUser2");

    // An identity is (app_id, open_id): the same openid in another app is someone else.
    let mut elsewhere = login_for("oUser1", 4, KEY_A);
    elsewhere.app_id = other_app();
    let elsewhere = login(&store, elsewhere).await;
    assert!(elsewhere.is_new_user);
    assert_ne!(elsewhere.user.id, first.user.id);

    let third = login(&store, login_for("oUser1", 5, KEY_A)).await;
    assert!(!third.is_new_user);
    assert_eq!(third.user.id, first.user.id);
    let other_again = login(&store, login_for("oUser2", 6, KEY_A)).await;
    assert!(!other_again.is_new_user);
    assert_eq!(other_again.user.id, other.user.id);
}

/// [`RACERS`] first logins of one openid at once create exactly one user, none fails, and
/// every session they created resolves to that user.
pub async fn concurrent_first_logins_create_one_user<S: UserStore>(store: S) {
    // Pools open connections lazily, and one login is quick: without a warm-up the first
    // login would commit before a second connection is even open, and nothing would race.
    warm_up(&store, RACERS).await;
    // All tasks start their login together, so they really race for the insert.
    let start = Arc::new(Barrier::new(RACERS as usize));
    let tasks: Vec<_> = (0..RACERS)
        .map(|n| {
            let store = store.clone();
            let start = Arc::clone(&start);
            tokio::spawn(async move {
                start.wait().await;
                store.login(login_for("oRacer", n, KEY_A)).await
            })
        })
        .collect();
    let mut records = Vec::new();
    for (n, task) in tasks.into_iter().enumerate() {
        let result = task
            .await
            .unwrap_or_else(|e| panic!("login task {n} panicked: {e}"));
        // A serialization failure, deadlock or `database is locked` would surface here.
        records.push(result.unwrap_or_else(|e| panic!("concurrent login {n} failed: {e}")));
    }

    let ids: HashSet<UserId> = records.iter().map(|r| r.user.id).collect();
    assert_eq!(
        ids.len(),
        1,
        "racing first logins created {} users",
        ids.len()
    );
    assert_eq!(
        records.iter().filter(|r| r.is_new_user).count(),
        1,
        "exactly one racing login creates the user"
    );
    let winner = records[0].user.id;
    for r in &records {
        assert_eq!(r.user, records[0].user, "every login returns the same user");
    }
    for n in 0..RACERS {
        let found = session(&store, n).await;
        assert_eq!(found.user.id, winner, "session {n}");
        assert_eq!(found.session.user_id, winner, "session {n}");
    }
    let later = login(&store, login_for("oRacer", RACERS, KEY_B)).await;
    assert!(!later.is_new_user);
    assert_eq!(later.user.id, winner);
}

/// Makes the store open its connections, by `n` pings at once.
async fn warm_up<S: UserStore>(store: &S, n: u32) {
    let start = Arc::new(Barrier::new(n as usize));
    let pings: Vec<_> = (0..n)
        .map(|_| {
            let store = store.clone();
            let start = Arc::clone(&start);
            tokio::spawn(async move {
                start.wait().await;
                store.ping().await
            })
        })
        .collect();
    for ping in pings {
        let result = ping.await.unwrap_or_else(|e| panic!("ping panicked: {e}"));
        result.unwrap_or_else(|e| panic!("warm-up ping failed: {e}"));
    }
}

/// Sessions are found by token digest within their app, with their user and their own fields.
pub async fn sessions_are_found_by_digest_and_app<S: UserStore>(store: S) {
    let login_a = login_for("oUser1", 1, KEY_A);
    let session_a = login_a.session_id;
    let user = login(&store, login_a).await.user;
    let mut login_b = login_for("oUser1", 2, KEY_B);
    login_b.now = t0() + Duration::minutes(1);
    let session_b = login_b.session_id;
    login(&store, login_b).await;
    let stranger = login(&store, login_for("oStranger", 3, KEY_C)).await.user;

    let a = session(&store, 1).await;
    assert_eq!(a.user, user);
    assert_eq!(a.session.id, session_a);
    assert_eq!(a.session.user_id, user.id);
    assert_eq!(a.session.token_digest, digest(1));
    assert_eq!(a.session.session_key, key(KEY_A));
    assert_eq!(a.session.created_at, t0());
    assert_eq!(a.session.revoked_at, None);

    let b = session(&store, 2).await;
    assert_eq!(b.session.id, session_b);
    assert_eq!(b.session.token_digest, digest(2));
    assert_eq!(b.session.created_at, t0() + Duration::minutes(1));
    assert_eq!(b.user, user);

    let c = session(&store, 3).await;
    assert_eq!(c.user, stranger);
    assert_eq!(c.session.user_id, stranger.id);

    let unknown = store.find_session(&app(), &digest(99)).await;
    assert!(matches!(unknown, Ok(None)), "unknown digest: {unknown:?}");
    // A token of one mini-program is worthless to another, even for the same openid.
    let mut elsewhere = login_for("oUser1", 4, KEY_A);
    elsewhere.app_id = other_app();
    login(&store, elsewhere).await;
    let cross = store.find_session(&other_app(), &digest(1)).await;
    assert!(
        matches!(cross, Ok(None)),
        "another app's session: {cross:?}"
    );
    let cross = store.find_session(&app(), &digest(4)).await;
    assert!(
        matches!(cross, Ok(None)),
        "another app's session: {cross:?}"
    );
    let own = store
        .find_session(&other_app(), &digest(4))
        .await
        .expect("find_session works")
        .expect("the other app finds its own session");
    assert_ne!(own.user.id, user.id);
}

/// `created_at` and `expires_at` come back as given, per session, whatever the session's state.
pub async fn expiry_fields_round_trip<S: UserStore>(store: S) {
    let long = login_for("oExpiry", 1, KEY_A);
    let mut short = login_for("oExpiry", 2, KEY_A);
    short.now = t0() + Duration::minutes(1);
    short.expires_at = t0() + Duration::hours(2);
    // Already expired when stored: still stored and found (the service decides what expired
    // means).
    let mut expired = login_for("oExpiry", 3, KEY_A);
    expired.now = t0() + Duration::minutes(2);
    expired.expires_at = t0() - Duration::seconds(1);
    for l in [long, short, expired] {
        login(&store, l).await;
    }

    let long = session(&store, 1).await.session;
    assert_eq!(long.created_at, t0());
    assert_eq!(long.expires_at, t0() + Duration::days(30));
    assert_eq!(long.revoked_at, None);
    let short = session(&store, 2).await.session;
    assert_eq!(short.created_at, t0() + Duration::minutes(1));
    assert_eq!(short.expires_at, t0() + Duration::hours(2));
    let expired = session(&store, 3).await.session;
    assert_eq!(expired.created_at, t0() + Duration::minutes(2));
    assert_eq!(expired.expires_at, t0() - Duration::seconds(1));
}

/// Revoking sets `revoked_at` once (a second revocation keeps the first time), touches nothing
/// else, spares the user's other sessions, and is `NotFound` for an unknown session.
pub async fn revocation_keeps_the_first_time<S: UserStore>(store: S) {
    let first = login_for("oRevoke", 1, KEY_A);
    let first_session = first.session_id;
    login(&store, first).await;
    login(&store, login_for("oRevoke", 2, KEY_B)).await;
    let before = session(&store, 1).await;

    let at = t0() + Duration::minutes(7);
    store
        .revoke_session(first_session, at)
        .await
        .expect("revocation works");
    let revoked = session(&store, 1).await;
    assert_eq!(revoked.session.revoked_at, Some(at));
    store
        .revoke_session(first_session, at + Duration::minutes(1))
        .await
        .expect("revoking again works");
    let revoked = session(&store, 1).await;
    assert_eq!(
        revoked.session.revoked_at,
        Some(at),
        "the first time stands"
    );
    assert_eq!(revoked.session.created_at, before.session.created_at);
    assert_eq!(revoked.session.expires_at, before.session.expires_at);
    assert_eq!(revoked.session.session_key, before.session.session_key);
    assert_eq!(revoked.user, before.user);

    let other = session(&store, 2).await;
    assert_eq!(other.session.revoked_at, None);
    assert_eq!(
        store.revoke_session(SessionId::new(), at).await,
        Err(StoreError::NotFound)
    );
}

/// Each session keeps the key its own login exchanged; rotating replaces one session's key
/// (alone or with a profile change) and nothing else; `NotFound` for an unknown session.
pub async fn session_keys_are_per_session<S: UserStore>(store: S) {
    let first = login_for("oKeys", 1, KEY_A);
    let first_session = first.session_id;
    let user = login(&store, first).await.user;
    let second = login_for("oKeys", 2, KEY_B);
    let second_session = second.session_id;
    login(&store, second).await;

    assert_eq!(session(&store, 1).await.session.session_key, key(KEY_A));
    assert_eq!(session(&store, 2).await.session.session_key, key(KEY_B));

    store
        .rotate_session_key(first_session, key(KEY_C))
        .await
        .expect("rotation works");
    let rotated = session(&store, 1).await;
    assert_eq!(rotated.session.session_key, key(KEY_C));
    assert_eq!(rotated.user, user, "rotating a key is no profile write");
    assert_eq!(session(&store, 2).await.session.session_key, key(KEY_B));

    // Through a profile change: only that session's key.
    let mut change = profile_change(
        user.id,
        second_session,
        Profile::default(),
        t0() + Duration::minutes(3),
    );
    change.rotated_session_key = Some(key(KEY_A));
    let updated = store
        .update_profile(change)
        .await
        .expect("profile change with a rotated key works");
    assert_eq!(updated.profile, Profile::default());
    assert_eq!(session(&store, 2).await.session.session_key, key(KEY_A));
    assert_eq!(session(&store, 1).await.session.session_key, key(KEY_C));

    assert_eq!(
        store.rotate_session_key(SessionId::new(), key(KEY_A)).await,
        Err(StoreError::NotFound)
    );
}

/// Profile updates write only the given fields, move `updated_at` (not `created_at`), persist,
/// and are `NotFound` for a missing user or a user without an identity in the change's app.
pub async fn profile_updates_apply_only_given_fields<S: UserStore>(store: S) {
    let first = login_for("oProfile", 1, KEY_A);
    let session_id = first.session_id;
    let user = login(&store, first).await.user;
    let bystander = login(&store, login_for("oBystander", 2, KEY_A)).await.user;

    let at = t0() + Duration::minutes(5);
    let updated = store
        .update_profile(profile_change(user.id, session_id, full_profile(), at))
        .await
        .expect("full update works");
    assert_eq!(updated.id, user.id);
    assert_eq!(updated.profile, full_profile());
    assert!(updated.profile_complete());
    assert_eq!(updated.created_at, t0());
    assert_eq!(updated.updated_at, at);
    assert_eq!(updated.open_id, user.open_id);

    let partial = Profile {
        nick_name: NickName::parse("Band").ok(),
        gender: Some(Gender::Female),
        ..Profile::default()
    };
    let later = t0() + Duration::minutes(10);
    let updated = store
        .update_profile(profile_change(user.id, session_id, partial, later))
        .await
        .expect("partial update works");
    let mut expected = full_profile();
    expected.nick_name = NickName::parse("Band").ok();
    expected.gender = Some(Gender::Female);
    assert_eq!(updated.profile, expected);
    assert_eq!(updated.updated_at, later);
    assert_eq!(updated.created_at, t0());

    // An empty update keeps every field and still records the write.
    let latest = t0() + Duration::minutes(11);
    let updated = store
        .update_profile(profile_change(
            user.id,
            session_id,
            Profile::default(),
            latest,
        ))
        .await
        .expect("empty update works");
    assert_eq!(updated.profile, expected);
    assert_eq!(updated.updated_at, latest);

    // Persisted, and seen through the session.
    let found = session(&store, 1).await;
    assert_eq!(found.user, updated);
    // Nobody else changed.
    assert_eq!(session(&store, 2).await.user, bystander);

    let ghost = Profile {
        nick_name: NickName::parse("Ghost").ok(),
        ..Profile::default()
    };
    let missing = store
        .update_profile(profile_change(
            UserId::new(),
            SessionId::new(),
            ghost.clone(),
            latest,
        ))
        .await;
    assert_eq!(missing, Err(StoreError::NotFound));

    // The user has no identity in the other app: nothing to return, so nothing is written.
    let mut wrong_app = profile_change(user.id, session_id, ghost, latest + Duration::minutes(1));
    wrong_app.app_id = other_app();
    assert_eq!(
        store.update_profile(wrong_app).await,
        Err(StoreError::NotFound)
    );
    assert_eq!(session(&store, 1).await.user, updated);
}

/// A unionid is recorded when first learnt (at login or with a profile change) and never
/// replaced or erased afterwards.
pub async fn union_id_is_recorded_once<S: UserStore>(store: S) {
    let mut with_union = login_for("oUnion", 1, KEY_A);
    with_union.union_id = union("uFirst");
    let first = login(&store, with_union).await;
    assert_eq!(first.user.union_id, union("uFirst"));

    // A login without a unionid does not erase it; a different one does not replace it.
    let again = login(&store, login_for("oUnion", 2, KEY_A)).await;
    assert_eq!(again.user.union_id, union("uFirst"));
    let mut other_union = login_for("oUnion", 3, KEY_A);
    other_union.union_id = union("uSecond");
    let again = login(&store, other_union).await;
    assert_eq!(again.user.union_id, union("uFirst"));
    assert_eq!(session(&store, 3).await.user.union_id, union("uFirst"));

    // Unknown at first login, learnt at a later one, visible through the earlier session.
    let late = login(&store, login_for("oLate", 4, KEY_A)).await;
    assert_eq!(late.user.union_id, None);
    let mut learnt = login_for("oLate", 5, KEY_A);
    learnt.union_id = union("uLate");
    let late = login(&store, learnt).await;
    assert!(!late.is_new_user);
    assert_eq!(late.user.union_id, union("uLate"));
    assert_eq!(session(&store, 4).await.user.union_id, union("uLate"));

    // Through a profile change: recorded when unknown, ignored when known.
    let profile_login = login_for("oProfileUnion", 6, KEY_A);
    let session_id = profile_login.session_id;
    let user = login(&store, profile_login).await.user;
    let mut change = profile_change(
        user.id,
        session_id,
        Profile::default(),
        t0() + Duration::minutes(1),
    );
    change.union_id = union("uFromProfile");
    let updated = store
        .update_profile(change.clone())
        .await
        .expect("update works");
    assert_eq!(updated.union_id, union("uFromProfile"));
    change.union_id = union("uReplaced");
    let updated = store.update_profile(change).await.expect("update works");
    assert_eq!(updated.union_id, union("uFromProfile"));
    let mut relogin = login_for("oProfileUnion", 7, KEY_A);
    relogin.union_id = union("uReplacedAgain");
    assert_eq!(
        login(&store, relogin).await.user.union_id,
        union("uFromProfile")
    );
    // Other users are untouched.
    assert_eq!(session(&store, 1).await.user.union_id, union("uFirst"));
}

/// A login that fails after the user and identity were written (its session's token digest
/// collides with an existing one) leaves no user, identity or session behind, and records no
/// unionid on an existing identity; the error quotes no value.
pub async fn failed_login_leaves_nothing_behind<S: UserStore>(store: S) {
    let existing_user = login(&store, login_for("oFirst", 7, KEY_A)).await.user;

    // A new openid whose token digest collides with the existing session's: the user and
    // identity inserts succeed, the session insert fails.
    let mut failing = login_for("oSecond", 7, KEY_B);
    failing.union_id = union("uSecond");
    let failed_user_id = failing.new_user_id;
    let failed_session_id = failing.session_id;
    let err = store
        .login(failing)
        .await
        .expect_err("a colliding token digest must fail the login");
    assert!(matches!(err, StoreError::Unexpected(_)), "{err:?}");
    let text = err.to_string();
    assert!(
        !text.contains(KEY_B),
        "the error quotes the session key: {text}"
    );
    assert!(
        !text.contains("oSecond"),
        "the error quotes the openid: {text}"
    );

    // The existing session is intact.
    let first = session(&store, 7).await;
    assert_eq!(first.user, existing_user);
    assert_eq!(first.session.session_key, key(KEY_A));
    // No session: the failed login's session id is unknown.
    assert_eq!(
        store.revoke_session(failed_session_id, t0()).await,
        Err(StoreError::NotFound)
    );
    // No identity: the openid's next login creates its user, without the failed unionid.
    let retry = login_for("oSecond", 8, KEY_B);
    let retry_id = retry.new_user_id;
    let retried = login(&store, retry).await;
    assert!(retried.is_new_user, "an identity survived the failed login");
    assert_eq!(retried.user.id, retry_id);
    assert_eq!(retried.user.union_id, None);
    // No user: the failed login's user id is free for another user.
    let mut reuse = login_for("oThird", 9, KEY_C);
    reuse.new_user_id = failed_user_id;
    let reused = store
        .login(reuse)
        .await
        .unwrap_or_else(|e| panic!("the failed login's user survived it: {e}"));
    assert!(reused.is_new_user);
    assert_eq!(reused.user.id, failed_user_id);

    // A failing re-login records nothing on the existing identity either.
    let mut failing_relogin = login_for("oFirst", 8, KEY_B);
    failing_relogin.union_id = union("uFirst");
    assert!(store.login(failing_relogin).await.is_err());
    assert_eq!(session(&store, 7).await.user.union_id, None);
    assert_eq!(session(&store, 8).await.user.id, retry_id);
}

/// A profile change that fails at its last step (the session whose key it rotates does not
/// exist, or belongs to someone else) changes neither the profile, nor `updated_at`, nor the
/// unionid, nor any session key.
pub async fn failed_profile_update_changes_nothing<S: UserStore>(store: S) {
    let first = login_for("oAtomic", 1, KEY_A);
    let session_id = first.session_id;
    let user = login(&store, first).await.user;
    let set_at = t0() + Duration::minutes(5);
    let before = store
        .update_profile(profile_change(user.id, session_id, full_profile(), set_at))
        .await
        .expect("update works");
    let other_login = login_for("oOther", 2, KEY_B);
    let others_session = other_login.session_id;
    let other = login(&store, other_login).await.user;

    let attempt = |session_id: SessionId| {
        let mut change = profile_change(
            user.id,
            session_id,
            Profile {
                nick_name: NickName::parse("Changed").ok(),
                city: ProfileText::place("city", "Shenzhen").ok(),
                gender: Some(Gender::Female),
                ..Profile::default()
            },
            t0() + Duration::minutes(10),
        );
        change.union_id = union("uNever");
        change.rotated_session_key = Some(key(KEY_C));
        change
    };

    for (what, target) in [
        ("an unknown session", SessionId::new()),
        ("another user's session", others_session),
    ] {
        assert_eq!(
            store.update_profile(attempt(target)).await,
            Err(StoreError::NotFound),
            "rotating the key of {what}"
        );
        let after = session(&store, 1).await;
        assert_eq!(after.user, before, "after rotating the key of {what}");
        assert_eq!(after.user.updated_at, set_at);
        assert_eq!(after.user.union_id, None);
        assert_eq!(after.session.session_key, key(KEY_A));
        let others = session(&store, 2).await;
        assert_eq!(others.session.session_key, key(KEY_B));
        assert_eq!(others.user, other);
    }
}

/// Timestamps with nanoseconds come back exactly or truncated to the microsecond (never
/// rounded), wherever they are written; microsecond-precise ones come back exactly.
pub async fn timestamps_round_trip<S: UserStore>(store: S) {
    let now = DateTime::from_timestamp(1_714_550_400, 987_654_321).expect("valid time");
    // Before 2000 (PostgreSQL's epoch) and 1970, where truncating towards zero would round up.
    let expires_at = DateTime::from_timestamp(946_684_799, 999_999_999).expect("valid time");
    let early = DateTime::from_timestamp(-1, 500_000_500).expect("valid time");
    let mut first = login_for("oClock", 1, KEY_A);
    first.now = now;
    first.expires_at = expires_at;
    let session_id = first.session_id;
    let record = login(&store, first).await;
    assert_same_instant(record.user.created_at, now, "user created_at");
    assert_same_instant(record.user.updated_at, now, "user updated_at");

    let found = session(&store, 1).await;
    assert_same_instant(found.session.created_at, now, "session created_at");
    assert_same_instant(found.session.expires_at, expires_at, "expires_at");
    assert_eq!(found.user, record.user, "login and lookup agree");

    let mut second = login_for("oClock2", 2, KEY_A);
    second.now = early;
    second.expires_at = early + Duration::nanoseconds(1);
    login(&store, second).await;
    let found = session(&store, 2).await;
    assert_same_instant(found.session.created_at, early, "pre-1970 created_at");
    assert_same_instant(found.user.created_at, early, "pre-1970 user created_at");
    assert_same_instant(
        found.session.expires_at,
        early + Duration::nanoseconds(1),
        "pre-1970 expires_at",
    );

    let updated_at = now + Duration::nanoseconds(1_234_567);
    let updated = store
        .update_profile(profile_change(
            record.user.id,
            session_id,
            full_profile(),
            updated_at,
        ))
        .await
        .expect("update works");
    assert_same_instant(updated.updated_at, updated_at, "updated_at");
    assert_eq!(updated.created_at, record.user.created_at);

    let revoked_at = now + Duration::nanoseconds(7_654_321);
    store
        .revoke_session(session_id, revoked_at)
        .await
        .expect("revocation works");
    let found = session(&store, 1).await;
    let read = found.session.revoked_at.expect("revoked");
    assert_same_instant(read, revoked_at, "revoked_at");
    assert_eq!(found.user, updated);

    // Microsecond-precise values are kept exactly.
    let exact = DateTime::from_timestamp(1_714_550_400, 1_000).expect("valid time");
    let mut third = login_for("oClock3", 3, KEY_A);
    third.now = exact;
    third.expires_at = exact + Duration::microseconds(1);
    login(&store, third).await;
    let found = session(&store, 3).await;
    assert_eq!(found.session.created_at, exact);
    assert_eq!(found.session.expires_at, exact + Duration::microseconds(1));
    assert_eq!(found.user.created_at, exact);
}

/// `ping` answers on a fresh store, after writes, and concurrently.
pub async fn ping_answers<S: UserStore>(store: S) {
    store.ping().await.expect("ping on a fresh store");
    login(&store, login_for("oPing", 1, KEY_A)).await;
    store.ping().await.expect("ping after a write");
    let pings: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.ping().await })
        })
        .collect();
    for ping in pings {
        let result = ping.await.unwrap_or_else(|e| panic!("ping panicked: {e}"));
        assert_eq!(result, Ok(()));
    }
    // Pinging wrote nothing.
    assert_eq!(session(&store, 1).await.user.profile, Profile::default());
}
