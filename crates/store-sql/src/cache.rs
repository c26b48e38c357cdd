//! The session cache: what [`UserStore::find_session`](wxlogin_domain::UserStore) found
//! lately, kept in memory so that an authenticated request (`GET /api/v1/me` and every call
//! with a bearer token) costs no database round trip.
//!
//! What keeps it right:
//! - **Every write of this process** that changes a session or its user forgets the entries
//!   it touches, after its commit (a revocation, a refresh, a key rotation, a profile, phone or
//!   avatar change, an erasure, an operator's revocation, a login that learnt a unionid).
//! - **Writes of other instances** reach it through the database: on Postgres each such write
//!   sends a notification in its own transaction (delivered at its commit), and a listener task
//!   feeds them to [`SessionCache::apply`]. The cache answers only while that channel is up
//!   ([`SessionCache::set_live`]): from the moment the listener loses its connection until it
//!   listens again, every lookup goes to the database, and whatever was cached is dropped.
//!   SQLite has no such channel: its cache assumes one server per database file.
//! - **No stale fill**: a lookup that missed takes a ticket before it reads the database and
//!   may store what it read only if nothing was forgotten since ([`SessionCache::fill`]), so a
//!   read that raced a write never outlives the write.
//! - **A short life**: an entry is used for at most the configured lifetime, so what is not
//!   invalidated (`last_seen_at`, which other instances move forward; a purge) is never older
//!   than that.
//! - **Bounded**: past its capacity it starts again empty.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::oneshot;
use uuid::Uuid;
use wxlogin_domain::{AppId, SessionId, SessionRecord, TokenDigest, UserId};

/// How the cache is set up (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheSettings {
    /// How long an entry is used before the database is asked again.
    pub lifetime: Duration,
    /// The most sessions kept; beyond it the cache starts again empty.
    pub capacity: usize,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            lifetime: Duration::from_secs(10),
            capacity: 100_000,
        }
    }
}

/// The notification channel of the session cache (Postgres `LISTEN`/`NOTIFY`).
pub const CHANNEL: &str = "wxlogin_sessions";

/// See the module doc.
pub struct SessionCache {
    settings: CacheSettings,
    /// Whether lookups may be answered from memory.
    live: AtomicBool,
    inner: Mutex<Inner>,
    /// The writes of this process waiting to hear their own notification (see [`Echo`]).
    echoes: Mutex<HashMap<u64, oneshot::Sender<()>>>,
    next_echo: AtomicU64,
    /// Names this process's echoes among every instance's notifications.
    instance: String,
    /// Raised when a write's echo did not come back: the listener may be deaf.
    suspect: AtomicBool,
}

/// Counts only: the entries hold token digests, session keys and users.
impl std::fmt::Debug for SessionCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionCache")
            .field("settings", &self.settings)
            .field("live", &self.is_live())
            .field("entries", &self.len())
            .finish_non_exhaustive()
    }
}

/// A write's wait for its own notification to come back through this process's listener:
/// once it has, PostgreSQL has delivered it to every listener, and the write answers its
/// caller. Without the wait, a client told "logged out" by one instance could ask another
/// before that one's listener had read the notification.
#[derive(Debug)]
pub struct Echo {
    tag: String,
    nonce: u64,
    heard: oneshot::Receiver<()>,
}

impl Echo {
    /// The payload part that names it: `n:<this process's id>:<nonce>`.
    pub fn tag(&self) -> &str {
        &self.tag
    }
}

#[derive(Default)]
struct Inner {
    by_digest: HashMap<TokenDigest, Entry>,
    by_session: HashMap<SessionId, TokenDigest>,
    by_user: HashMap<UserId, Vec<TokenDigest>>,
    /// Counts every forgetting; a fill whose ticket is older is refused.
    generation: u64,
}

struct Entry {
    app_id: AppId,
    /// Shared, so that a hit copies it outside the lock.
    record: Arc<SessionRecord>,
    stored: Instant,
}

