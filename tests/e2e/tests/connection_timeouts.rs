//! Clients that stop sending: a half-sent request head, a half-sent body and an idle
//! keep-alive connection are each cut off, their connection closed by the server. The only
//! time limit here is a generous failure bound: the server closing at all is what is checked.

use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use wxlogin_e2e::*;

/// Far above every bound configured below: reaching it means the server never closed.
const FAILURE_BOUND: Duration = Duration::from_secs(20);

async fn app() -> TestApp {
    spawn_app_with(|s| {
        s.server.header_read_timeout_ms = Some(300);
        s.server.body_read_timeout_ms = Some(300);
        s.server.keep_alive_timeout_secs = Some(1);
    })
    .await
}

async fn connect(app: &TestApp) -> TcpStream {
    let addr = app.url.trim_start_matches("http://");
    TcpStream::connect(addr).await.expect("connect")
}

/// Reads until the server closes the connection (EOF or reset), and returns what it sent.
async fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let closed = tokio::time::timeout(FAILURE_BOUND, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the server never closed the connection");
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_sent_request_head_is_cut_off() {
    let app = app().await;
    let mut stream = connect(&app).await;
    stream
        .write_all(b"POST /onLogin HTTP/1.1\r\nHost: localhost\r\nContent-Ty")
        .await
        .expect("send half a head");
    read_until_closed(&mut stream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_never_sends_is_cut_off() {
    let app = app().await;
    let mut stream = connect(&app).await;
    read_until_closed(&mut stream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_sent_body_is_cut_off() {
    let app = app().await;
    let mut stream = connect(&app).await;
    stream
        .write_all(
            b"POST /onLogin HTTP/1.1\r\nHost: localhost\r\n\
              Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 40\r\n\r\ncode=",
        )
        .await
        .expect("send the head and a little of the body");
    let answer = read_until_closed(&mut stream).await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 400"),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_after_its_answer() {
    let app = app().await;
    let mut stream = connect(&app).await;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("send a request");
    let answer = read_until_closed(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// A client that sends slowly but steadily is not what the bounds are for: a head sent in
/// pieces inside the bound is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_sent_in_pieces_is_answered() {
    let app = app().await;
    let mut stream = connect(&app).await;
    for piece in [
        &b"GET /healthz HTTP/1.1\r\n"[..],
        b"Host: localhost\r\n",
        b"\r\n",
    ] {
        stream.write_all(piece).await.expect("send a piece");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let answer = read_until_closed(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}
