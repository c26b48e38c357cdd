//! The port's methods, written once over what a [`Backend`] supplies.

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sqlx::{
    ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Pool, Transaction, Type,
};
use tokio::sync::{Semaphore, mpsc, oneshot};
use uuid::Uuid;
use wxlogin_domain::{
    AccessToken, AccessTokenError, AccessTokenNeed, AppId, AvatarChange, AvatarId,
    FetchAccessToken, LoginRecord, NewLogin, PhoneChange, ProfileChange, PurgeBefore, SessionId,
    SessionKey, SessionRecord, SessionRefresh, StoreError, StoredAccessToken, StoredAvatar,
    TokenDigest, User, UserId, UserStore,
};

use crate::cache::{CacheSettings, Echo, Forget, SessionCache};
use crate::rows::AccessTokenRow;
use crate::{Conn, Dialect, Queries};

/// The first pause of a caller waiting for another's fetch of the access token; it doubles up
/// to [`MAX_PAUSE`], and never passes the lease's expiry (but waits at least [`MIN_PAUSE`]).
const FIRST_PAUSE: Duration = Duration::from_millis(10);
const MAX_PAUSE: Duration = Duration::from_millis(200);
const MIN_PAUSE: Duration = Duration::from_millis(1);

/// The longest a write waits for its own session-cache notification to come back (it answers
/// anyway: the notification was sent in its transaction; a listener this slow is a sick one).
const ECHO_PATIENCE: Duration = Duration::from_secs(1);

/// What a store that is not ready yet answers (see [`Store::open_lazy`]).
const NOT_READY: &str = "the database has not been reached yet (connecting and migrating)";

/// What differs between the stores beyond binding values: how they connect, how a write
/// transaction begins, and how a first login creates its user. Implemented by a marker type
/// of each store crate.
pub trait Backend: Dialect {
    /// The store's options; [`Default`] holds its defaults.
    type Options: Default + Send;

    /// Where the database is: a URL parsed once, by [`Backend::locate`].
    type Location: Send + Sync;

    /// Parses a database URL. The error text never echoes the URL (it may hold a password).
    fn locate(url: &str) -> Result<Self::Location, StoreError>;

    /// Builds the pools with `options` (checking them first). A backend may connect at once
    /// (SQLite opens its file) or on first use (Postgres, so that a server can start before
    /// its database is up); either way nothing is migrated yet.
    fn pools(
        location: &Self::Location,
        options: Self::Options,
    ) -> impl Future<Output = Result<Pools<Self::Db>, StoreError>> + Send;

    /// Applies the migrations that have not been applied yet. A database that cannot be
    /// reached is [`StoreError::Unavailable`]; a migration that fails is
    /// [`StoreError::Unexpected`].
    fn migrate(pools: &Pools<Self::Db>) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The statement that begins the transaction of a login, a profile or phone change, or a
    /// refresh.
    const BEGIN_WRITE: &'static str;

    /// How many batches of logins are written at once (group commit, see [`Store`]), or 0 for
    /// a transaction per login. Group commit is worth it wherever a commit costs more than the
    /// statements before it: on SQLite, whose single writer makes this 1, and on Postgres,
    /// whose commit waits for its WAL flush.
    const LOGIN_WRITERS: usize;

    /// The statement (binding the payload as `$1`) that tells the other instances' session
    /// caches what a write changed, inside the write's transaction, or `None` where no other
    /// instance can cache (SQLite: one server per database file). See [`crate::cache`].
    const NOTIFY: Option<&'static str>;

    /// Keeps a session cache right across instances: starts what feeds it the notifications
    /// of [`Backend::NOTIFY`] and turns it live while they are heard. `None` (the default)
    /// for a backend without notifications, whose cache is live from the start.
    fn watch(pools: &Pools<Self::Db>, cache: Arc<SessionCache>) -> Option<Background> {
        let _ = (pools, cache);
        None
    }

