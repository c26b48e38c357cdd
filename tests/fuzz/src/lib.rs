//! What the decryption targets share: the test key, IV and app id of the crypto crate's
//! known-answer vectors, how an input is read, and the oracle for the error kind.
//!
//! An input is text lines. `raw` first: the lines after it are the session key, the IV,
//! `encryptedData`, `rawData` and `signature`, as a client would send them. Anything else
//! first: the rest of the input (after the first line) is a plaintext, encrypted with the test
//! key and IV as WeChat would, then decrypted, so the fuzzer reaches the JSON and watermark
//! checks instead of failing at the padding.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use wxlogin_domain::{AppId, CipherError, EncryptedData, SessionKey};

/// The crypto crate's vector key (hex 94c09ea8af0b3e7c843f1a4f49cd4670), IV and app id.
pub const KEY: &str = "lMCeqK8LPnyEPxpPSc1GcA==";
pub const IV: &str = "7GfLVlW8719JjOEyCepe/A==";
pub const IV_BYTES: [u8; 16] = [
    0xec, 0x67, 0xcb, 0x56, 0x55, 0xbc, 0xef, 0x5f, 0x49, 0x8c, 0xe1, 0x32, 0x09, 0xea, 0x5e, 0xfc,
];
pub const APP_ID: &str = "wx4f4bc4dec97d474b";
/// Another valid key: decrypting with it must fail, and fail as `DecryptFailed`.
pub const WRONG_KEY: &str = "AAECAwQFBgcICQoLDA0ODw==";

pub fn app_id() -> AppId {
    AppId::parse(APP_ID).expect("the test app id is valid")
}

pub fn session_key(b64: &str) -> Option<SessionKey> {
    SessionKey::from_base64(b64).ok()
}

/// A fuzz input, read as described in the crate doc.
pub enum Input<'a> {
    Raw {
        key: &'a str,
        data: EncryptedData,
        raw_data: &'a str,
        signature: &'a str,
    },
    Plain(&'a [u8]),
}

impl<'a> Input<'a> {
    pub fn read(bytes: &'a [u8]) -> Option<Self> {
        let (first, rest) = match bytes.iter().position(|&b| b == b'\n') {
            Some(at) => (&bytes[..at], &bytes[at + 1..]),
            None => (bytes, &[][..]),
        };
        if first != b"raw" {
            return Some(Self::Plain(rest));
        }
        let text = std::str::from_utf8(rest).ok()?;
        let mut lines = text.split('\n');
        let mut next = || lines.next().unwrap_or("");
        let (key, iv, encrypted, raw_data, signature) = (next(), next(), next(), next(), next());
        Some(Self::Raw {
            key,
            data: EncryptedData {
                encrypted_data: encrypted.to_owned(),
                iv: iv.to_owned(),
            },
            raw_data,
            signature,
        })
    }
}

/// `plaintext` encrypted with [`KEY`] and [`IV`], as the client would send it.
pub fn encrypted(plaintext: &[u8]) -> EncryptedData {
    EncryptedData {
        encrypted_data: wxlogin_crypto::encrypt_user_data(KEY, &IV_BYTES, plaintext)
            .expect("the test key is valid"),
        iv: IV.to_owned(),
    }
}

/// Whether the cipher may answer `InvalidInput` for these fields: only when a field is not
/// base64 (a space read as `+`) or the key or IV is not 16 bytes. Every later failure must be
/// the one `DecryptFailed` (no padding oracle).
pub fn malformed(key: &str, data: &EncryptedData) -> bool {
    let decode = |s: &str| STANDARD.decode(s.replace(' ', "+"));
    let block = |s: &str| decode(s).map(|b| b.len() == 16).unwrap_or(false);
    decode(&data.encrypted_data).is_err() || !block(key) || !block(&data.iv)
}

/// Checks the error kind of a decryption of raw fields against [`malformed`].
pub fn check_error_kind(key: &str, data: &EncryptedData, err: &CipherError) {
    match err {
        CipherError::InvalidInput(_) => assert!(malformed(key, data), "InvalidInput for {data:?}"),
        CipherError::DecryptFailed => assert!(!malformed(key, data), "DecryptFailed too early"),
        CipherError::SignatureMismatch => panic!("a decryption answered SignatureMismatch"),
    }
}

/// The plaintext's JSON object, read the way the cipher reads it (`None` if not UTF-8 JSON).
pub fn payload(plaintext: &[u8]) -> Option<serde_json::Map<String, serde_json::Value>> {
    serde_json::from_str(std::str::from_utf8(plaintext).ok()?).ok()
}

/// Whether the payload's watermark names [`APP_ID`].
pub fn watermark_ok(payload: &serde_json::Map<String, serde_json::Value>) -> bool {
    payload
        .get("watermark")
        .and_then(|w| w.get("appid"))
        .and_then(serde_json::Value::as_str)
        == Some(APP_ID)
}

/// `sha1(raw_data + key)` in lower-case hex: the signature WeChat computes.
pub fn signature(raw_data: &str, key: &str) -> String {
    use sha1::Digest as _;
    let digest = sha1::Sha1::new()
        .chain_update(raw_data.as_bytes())
        .chain_update(key.as_bytes())
        .finalize();
    digest.iter().map(|b| format!("{b:02x}")).collect()
}
