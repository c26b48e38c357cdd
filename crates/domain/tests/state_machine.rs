//! The pure login and session state machines: every transition one by one, then property
//! tests that drive random event sequences through them and check their invariants.

use chrono::{DateTime, Duration, Utc};
use proptest::prelude::*;
use uuid::Uuid;
use wxlogin_domain::{
    AvatarUrl, CodeSession, LoginEvent, LoginState, LoginTransitionError, NickName, OpenId,
    PLACEHOLDER_NICKNAME, Profile, ProfileStatus, Session, SessionEvent, SessionId, SessionKey,
    SessionState, SessionTransitionError, TokenDigest, User, UserId,
};

// ---------------------------------------------------------------------------------------------
// Fixtures

fn epoch() -> DateTime<Utc> {
    DateTime::from_timestamp(1_714_564_800, 0).expect("valid timestamp")
}

fn open_id(s: &str) -> OpenId {
    OpenId::parse(s).expect("valid openid")
}

fn user_id(n: u128) -> UserId {
    UserId::from_uuid(Uuid::from_u128(n))
}

fn exchanged(oid: &str) -> CodeSession {
    CodeSession {
        open_id: open_id(oid),
        union_id: None,
        session_key: SessionKey::from_base64("c2Vzc2lvbi1rZXktMDAwMQ==").expect("valid key"),
    }
}

fn complete_profile() -> Profile {
    Profile {
        nick_name: Some(NickName::parse("小明").expect("valid")),
        avatar_url: Some(AvatarUrl::parse("https://example.com/a.png").expect("valid")),
        ..Profile::default()
    }
}

fn user(id: u128, oid: &str, complete: bool) -> User {
    User {
        id: user_id(id),
        open_id: open_id(oid),
        union_id: None,
        profile: if complete {
            complete_profile()
        } else {
            Profile::default()
        },
        phone_number: None,
        created_at: epoch(),
        updated_at: epoch(),
    }
}

fn signed_in(id: u128, profile: ProfileStatus) -> LoginState {
    LoginState::SignedIn {
        user_id: user_id(id),
        profile,
    }
}

fn session(expires_at: DateTime<Utc>, revoked_at: Option<DateTime<Utc>>) -> Session {
    Session {
        id: SessionId::from_uuid(Uuid::from_u128(7)),
        user_id: user_id(1),
        token_digest: TokenDigest::from_bytes([7; 32]),
        session_key: SessionKey::from_base64("c2Vzc2lvbi1rZXktMDAwMQ==").expect("valid key"),
        created_at: epoch() - Duration::days(1),
        expires_at,
        revoked_at,
        last_seen_at: epoch(),
    }
}

/// An idle timeout longer than any test's span: only expiry and revocation count.
const NEVER_IDLE: Duration = Duration::days(36_500);

// ---------------------------------------------------------------------------------------------
// LoginState::on, one transition at a time

#[test]
fn anonymous_becomes_identified_by_a_code_exchange() {
    let next = LoginState::Anonymous.on(LoginEvent::CodeExchanged(exchanged("oA")));
    assert_eq!(next, Ok(LoginState::Identified(exchanged("oA"))));
}

#[test]
fn a_second_code_exchange_is_rejected() {
    let identified = LoginState::Identified(exchanged("oA"));
    assert_eq!(
        identified.on(LoginEvent::CodeExchanged(exchanged("oB"))),
        Err(LoginTransitionError::AlreadyIdentified)
    );
    let done = signed_in(1, ProfileStatus::Complete);
    assert_eq!(
        done.on(LoginEvent::CodeExchanged(exchanged("oA"))),
        Err(LoginTransitionError::AlreadyIdentified)
    );
}

#[test]
fn binding_the_exchanged_user_signs_in_with_its_profile_status() {
    let identified = LoginState::Identified(exchanged("oA"));
    assert_eq!(
        identified
            .clone()
            .on(LoginEvent::UserBound(user(1, "oA", false))),
        Ok(signed_in(1, ProfileStatus::NeedsProfile))
    );
    assert_eq!(
        identified.on(LoginEvent::UserBound(user(2, "oA", true))),
        Ok(signed_in(2, ProfileStatus::Complete))
    );
}

