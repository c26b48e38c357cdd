//! The contract cases. Each takes a fresh, empty store and panics on the first broken promise.
//!
//! The semantics are those of the port's documentation, made precise where it is silent
//! (the SQLite adapter was the reference): a re-login neither changes the user nor its
//! timestamps; a unionid is recorded only while none is known; profile updates write only the
//! given fields; `NotFound` for a missing user or session; revoking twice keeps the first time;
//! `last_seen_at` only moves forward; a refresh carries the old session's current key; the
//! purge keeps sessions on its boundaries (`last_seen_at` equal to the cut-off, a revocation
//! later than `now`); and every method is atomic.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Duration, SubsecRound, Utc};
use tokio::sync::Barrier;

use crate::fixtures::{self, KEY_A, KEY_B, KEY_C, app, digest, key, login_at, other_app, union};
use wxlogin_domain::{
    AccessToken, AccessTokenError, AccessTokenNeed, AppId, AvatarChange, AvatarId, AvatarImage,
    AvatarUrl, FetchAccessToken, Gender, ImageKind, NewLogin, NickName, PhoneChange, PhoneNumber,
    Profile, ProfileChange, ProfileText, ProfileUpdate, PurgeBefore, Session, SessionId,
    SessionRecord, SessionRefresh, StoreError, StoredAccessToken, User, UserId, UserStore,
    WeChatError,
};
use wxlogin_domain::{
    ActiveAt, Directory, LOGIN_EVENTS_KEPT, NickNameQuery, OpenId, Stats, StatsQuery, UserSearch,
};

/// How many first logins of one openid race in [`concurrent_first_logins_create_one_user`].
pub const RACERS: u32 = 100;

/// How many refreshes of one session race in [`concurrent_refreshes_let_one_win`].
pub const REFRESHERS: u32 = 16;

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

/// A refresh of `old` at `now` to a new session with the `n`-th digest and a 30-day lifetime.
fn refresh_of(old: SessionId, n: u32, now: DateTime<Utc>) -> SessionRefresh {
    SessionRefresh {
        old_session_id: old,
        new_session_id: SessionId::new(),
        token_digest: digest(n),
        now,
        expires_at: now + Duration::days(30),
    }
}

fn phone_change(user_id: UserId, number: &str, now: DateTime<Utc>) -> PhoneChange {
    PhoneChange {
        app_id: app(),
        user_id,
        phone_number: PhoneNumber::parse(number).expect("valid phone number"),
        now,
    }
}

