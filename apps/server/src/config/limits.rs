//! `[limits]` and `server.trusted_proxies`: the budgets of failed attempts (per client
//! address, per token), the cap on concurrent WeChat calls, and the proxies whose
//! `X-Forwarded-For` names the client (DESIGN §8; the rules are in `docs/security.md`). Unset
//! keys take the defaults of the parts that own them: [`LimitsConfig::default`] and
//! [`wechat_cap::DEFAULT_CONCURRENCY`].

use std::num::NonZeroU32;

use ipnet::IpNet;
use serde::Deserialize;

use super::{ConfigError, bad};
use crate::http::limits::LimitsConfig;
use crate::wechat_cap;

/// `[limits]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsSettings {
    /// Failed attempts one client address may make at once (the budget's size).
    pub failed_burst: Option<u32>,
    /// Failed attempts per second that refill an address's budget.
    pub failed_per_second: Option<u32>,
    /// Failed decryptions (`decrypt_failed`, `signature_mismatch`) per token per minute.
    pub decrypt_failures_per_minute: Option<u32>,
    /// WeChat calls in flight at once, over every app; beyond it 503 at once.
    pub wechat_concurrency: Option<u32>,
}

/// `server.trusted_proxies`: a list of CIDRs (or single addresses) in the file, or one
/// comma-separated string (what an environment variable can say).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum TrustedProxies {
    List(Vec<String>),
    Text(String),
}

impl Default for TrustedProxies {
    fn default() -> Self {
        Self::List(Vec::new())
    }
}

impl TrustedProxies {
    fn entries(&self) -> Vec<&str> {
        match self {
            Self::List(list) => list.iter().map(String::as_str).collect(),
            Self::Text(text) => text.split(',').filter(|s| !s.trim().is_empty()).collect(),
        }
    }

    fn parse(&self) -> Result<Vec<IpNet>, ConfigError> {
        self.entries()
            .into_iter()
            .enumerate()
            .map(|(i, entry)| {
                let entry = entry.trim();
                entry
                    .parse::<IpNet>()
                    .or_else(|_| entry.parse::<std::net::IpAddr>().map(IpNet::from))
                    .or_else(|_| {
                        bad(
                            &format!("server.trusted_proxies[{i}]"),
                            "must be a CIDR such as 10.0.0.0/8 or an address",
                        )
                    })
            })
            .collect()
    }
}

fn positive(key: &str, value: Option<u32>, default: NonZeroU32) -> Result<NonZeroU32, ConfigError> {
    match value {
        None => Ok(default),
        Some(v) => NonZeroU32::new(v).map_or_else(|| bad(key, "must be at least 1"), Ok),
    }
}

impl LimitsSettings {
    /// The HTTP layer's limits and the WeChat cap.
    pub(super) fn parse(
        self,
        trusted: &TrustedProxies,
    ) -> Result<(LimitsConfig, usize), ConfigError> {
        let d = LimitsConfig::default();
        let limits = LimitsConfig {
            failed_burst: positive("limits.failed_burst", self.failed_burst, d.failed_burst)?,
            failed_per_second: positive(
                "limits.failed_per_second",
                self.failed_per_second,
                d.failed_per_second,
            )?,
            decrypt_failures_per_minute: positive(
                "limits.decrypt_failures_per_minute",
                self.decrypt_failures_per_minute,
                d.decrypt_failures_per_minute,
            )?,
            trusted_proxies: trusted.parse()?,
        };
        let concurrency = match self.wechat_concurrency {
            None => wechat_cap::DEFAULT_CONCURRENCY,
            Some(0) => return bad("limits.wechat_concurrency", "must be at least 1"),
            // A u32 always fits the semaphore (at most `usize::MAX >> 3` permits on 64 bits).
            Some(n) => usize::try_from(n).or_else(|_| {
                bad(
                    "limits.wechat_concurrency",
                    "is larger than this platform allows",
                )
            })?,
        };
        Ok((limits, concurrency))
    }
}