#[test]
fn a_placeholder_profile_still_needs_a_profile() {
    let mut u = user(1, "oA", true);
    u.profile.nick_name = Some(NickName::parse(PLACEHOLDER_NICKNAME).expect("valid"));
    assert_eq!(ProfileStatus::of(&u), ProfileStatus::NeedsProfile);
    let next = LoginState::Identified(exchanged("oA")).on(LoginEvent::UserBound(u));
    assert_eq!(next, Ok(signed_in(1, ProfileStatus::NeedsProfile)));
}

#[test]
fn binding_a_user_of_another_openid_is_an_identity_mismatch() {
    let identified = LoginState::Identified(exchanged("oA"));
    assert_eq!(
        identified.on(LoginEvent::UserBound(user(1, "oB", true))),
        Err(LoginTransitionError::IdentityMismatch)
    );
}

#[test]
fn binding_needs_an_exchange_first() {
    assert_eq!(
        LoginState::Anonymous.on(LoginEvent::UserBound(user(1, "oA", false))),
        Err(LoginTransitionError::NotIdentified)
    );
    assert_eq!(
        signed_in(1, ProfileStatus::NeedsProfile).on(LoginEvent::UserBound(user(1, "oA", false))),
        Err(LoginTransitionError::NotIdentified)
    );
}

#[test]
fn a_profile_update_of_the_signed_in_user_recomputes_its_status() {
    let needs = signed_in(1, ProfileStatus::NeedsProfile);
    let complete = needs
        .on(LoginEvent::ProfileUpdated(user(1, "oA", true)))
        .expect("same user");
    assert_eq!(complete, signed_in(1, ProfileStatus::Complete));
    // A profile can also lose completeness (e.g. an operator cleared the avatar).
    assert_eq!(
        complete.on(LoginEvent::ProfileUpdated(user(1, "oA", false))),
        Ok(signed_in(1, ProfileStatus::NeedsProfile))
    );
}

#[test]
fn a_profile_update_of_another_user_is_rejected() {
    assert_eq!(
        signed_in(1, ProfileStatus::NeedsProfile)
            .on(LoginEvent::ProfileUpdated(user(2, "oA", true))),
        Err(LoginTransitionError::WrongUser)
    );
}

#[test]
fn a_profile_update_needs_a_sign_in() {
    assert_eq!(
        LoginState::Anonymous.on(LoginEvent::ProfileUpdated(user(1, "oA", true))),
        Err(LoginTransitionError::NotSignedIn)
    );
    assert_eq!(
        LoginState::Identified(exchanged("oA")).on(LoginEvent::ProfileUpdated(user(1, "oA", true))),
        Err(LoginTransitionError::NotSignedIn)
    );
}

// ---------------------------------------------------------------------------------------------
// SessionState::on and SessionState::of

#[test]
fn an_active_session_accepts_every_event() {
    assert_eq!(
        SessionState::Active.on(SessionEvent::Use),
        Ok(SessionState::Active)
    );
    assert_eq!(
        SessionState::Active.on(SessionEvent::LifetimeElapsed),
        Ok(SessionState::Expired)
    );
    assert_eq!(
        SessionState::Active.on(SessionEvent::Revoke),
        Ok(SessionState::Revoked)
    );
}

#[test]
fn expired_and_revoked_sessions_reject_every_event() {
    for event in [
        SessionEvent::Use,
        SessionEvent::LifetimeElapsed,
        SessionEvent::Revoke,
    ] {
        assert_eq!(
            SessionState::Expired.on(event),
            Err(SessionTransitionError::Expired),
            "{event:?}"
        );
        assert_eq!(
            SessionState::Revoked.on(event),
            Err(SessionTransitionError::Revoked),
            "{event:?}"
        );
    }
}