/// Whether a session with digest `n` exists in the main app.
async fn session_exists<S: UserStore>(store: &S, n: u32) -> bool {
    store
        .find_session(&app(), &digest(n))
        .await
        .unwrap_or_else(|e| panic!("find_session({n}) failed: {e}"))
        .is_some()
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
    assert_eq!(
        a.session.last_seen_at,
        t0(),
        "a login is the session's first use"
    );

    let b = session(&store, 2).await;
    assert_eq!(b.session.id, session_b);
    assert_eq!(b.session.token_digest, digest(2));
    assert_eq!(b.session.created_at, t0() + Duration::minutes(1));
    assert_eq!(b.session.last_seen_at, t0() + Duration::minutes(1));
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
    assert_eq!(revoked.session.last_seen_at, before.session.last_seen_at);
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

/// Identities of two apps with the same unionid are one user: a first login in a second app
/// joins the user that the first app's identity belongs to (not a new user, whose profile and
/// phone number it shares), and each app sees the user with its own openid. Without a unionid,
/// or with another, a first login creates a user of its own.
pub async fn union_id_links_the_identities_of_two_apps<S: UserStore>(store: S) {
    let mut in_first = login_for("oShopA", 1, KEY_A);
    in_first.union_id = union("uPerson");
    let first = login(&store, in_first).await;
    let profile_login_id = session(&store, 1).await.session.id;
    store
        .update_profile(profile_change(
            first.user.id,
            profile_login_id,
            full_profile(),
            t0() + Duration::minutes(1),
        ))
        .await
        .expect("update works");

    let mut in_second = login_for("oShopB", 2, KEY_B);
    in_second.app_id = other_app();
    in_second.union_id = union("uPerson");
    let second = login(&store, in_second).await;
    assert_eq!(second.user.id, first.user.id, "one person, one user");
    assert!(!second.is_new_user, "the user existed before");
    assert_eq!(
        second.user.open_id.as_str(),
        "oShopB",
        "the second app's openid"
    );
    assert_eq!(second.user.union_id, union("uPerson"));
    assert_eq!(second.user.profile, full_profile(), "the profile is shared");
    let found = store
        .find_session(&other_app(), &digest(2))
        .await
        .expect("find_session works")
        .expect("the second app's session exists");
    assert_eq!(found.user.id, first.user.id);
    assert_eq!(found.user.open_id.as_str(), "oShopB");
    // The first app still sees its own openid; a second login in either app is a returning one.
    assert_eq!(session(&store, 1).await.user.open_id.as_str(), "oShopA");
    let mut again = login_for("oShopB", 3, KEY_B);
    again.app_id = other_app();
    again.union_id = union("uPerson");
    let again = login(&store, again).await;
    assert_eq!(again.user.id, first.user.id);
    assert!(!again.is_new_user);

    // Another unionid, or none, in the second app: users of their own.
    let mut stranger = login_for("oStranger", 4, KEY_C);
    stranger.app_id = other_app();
    stranger.union_id = union("uSomeoneElse");
    let stranger = login(&store, stranger).await;
    assert!(stranger.is_new_user);
    assert_ne!(stranger.user.id, first.user.id);
    let mut anonymous = login_for("oNoUnion", 5, KEY_C);
    anonymous.app_id = other_app();
    let anonymous = login(&store, anonymous).await;
    assert!(anonymous.is_new_user);
    assert_ne!(anonymous.user.id, first.user.id);
    assert_ne!(anonymous.user.id, stranger.user.id);

    // The person's user already has an identity in the second app: another openid there with
    // the same unionid cannot join it (one identity per user and app), and gets a user of its
    // own, which keeps the unionid it came with.
    let mut second_openid = login_for("oShopB2", 6, KEY_C);
    second_openid.app_id = other_app();
    second_openid.union_id = union("uPerson");
    let second_openid = login(&store, second_openid).await;
    assert!(second_openid.is_new_user);
    assert_ne!(second_openid.user.id, first.user.id);
    assert_eq!(second_openid.user.open_id.as_str(), "oShopB2");
    assert_eq!(second_openid.user.union_id, union("uPerson"));
}

/// First logins of one person (one unionid) in two apps at once, many times over, end with one
/// user per person, never two.
pub async fn concurrent_first_logins_in_two_apps_make_one_user<S: UserStore>(store: S) {
    warm_up(&store, RACERS).await;
    let people = RACERS / 2;
    let start = Arc::new(Barrier::new((people * 2) as usize));
    let tasks: Vec<_> = (0..people * 2)
        .map(|n| {
            let store = store.clone();
            let start = Arc::clone(&start);
            let person = n / 2;
            let mut racer = login_for(&format!("oRacer{n}"), 1000 + n, KEY_A);
            racer.union_id = union(&format!("uRacer{person}"));
            if n % 2 == 1 {
                racer.app_id = other_app();
            }
            tokio::spawn(async move {
                start.wait().await;
                (person, store.login(racer).await)
            })
        })
        .collect();
    let mut user_of: HashMap<u32, Vec<UserId>> = HashMap::new();
    for (n, task) in tasks.into_iter().enumerate() {
        let (person, result) = task
            .await
            .unwrap_or_else(|e| panic!("login task {n} panicked: {e}"));
        let record = result.unwrap_or_else(|e| panic!("concurrent login {n} failed: {e}"));
        user_of.entry(person).or_default().push(record.user.id);
    }
    for (person, ids) in &user_of {
        assert_eq!(ids.len(), 2);
        assert_eq!(
            ids[0], ids[1],
            "person {person}: first logins in two apps created two users"
        );
    }
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

/// How many logins race in [`a_failing_login_among_concurrent_ones_fails_alone`] besides the
/// failing one.
pub const BATCH: u32 = 40;

/// Logins arriving together (which a store may write in one transaction) succeed or fail each
/// on its own: the one whose token digest collides with another's fails, every other one is
/// answered and kept, and the failed one leaves nothing.
pub async fn a_failing_login_among_concurrent_ones_fails_alone<S: UserStore>(store: S) {
    warm_up(&store, BATCH + 1).await;
    let start = Arc::new(Barrier::new(BATCH as usize + 1));
    let mut logins: Vec<(String, NewLogin)> = (0..BATCH)
        .map(|n| {
            let open_id = format!("oBatch{n}");
            let login = login_for(&open_id, 100 + n, KEY_A);
            (open_id, login)
        })
        .collect();
    // The same digest as the first one's.
    logins.push(("oBatchDup".into(), login_for("oBatchDup", 100, KEY_B)));
    let tasks: Vec<_> = logins
        .into_iter()
        .map(|(open_id, login)| {
            let (store, start) = (store.clone(), Arc::clone(&start));
            tokio::spawn(async move {
                start.wait().await;
                (open_id, store.login(login).await)
            })
        })
        .collect();
    let mut failed = Vec::new();
    for task in tasks {
        let (open_id, result) = task.await.expect("login task panicked");
        match result {
            Ok(record) => {
                assert_eq!(record.user.open_id.as_str(), open_id);
                assert!(record.is_new_user, "{open_id}");
            }
            Err(e) => failed.push((open_id, e)),
        }
    }
    assert_eq!(failed.len(), 1, "exactly one login collides: {failed:?}");
    let (loser, err) = &failed[0];
    assert!(matches!(err, StoreError::Unexpected(_)), "{err:?}");
    assert!(loser == "oBatch0" || loser == "oBatchDup", "{loser} failed");
    for n in 1..BATCH {
        let found = session(&store, 100 + n).await;
        assert_eq!(found.user.open_id.as_str(), format!("oBatch{n}"));
    }
    // The winner of digest 100 holds it; the loser's openid has no user yet.
    let winner = if loser == "oBatch0" {
        "oBatchDup"
    } else {
        "oBatch0"
    };
    assert_eq!(session(&store, 100).await.user.open_id.as_str(), winner);
    let retried = login(&store, login_for(loser, 100 + BATCH, KEY_C)).await;
    assert!(retried.is_new_user, "the failed login left its user behind");
}

/// Concurrent logins of the same users in opposite orders all succeed (a store that writes
/// logins together must not deadlock over them, or must recover when the database breaks a
/// deadlock), and each openid still has one user.
pub async fn concurrent_logins_in_opposite_orders_make_one_user_each<S: UserStore>(store: S) {
    const USERS: u32 = 24;
    const CLIENTS: u32 = 4;
    warm_up(&store, CLIENTS * 2).await;
    // Several rounds, each with users of its own: a store that races (rather than deadlocks)
    // shows it in one of them.
    for round in 0..3 {
        let start = Arc::new(Barrier::new(CLIENTS as usize));
        let tasks: Vec<_> = (0..CLIENTS)
            .map(|client| {
                let (store, start) = (store.clone(), Arc::clone(&start));
                tokio::spawn(async move {
                    start.wait().await;
                    // Each client's logins in flight together, so a store may batch them.
                    let logins: Vec<_> = (0..USERS)
                        .map(|i| {
                            let user = if client % 2 == 0 { i } else { USERS - 1 - i };
                            let n = round * 10_000 + client * 1000 + user;
                            let login = login_for(&format!("oOrder{round}-{user}"), n, KEY_A);
                            let store = store.clone();
                            (user, tokio::spawn(async move { store.login(login).await }))
                        })
                        .collect();
                    let mut done = Vec::new();
                    for (user, login) in logins {
                        done.push((user, login.await.expect("login panicked")));
                    }
                    done
                })
            })
            .collect();
        let mut users: HashMap<u32, Vec<(UserId, bool)>> = HashMap::new();
        for task in tasks {
            for (user, result) in task.await.expect("client panicked") {
                let open_id = format!("oOrder{round}-{user}");
                let record = result.unwrap_or_else(|e| panic!("login of {open_id} failed: {e}"));
                assert_eq!(record.user.open_id.as_str(), open_id);
                users
                    .entry(user)
                    .or_default()
                    .push((record.user.id, record.is_new_user));
            }
        }
        assert_eq!(users.len(), USERS as usize);
        for (user, records) in &users {
            let open_id = format!("oOrder{round}-{user}");
            assert_eq!(records.len(), CLIENTS as usize, "{open_id}");
            let ids: HashSet<UserId> = records.iter().map(|(id, _)| *id).collect();
            assert_eq!(ids.len(), 1, "{open_id} got {} users", ids.len());
            let created = records.iter().filter(|(_, new)| *new).count();
            assert_eq!(created, 1, "{open_id} was created {created} times");
        }
    }
}

fn avatar_change(user_id: UserId, bytes: &[u8], now: DateTime<Utc>) -> AvatarChange {
    let avatar_id = AvatarId::new();
    AvatarChange {
        app_id: app(),
        user_id,
        avatar_id,
        image: AvatarImage::parse(bytes.to_vec()).expect("a test image"),
        url: AvatarUrl::parse(&format!("https://wx.example.com/avatars/{avatar_id}"))
            .expect("valid URL"),
        now,
    }
}

/// A PNG signature and a few bytes: what [`AvatarImage::parse`] accepts.
const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR-one";
/// A JPEG's first bytes.
const JPEG: &[u8] = &[0xFF, 0xD8, 0xFF, 0xE0, 0, 16, b'J', b'F', b'I', b'F', 0];

/// An uploaded avatar is kept with its format and bytes, and the user's `avatar_url` points at
/// it; the next upload replaces it (the earlier one is gone); an upload for a user that is
/// gone is `NotFound` and keeps nothing; erasing the user deletes the avatar.
pub async fn an_avatar_replaces_the_earlier_one_and_goes_with_the_user<S: UserStore>(store: S) {
    let user = login(&store, login_for("oAvatar", 1, KEY_A)).await.user;
    let later = t0() + Duration::seconds(5);
    let first = avatar_change(user.id, PNG, later);
    let (first_id, first_url) = (first.avatar_id, first.url.clone());
    let updated = store.set_avatar(first).await.expect("set_avatar");
    assert_eq!(updated.profile.avatar_url.as_ref(), Some(&first_url));
    assert_same_instant(updated.updated_at, later, "updated_at");
    assert_eq!(updated.open_id.as_str(), "oAvatar");
    let stored = store.avatar(first_id).await.expect("avatar").expect("kept");
    assert_eq!(stored.kind, ImageKind::Png);
    assert_eq!(stored.bytes, PNG);
    assert_same_instant(stored.created_at, later, "created_at");
    assert_eq!(
        session(&store, 1).await.user.profile.avatar_url,
        Some(first_url)
    );

    let second = avatar_change(user.id, JPEG, later + Duration::seconds(1));
    let (second_id, second_url) = (second.avatar_id, second.url.clone());
    let updated = store.set_avatar(second).await.expect("second set_avatar");
    assert_eq!(updated.profile.avatar_url, Some(second_url));
    assert_eq!(
        store.avatar(first_id).await.expect("avatar"),
        None,
        "the earlier upload stays"
    );
    let stored = store
        .avatar(second_id)
        .await
        .expect("avatar")
        .expect("kept");
    assert_eq!(
        (stored.kind, stored.bytes.as_slice()),
        (ImageKind::Jpeg, JPEG)
    );

    let gone = avatar_change(UserId::new(), PNG, later);
    let gone_id = gone.avatar_id;
    assert_eq!(store.set_avatar(gone).await, Err(StoreError::NotFound));
    assert_eq!(store.avatar(gone_id).await.expect("avatar"), None);

    store.erase_user(user.id).await.expect("erase");
    assert_eq!(
        store.avatar(second_id).await.expect("avatar"),
        None,
        "the avatar outlived its user"
    );
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

/// A refresh revokes the old session at its time and inserts the new one: same user, app and
/// session key (the old session's current key, rotated or not), the new digest and expiry,
/// created and last seen at the refresh. The user's other sessions are untouched, and the new
/// session can be refreshed in turn.
pub async fn refresh_rotates_the_token<S: UserStore>(store: S) {
    let first = login_for("oRefresh", 1, KEY_A);
    let old_id = first.session_id;
    let user = login(&store, first).await.user;
    // The key changed since the login: the refresh carries the current one.
    store
        .rotate_session_key(old_id, key(KEY_C))
        .await
        .expect("rotation works");
    login(&store, login_for("oRefresh", 2, KEY_B)).await;
    let before = session(&store, 1).await;

    let at = t0() + Duration::hours(1);
    let mut refresh = refresh_of(old_id, 3, at);
    refresh.expires_at = at + Duration::days(2);
    let new_id = refresh.new_session_id;
    store.refresh_session(refresh).await.expect("refresh works");

    let old = session(&store, 1).await;
    assert_eq!(old.session.revoked_at, Some(at), "the old token dies");
    assert_eq!(old.session.expires_at, before.session.expires_at);
    assert_eq!(old.session.last_seen_at, before.session.last_seen_at);
    assert_eq!(old.session.session_key, key(KEY_C));

    let new = session(&store, 3).await;
    assert_eq!(new.user, user, "the new token finds the same user");
    assert_eq!(new.session.id, new_id);
    assert_eq!(new.session.user_id, user.id);
    assert_eq!(new.session.token_digest, digest(3));
    assert_eq!(
        new.session.session_key,
        key(KEY_C),
        "the key is carried over"
    );
    assert_eq!(new.session.created_at, at);
    assert_eq!(new.session.last_seen_at, at);
    assert_eq!(new.session.expires_at, at + Duration::days(2));
    assert_eq!(new.session.revoked_at, None);
    let cross = store.find_session(&other_app(), &digest(3)).await;
    assert!(
        matches!(cross, Ok(None)),
        "the new session's app: {cross:?}"
    );

    let other = session(&store, 2).await;
    assert_eq!(other.session.revoked_at, None, "other sessions stay");
    assert_eq!(other.session.session_key, key(KEY_B));

    // A chain: the new session refreshes in turn.
    let later = at + Duration::hours(1);
    store
        .refresh_session(refresh_of(new_id, 4, later))
        .await
        .expect("refreshing the new session works");
    assert_eq!(session(&store, 3).await.session.revoked_at, Some(later));
    let newest = session(&store, 4).await;
    assert_eq!(newest.user, user);
    assert_eq!(newest.session.session_key, key(KEY_C));
    assert_eq!(newest.session.expires_at, later + Duration::days(30));

    // Another app's session stays in its app.
    let mut elsewhere = login_for("oRefresh", 5, KEY_B);
    elsewhere.app_id = other_app();
    let elsewhere_id = elsewhere.session_id;
    let elsewhere_user = login(&store, elsewhere).await.user;
    store
        .refresh_session(refresh_of(elsewhere_id, 6, later))
        .await
        .expect("refresh in another app works");
    assert!(!session_exists(&store, 6).await, "the app is carried over");
    let moved = store
        .find_session(&other_app(), &digest(6))
        .await
        .expect("find_session works")
        .expect("the refreshed session is in its own app");
    assert_eq!(moved.user, elsewhere_user);
    assert_eq!(moved.session.session_key, key(KEY_B));
}

/// Refreshing a revoked (logged out, or already refreshed) or unknown session is `NotFound`
/// and writes nothing: no new session, the first revocation time stands, and the refused
/// refresh's id and digest stay free.
pub async fn refresh_of_an_ended_session_is_not_found<S: UserStore>(store: S) {
    let first = login_for("oEnded", 1, KEY_A);
    let logged_out = first.session_id;
    login(&store, first).await;
    let revoked_at = t0() + Duration::minutes(1);
    store
        .revoke_session(logged_out, revoked_at)
        .await
        .expect("revocation works");

    let at = t0() + Duration::minutes(2);
    let refused = refresh_of(logged_out, 2, at);
    let refused_id = refused.new_session_id;
    assert_eq!(
        store.refresh_session(refused.clone()).await,
        Err(StoreError::NotFound),
        "refreshing a logged-out session"
    );
    assert!(
        !session_exists(&store, 2).await,
        "a refused refresh inserted a session"
    );
    assert_eq!(
        store.revoke_session(refused_id, at).await,
        Err(StoreError::NotFound),
        "the refused refresh's session exists"
    );
    assert_eq!(
        session(&store, 1).await.session.revoked_at,
        Some(revoked_at),
        "the logout's time stands"
    );

    assert_eq!(
        store
            .refresh_session(refresh_of(SessionId::new(), 3, at))
            .await,
        Err(StoreError::NotFound),
        "refreshing an unknown session"
    );
    assert!(!session_exists(&store, 3).await);

    // A refreshed session is revoked: refreshing it again (a replayed refresh) is refused.
    let live = login_for("oEnded", 4, KEY_B);
    let live_id = live.session_id;
    login(&store, live).await;
    store
        .refresh_session(refresh_of(live_id, 5, at))
        .await
        .expect("refresh works");
    assert_eq!(
        store
            .refresh_session(refresh_of(live_id, 6, at + Duration::minutes(1)))
            .await,
        Err(StoreError::NotFound),
        "refreshing a refreshed session"
    );
    assert!(!session_exists(&store, 6).await);
    assert_eq!(session(&store, 4).await.session.revoked_at, Some(at));
    assert_eq!(session(&store, 5).await.session.revoked_at, None);

    // The refused refresh left its id and digest free.
    let mut retry = refresh_of(session(&store, 5).await.session.id, 2, at);
    retry.new_session_id = refused_id;
    store
        .refresh_session(retry)
        .await
        .expect("the refused refresh's id and digest are free");
    assert_eq!(session(&store, 2).await.session.id, refused_id);
}

/// [`REFRESHERS`] refreshes of one session at once: exactly one succeeds, every other is
/// `NotFound` (not a deadlock, a lock timeout or `database is locked`), and only the winner's
/// session exists.
pub async fn concurrent_refreshes_let_one_win<S: UserStore>(store: S) {
    let first = login_for("oRacingRefresh", 0, KEY_A);
    let old_id = first.session_id;
    let user = login(&store, first).await.user;
    warm_up(&store, REFRESHERS).await;

    let at = t0() + Duration::minutes(1);
    let start = Arc::new(Barrier::new(REFRESHERS as usize));
    let tasks: Vec<_> = (1..=REFRESHERS)
        .map(|n| {
            let store = store.clone();
            let start = Arc::clone(&start);
            tokio::spawn(async move {
                start.wait().await;
                store.refresh_session(refresh_of(old_id, n, at)).await
            })
        })
        .collect();
    let mut winners = Vec::new();
    for (task, n) in tasks.into_iter().zip(1..) {
        let result = task
            .await
            .unwrap_or_else(|e| panic!("refresh task {n} panicked: {e}"));
        match result {
            Ok(()) => winners.push(n),
            Err(StoreError::NotFound) => {}
            Err(e) => panic!("concurrent refresh {n} failed: {e}"),
        }
    }
    assert_eq!(winners.len(), 1, "winning refreshes: {winners:?}");

    let mut found = Vec::new();
    for n in 1..=REFRESHERS {
        if session_exists(&store, n).await {
            found.push(n);
        }
    }
    assert_eq!(found, winners, "the sessions the refreshes left");
    let new = session(&store, winners[0]).await;
    assert_eq!(new.user, user);
    assert_eq!(new.session.session_key, key(KEY_A));
    assert_eq!(session(&store, 0).await.session.revoked_at, Some(at));
}

/// A refresh that fails after revoking the old session (the new digest collides with an
/// existing session's) changes nothing: the old session is still live with its key, no new
/// session exists, and the old session refreshes fine afterwards. The error quotes no value.
pub async fn failed_refresh_changes_nothing<S: UserStore>(store: S) {
    let first = login_for("oHalfRefresh", 1, KEY_A);
    let old_id = first.session_id;
    login(&store, first).await;
    login(&store, login_for("oOtherRefresh", 2, KEY_B)).await;
    let before = session(&store, 1).await;
    let others = session(&store, 2).await;

    let at = t0() + Duration::minutes(1);
    // The digest of session 2: the revocation succeeds, the insert fails.
    let failing = refresh_of(old_id, 2, at);
    let failed_id = failing.new_session_id;
    let err = store
        .refresh_session(failing)
        .await
        .expect_err("a colliding token digest must fail the refresh");
    assert!(matches!(err, StoreError::Unexpected(_)), "{err:?}");
    let text = err.to_string();
    assert!(
        !text.contains(KEY_A),
        "the error quotes the session key: {text}"
    );

    let after = session(&store, 1).await;
    assert_eq!(
        after.session, before.session,
        "the old session is untouched"
    );
    assert_eq!(after.session.revoked_at, None);
    assert_eq!(session(&store, 2).await.session, others.session);
    assert_eq!(
        store.revoke_session(failed_id, at).await,
        Err(StoreError::NotFound),
        "the failed refresh's session exists"
    );

    store
        .refresh_session(refresh_of(old_id, 3, at))
        .await
        .expect("the old session is still live");
    assert_eq!(session(&store, 3).await.session.session_key, key(KEY_A));
}

/// Touching moves `last_seen_at` forward (never back), which `find_session` then returns;
/// it changes nothing else, touches no other session, and is `Ok` for an unknown session.
pub async fn touch_moves_last_seen_forward_only<S: UserStore>(store: S) {
    let first = login_for("oTouch", 1, KEY_A);
    let session_id = first.session_id;
    let user = login(&store, first).await.user;
    login(&store, login_for("oTouch", 2, KEY_B)).await;
    let before = session(&store, 1).await;
    assert_eq!(
        before.session.last_seen_at,
        t0(),
        "a login is the session's first use"
    );

    let seen = t0() + Duration::minutes(5);
    store
        .touch_session(session_id, seen)
        .await
        .expect("touch works");
    let touched = session(&store, 1).await;
    assert_eq!(touched.session.last_seen_at, seen);
    assert_eq!(
        Session {
            last_seen_at: before.session.last_seen_at,
            ..touched.session.clone()
        },
        before.session,
        "a touch changes only last_seen_at"
    );
    assert_eq!(touched.user, user, "a touch is no profile write");

    // A touch from an instance whose clock runs behind, or a late one: never back.
    for earlier in [t0() + Duration::minutes(2), t0() - Duration::days(1)] {
        store
            .touch_session(session_id, earlier)
            .await
            .expect("an earlier touch works");
        assert_eq!(session(&store, 1).await.session.last_seen_at, seen);
    }
    store
        .touch_session(session_id, seen)
        .await
        .expect("the same touch again works");
    assert_eq!(session(&store, 1).await.session.last_seen_at, seen);
    let later = seen + Duration::microseconds(1);
    store
        .touch_session(session_id, later)
        .await
        .expect("a later touch works");
    assert_eq!(session(&store, 1).await.session.last_seen_at, later);

    assert_eq!(
        session(&store, 2).await.session.last_seen_at,
        t0(),
        "other sessions are not touched"
    );
    assert_eq!(
        store.touch_session(SessionId::new(), later).await,
        Ok(()),
        "a session gone meanwhile is no error"
    );
}

/// A phone number is recorded (and replaced) with `updated_at`, returned as seen by the app,
/// persisted, kept by profile changes and re-logins; `NotFound` for an unknown user or a user
/// without an identity in the app, which writes nothing.
pub async fn phone_number_is_recorded<S: UserStore>(store: S) {
    let first = login_for("oPhone", 1, KEY_A);
    let session_id = first.session_id;
    let user = login(&store, first).await.user;
    let bystander = login(&store, login_for("oNoPhone", 2, KEY_B)).await.user;

    let at = t0() + Duration::minutes(5);
    let updated = store
        .set_phone_number(phone_change(user.id, "+86 138-0013-8000", at))
        .await
        .expect("setting the phone number works");
    assert_eq!(updated.phone_number.as_deref(), Some("+86 138-0013-8000"));
    assert_eq!(updated.updated_at, at);
    assert_eq!(
        User {
            phone_number: None,
            updated_at: user.updated_at,
            ..updated.clone()
        },
        user,
        "only the phone number and updated_at change"
    );
    assert_eq!(session(&store, 1).await.user, updated, "persisted");

    let later = t0() + Duration::minutes(6);
    let replaced = store
        .set_phone_number(phone_change(user.id, "13800138000", later))
        .await
        .expect("replacing the phone number works");
    assert_eq!(replaced.phone_number.as_deref(), Some("13800138000"));
    assert_eq!(replaced.updated_at, later);
    assert_eq!(session(&store, 1).await.user, replaced);

    // Kept by what else writes the user.
    let profiled = store
        .update_profile(profile_change(
            user.id,
            session_id,
            full_profile(),
            later + Duration::minutes(1),
        ))
        .await
        .expect("profile update works");
    assert_eq!(profiled.phone_number.as_deref(), Some("13800138000"));
    let relogin = login(&store, login_for("oPhone", 3, KEY_A)).await;
    assert_eq!(relogin.user, profiled);

    assert_eq!(
        session(&store, 2).await.user,
        bystander,
        "nobody else changed"
    );
    assert_eq!(
        store
            .set_phone_number(phone_change(UserId::new(), "13800138000", later))
            .await,
        Err(StoreError::NotFound)
    );
    let mut wrong_app = phone_change(user.id, "+1 555 0100", later + Duration::minutes(2));
    wrong_app.app_id = other_app();
    assert_eq!(
        store.set_phone_number(wrong_app).await,
        Err(StoreError::NotFound)
    );
    assert_eq!(
        session(&store, 1).await.user,
        profiled,
        "the refused change wrote nothing"
    );
}

/// Erasing a user removes it with its identity, sessions (every token stops working and every
/// session id is unknown) and phone number; nobody else changes; a later login of the same
/// openid creates a new user.
pub async fn erasure_removes_the_user_and_all_of_it<S: UserStore>(store: S) {
    let mut first = login_for("oErase", 1, KEY_A);
    first.union_id = union("uErase");
    let session_id = first.session_id;
    let user = login(&store, first).await.user;
    login(&store, login_for("oErase", 2, KEY_B)).await;
    store
        .set_phone_number(phone_change(user.id, "13800138000", t0()))
        .await
        .expect("setting the phone number works");
    let bystander = login(&store, login_for("oStays", 3, KEY_C)).await;

    store.erase_user(user.id).await.expect("erasure works");

    for n in [1, 2] {
        assert!(
            !session_exists(&store, n).await,
            "session {n} outlived its user"
        );
    }
    let at = t0() + Duration::minutes(1);
    assert_eq!(
        store.revoke_session(session_id, at).await,
        Err(StoreError::NotFound),
        "the session row is gone, not just hidden"
    );
    assert_eq!(
        store.rotate_session_key(session_id, key(KEY_C)).await,
        Err(StoreError::NotFound)
    );
    assert_eq!(
        store.refresh_session(refresh_of(session_id, 4, at)).await,
        Err(StoreError::NotFound)
    );
    assert_eq!(
        store
            .update_profile(profile_change(user.id, session_id, full_profile(), at))
            .await,
        Err(StoreError::NotFound)
    );
    assert_eq!(
        store
            .set_phone_number(phone_change(user.id, "13800138000", at))
            .await,
        Err(StoreError::NotFound)
    );

    let kept = session(&store, 3).await;
    assert_eq!(kept.user, bystander.user, "nobody else is erased");

    let again = login_for("oErase", 5, KEY_A);
    let proposed = again.new_user_id;
    let again = login(&store, again).await;
    assert!(again.is_new_user, "the identity outlived its user");
    assert_eq!(again.user.id, proposed);
    assert_ne!(again.user.id, user.id);
    assert_eq!(
        again.user.union_id, None,
        "the unionid went with the identity"
    );
    assert_eq!(
        again.user.phone_number, None,
        "the phone number went with the user"
    );
    assert_eq!(again.user.profile, Profile::default());
    assert!(!session_exists(&store, 1).await);
    assert_eq!(session(&store, 5).await.user, again.user);
}

/// Erasing an unknown (or already erased) user is `NotFound` and erases nobody.
pub async fn erasing_an_unknown_user_is_not_found<S: UserStore>(store: S) {
    assert_eq!(
        store.erase_user(UserId::new()).await,
        Err(StoreError::NotFound),
        "on an empty store"
    );
    let user = login(&store, login_for("oSurvivor", 1, KEY_A)).await.user;
    assert_eq!(
        store.erase_user(UserId::new()).await,
        Err(StoreError::NotFound)
    );
    assert_eq!(session(&store, 1).await.user, user);
    store.erase_user(user.id).await.expect("erasure works");
    assert_eq!(
        store.erase_user(user.id).await,
        Err(StoreError::NotFound),
        "erasing twice"
    );
}

/// The purge deletes exactly the sessions that ended by [`PurgeBefore`], in every app:
/// revoked at or before `now`, expired at or before `now`, or last seen before `last_seen`
/// (the idle timeout counts from the last use, not from the login). It keeps the rest (a
/// revocation stamped later than `now` included), returns how many it deleted, and deletes
/// no user.
pub async fn purge_deletes_exactly_the_ended_sessions<S: UserStore>(store: S) {
    let now = t0() + Duration::days(10);
    let last_seen = now - Duration::days(7);
    let before = PurgeBefore { now, last_seen };
    let us = Duration::microseconds(1);

    // (digest, login time, expiry, revocation, touched at, purged?)
    type Case = (
        u32,
        DateTime<Utc>,
        DateTime<Utc>,
        Option<DateTime<Utc>>,
        Option<DateTime<Utc>>,
        bool,
    );
    let hour = Duration::hours(1);
    let month = Duration::days(30);
    let cases: [Case; 9] = [
        (1, now - hour, now + month, None, None, false),
        (2, now - hour, now + month, Some(now), None, true),
        (
            3,
            now - hour,
            now + month,
            Some(now - Duration::days(1)),
            None,
            true,
        ),
        (4, now - hour, now + month, Some(now + us), None, false),
        (5, now - hour, now, None, None, true),
        (6, now - hour, now + us, None, None, false),
        (7, last_seen - us, now + month, None, None, true),
        (8, last_seen, now + month, None, None, false),
        (9, t0(), now + month, None, Some(now - hour), false),
    ];
    let mut ids = Vec::new();
    for (n, created, expires_at, revoked, touched, _) in cases {
        let mut l = login_at("oPurge", n, KEY_A, created);
        l.expires_at = expires_at;
        let id = l.session_id;
        login(&store, l).await;
        if let Some(at) = revoked {
            store
                .revoke_session(id, at)
                .await
                .expect("revocation works");
        }
        if let Some(at) = touched {
            store.touch_session(id, at).await.expect("touch works");
        }
        ids.push(id);
    }
    // Another app's ended session goes too.
    let mut elsewhere = login_at("oPurge", 10, KEY_B, now - hour);
    elsewhere.app_id = other_app();
    elsewhere.expires_at = now - hour;
    login(&store, elsewhere).await;

    let purged = store.purge_sessions(before).await.expect("purge works");
    let expected = cases.iter().filter(|c| c.5).count() as u64 + 1;
    assert_eq!(purged, expected, "the count of purged sessions");
    for ((n, .., purged), id) in cases.iter().zip(&ids) {
        assert_eq!(
            session_exists(&store, *n).await,
            !purged,
            "session {n} (purged: {purged})"
        );
        if *purged {
            assert_eq!(
                store.revoke_session(*id, now).await,
                Err(StoreError::NotFound),
                "session {n} is deleted, not hidden"
            );
        }
    }
    let gone = store.find_session(&other_app(), &digest(10)).await;
    assert!(
        matches!(gone, Ok(None)),
        "another app's ended session: {gone:?}"
    );

    assert_eq!(
        store.purge_sessions(before).await,
        Ok(0),
        "a second purge finds nothing"
    );
    // Users stay: the openid's next login is a returning one.
    let again = login(&store, login_for("oPurge", 11, KEY_A)).await;
    assert!(!again.is_new_user, "the purge deleted a user");
}

/// The instant the access-token cases start from (whole microseconds: every store keeps it).
fn token_time() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).expect("valid")
}

/// What the service asks at `now`: five minutes of margin, a refetch interval of one minute,
/// a lease of 30 seconds.
fn need_at(now: DateTime<Utc>) -> AccessTokenNeed {
    AccessTokenNeed {
        now,
        fresh_until: now + Duration::minutes(5),
        fetched_after: now - Duration::minutes(1),
        lease: Duration::seconds(30),
    }
}

/// [`need_at`] with no refetch interval: any token inside the margin is fetched again.
fn need_fetched_since(now: DateTime<Utc>) -> AccessTokenNeed {
    AccessTokenNeed {
        fetched_after: now,
        ..need_at(now)
    }
}

type Calls = Arc<std::sync::atomic::AtomicU32>;

fn calls() -> Calls {
    Arc::new(std::sync::atomic::AtomicU32::new(0))
}

fn count(calls: &Calls) -> u32 {
    calls.load(std::sync::atomic::Ordering::SeqCst)
}

fn token_of(token: &str, fetched_at: DateTime<Utc>, ttl: Duration) -> StoredAccessToken {
    StoredAccessToken {
        token: AccessToken::new(token.into()),
        expires_at: fetched_at + ttl,
        fetched_at,
    }
}

/// A fetch that counts its calls and answers `token`, fetched at `at` and valid for `ttl`.
fn fetch_of(
    calls: &Calls,
    token: &'static str,
    at: DateTime<Utc>,
    ttl: Duration,
) -> FetchAccessToken {
    let calls = Arc::clone(calls);
    Box::new(move || {
        Box::pin(async move {
            calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(token_of(token, at, ttl))
        })
    })
}

/// A fetch that counts its calls and answers `token`, valid for two hours from `at`.
fn counting_fetch(
    calls: &Calls,
    token: &'static str,
    at: DateTime<Utc>,
    delay: std::time::Duration,
) -> FetchAccessToken {
    let calls = Arc::clone(calls);
    Box::new(move || {
        Box::pin(async move {
            calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::time::sleep(delay).await;
            Ok(token_of(token, at, Duration::hours(2)))
        })
    })
}

fn failing_fetch() -> FetchAccessToken {
    Box::new(|| Box::pin(async { Err(WeChatError::Unavailable("down".into())) }))
}

/// A fetch of `token` (at `at`, for two hours) that reports when it has begun and answers once
/// the test lets it go. Should a broken store keep the test from ever letting it go, it goes
/// on by itself after a few seconds, so the case fails instead of hanging.
struct GatedFetch {
    fetch: FetchAccessToken,
    begun: tokio::sync::oneshot::Receiver<()>,
    go: tokio::sync::oneshot::Sender<()>,
}

fn gated_fetch(calls: &Calls, token: &'static str, at: DateTime<Utc>) -> GatedFetch {
    let calls = Arc::clone(calls);
    let (begun_tx, begun) = tokio::sync::oneshot::channel();
    let (go, go_rx) = tokio::sync::oneshot::channel::<()>();
    let fetch: FetchAccessToken = Box::new(move || {
        Box::pin(async move {
            calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let _ = begun_tx.send(());
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), go_rx).await;
            Ok(token_of(token, at, Duration::hours(2)))
        })
    });
    GatedFetch { fetch, begun, go }
}

