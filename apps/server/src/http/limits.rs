//! The limits of DESIGN §8 that the HTTP layer enforces: the budget of *failed* attempts per
//! client address, and the budget of failed decryptions per token (the exact rules are in
//! `docs/security.md`, "Limits").
//!
//! [`limit`] wraps every operation. Only failures spend: after the answer, a failure of one of
//! the [`counted`] kinds takes one cell from the address's budget (and, for a decryption that
//! failed, one from the token's). Before the handler, an unauthenticated attempt (a code
//! exchange or an operator login, carrying no bearer token) from an address whose budget is
//! empty is answered 429 `rate_limited` with `Retry-After`, and so is a decryption with a token
//! whose decrypt budget is empty. A request with a token always runs; if the token turns out
//! unknown and the address has nothing left to spend, its 401 becomes the 429. A valid token is
//! never refused by the address budget, and a success never spends, so a crowd behind one
//! carrier NAT keeps logging in.
//!
//! Knows nothing of stores or WeChat: it reads the request's path, its peer address (or the
//! `X-Forwarded-For` of a trusted proxy) and its token, and the [`Failure`] of the answer.

use std::collections::HashMap;
use std::hash::{BuildHasher as _, Hash, RandomState};
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use governor::clock::{Clock as _, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use ipnet::IpNet;
use poem::http::header;
use poem::{Endpoint, IntoResponse, Request, Response};

use crate::http::auth::pick_token;
use crate::http::error::{ErrorCode, Failure};

/// Code exchanges: unauthenticated attempts that cost a WeChat call.
const CODE_EXCHANGES: &[&str] = &["/onLogin", "/api/v1/login"];
/// Operator logins (HTTP Basic, an argon2id check each).
const OPERATORS: &str = "/admin/";
/// Operations that decrypt with the session's key.
const DECRYPTING: &[&str] = &[
    "/updateUserInfo",
    "/api/v1/me/profile/encrypted",
    "/api/v1/me/phone",
];
/// The operation that may carry its token in the body (form or JSON `token`).
const BODY_TOKEN: &str = "/updateUserInfo";

/// What the limits allow (`[limits]` and `server.trusted_proxies`). Defaults: DESIGN §8.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitsConfig {
    /// Failed attempts an address may make at once (the bucket's size).
    pub failed_burst: NonZeroU32,
    /// How many failed attempts per second refill an address's bucket.
    pub failed_per_second: NonZeroU32,
    /// Failed decryptions (`decrypt_failed`, `signature_mismatch`) a token may have per minute.
    pub decrypt_failures_per_minute: NonZeroU32,
    /// Peers whose `X-Forwarded-For` names the client (load balancers, reverse proxies).
    pub trusted_proxies: Vec<IpNet>,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            failed_burst: NonZeroU32::new(50).unwrap_or(NonZeroU32::MIN),
            failed_per_second: NonZeroU32::new(10).unwrap_or(NonZeroU32::MIN),
            decrypt_failures_per_minute: NonZeroU32::new(10).unwrap_or(NonZeroU32::MIN),
            trusted_proxies: Vec::new(),
        }
    }
}

/// Whether a failure of this code spends budget: invalid or used codes, unknown tokens (and
/// wrong operator passwords, which answer `invalid_token` too), decrypt and signature failures.
pub const fn counted(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::InvalidCode
            | ErrorCode::CodeUsed
            | ErrorCode::InvalidToken
            | ErrorCode::DecryptFailed
            | ErrorCode::SignatureMismatch
    )
}

/// Whether an operation that can answer `codes` can also be refused by the limits (its
/// OpenAPI entry then lists `rate_limited`).
pub fn refusable(codes: &[ErrorCode]) -> bool {
    codes.iter().any(|c| counted(*c))
}

