//! The global cap on concurrent WeChat calls (DESIGN §4, §8): a decorator of the domain's
//! [`WeChat`] port that every app's client goes through, sharing one semaphore. Beyond the cap
//! a call fails at once with `WeChatError::Unavailable` (503 `wechat_unavailable`), never
//! waiting in a queue that grows while WeChat is slow. It lives here, in the composition root,
//! so the domain stays free of tokio.

use std::sync::Arc;

use tokio::sync::{Semaphore, SemaphorePermit};
use wxlogin_domain::{
    AccessToken, AppId, CodeSession, IssuedAccessToken, LoginCode, OpenId, PhoneCode, PhoneInfo,
    SessionKey, WeChat, WeChatError,
};

/// The default cap (`limits.wechat_concurrency`).
pub const DEFAULT_CONCURRENCY: usize = 64;

/// What a capped call answers beyond the cap.
pub const TOO_MANY: &str = "too many concurrent WeChat calls";

/// `W` with its calls counted against a shared cap.
#[derive(Debug, Clone)]
pub struct Capped<W> {
    inner: W,
    permits: Arc<Semaphore>,
}

impl<W> Capped<W> {
    /// `permits` is shared by every client under the same cap.
    pub fn new(inner: W, permits: Arc<Semaphore>) -> Self {
        Self { inner, permits }
    }

    fn permit(&self) -> Result<SemaphorePermit<'_>, WeChatError> {
        self.permits
            .try_acquire()
            .map_err(|_| WeChatError::Unavailable(TOO_MANY.to_owned()))
    }
}

impl<W: WeChat> WeChat for Capped<W> {
    fn app_id(&self) -> &AppId {
        self.inner.app_id()
    }

    async fn code_to_session(&self, code: &LoginCode) -> Result<CodeSession, WeChatError> {
        let _permit = self.permit()?;
        self.inner.code_to_session(code).await
    }

    async fn stable_access_token(&self) -> Result<IssuedAccessToken, WeChatError> {
        let _permit = self.permit()?;
        self.inner.stable_access_token().await
    }

    async fn phone_number(
        &self,
        access_token: &AccessToken,
        code: &PhoneCode,
    ) -> Result<PhoneInfo, WeChatError> {
        let _permit = self.permit()?;
        self.inner.phone_number(access_token, code).await
    }

    async fn check_session(
        &self,
        access_token: &AccessToken,
        open_id: &OpenId,
        session_key: &SessionKey,
    ) -> Result<bool, WeChatError> {
        let _permit = self.permit()?;
        self.inner
            .check_session(access_token, open_id, session_key)
            .await
    }
}