/// What a lookup that missed holds while it reads the database (see [`SessionCache::fill`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket(u64);

/// What one notification says to forget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forget {
    User(UserId),
    Session(SessionId),
}

impl Forget {
    /// The notification's payload: `u:<user id>` or `s:<session id>`.
    pub fn payload(self) -> String {
        match self {
            Self::User(id) => format!("u:{}", id.as_uuid()),
            Self::Session(id) => format!("s:{}", id.as_uuid()),
        }
    }

    /// Several in one payload, comma-separated.
    pub fn payloads(all: &[Self]) -> String {
        all.iter()
            .map(|f| f.payload())
            .collect::<Vec<_>>()
            .join(",")
    }

    fn parse(part: &str) -> Option<Self> {
        let (kind, id) = part.split_once(':')?;
        let id = Uuid::parse_str(id).ok()?;
        match kind {
            "u" => Some(Self::User(UserId::from_uuid(id))),
            "s" => Some(Self::Session(SessionId::from_uuid(id))),
            _ => None,
        }
    }
}

impl SessionCache {
    /// A cache that answers at once if `live` (SQLite), or once its channel is up.
    pub fn new(settings: CacheSettings, live: bool) -> Self {
        Self {
            settings,
            live: AtomicBool::new(live),
            inner: Mutex::default(),
            echoes: Mutex::default(),
            next_echo: AtomicU64::new(0),
            instance: Uuid::now_v7().simple().to_string(),
            suspect: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether lookups are answered from memory now.
    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::Acquire)
    }

    /// Turns answering from memory on (the channel listens again) or off (it was lost). Either
    /// way everything cached is dropped and lookups in flight may not store what they read:
    /// what changed while the channel was down was never heard of.
    pub fn set_live(&self, live: bool) {
        let mut inner = self.lock();
        inner.clear();
        self.live.store(live, Ordering::Release);
        drop(inner);
        if live {
            self.suspect.store(false, Ordering::Release);
        } else {
            // Nothing will bring the echoes back: their writes go on at once.
            self.echoes
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clear();
        }
    }

    /// The session with this digest, as `app_id` sees it, if it was stored less than the
    /// lifetime ago.
    pub fn get(&self, app_id: &AppId, digest: &TokenDigest) -> Option<SessionRecord> {
        if !self.is_live() {
            return None;
        }
        let record = {
            let inner = self.lock();
            let entry = inner.by_digest.get(digest)?;
            (entry.app_id == *app_id && entry.stored.elapsed() < self.settings.lifetime)
                .then(|| Arc::clone(&entry.record))?
        };
        Some(SessionRecord::clone(&record))
    }

    /// Taken before a database read whose result [`SessionCache::fill`] may keep; `None` while
    /// the cache is not live.
    pub fn ticket(&self) -> Option<Ticket> {
        self.is_live().then(|| Ticket(self.lock().generation))
    }

    /// Keeps what a lookup read, unless something was forgotten since its ticket was taken
    /// (the read may predate that write) or the cache went down meanwhile.
    pub fn fill(&self, ticket: Ticket, app_id: &AppId, record: &SessionRecord) {
        let mut inner = self.lock();
        if inner.generation != ticket.0 || !self.is_live() {
            return;
        }
        if inner.by_digest.len() >= self.settings.capacity {
            inner.clear();
            return;
        }
        let digest = record.session.token_digest;
        inner.remove(&digest);
        inner.by_session.insert(record.session.id, digest);
        inner
            .by_user
            .entry(record.session.user_id)
            .or_default()
            .push(digest);
        inner.by_digest.insert(
            digest,
            Entry {
                app_id: app_id.clone(),
                record: Arc::new(record.clone()),
                stored: Instant::now(),
            },
        );
    }

    /// Forgets what `forget` names (a write of this process, after its commit).
    pub fn forget(&self, forget: Forget) {
        let mut inner = self.lock();
        inner.generation += 1;
        match forget {
            Forget::User(user) => {
                for digest in inner.by_user.remove(&user).unwrap_or_default() {
                    inner.remove(&digest);
                }
            }
            Forget::Session(session) => {
                if let Some(digest) = inner.by_session.get(&session).copied() {
                    inner.remove(&digest);
                }
            }
        }
    }

