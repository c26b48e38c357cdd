//! `POST /wxa/business/getuserphonenumber`: the phone number behind a `getPhoneNumber` code.

use serde::Deserialize;
use serde_json::json;
use wxlogin_domain::{AccessToken, AppId, PhoneCode, PhoneInfo, PhoneNumber};

use crate::WeChatHttp;
use crate::errcode::CallError;
use crate::request::Call;

/// The success fields; an `errcode` answer never gets this far.
#[derive(Deserialize)]
struct Answer {
    phone_info: Option<WirePhoneInfo>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WirePhoneInfo {
    phone_number: Option<String>,
    pure_phone_number: Option<String>,
    country_code: Option<CountryCode>,
    watermark: Option<Watermark>,
}

/// WeChat's documentation shows `countryCode` as a string, its sample as a number.
#[derive(Deserialize)]
#[serde(untagged)]
enum CountryCode {
    Text(String),
    Number(u64),
}

#[derive(Deserialize)]
struct Watermark {
    appid: Option<String>,
}

impl Answer {
    fn into_phone_info(self, app_id: &AppId) -> Result<PhoneInfo, &'static str> {
        let info = self.phone_info.ok_or("answer has no phone_info")?;
        let watermark = info.watermark.and_then(|w| w.appid);
        if watermark.as_deref() != Some(app_id.as_str()) {
            return Err("the phone number's watermark does not name this app");
        }
        let number = |field: Option<String>, invalid| {
            field
                .and_then(|n| PhoneNumber::parse(&n).ok())
                .ok_or(invalid)
        };
        let phone_number = number(info.phone_number, "answer has an invalid phoneNumber")?;
        let pure = number(
            info.pure_phone_number,
            "answer has an invalid purePhoneNumber",
        )?;
        let country_code = match info.country_code {
            Some(CountryCode::Text(text)) => text.trim().to_owned(),
            Some(CountryCode::Number(n)) => n.to_string(),
            None => String::new(),
        };
        if country_code.is_empty()
            || country_code.len() > 4
            || !country_code.bytes().all(|b| b.is_ascii_digit())
        {
            return Err("answer has an invalid countryCode");
        }
        Ok(PhoneInfo {
            phone_number,
            pure_phone_number: pure.as_str().to_owned(),
            country_code,
        })
    }
}

impl WeChatHttp {
    /// Never retried: phone codes are single use (and each call is paid for).
    pub(crate) async fn get_user_phone_number(
        &self,
        access_token: &AccessToken,
        code: &PhoneCode,
    ) -> Result<PhoneInfo, CallError> {
        let call = Call::post_json(
            "getuserphonenumber",
            "wxa/business/getuserphonenumber",
            json!({ "code": code.as_str() }),
        )
        .secret_query("access_token", access_token.expose())
        .secret(code.as_str());
        let app_id = &self.inner.app_id;
        self.call(call, |answer: Answer| answer.into_phone_info(app_id))
            .await
    }
}
