//! The signed-in user's own record under `/api/v1/me`: read it, change the profile (plain
//! fields or encrypted data), erase the account. Authenticated with `Authorization: Bearer`.

use std::sync::Arc;
use wxlogin_domain::Reason;

use poem::Request;
use poem::http::header::{CONTENT_TYPE, HOST};
use poem_openapi::param::{Header, Path};
use poem_openapi::payload::{Binary, Json, Response};
use poem_openapi::types::multipart::Upload;
use poem_openapi::{ApiResponse, Multipart, OpenApi};
use wxlogin_domain::{
    AuthError, AvatarError, AvatarId, AvatarImage, LoginService, PhoneError, UpdateProfileError,
    UpdateUserInfoError, UploadAvatarError,
};

use crate::http::apps::Apps;
use crate::http::auth::BearerToken;
use crate::http::dto::{
    EncryptedProfileBody, PhoneBody, ProfilePatchBody, UserReply, encrypted_profile,
};
use crate::http::{ApiResult, ApiTags, AvatarSettings, NoContent, Reply, Success};

/// Where avatars are uploaded.
pub const AVATAR_PATH: &str = "/api/v1/me/avatar";

/// What an avatar upload may carry beyond the image itself: multipart's boundaries and part
/// headers, and the small `formData` fields `wx.uploadFile` may add.
pub const MULTIPART_OVERHEAD: usize = 16 * 1024;

/// How long a client may keep an avatar: its URL names one image forever.
const AVATAR_CACHE: &str = "public, max-age=31536000, immutable";

/// `/api/v1/me`, `/api/v1/me/profile`, `/api/v1/me/profile/encrypted`, `/api/v1/me/phone`,
/// `/api/v1/me/avatar`, and the uploaded avatars at `/avatars/{id}`.
pub struct ProfileApi<L> {
    apps: Arc<Apps<L>>,
    avatars: AvatarSettings,
}

impl<L> ProfileApi<L> {
    pub fn new(apps: Arc<Apps<L>>, avatars: AvatarSettings) -> Self {
        Self { apps, avatars }
    }

    /// The base of avatar URLs: the configured public URL, else this request's `Host`.
    fn avatar_base(&self, req: &Request) -> String {
        match &self.avatars.public_url {
            Some(base) => base.clone(),
            None => {
                let host = req
                    .headers()
                    .get(HOST)
                    .and_then(|h| h.to_str().ok())
                    .or_else(|| req.uri().authority().map(|a| a.as_str()))
                    .unwrap_or_default();
                format!("http://{host}")
            }
        }
    }
}

/// `POST /api/v1/me/avatar`: what `wx.uploadFile` sends, with `name: "file"`. Other fields
/// (`formData`) are ignored.
#[derive(Debug, Multipart)]
pub struct AvatarForm {
    /// The image: PNG, JPEG or WebP (recognised by its bytes, not its name or declared type),
    /// at most `server.avatar_limit_bytes` (1 MiB by default).
    file: Upload,
}

/// An uploaded avatar, or the answer to a conditional request for it.
#[derive(ApiResponse)]
pub enum AvatarReply {
    /// The image as uploaded; `Content-Type` is `image/png`, `image/jpeg` or `image/webp`.
    /// It never changes: a new upload gets a new URL.
    #[oai(status = 200, content_type = "image/*")]
    Image(
        Binary<Vec<u8>>,
        /// The avatar's id, quoted.
        #[oai(header = "ETag")]
        String,
        /// `public, max-age=31536000, immutable`.
        #[oai(header = "Cache-Control")]
        String,
    ),
    /// `If-None-Match` named this avatar: the client's copy is current.
    #[oai(status = 304)]
    NotModified(
        /// The avatar's id, quoted.
        #[oai(header = "ETag")]
        String,
        /// `public, max-age=31536000, immutable`.
        #[oai(header = "Cache-Control")]
        String,
    ),
}

/// Whether an `If-None-Match` value names `etag` (or is `*`).
fn matches_etag(if_none_match: &str, etag: &str) -> bool {
    if_none_match
        .split(',')
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == "*" || t == etag)
}

impl<L: LoginService> ProfileApi<L> {
    /// `PATCH` and `POST /api/v1/me/profile`.
    async fn change_profile(
        &self,
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
        self.change_profile(app, req, auth, body).await
    }

