//! Legacy phone-data decryption (`/api/v1/me/phone` with `encryptedData`). Invariants (beyond
//! no panic): error kinds as for user data; a plaintext encrypted with the key decrypts only
//! when its watermark names our app, and then into the numbers it holds (trimmed, valid), with
//! a country code of 1–4 digits; the wrong key never decrypts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use wxlogin_domain::{CipherError, PhoneNumber, UserDataCipher as _};
use wxlogin_fuzz::{
    Input, KEY, WRONG_KEY, app_id, check_error_kind, encrypted, payload, session_key, watermark_ok,
};

fuzz_target!(|bytes: &[u8]| {
    let cipher = wxlogin_crypto::WeChatCipher;
    let app = app_id();
    match Input::read(bytes) {
        None => {}
        Some(Input::Raw { key, data, .. }) => {
            let Some(key) = session_key(key) else {
                return;
            };
            if let Err(err) = cipher.decrypt_phone_number(&key, &app, &data) {
                check_error_kind(key.expose_base64(), &data, &err);
            }
        }
        Some(Input::Plain(plaintext)) => {
            let (Some(key), Some(wrong)) = (session_key(KEY), session_key(WRONG_KEY)) else {
                return;
            };
            let data = encrypted(plaintext);
            let result = cipher.decrypt_phone_number(&key, &app, &data);
            let payload = payload(plaintext).filter(watermark_ok);
            match (&result, &payload) {
                (Ok(info), Some(payload)) => {
                    let text =
                        |name: &str| payload.get(name).and_then(Value::as_str).map(str::trim);
                    assert_eq!(Some(info.phone_number.as_str()), text("phoneNumber"));
                    assert_eq!(
                        Some(info.pure_phone_number.as_str()),
                        text("purePhoneNumber")
                    );
                    assert!(PhoneNumber::parse(&info.pure_phone_number).is_ok());
                    let cc = &info.country_code;
                    assert!((1..=4).contains(&cc.len()) && cc.bytes().all(|b| b.is_ascii_digit()));
                }
                (Ok(_), None) => panic!("decrypted a payload without our watermark"),
                (Err(CipherError::DecryptFailed), _) => {}
                (Err(err), _) => panic!("{err:?} after decoding"),
            }
            assert_eq!(
                cipher.decrypt_phone_number(&wrong, &app, &data).err(),
                Some(CipherError::DecryptFailed),
                "the wrong key decrypted"
            );
        }
    }
});