async fn token_for<S: UserStore>(
    store: &S,
    app: &AppId,
    need: AccessTokenNeed,
    fetch: FetchAccessToken,
) -> String {
    store
        .access_token(app, need, fetch)
        .await
        .expect("an access token")
        .token
        .expose()
        .to_owned()
}

/// The first caller fetches and the store keeps the token with its expiry and fetch time;
/// later callers get it without a fetch, and a failed fetch stores nothing.
pub async fn the_access_token_is_fetched_once_and_shared<S: UserStore>(store: S) {
    let app = app();
    let calls = calls();
    let at = token_time();
    let first = store
        .access_token(
            &app,
            need_at(at),
            counting_fetch(&calls, "AT-1", at, Default::default()),
        )
        .await
        .expect("fetched");
    assert_eq!(first, token_of("AT-1", at, Duration::hours(2)));
    let again = store
        .access_token(
            &app,
            need_at(at + Duration::minutes(90)),
            counting_fetch(&calls, "AT-2", at, Default::default()),
        )
        .await
        .expect("stored");
    assert_eq!(again, first, "the stored token, not a new fetch");
    assert_eq!(count(&calls), 1);

    let other = other_app();
    assert_eq!(
        store
            .access_token(&other, need_at(at), failing_fetch())
            .await,
        Err(AccessTokenError::WeChat(WeChatError::Unavailable(
            "down".into()
        )))
    );
    let fresh = token_for(
        &store,
        &other,
        need_at(at),
        counting_fetch(&calls, "AT-OTHER", at, Default::default()),
    )
    .await;
    assert_eq!(
        fresh, "AT-OTHER",
        "apps are independent, the failure left nothing"
    );
}