#[test]
fn a_session_is_active_until_its_expiry_instant() {
    let now = epoch();
    assert_eq!(
        SessionState::of(&session(now + Duration::seconds(1), None), now, NEVER_IDLE),
        SessionState::Active
    );
    assert_eq!(
        SessionState::of(&session(now, None), now, NEVER_IDLE),
        SessionState::Expired
    );
    assert_eq!(
        SessionState::of(&session(now - Duration::days(1), None), now, NEVER_IDLE),
        SessionState::Expired
    );
}

#[test]
fn revocation_counts_from_its_instant_and_wins_over_expiry() {
    let now = epoch();
    let later = now + Duration::hours(1);
    assert_eq!(
        SessionState::of(&session(later, Some(now)), now, NEVER_IDLE),
        SessionState::Revoked
    );
    assert_eq!(
        SessionState::of(
            &session(later, Some(now - Duration::seconds(1))),
            now,
            NEVER_IDLE
        ),
        SessionState::Revoked
    );
    assert_eq!(
        SessionState::of(
            &session(now - Duration::days(1), Some(now - Duration::days(2))),
            now,
            NEVER_IDLE
        ),
        SessionState::Revoked
    );
    // A revocation stamped by an instance whose clock runs ahead counts at once.
    assert_eq!(
        SessionState::of(
            &session(later, Some(now + Duration::seconds(1))),
            now,
            NEVER_IDLE
        ),
        SessionState::Revoked
    );
}

// ---------------------------------------------------------------------------------------------
// Property tests: random event sequences through the login machine

/// Few openids and user ids, so that matching and mismatching events are both common.
const OPEN_IDS: [&str; 3] = ["oA", "oB", "oC"];

fn login_event() -> impl Strategy<Value = LoginEvent> {
    let oid = prop::sample::select(OPEN_IDS.to_vec());
    let some_user = (1u128..=3, oid.clone(), any::<bool>())
        .prop_map(|(id, oid, complete)| user(id, oid, complete));
    prop_oneof![
        oid.prop_map(|o| LoginEvent::CodeExchanged(exchanged(o))),
        some_user.clone().prop_map(LoginEvent::UserBound),
        some_user.prop_map(LoginEvent::ProfileUpdated),
    ]
}

/// The flow only moves forward: Anonymous, then Identified, then SignedIn.
fn rank(state: &LoginState) -> u8 {
    match state {
        LoginState::Anonymous => 0,
        LoginState::Identified(_) => 1,
        LoginState::SignedIn { .. } => 2,
    }
}

fn signed_in_user(state: &LoginState) -> Option<UserId> {
    match state {
        LoginState::SignedIn { user_id, .. } => Some(*user_id),
        _ => None,
    }
}