    /// The rest of a login's find-or-create, once [`Queries::returning_user`] found no identity:
    /// creates the user and its identity, or finds the user a concurrent login created. The
    /// user's id, and whether this login created it.
    fn create_user(
        conn: &mut Conn<Self>,
        login: &NewLogin,
    ) -> impl Future<Output = Result<(Self::Id, bool), StoreError>> + Send;

    /// Logins in few trips to the database, in the caller's transaction and in order, where
    /// the store can: each one's record and whether an existing user learnt its unionid.
    /// `None` (the default) runs each login's steps one by one:
    /// [`Queries::returning_user_learning`], [`Queries::linked_user`],
    /// [`Backend::create_user`], [`Queries::finish_login`].
    fn login_at_once(
        conn: &mut Conn<Self>,
        logins: &[&NewLogin],
    ) -> impl Future<Output = Result<Option<Vec<(LoginRecord, bool)>>, StoreError>> + Send {
        let _ = (conn, logins);
        std::future::ready(Ok(None))
    }
}

/// Where a store's statements run. The two may be one pool (clones of it).
#[derive(Debug)]
pub struct Pools<DB: Database> {
    /// Single-statement reads: finding a session, pings.
    pub reader: Pool<DB>,
    /// Transactions and single-statement writes.
    pub writer: Pool<DB>,
    /// A task of the backend's own that works beside the pools (SQLite's WAL checkpoints),
    /// stopped when the store is closed or its last clone is dropped.
    pub background: Option<Arc<Background>>,
}

/// A background task of a store, aborted when dropped (see [`Pools::background`]).
#[derive(Debug)]
pub struct Background(tokio::task::AbortHandle);

impl Background {
    /// Takes charge of the task behind `handle`.
    pub fn new(handle: tokio::task::AbortHandle) -> Self {
        Self(handle)
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A store over the database of backend `B`: each port method is one transaction (writes
/// that touch several rows) or one statement. Cheap to clone: clones share the pools and the
/// readiness.
///
/// A store opened with [`Store::open_lazy`] is not *ready* until [`Store::migrate`] has
/// succeeded: until then every method answers [`StoreError::Unavailable`] at once, without
/// touching the database, whose schema may not exist yet.
///
/// Logins on a backend with [`Backend::LOGIN_WRITERS`] above 0 go through a writer task,
/// started by the first login: it takes the logins queued meanwhile (at most [`MAX_BATCH`]) and
/// writes them in one transaction, each login's statements as they would run alone, and
/// answers each caller only after the commit; up to `LOGIN_WRITERS` such batches are written at
/// once. Each batch is sorted first (see [`lock_order`]), so two batches (of this instance or
/// of another on the same database) take their locks in one order and cannot deadlock over
/// them. If a statement of one login fails (a deadlock the database broke included), the
/// whole transaction is rolled back and each login of the batch runs again in a transaction of
/// its own, so one login's failure is its own; if the database is unavailable, every caller of
/// the batch gets that answer. Either way no login is acknowledged before the commit that holds
/// it.
pub struct Store<B: Backend> {
    pools: Pools<B::Db>,
    /// Set once the migrations have been applied; never cleared.
    ready: Arc<AtomicBool>,
    /// The session cache, if on (see [`crate::cache`]), and what keeps it right across
    /// instances (stopped with the last clone).
    cache: Option<(Arc<SessionCache>, Option<Arc<Background>>)>,
    /// The queue of the writer task, once the first login has started it (`None` inside the
    /// writer task's own store, which writes directly).
    logins: Option<Arc<OnceLock<LoginQueue>>>,
}

/// The most logins one group commit writes.
pub const MAX_BATCH: usize = 64;

/// Logins waiting for the writer task beyond the batch it is writing; a caller beyond them
/// waits to be queued.
const QUEUE_DEPTH: usize = 1024;

/// The writer task's side of a queued login: the login, and where its answer goes.
struct PendingLogin {
    login: NewLogin,
    reply: oneshot::Sender<Result<LoginRecord, StoreError>>,
}

type LoginQueue = mpsc::Sender<PendingLogin>;

// Written out: derived, they would require the database type itself to be `Clone`.
impl<DB: Database> Clone for Pools<DB> {
    fn clone(&self) -> Self {
        Self {
            reader: self.reader.clone(),
            writer: self.writer.clone(),
            background: self.background.clone(),
        }
    }
}

impl<B: Backend> Clone for Store<B> {
    fn clone(&self) -> Self {
        Self {
            pools: self.pools.clone(),
            ready: Arc::clone(&self.ready),
            cache: self.cache.clone(),
            logins: self.logins.clone(),
        }
    }
}

impl<B: Backend> Debug for Store<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("database", &<B::Db as Database>::NAME)
            .field("pools", &self.pools)
            .field("ready", &self.is_ready())
            .finish()
    }
}

impl<B: Backend> Store<B> {
    /// Opens the database at `url` with the backend's default options, and applies the
    /// migrations.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, B::Options::default()).await
    }