    /// An [`Echo`] to send with a notification, while the channel is up (else nothing would
    /// bring it back).
    pub fn echo(&self) -> Option<Echo> {
        if !self.is_live() {
            return None;
        }
        let nonce = self.next_echo.fetch_add(1, Ordering::Relaxed);
        let (tx, heard) = oneshot::channel();
        let mut echoes = self.echoes.lock().unwrap_or_else(PoisonError::into_inner);
        // Echoes whose write gave up (a failed statement or commit, a cancelled request).
        if echoes.len() >= 64 {
            echoes.retain(|_, tx| !tx.is_closed());
        }
        echoes.insert(nonce, tx);
        Some(Echo {
            tag: format!("n:{}:{nonce}", self.instance),
            nonce,
            heard,
        })
    }

    /// Waits, at most `patience`, for `echo` to come back.
    pub async fn heard(&self, echo: Echo, patience: Duration) {
        let nonce = echo.nonce;
        if tokio::time::timeout(patience, echo.heard).await.is_err() {
            // The listener may be deaf (a connection dropped without a word): it reconnects.
            tracing::warn!("a session-cache notification did not come back in time");
            self.suspect.store(true, Ordering::Release);
        }
        self.echoes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&nonce);
    }

    /// Forgets everything (a payload it cannot read: safer to start again).
    pub fn forget_all(&self) {
        self.lock().clear();
    }

    /// Applies a notification from another instance (or this one: forgetting twice is
    /// harmless).
    pub fn apply(&self, payload: &str) {
        let mut echo = None;
        let parsed: Option<Vec<Forget>> = payload
            .split(',')
            .filter(|part| match part.strip_prefix("n:") {
                Some(tag) => {
                    echo = tag
                        .split_once(':')
                        .filter(|(instance, _)| *instance == self.instance)
                        .and_then(|(_, nonce)| nonce.parse::<u64>().ok());
                    false
                }
                None => true,
            })
            .map(Forget::parse)
            .collect();
        match parsed {
            Some(all) => all.into_iter().for_each(|f| self.forget(f)),
            None => {
                tracing::warn!("unreadable session-cache notification; the cache starts again");
                self.forget_all();
            }
        }
        // Only after the forgetting: the waiting write answers its caller next.
        if let Some(nonce) = echo
            && let Some(tx) = self
                .echoes
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&nonce)
        {
            let _ = tx.send(());
        }
    }

    /// The session was used at `now` and its `last_seen_at` written: the cached copy follows.
    pub fn touched(&self, session: SessionId, now: DateTime<Utc>) {
        let mut inner = self.lock();
        let Some(digest) = inner.by_session.get(&session).copied() else {
            return;
        };
        if let Some(entry) = inner.by_digest.get_mut(&digest)
            && entry.record.session.last_seen_at < now
        {
            Arc::make_mut(&mut entry.record).session.last_seen_at = now;
        }
    }

    /// Whether a write's echo did not come back since the last call (see
    /// [`SessionCache::heard`]): the listener should start again.
    pub fn take_suspicion(&self) -> bool {
        self.suspect.swap(false, Ordering::AcqRel)
    }

    /// How many sessions are cached (for tests and metrics).
    pub fn len(&self) -> usize {
        self.lock().by_digest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Inner {
    fn clear(&mut self) {
        self.by_digest.clear();
        self.by_session.clear();
        self.by_user.clear();
        self.generation += 1;
    }

    fn remove(&mut self, digest: &TokenDigest) {
        let Some(entry) = self.by_digest.remove(digest) else {
            return;
        };
        let session = &entry.record.session;
        self.by_session.remove(&session.id);
        if let Some(digests) = self.by_user.get_mut(&session.user_id) {
            digests.retain(|d| d != digest);
            if digests.is_empty() {
                self.by_user.remove(&session.user_id);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use wxlogin_domain::{OpenId, Profile, Session, SessionKey, User};

    use super::*;

    fn app() -> AppId {
        AppId::parse("wx-app").unwrap()
    }

    fn record(user: UserId, n: u8) -> SessionRecord {
        let now = Utc::now();
        SessionRecord {
            session: Session {
                id: SessionId::new(),
                user_id: user,
                token_digest: TokenDigest::from_bytes([n; 32]),
                session_key: SessionKey::from_base64("AAAAAAAAAAAAAAAAAAAAAA==").unwrap(),
                created_at: now,
                expires_at: now + chrono::Duration::days(1),
                revoked_at: None,
                last_seen_at: now,
            },
            user: User {
                id: user,
                open_id: OpenId::parse("o-cache").unwrap(),
                union_id: None,
                profile: Profile::default(),
                phone_number: None,
                created_at: now,
                updated_at: now,
            },
        }
    }

    fn live() -> SessionCache {
        SessionCache::new(CacheSettings::default(), true)
    }

    fn cached(cache: &SessionCache, r: &SessionRecord) -> bool {
        cache.get(&app(), &r.session.token_digest).is_some()
    }

    fn fill(cache: &SessionCache, r: &SessionRecord) {
        let ticket = cache.ticket().unwrap();
        cache.fill(ticket, &app(), r);
    }

    #[test]
    fn a_fill_is_answered_for_its_app_only() {
        let cache = live();
        let r = record(UserId::new(), 1);
        assert!(!cached(&cache, &r));
        fill(&cache, &r);
        let hit = cache.get(&app(), &r.session.token_digest).unwrap();
        assert_eq!(hit.session.id, r.session.id);
        let other = AppId::parse("wx-other").unwrap();
        assert!(cache.get(&other, &r.session.token_digest).is_none());
    }

    #[test]
    fn forgetting_a_user_or_a_session_drops_exactly_theirs() {
        let cache = live();
        let (alice, bob) = (UserId::new(), UserId::new());
        let (a1, a2, b1) = (record(alice, 1), record(alice, 2), record(bob, 3));
        for r in [&a1, &a2, &b1] {
            fill(&cache, r);
        }
        cache.forget(Forget::Session(a1.session.id));
        assert!(!cached(&cache, &a1));
        assert!(cached(&cache, &a2) && cached(&cache, &b1));
        cache.forget(Forget::User(alice));
        assert!(!cached(&cache, &a2));
        assert!(cached(&cache, &b1));
        assert_eq!(cache.len(), 1);
    }

    /// A read that began before a write must not be kept after it: its data may be older.
    #[test]
    fn a_fill_that_raced_a_forget_is_refused() {
        let cache = live();
        let r = record(UserId::new(), 1);
        let ticket = cache.ticket().unwrap();
        cache.forget(Forget::Session(SessionId::new()));
        cache.fill(ticket, &app(), &r);
        assert!(!cached(&cache, &r));
        fill(&cache, &r);
        assert!(cached(&cache, &r));
    }

    #[test]
    fn a_dark_cache_answers_nothing_and_keeps_nothing() {
        let cache = SessionCache::new(CacheSettings::default(), false);
        let r = record(UserId::new(), 1);
        assert!(cache.ticket().is_none());
        cache.set_live(true);
        let ticket = cache.ticket().unwrap();
        fill(&cache, &r);
        assert!(cached(&cache, &r));
        // The channel is lost: everything goes, and a read in flight is not kept.
        cache.set_live(false);
        assert!(!cached(&cache, &r) && cache.is_empty());
        cache.fill(ticket, &app(), &r);
        assert!(cache.is_empty());
        // It listens again: what was cached before is not back.
        cache.set_live(true);
        assert!(!cached(&cache, &r));
    }

    #[test]
    fn entries_live_for_the_lifetime_only_and_the_capacity_bounds_them() {
        let cache = SessionCache::new(
            CacheSettings {
                lifetime: Duration::from_millis(30),
                capacity: 2,
            },
            true,
        );
        let (r1, r2, r3) = (
            record(UserId::new(), 1),
            record(UserId::new(), 2),
            record(UserId::new(), 3),
        );
        fill(&cache, &r1);
        fill(&cache, &r2);
        assert_eq!(cache.len(), 2);
        fill(&cache, &r3);
        assert!(cache.is_empty(), "past its capacity it starts again");
        fill(&cache, &r1);
        assert!(cached(&cache, &r1));
        std::thread::sleep(Duration::from_millis(40));
        assert!(!cached(&cache, &r1), "older than its lifetime");
    }

    #[test]
    fn notifications_forget_what_they_name_and_garbage_forgets_all() {
        let cache = live();
        let (alice, bob) = (UserId::new(), UserId::new());
        let (a, b, c) = (record(alice, 1), record(bob, 2), record(UserId::new(), 3));
        for r in [&a, &b, &c] {
            fill(&cache, r);
        }
        cache.apply(&Forget::payloads(&[
            Forget::User(alice),
            Forget::Session(b.session.id),
        ]));
        assert!(!cached(&cache, &a) && !cached(&cache, &b));
        assert!(cached(&cache, &c));
        cache.apply("u:not-a-uuid");
        assert!(cache.is_empty());
    }

    #[test]
    fn a_touch_moves_the_cached_last_seen_forward_only() {
        let cache = live();
        let r = record(UserId::new(), 1);
        fill(&cache, &r);
        let later = r.session.last_seen_at + chrono::Duration::minutes(5);
        cache.touched(r.session.id, later);
        let seen = |c: &SessionCache| {
            c.get(&app(), &r.session.token_digest)
                .unwrap()
                .session
                .last_seen_at
        };
        assert_eq!(seen(&cache), later);
        cache.touched(r.session.id, r.session.last_seen_at);
        assert_eq!(seen(&cache), later);
    }

    #[tokio::test]
    async fn a_write_hears_its_own_notification_after_the_forgetting() {
        let cache = live();
        let r = record(UserId::new(), 1);
        fill(&cache, &r);
        let echo = cache.echo().expect("live: an echo");
        let payload = format!(
            "{},{}",
            echo.tag(),
            Forget::payloads(&[Forget::User(r.session.user_id)])
        );
        let started = Instant::now();
        cache.apply(&payload);
        assert!(
            !cached(&cache, &r),
            "the nonce is no reason to forget all, nor to skip"
        );
        cache.heard(echo, Duration::from_secs(5)).await;
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "the echo woke the write"
        );
        // A dark cache promises no echo; one that never comes back is waited for only so long.
        let lost = cache.echo().expect("an echo");
        let started = Instant::now();
        cache.heard(lost, Duration::from_millis(50)).await;
        assert!(started.elapsed() >= Duration::from_millis(50));
        cache.set_live(false);
        assert!(cache.echo().is_none());
    }

    /// Another instance counts its echoes from 0 too: its notification wakes no write here.
    #[tokio::test]
    async fn only_this_processs_echo_wakes_its_write_and_a_dark_cache_wakes_them_all() {
        let cache = live();
        let echo = cache.echo().expect("an echo");
        let other = echo.tag().replacen(&cache.instance, "0000", 1);
        cache.apply(&format!("{other},u:{}", Uuid::now_v7()));
        let started = Instant::now();
        cache.heard(echo, Duration::from_millis(50)).await;
        assert!(
            started.elapsed() >= Duration::from_millis(50),
            "woken by another's echo"
        );
        assert!(
            cache.take_suspicion(),
            "an echo that never came back raises suspicion"
        );
        assert!(!cache.take_suspicion(), "once");

        let waiting = cache.echo().expect("an echo");
        cache.set_live(false);
        let started = Instant::now();
        cache.heard(waiting, Duration::from_secs(5)).await;
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "a dark cache keeps no write waiting"
        );
    }
}
