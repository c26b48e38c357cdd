//! Known-answer and negative tests for `WeChatCipher`. The vectors were produced with OpenSSL,
//! independently of RustCrypto; `VECTORS.md` has the exact commands to regenerate them.

use wxlogin_crypto::{WeChatCipher, encrypt_user_data};
use wxlogin_domain::{
    AppId, CipherError, DecryptedUserInfo, EncryptedData, Gender, PhoneInfo, SessionKey,
    UserDataCipher,
};

// Key and IV of our own vectors (hex 94c09ea8af0b3e7c843f1a4f49cd4670 and
// ec67cb5655bcef5f498ce13209ea5efc).
const KEY: &str = "lMCeqK8LPnyEPxpPSc1GcA==";
const IV: &str = "7GfLVlW8719JjOEyCepe/A==";
const IV_BYTES: [u8; 16] = [
    0xec, 0x67, 0xcb, 0x56, 0x55, 0xbc, 0xef, 0x5f, 0x49, 0x8c, 0xe1, 0x32, 0x09, 0xea, 0x5e, 0xfc,
];
const APP_ID: &str = "wx4f4bc4dec97d474b";

// openssl: USER_INFO_PLAIN, AES-128-CBC + PKCS#7 with KEY/IV.
const USER_INFO_PLAIN: &str = r#"{"openId":"oGZUI0egBJY1zhBYw2KhdUfwVJJE","nickName":"小明","gender":1,"language":"zh_CN","city":"Guangzhou","province":"Guangdong","country":"CN","avatarUrl":"https://thirdwx.qlogo.cn/mmopen/vi_32/Q0j4TwGTfTK/132","unionId":"ocMvos6NjeKLIBqg5Mr9QjxrP1FA","watermark":{"timestamp":1700000000,"appid":"wx4f4bc4dec97d474b"}}"#;
const USER_INFO: &str = "6p0CQZpWlyBDt1Dyx8EO26FK8x2UAFo9Iu3EA6fcR1p+RL62sTPdgdxpw6wM6YC5IuOR5vv8yM8rd67+5I0mVa9Ydu4acHqVQeopW/xFTpCyki4WJN6H75MpFwR5Ad/DIVDIRd1i6vmBPgLWanC9MiBQerUyWypGtPkaFuG5PvCsXa5HkUh54dJHzAYhZSSP/1giyCpcNeL4l1XrxGIGpZgMdTuOLkGkLUKX4dy7xGA01Ktc1Lvx3lyLY/cfNmtoNFBRalcgF41udgmVoRGzAiRyfxwzfmqZv4s6tYpVFBfHi1SmNpTeZ91tX4HskLkrq14gayv+j0bLtpyqPw3XkMulApcjj23/QEOnqFYymeBUll1zmEg7YS4NWQ8Cf1ePVOY7rFowIcDrjflre801XQ3deVId1VL6ZVOwhn0kvAJgVZHj1B8Anmm8xBQJkUC3";
// openssl: `{"gender":"2","watermark":{"appid":"wx4f4bc4dec97d474b"}}` + 7 spaces = 64 bytes, so
// PKCS#7 adds a whole block of 0x10.
const FULL_PAD_BLOCK: &str = "GcodvR7tgng/tYktnhqhJA+HOKDB4sp0Yc2XSROIUizAkNPTeJzq21jHHLB+muetOVUCxuSx8B9uJlFO2hDLulF+nPHhQTcqVcf2uowvhQc=";
// openssl: watermark naming another app (wx0000000000000000).
const OTHER_APPID: &str = "6p0CQZpWlyBDt1Dyx8EO26FK8x2UAFo9Iu3EA6fcR1otTaOyquz41X9CSW+zgywMGevrjXRZJCbZipipcpWaBTlv7R8HEVuZcQQNJOzQmJEql9jHOAFKXj3Uny5Kn9fzDnG3Qrd0+bos+OkYOYDO5Q==";
// openssl: `{"openId":"oGZUI0egBJY1zhBYw2KhdUfwVJJE","nickName":"Band"}`, no watermark.
const NO_WATERMARK: &str =
    "6p0CQZpWlyBDt1Dyx8EO26FK8x2UAFo9Iu3EA6fcR1p+RL62sTPdgdxpw6wM6YC5BHlTlbTns9UV1BgJBRRjwA==";