    /// Opens the database at `url` with explicit options (checked first: an invalid value is
    /// [`StoreError::Unexpected`] naming the option), and applies the migrations.
    pub async fn connect_with(url: &str, options: B::Options) -> Result<Self, StoreError> {
        Self::open(&B::locate(url)?, options).await
    }

    /// Opens the database at an already parsed location (the server parses its configuration
    /// once, at start), and applies the migrations.
    pub async fn open(location: &B::Location, options: B::Options) -> Result<Self, StoreError> {
        let store = Self::open_lazy(location, options).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Builds the store without migrating: it is not ready, and answers
    /// [`StoreError::Unavailable`], until [`Store::migrate`] succeeds. On Postgres this
    /// connects on first use, so it succeeds while the database is still down; the server
    /// starts this way and migrates in the background until the database appears.
    pub async fn open_lazy(
        location: &B::Location,
        options: B::Options,
    ) -> Result<Self, StoreError> {
        let pools = B::pools(location, options).await?;
        let store = Self {
            pools,
            ready: Arc::new(AtomicBool::new(false)),
            cache: None,
            logins: (B::LOGIN_WRITERS > 0).then(|| Arc::new(OnceLock::new())),
        };
        Ok(store.with_session_cache(Some(CacheSettings::default())))
    }

    /// Turns the session cache on with `settings`, or off with `None` (it is on, with
    /// [`CacheSettings::default`], in a store just opened). Call it before the store is cloned
    /// or used: clones made earlier keep the cache they had.
    #[must_use]
    pub fn with_session_cache(mut self, settings: Option<CacheSettings>) -> Self {
        self.cache = settings.map(|settings| {
            let cache = Arc::new(SessionCache::new(settings, B::NOTIFY.is_none()));
            let watcher = B::watch(&self.pools, Arc::clone(&cache)).map(Arc::new);
            (cache, watcher)
        });
        self
    }

    /// The session cache, if on.
    pub fn session_cache(&self) -> Option<&SessionCache> {
        self.cache.as_ref().map(|(cache, _)| cache.as_ref())
    }

    /// Forgets what a write changed in this process's session cache (after its commit, or
    /// its failure: a commit whose answer was lost may have happened).
    pub(crate) fn forget(&self, forget: &[Forget]) {
        if let Some(cache) = self.session_cache() {
            forget.iter().for_each(|f| cache.forget(*f));
        }
    }

    /// Applies the pending migrations (several instances may do so at once: each migration
    /// runs exactly once) and makes the store ready. Idempotent.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        if self.is_ready() {
            return Ok(());
        }
        B::migrate(&self.pools).await?;
        self.ready.store(true, Ordering::Release);
        Ok(())
    }

    /// Whether the migrations have been applied (see [`Store::open_lazy`]).
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// The pool for single-statement reads, once the store is ready.
    pub(crate) fn reader(&self) -> Result<&Pool<B::Db>, StoreError> {
        self.check_ready().map(|()| &self.pools.reader)
    }

    /// The pool for transactions and single-statement writes, once the store is ready.
    pub(crate) fn writer(&self) -> Result<&Pool<B::Db>, StoreError> {
        self.check_ready().map(|()| &self.pools.writer)
    }

    fn check_ready(&self) -> Result<(), StoreError> {
        if self.is_ready() {
            Ok(())
        } else {
            Err(StoreError::Unavailable(NOT_READY.into()))
        }
    }

    /// Begins a write transaction the backend's way.
    pub(crate) async fn begin_write(&self) -> Result<Transaction<'static, B::Db>, StoreError> {
        self.writer()?
            .begin_with(B::BEGIN_WRITE)
            .await
            .map_err(B::map_err)
    }

    /// Closes the store's pools, waiting for connections in use to be returned.
    pub async fn close(&self) {
        if let Some(background) = &self.pools.background {
            background.0.abort();
        }
        if let Some((cache, watcher)) = &self.cache {
            if let Some(watcher) = watcher {
                watcher.0.abort();
            }
            // Nothing keeps it right any more.
            cache.set_live(false);
        }
        self.pools.writer.close().await;
        self.pools.reader.close().await;
    }
}