/// A token inside the margin and fetched before the interval is replaced; forgetting applies
/// only to the token still stored.
pub async fn a_stale_or_forgotten_access_token_is_fetched_anew<S: UserStore>(store: S) {
    let app = app();
    let calls = calls();
    let at = token_time();
    let later = at + Duration::minutes(119);
    token_for(
        &store,
        &app,
        need_at(at),
        fetch_of(&calls, "AT-1", at, Duration::hours(2)),
    )
    .await;
    // A minute before it expires, and fetched two hours ago: renewed.
    let renewed = token_for(
        &store,
        &app,
        need_at(later),
        fetch_of(&calls, "AT-2", later, Duration::hours(2)),
    )
    .await;
    assert_eq!(renewed, "AT-2");
    // Forgetting the old token keeps the newer one.
    store
        .forget_access_token(&app, &AccessToken::new("AT-1".into()))
        .await
        .expect("forget");
    let kept = token_for(
        &store,
        &app,
        need_at(later),
        fetch_of(&calls, "AT-3", later, Duration::hours(2)),
    )
    .await;
    assert_eq!(kept, "AT-2");
    // Forgetting the stored one makes the next caller fetch.
    store
        .forget_access_token(&app, &AccessToken::new("AT-2".into()))
        .await
        .expect("forget");
    let fetched = token_for(
        &store,
        &app,
        need_at(later),
        fetch_of(&calls, "AT-4", later, Duration::hours(2)),
    )
    .await;
    assert_eq!(fetched, "AT-4");
    assert_eq!(count(&calls), 3);
}