// openssl: `openId=oGZUI0egBJY1zhBYw2KhdUfwVJJE`, valid padding but not JSON.
const NOT_JSON: &str = "rZl8WdJZvXtLCGTJ37P73pB6Y/ogaTnNl+m1M8LzVSR2H3or5KV/BPC5a+rXr0Ip";
// openssl: `{"a":"\xff\xfe"}`, valid padding but not UTF-8.
const NOT_UTF8: &str = "L9btsOIulW5ICxrMOkYrww==";
// openssl -nopad: 32 hand-padded bytes whose last block ends in bad PKCS#7.
const PAD_ZERO: &str = "AZYBzt+hv3dN0sfT12ODcJDGA8DVXeW5fyDnPia+iP8="; // …mno 00
const PAD_17: &str = "AZYBzt+hv3dN0sfT12ODcFhIQOM3/raU+6lTpiZ8tF8="; // …mno 11
const PAD_MIXED: &str = "AZYBzt+hv3dN0sfT12ODcBTpBGjO1zzesNcyAo8ppJc="; // …m 02 03 03

// openssl: legacy getPhoneNumber data, `countryCode` as a string (WeChat's docs table).
const PHONE: &str = "FescgSPA8pZor7ZTR5NymB9bR3nwn2GY7QgcCjrIFEAGW2G7fo22atKYgocnnj7KTUdlyfspu1bsmDP6xRL5N1fqW2CBn61WK/6WEOzmPXRW31GByej7RFdwdwb3qfLjUuZbk+qEGnCKKb7UiU51ieZnvpP5BbQcZ6dWidBE65cgAHOllog+2wCnSoTCwsmAUu4KDumA5bXqIYZhPDsQyg==";
// openssl: a number outside mainland China, `countryCode` as a number (WeChat's sample).
const PHONE_NUMERIC_CC: &str = "FescgSPA8pZor7ZTR5NymF+XElBuoIYcDW5PbGijSOvmtfEQQZCXgYpEVkPTEJMbJERYxHm11bZnRbNcWB45asdMx1r+ipBA+o3lzV1ki5uCwcFMmJ+/tTFi8Jhp0WzsEE3/ZAfP9kzSz+xK7Ic70l5nrYPTPDwx4J3ibvz9rarm7DhNK6Vs/du96WbztK5c";
// openssl: PHONE with a watermark naming another app (wx0000000000000000).
const PHONE_OTHER_APPID: &str = "FescgSPA8pZor7ZTR5NymB9bR3nwn2GY7QgcCjrIFEAGW2G7fo22atKYgocnnj7KTUdlyfspu1bsmDP6xRL5N1fqW2CBn61WK/6WEOzmPXRW31GByej7RFdwdwb3qfLjUuZbk+qEGnCKKb7UiU51iaR0nMBi02FbxcBaWtVMoA4QiPslnXf0y6h/nPG2yVQs/YyVy1oHfvqxLBvolSUf+g==";

