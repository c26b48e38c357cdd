//! The contract checked against itself: an in-memory reference store must pass every case, and
//! stores with one planted flaw each must fail the case that guards against that flaw (so no
//! case passes vacuously).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Duration, DurationRound, Utc};
use wxlogin_domain::{
    AccessToken, AccessTokenError, AccessTokenNeed, AppId, AvatarChange, AvatarId,
    FetchAccessToken, LoginRecord, NewLogin, OpenId, PhoneChange, Profile, ProfileChange,
    PurgeBefore, SessionId, SessionKey, SessionRecord, SessionRefresh, StoreError,
    StoredAccessToken, StoredAvatar, TokenDigest, UnionId, User, UserId, UserStore,
};
use wxlogin_domain::{
    ActiveAt, Directory, LOGIN_EVENTS_KEPT, Stats, StatsQuery, UserDetail, UserSearch,
};
use wxlogin_store_contract::cases;

/// One planted bug per variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flaw {
    /// Find-or-create as check, pause, then insert: racing first logins create several users.
    RacyLogin,
    /// A re-login rewrites the user's `updated_at`.
    ReloginTouchesUser,
    /// Sessions are found by digest whatever their app.
    IgnoresApp,
    /// The expiry is recomputed instead of stored as given.
    IgnoresExpiry,
    /// A second revocation overwrites the first time.
    RevokeOverwrites,
    /// Rotating a key rotates every session of the user.
    SharedSessionKey,
    /// Absent profile fields erase stored ones.
    ProfileReplacesAll,
    /// A known unionid is replaced by a newer one.
    OverwritesUnionId,
    /// A failing session insert keeps the user and identity written before it.
    NotAtomicLogin,
    /// A failing key rotation keeps the profile written before it.
    NotAtomicProfile,
    /// Timestamps are rounded to the microsecond instead of truncated.
    RoundsTimestamps,
    /// `ping` reports the store unavailable.
    PingFails,
    /// Fetches a new access token whatever is stored.
    AccessTokenNeverReused,
    /// Forgets the stored access token whichever token was rejected.
    ForgetsAnyAccessToken,
    /// Renews the access token without a lease: concurrent callers fetch several.
    AccessTokenLeaseless,
    /// Holds a write lock across the fetch (as a transaction would), which logins and writes
    /// to the token's row wait for.
    LockedAcrossFetch,
    /// A caller that finds the lease taken waits even while the stored token is valid.
    WaitsDespiteValidToken,
    /// Fetches whenever the token is inside the margin, whenever it was fetched.
    RefetchesInTheMargin,
    /// A failed fetch keeps the lease.
    KeepsLeaseOnFailure,
    /// Storing the token keeps the lease.
    KeepsLeaseAfterStore,
    /// An abandoned fetch keeps the lease.
    KeepsAbandonedLease,
    /// An expired lease is never taken over.
    NeverTakesOver,
    /// A holder whose lease was taken over stores its token anyway.
    LateHolderStores,
    /// A refresh inserts the new session but leaves the old one live.
    RefreshKeepsOld,
    /// A refresh ignores a revocation: a logged-out or refreshed session refreshes again.
    RefreshRevivesRevoked,
    /// A refresh checks the old session, pauses, then revokes and inserts on its stale check:
    /// racing refreshes all succeed.
    RacyRefresh,
    /// A failing insert of the new session keeps the old one's revocation.
    NotAtomicRefresh,
    /// A touch sets `last_seen_at` even when it moves it back.
    TouchMovesBack,
    /// The phone number is returned but never stored.
    PhoneNotPersisted,
    /// An avatar upload keeps the user's earlier uploads.
    KeepsEarlierAvatars,
    /// Erasing a user keeps its uploaded avatars.
    EraseKeepsAvatars,
    /// Erasure deletes the user and identities and leaves the sessions behind.
    EraseKeepsSessions,
    /// Erasing an unknown user succeeds.
    EraseUnknownIsOk,
    /// The purge counts the idle timeout from the login, not from the last use.
    PurgeIdleByCreation,
    /// A search starts from the first user whatever its cursor says.
    SearchIgnoresCursor,
    /// The nickname filter is case-sensitive.
    NicknameCaseSensitive,
    /// A user's detail counts revoked sessions as active.
    DetailCountsRevoked,
    /// Revoking a user's sessions revokes everybody's.
    RevokeHitsEveryone,
    /// The statistics count sessions created in a window (refreshes too) as logins.
    StatsCountSessions,
    /// The purge keeps every login event.
    PurgeKeepsLoginEvents,
    /// Users are shown with their earliest identity whatever app is asked for.
    ShowsEarliestIdentity,
    /// A first login in a second app creates a user even when its unionid is known.
    NoUnionLinking,
    /// A first login looks for its unionid, pauses, then acts on its stale look: racing first
    /// logins of one person in two apps create two users.
    RacyUnionLinking,
}

