//! Liveness and readiness probes.

use std::convert::Infallible;
use std::sync::Arc;

use poem_openapi::OpenApi;
use wxlogin_domain::{LoginService, StoreError};

use crate::http::dto::Health;
use crate::http::{ApiTags, Reply, Success};

/// `/healthz` and `/readyz`.
pub struct HealthApi<L> {
    service: Arc<L>,
}

impl<L> HealthApi<L> {
    pub fn new(service: Arc<L>) -> Self {
        Self { service }
    }
}

#[OpenApi]
impl<L: LoginService> HealthApi<L> {
    /// Liveness
    ///
    /// Answers 200 while the process runs.
    #[oai(path = "/healthz", method = "get", tag = "ApiTags::Health")]
    async fn healthz(&self) -> Reply<Health, Infallible> {
        Ok(Success::json(Health::ok()))
    }

    /// Readiness
    ///
    /// 200 when the database answers, else 503 `database_unavailable`. WeChat's state does not
    /// count: it is not ours, and an instance that cannot reach it is no worse than another.
    #[oai(path = "/readyz", method = "get", tag = "ApiTags::Health")]
    async fn readyz(&self) -> Reply<Health, StoreError> {
        self.service.ready().await?;
        Ok(Success::json(Health::ok()))
    }
}