    /// Change the profile (plain fields), for `wx.request`
    ///
    /// The same operation as `PATCH /api/v1/me/profile`, with `POST`: `wx.request` knows no
    /// `PATCH` (its methods are OPTIONS, GET, HEAD, POST, PUT, DELETE, TRACE and CONNECT).
    /// wxlogin's client helper uses this one.
    #[oai(
        path = "/api/v1/me/profile",
        method = "post",
        operation_id = "updateProfileByPost",
        tag = "ApiTags::Profile"
    )]
    async fn update_profile_by_post(
        &self,
        /// The mini-program (app id); else WeChat's `Referer` names it, else the default app.
        #[oai(name = "X-WX-AppId")]
        app: Header<Option<String>>,
        req: &Request,
        auth: BearerToken,
        body: Json<ProfilePatchBody>,
    ) -> Reply<UserReply, UpdateProfileError> {
        self.change_profile(app, req, auth, body).await
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

    /// Upload the avatar
    ///
    /// For `<button open-type="chooseAvatar">`: send the temporary file it gives with
    /// `wx.uploadFile({ url, filePath, name: "file", header: { Authorization: "Bearer …" } })`.
    /// The image (PNG, JPEG or WebP, recognised by its bytes; at most
    /// `server.avatar_limit_bytes`, 1 MiB by default) is stored in the database, replaces the
    /// user's earlier upload, and `user.avatarUrl` becomes its address:
    /// `{server.public_url}/avatars/{id}` (without `server.public_url`, `http://` and the
    /// request's `Host`). Note that `wx.uploadFile` hands the answer to the client as a
    /// string: `JSON.parse(res.data)`. Erasing the account deletes the image.
    #[oai(
        path = "/api/v1/me/avatar",
        method = "post",
        operation_id = "uploadAvatar",
        tag = "ApiTags::Profile"
    )]
    async fn upload_avatar(
        &self,
        /// The mini-program (app id); else WeChat's `Referer` names it, else the default app.
        #[oai(name = "X-WX-AppId")]
        app: Header<Option<String>>,
        req: &Request,
        auth: BearerToken,
        form: AvatarForm,
    ) -> Reply<UserReply, UploadAvatarError> {
        let service = self.apps.pick(app.0.as_deref(), req)?;
        let limit = self.avatars.limit;
        if form.file.size() > limit {
            return Err(UploadAvatarError::TooLarge { limit }.into());
        }
        let bytes = form.file.into_vec().await.map_err(|_| {
            crate::http::error::ApiError::from(wxlogin_domain::InvalidValue::new(
                "file",
                Reason::Unreadable,
            ))
        })?;
        let image = AvatarImage::parse(bytes)?;
        let outcome = service
            .upload_avatar(auth.token(), image, &self.avatar_base(req))
            .await?;
        tracing::info!(user_id = %outcome.user.id, "avatar uploaded");
        Ok(Success::json(UserReply::new(&outcome.user, outcome.status)))
    }

    /// An uploaded avatar
    ///
    /// Served to anyone (`<image src>` sends no token) while its user has it; a replaced
    /// avatar or an erased account's is `not_found`. Immutable: `ETag` and a year of
    /// `Cache-Control`, and `If-None-Match` answers 304.
    #[oai(
        path = "/avatars/:id",
        method = "get",
        operation_id = "avatar",
        tag = "ApiTags::Profile"
    )]
    async fn avatar(
        &self,
        /// The avatar's id, from its URL.
        id: Path<String>,
        /// The `ETag` of a copy the client holds.
        #[oai(name = "If-None-Match")]
        if_none_match: Header<Option<String>>,
    ) -> ApiResult<Response<AvatarReply>, AvatarError> {
        let id = AvatarId::parse(&id.0).ok_or(AvatarError::NotFound)?;
        let etag = format!("\"{id}\"");
        if if_none_match
            .0
            .as_deref()
            .is_some_and(|v| matches_etag(v, &etag))
        {
            // Only an avatar that exists is "not modified".
            self.apps.default_service().avatar(id).await?;
            return Ok(Response::new(AvatarReply::NotModified(
                etag,
                AVATAR_CACHE.into(),
            )));
        }
        let avatar = self.apps.default_service().avatar(id).await?;
        Ok(Response::new(AvatarReply::Image(
            Binary(avatar.bytes),
            etag,
            AVATAR_CACHE.into(),
        ))
        .header(CONTENT_TYPE, avatar.kind.content_type()))
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