impl<B: Backend> Store<B>
where
    for<'c> &'c mut Conn<B>: Executor<'c, Database = B::Db>,
    <B::Db as Database>::Arguments: IntoArguments<B::Db>,
    for<'r> &'r str: ColumnIndex<<B::Db as Database>::Row>,
    for<'q> &'q str: Encode<'q, B::Db> + Type<B::Db>,
    for<'q> Option<&'q str>: Encode<'q, B::Db>,
    for<'q> &'q [u8]: Encode<'q, B::Db> + Type<B::Db>,
    for<'q> Option<B::Gender>: Encode<'q, B::Db>,
    for<'r> String: Decode<'r, B::Db> + Type<B::Db>,
    for<'r> Vec<u8>: Decode<'r, B::Db> + Type<B::Db>,
    for<'r> DateTime<Utc>: Decode<'r, B::Db> + Type<B::Db>,
{
    /// One login's statements, in the caller's transaction: find or create its user, then
    /// insert its session. Also says whether an existing user changed (it learnt its unionid).
    async fn login_steps(
        conn: &mut Conn<B>,
        login: &NewLogin,
    ) -> Result<(LoginRecord, bool), StoreError> {
        let (user_id, is_new_user, changed) =
            match Queries::<B>::returning_user_learning(conn, login).await? {
                Some((user_id, learnt)) => (user_id, false, learnt),
                None => match Queries::<B>::linked_user(conn, login).await? {
                    Some(user_id) => (user_id, false, false),
                    None => {
                        let (user_id, is_new_user) = B::create_user(conn, login).await?;
                        (user_id, is_new_user, false)
                    }
                },
            };
        let record = Queries::<B>::finish_login(conn, login, user_id, is_new_user).await?;
        Ok((record, changed))
    }

    /// A login in a transaction of its own.
    async fn login_alone(&self, login: &NewLogin) -> Result<LoginRecord, StoreError> {
        self.login_together(&[login])
            .await
            .map(|mut records| records.remove(0))
    }

    /// Several logins in one transaction, in order; the first failure rolls back all of them.
    /// The users they changed are notified in the same transaction and forgotten after it.
    async fn login_together(&self, batch: &[&NewLogin]) -> Result<Vec<LoginRecord>, StoreError> {
        let mut tx = self.begin_write().await?;
        let done = match B::login_at_once(&mut tx, batch).await? {
            Some(done) => done,
            None => {
                let mut done = Vec::with_capacity(batch.len());
                for login in batch {
                    done.push(Self::login_steps(&mut tx, login).await?);
                }
                done
            }
        };
        let mut records = Vec::with_capacity(batch.len());
        let mut changed = Vec::new();
        for (record, user_changed) in done {
            if user_changed {
                changed.push(Forget::User(record.user.id));
            }
            records.push(record);
        }
        let committed = async {
            let echo = self.notify(&mut tx, &changed).await?;
            tx.commit().await.map_err(B::map_err)?;
            Ok(echo)
        }
        .await;
        self.forget(&changed);
        self.heard(committed?).await;
        Ok(records)
    }

    /// Starts the writer task of group commit (see [`Store`]) and returns its queue. The task
    /// writes through a store of its own without a queue, and ends when every clone of this
    /// store, and so the queue, is gone.
    fn start_writer(&self) -> LoginQueue {
        let (queue, mut pending) = mpsc::channel::<PendingLogin>(QUEUE_DEPTH);
        let writer = Self {
            pools: self.pools.clone(),
            ready: Arc::clone(&self.ready),
            cache: self.cache.clone(),
            logins: None,
        };
        let writers = Arc::new(Semaphore::new(B::LOGIN_WRITERS));
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(MAX_BATCH);
            // A batch is taken only once a writer is free for it: the logins arriving meanwhile
            // wait in the queue and make the next batch.
            while let Ok(free) = Arc::clone(&writers).acquire_owned().await
                && pending.recv_many(&mut batch, MAX_BATCH).await > 0
            {
                // A caller that gave up is not written for.
                batch.retain(|p: &PendingLogin| !p.reply.is_closed());
                // One lock order for every batch (stable: one user's logins keep theirs).
                batch.sort_by(|a, b| lock_order(&a.login).cmp(&lock_order(&b.login)));
                // Each batch in a task of its own: should writing it panic (a bug), only its
                // callers fail (their answers are dropped: "the login writer has stopped"),
                // and the next batch is written as usual.
                let (writer, batch) = (writer.clone(), std::mem::take(&mut batch));
                let written = tokio::spawn(async move { writer.write_batch(batch).await });
                tokio::spawn(async move {
                    if written.await.is_err() {
                        tracing::error!("writing a batch of logins panicked; its logins failed");
                    }
                    drop(free);
                });
            }
        });
        queue
    }

    /// Writes one batch and answers its callers.
    async fn write_batch(&self, mut batch: Vec<PendingLogin>) {
        let outcome = match batch.len() {
            0 => return,
            1 => Err(None),
            _ => {
                let logins: Vec<&NewLogin> = batch.iter().map(|p| &p.login).collect();
                self.login_together(&logins).await.map_err(Some)
            }
        };
        match outcome {
            Ok(records) => {
                for (pending, record) in batch.drain(..).zip(records) {
                    let _ = pending.reply.send(Ok(record));
                }
            }
            // Nothing can be written now: every caller hears so, without a retry each.
            Err(Some(e @ StoreError::Unavailable(_))) => {
                for pending in batch.drain(..) {
                    let _ = pending.reply.send(Err(e.clone()));
                }
            }
            // One login alone, or a batch that failed for one of its logins: each alone.
            Err(_) => {
                for pending in batch.drain(..) {
                    let record = self.login_alone(&pending.login).await;
                    let _ = pending.reply.send(record);
                }
            }
        }
    }

    /// Runs `fetch` under `holder`'s lease, outside any transaction, then stores its token
    /// and releases the lease in one statement; a failed fetch only releases it. A holder whose
    /// lease was taken over meanwhile stores nothing (the new holder's token is as new) and
    /// still answers with its token. An abandoned fetch (its caller cancelled) releases the
    /// lease from a task of its own, so the others need not wait for it to expire.
    async fn fetch_under_lease(
        &self,
        app_id: &AppId,
        holder: &str,
        fetch: FetchAccessToken,
    ) -> Result<StoredAccessToken, AccessTokenError> {
        let mut abandoned = ReleaseOnDrop(Some({
            let (writer, app_id, holder) =
                (self.writer()?.clone(), app_id.clone(), holder.to_owned());
            Box::pin(async move {
                if let Err(e) =
                    Queries::<B>::release_access_token_lease(&writer, &app_id, &holder).await
                {
                    tracing::warn!(error = %e, "could not release an abandoned access-token lease");
                }
            })
        }));
        let outcome = match fetch().await {
            Ok(token) => {
                Queries::<B>::store_access_token(self.writer()?, app_id, holder, &token).await?;
                Ok(token)
            }
            Err(e) => {
                Queries::<B>::release_access_token_lease(self.writer()?, app_id, holder).await?;
                Err(e.into())
            }
        };
        abandoned.0 = None;
        outcome
    }
}