/// Callers that need the token at once (clones of one store, as the instances of a server
/// share one database) make one fetch: one takes the lease, the others wait for its token.
pub async fn concurrent_callers_make_one_access_token_fetch<S: UserStore>(store: S) {
    let app = app();
    let calls = calls();
    let at = token_time();
    let callers: Vec<_> = (0..20)
        .map(|_| {
            let store = store.clone();
            let app = app.clone();
            let fetch = counting_fetch(&calls, "AT-ONCE", at, std::time::Duration::from_millis(50));
            tokio::spawn(async move { store.access_token(&app, need_at(at), fetch).await })
        })
        .collect();
    for caller in callers {
        let caller = caller.await;
        let token = caller.expect("no panic").expect("a token");
        assert_eq!(token.token.expose(), "AT-ONCE");
    }
    assert_eq!(count(&calls), 1);
}

/// No transaction or lock spans the fetch: while one caller renews the token, the store serves
/// a login, a write to the very row of the token (forgetting the token being renewed), and
/// another app's renewal.
pub async fn no_statement_waits_for_an_access_token_fetch<S: UserStore>(store: S) {
    let app = app();
    let calls = calls();
    let at = token_time();
    token_for(
        &store,
        &app,
        need_at(at),
        fetch_of(&calls, "AT-0", at, Duration::hours(2)),
    )
    .await;
    let later = at + Duration::hours(3);
    let inside = store.clone();
    let inner_calls = Arc::clone(&calls);
    let fetch: FetchAccessToken = Box::new(move || {
        Box::pin(async move {
            let record = inside
                .login(login_for("oWhileFetching", 900, KEY_A))
                .await
                .expect("a login while the token is fetched");
            assert!(record.is_new_user);
            inside
                .forget_access_token(&fixtures::app(), &AccessToken::new("AT-0".into()))
                .await
                .expect("a write to the token's row while it is fetched");
            let other = inside
                .access_token(
                    &other_app(),
                    need_at(later),
                    fetch_of(&inner_calls, "AT-OTHER", later, Duration::hours(2)),
                )
                .await
                .expect("another app's token while this one is fetched");
            assert_eq!(other.token.expose(), "AT-OTHER");
            Ok(token_of("AT-1", later, Duration::hours(2)))
        })
    });
    assert_eq!(token_for(&store, &app, need_at(later), fetch).await, "AT-1");
    assert_eq!(count(&calls), 2, "AT-0 and the other app's fetch");
    assert_eq!(
        session(&store, 900).await.user.open_id.as_str(),
        "oWhileFetching"
    );
    let stored = token_for(
        &store,
        &app,
        need_at(later),
        fetch_of(&calls, "AT-NEVER", later, Duration::hours(2)),
    )
    .await;
    assert_eq!(stored, "AT-1", "stored after the fetch");
}