proptest! {
    #[test]
    fn login_machine_invariants(events in prop::collection::vec(login_event(), 0..24)) {
        let mut state = LoginState::Anonymous;
        let mut bound_user: Option<UserId> = None;

        for event in events {
            let previous = state.clone();
            match previous.clone().on(event.clone()) {
                Ok(next) => {
                    prop_assert!(rank(&next) >= rank(&previous), "{previous:?} -> {next:?}");
                    match (&previous, &event, &next) {
                        (LoginState::Anonymous, LoginEvent::CodeExchanged(c), LoginState::Identified(n)) => {
                            prop_assert_eq!(c, n);
                        }
                        (LoginState::Identified(c), LoginEvent::UserBound(u), LoginState::SignedIn { user_id, profile }) => {
                            prop_assert_eq!(&u.open_id, &c.open_id);
                            prop_assert_eq!(*user_id, u.id);
                            prop_assert_eq!(*profile, ProfileStatus::of(u));
                        }
                        (LoginState::SignedIn { user_id: was, .. }, LoginEvent::ProfileUpdated(u), LoginState::SignedIn { user_id, profile }) => {
                            prop_assert_eq!(was, user_id);
                            prop_assert_eq!(u.id, *user_id);
                            prop_assert_eq!(*profile, ProfileStatus::of(u));
                        }
                        _ => prop_assert!(false, "unexpected transition {previous:?} --{event:?}--> {next:?}"),
                    }
                    // SignedIn is only ever entered from Identified.
                    if matches!(next, LoginState::SignedIn { .. })
                        && !matches!(previous, LoginState::SignedIn { .. })
                    {
                        prop_assert!(matches!(previous, LoginState::Identified(_)), "{previous:?}");
                    }
                    // Once signed in, the user id never changes.
                    match (bound_user, signed_in_user(&next)) {
                        (Some(bound), now_bound) => prop_assert_eq!(Some(bound), now_bound),
                        (None, now_bound) => bound_user = now_bound,
                    }
                    state = next;
                }
                Err(error) => {
                    // The error names why the event does not fit this state, and is stable.
                    let expected_kind = match (&previous, &event) {
                        (LoginState::Identified(_) | LoginState::SignedIn { .. }, LoginEvent::CodeExchanged(_)) => {
                            vec![LoginTransitionError::AlreadyIdentified]
                        }
                        (LoginState::Identified(_), LoginEvent::UserBound(_)) => {
                            vec![LoginTransitionError::IdentityMismatch]
                        }
                        (_, LoginEvent::UserBound(_)) => vec![LoginTransitionError::NotIdentified],
                        (LoginState::SignedIn { .. }, LoginEvent::ProfileUpdated(_)) => {
                            vec![LoginTransitionError::WrongUser]
                        }
                        (_, LoginEvent::ProfileUpdated(_)) => vec![LoginTransitionError::NotSignedIn],
                        (LoginState::Anonymous, LoginEvent::CodeExchanged(_)) => vec![],
                    };
                    prop_assert!(expected_kind.contains(&error), "{previous:?} --{event:?}--> {error:?}");
                    // Rejection is deterministic; the test keeps `state` as it was.
                    prop_assert_eq!(previous.clone().on(event), Err(error));
                }
            }
        }
    }

    #[test]
    fn signed_in_is_reached_only_through_a_matching_exchange(
        events in prop::collection::vec(login_event(), 0..24)
    ) {
        let mut state = LoginState::Anonymous;
        let mut exchanged_open_id: Option<OpenId> = None;
        for event in events {
            if let LoginEvent::CodeExchanged(c) = &event
                && matches!(state, LoginState::Anonymous)
            {
                exchanged_open_id = Some(c.open_id.clone());
            }
            if let Ok(next) = state.clone().on(event.clone()) {
                if let (LoginState::Identified(_), LoginEvent::UserBound(u)) = (&state, &event) {
                    prop_assert_eq!(Some(&u.open_id), exchanged_open_id.as_ref());
                }
                state = next;
            }
        }
        if matches!(state, LoginState::SignedIn { .. }) {
            prop_assert!(exchanged_open_id.is_some());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Property tests: random event sequences through the session machine, and `of` over time

fn session_event() -> impl Strategy<Value = SessionEvent> {
    prop_oneof![
        Just(SessionEvent::Use),
        Just(SessionEvent::LifetimeElapsed),
        Just(SessionEvent::IdleTimedOut),
        Just(SessionEvent::Revoke),
    ]
}

proptest! {
    #[test]
    fn session_machine_invariants(events in prop::collection::vec(session_event(), 0..32)) {
        let mut state = SessionState::Active;
        // The model: the first event that is not a `Use` decides the final state.
        let mut ended_by: Option<SessionEvent> = None;

        for event in events {
            let previous = state;
            match previous.on(event) {
                Ok(next) => {
                    prop_assert_eq!(previous, SessionState::Active);
                    let expected = match event {
                        SessionEvent::Use => SessionState::Active,
                        SessionEvent::LifetimeElapsed | SessionEvent::IdleTimedOut => {
                            SessionState::Expired
                        }
                        SessionEvent::Revoke => SessionState::Revoked,
                    };
                    prop_assert_eq!(next, expected);
                    if event != SessionEvent::Use {
                        ended_by = Some(event);
                    }
                    state = next;
                }
                Err(error) => {
                    // Only final states reject, each with its own error.
                    let expected = match previous {
                        SessionState::Active => None,
                        SessionState::Expired => Some(SessionTransitionError::Expired),
                        SessionState::Revoked => Some(SessionTransitionError::Revoked),
                    };
                    prop_assert_eq!(Some(error), expected);
                }
            }
            // Expired and Revoked are absorbing: every further event errors.
            if state != SessionState::Active {
                for later in [
                    SessionEvent::Use,
                    SessionEvent::LifetimeElapsed,
                    SessionEvent::IdleTimedOut,
                    SessionEvent::Revoke,
                ] {
                    prop_assert!(state.on(later).is_err());
                }
            }
        }

        let expected_final = match ended_by {
            None => SessionState::Active,
            Some(SessionEvent::LifetimeElapsed | SessionEvent::IdleTimedOut) => {
                SessionState::Expired
            }
            Some(_) => SessionState::Revoked,
        };
        prop_assert_eq!(state, expected_final);
    }

    #[test]
    fn session_state_of_follows_revocation_then_expiry(
        expires in -1_000i64..1_000,
        revoked in prop::option::of(-1_000i64..1_000),
        now in -1_000i64..1_000,
    ) {
        let at = |s: i64| epoch() + Duration::seconds(s);
        let s = session(at(expires), revoked.map(at));
        let state = SessionState::of(&s, at(now), NEVER_IDLE);
        if revoked.is_some() {
            prop_assert_eq!(state, SessionState::Revoked);
        } else if now >= expires {
            prop_assert_eq!(state, SessionState::Expired);
        } else {
            prop_assert_eq!(state, SessionState::Active);
        }
    }

    #[test]
    fn a_session_never_becomes_active_again(
        expires in -1_000i64..1_000,
        revoked in prop::option::of(-1_000i64..1_000),
        now in -1_000i64..1_000,
        step in 0i64..2_000,
    ) {
        let at = |s: i64| epoch() + Duration::seconds(s);
        let s = session(at(expires), revoked.map(at));
        let before = SessionState::of(&s, at(now), NEVER_IDLE);
        let after = SessionState::of(&s, at(now + step), NEVER_IDLE);
        if before != SessionState::Active {
            prop_assert_ne!(after, SessionState::Active);
        }
        if before == SessionState::Revoked {
            prop_assert_eq!(after, SessionState::Revoked);
        }
    }

    #[test]
    fn an_idle_session_expires_unless_revoked(
        last_seen in -1_000i64..1_000,
        idle in 1i64..1_000,
        revoked in prop::option::of(-1_000i64..1_000),
        now in -1_000i64..1_000,
    ) {
        let at = |s: i64| epoch() + Duration::seconds(s);
        let s = Session {
            last_seen_at: at(last_seen),
            ..session(at(10_000), revoked.map(at))
        };
        let state = SessionState::of(&s, at(now), Duration::seconds(idle));
        if revoked.is_some() {
            prop_assert_eq!(state, SessionState::Revoked);
        } else if now >= last_seen + idle {
            prop_assert_eq!(state, SessionState::Expired);
        } else {
            prop_assert_eq!(state, SessionState::Active);
        }
    }
}

proptest! {
    /// The state a stored session's user is put in (`LoginState::signed_in`) is exactly where
    /// a code exchange and the binding of that user lead.
    #[test]
    fn signed_in_is_where_an_exchange_and_a_binding_lead(id in 1u128..1_000, complete: bool) {
        let u = user(id, "oSigned", complete);
        let via = LoginState::Anonymous
            .on(LoginEvent::CodeExchanged(exchanged("oSigned")))
            .and_then(|s| s.on(LoginEvent::UserBound(u.clone())));
        prop_assert_eq!(via, Ok(LoginState::signed_in(&u)));
        prop_assert_eq!(
            LoginState::signed_in(&u).profile_status(),
            Some(ProfileStatus::of(&u))
        );
        prop_assert_eq!(LoginState::Anonymous.profile_status(), None);
    }
}