/// The state of the limits: one budget per client address, one per token.
pub struct Limits {
    failed: Budget<IpAddr>,
    decrypt: Budget<u64>,
    trusted: Vec<IpNet>,
    /// Tokens are kept as keyed 64-bit hashes only, never as the secret itself.
    hasher: RandomState,
}

impl Limits {
    pub fn new(config: &LimitsConfig) -> Self {
        let failed = Quota::per_second(config.failed_per_second).allow_burst(config.failed_burst);
        let decrypt = Quota::per_minute(config.decrypt_failures_per_minute);
        Self {
            failed: Budget::new(failed),
            decrypt: Budget::new(decrypt),
            trusted: config.trusted_proxies.clone(),
            hasher: RandomState::new(),
        }
    }

    /// The budget key of the client: the peer, or behind trusted proxies the rightmost
    /// address of `X-Forwarded-For` that is not a trusted proxy. IPv6 clients are keyed by
    /// their /64 (one subscriber's prefix), IPv4-mapped addresses as IPv4.
    fn client(&self, req: &Request) -> Option<IpAddr> {
        let peer = req.remote_addr().as_socket_addr()?.ip();
        let forwarded = req
            .headers()
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>();
        Some(bucket(client_address(peer, &forwarded, &self.trusted)))
    }

    fn token_key(&self, token: &str) -> u64 {
        self.hasher.hash_one(token)
    }
}

/// The client address: `peer` itself unless it is a trusted proxy; then the `X-Forwarded-For`
/// hops (all headers, in order) are read from the right, skipping trusted proxies, and the
/// first untrusted one is the client. A hop that is not an address stops the walk at the
/// trusted hop that reported it; all hops trusted: the leftmost.
pub fn client_address(peer: IpAddr, forwarded: &[&str], trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let mut client = peer;
    let hops = forwarded
        .iter()
        .flat_map(|h| h.split(','))
        .collect::<Vec<_>>();
    for hop in hops.iter().rev() {
        let Some(ip) = parse_hop(hop) else {
            return client;
        };
        client = ip;
        if !is_trusted(&ip) {
            return ip;
        }
    }
    client
}

/// `1.2.3.4`, `1.2.3.4:567`, `2001:db8::1`, `[2001:db8::1]:567`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Ok(sock) = hop.parse::<std::net::SocketAddr>() {
        return Some(canonical(sock.ip()));
    }
    None
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// The key of an address's budget: IPv4 as is, IPv6 by its /64.
fn bucket(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

type Limiter<K> =
    RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock, StateInformationMiddleware>;

/// A keyed budget that is spent only by failures and that can be asked, without spending,
/// whether it is empty (governor has no such question: the budget remembers, for each key
/// that spent its last cell, until when it stays empty).
struct Budget<K: Hash + Eq + Clone> {
    limiter: Limiter<K>,
    empty_until: Mutex<HashMap<K, Instant>>,
    refill: Duration,
    spends: AtomicU64,
}

/// How often the budgets forget keys that are full again (in spends).
const TIDY_EVERY: u64 = 4096;

impl<K: Hash + Eq + Clone> Budget<K> {
    fn new(quota: Quota) -> Self {
        Self {
            refill: quota.replenish_interval(),
            limiter: RateLimiter::keyed(quota).with_middleware::<StateInformationMiddleware>(),
            empty_until: Mutex::new(HashMap::new()),
            spends: AtomicU64::new(0),
        }
    }

    fn empty(&self) -> std::sync::MutexGuard<'_, HashMap<K, Instant>> {
        self.empty_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// `Some(wait)` while `key` has nothing left to spend.
    fn refused_for(&self, key: &K) -> Option<Duration> {
        let now = Instant::now();
        let mut empty = self.empty();
        match empty.get(key) {
            Some(until) if *until > now => Some(*until - now),
            Some(_) => {
                empty.remove(key);
                None
            }
            None => None,
        }
    }

    /// Spends one cell; `Err(wait)` when there was none left.
    fn spend(&self, key: &K) -> Result<(), Duration> {
        if self.spends.fetch_add(1, Ordering::Relaxed) % TIDY_EVERY == TIDY_EVERY - 1 {
            self.tidy();
        }
        let now = Instant::now();
        match self.limiter.check_key(key) {
            Ok(snapshot) => {
                if snapshot.remaining_burst_capacity() == 0 {
                    // The next cell comes within one refill interval.
                    self.empty().insert(key.clone(), now + self.refill);
                }
                Ok(())
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.limiter.clock().now());
                self.empty().insert(key.clone(), now + wait);
                Err(wait)
            }
        }
    }

    fn tidy(&self) {
        self.limiter.retain_recent();
        let now = Instant::now();
        self.empty().retain(|_, until| *until > now);
    }
}

