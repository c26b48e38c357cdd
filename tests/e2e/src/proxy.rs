//! A TCP proxy between the server and its database that a test can cut and restore, to make
//! the database go away and come back as its clients see it: every open connection closed at
//! once (a transaction in flight is lost, as in a crash or restart) and the port closed, so new
//! connections are refused until the proxy is up again on the same port.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinHandle};

/// A loopback port forwarding to `upstream` while up. Dropping it closes everything.
pub struct TcpProxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    /// The accept loop while up; aborting it drops the listener, which closes the port.
    accepting: Option<JoinHandle<()>>,
    /// Every connection forwarded since the last cut.
    links: Vec<AbortHandle>,
}

impl TcpProxy {
    /// A proxy that is up on a free loopback port.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let proxy = Self::on(listener.local_addr().expect("proxy address"), upstream);
        proxy.serve(listener);
        proxy
    }

    /// A proxy whose port is closed (nothing listens) until [`TcpProxy::up`].
    pub async fn closed(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("reserve a port");
        let addr = listener.local_addr().expect("proxy address");
        drop(listener);
        Self::on(addr, upstream)
    }

    fn on(addr: SocketAddr, upstream: SocketAddr) -> Self {
        Self {
            addr,
            upstream,
            state: Arc::default(),
        }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Opens the port again (the same one) and forwards new connections.
    pub async fn up(&self) {
        let mut tries = 0;
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(listener) => break listener,
                // The closed port's old sockets may linger for a moment.
                Err(e) if tries < 50 => {
                    tries += 1;
                    eprintln!("proxy: rebinding {}: {e}; retrying", self.addr);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("cannot listen on {} again: {e}", self.addr),
            }
        };
        self.serve(listener);
    }

    /// Closes every forwarded connection and the port.
    pub fn cut(&self) {
        let mut state = lock(&self.state);
        if let Some(accepting) = state.accepting.take() {
            accepting.abort();
        }
        for link in state.links.drain(..) {
            link.abort();
        }
    }

    fn serve(&self, listener: TcpListener) {
        let (state, upstream) = (Arc::clone(&self.state), self.upstream);
        let mut guard = lock(&self.state);
        assert!(guard.accepting.is_none(), "the proxy is already up");
        guard.accepting = Some(tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    // Out of descriptors, say: wait instead of spinning.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let link = tokio::spawn(forward(client, upstream));
                let mut state = lock(&state);
                if state.accepting.is_none() {
                    // Cut while this connection was being accepted.
                    link.abort();
                } else {
                    state.links.retain(|l| !l.is_finished());
                    state.links.push(link.abort_handle());
                }
            }
        }));
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.cut();
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Copies both ways until either side closes; aborting the task closes both sockets.
async fn forward(mut client: TcpStream, upstream: SocketAddr) {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
}