// WeChat's own sample (the WXBizDataCrypt demos), checked with openssl as well.
const WX_APP_ID: &str = "wx4f4bc4dec97d474b";
const WX_KEY: &str = "tiihtNczf5v6AKRyjwEUhQ==";
const WX_IV: &str = "r7BXXKkLb8qrSNn05n0qiA==";
const WX_DATA: &str = "CiyLU1Aw2KjvrjMdj8YKliAjtP4gsMZMQmRzooG2xrDcvSnxIMXFufNstNGTyaGS9uT5geRa0W4oTOb1WT7fJlAC+oNPdbB+3hVbJSRgv+4lGOETKUQz6OYStslQ142dNCuabNPGBzlooOmB231qMM85d2/fV6ChevvXvQP8Hkue1poOFtnEtpyxVLW1zAo6/1Xx1COxFvrc2d7UL/lmHInNlxuacJXwu0fjpXfz/YqYzBIBzD6WUfTIF9GRHpOn/Hz7saL8xz+W//FRAUid1OksQaQx4CMs8LOddcQhULW4ucetDf96JcR3g0gfRK4PC7E/r7Z6xNrXd2UIeorGj5Ef7b1pJAYB6Y5anaHqZ9J6nKEBvB4DnNLIVWSgARns/8wR2SiRS7MNACwTyrGvt9ts8p12PKFdlqYTopNHR1Vf7XjfhQlVsAJdNiKdYmYVoKlaRv85IfVunYzO0IKXsyl7JCUjCpoG20f0a04COwfneQAGGwd5oa+T8yO5hzuyDb/XcxxmK01EpqOyuxINew==";

// WECHAT.md's official rawData signature example.
const RAW_DATA: &str = r#"{"nickName":"Band","gender":1,"language":"zh_CN","city":"Guangzhou","province":"Guangdong","country":"CN","avatarUrl":"http://wx.qlogo.cn/mmopen/vi_32/1vZvI39NWFQ9XM4LtQpFrQJ1xlgZxx3w7bQxKARol6503Iuswjjn6nIGBiaycAjAtpujxyzYsrztuuICqIM5ibXQ/0"}"#;
const RAW_KEY: &str = "HyVFkGl5F5OQWJZZaNzBBg==";
const RAW_SIGNATURE: &str = "75e81ceda165f4ffa64f4068af58c64b8f54b88c";

fn key(b64: &str) -> SessionKey {
    SessionKey::from_base64(b64).expect("test key")
}

fn app(id: &str) -> AppId {
    AppId::parse(id).expect("test app id")
}

fn data(encrypted: &str, iv: &str) -> EncryptedData {
    EncryptedData {
        encrypted_data: encrypted.to_owned(),
        iv: iv.to_owned(),
    }
}

fn decrypt(encrypted: &str) -> Result<DecryptedUserInfo, CipherError> {
    WeChatCipher.decrypt_user_info(&key(KEY), &app(APP_ID), &data(encrypted, IV))
}

/// Base64 of the decoded bytes after `edit`, for truncation tests.
fn edited(encrypted: &str, edit: impl FnOnce(&mut Vec<u8>)) -> String {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    let mut bytes = STANDARD.decode(encrypted).expect("test vector is base64");
    edit(&mut bytes);
    STANDARD.encode(bytes)
}

#[test]
fn decrypts_wechat_shaped_user_info() {
    let info = decrypt(USER_INFO).unwrap();
    assert_eq!(
        info.open_id.unwrap().as_str(),
        "oGZUI0egBJY1zhBYw2KhdUfwVJJE"
    );
    assert_eq!(
        info.union_id.unwrap().as_str(),
        "ocMvos6NjeKLIBqg5Mr9QjxrP1FA"
    );
    let p = info.profile.0;
    assert_eq!(p.nick_name.unwrap().as_str(), "小明");
    assert_eq!(p.gender, Some(Gender::Male));
    assert_eq!(p.language.unwrap().as_str(), "zh_CN");
    assert_eq!(p.city.unwrap().as_str(), "Guangzhou");
    assert_eq!(p.province.unwrap().as_str(), "Guangdong");
    assert_eq!(p.country.unwrap().as_str(), "CN");
    assert_eq!(
        p.avatar_url.unwrap().as_str(),
        "https://thirdwx.qlogo.cn/mmopen/vi_32/Q0j4TwGTfTK/132"
    );
}

#[test]
fn decrypts_wechat_official_sample() {
    let info = WeChatCipher
        .decrypt_user_info(&key(WX_KEY), &app(WX_APP_ID), &data(WX_DATA, WX_IV))
        .unwrap();
    assert_eq!(
        info.open_id.unwrap().as_str(),
        "oGZUI0egBJY1zhBYw2KhdUfwVJJE"
    );
    assert_eq!(
        info.union_id.unwrap().as_str(),
        "ocMvos6NjeKLIBqg5Mr9QjxrP1FA"
    );
    assert_eq!(info.profile.0.nick_name.unwrap().as_str(), "Band");
    assert_eq!(info.profile.0.gender, Some(Gender::Male));
}

