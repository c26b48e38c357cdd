//! Property tests: decryption (user info and phone numbers) never panics, and decrypts what `encrypt_user_data` encrypts.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use proptest::prelude::*;
use wxlogin_crypto::{WeChatCipher, encrypt_user_data};
use wxlogin_domain::{AppId, EncryptedData, SessionKey, UserDataCipher};

const APP_ID: &str = "wx4f4bc4dec97d474b";

proptest! {
    #[test]
    fn decrypt_never_panics_on_arbitrary_text(
        key in "[A-Za-z0-9+/= ]{1,40}",
        encrypted in "\\PC{0,200}",
        iv in "\\PC{0,40}",
    ) {
        let key = SessionKey::from_base64(&key);
        prop_assume!(key.is_ok());
        let key = key.unwrap();
        let app = AppId::parse(APP_ID).unwrap();
        let data = EncryptedData { encrypted_data: encrypted, iv };
        let _ = WeChatCipher.decrypt_user_info(&key, &app, &data);
        let _ = WeChatCipher.decrypt_phone_number(&key, &app, &data);
        let _ = WeChatCipher.verify_signature(&key, &data.encrypted_data, &data.iv);
    }

    #[test]
    fn decrypt_never_panics_on_arbitrary_bytes(
        key in any::<[u8; 16]>(),
        iv in any::<[u8; 16]>(),
        ciphertext in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let key = SessionKey::from_base64(&STANDARD.encode(key)).unwrap();
        let app = AppId::parse(APP_ID).unwrap();
        let data = EncryptedData {
            encrypted_data: STANDARD.encode(ciphertext),
            iv: STANDARD.encode(iv),
        };
        let _ = WeChatCipher.decrypt_user_info(&key, &app, &data);
        let _ = WeChatCipher.decrypt_phone_number(&key, &app, &data);
    }

    #[test]
    fn round_trips_with_encrypt_user_data(
        key in any::<[u8; 16]>(),
        iv in any::<[u8; 16]>(),
        open_id in "o[A-Za-z0-9_-]{1,40}",
        nick in "[a-zA-Z\u{4e00}-\u{9fa5}]{1,20}",
        gender in 0i64..=2,
    ) {
        let key_b64 = STANDARD.encode(key);
        let plain = serde_json::json!({
            "openId": open_id,
            "nickName": nick,
            "gender": gender,
            "watermark": { "timestamp": 1, "appid": APP_ID },
        })
        .to_string();
        let encrypted = encrypt_user_data(&key_b64, &iv, plain.as_bytes()).unwrap();
        let data = EncryptedData { encrypted_data: encrypted, iv: STANDARD.encode(iv) };
        let info = WeChatCipher
            .decrypt_user_info(
                &SessionKey::from_base64(&key_b64).unwrap(),
                &AppId::parse(APP_ID).unwrap(),
                &data,
            )
            .unwrap();
        prop_assert_eq!(info.open_id.as_ref().map(|o| o.as_str()), Some(open_id.as_str()));
        let got_nick = info.profile.0.nick_name.as_ref().map(|n| n.as_str());
        prop_assert_eq!(got_nick, Some(nick.as_str()));
        prop_assert_eq!(info.profile.0.gender.map(|g| g.code()), Some(gender));
    }

    #[test]
    fn phone_numbers_round_trip_with_encrypt_user_data(
        key in any::<[u8; 16]>(),
        iv in any::<[u8; 16]>(),
        pure in "1[3-9][0-9]{9}",
        country in 1u64..=999,
        numeric_country in any::<bool>(),
    ) {
        let key_b64 = STANDARD.encode(key);
        let country_code = if numeric_country {
            serde_json::json!(country)
        } else {
            serde_json::json!(country.to_string())
        };
        let plain = serde_json::json!({
            "phoneNumber": format!("+{country}{pure}"),
            "purePhoneNumber": pure,
            "countryCode": country_code,
            "watermark": { "timestamp": 1, "appid": APP_ID },
        })
        .to_string();
        let encrypted = encrypt_user_data(&key_b64, &iv, plain.as_bytes()).unwrap();
        let data = EncryptedData { encrypted_data: encrypted, iv: STANDARD.encode(iv) };
        let info = WeChatCipher
            .decrypt_phone_number(
                &SessionKey::from_base64(&key_b64).unwrap(),
                &AppId::parse(APP_ID).unwrap(),
                &data,
            )
            .unwrap();
        prop_assert_eq!(info.phone_number.as_str(), format!("+{country}{pure}"));
        prop_assert_eq!(info.pure_phone_number, pure);
        prop_assert_eq!(info.country_code, country.to_string());
    }
}