/// Whole seconds for `Retry-After`, rounded up.
fn seconds(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

fn refused(wait: Duration, detail: &'static str, reason: &str) -> poem::Error {
    crate::metrics::limiter_rejected(reason);
    Failure::new(ErrorCode::RateLimited)
        .with_retry_after(seconds(wait))
        .with_detail(detail)
        .into()
}

/// The request's token: `Authorization: Bearer …`, or for `/updateUserInfo` its body's
/// `token` field first (as the operation reads it). The body has already been read into
/// memory by the body limit.
async fn token_of(req: &mut Request, path: &str) -> Option<String> {
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = if path == BODY_TOKEN && req.method() == poem::http::Method::POST {
        let bytes = req.take_body().into_bytes().await.ok()?;
        let token = wxlogin_input::body_token(req.content_type(), &bytes);
        req.set_body(bytes);
        token
    } else {
        None
    };
    // Two different tokens are the handler's 400; for the budget, the request carries a token.
    pick_token(body.clone(), header.as_deref()).unwrap_or(body)
}

/// The limits around one request (see the module documentation).
pub async fn limit<E: Endpoint>(
    ep: Arc<E>,
    mut req: Request,
    limits: Arc<Limits>,
) -> poem::Result<Response> {
    let path = req.uri().path().to_owned();
    let client = limits.client(&req);
    let attempt = CODE_EXCHANGES.contains(&path.as_str()) || path.starts_with(OPERATORS);
    // A code exchange or an operator login never authenticates with a bearer token: one sent
    // along (a stale token, or one added to dodge the budget) changes nothing.
    let token = if attempt {
        None
    } else {
        token_of(&mut req, &path)
            .await
            .map(|t| limits.token_key(&t))
    };
    if let Some(client) = &client
        && token.is_none()
        && attempt
        && let Some(wait) = limits.failed.refused_for(client)
    {
        return Err(refused(
            wait,
            "the address spent its budget of failed attempts",
            "failed_attempts",
        ));
    }
    let decrypting = DECRYPTING.contains(&path.as_str());
    if let Some(token) = &token
        && decrypting
        && let Some(wait) = limits.decrypt.refused_for(token)
    {
        return Err(refused(
            wait,
            "the token spent its budget of failed decryptions",
            "decrypt_failures",
        ));
    }

    let result = ep.call(req).await.map(IntoResponse::into_response);
    let Err(err) = &result else {
        return result;
    };
    let code = err
        .downcast_ref::<Failure>()
        .map_or_else(|| Failure::from_poem(err).code, |f| f.code);
    if !counted(code) {
        return result;
    }
    if let Some(token) = &token
        && matches!(
            code,
            ErrorCode::DecryptFailed | ErrorCode::SignatureMismatch
        )
    {
        let _ = limits.decrypt.spend(token);
    }
    // A token that was accepted (the failure came after authentication) is never refused.
    let authenticated = token.is_some() && code != ErrorCode::InvalidToken;
    if let Some(client) = &client
        && let Err(wait) = limits.failed.spend(client)
        && !authenticated
    {
        return Err(refused(
            wait,
            "the address spent its budget of failed attempts",
            "failed_attempts",
        ));
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use wxlogin_input::body_token;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn forwarded_for_counts_only_from_trusted_proxies() {
        let trusted = nets(&["10.0.0.0/8", "fd00::/8"]);
        // An untrusted peer's header is ignored.
        assert_eq!(
            client_address(ip("203.0.113.9"), &["198.51.100.1"], &trusted),
            ip("203.0.113.9")
        );
        // Behind a trusted proxy: the rightmost untrusted hop, whatever the client prepended.
        assert_eq!(
            client_address(
                ip("10.0.0.2"),
                &["1.1.1.1, 198.51.100.7", "10.0.0.3"],
                &trusted
            ),
            ip("198.51.100.7")
        );
        assert_eq!(
            client_address(ip("10.0.0.2"), &["[2001:db8::5]:4711"], &trusted),
            ip("2001:db8::5")
        );
        // Garbage stops the walk at the proxy that reported it; no header: the proxy itself.
        assert_eq!(
            client_address(ip("10.0.0.2"), &["198.51.100.7, nonsense"], &trusted),
            ip("10.0.0.2")
        );
        assert_eq!(
            client_address(ip("10.0.0.2"), &[], &trusted),
            ip("10.0.0.2")
        );
        // Every hop trusted: the leftmost.
        assert_eq!(
            client_address(ip("10.0.0.2"), &["10.1.1.1, 10.0.0.3"], &trusted),
            ip("10.1.1.1")
        );
        // Nothing trusted by default.
        assert_eq!(
            client_address(ip("10.0.0.2"), &["198.51.100.7"], &[]),
            ip("10.0.0.2")
        );
    }

    #[test]
    fn ipv6_clients_share_their_64_and_mapped_addresses_are_ipv4() {
        assert_eq!(bucket(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(bucket(ip("::ffff:198.51.100.7")), ip("198.51.100.7"));
        assert_eq!(bucket(ip("198.51.100.7")), ip("198.51.100.7"));
    }

    #[test]
    fn only_failures_of_the_counted_kinds_spend() {
        for code in ErrorCode::ALL {
            let expected = matches!(
                code,
                ErrorCode::InvalidCode
                    | ErrorCode::CodeUsed
                    | ErrorCode::InvalidToken
                    | ErrorCode::DecryptFailed
                    | ErrorCode::SignatureMismatch
            );
            assert_eq!(counted(*code), expected, "{code:?}");
        }
    }

    #[test]
    fn a_budget_is_empty_once_spent_and_asking_spends_nothing() {
        let quota = Quota::per_hour(NonZeroU32::MIN).allow_burst(NonZeroU32::new(3).unwrap());
        let budget = Budget::new(quota);
        let key = ip("198.51.100.7");
        for _ in 0..10 {
            assert_eq!(budget.refused_for(&key), None);
        }
        for _ in 0..3 {
            assert_eq!(budget.spend(&key), Ok(()));
        }
        let wait = budget.refused_for(&key).expect("empty");
        assert!(wait > Duration::from_secs(3000), "{wait:?}");
        assert!(budget.spend(&key).is_err());
        // Another address is not affected.
        assert_eq!(budget.refused_for(&ip("198.51.100.8")), None);
    }

    #[test]
    fn body_tokens_from_forms_and_json() {
        assert_eq!(
            body_token(None, b"iv=x&token=wxl_a%2Bb").as_deref(),
            Some("wxl_a+b")
        );
        assert_eq!(
            body_token(Some("application/json"), br#"{"token":"wxl_j"}"#).as_deref(),
            Some("wxl_j")
        );
        assert_eq!(body_token(Some("application/json"), b"{"), None);
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(seconds(Duration::from_millis(100)), 1);
        assert_eq!(seconds(Duration::from_secs(2)), 2);
        assert_eq!(seconds(Duration::from_millis(2001)), 3);
    }
}