#[test]
fn encrypt_matches_openssl() {
    assert_eq!(
        encrypt_user_data(KEY, &IV_BYTES, USER_INFO_PLAIN.as_bytes()).unwrap(),
        USER_INFO
    );
}

#[test]
fn whole_block_of_padding_and_string_gender() {
    let info = decrypt(FULL_PAD_BLOCK).unwrap();
    assert_eq!(info.open_id, None);
    assert_eq!(info.profile.0.gender, Some(Gender::Female));
    assert_eq!(info.profile.0.nick_name, None);
}

#[test]
fn spaces_from_unencoded_forms_count_as_plus() {
    assert!(USER_INFO.contains('+'));
    let mangled = USER_INFO.replace('+', " ");
    assert_eq!(decrypt(&mangled).unwrap(), decrypt(USER_INFO).unwrap());
}

#[test]
fn empty_and_invalid_fields_are_dropped() {
    let plain = r#"{"openId":"","unionId":"has space","nickName":"  ","gender":"9","language":"a-language-name-too-long","city":"","province":" ","country":"CN","avatarUrl":"javascript:alert(1)","watermark":{"timestamp":1,"appid":"wx4f4bc4dec97d474b"}}"#;
    let encrypted = encrypt_user_data(KEY, &IV_BYTES, plain.as_bytes()).unwrap();
    let info = decrypt(&encrypted).unwrap();
    assert_eq!(info.open_id, None);
    assert_eq!(info.union_id, None);
    let p = info.profile.0;
    assert_eq!(p.country.unwrap().as_str(), "CN");
    assert_eq!(
        (
            p.nick_name,
            p.avatar_url,
            p.gender,
            p.language,
            p.city,
            p.province
        ),
        (None, None, None, None, None, None)
    );
}

#[test]
fn fields_of_the_wrong_type_are_dropped() {
    let plain = r#"{"openId":42,"nickName":["x"],"gender":true,"city":{},"watermark":{"appid":"wx4f4bc4dec97d474b"}}"#;
    let encrypted = encrypt_user_data(KEY, &IV_BYTES, plain.as_bytes()).unwrap();
    let info = decrypt(&encrypted).unwrap();
    assert_eq!(info.open_id, None);
    assert_eq!(info.profile.0, Default::default());
}

#[test]
fn wrong_key_fails() {
    let other = "AAECAwQFBgcICQoLDA0ODw==";
    let res = WeChatCipher.decrypt_user_info(&key(other), &app(APP_ID), &data(USER_INFO, IV));
    assert_eq!(res, Err(CipherError::DecryptFailed));
}

#[test]
fn wrong_iv_fails() {
    // A wrong IV only garbles the first block: padding passes, the JSON does not.
    let res = WeChatCipher.decrypt_user_info(
        &key(KEY),
        &app(APP_ID),
        &data(USER_INFO, "AAAAAAAAAAAAAAAAAAAAAA=="),
    );
    assert_eq!(res, Err(CipherError::DecryptFailed));
}

#[test]
fn watermark_for_another_app_fails() {
    assert_eq!(decrypt(OTHER_APPID), Err(CipherError::DecryptFailed));
    // Our own vector, checked against a different app id.
    let res =
        WeChatCipher.decrypt_user_info(&key(KEY), &app("wx0000000000000000"), &data(USER_INFO, IV));
    assert_eq!(res, Err(CipherError::DecryptFailed));
}

