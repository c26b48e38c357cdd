//! WeChat's encrypted-data format, encrypt side only (AES-128-CBC with PKCS#7 padding), and
//! the `checksession` signature. Kept apart from `wxlogin-crypto` and from the HTTP client on
//! purpose (see the crate docs).

use aes::cipher::{BlockModeEncrypt, KeyIvInit, block_padding::Pkcs7};
use hmac::{Hmac, KeyInit as _, Mac as _};
use sha2::Sha256;

type Aes128CbcEnc = cbc::Encryptor<aes::Aes128>;

/// Encrypts `plaintext` exactly as WeChat does for `encryptedData`.
pub(crate) fn encrypt(key: &[u8; 16], iv: &[u8; 16], plaintext: &[u8]) -> Vec<u8> {
    Aes128CbcEnc::new(key.into(), iv.into()).encrypt_padded_vec::<Pkcs7>(plaintext)
}

/// `checksession`'s `signature` for a session key and an empty message: lowercase hex of
/// HMAC-SHA256 keyed with the key's base64 *text* (not its decoded bytes).
pub(crate) fn session_signature(key_base64: &str) -> String {
    signature(key_base64, b"")
}

fn signature(key_base64: &str, message: &[u8]) -> String {
    // HMAC takes keys of any length, so this never fails; if it did, an empty signature
    // would match nothing.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key_base64.as_bytes()) else {
        return String::new();
    };
    mac.update(message);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pads_to_whole_blocks_even_when_aligned() {
        // PKCS#7 always adds padding: an aligned message grows by a full block.
        assert_eq!(encrypt(&[1; 16], &[2; 16], &[0; 16]).len(), 32);
        assert_eq!(encrypt(&[1; 16], &[2; 16], &[0; 15]).len(), 16);
        assert_eq!(encrypt(&[1; 16], &[2; 16], b"").len(), 16);
    }

    #[test]
    fn signature_matches_wechats_example() {
        // WECHAT.md's official example (message `{"foo":"bar"}`); checksession signs "".
        assert_eq!(
            signature("o0q0otL8aEzpcZL/FT9WsQ==", br#"{"foo":"bar"}"#),
            "654571f79995b2ce1e149e53c0a33dc39c0a74090db514261454e8dbe432aa0b"
        );
        // `printf '' | openssl dgst -sha256 -hmac 'o0q0otL8aEzpcZL/FT9WsQ=='`
        assert_eq!(
            session_signature("o0q0otL8aEzpcZL/FT9WsQ=="),
            "46e043c5525c2d817c44be603d30837a808a1d930d038f6fdc3e62a201fed128"
        );
    }
}