/// A caller that finds the lease taken answers at once with the stored token while it is still
/// valid (inside the margin, not expired), instead of waiting for the renewal.
pub async fn a_valid_token_is_used_while_another_caller_renews_it<S: UserStore>(store: S) {
    let app = app();
    let calls = calls();
    let at = token_time();
    // Fetched long ago, expires two minutes from `at`: due for renewal, still valid.
    let long_ago = at - Duration::minutes(118);
    token_for(
        &store,
        &app,
        need_at(long_ago),
        fetch_of(&calls, "AT-1", long_ago, Duration::hours(2)),
    )
    .await;

    let renewal = gated_fetch(&calls, "AT-2", at);
    let renewing = {
        let (store, app) = (store.clone(), app.clone());
        tokio::spawn(async move { token_for(&store, &app, need_at(at), renewal.fetch).await })
    };
    renewal.begun.await.expect("the renewal began");
    let meanwhile = token_for(
        &store,
        &app,
        need_at(at),
        fetch_of(&calls, "AT-NEVER", at, Duration::hours(2)),
    )
    .await;
    assert_eq!(
        meanwhile, "AT-1",
        "the valid token, without waiting for the renewal"
    );
    let _ = renewal.go.send(());
    assert_eq!(renewing.await.expect("no panic"), "AT-2");
    let after = token_for(
        &store,
        &app,
        need_at(at),
        fetch_of(&calls, "AT-NEVER", at, Duration::hours(2)),
    )
    .await;
    assert_eq!(after, "AT-2");
    assert_eq!(count(&calls), 2, "the first fetch and the renewal");
}

/// `stable_token` hands out a token inside the margin with what is left of its life: such a
/// token is used until it expires and fetched again at most once per interval, not on every
/// call.
pub async fn a_token_in_its_last_minutes_is_fetched_again_once_per_interval<S: UserStore>(
    store: S,
) {
    let app = app();
    let calls = calls();
    let at = token_time();
    let expires_at = at + Duration::minutes(3);
    // Fetched with three minutes left: inside the five-minute margin from the start.
    let first = token_for(
        &store,
        &app,
        need_at(at),
        fetch_of(&calls, "AT-1", at, Duration::minutes(3)),
    )
    .await;
    assert_eq!(first, "AT-1");
    for s in [10, 20, 30, 40, 50] {
        let now = at + Duration::seconds(s);
        let token = token_for(
            &store,
            &app,
            need_at(now),
            fetch_of(&calls, "AT-1", now, expires_at - now),
        )
        .await;
        assert_eq!(token, "AT-1");
    }
    assert_eq!(count(&calls), 1, "no fetch within the interval");

    // An interval later, one fetch (WeChat hands the same token back), then none again.
    for s in [61, 70, 80] {
        let now = at + Duration::seconds(s);
        let token = token_for(
            &store,
            &app,
            need_at(now),
            fetch_of(&calls, "AT-1", now, expires_at - now),
        )
        .await;
        assert_eq!(token, "AT-1");
    }
    assert_eq!(count(&calls), 2, "one fetch per interval");

    // Expired: fetched at once.
    let now = expires_at + Duration::seconds(1);
    let renewed = token_for(
        &store,
        &app,
        need_at(now),
        fetch_of(&calls, "AT-2", now, Duration::hours(2)),
    )
    .await;
    assert_eq!(renewed, "AT-2");
    assert_eq!(count(&calls), 3);
}