/// What every write that a session cache must hear of shares (see [`crate::cache`]).
impl<B: Backend> Store<B>
where
    for<'c> &'c mut Conn<B>: Executor<'c, Database = B::Db>,
    <B::Db as Database>::Arguments: IntoArguments<B::Db>,
    for<'q> &'q str: Encode<'q, B::Db> + Type<B::Db>,
{
    /// Sends [`Backend::NOTIFY`] for `forget` on `conn` (inside the write's transaction),
    /// with the [`Echo`] that [`Store::heard`] then waits for.
    pub(crate) async fn notify(
        &self,
        conn: &mut Conn<B>,
        forget: &[Forget],
    ) -> Result<Option<Echo>, StoreError> {
        let Some(statement) = B::NOTIFY.filter(|_| !forget.is_empty()) else {
            return Ok(None);
        };
        let echo = self.session_cache().and_then(SessionCache::echo);
        let payload = match &echo {
            Some(echo) => format!("{},{}", echo.tag(), Forget::payloads(forget)),
            None => Forget::payloads(forget),
        };
        sqlx::query(statement)
            .bind(payload.as_str())
            .execute(&mut *conn)
            .await
            .map_err(B::map_err)?;
        Ok(echo)
    }

    /// After the commit: waits (at most [`ECHO_PATIENCE`]) until this process's listener has
    /// heard the write's own notification, so that every instance's has (see [`Echo`]).
    pub(crate) async fn heard(&self, echo: Option<Echo>) {
        if let (Some(echo), Some(cache)) = (echo, self.session_cache()) {
            cache.heard(echo, ECHO_PATIENCE).await;
        }
    }

    /// Ends a write transaction that changed what `forget` names: notifies the other
    /// instances in it, commits, and forgets here (whatever the commit's outcome).
    pub(crate) async fn commit_and_forget(
        &self,
        mut tx: Transaction<'static, B::Db>,
        forget: &[Forget],
    ) -> Result<(), StoreError> {
        let committed = async {
            let echo = self.notify(&mut tx, forget).await?;
            tx.commit().await.map_err(B::map_err)?;
            Ok(echo)
        }
        .await;
        self.forget(forget);
        self.heard(committed?).await;
        Ok(())
    }

    /// One write that changes what `forget` names: in a transaction with its notification
    /// where other instances may cache, as a single statement on the writer pool elsewhere;
    /// then forgotten here. `write` runs its statement on the connection it is given.
    pub(crate) async fn write_and_forget<T>(
        &self,
        forget: Forget,
        write: impl AsyncFnOnce(&mut Conn<B>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let outcome = if B::NOTIFY.is_some() {
            let mut tx = self.begin_write().await?;
            async {
                let value = write(&mut tx).await?;
                let echo = self.notify(&mut tx, &[forget]).await?;
                tx.commit().await.map_err(B::map_err)?;
                Ok((value, echo))
            }
            .await
        } else {
            let mut conn = self.writer()?.acquire().await.map_err(B::map_err)?;
            write(&mut conn).await.map(|value| (value, None))
        };
        self.forget(&[forget]);
        let (value, echo) = outcome?;
        self.heard(echo).await;
        Ok(value)
    }
}

/// The order in which a batch's logins are written, the same in every batch: the locks a login
/// takes are its unionid's (Postgres links a first login to another app's user under an
/// advisory lock on the unionid) and then its identity's, so ordering by unionid, then app and
/// openid, makes every batch take them in one order.
fn lock_order(login: &NewLogin) -> (Option<&str>, &str, &str) {
    (
        login.union_id.as_ref().map(|u| u.as_str()),
        login.app_id.as_str(),
        login.open_id.as_str(),
    )
}

/// What a login hears if the writer task is gone (it only ends with the store, or by a bug).
fn writer_stopped() -> StoreError {
    StoreError::Unavailable("the login writer has stopped".into())
}

/// Runs its release when dropped while still holding it: in a task of its own (a drop cannot
/// wait), if there is a runtime to run it; else the lease expires by itself.
struct ReleaseOnDrop(Option<Pin<Box<dyn Future<Output = ()> + Send>>>);

impl Drop for ReleaseOnDrop {
    fn drop(&mut self) {
        if let Some(release) = self.0.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            drop(runtime.spawn(release));
        }
    }
}

