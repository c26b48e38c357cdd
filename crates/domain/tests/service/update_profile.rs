//! `LoginService::update_profile`: plain fields from the avatar/nickname widgets.

use crate::support::*;

fn patched_user() -> User {
    User {
        updated_at: now(),
        ..user("oUser", complete_profile())
    }
}

#[tokio::test]
async fn plain_fields_are_stored_and_the_status_follows() {
    let record = active_record();
    let mut m = Mocks::with_session(record.clone());
    m.wechat.expect_code_to_session().never();
    let seen = m.capture_update(Ok(patched_user()));
    let outcome = m
        .service()
        .update_profile(TOKEN, ProfileUpdate(complete_profile()))
        .await
        .expect("update succeeds");
    assert_eq!(outcome.user, patched_user());
    assert_eq!(outcome.status, ProfileStatus::Complete);
    let change = taken(&seen);
    assert_eq!(change.user_id, record.user.id);
    assert_eq!(change.profile, ProfileUpdate(complete_profile()));
    assert_eq!(change.rotated_session_key, None);
    assert_eq!(change.union_id, None);
    assert_eq!(change.now, now());
}

#[tokio::test]
async fn placeholders_never_overwrite_but_a_chosen_unknown_gender_does() {
    let mut m = Mocks::with_session(active_record());
    let seen = m.capture_update(Ok(patched_user()));
    let update = ProfileUpdate(Profile {
        nick_name: NickName::parse(PLACEHOLDER_NICKNAME).ok(),
        avatar_url: AvatarUrl::parse(PLACEHOLDER_AVATAR).ok(),
        gender: Some(Gender::Unknown),
        city: ProfileText::place("city", "Shenzhen").ok(),
        ..Profile::default()
    });
    m.service()
        .update_profile(TOKEN, update)
        .await
        .expect("update succeeds");
    let change = taken(&seen);
    assert_eq!(change.profile.0.nick_name, None);
    assert_eq!(change.profile.0.avatar_url, None);
    assert_eq!(change.profile.0.gender, Some(Gender::Unknown));
    assert_eq!(
        change.profile.0.city.as_ref().map(ProfileText::as_str),
        Some("Shenzhen")
    );
}

#[tokio::test]
async fn a_gone_user_is_an_invalid_token_and_outages_propagate() {
    for (answer, expected) in [
        (
            StoreError::NotFound,
            UpdateProfileError::Auth(AuthError::InvalidToken),
        ),
        (
            StoreError::Unavailable("down".into()),
            UpdateProfileError::Auth(AuthError::Store(StoreError::Unavailable("down".into()))),
        ),
    ] {
        let mut m = Mocks::with_session(active_record());
        m.capture_update(Err(answer));
        assert_eq!(
            m.service()
                .update_profile(TOKEN, ProfileUpdate::default())
                .await,
            Err(expected)
        );
    }
}

#[tokio::test]
async fn an_expired_session_updates_nothing() {
    let user = user("oUser", Profile::default());
    let mut m = Mocks::with_session(SessionRecord {
        session: session_for(&user, now() - Duration::seconds(1), None),
        user,
    });
    m.update_never();
    assert_eq!(
        m.service()
            .update_profile(TOKEN, ProfileUpdate::default())
            .await,
        Err(UpdateProfileError::Auth(AuthError::TokenExpired))
    );
}
