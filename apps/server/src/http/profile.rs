//! The signed-in user's own record under `/api/v1/me`: read it, change the profile (plain
//! fields or encrypted data), erase the account. Authenticated with `Authorization: Bearer`.

use std::sync::Arc;

use poem::Request;
use poem_openapi::OpenApi;
use poem_openapi::param::Header;
use poem_openapi::payload::Json;
use wxlogin_domain::{
    AuthError, LoginService, PhoneError, UpdateProfileError, UpdateUserInfoError,
};

use crate::http::apps::Apps;
use crate::http::auth::BearerToken;
use crate::http::dto::{
    EncryptedProfileBody, PhoneBody, ProfilePatchBody, UserReply, encrypted_profile,
};
use crate::http::{ApiResult, ApiTags, NoContent, Reply, Success};

/// `/api/v1/me`, `/api/v1/me/profile`, `/api/v1/me/profile/encrypted`, `/api/v1/me/phone`.
pub struct ProfileApi<L> {
    apps: Arc<Apps<L>>,
}

impl<L> ProfileApi<L> {
    pub fn new(apps: Arc<Apps<L>>) -> Self {
        Self { apps }
    }
}

#[OpenApi]
impl<L: LoginService> ProfileApi<L> {
    /// The signed-in user
    ///
    /// Answers the token's user and whether the profile is complete.
    #[oai(
        path = "/api/v1/me",
        method = "get",
        operation_id = "me",
        tag = "ApiTags::Profile"
    )]
    async fn me(
        &self,
        /// The mini-program (app id); else WeChat's `Referer` names it, else the default app.
        #[oai(name = "X-WX-AppId")]
        app: Header<Option<String>>,
        req: &Request,
        auth: BearerToken,
    ) -> Reply<UserReply, AuthError> {
        let service = self.apps.pick(app.0.as_deref(), req)?;
        let a = service.authenticate(auth.token()).await?;
        Ok(Success::json(UserReply::new(&a.user, a.status)))
    }

    /// Change the profile (plain fields)
    ///
    /// For the avatar/nickname filling widgets (`<button open-type="chooseAvatar">`, `<input
    /// type="nickname">`): the fields sent replace the stored ones, absent fields are kept.
    /// Values are trimmed; a field that is too long, holds control characters, or (for
    /// `avatarUrl`) is not an http(s) URL is a 400 naming it. WeChat's placeholder nickname
    /// "微信用户" and grey avatar are ignored: they never overwrite a real value.
    #[oai(
        path = "/api/v1/me/profile",
        method = "patch",
        operation_id = "updateProfile",
        tag = "ApiTags::Profile"
    )]
    async fn update_profile(
        &self,
        /// The mini-program (app id); else WeChat's `Referer` names it, else the default app.
        #[oai(name = "X-WX-AppId")]
        app: Header<Option<String>>,
        req: &Request,
        auth: BearerToken,
        body: Json<ProfilePatchBody>,
    ) -> Reply<UserReply, UpdateProfileError> {
        let service = self.apps.pick(app.0.as_deref(), req)?;
        let update = body.0.into_update()?;
        let outcome = service.update_profile(auth.token(), update).await?;
        tracing::info!(user_id = %outcome.user.id, "profile updated from plain fields");
        Ok(Success::json(UserReply::new(&outcome.user, outcome.status)))
    }

    /// Change the profile (encrypted data)
    ///
    /// The same decryption, watermark, signature and fresh-`code` rules as `/updateUserInfo`,
    /// with the token as `Authorization: Bearer`.
    #[oai(
        path = "/api/v1/me/profile/encrypted",
        method = "post",
        operation_id = "updateProfileEncrypted",
        tag = "ApiTags::Profile"
    )]
    async fn update_profile_encrypted(
        &self,
        /// The mini-program (app id); else WeChat's `Referer` names it, else the default app.
        #[oai(name = "X-WX-AppId")]
        app: Header<Option<String>>,
        req: &Request,
        auth: BearerToken,
        body: Json<EncryptedProfileBody>,
    ) -> Reply<UserReply, UpdateUserInfoError> {
        let service = self.apps.pick(app.0.as_deref(), req)?;
        let b = body.0;
        let request = encrypted_profile(
            b.encrypted_data,
            b.iv,
            b.raw_data,
            b.signature,
            b.code.as_deref(),
        )?;
        let outcome = service.update_user_info(auth.token(), request).await?;
        tracing::info!(user_id = %outcome.user.id, "profile updated from encrypted data");
        Ok(Success::json(UserReply::new(&outcome.user, outcome.status)))
    }

    /// Record the phone number
    ///
    /// Send the `code` that `<button open-type="getPhoneNumber">` gives (base library
    /// 2.21.2+): the server exchanges it through `wxa/business/getuserphonenumber` under the
    /// app's shared access token. A `wx.login` code sent here by mistake is `invalid_code`
    /// with a message that says so. Older clients send `encryptedData` and `iv` (and, when
    /// they called `wx.login` since logging in, the fresh `code`), decrypted like a profile.
    /// The number is stored and returned in `user.phoneNumber`.
    #[oai(
        path = "/api/v1/me/phone",
        method = "post",
        operation_id = "bindPhone",
        tag = "ApiTags::Profile"
    )]
    async fn bind_phone(
        &self,
        /// The mini-program (app id); else WeChat's `Referer` names it, else the default app.
        #[oai(name = "X-WX-AppId")]
        app: Header<Option<String>>,
        req: &Request,
        auth: BearerToken,
        body: Json<PhoneBody>,
    ) -> Reply<UserReply, PhoneError> {
        let service = self.apps.pick(app.0.as_deref(), req)?;
        let request = body.0.into_request()?;
        let outcome = service.bind_phone(auth.token(), request).await?;
        tracing::info!(user_id = %outcome.user.id, "phone number recorded");
        Ok(Success::json(UserReply::new(&outcome.user, outcome.status)))
    }

    /// Erase the account
    ///
    /// Deletes the user with its WeChat identities, sessions, session keys and phone number
    /// (PIPL's right to erasure). Every token of the user stops working; a later login of the
    /// same WeChat user creates a new user.
    #[oai(
        path = "/api/v1/me",
        method = "delete",
        operation_id = "eraseAccount",
        tag = "ApiTags::Profile"
    )]
    async fn erase(
        &self,
        /// The mini-program (app id); else WeChat's `Referer` names it, else the default app.
        #[oai(name = "X-WX-AppId")]
        app: Header<Option<String>>,
        req: &Request,
        auth: BearerToken,
    ) -> ApiResult<NoContent, AuthError> {
        let service = self.apps.pick(app.0.as_deref(), req)?;
        service.erase(auth.token()).await?;
        tracing::info!("account erased");
        Ok(NoContent::Done)
    }
}