impl<B: Backend> UserStore for Store<B>
where
    for<'c> &'c mut Conn<B>: Executor<'c, Database = B::Db>,
    <B::Db as Database>::Arguments: IntoArguments<B::Db>,
    for<'r> &'r str: ColumnIndex<<B::Db as Database>::Row>,
    for<'q> &'q str: Encode<'q, B::Db> + Type<B::Db>,
    for<'q> Option<&'q str>: Encode<'q, B::Db>,
    for<'q> &'q [u8]: Encode<'q, B::Db> + Type<B::Db>,
    for<'q> Option<B::Gender>: Encode<'q, B::Db>,
    for<'r> String: Decode<'r, B::Db> + Type<B::Db>,
    for<'r> Vec<u8>: Decode<'r, B::Db> + Type<B::Db>,
    for<'r> DateTime<Utc>: Decode<'r, B::Db> + Type<B::Db>,
{
    async fn login(&self, login: NewLogin) -> Result<LoginRecord, StoreError> {
        let Some(queue) = &self.logins else {
            return self.login_alone(&login).await;
        };
        // Not ready: answer at once, as every other method does.
        self.check_ready()?;
        let queue = queue.get_or_init(|| self.start_writer());
        let (reply, answer) = oneshot::channel();
        queue
            .send(PendingLogin { login, reply })
            .await
            .map_err(|_| writer_stopped())?;
        answer.await.map_err(|_| writer_stopped())?
    }

    async fn find_session(
        &self,
        app_id: &AppId,
        digest: &TokenDigest,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let Some(cache) = self.session_cache() else {
            return Queries::<B>::find_session(self.reader()?, app_id, digest).await;
        };
        if let Some(record) = cache.get(app_id, digest) {
            return Ok(Some(record));
        }
        let ticket = cache.ticket();
        let found = Queries::<B>::find_session(self.reader()?, app_id, digest).await?;
        if let (Some(ticket), Some(record)) = (ticket, &found) {
            cache.fill(ticket, app_id, record);
        }
        Ok(found)
    }

    async fn update_profile(&self, change: ProfileChange) -> Result<User, StoreError> {
        let mut tx = self.begin_write().await?;
        let user = Queries::<B>::update_profile(&mut tx, &change).await?;
        self.commit_and_forget(tx, &[Forget::User(change.user_id)])
            .await?;
        Ok(user)
    }

    async fn rotate_session_key(
        &self,
        session_id: SessionId,
        key: SessionKey,
    ) -> Result<(), StoreError> {
        self.write_and_forget(Forget::Session(session_id), async |conn| {
            Queries::<B>::rotate_session_key(conn, session_id, &key).await
        })
        .await
    }

    async fn revoke_session(
        &self,
        session_id: SessionId,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.write_and_forget(Forget::Session(session_id), async |conn| {
            Queries::<B>::revoke_session(conn, session_id, now).await
        })
        .await
    }

    async fn refresh_session(&self, refresh: SessionRefresh) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        Queries::<B>::refresh_session(&mut tx, &refresh).await?;
        self.commit_and_forget(tx, &[Forget::Session(refresh.old_session_id)])
            .await
    }

    async fn touch_session(
        &self,
        session_id: SessionId,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        Queries::<B>::touch_session(self.writer()?, session_id, now).await?;
        if let Some(cache) = self.session_cache() {
            cache.touched(session_id, now);
        }
        Ok(())
    }

    async fn set_phone_number(&self, change: PhoneChange) -> Result<User, StoreError> {
        let mut tx = self.begin_write().await?;
        let user = Queries::<B>::set_phone_number(&mut tx, &change).await?;
        self.commit_and_forget(tx, &[Forget::User(change.user_id)])
            .await?;
        Ok(user)
    }

    async fn set_avatar(&self, change: AvatarChange) -> Result<User, StoreError> {
        let mut tx = self.begin_write().await?;
        let user = Queries::<B>::set_avatar(&mut tx, &change).await?;
        self.commit_and_forget(tx, &[Forget::User(change.user_id)])
            .await?;
        Ok(user)
    }

    async fn avatar(&self, id: AvatarId) -> Result<Option<StoredAvatar>, StoreError> {
        Queries::<B>::avatar(self.reader()?, id).await
    }

    async fn erase_user(&self, user_id: UserId) -> Result<(), StoreError> {
        self.write_and_forget(Forget::User(user_id), async |conn| {
            Queries::<B>::erase_user(conn, user_id).await
        })
        .await
    }

    async fn purge_sessions(&self, before: PurgeBefore) -> Result<u64, StoreError> {
        let purged = Queries::<B>::purge_sessions(self.writer()?, before).await?;
        // The statistics' login events go after a day (their longest window).
        crate::admin::purge_login_events::<B, _>(
            self.writer()?,
            before.now - wxlogin_domain::LOGIN_EVENTS_KEPT,
        )
        .await?;
        Ok(purged)
    }

    /// The lease, in short statements (see the port): read the row; take the lease when the
    /// token will not do and the lease is free or expired; else use a still valid token, or
    /// poll for the holder's with a growing pause. Time moves on from `need.now` by this
    /// process's monotonic clock.
    async fn access_token(
        &self,
        app_id: &AppId,
        need: AccessTokenNeed,
        fetch: FetchAccessToken,
    ) -> Result<StoredAccessToken, AccessTokenError> {
        let started = Instant::now();
        let now = || need.now + chrono::Duration::from_std(started.elapsed()).unwrap_or(need.lease);
        // Bounds the loop: a lease still taken this long after we began was set by a clock far
        // ahead of ours (or with a far longer lease), and we give up rather than wait on.
        let patience = need.lease.to_std().unwrap_or_default() * 2;
        let holder = Uuid::now_v7().hyphenated().to_string();
        let mut pause = FIRST_PAUSE;
        loop {
            if started.elapsed() >= patience {
                return Err(StoreError::Unavailable(
                    "the access token's lease stayed taken past its lifetime".into(),
                )
                .into());
            }
            let row = Queries::<B>::access_token_row(self.reader()?, app_id).await?;
            let stored = row.as_ref().and_then(AccessTokenRow::token);
            if let Some(stored) = stored.as_ref().filter(|t| t.will_do(&need)) {
                return Ok(stored.clone());
            }
            let at = now();
            let lease_until = row.as_ref().and_then(AccessTokenRow::lease_until);
            match lease_until {
                Some(until) if until > at => {
                    // Taken: a token that still works is better than waiting.
                    if let Some(stored) = stored.filter(|t| t.is_valid_at(at)) {
                        return Ok(stored);
                    }
                    let left = (until - at).to_std().unwrap_or_default();
                    tokio::time::sleep(pause.min(left).max(MIN_PAUSE)).await;
                    pause = (pause * 2).min(MAX_PAUSE);
                }
                _ => {
                    if row.is_none() {
                        Queries::<B>::insert_access_token_row(self.writer()?, app_id).await?;
                    }
                    let until = at + need.lease;
                    if Queries::<B>::take_access_token_lease(
                        self.writer()?,
                        app_id,
                        &holder,
                        at,
                        until,
                        &need,
                    )
                    .await?
                    {
                        return self.fetch_under_lease(app_id, &holder, fetch).await;
                    }
                    // Another caller took the lease or stored a token since the read: look again.
                }
            }
        }
    }

    async fn forget_access_token(
        &self,
        app_id: &AppId,
        token: &AccessToken,
    ) -> Result<(), StoreError> {
        Queries::<B>::forget_access_token(self.writer()?, app_id, token).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Queries::<B>::ping(self.reader()?).await
    }

    fn available(&self) -> Result<(), StoreError> {
        self.check_ready()
    }
}