#[derive(Debug, Clone)]
struct UserData {
    profile: Profile,
    phone_number: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
struct Identity {
    user_id: UserId,
    union_id: Option<UnionId>,
    created_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
struct SessionData {
    user_id: UserId,
    app_id: AppId,
    digest: TokenDigest,
    key: SessionKey,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    revoked_at: Option<DateTime<Utc>>,
    last_seen_at: DateTime<Utc>,
}

/// An app's access token and the lease of the caller renewing it.
#[derive(Debug, Clone, Default)]
struct TokenRow {
    token: Option<StoredAccessToken>,
    /// The holder and when its lease expires.
    lease: Option<(u64, DateTime<Utc>)>,
}

#[derive(Debug, Clone, Default)]
struct State {
    users: HashMap<UserId, UserData>,
    identities: HashMap<(AppId, OpenId), Identity>,
    sessions: HashMap<SessionId, SessionData>,
    access_tokens: HashMap<AppId, TokenRow>,
    /// Uploaded avatars, with their user.
    avatars: HashMap<AvatarId, (UserId, StoredAvatar)>,
    /// When and in which app each login happened.
    login_events: Vec<(DateTime<Utc>, AppId)>,
}

impl State {
    /// The user with its identity in `app_id`, or else its earliest identity.
    fn shown_user(&self, user_id: UserId, app_id: &AppId, flaw: Option<Flaw>) -> Option<User> {
        let asked = if flaw == Some(Flaw::ShowsEarliestIdentity) {
            None
        } else {
            self.user(user_id, app_id)
        };
        asked.or_else(|| {
            let (earliest_app, _) = self
                .identities
                .iter()
                .filter(|(_, i)| i.user_id == user_id)
                .map(|((app, _), i)| (app, i.created_at))
                .min_by(|a, b| (a.1, a.0).cmp(&(b.1, b.0)))?;
            self.user(user_id, &earliest_app.clone())
        })
    }

    fn is_active(x: &SessionData, active: ActiveAt) -> bool {
        x.revoked_at.is_none() && x.expires_at > active.now && x.last_seen_at > active.seen_after
    }

    fn user(&self, user_id: UserId, app_id: &AppId) -> Option<User> {
        let data = self.users.get(&user_id)?;
        let ((_, open_id), identity) = self
            .identities
            .iter()
            .find(|((app, _), i)| app == app_id && i.user_id == user_id)?;
        Some(User {
            id: user_id,
            open_id: open_id.clone(),
            union_id: identity.union_id.clone(),
            profile: data.profile.clone(),
            phone_number: data.phone_number.clone(),
            created_at: data.created_at,
            updated_at: data.updated_at,
        })
    }
}

/// A store in memory: each method takes the one lock, works on a copy of the state and
/// publishes it only on success, which makes every method atomic.
#[derive(Debug, Clone)]
struct MemStore {
    state: Arc<Mutex<State>>,
    flaw: Option<Flaw>,
    /// For `Flaw::RacyLogin` and `Flaw::RacyRefresh`: holds the first two first-logins between their check and their
    /// insert, so the race happens every time rather than when the scheduler allows.
    race: Arc<tokio::sync::Barrier>,
    /// For `Flaw::LockedAcrossFetch`: the write lock a transaction around the fetch would hold.
    writer: Arc<tokio::sync::Mutex<()>>,
    /// Names the holders of leases.
    holders: Arc<std::sync::atomic::AtomicU64>,
}

impl Default for MemStore {
    fn default() -> Self {
        Self {
            state: Arc::default(),
            flaw: None,
            race: Arc::new(tokio::sync::Barrier::new(2)),
            writer: Arc::default(),
            holders: Arc::default(),
        }
    }
}

impl MemStore {
    fn flawed(flaw: Flaw) -> Self {
        Self {
            flaw: Some(flaw),
            ..Self::default()
        }
    }

    fn has(&self, flaw: Flaw) -> bool {
        self.flaw == Some(flaw)
    }

    /// For `Flaw::LockedAcrossFetch`: waits a moment for the write lock, then gives up as a
    /// database would (busy, lock timeout). `None` without the flaw.
    async fn write_lock(&self) -> Result<Option<tokio::sync::MutexGuard<'_, ()>>, StoreError> {
        if !self.has(Flaw::LockedAcrossFetch) {
            return Ok(None);
        }
        tokio::time::timeout(std::time::Duration::from_millis(300), self.writer.lock())
            .await
            .map(Some)
            .map_err(|_| StoreError::Unavailable("planted: the write lock is held".into()))
    }

