//! WeChat's user-data encryption and `rawData` signatures.

use std::borrow::Cow;

use aes::Aes128;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};
use secrecy::zeroize::Zeroizing;
use serde_json::{Map, Value};
use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;
use wxlogin_domain::{
    AppId, AvatarUrl, CipherError, DecryptedUserInfo, EncryptedData, Gender, InvalidValue,
    NickName, OpenId, PhoneInfo, PhoneNumber, Profile, ProfileText, ProfileUpdate, Reason,
    SessionKey, UnionId, UserDataCipher,
};

type Decryptor = cbc::Decryptor<Aes128>;
type Encryptor = cbc::Encryptor<Aes128>;

const BLOCK_LEN: usize = 16;

/// WeChat's user-data cipher: AES-128-CBC with the session key, strict PKCS#7, a JSON payload
/// whose `watermark.appid` must name our app; and `rawData` signatures.
#[derive(Debug, Clone, Copy, Default)]
pub struct WeChatCipher;

impl UserDataCipher for WeChatCipher {
    fn decrypt_user_info(
        &self,
        key: &SessionKey,
        app_id: &AppId,
        data: &EncryptedData,
    ) -> Result<DecryptedUserInfo, CipherError> {
        let payload = decrypt_payload(key.expose_base64(), app_id, data)?;
        Ok(user_info(&payload))
    }

    fn decrypt_phone_number(
        &self,
        key: &SessionKey,
        app_id: &AppId,
        data: &EncryptedData,
    ) -> Result<PhoneInfo, CipherError> {
        let payload = decrypt_payload(key.expose_base64(), app_id, data)?;
        // A payload without a usable number is a decrypt failure like any other: a wrong key
        // that happens to unpad and parse must not be told apart.
        phone_info(&payload).ok_or(CipherError::DecryptFailed)
    }

    fn verify_signature(
        &self,
        key: &SessionKey,
        raw_data: &str,
        signature: &str,
    ) -> Result<(), CipherError> {
        // WeChat signs with the key's base64 *text*, not its decoded bytes.
        let expected = Sha1::new()
            .chain_update(raw_data.as_bytes())
            .chain_update(key.expose_base64().as_bytes())
            .finalize();
        // Comparing bytes instead of hex text makes the check case-insensitive for free.
        let given = decode_hex::<20>(signature.trim()).ok_or(CipherError::SignatureMismatch)?;
        if bool::from(expected.as_slice().ct_eq(&given)) {
            Ok(())
        } else {
            Err(CipherError::SignatureMismatch)
        }
    }
}

/// Encrypts `plaintext` as WeChat does (AES-128-CBC, PKCS#7) and returns it as base64.
/// The inverse of decryption, for the mock WeChat and for tests.
///
/// # Errors
/// [`CipherError::InvalidInput`] if `key_b64` is not base64 of exactly 16 bytes.
pub fn encrypt_user_data(
    key_b64: &str,
    iv: &[u8; 16],
    plaintext: &[u8],
) -> Result<String, CipherError> {
    let key = decode_block(key_b64, "sessionKey")?;
    let ciphertext = Encryptor::new_from_slices(key.as_slice(), iv)
        .map_err(|_| {
            CipherError::InvalidInput(InvalidValue::new("sessionKey", Reason::NotOneBlock))
        })?
        .encrypt_padded_vec::<Pkcs7>(plaintext);
    Ok(STANDARD.encode(ciphertext))
}

/// Decrypts and checks the watermark; returns the payload's top-level JSON object.
fn decrypt_payload(
    key_b64: &str,
    app_id: &AppId,
    data: &EncryptedData,
) -> Result<Map<String, Value>, CipherError> {
    // Malformed input is reported precisely (a client bug, nothing secret to learn from it)…
    let ciphertext = decode_base64(&data.encrypted_data, "encryptedData")?;
    let key = decode_block(key_b64, "sessionKey")?;
    let iv = decode_block(&data.iv, "iv")?;

    // …but from here on every failure is the same `DecryptFailed`, so the answer never tells
    // a padding failure from a JSON or watermark failure (no padding oracle). A wrong key
    // passes strict unpadding about 1 time in 256, which is why JSON and watermark failures
    // must look exactly like padding failures.
    if ciphertext.is_empty() || ciphertext.len() % BLOCK_LEN != 0 {
        return Err(CipherError::DecryptFailed);
    }
    // block-padding 0.4's `Pkcs7` is strict: pad length 1..=16 and every pad byte equal
    // (the `bad_padding_*` known-answer tests pin this down).
    let plaintext = Decryptor::new_from_slices(key.as_slice(), iv.as_slice())
        .map_err(|_| CipherError::DecryptFailed)?
        .decrypt_padded_vec::<Pkcs7>(&ciphertext)
        .map_err(|_| CipherError::DecryptFailed)?;
    let plaintext = Zeroizing::new(plaintext);
    let text = std::str::from_utf8(&plaintext).map_err(|_| CipherError::DecryptFailed)?;
    // A `Map` (not a derived struct) so that only a JSON object is accepted: serde would
    // otherwise also fill a struct from an array.
    let payload: Map<String, Value> =
        serde_json::from_str(text).map_err(|_| CipherError::DecryptFailed)?;
    let watermark_app = payload
        .get("watermark")
        .and_then(Value::as_object)
        .and_then(|w| w.get("appid"))
        .and_then(Value::as_str);
    if watermark_app != Some(app_id.as_str()) {
        return Err(CipherError::DecryptFailed);
    }
    Ok(payload)
}