#[test]
fn missing_or_malformed_watermark_fails() {
    assert_eq!(decrypt(NO_WATERMARK), Err(CipherError::DecryptFailed));
    for plain in [
        r#"{"watermark":"wx4f4bc4dec97d474b"}"#,
        r#"{"watermark":{"appId":"wx4f4bc4dec97d474b"}}"#,
        r#"{"watermark":{"appid":" wx4f4bc4dec97d474b"}}"#,
        r#"{"watermark":{"appid":null}}"#,
        r#"[{"watermark":{"appid":"wx4f4bc4dec97d474b"}}]"#,
        r#""wx4f4bc4dec97d474b""#,
    ] {
        let encrypted = encrypt_user_data(KEY, &IV_BYTES, plain.as_bytes()).unwrap();
        assert_eq!(
            decrypt(&encrypted),
            Err(CipherError::DecryptFailed),
            "{plain}"
        );
    }
}

#[test]
fn non_json_and_non_utf8_plaintext_fail() {
    assert_eq!(decrypt(NOT_JSON), Err(CipherError::DecryptFailed));
    assert_eq!(decrypt(NOT_UTF8), Err(CipherError::DecryptFailed));
}

#[test]
fn bad_padding_fails() {
    assert_eq!(decrypt(PAD_ZERO), Err(CipherError::DecryptFailed));
    assert_eq!(decrypt(PAD_17), Err(CipherError::DecryptFailed));
    // Last byte says 3 but the byte before the last two is 02: a lax unpad would accept it.
    assert_eq!(decrypt(PAD_MIXED), Err(CipherError::DecryptFailed));
}

#[test]
fn truncated_ciphertext_fails() {
    let minus_byte = edited(USER_INFO, |b| {
        b.pop();
    });
    assert_eq!(decrypt(&minus_byte), Err(CipherError::DecryptFailed));
    let minus_last_block = edited(USER_INFO, |b| b.truncate(b.len() - 16));
    assert_eq!(decrypt(&minus_last_block), Err(CipherError::DecryptFailed));
    // Without its first block the rest still unpads, but the JSON is cut: still one error.
    let minus_first_block = edited(USER_INFO, |b| {
        b.drain(..16);
    });
    assert_eq!(decrypt(&minus_first_block), Err(CipherError::DecryptFailed));
    let plus_byte = edited(USER_INFO, |b| b.push(0));
    assert_eq!(decrypt(&plus_byte), Err(CipherError::DecryptFailed));
}

#[test]
fn empty_ciphertext_fails() {
    assert_eq!(decrypt(""), Err(CipherError::DecryptFailed));
}

#[test]
fn short_iv_or_key_is_invalid_input() {
    let iv15 = "AAECAwQFBgcICQoLDA0O"; // 15 bytes
    let res = WeChatCipher.decrypt_user_info(&key(KEY), &app(APP_ID), &data(USER_INFO, iv15));
    assert!(matches!(res, Err(CipherError::InvalidInput(_))), "{res:?}");
    let iv17 = "AAECAwQFBgcICQoLDA0ODxA="; // 17 bytes
    let res = WeChatCipher.decrypt_user_info(&key(KEY), &app(APP_ID), &data(USER_INFO, iv17));
    assert!(matches!(res, Err(CipherError::InvalidInput(_))), "{res:?}");

    for short in [
        "AAECAwQFBgcICQoLDA0O",
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
    ] {
        let res = WeChatCipher.decrypt_user_info(&key(short), &app(APP_ID), &data(USER_INFO, IV));
        assert!(matches!(res, Err(CipherError::InvalidInput(_))), "{res:?}");
        assert!(matches!(
            encrypt_user_data(short, &IV_BYTES, b"x"),
            Err(CipherError::InvalidInput(_))
        ));
    }
}

#[test]
fn invalid_base64_is_invalid_input() {
    let cases = [
        data("not base64!", IV),
        data("6p0CQZpWlyBDt1Dyx8EO2", IV), // missing padding
        data(USER_INFO, "7GfLVlW8719JjOEyCepe_A=="), // URL-safe alphabet
        data(USER_INFO, "%%%"),
    ];
    for d in &cases {
        let res = WeChatCipher.decrypt_user_info(&key(KEY), &app(APP_ID), d);
        assert!(matches!(res, Err(CipherError::InvalidInput(_))), "{res:?}");
    }
    let res =
        WeChatCipher.decrypt_user_info(&key("not*base64"), &app(APP_ID), &data(USER_INFO, IV));
    assert!(matches!(res, Err(CipherError::InvalidInput(_))), "{res:?}");
}

