//! The language of an error's `message` (DESIGN §5): Simplified Chinese or English, chosen by
//! the request's `Accept-Language`. The `error` code never changes with it.
//!
//! A header that prefers any Chinese (`zh`, `zh-CN`, `zh-TW`, WeChat's own `zh_CN` …) to
//! English gets Simplified Chinese, the only Chinese wxlogin writes; anything else, and no
//! header at all, gets English (what classic clients have always read).

use std::borrow::Cow;

use poem::Request;
use wxlogin_domain::{InvalidValue, Reason};

/// A language wxlogin writes messages in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    #[default]
    En,
    ZhCn,
}

impl Lang {
    /// Every language, in the order the docs list them.
    pub const ALL: [Self; 2] = [Self::ZhCn, Self::En];

    /// The tag to answer with in `Content-Language`.
    pub const fn tag(self) -> &'static str {
        match self {
            Self::En => "en",
            Self::ZhCn => "zh-CN",
        }
    }

    /// The language of the request's `Accept-Language`.
    pub fn of(req: &Request) -> Self {
        req.headers()
            .get(poem::http::header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
            .map_or(Self::En, Self::negotiate)
    }

    /// Picks from an `Accept-Language` value (RFC 9110 §12.5.4): the language range with the
    /// highest weight among those that name Chinese or English wins; on equal weights the one
    /// listed first does. `*` and other languages choose nothing; a range with `q=0` is
    /// refused. Malformed parts are skipped.
    pub fn negotiate(header: &str) -> Self {
        let mut best: Option<(Self, u16)> = None;
        for part in header.split(',').take(32) {
            let mut pieces = part.split(';');
            let tag = pieces.next().unwrap_or_default().trim();
            let Some(lang) = Self::of_tag(tag) else {
                continue;
            };
            let mut weight = 1000;
            for param in pieces {
                if let Some(q) = param
                    .trim()
                    .strip_prefix("q=")
                    .or_else(|| param.trim().strip_prefix("Q="))
                {
                    weight = parse_q(q).unwrap_or(0);
                }
            }
            if weight > 0 && best.is_none_or(|(_, w)| weight > w) {
                best = Some((lang, weight));
            }
        }
        best.map_or(Self::En, |(lang, _)| lang)
    }

    /// `zh`, `zh-CN`, `zh_TW`, `zh-Hans-CN` … are Chinese; `en`, `en-US` … English.
    fn of_tag(tag: &str) -> Option<Self> {
        let primary = tag.split(['-', '_']).next().unwrap_or_default();
        if primary.eq_ignore_ascii_case("zh") {
            Some(Self::ZhCn)
        } else if primary.eq_ignore_ascii_case("en") {
            Some(Self::En)
        } else {
            None
        }
    }
}

