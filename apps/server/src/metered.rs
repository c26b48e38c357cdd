//! Decorators that record metrics around the real adapters: [`Metered`] implements the ports
//! `WeChat` and `UserStore` by calling the wrapped adapter and timing it, so the domain and the
//! adapters stay free of the metrics crate. The composition root wraps what it opens.

use std::future::Future;
use std::time::Instant;

use chrono::{DateTime, Utc};
use wxlogin_domain::{
    AccessToken, AccessTokenError, AccessTokenNeed, AppId, AvatarChange, AvatarId, CodeSession,
    FetchAccessToken, IssuedAccessToken, LoginCode, LoginRecord, NewLogin, OpenId, PhoneChange,
    PhoneCode, PhoneInfo, ProfileChange, PurgeBefore, SessionId, SessionKey, SessionRecord,
    SessionRefresh, StoreError, StoredAccessToken, StoredAvatar, TokenDigest, User, UserId,
    UserStore, WeChat, WeChatError,
};

use crate::metrics;

/// An adapter with its calls measured.
#[derive(Debug, Clone)]
pub struct Metered<T>(pub T);

fn wechat_outcome<T>(result: &Result<T, WeChatError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(WeChatError::InvalidCode) => "invalid_code",
        Err(WeChatError::CodeUsed) => "code_used",
        Err(WeChatError::RateLimited) => "rate_limited",
        Err(WeChatError::RiskyUser) => "risky_user",
        Err(WeChatError::Unavailable(_)) => "unavailable",
        Err(WeChatError::AccessTokenRejected(_)) => "access_token_rejected",
        Err(WeChatError::Unexpected(_)) => "unexpected",
    }
}

fn store_outcome<T>(result: &Result<T, StoreError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(StoreError::Unavailable(_)) => "unavailable",
        Err(StoreError::NotFound) => "not_found",
        Err(StoreError::Unexpected(_)) => "unexpected",
    }
}

async fn wechat_call<T>(
    api: &'static str,
    call: impl Future<Output = Result<T, WeChatError>>,
) -> Result<T, WeChatError> {
    let started = Instant::now();
    let result = call.await;
    metrics::wechat_call(api, wechat_outcome(&result), started.elapsed());
    result
}

async fn store_call<T>(
    operation: &'static str,
    call: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    let started = Instant::now();
    let result = call.await;
    metrics::store_operation(operation, store_outcome(&result), started.elapsed());
    result
}

impl<W: WeChat> WeChat for Metered<W> {
    fn app_id(&self) -> &AppId {
        self.0.app_id()
    }

    async fn code_to_session(&self, code: &LoginCode) -> Result<CodeSession, WeChatError> {
        wechat_call("jscode2session", self.0.code_to_session(code)).await
    }

    async fn stable_access_token(&self) -> Result<IssuedAccessToken, WeChatError> {
        let result = wechat_call("stable_token", self.0.stable_access_token()).await;
        metrics::access_token_refresh(wechat_outcome(&result));
        result
    }

    async fn phone_number(
        &self,
        access_token: &AccessToken,
        code: &PhoneCode,
    ) -> Result<PhoneInfo, WeChatError> {
        wechat_call(
            "getuserphonenumber",
            self.0.phone_number(access_token, code),
        )
        .await
    }

    async fn check_session(
        &self,
        access_token: &AccessToken,
        open_id: &OpenId,
        session_key: &SessionKey,
    ) -> Result<bool, WeChatError> {
        wechat_call(
            "checksession",
            self.0.check_session(access_token, open_id, session_key),
        )
        .await
    }
}

impl<S: UserStore> UserStore for Metered<S> {
    async fn login(&self, login: NewLogin) -> Result<LoginRecord, StoreError> {
        store_call("login", self.0.login(login)).await
    }

    async fn find_session(
        &self,
        app_id: &AppId,
        digest: &TokenDigest,
    ) -> Result<Option<SessionRecord>, StoreError> {
        store_call("find_session", self.0.find_session(app_id, digest)).await
    }

    async fn update_profile(&self, change: ProfileChange) -> Result<User, StoreError> {
        store_call("update_profile", self.0.update_profile(change)).await
    }

    async fn rotate_session_key(
        &self,
        session_id: SessionId,
        key: SessionKey,
    ) -> Result<(), StoreError> {
        store_call(
            "rotate_session_key",
            self.0.rotate_session_key(session_id, key),
        )
        .await
    }

    async fn revoke_session(
        &self,
        session_id: SessionId,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        store_call("revoke_session", self.0.revoke_session(session_id, now)).await
    }

    async fn refresh_session(&self, refresh: SessionRefresh) -> Result<(), StoreError> {
        store_call("refresh_session", self.0.refresh_session(refresh)).await
    }

    async fn touch_session(
        &self,
        session_id: SessionId,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        store_call("touch_session", self.0.touch_session(session_id, now)).await
    }

    async fn set_phone_number(&self, change: PhoneChange) -> Result<User, StoreError> {
        store_call("set_phone_number", self.0.set_phone_number(change)).await
    }

    async fn set_avatar(&self, change: AvatarChange) -> Result<User, StoreError> {
        store_call("set_avatar", self.0.set_avatar(change)).await
    }

    async fn avatar(&self, id: AvatarId) -> Result<Option<StoredAvatar>, StoreError> {
        store_call("avatar", self.0.avatar(id)).await
    }

    async fn erase_user(&self, user_id: UserId) -> Result<(), StoreError> {
        store_call("erase_user", self.0.erase_user(user_id)).await
    }

    async fn purge_sessions(&self, before: PurgeBefore) -> Result<u64, StoreError> {
        store_call("purge_sessions", self.0.purge_sessions(before)).await
    }

    async fn access_token(
        &self,
        app_id: &AppId,
        need: AccessTokenNeed,
        fetch: FetchAccessToken,
    ) -> Result<StoredAccessToken, AccessTokenError> {
        let started = Instant::now();
        let result = self.0.access_token(app_id, need, fetch).await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(AccessTokenError::Store(e)) => store_outcome::<()>(&Err(e.clone())),
            Err(AccessTokenError::WeChat(_)) => "wechat_error",
        };
        metrics::store_operation("access_token", outcome, started.elapsed());
        result
    }

    async fn forget_access_token(
        &self,
        app_id: &AppId,
        token: &AccessToken,
    ) -> Result<(), StoreError> {
        store_call(
            "forget_access_token",
            self.0.forget_access_token(app_id, token),
        )
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        store_call("ping", self.0.ping()).await
    }

    /// Not measured: no IO, nothing to time.
    fn available(&self) -> Result<(), StoreError> {
        self.0.available()
    }
}