/// The lease goes with the fetch: released when the token is stored, when the fetch fails, and
/// when the fetch is abandoned (its caller cancelled), so the next caller that needs a token
/// fetches at once instead of waiting for the lease to expire. (Each step tells a held lease
/// apart from a free one by a valid stored token: a caller that finds the lease taken answers
/// with it, one that finds the lease free fetches.)
pub async fn the_lease_is_released_when_a_fetch_ends_fails_or_is_abandoned<S: UserStore>(store: S) {
    let app = app();
    let calls = calls();
    let at = token_time();
    let long_ago = at - Duration::minutes(118);
    token_for(
        &store,
        &app,
        need_at(long_ago),
        fetch_of(&calls, "AT-1", long_ago, Duration::hours(2)),
    )
    .await;

    // A failed fetch releases the lease.
    assert!(
        store
            .access_token(&app, need_at(at), failing_fetch())
            .await
            .is_err(),
        "the fetch failed"
    );
    let after_failure = token_for(
        &store,
        &app,
        need_at(at),
        fetch_of(&calls, "AT-2", at, Duration::minutes(3)),
    )
    .await;
    assert_eq!(
        after_failure, "AT-2",
        "fetched: the failed fetch released the lease"
    );

    // Storing releases it.
    let now = at + Duration::seconds(10);
    let after_store = token_for(
        &store,
        &app,
        need_fetched_since(now),
        fetch_of(&calls, "AT-3", now, Duration::minutes(3)),
    )
    .await;
    assert_eq!(
        after_store, "AT-3",
        "fetched: storing AT-2 released the lease"
    );

    // An abandoned fetch releases it (from a task of its own, so it may take a moment).
    let now = at + Duration::seconds(20);
    let abandoned = gated_fetch(&calls, "AT-ABANDONED", now);
    let doomed = {
        let (store, app) = (store.clone(), app.clone());
        tokio::spawn(async move {
            token_for(&store, &app, need_fetched_since(now), abandoned.fetch).await
        })
    };
    abandoned.begun.await.expect("the fetch began");
    doomed.abort();
    assert!(doomed.await.is_err_and(|e| e.is_cancelled()));
    let mut seen = Vec::new();
    for _ in 0..200 {
        let token = token_for(
            &store,
            &app,
            need_fetched_since(now),
            fetch_of(&calls, "AT-4", now, Duration::minutes(3)),
        )
        .await;
        let fetched = token == "AT-4";
        seen.push(token);
        if fetched {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(
        seen.last().map(String::as_str),
        Some("AT-4"),
        "the abandoned lease was never released: {seen:?}"
    );
    assert!(seen.iter().all(|t| t == "AT-3" || t == "AT-4"), "{seen:?}");
}

/// A lease past its expiry is taken over, without waiting for its holder; the late holder
/// answers its own caller but stores nothing over the newer holder's token.
pub async fn an_expired_lease_is_taken_over_and_its_late_holder_stores_nothing<S: UserStore>(
    store: S,
) {
    let app = app();
    let calls = calls();
    let at = token_time();
    let stuck = gated_fetch(&calls, "AT-LATE", at);
    let late = {
        let (store, app) = (store.clone(), app.clone());
        tokio::spawn(async move { token_for(&store, &app, need_at(at), stuck.fetch).await })
    };
    stuck.begun.await.expect("the first fetch began");

    // The 30-second lease has expired for a caller a little later.
    let now = at + Duration::seconds(31);
    let took_over = token_for(
        &store,
        &app,
        need_at(now),
        fetch_of(&calls, "AT-NEW", now, Duration::hours(2)),
    )
    .await;
    assert_eq!(took_over, "AT-NEW");

    let _ = stuck.go.send(());
    assert_eq!(
        late.await.expect("no panic"),
        "AT-LATE",
        "its own token for its caller"
    );
    let stored = token_for(
        &store,
        &app,
        need_at(now),
        fetch_of(&calls, "AT-NEVER", now, Duration::hours(2)),
    )
    .await;
    assert_eq!(stored, "AT-NEW", "the late holder stored nothing");
    assert_eq!(count(&calls), 2);
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
    assert_same_instant(found.session.last_seen_at, now, "last_seen_at of a login");
    assert_eq!(found.user, record.user, "login and lookup agree");

    let seen_at = now + Duration::nanoseconds(3_333_333);
    store
        .touch_session(session_id, seen_at)
        .await
        .expect("touch works");
    let found = session(&store, 1).await;
    assert_same_instant(
        found.session.last_seen_at,
        seen_at,
        "last_seen_at of a touch",
    );

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

    let phone_at = now + Duration::nanoseconds(8_765_432);
    let with_phone = store
        .set_phone_number(phone_change(record.user.id, "13800138000", phone_at))
        .await
        .expect("setting the phone number works");
    assert_same_instant(
        with_phone.updated_at,
        phone_at,
        "updated_at of a phone change",
    );

    // A refresh with nanoseconds: the new session's times, and the old one's revocation.
    let live = login_for("oClock4", 4, KEY_A);
    let live_id = live.session_id;
    login(&store, live).await;
    let refreshed_at = now + Duration::nanoseconds(9_999_999);
    let mut refresh = refresh_of(live_id, 5, refreshed_at);
    refresh.expires_at = refreshed_at + Duration::nanoseconds(86_400_000_000_001);
    let new_expiry = refresh.expires_at;
    store.refresh_session(refresh).await.expect("refresh works");
    let old = session(&store, 4).await;
    let read = old.session.revoked_at.expect("the old session is revoked");
    assert_same_instant(read, refreshed_at, "revoked_at of a refresh");
    let new = session(&store, 5).await.session;
    assert_same_instant(new.created_at, refreshed_at, "created_at of a refresh");
    assert_same_instant(new.last_seen_at, refreshed_at, "last_seen_at of a refresh");
    assert_same_instant(new.expires_at, new_expiry, "expires_at of a refresh");

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

// ---------------------------------------------------------------------------------------------
// The operators' directory (`Directory`): searches, details, revocation and statistics.

/// "Active" at `now` with a seven-day idle timeout, as the domain decides it.
fn active_at(now: DateTime<Utc>) -> ActiveAt {
    ActiveAt {
        now,
        seen_after: now - Duration::days(7),
    }
}

/// A search in the main app with no filter.
fn search_all(after: Option<UserId>, limit: u32) -> UserSearch {
    UserSearch {
        app_id: app(),
        open_id: None,
        nick_name: None,
        after,
        limit,
    }
}

async fn search<S: Directory>(store: &S, search: UserSearch) -> Vec<User> {
    store
        .search_users(search)
        .await
        .unwrap_or_else(|e| panic!("search_users failed: {e}"))
}

fn open_ids(users: &[User]) -> Vec<&str> {
    users.iter().map(|u| u.open_id.as_str()).collect()
}

/// Sets the nickname of the user of session `n` (main app) to `nick`.
async fn name_user<S: UserStore>(store: &S, n: u32, nick: &str) -> User {
    let record = session(store, n).await;
    let profile = Profile {
        nick_name: Some(NickName::parse(nick).expect("valid nickname")),
        ..Profile::default()
    };
    store
        .update_profile(profile_change(
            record.user.id,
            record.session.id,
            profile,
            t0(),
        ))
        .await
        .unwrap_or_else(|e| panic!("update_profile failed: {e}"))
}

/// A search returns at most `limit` users in id order, starting after `after`; pages taken
/// that way cover every user once, each shown as its login showed it.
pub async fn search_pages_users_in_id_order<S: UserStore + Directory>(store: S) {
    let mut logged = Vec::new();
    for n in 0..5 {
        logged.push(
            login(&store, login_for(&format!("oPage{n}"), n, KEY_A))
                .await
                .user,
        );
    }
    logged.sort_by_key(|u| u.id);

    assert_eq!(search(&store, search_all(None, 10)).await, logged);
    let first = search(&store, search_all(None, 2)).await;
    assert_eq!(first, logged[..2]);
    let second = search(&store, search_all(Some(first[1].id), 2)).await;
    assert_eq!(second, logged[2..4]);
    let third = search(&store, search_all(Some(second[1].id), 2)).await;
    assert_eq!(third, logged[4..]);
    assert_eq!(search(&store, search_all(Some(logged[4].id), 2)).await, []);
    // A cursor need not be a user that still exists: the page starts after it all the same.
    let gone = logged.remove(2);
    store.erase_user(gone.id).await.expect("erasure works");
    assert_eq!(
        search(&store, search_all(Some(gone.id), 10)).await,
        logged[2..]
    );
    assert_eq!(search(&store, search_all(None, 1)).await, logged[..1]);
}

/// The openid filter matches any app's identity exactly; the nickname filter matches a
/// substring, ASCII case-insensitively, with `%` and `_` as plain characters; both together
/// must both match. Users of other apps are shown with their own identity.
pub async fn search_filters_by_open_id_and_nickname<S: UserStore + Directory>(store: S) {
    let nicks = ["Xiao Ming", "ming", "MINGYU", "Lee 50%_off", "小明", "Wang"];
    for (n, nick) in (0..).zip(nicks) {
        login(&store, login_for(&format!("oNick{n}"), n, KEY_A)).await;
        name_user(&store, n, nick).await;
    }
    // No nickname at all: matched by no nickname search.
    login(&store, login_for("oNameless", 10, KEY_A)).await;
    // A user of another app only.
    let mut elsewhere = login_for("oElsewhere", 11, KEY_A);
    elsewhere.app_id = other_app();
    let elsewhere = login(&store, elsewhere).await.user;

    let by_nick = |q: &str| UserSearch {
        nick_name: Some(NickNameQuery::parse(q).expect("valid query")),
        ..search_all(None, 100)
    };
    let mut found = open_ids(&search(&store, by_nick("ming")).await)
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<_>>();
    found.sort();
    assert_eq!(
        found,
        ["oNick0", "oNick1", "oNick2"],
        "ASCII case-insensitive"
    );
    assert_eq!(open_ids(&search(&store, by_nick("MinG")).await).len(), 3);
    for literal in ["%", "_", "0%_o", "50%"] {
        assert_eq!(
            open_ids(&search(&store, by_nick(literal)).await),
            ["oNick3"],
            "{literal:?} is matched literally"
        );
    }
    assert_eq!(open_ids(&search(&store, by_nick("小明")).await), ["oNick4"]);
    assert_eq!(search(&store, by_nick("nobody")).await, []);

    let by_open_id = |o: &str| UserSearch {
        open_id: Some(OpenId::parse(o).expect("valid openid")),
        ..search_all(None, 100)
    };
    assert_eq!(
        open_ids(&search(&store, by_open_id("oNick5")).await),
        ["oNick5"]
    );
    assert_eq!(
        search(&store, by_open_id("oNick")).await,
        [],
        "exact, not a prefix"
    );
    // Another app's identity is found, and shown since the user has no other.
    assert_eq!(
        search(&store, by_open_id("oElsewhere")).await,
        std::slice::from_ref(&elsewhere)
    );
    assert!(
        search(&store, search_all(None, 100))
            .await
            .contains(&elsewhere),
        "a user without an identity in the app is listed with its own"
    );

    let both = |o: &str, q: &str| UserSearch {
        open_id: Some(OpenId::parse(o).expect("valid openid")),
        nick_name: Some(NickNameQuery::parse(q).expect("valid query")),
        ..search_all(None, 100)
    };
    assert_eq!(
        open_ids(&search(&store, both("oNick2", "yu")).await),
        ["oNick2"]
    );
    assert_eq!(search(&store, both("oNick2", "wang")).await, []);
    // Filters and pages combine.
    let ming = search(&store, by_nick("ming")).await;
    let paged = search(
        &store,
        UserSearch {
            after: Some(ming[0].id),
            ..by_nick("ming")
        },
    )
    .await;
    assert_eq!(paged, ming[1..]);
}

/// A user's detail counts exactly its active sessions: not revoked, expiring after `now`, last
/// seen after the idle cut-off (the boundaries themselves are not active), in every app;
/// other users' sessions do not count. An unknown user is `None`.
pub async fn user_detail_counts_active_sessions<S: UserStore + Directory>(store: S) {
    let now = t0() + Duration::days(10);
    let active = active_at(now);
    let us = Duration::microseconds(1);
    let first = login(
        &store,
        login_at("oDetail", 1, KEY_A, now - Duration::hours(1)),
    )
    .await;
    let user = first.user;
    // (digest, login time, expiry, revoked at, touched at, active?)
    type Case = (
        u32,
        DateTime<Utc>,
        DateTime<Utc>,
        Option<DateTime<Utc>>,
        Option<DateTime<Utc>>,
        bool,
    );
    let month = Duration::days(30);
    let cases: [Case; 7] = [
        (2, now - Duration::hours(2), now + month, None, None, true),
        // Revoked, even "in the future" (another instance's clock): not active.
        (
            3,
            now - Duration::hours(2),
            now + month,
            Some(now + us),
            None,
            false,
        ),
        (4, now - Duration::hours(2), now, None, None, false),
        (5, now - Duration::hours(2), now + us, None, None, true),
        (6, active.seen_after, now + month, None, None, false),
        (7, active.seen_after + us, now + month, None, None, true),
        // Logged in long ago, used recently.
        (
            8,
            t0(),
            now + month,
            None,
            Some(now - Duration::hours(1)),
            true,
        ),
    ];
    for (n, created, expires_at, revoked, touched, _) in cases {
        let mut l = login_at("oDetail", n, KEY_A, created);
        l.expires_at = expires_at;
        let id = l.session_id;
        login(&store, l).await;
        if let Some(at) = revoked {
            store
                .revoke_session(id, at)
                .await
                .expect("revocation works");
        }
        if let Some(at) = touched {
            store.touch_session(id, at).await.expect("touch works");
        }
    }
    login(
        &store,
        login_at("oSomeoneElse", 20, KEY_A, now - Duration::hours(1)),
    )
    .await;

    let detail = store
        .user_detail(&app(), user.id, active)
        .await
        .expect("user_detail works")
        .expect("the user exists");
    assert_eq!(detail.user, user);
    let expected = 1 + cases.iter().filter(|c| c.5).count() as u64;
    assert_eq!(detail.active_sessions, expected);
    // Shown with its only identity whatever app is asked for.
    let elsewhere = store
        .user_detail(&other_app(), user.id, active)
        .await
        .expect("user_detail works")
        .expect("the user exists");
    assert_eq!(elsewhere.user, user);

    let nobody = UserId::new();
    assert_eq!(store.user_detail(&app(), nobody, active).await, Ok(None));
}

/// Revoking a user's sessions revokes, at `now`, each of its sessions that is neither revoked
/// nor past its lifetime (an idle one too), keeps earlier revocation times, touches nobody
/// else's sessions, and answers how many it revoked; the revoked tokens stop working at once.
/// `NotFound` for an unknown user.
pub async fn revoking_a_users_sessions_ends_all_of_them<S: UserStore + Directory>(store: S) {
    let now = t0() + Duration::days(10);
    let earlier = now - Duration::hours(3);
    let month = Duration::days(30);
    let mut l = login_at("oRevoked", 1, KEY_A, now - Duration::hours(5));
    l.expires_at = now + month;
    let user = login(&store, l).await.user;
    // (digest, login time, expiry, already revoked at)
    type Case = (u32, DateTime<Utc>, DateTime<Utc>, Option<DateTime<Utc>>);
    let sessions: [Case; 4] = [
        (2, now - Duration::hours(4), now + month, None),
        (3, now - Duration::hours(4), now + month, Some(earlier)),
        (4, now - Duration::days(40), now - Duration::days(10), None),
        // Idle under a seven-day timeout, but within its lifetime.
        (5, now - Duration::days(8), now + month, None),
    ];
    for (n, created, expires_at, revoked) in sessions {
        let mut l = login_at("oRevoked", n, KEY_A, created);
        l.expires_at = expires_at;
        let id = l.session_id;
        login(&store, l).await;
        if let Some(at) = revoked {
            store
                .revoke_session(id, at)
                .await
                .expect("revocation works");
        }
    }
    let mut other = login_at("oBystander", 10, KEY_A, now - Duration::hours(1));
    other.expires_at = now + month;
    login(&store, other).await;

    assert_eq!(store.revoke_user_sessions(user.id, now).await, Ok(3));
    for (n, revoked_at) in [
        (1, Some(now)),
        (2, Some(now)),
        (3, Some(earlier)),
        (4, None),
        (5, Some(now)),
        (10, None),
    ] {
        assert_eq!(
            session(&store, n).await.session.revoked_at,
            revoked_at,
            "session {n}"
        );
    }
    let detail = store
        .user_detail(&app(), user.id, active_at(now))
        .await
        .expect("user_detail works")
        .expect("the user exists");
    assert_eq!(detail.active_sessions, 0);
    assert_eq!(
        store.revoke_user_sessions(user.id, now).await,
        Ok(0),
        "nothing is left to revoke"
    );
    assert_eq!(
        store.revoke_user_sessions(UserId::new(), now).await,
        Err(StoreError::NotFound)
    );
}

/// The statistics count every user, the sessions active at `now` (every app), and the logins
/// since each window's start (inclusive): logins, not sessions — a refresh is no login, and
/// a login still counts after its session was revoked or purged.
pub async fn stats_count_users_sessions_and_logins<S: UserStore + Directory>(store: S) {
    let now = t0() + Duration::days(10);
    let hour_from = now - Duration::hours(1);
    let day_from = now - Duration::days(1);
    let query = StatsQuery {
        active: active_at(now),
        hour_from,
        day_from,
    };
    assert_eq!(
        store.stats(query).await,
        Ok(Stats {
            users: 0,
            active_sessions: 0,
            logins_last_hour: 0,
            logins_last_day: 0,
        })
    );
    let us = Duration::microseconds(1);
    // (openid, digest, login time)
    let logins = [
        ("oStatsA", 1, now - Duration::days(3)),
        ("oStatsA", 2, day_from - us),
        ("oStatsB", 3, day_from),
        ("oStatsB", 4, hour_from - us),
        ("oStatsC", 5, hour_from),
        ("oStatsD", 6, now - Duration::minutes(1)),
    ];
    for (open_id, n, at) in logins {
        login(&store, login_at(open_id, n, KEY_A, at)).await;
    }
    let mut elsewhere = login_at("oStatsE", 7, KEY_A, now - Duration::minutes(2));
    elsewhere.app_id = other_app();
    login(&store, elsewhere).await;
    // A refresh within the hour creates a session but is no login; the refreshed session
    // (revoked by the refresh) stops being active.
    let refreshed = session(&store, 6).await.session.id;
    store
        .refresh_session(refresh_of(refreshed, 8, now - Duration::seconds(30)))
        .await
        .expect("refresh works");
    // A logged-out session's login still counts.
    let logged_out = session(&store, 5).await.session.id;
    store
        .revoke_session(logged_out, now - Duration::minutes(5))
        .await
        .expect("revocation works");

    let stats = store.stats(query).await.expect("stats works");
    assert_eq!(stats.users, 5);
    assert_eq!(
        stats.logins_last_hour, 3,
        "logins at or after the hour's start"
    );
    assert_eq!(
        stats.logins_last_day, 5,
        "logins at or after the day's start"
    );
    // Active: 1 to 4 (the oldest last seen 3 days ago, within the idle timeout), 7, and the
    // refresh's new session; not 5 (logged out) nor 6 (revoked by the refresh).
    assert_eq!(stats.active_sessions, 6);

    // Erasing a user takes it out of the users, not its logins out of the figures.
    let gone = session(&store, 3).await.user.id;
    store.erase_user(gone).await.expect("erasure works");
    let after = store.stats(query).await.expect("stats works");
    assert_eq!(after.users, 4);
    assert_eq!(after.active_sessions, 4);
    assert_eq!(after.logins_last_day, 5);
}

/// The purge of ended sessions also deletes the login events from before a day ago (the
/// longest window of the statistics) and keeps the rest.
pub async fn the_purge_keeps_a_day_of_login_events<S: UserStore + Directory>(store: S) {
    let us = Duration::microseconds(1);
    login(&store, login_at("oEvents", 1, KEY_A, t0())).await;
    login(
        &store,
        login_at("oEvents", 2, KEY_A, t0() + Duration::hours(23)),
    )
    .await;
    let ever = |now: DateTime<Utc>| StatsQuery {
        active: active_at(now),
        hour_from: now - Duration::hours(1),
        day_from: t0() - Duration::days(365),
    };
    // Exactly a day after the first login, it is still kept.
    let now = t0() + LOGIN_EVENTS_KEPT;
    store
        .purge_sessions(PurgeBefore {
            now,
            last_seen: now - Duration::days(7),
        })
        .await
        .expect("purge works");
    assert_eq!(
        store.stats(ever(now)).await.map(|s| s.logins_last_day),
        Ok(2)
    );
    let now = now + us;
    store
        .purge_sessions(PurgeBefore {
            now,
            last_seen: now - Duration::days(7),
        })
        .await
        .expect("purge works");
    assert_eq!(
        store.stats(ever(now)).await.map(|s| s.logins_last_day),
        Ok(1)
    );
    // The sessions themselves have not ended: the purge kept them, and the user.
    assert!(session_exists(&store, 1).await);
    assert_eq!(store.stats(ever(now)).await.map(|s| s.users), Ok(1));
}

/// A user with identities in two apps (linked by unionid) is shown with its identity in the
/// app asked for, or else with its earliest; it is found by either openid, listed once, and
/// its detail counts its sessions in both apps.
pub async fn users_are_shown_with_the_apps_identity_or_their_earliest<S: UserStore + Directory>(
    store: S,
) {
    let mut first = login_for("oLinkFirst", 1, KEY_A);
    first.app_id = other_app();
    first.union_id = union("uLinked");
    let user_id = login(&store, first).await.user.id;
    let mut second = login_at("oLinkSecond", 2, KEY_B, t0() + Duration::hours(1));
    second.union_id = union("uLinked");
    let linked = login(&store, second).await;
    assert_eq!(linked.user.id, user_id, "linked by unionid");

    let shown_in = |app_id: AppId, open_id: Option<&str>| UserSearch {
        app_id,
        open_id: open_id.map(|o| OpenId::parse(o).expect("valid openid")),
        ..search_all(None, 100)
    };
    let third_app = AppId::parse("wx9999999999999999").expect("valid app id");
    for (app_id, filter, shown) in [
        (app(), None, "oLinkSecond"),
        (other_app(), None, "oLinkFirst"),
        (third_app.clone(), None, "oLinkFirst"),
        (app(), Some("oLinkFirst"), "oLinkSecond"),
        (other_app(), Some("oLinkSecond"), "oLinkFirst"),
    ] {
        let found = search(&store, shown_in(app_id.clone(), filter)).await;
        assert_eq!(open_ids(&found), [shown], "in {app_id}, filter {filter:?}");
        assert_eq!(found[0].id, user_id);
    }
    for (app_id, shown) in [(app(), "oLinkSecond"), (third_app, "oLinkFirst")] {
        let detail = store
            .user_detail(&app_id, user_id, active_at(t0() + Duration::hours(2)))
            .await
            .expect("user_detail works")
            .expect("the user exists");
        assert_eq!(detail.user.open_id.as_str(), shown, "in {app_id}");
        assert_eq!(detail.active_sessions, 2, "sessions of both apps count");
    }
}
