//! The login state machine, pure: every transition takes a state and an event and returns the
//! next state or a typed error. The service performs the IO around it; property tests drive
//! random event sequences through it.

use chrono::{DateTime, Duration, Utc};

use crate::model::{Session, User, UserId};
use crate::ports::CodeSession;

/// Where a client stands in the login flow.
#[derive(Debug, Clone, PartialEq)]
pub enum LoginState {
    /// Nothing known yet: the client holds a `wx.login` code at most.
    Anonymous,
    /// WeChat exchanged the code: we know the openid and this login's session key.
    Identified(CodeSession),
    /// A user record is bound to the login and a session exists.
    SignedIn {
        user_id: UserId,
        profile: ProfileStatus,
    },
}

/// Whether the signed-in user still needs to send a profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProfileStatus {
    NeedsProfile,
    Complete,
}

impl ProfileStatus {
    pub fn of(user: &User) -> Self {
        if user.profile_complete() {
            Self::Complete
        } else {
            Self::NeedsProfile
        }
    }
}

/// What can happen to a login.
#[derive(Debug, Clone, PartialEq)]
pub enum LoginEvent {
    /// `jscode2session` answered.
    CodeExchanged(CodeSession),
    /// The store found or created the user for the exchanged identity.
    UserBound(User),
    /// The user's profile changed.
    ProfileUpdated(User),
}

/// An event that does not fit the current state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoginTransitionError {
    #[error("a code can only be exchanged before sign-in")]
    AlreadyIdentified,
    #[error("a user can only be bound after a code exchange")]
    NotIdentified,
    #[error("the bound user's openid differs from the exchanged one")]
    IdentityMismatch,
    #[error("a profile can only change after sign-in")]
    NotSignedIn,
    #[error("the profile update belongs to another user")]
    WrongUser,
}

impl LoginState {
    /// Where a user who holds a session stands: signed in, with the user's profile status.
    pub fn signed_in(user: &User) -> Self {
        Self::SignedIn {
            user_id: user.id,
            profile: ProfileStatus::of(user),
        }
    }

    /// The profile status, once signed in.
    pub fn profile_status(&self) -> Option<ProfileStatus> {
        match self {
            Self::SignedIn { profile, .. } => Some(*profile),
            Self::Anonymous | Self::Identified(_) => None,
        }
    }

    /// The next state after `event`.
    pub fn on(self, event: LoginEvent) -> Result<Self, LoginTransitionError> {
        use LoginEvent as E;
        use LoginState as S;
        match (self, event) {
            (S::Anonymous, E::CodeExchanged(code)) => Ok(S::Identified(code)),
            (S::Identified(_) | S::SignedIn { .. }, E::CodeExchanged(_)) => {
                Err(LoginTransitionError::AlreadyIdentified)
            }
            (S::Identified(code), E::UserBound(user)) => {
                if user.open_id == code.open_id {
                    Ok(S::SignedIn {
                        user_id: user.id,
                        profile: ProfileStatus::of(&user),
                    })
                } else {
                    Err(LoginTransitionError::IdentityMismatch)
                }
            }
            (S::Anonymous | S::SignedIn { .. }, E::UserBound(_)) => {
                Err(LoginTransitionError::NotIdentified)
            }
            (S::SignedIn { user_id, .. }, E::ProfileUpdated(user)) => {
                if user.id == user_id {
                    Ok(S::SignedIn {
                        user_id,
                        profile: ProfileStatus::of(&user),
                    })
                } else {
                    Err(LoginTransitionError::WrongUser)
                }
            }
            (S::Anonymous | S::Identified(_), E::ProfileUpdated(_)) => {
                Err(LoginTransitionError::NotSignedIn)
            }
        }
    }
}

/// A session's lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    Active,
    Expired,
    Revoked,
}

impl SessionState {
    /// The state of a stored session at `now`. Revocation wins over expiry, and counts from
    /// the moment it is stored, whatever time it carries: it was stamped by the clock of the
    /// instance that revoked it, which may run ahead of ours.
    ///
    /// `idle_timeout`: a session unused for this long has expired too.
    pub fn of(session: &Session, now: DateTime<Utc>, idle_timeout: Duration) -> Self {
        // A stored session started active; replay what has happened to it since, revocation
        // first. A final state ignores the later events.
        let happened = [
            session.revoked_at.is_some().then_some(SessionEvent::Revoke),
            (now >= session.expires_at).then_some(SessionEvent::LifetimeElapsed),
            (now >= session.last_seen_at + idle_timeout).then_some(SessionEvent::IdleTimedOut),
        ];
        happened
            .into_iter()
            .flatten()
            .fold(Self::Active, |state, event| {
                state.on(event).unwrap_or(state)
            })
    }

    /// The next state after `event`; `Expired` and `Revoked` are final.
    pub fn on(self, event: SessionEvent) -> Result<Self, SessionTransitionError> {
        match (self, event) {
            (Self::Active, SessionEvent::Use) => Ok(Self::Active),
            (Self::Active, SessionEvent::LifetimeElapsed | SessionEvent::IdleTimedOut) => {
                Ok(Self::Expired)
            }
            (Self::Active, SessionEvent::Revoke) => Ok(Self::Revoked),
            (Self::Expired, _) => Err(SessionTransitionError::Expired),
            (Self::Revoked, _) => Err(SessionTransitionError::Revoked),
        }
    }
}

/// What can happen to a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEvent {
    /// An authenticated request.
    Use,
    /// The absolute lifetime ran out.
    LifetimeElapsed,
    /// The session went unused for the idle timeout.
    IdleTimedOut,
    /// Logout or an operator's revocation.
    Revoke,
}

/// A session that can no longer be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SessionTransitionError {
    #[error("session expired")]
    Expired,
    #[error("session revoked")]
    Revoked,
}