#[test]
fn errors_never_echo_input() {
    let secret_key = "c2VjcmV0LWtleS1zZWNyZXQ="; // "secret-key-secret", 17 bytes
    let res = WeChatCipher.decrypt_user_info(&key(secret_key), &app(APP_ID), &data("@@", "##"));
    let text = res.unwrap_err().to_string();
    assert!(!text.contains("@@") && !text.contains("c2Vj"), "{text}");
}

fn decrypt_phone(encrypted: &str) -> Result<PhoneInfo, CipherError> {
    WeChatCipher.decrypt_phone_number(&key(KEY), &app(APP_ID), &data(encrypted, IV))
}

#[test]
fn decrypts_legacy_phone_numbers_with_either_country_code() {
    let info = decrypt_phone(PHONE).unwrap();
    assert_eq!(info.phone_number.as_str(), "13580006666");
    assert_eq!(info.pure_phone_number, "13580006666");
    assert_eq!(info.country_code, "86");
    let info = decrypt_phone(PHONE_NUMERIC_CC).unwrap();
    assert_eq!(info.phone_number.as_str(), "+12025550123");
    assert_eq!(info.pure_phone_number, "2025550123");
    assert_eq!(info.country_code, "1");
}

#[test]
fn phone_data_follows_the_user_info_rules() {
    // One pipeline with user info: watermark, padding, JSON, key and IV are checked alike.
    assert_eq!(
        decrypt_phone(PHONE_OTHER_APPID),
        Err(CipherError::DecryptFailed)
    );
    let res =
        WeChatCipher.decrypt_phone_number(&key(KEY), &app("wx0000000000000000"), &data(PHONE, IV));
    assert_eq!(res, Err(CipherError::DecryptFailed));
    for bad in [
        NO_WATERMARK,
        NOT_JSON,
        NOT_UTF8,
        PAD_ZERO,
        PAD_17,
        PAD_MIXED,
        "",
    ] {
        assert_eq!(decrypt_phone(bad), Err(CipherError::DecryptFailed), "{bad}");
    }
    let other = "AAECAwQFBgcICQoLDA0ODw==";
    let res = WeChatCipher.decrypt_phone_number(&key(other), &app(APP_ID), &data(PHONE, IV));
    assert_eq!(res, Err(CipherError::DecryptFailed));
    let res = WeChatCipher.decrypt_phone_number(
        &key(KEY),
        &app(APP_ID),
        &data(PHONE, "AAAAAAAAAAAAAAAAAAAAAA=="),
    );
    assert_eq!(res, Err(CipherError::DecryptFailed));
    let minus_last_block = edited(PHONE, |b| b.truncate(b.len() - 16));
    assert_eq!(
        decrypt_phone(&minus_last_block),
        Err(CipherError::DecryptFailed)
    );

    for (encrypted, iv) in [(PHONE, "AAECAwQFBgcICQoLDA0O"), ("not base64!", IV)] {
        let res = WeChatCipher.decrypt_phone_number(&key(KEY), &app(APP_ID), &data(encrypted, iv));
        assert!(matches!(res, Err(CipherError::InvalidInput(_))), "{res:?}");
    }
    let short_key = "AAECAwQFBgcICQoLDA0O";
    let res = WeChatCipher.decrypt_phone_number(&key(short_key), &app(APP_ID), &data(PHONE, IV));
    assert!(matches!(res, Err(CipherError::InvalidInput(_))), "{res:?}");
}