/// Maps a checked payload to the domain. A missing, empty or invalid field becomes `None`:
/// WeChat sends `""` for unknown places, and one odd field must not cost the whole profile.
fn user_info(payload: &Map<String, Value>) -> DecryptedUserInfo {
    let text = |name: &str| {
        payload
            .get(name)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
    };
    let place = |name: &'static str| text(name).and_then(|s| ProfileText::place(name, s).ok());
    DecryptedUserInfo {
        open_id: text("openId").and_then(|s| OpenId::parse(s).ok()),
        union_id: text("unionId").and_then(|s| UnionId::parse(s).ok()),
        profile: ProfileUpdate(Profile {
            nick_name: text("nickName").and_then(|s| NickName::parse(s).ok()),
            avatar_url: text("avatarUrl").and_then(|s| AvatarUrl::parse(s).ok()),
            gender: payload.get("gender").and_then(gender),
            country: place("country"),
            province: place("province"),
            city: place("city"),
            language: text("language").and_then(|s| ProfileText::language(s).ok()),
        }),
    }
}

/// Maps a checked legacy phone payload to the domain; `None` unless every field is usable.
/// Unlike a profile, a phone number is all or nothing.
fn phone_info(payload: &Map<String, Value>) -> Option<PhoneInfo> {
    let text = |name: &str| payload.get(name).and_then(Value::as_str).map(str::trim);
    let phone_number = PhoneNumber::parse(text("phoneNumber")?).ok()?;
    let pure_phone_number = PhoneNumber::parse(text("purePhoneNumber")?).ok()?;
    // WeChat's documentation shows `countryCode` as a string, its sample as a number.
    let country_code = match payload.get("countryCode")? {
        Value::String(s) => s.trim().to_owned(),
        Value::Number(n) => n.as_u64()?.to_string(),
        _ => return None,
    };
    if country_code.is_empty()
        || country_code.len() > 4
        || !country_code.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    Some(PhoneInfo {
        phone_number,
        pure_phone_number: pure_phone_number.as_str().to_owned(),
        country_code,
    })
}

/// WeChat documents `gender` as a number, but some payloads carry it as a numeric string.
fn gender(value: &Value) -> Option<Gender> {
    let code = match value {
        Value::Number(n) => n.as_i64()?,
        Value::String(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    Gender::from_code(code).ok()
}

/// Standard base64 with padding. Clients that post form bodies without URL-encoding them turn
/// `+` into a space; a space is never valid base64, so mapping it back loses nothing.
fn decode_base64(text: &str, field: &'static str) -> Result<Vec<u8>, CipherError> {
    let text = if text.contains(' ') {
        Cow::Owned(text.replace(' ', "+"))
    } else {
        Cow::Borrowed(text)
    };
    STANDARD
        .decode(text.as_bytes())
        .map_err(|_| CipherError::InvalidInput(InvalidValue::new(field, Reason::NotBase64)))
}

/// Decodes a key or IV, which must be exactly one AES block. Wiped from memory when dropped.
fn decode_block(
    text: &str,
    field: &'static str,
) -> Result<Zeroizing<[u8; BLOCK_LEN]>, CipherError> {
    let bytes = Zeroizing::new(decode_base64(text, field)?);
    let block: [u8; BLOCK_LEN] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| CipherError::InvalidInput(InvalidValue::new(field, Reason::NotOneBlock)))?;
    Ok(Zeroizing::new(block))
}

/// Decodes exactly `N` bytes of hex, either case. `None` for any other input.
fn decode_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    if text.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (byte, pair) in out.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
        let [hi, lo] = pair else { return None };
        *byte = (nibble(*hi)? << 4) | nibble(*lo)?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_decoding() {
        assert_eq!(decode_hex::<2>("0aFf"), Some([0x0a, 0xff]));
        assert_eq!(decode_hex::<2>("0aF"), None);
        assert_eq!(decode_hex::<2>("0aFfe"), None);
        assert_eq!(decode_hex::<2>("0aFg"), None);
        assert_eq!(decode_hex::<2>("+0aF"), None);
        // Multi-byte UTF-8 of the right byte length must be refused, not sliced.
        assert_eq!(decode_hex::<2>("é0a"), None);
    }

    #[test]
    fn gender_accepts_numbers_and_numeric_strings() {
        assert_eq!(gender(&Value::from(1)), Some(Gender::Male));
        assert_eq!(gender(&Value::from(" 2 ")), Some(Gender::Female));
        assert_eq!(gender(&Value::from(0)), Some(Gender::Unknown));
        assert_eq!(gender(&Value::from(3)), None);
        assert_eq!(gender(&Value::from(1.5)), None);
        assert_eq!(gender(&Value::from("male")), None);
        assert_eq!(gender(&Value::Null), None);
    }

    #[test]
    fn spaces_in_base64_are_plus_signs() {
        assert_eq!(decode_base64("+/8=", "x"), Ok(vec![0xfb, 0xff]));
        assert_eq!(decode_base64(" /8=", "x"), Ok(vec![0xfb, 0xff]));
        assert_eq!(
            decode_base64("+/8", "x"),
            Err(CipherError::InvalidInput(InvalidValue::new(
                "x",
                Reason::NotBase64
            )))
        );
    }
}
