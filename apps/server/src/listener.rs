//! The connection loop: accepts TCP connections and serves the poem app on each with hyper,
//! bounding what a client may leave unfinished. poem's own `Server` has an idle timeout but
//! no bound on reading a request head (hyper's needs a timer poem does not give it), and a
//! connection stalled halfway through a head is never idle to it; so the loop is ours.
//!
//! Each connection has a watchdog that knows which phase it is in: waiting for a request head
//! (bounded by `header_read_timeout`, from the connection's start or the first byte of the
//! next request), a request in flight (the body's own bound is the body-read middleware's,
//! `http::middleware::limit_body`; the handler's is the service's), or idle between requests
//! (bounded by `keep_alive_timeout`). Past its bound, a connection is closed at once.
//!
//! Shutdown: stop accepting, let every connection finish the request it serves (idle ones
//! close at once), and close whatever is still open when the grace period ends.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use poem::web::{LocalAddr, RemoteAddr};
use poem::{Addr, Endpoint, IntoResponse};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// The bounds on a connection outside the requests it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// A request head must be complete this long after the server began waiting for it (the
    /// connection's start, or the first byte of a later request on it).
    pub header_read_timeout: Duration,
    /// A connection with no request in flight and no byte moving for this long is closed.
    /// Longer than the idle timeout of the load balancers in front (60 s is common), so that
    /// they, not we, close idle connections and never reuse one we are closing.
    pub keep_alive_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            keep_alive_timeout: Duration::from_secs(75),
        }
    }
}

/// Serves `app` on `listener` until `signal`, then drains for at most `grace`.
pub async fn serve<E>(
    listener: TcpListener,
    app: E,
    limits: ConnectionLimits,
    signal: impl Future<Output = ()>,
    grace: Duration,
) -> io::Result<()>
where
    E: Endpoint + 'static,
{
    let app = Arc::new(app);
    let local = listener.local_addr()?;
    let (stop, stopping) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut signal = std::pin::pin!(signal);
    loop {
        tokio::select! {
            () = &mut signal => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, remote)) => {
                    connections.spawn(connection(
                        stream,
                        local,
                        remote,
                        Arc::clone(&app),
                        limits,
                        stopping.clone(),
                    ));
                }
                // Out of file descriptors and the like: wait a little rather than spin.
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            // Reaps finished connections, so the set holds only open ones.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let _ = stop.send(true);
    tracing::info!(
        open = connections.len(),
        grace_secs = grace.as_secs_f32(),
        "graceful shutdown: draining connections"
    );
    let drained = tokio::time::timeout(grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = connections.len(),
            "grace period over: closing the connections still open"
        );
        connections.shutdown().await;
    }
    tracing::info!("server stopped");
    Ok(())
}

/// One connection: hyper serving `app` on it, under its watchdog and the shutdown signal.
async fn connection<E: Endpoint + 'static>(
    stream: TcpStream,
    local: SocketAddr,
    remote: SocketAddr,
    app: Arc<E>,
    limits: ConnectionLimits,
    mut stopping: watch::Receiver<bool>,
) {
    // Answers are small and written at once: no waiting for more to send.
    let _ = stream.set_nodelay(true);
    let phase = Arc::new(Phase::new());
    let service = {
        let phase = Arc::clone(&phase);
        hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
            let (app, phase) = (Arc::clone(&app), Arc::clone(&phase));
            async move {
                let _request = phase.request_started();
                let req = poem::Request::from((
                    req,
                    LocalAddr(Addr::SocketAddr(local)),
                    RemoteAddr(Addr::SocketAddr(remote)),
                    poem::http::uri::Scheme::HTTP,
                ));
                let resp = app.get_response(req).await.into_response();
                Ok::<_, Infallible>(hyper::Response::from(resp))
            }
        })
    };
    let io = TokioIo::new(Watched {
        inner: stream,
        phase: Arc::clone(&phase),
    });
    let builder = auto::Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection_with_upgrades(io, service);
    let mut conn = std::pin::pin!(conn);
    let mut draining = *stopping.borrow();
    if draining {
        conn.as_mut().graceful_shutdown();
    }
    let mut check = Instant::now() + limits.header_read_timeout;
    loop {
        tokio::select! {
            _ = conn.as_mut() => return,
            () = tokio::time::sleep_until(check) => match phase.verdict(Instant::now(), &limits) {
                Ok(next) => check = next,
                Err(why) => {
                    tracing::debug!(%remote, why, "closing the connection");
                    return;
                }
            },
            // A closed channel (the loop gone) counts as the signal too.
            _ = stopping.changed(), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// What a connection is doing, as its watchdog sees it. Times are milliseconds since the
/// connection started.
struct Phase {
    started: Instant,
    /// Requests whose answer is not ready yet.
    in_flight: AtomicUsize,
    /// When the server began waiting for the head being read, or [`NONE`] between requests.
    head_since: AtomicU64,
    /// The last time a byte moved either way, or a request ended.
    last_activity: AtomicU64,
}

const NONE: u64 = u64::MAX;

impl Phase {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            in_flight: AtomicUsize::new(0),
            // A new connection owes its first head at once.
            head_since: AtomicU64::new(0),
            last_activity: AtomicU64::new(0),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(NONE - 1)
    }

    fn at(&self, ms: u64) -> Instant {
        self.started + Duration::from_millis(ms)
    }

    fn bytes_read(&self) {
        let now = self.now();
        self.last_activity.store(now, Ordering::Relaxed);
        if self.in_flight.load(Ordering::Acquire) == 0 {
            // The first byte of a new head starts its clock; later bytes leave it.
            let _ =
                self.head_since
                    .compare_exchange(NONE, now, Ordering::AcqRel, Ordering::Relaxed);
        }
    }

    fn bytes_written(&self) {
        self.last_activity.store(self.now(), Ordering::Relaxed);
    }

    /// A head arrived: its clock stops until the request ends.
    fn request_started(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.head_since.store(NONE, Ordering::Release);
        InFlight(Arc::clone(self))
    }

    /// `Ok(when to look again)`, or `Err(why the connection must close)`.
    fn verdict(&self, now: Instant, limits: &ConnectionLimits) -> Result<Instant, &'static str> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return Ok(now + limits.header_read_timeout.min(limits.keep_alive_timeout));
        }
        let head_since = self.head_since.load(Ordering::Acquire);
        let (deadline, why) = if head_since == NONE {
            let last = self.last_activity.load(Ordering::Relaxed);
            (
                self.at(last) + limits.keep_alive_timeout,
                "idle keep-alive connection",
            )
        } else {
            (
                self.at(head_since) + limits.header_read_timeout,
                "request head not received in time",
            )
        };
        if now >= deadline {
            Err(why)
        } else {
            Ok(deadline)
        }
    }
}

/// A request in flight; its end counts as activity (the idle clock starts there).
struct InFlight(Arc<Phase>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.bytes_written();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The socket, reporting the bytes it moves to the connection's [`Phase`].
struct Watched {
    inner: TcpStream,
    phase: Arc<Phase>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.phase.bytes_read();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.phase.bytes_written();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.phase.bytes_written();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
