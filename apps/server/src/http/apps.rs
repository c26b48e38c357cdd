//! Which mini-program a request is for. One server may serve several (`[[wechat.apps]]`), each
//! with its own use cases (its WeChat credentials, its access token); they share one store, so
//! the identities of one person in two apps (one unionid) are one user.
//!
//! A request names its app with `X-WX-AppId`, or else by the `Referer` that WeChat sets on every
//! `wx.request` and that mini-program code cannot change:
//! `https://servicewechat.com/{appid}/{version}/page-frame.html`. A request that names neither
//! (a `Referer` that is not WeChat's, such as Swagger UI's, names nothing) is for the default
//! app. Naming an app this server does not serve is a 400. A token belongs to the app it was
//! issued for: sent for another app, it is unknown there (401 `invalid_token`).

use std::sync::Arc;

use poem::Request;
use wxlogin_domain::{AppId, InvalidValue, Reason};

/// The header that names a request's app.
pub const APP_HEADER: &str = "X-WX-AppId";

/// The use cases of each app served, the default app's first.
pub struct Apps<L> {
    apps: Vec<(AppId, Arc<L>)>,
}

impl<L> Apps<L> {
    /// One app, which is then the default.
    pub fn single(app_id: AppId, service: L) -> Self {
        Self {
            apps: vec![(app_id, Arc::new(service))],
        }
    }

    /// Adds a further app. An app id given twice keeps its first use cases.
    #[must_use]
    pub fn with(mut self, app_id: AppId, service: L) -> Self {
        if !self.apps.iter().any(|(known, _)| *known == app_id) {
            self.apps.push((app_id, Arc::new(service)));
        }
        self
    }

    /// The default app's use cases (readiness, the background purge: the store is shared).
    pub fn default_service(&self) -> &Arc<L> {
        &self.apps[0].1
    }

    /// The app ids served, the default first.
    pub fn app_ids(&self) -> impl Iterator<Item = &AppId> {
        self.apps.iter().map(|(id, _)| id)
    }

    /// The use cases of the app `req` names (see the module docs); `named` is its
    /// `X-WX-AppId` header, which wins over the `Referer`.
    pub fn pick(&self, named: Option<&str>, req: &Request) -> Result<&L, InvalidValue> {
        let referer = req
            .headers()
            .get(poem::http::header::REFERER)
            .and_then(|v| v.to_str().ok());
        match named.map(str::trim).filter(|n| !n.is_empty()) {
            Some(named) => self
                .find(named)
                .ok_or(InvalidValue::new(APP_HEADER, Reason::UnknownApp)),
            None => match referer.and_then(wechat_referer_app) {
                Some(app) => self
                    .find(app)
                    .ok_or(InvalidValue::new("Referer", Reason::UnknownMiniProgram)),
                None => Ok(self.default_service()),
            },
        }
    }

    fn find(&self, app_id: &str) -> Option<&L> {
        self.apps
            .iter()
            .find(|(id, _)| id.as_str() == app_id)
            .map(|(_, service)| &**service)
    }
}

/// The app id in WeChat's `Referer`, `https://servicewechat.com/{appid}/{version}/page-frame.html`
/// (`version` is a release number, `0` for development, trial and review builds, or `devtools`);
/// `None` for any other referer.
pub fn wechat_referer_app(referer: &str) -> Option<&str> {
    let path = referer.strip_prefix("https://servicewechat.com/")?;
    let mut parts = path.split('/');
    let (app, version, page) = (parts.next()?, parts.next()?, parts.next()?);
    let version_ok = version == "devtools"
        || (!version.is_empty() && version.bytes().all(|b| b.is_ascii_digit()));
    let app_ok =
        !app.is_empty() && app.len() <= 64 && app.bytes().all(|b| b.is_ascii_alphanumeric());
    (parts.next().is_none() && page == "page-frame.html" && version_ok && app_ok).then_some(app)
}

#[cfg(test)]
mod tests {
    use super::wechat_referer_app;

    #[test]
    fn only_wechats_own_referer_names_an_app() {
        for (referer, app) in [
            (
                "https://servicewechat.com/wx1234567890abcdef/0/page-frame.html",
                Some("wx1234567890abcdef"),
            ),
            (
                "https://servicewechat.com/wx1234567890abcdef/devtools/page-frame.html",
                Some("wx1234567890abcdef"),
            ),
            (
                "https://servicewechat.com/wx1234567890abcdef/17/page-frame.html",
                Some("wx1234567890abcdef"),
            ),
            ("http://127.0.0.1:8080/docs/", None),
            (
                "http://servicewechat.com/wx1234567890abcdef/0/page-frame.html",
                None,
            ),
            (
                "https://servicewechat.com.evil.example/wx1234567890abcdef/0/page-frame.html",
                None,
            ),
            (
                "https://servicewechat.com/wx1234567890abcdef/0/page-frame.html/x",
                None,
            ),
            (
                "https://servicewechat.com/wx1234567890abcdef/beta/page-frame.html",
                None,
            ),
            ("https://servicewechat.com//0/page-frame.html", None),
            ("https://servicewechat.com/wx%2F/0/page-frame.html", None),
        ] {
            assert_eq!(wechat_referer_app(referer), app, "{referer}");
        }
    }
}