#[test]
fn phone_data_without_a_usable_number_fails_like_a_wrong_key() {
    // Valid user info is no phone number.
    assert_eq!(decrypt_phone(USER_INFO), Err(CipherError::DecryptFailed));
    let watermark = r#""watermark":{"timestamp":1700000000,"appid":"wx4f4bc4dec97d474b"}"#;
    for fields in [
        r#""purePhoneNumber":"13580006666","countryCode":"86""#,
        r#""phoneNumber":"13580006666","countryCode":"86""#,
        r#""phoneNumber":"13580006666","purePhoneNumber":"13580006666""#,
        r#""phoneNumber":"","purePhoneNumber":"13580006666","countryCode":"86""#,
        r#""phoneNumber":"call me","purePhoneNumber":"13580006666","countryCode":"86""#,
        r#""phoneNumber":13580006666,"purePhoneNumber":"13580006666","countryCode":"86""#,
        r#""phoneNumber":"13580006666","purePhoneNumber":"","countryCode":"86""#,
        r#""phoneNumber":"13580006666","purePhoneNumber":"13580006666","countryCode":"""#,
        r#""phoneNumber":"13580006666","purePhoneNumber":"13580006666","countryCode":"+86""#,
        r#""phoneNumber":"13580006666","purePhoneNumber":"13580006666","countryCode":-86"#,
        r#""phoneNumber":"13580006666","purePhoneNumber":"13580006666","countryCode":8.6"#,
        r#""phoneNumber":"13580006666","purePhoneNumber":"13580006666","countryCode":null"#,
        r#""phoneNumber":"13580006666","purePhoneNumber":"13580006666","countryCode":"12345""#,
    ] {
        let plain = format!("{{{fields},{watermark}}}");
        let encrypted = encrypt_user_data(KEY, &IV_BYTES, plain.as_bytes()).unwrap();
        assert_eq!(
            decrypt_phone(&encrypted),
            Err(CipherError::DecryptFailed),
            "{plain}"
        );
    }
    // Surrounding spaces are noise, not a reason to refuse.
    let plain = format!(
        r#"{{"phoneNumber":" 13580006666 ","purePhoneNumber":"13580006666","countryCode":" 86",{watermark}}}"#
    );
    let encrypted = encrypt_user_data(KEY, &IV_BYTES, plain.as_bytes()).unwrap();
    let info = decrypt_phone(&encrypted).unwrap();
    assert_eq!(
        (info.phone_number.as_str(), info.country_code.as_str()),
        ("13580006666", "86")
    );
}

#[test]
fn official_raw_data_signature() {
    assert_eq!(
        WeChatCipher.verify_signature(&key(RAW_KEY), RAW_DATA, RAW_SIGNATURE),
        Ok(())
    );
    // Hex case does not matter.
    assert_eq!(
        WeChatCipher.verify_signature(&key(RAW_KEY), RAW_DATA, &RAW_SIGNATURE.to_uppercase()),
        Ok(())
    );
}

#[test]
fn signature_mismatches() {
    let k = key(RAW_KEY);
    let mismatch = Err(CipherError::SignatureMismatch);
    // One changed byte of the data, the key or the signature.
    assert_eq!(
        WeChatCipher.verify_signature(&k, &RAW_DATA.replace("Band", "Bane"), RAW_SIGNATURE),
        mismatch
    );
    assert_eq!(
        WeChatCipher.verify_signature(&key(KEY), RAW_DATA, RAW_SIGNATURE),
        mismatch
    );
    let mut flipped = RAW_SIGNATURE.to_owned();
    flipped.replace_range(39.., "d");
    assert_eq!(
        WeChatCipher.verify_signature(&k, RAW_DATA, &flipped),
        mismatch
    );
    // Empty, one hex digit short or two too many, not hex, or a multi-byte character.
    for sig in [
        "",
        "75e81ceda165f4ffa64f4068af58c64b8f54b88",
        "75e81ceda165f4ffa64f4068af58c64b8f54b88c00",
        "zze81ceda165f4ffa64f4068af58c64b8f54b88c",
        "75e81ceda165f4ffa64f4068af58c64b8f54b8é",
    ] {
        assert_eq!(
            WeChatCipher.verify_signature(&k, RAW_DATA, sig),
            mismatch,
            "{sig}"
        );
    }
}
