//! User-data decryption (`/updateUserInfo`, `/api/v1/me/profile/encrypted`) and the `rawData`
//! signature check. Invariants (beyond no panic): a raw decryption fails as `InvalidInput` only
//! for malformed base64 or lengths, else as `DecryptFailed`; a plaintext encrypted with the key
//! decrypts exactly when it is a JSON object whose watermark names our app, and its `openId`
//! comes out as sent; the wrong key never decrypts; a signature verifies exactly when it is
//! `sha1(rawData + key)` in hex (either case).
#![no_main]

use libfuzzer_sys::fuzz_target;
use wxlogin_domain::{CipherError, OpenId, UserDataCipher as _};
use wxlogin_fuzz::{
    Input, KEY, WRONG_KEY, app_id, check_error_kind, encrypted, payload, session_key, signature,
    watermark_ok,
};

fuzz_target!(|bytes: &[u8]| {
    let cipher = wxlogin_crypto::WeChatCipher;
    let app = app_id();
    match Input::read(bytes) {
        None => {}
        Some(Input::Raw {
            key: key_text,
            data,
            raw_data,
            signature: sig,
        }) => {
            let Some(key) = session_key(key_text) else {
                return;
            };
            if let Err(err) = cipher.decrypt_user_info(&key, &app, &data) {
                check_error_kind(key.expose_base64(), &data, &err);
            }
            let verified = cipher.verify_signature(&key, raw_data, sig).is_ok();
            let expected = signature(raw_data, key.expose_base64());
            assert_eq!(
                verified,
                sig.trim().eq_ignore_ascii_case(&expected),
                "signature check"
            );
        }
        Some(Input::Plain(plaintext)) => {
            let (Some(key), Some(wrong)) = (session_key(KEY), session_key(WRONG_KEY)) else {
                return;
            };
            let data = encrypted(plaintext);
            let result = cipher.decrypt_user_info(&key, &app, &data);
            let expected = payload(plaintext).filter(watermark_ok);
            match (&result, &expected) {
                (Ok(info), Some(payload)) => {
                    let open_id = payload
                        .get("openId")
                        .and_then(serde_json::Value::as_str)
                        .and_then(|s| OpenId::parse(s).ok());
                    assert_eq!(info.open_id, open_id, "openId");
                }
                (Err(CipherError::DecryptFailed), None) => {}
                _ => panic!(
                    "decrypted {result:?}, expected a payload: {}",
                    expected.is_some()
                ),
            }
            assert_eq!(
                cipher.decrypt_user_info(&wrong, &app, &data).err(),
                Some(CipherError::DecryptFailed),
                "the wrong key decrypted"
            );
            // The plaintext as `rawData`: its signature verifies, in either case, and a
            // changed one does not.
            if let Ok(text) = std::str::from_utf8(plaintext) {
                let sig = signature(text, KEY);
                assert!(cipher.verify_signature(&key, text, &sig).is_ok());
                assert!(
                    cipher
                        .verify_signature(&key, text, &sig.to_ascii_uppercase())
                        .is_ok()
                );
                assert!(cipher.verify_signature(&wrong, text, &sig).is_err());
            }
        }
    }
});