    /// Ends `holder`'s fetch: stores `fetched` (if it holds the lease still) and releases the
    /// lease, or only releases it.
    fn end_fetch(&self, app_id: &AppId, holder: u64, fetched: Option<&StoredAccessToken>) {
        let mut s = self.lock();
        let row = s.access_tokens.entry(app_id.clone()).or_default();
        let holds = row.lease.is_some_and(|(h, _)| h == holder);
        if let Some(token) = fetched
            && (holds || self.has(Flaw::LateHolderStores))
        {
            row.token = Some(token.clone());
        }
        let keep = match fetched {
            Some(_) => self.has(Flaw::KeepsLeaseAfterStore),
            None => self.has(Flaw::KeepsLeaseOnFailure),
        };
        if holds && !keep {
            row.lease = None;
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn time(&self, t: DateTime<Utc>) -> DateTime<Utc> {
        if self.has(Flaw::RoundsTimestamps) {
            t.duration_round(Duration::microseconds(1)).unwrap_or(t)
        } else {
            t
        }
    }

    /// Runs `f` on a copy of the state and publishes the copy only if `f` succeeds.
    fn transaction<T>(
        &self,
        f: impl FnOnce(&mut State) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut state = self.lock();
        let mut copy = state.clone();
        let out = f(&mut copy)?;
        *state = copy;
        Ok(out)
    }

    /// The user of another app's identity with the login's unionid, if any (and if the user
    /// has no identity in the login's app yet).
    fn linked_user(s: &State, login: &NewLogin) -> Option<UserId> {
        let union_id = login.union_id.as_ref()?;
        let user_id = s
            .identities
            .values()
            .find(|i| i.union_id.as_ref() == Some(union_id))?
            .user_id;
        let has_app = s
            .identities
            .iter()
            .any(|((app, _), i)| *app == login.app_id && i.user_id == user_id);
        (!has_app).then_some(user_id)
    }

    fn login_in(&self, s: &mut State, login: &NewLogin) -> Result<LoginRecord, StoreError> {
        let link = !self.has(Flaw::NoUnionLinking);
        self.login_linking(s, login, link)
    }

    fn login_linking(
        &self,
        s: &mut State,
        login: &NewLogin,
        link: bool,
    ) -> Result<LoginRecord, StoreError> {
        let now = self.time(login.now);
        let key = (login.app_id.clone(), login.open_id.clone());
        let linked = if link {
            Self::linked_user(s, login)
        } else {
            None
        };
        let is_new_user = match s.identities.get_mut(&key) {
            Some(identity) => {
                if identity.union_id.is_none() || self.has(Flaw::OverwritesUnionId) {
                    identity.union_id = login.union_id.clone().or(identity.union_id.take());
                }
                if self.has(Flaw::ReloginTouchesUser)
                    && let Some(user) = s.users.get_mut(&identity.user_id)
                {
                    user.updated_at = now;
                }
                false
            }
            None if linked.is_some() => {
                let user_id = linked.expect("just matched");
                s.identities.insert(
                    key.clone(),
                    Identity {
                        user_id,
                        union_id: login.union_id.clone(),
                        created_at: now,
                    },
                );
                false
            }
            None => {
                if s.users.contains_key(&login.new_user_id) {
                    return Err(StoreError::Unexpected("duplicate user id".into()));
                }
                s.users.insert(
                    login.new_user_id,
                    UserData {
                        profile: Profile::default(),
                        phone_number: None,
                        created_at: now,
                        updated_at: now,
                    },
                );
                s.identities.insert(
                    key.clone(),
                    Identity {
                        user_id: login.new_user_id,
                        union_id: login.union_id.clone(),
                        created_at: now,
                    },
                );
                true
            }
        };
        let user_id = s.identities[&key].user_id;
        if s.sessions.values().any(|x| x.digest == login.token_digest) {
            return Err(StoreError::Unexpected("duplicate token digest".into()));
        }
        let expires_at = if self.has(Flaw::IgnoresExpiry) {
            now + Duration::days(30)
        } else {
            self.time(login.expires_at)
        };
        s.sessions.insert(
            login.session_id,
            SessionData {
                user_id,
                app_id: login.app_id.clone(),
                digest: login.token_digest,
                key: login.session_key.clone(),
                created_at: now,
                expires_at,
                revoked_at: None,
                last_seen_at: now,
            },
        );
        s.login_events.push((now, login.app_id.clone()));
        let user = s
            .user(user_id, &login.app_id)
            .ok_or_else(|| StoreError::Unexpected("user vanished".into()))?;
        Ok(LoginRecord { user, is_new_user })
    }

    /// Revokes the old session, then inserts the new one (in that order, so that a failing
    /// insert has something to undo).
    fn refresh_in(&self, s: &mut State, refresh: &SessionRefresh) -> Result<(), StoreError> {
        let now = self.time(refresh.now);
        let old = s
            .sessions
            .get_mut(&refresh.old_session_id)
            .filter(|x| x.revoked_at.is_none() || self.has(Flaw::RefreshRevivesRevoked))
            .ok_or(StoreError::NotFound)?;
        if !self.has(Flaw::RefreshKeepsOld) {
            old.revoked_at = Some(now);
        }
        let new = SessionData {
            digest: refresh.token_digest,
            created_at: now,
            expires_at: self.time(refresh.expires_at),
            revoked_at: None,
            last_seen_at: now,
            ..old.clone()
        };
        if s.sessions.values().any(|x| x.digest == new.digest)
            || s.sessions.contains_key(&refresh.new_session_id)
        {
            return Err(StoreError::Unexpected("duplicate session".into()));
        }
        s.sessions.insert(refresh.new_session_id, new);
        Ok(())
    }
}

impl UserStore for MemStore {
    async fn login(&self, login: NewLogin) -> Result<LoginRecord, StoreError> {
        let _writing = self.write_lock().await?;
        if self.has(Flaw::RacyLogin) {
            let known = self
                .lock()
                .identities
                .contains_key(&(login.app_id.clone(), login.open_id.clone()));
            if !known {
                // A lone login goes on after a moment; two meet and both insert.
                let _ =
                    tokio::time::timeout(std::time::Duration::from_millis(200), self.race.wait())
                        .await;
                // Acts on its stale check: drops whatever identity a racing login inserted
                // meanwhile and creates a user of its own.
                let key = (login.app_id.clone(), login.open_id.clone());
                return self.transaction(|s| {
                    s.identities.remove(&key);
                    self.login_in(s, &login)
                });
            }
        }
        if self.has(Flaw::RacyUnionLinking) {
            let linked = Self::linked_user(&self.lock(), &login).is_some();
            // Two first logins of one person meet here, and both act on what they saw.
            let _ =
                tokio::time::timeout(std::time::Duration::from_millis(200), self.race.wait()).await;
            return self.transaction(|s| self.login_linking(s, &login, linked));
        }
        if self.has(Flaw::NotAtomicLogin) {
            let mut state = self.lock();
            return self.login_in(&mut state, &login);
        }
        self.transaction(|s| self.login_in(s, &login))
    }

    async fn find_session(
        &self,
        app_id: &AppId,
        digest: &TokenDigest,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let s = self.lock();
        let Some((id, data)) = s.sessions.iter().find(|(_, x)| {
            x.digest == *digest && (x.app_id == *app_id || self.has(Flaw::IgnoresApp))
        }) else {
            return Ok(None);
        };
        let user = s
            .user(data.user_id, &data.app_id)
            .ok_or_else(|| StoreError::Unexpected("orphan session".into()))?;
        Ok(Some(SessionRecord {
            session: wxlogin_domain::Session {
                id: *id,
                user_id: data.user_id,
                token_digest: data.digest,
                session_key: data.key.clone(),
                created_at: data.created_at,
                expires_at: data.expires_at,
                revoked_at: data.revoked_at,
                last_seen_at: data.last_seen_at,
            },
            user,
        }))
    }

    async fn update_profile(&self, change: ProfileChange) -> Result<User, StoreError> {
        let apply = |s: &mut State| {
            let user = s
                .users
                .get_mut(&change.user_id)
                .ok_or(StoreError::NotFound)?;
            if self.has(Flaw::ProfileReplacesAll) {
                user.profile = change.profile.0.clone();
            } else {
                user.profile.apply(&change.profile);
            }
            user.updated_at = self.time(change.now);
            if let Some(union_id) = &change.union_id
                && let Some(identity) = s.identities.iter_mut().find_map(|((app, _), i)| {
                    (*app == change.app_id && i.user_id == change.user_id).then_some(i)
                })
                && (identity.union_id.is_none() || self.has(Flaw::OverwritesUnionId))
            {
                identity.union_id = Some(union_id.clone());
            }
            if let Some(key) = &change.rotated_session_key {
                let session = s
                    .sessions
                    .get_mut(&change.session_id)
                    .filter(|x| x.user_id == change.user_id)
                    .ok_or(StoreError::NotFound)?;
                session.key = key.clone();
            }
            s.user(change.user_id, &change.app_id)
                .ok_or(StoreError::NotFound)
        };
        if self.has(Flaw::NotAtomicProfile) {
            return apply(&mut self.lock());
        }
        self.transaction(apply)
    }

    async fn rotate_session_key(
        &self,
        session_id: SessionId,
        key: SessionKey,
    ) -> Result<(), StoreError> {
        self.transaction(|s| {
            let owner = s
                .sessions
                .get(&session_id)
                .ok_or(StoreError::NotFound)?
                .user_id;
            for (id, x) in &mut s.sessions {
                if *id == session_id || (self.has(Flaw::SharedSessionKey) && x.user_id == owner) {
                    x.key = key.clone();
                }
            }
            Ok(())
        })
    }

    async fn revoke_session(
        &self,
        session_id: SessionId,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let now = self.time(now);
        self.transaction(|s| {
            let session = s
                .sessions
                .get_mut(&session_id)
                .ok_or(StoreError::NotFound)?;
            if session.revoked_at.is_none() || self.has(Flaw::RevokeOverwrites) {
                session.revoked_at = Some(now);
            }
            Ok(())
        })
    }

    async fn refresh_session(&self, refresh: SessionRefresh) -> Result<(), StoreError> {
        if self.has(Flaw::RacyRefresh) {
            let live = self
                .lock()
                .sessions
                .get(&refresh.old_session_id)
                .is_some_and(|x| x.revoked_at.is_none());
            if !live {
                return Err(StoreError::NotFound);
            }
            // Two meet here, both having seen the session live.
            let _ =
                tokio::time::timeout(std::time::Duration::from_millis(200), self.race.wait()).await;
            return self.transaction(|s| {
                if let Some(old) = s.sessions.get_mut(&refresh.old_session_id) {
                    old.revoked_at = None;
                }
                self.refresh_in(s, &refresh)
            });
        }
        if self.has(Flaw::NotAtomicRefresh) {
            return self.refresh_in(&mut self.lock(), &refresh);
        }
        self.transaction(|s| self.refresh_in(s, &refresh))
    }

    async fn touch_session(
        &self,
        session_id: SessionId,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let now = self.time(now);
        if let Some(x) = self.lock().sessions.get_mut(&session_id)
            && (x.last_seen_at < now || self.has(Flaw::TouchMovesBack))
        {
            x.last_seen_at = now;
        }
        Ok(())
    }

    async fn set_phone_number(&self, change: PhoneChange) -> Result<User, StoreError> {
        self.transaction(|s| {
            let user = s
                .users
                .get_mut(&change.user_id)
                .ok_or(StoreError::NotFound)?;
            user.updated_at = self.time(change.now);
            user.phone_number = Some(change.phone_number.as_str().to_owned());
            let mut found = s
                .user(change.user_id, &change.app_id)
                .ok_or(StoreError::NotFound)?;
            if self.has(Flaw::PhoneNotPersisted)
                && let Some(user) = s.users.get_mut(&change.user_id)
            {
                user.phone_number = None;
                found.phone_number = Some(change.phone_number.as_str().to_owned());
            }
            Ok(found)
        })
    }

    async fn set_avatar(&self, change: AvatarChange) -> Result<User, StoreError> {
        self.transaction(|s| {
            let user = s
                .users
                .get_mut(&change.user_id)
                .ok_or(StoreError::NotFound)?;
            user.updated_at = self.time(change.now);
            user.profile.avatar_url = Some(change.url.clone());
            if !self.has(Flaw::KeepsEarlierAvatars) {
                s.avatars.retain(|_, (owner, _)| *owner != change.user_id);
            }
            let stored = StoredAvatar {
                kind: change.image.kind(),
                bytes: change.image.bytes().to_vec(),
                created_at: self.time(change.now),
            };
            s.avatars.insert(change.avatar_id, (change.user_id, stored));
            s.user(change.user_id, &change.app_id)
                .ok_or(StoreError::NotFound)
        })
    }

    async fn avatar(&self, id: AvatarId) -> Result<Option<StoredAvatar>, StoreError> {
        Ok(self.lock().avatars.get(&id).map(|(_, a)| a.clone()))
    }

    async fn erase_user(&self, user_id: UserId) -> Result<(), StoreError> {
        self.transaction(|s| {
            if s.users.remove(&user_id).is_none() && !self.has(Flaw::EraseUnknownIsOk) {
                return Err(StoreError::NotFound);
            }
            s.identities.retain(|_, i| i.user_id != user_id);
            if !self.has(Flaw::EraseKeepsAvatars) {
                s.avatars.retain(|_, (owner, _)| *owner != user_id);
            }
            if !self.has(Flaw::EraseKeepsSessions) {
                s.sessions.retain(|_, x| x.user_id != user_id);
            }
            Ok(())
        })
    }

    async fn purge_sessions(&self, before: PurgeBefore) -> Result<u64, StoreError> {
        let (now, last_seen) = (self.time(before.now), self.time(before.last_seen));
        self.transaction(|s| {
            let count = s.sessions.len();
            s.sessions.retain(|_, x| {
                let seen = if self.has(Flaw::PurgeIdleByCreation) {
                    x.created_at
                } else {
                    x.last_seen_at
                };
                let ended = x.revoked_at.is_some_and(|at| at <= now)
                    || x.expires_at <= now
                    || seen < last_seen;
                !ended
            });
            let purged = (count - s.sessions.len()) as u64;
            if !self.has(Flaw::PurgeKeepsLoginEvents) {
                let cut = now - LOGIN_EVENTS_KEPT;
                s.login_events.retain(|(at, _)| *at >= cut);
            }
            Ok(purged)
        })
    }

    async fn access_token(
        &self,
        app_id: &AppId,
        need: AccessTokenNeed,
        fetch: FetchAccessToken,
    ) -> Result<StoredAccessToken, AccessTokenError> {
        let _writing = self.write_lock().await?;
        let started = std::time::Instant::now();
        let now = || need.now + Duration::from_std(started.elapsed()).unwrap_or(need.lease);
        let holder = self
            .holders
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let judged = if self.has(Flaw::RefetchesInTheMargin) {
            AccessTokenNeed {
                fetched_after: DateTime::<Utc>::MAX_UTC,
                ..need
            }
        } else {
            need
        };
        loop {
            let wait = {
                let mut s = self.lock();
                let row = s.access_tokens.entry(app_id.clone()).or_default();
                let at = now();
                if let Some(token) = &row.token
                    && token.will_do(&judged)
                    && !self.has(Flaw::AccessTokenNeverReused)
                {
                    return Ok(token.clone());
                }
                match row.lease {
                    Some((_, until))
                        if !self.has(Flaw::AccessTokenLeaseless)
                            && (until > at || self.has(Flaw::NeverTakesOver)) =>
                    {
                        if let Some(token) = &row.token
                            && token.is_valid_at(at)
                            && !self.has(Flaw::WaitsDespiteValidToken)
                        {
                            return Ok(token.clone());
                        }
                        until
                    }
                    _ => {
                        row.lease = Some((holder, at + need.lease));
                        break;
                    }
                }
            };
            if started.elapsed() > need.lease.to_std().unwrap_or_default() * 2 {
                return Err(StoreError::Unavailable("the lease stayed taken".into()).into());
            }
            let left = (wait - now()).to_std().unwrap_or_default();
            tokio::time::sleep(left.clamp(
                std::time::Duration::from_millis(1),
                std::time::Duration::from_millis(10),
            ))
            .await;
        }
        let abandoned = Abandoned {
            store: (!self.has(Flaw::KeepsAbandonedLease)).then_some(self),
            app_id,
            holder,
        };
        let fetched = fetch().await;
        std::mem::forget(abandoned);
        self.end_fetch(app_id, holder, fetched.as_ref().ok());
        Ok(fetched?)
    }

    async fn forget_access_token(
        &self,
        app_id: &AppId,
        token: &AccessToken,
    ) -> Result<(), StoreError> {
        let _writing = self.write_lock().await?;
        let mut s = self.lock();
        if let Some(row) = s.access_tokens.get_mut(app_id)
            && row
                .token
                .as_ref()
                .is_some_and(|t| t.token == *token || self.has(Flaw::ForgetsAnyAccessToken))
        {
            row.token = None;
        }
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        if self.has(Flaw::PingFails) {
            return Err(StoreError::Unavailable("planted".into()));
        }
        Ok(())
    }

    /// A memory store is there from the start.
    fn available(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

impl Directory for MemStore {
    async fn search_users(&self, search: UserSearch) -> Result<Vec<User>, StoreError> {
        let s = self.lock();
        let mut ids: Vec<UserId> = s.users.keys().copied().collect();
        ids.sort();
        let fold = |t: &str| {
            if self.has(Flaw::NicknameCaseSensitive) {
                t.to_owned()
            } else {
                t.to_ascii_lowercase()
            }
        };
        let found = ids
            .into_iter()
            .filter(|id| {
                self.has(Flaw::SearchIgnoresCursor) || search.after.is_none_or(|after| *id > after)
            })
            .filter(|id| {
                search.open_id.as_ref().is_none_or(|o| {
                    s.identities
                        .iter()
                        .any(|((_, open_id), i)| open_id == o && i.user_id == *id)
                })
            })
            .filter_map(|id| s.shown_user(id, &search.app_id, self.flaw))
            .filter(|u| {
                search.nick_name.as_ref().is_none_or(|q| {
                    u.profile
                        .nick_name
                        .as_ref()
                        .is_some_and(|n| fold(n.as_str()).contains(&fold(q.as_str())))
                })
            })
            .take(search.limit as usize)
            .collect();
        Ok(found)
    }

    async fn user_detail(
        &self,
        app_id: &AppId,
        user_id: UserId,
        active: ActiveAt,
    ) -> Result<Option<UserDetail>, StoreError> {
        let s = self.lock();
        let Some(user) = s.shown_user(user_id, app_id, self.flaw) else {
            return Ok(None);
        };
        let active_sessions = s
            .sessions
            .values()
            .filter(|x| x.user_id == user_id)
            .filter(|x| {
                State::is_active(x, active)
                    || (self.has(Flaw::DetailCountsRevoked)
                        && State::is_active(
                            &SessionData {
                                revoked_at: None,
                                ..(*x).clone()
                            },
                            active,
                        ))
            })
            .count() as u64;
        Ok(Some(UserDetail {
            user,
            active_sessions,
        }))
    }

    async fn revoke_user_sessions(
        &self,
        user_id: UserId,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let now = self.time(now);
        self.transaction(|s| {
            if !s.users.contains_key(&user_id) {
                return Err(StoreError::NotFound);
            }
            let mut revoked = 0;
            for x in s.sessions.values_mut() {
                let mine = x.user_id == user_id || self.has(Flaw::RevokeHitsEveryone);
                if mine && x.revoked_at.is_none() && x.expires_at > now {
                    x.revoked_at = Some(now);
                    revoked += 1;
                }
            }
            Ok(revoked)
        })
    }

    async fn stats(&self, query: StatsQuery) -> Result<Stats, StoreError> {
        let s = self.lock();
        let since = |from: DateTime<Utc>| {
            if self.has(Flaw::StatsCountSessions) {
                s.sessions.values().filter(|x| x.created_at >= from).count() as u64
            } else {
                s.login_events.iter().filter(|(at, _)| *at >= from).count() as u64
            }
        };
        Ok(Stats {
            users: s.users.len() as u64,
            active_sessions: s
                .sessions
                .values()
                .filter(|x| State::is_active(x, query.active))
                .count() as u64,
            logins_last_hour: since(query.hour_from),
            logins_last_day: since(query.day_from),
        })
    }
}

/// Releases the lease of a fetch dropped before it ended (its caller cancelled).
struct Abandoned<'a> {
    store: Option<&'a MemStore>,
    app_id: &'a AppId,
    holder: u64,
}

impl Drop for Abandoned<'_> {
    fn drop(&mut self) {
        if let Some(store) = self.store {
            store.end_fetch(self.app_id, self.holder, None);
        }
    }
}

async fn fresh_store() -> (MemStore, ()) {
    (MemStore::default(), ())
}

wxlogin_store_contract::store_contract_tests!(fresh_store);

/// Runs one case against a flawed store and asserts that it fails.
macro_rules! must_catch {
    ($test:ident, $case:ident, $flaw:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $test() {
            let outcome = tokio::spawn(cases::$case(MemStore::flawed($flaw))).await;
            assert!(
                outcome.is_err_and(|e| e.is_panic()),
                "{} passed a store with {:?}",
                stringify!($case),
                $flaw
            );
        }
    };
}

must_catch!(
    catches_racy_login,
    concurrent_first_logins_create_one_user,
    Flaw::RacyLogin
);
must_catch!(
    catches_relogin_touching_the_user,
    find_or_create,
    Flaw::ReloginTouchesUser
);
must_catch!(
    catches_lookup_across_apps,
    sessions_are_found_by_digest_and_app,
    Flaw::IgnoresApp
);
must_catch!(
    catches_recomputed_expiry,
    expiry_fields_round_trip,
    Flaw::IgnoresExpiry
);
must_catch!(
    catches_overwritten_revocation,
    revocation_keeps_the_first_time,
    Flaw::RevokeOverwrites
);
must_catch!(
    catches_shared_session_key,
    session_keys_are_per_session,
    Flaw::SharedSessionKey
);
must_catch!(
    catches_profile_erasing_fields,
    profile_updates_apply_only_given_fields,
    Flaw::ProfileReplacesAll
);
must_catch!(
    catches_replaced_union_id,
    union_id_is_recorded_once,
    Flaw::OverwritesUnionId
);
must_catch!(
    catches_half_written_login,
    failed_login_leaves_nothing_behind,
    Flaw::NotAtomicLogin
);
must_catch!(
    catches_a_failed_login_among_concurrent_ones_half_written,
    a_failing_login_among_concurrent_ones_fails_alone,
    Flaw::NotAtomicLogin
);
must_catch!(
    catches_earlier_avatars_kept,
    an_avatar_replaces_the_earlier_one_and_goes_with_the_user,
    Flaw::KeepsEarlierAvatars
);
must_catch!(
    catches_avatars_kept_after_erasure,
    an_avatar_replaces_the_earlier_one_and_goes_with_the_user,
    Flaw::EraseKeepsAvatars
);
must_catch!(
    catches_racy_logins_in_opposite_orders,
    concurrent_logins_in_opposite_orders_make_one_user_each,
    Flaw::RacyLogin
);
must_catch!(
    catches_half_written_profile,
    failed_profile_update_changes_nothing,
    Flaw::NotAtomicProfile
);
must_catch!(
    catches_rounded_timestamps,
    timestamps_round_trip,
    Flaw::RoundsTimestamps
);
must_catch!(catches_failing_ping, ping_answers, Flaw::PingFails);
must_catch!(
    catches_an_access_token_never_reused,
    the_access_token_is_fetched_once_and_shared,
    Flaw::AccessTokenNeverReused
);
must_catch!(
    catches_forgetting_a_newer_access_token,
    a_stale_or_forgotten_access_token_is_fetched_anew,
    Flaw::ForgetsAnyAccessToken
);
must_catch!(
    catches_leaseless_access_token_renewal,
    concurrent_callers_make_one_access_token_fetch,
    Flaw::AccessTokenLeaseless
);
must_catch!(
    catches_a_lock_held_across_the_fetch,
    no_statement_waits_for_an_access_token_fetch,
    Flaw::LockedAcrossFetch
);
must_catch!(
    catches_waiting_despite_a_valid_token,
    a_valid_token_is_used_while_another_caller_renews_it,
    Flaw::WaitsDespiteValidToken
);
must_catch!(
    catches_refetching_in_the_margin,
    a_token_in_its_last_minutes_is_fetched_again_once_per_interval,
    Flaw::RefetchesInTheMargin
);
must_catch!(
    catches_a_lease_kept_after_a_failed_fetch,
    the_lease_is_released_when_a_fetch_ends_fails_or_is_abandoned,
    Flaw::KeepsLeaseOnFailure
);
must_catch!(
    catches_a_lease_kept_after_storing,
    the_lease_is_released_when_a_fetch_ends_fails_or_is_abandoned,
    Flaw::KeepsLeaseAfterStore
);
must_catch!(
    catches_an_abandoned_lease_kept,
    the_lease_is_released_when_a_fetch_ends_fails_or_is_abandoned,
    Flaw::KeepsAbandonedLease
);
must_catch!(
    catches_an_expired_lease_never_taken_over,
    an_expired_lease_is_taken_over_and_its_late_holder_stores_nothing,
    Flaw::NeverTakesOver
);
must_catch!(
    catches_a_late_holder_storing,
    an_expired_lease_is_taken_over_and_its_late_holder_stores_nothing,
    Flaw::LateHolderStores
);
must_catch!(
    catches_refresh_keeping_the_old_session,
    refresh_rotates_the_token,
    Flaw::RefreshKeepsOld
);
must_catch!(
    catches_refresh_of_a_revoked_session,
    refresh_of_an_ended_session_is_not_found,
    Flaw::RefreshRevivesRevoked
);
must_catch!(
    catches_racy_refresh,
    concurrent_refreshes_let_one_win,
    Flaw::RacyRefresh
);
must_catch!(
    catches_half_done_refresh,
    failed_refresh_changes_nothing,
    Flaw::NotAtomicRefresh
);
must_catch!(
    catches_touch_moving_back,
    touch_moves_last_seen_forward_only,
    Flaw::TouchMovesBack
);
must_catch!(
    catches_unsaved_phone_number,
    phone_number_is_recorded,
    Flaw::PhoneNotPersisted
);
must_catch!(
    catches_sessions_outliving_erasure,
    erasure_removes_the_user_and_all_of_it,
    Flaw::EraseKeepsSessions
);
must_catch!(
    catches_erasure_of_nobody_succeeding,
    erasing_an_unknown_user_is_not_found,
    Flaw::EraseUnknownIsOk
);
must_catch!(
    catches_idle_counted_from_login,
    purge_deletes_exactly_the_ended_sessions,
    Flaw::PurgeIdleByCreation
);
must_catch!(
    catches_a_search_ignoring_its_cursor,
    search_pages_users_in_id_order,
    Flaw::SearchIgnoresCursor
);
must_catch!(
    catches_a_case_sensitive_nickname_search,
    search_filters_by_open_id_and_nickname,
    Flaw::NicknameCaseSensitive
);
must_catch!(
    catches_revoked_sessions_counted_as_active,
    user_detail_counts_active_sessions,
    Flaw::DetailCountsRevoked
);
must_catch!(
    catches_a_revocation_of_everybody,
    revoking_a_users_sessions_ends_all_of_them,
    Flaw::RevokeHitsEveryone
);
must_catch!(
    catches_sessions_counted_as_logins,
    stats_count_users_sessions_and_logins,
    Flaw::StatsCountSessions
);
must_catch!(
    catches_the_earliest_identity_shown_whatever_the_app,
    users_are_shown_with_the_apps_identity_or_their_earliest,
    Flaw::ShowsEarliestIdentity
);
must_catch!(
    catches_login_events_kept_forever,
    the_purge_keeps_a_day_of_login_events,
    Flaw::PurgeKeepsLoginEvents
);

must_catch!(
    catches_identities_of_one_unionid_kept_apart,
    union_id_links_the_identities_of_two_apps,
    Flaw::NoUnionLinking
);
must_catch!(
    catches_racy_union_linking,
    concurrent_first_logins_in_two_apps_make_one_user,
    Flaw::RacyUnionLinking
);

/// Every public case in `cases` is listed in the macro, so none is silently left out.
#[test]
fn the_macro_runs_every_case() {
    let names = |source: &str, marker: &str| -> Vec<String> {
        source
            .lines()
            .filter_map(|l| l.trim().strip_prefix(marker))
            .filter_map(|rest| rest.split(['<', '(']).next())
            .map(|name| name.trim().to_owned())
            .collect()
    };
    let mut defined = names(include_str!("../src/cases.rs"), "pub async fn ");
    defined.sort();
    let lib = include_str!("../src/lib.rs");
    let listed_block = lib
        .split("@cases $factory;")
        .nth(1)
        .and_then(|rest| rest.split(");").next())
        .expect("the macro lists its cases");
    let mut listed: Vec<String> = listed_block
        .split(',')
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty())
        .collect();
    listed.sort();
    assert_eq!(defined, listed);
    assert_eq!(defined.len(), 41);
}