/// A weight `0`, `0.5`, `1.000` … in thousandths; `None` when it is not one.
fn parse_q(q: &str) -> Option<u16> {
    let q = q.trim();
    let (whole, fraction) = q.split_once('.').unwrap_or((q, ""));
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits = format!("{fraction:0<3}");
    let thousandths: u16 = digits.parse().ok()?;
    match whole {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// A message in every language wxlogin writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text {
    pub en: Cow<'static, str>,
    pub zh: Cow<'static, str>,
}

impl Text {
    pub fn new(en: impl Into<Cow<'static, str>>, zh: impl Into<Cow<'static, str>>) -> Self {
        Self {
            en: en.into(),
            zh: zh.into(),
        }
    }

    pub fn get(&self, lang: Lang) -> &str {
        match lang {
            Lang::En => &self.en,
            Lang::ZhCn => &self.zh,
        }
    }
}

/// "nickName: is too long" / "nickName：过长".
impl From<InvalidValue> for Text {
    fn from(e: InvalidValue) -> Self {
        Self::new(
            e.to_string(),
            format!("{}：{}", e.field, zh_reason(e.reason)),
        )
    }
}

/// A [`Reason`] in Simplified Chinese, to follow the field's name.
pub const fn zh_reason(reason: Reason) -> &'static str {
    match reason {
        Reason::Empty => "不能为空",
        Reason::TooLong => "过长",
        Reason::TooLongFor64 => "过长（最多 64 个字符）",
        Reason::NotPrintableAscii => "只能包含可打印的 ASCII 字符",
        Reason::NotAnOperatorName => "只能包含可打印的 ASCII 字符，且不能有空格或冒号",
        Reason::ControlCharacters => "不能包含控制字符",
        Reason::ImpossibleLength => "长度不可能正确",
        Reason::NotAGender => "只能是 0、1 或 2",
        Reason::NotAnHttpUrl => "必须是 http 或 https 网址",
        Reason::NotPhoneDigits => "只能是数字，开头可以有一个 +",
        Reason::PhoneDigitCount => "必须有 3 到 20 位数字",
        Reason::NotAnImage => "不是 PNG、JPEG 或 WebP 图片",
        Reason::Unreadable => "无法读取",
        Reason::NotInLimitRange => "必须在 1 到 100 之间",
        Reason::NotACursor => "不是本接口给出的游标",
        Reason::NotAUserId => "必须是用户 ID（UUID）",
        Reason::RequiredWithIv => "发送 iv 时必填",
        Reason::RequiredWithEncryptedData => "发送 encryptedData 时必填",
        Reason::NoPhoneProof => "请发送手机号按钮给出的 code，或 encryptedData 和 iv",
        Reason::ComesWithSignature => "必须与 signature 一起发送",
        Reason::NotBase64 => "不是有效的 base64",
        Reason::NotOneBlock => "解码后必须是 16 字节",
        Reason::TokenConflict => "请求体中的 token 与 Authorization 头中的不同：只发送一个",
        Reason::UnknownApp => "不是本服务器服务的小程序",
        Reason::UnknownMiniProgram => "指向的小程序不由本服务器服务",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_preferred_chinese_gets_simplified_chinese() {
        for header in [
            "zh-CN",
            "zh",
            "zh_CN",
            "zh_TW",
            "ZH-hk",
            "zh-Hans-CN,zh;q=0.9",
            "zh-CN,zh;q=0.9,en;q=0.8",
            "en;q=0.5, zh-TW;q=0.6",
            "fr, zh;q=0.1",
            "de;q=1, en;q=0, zh;q=0.2",
        ] {
            assert_eq!(Lang::negotiate(header), Lang::ZhCn, "{header}");
        }
    }

    #[test]
    fn everything_else_gets_english() {
        for header in [
            "",
            "en",
            "en-US,en;q=0.9",
            "en-US,zh-CN;q=0.8",
            "en, zh",
            "fr",
            "*",
            "zh;q=0",
            "zh;q=0.000",
            "zh;q=2",
            "zh;q=abc",
            "zhx",
            "english",
            ",,;;",
        ] {
            assert_eq!(Lang::negotiate(header), Lang::En, "{header}");
        }
    }

    #[test]
    fn weights_are_read_to_the_thousandth() {
        assert_eq!(parse_q("1"), Some(1000));
        assert_eq!(parse_q("1.000"), Some(1000));
        assert_eq!(parse_q("0.5"), Some(500));
        assert_eq!(parse_q("0.001"), Some(1));
        assert_eq!(parse_q("0"), Some(0));
        assert_eq!(parse_q("1.5"), None);
        assert_eq!(parse_q("0.0001"), None);
        assert_eq!(parse_q(""), None);
        assert_eq!(Lang::negotiate("en;q=0.501, zh;q=0.5"), Lang::En);
        assert_eq!(Lang::negotiate("en;q=0.5, zh;q=0.501"), Lang::ZhCn);
    }

    #[test]
    fn every_reason_has_its_chinese() {
        for &reason in Reason::ALL {
            let zh = zh_reason(reason);
            assert!(
                zh.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c)),
                "{reason:?}: {zh}"
            );
            assert_ne!(zh, reason.text());
        }
        let text = Text::from(InvalidValue::new("nickName", Reason::TooLong));
        assert_eq!(text.get(Lang::En), "nickName: is too long");
        assert_eq!(text.get(Lang::ZhCn), "nickName：过长");
    }
}
