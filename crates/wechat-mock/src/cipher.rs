//! WeChat's encrypted-data format, encrypt side only: AES-128-CBC with PKCS#7 padding.
//! Kept apart from `wxlogin-crypto` on purpose (see the crate docs).

use aes::cipher::{BlockModeEncrypt, KeyIvInit, block_padding::Pkcs7};

type Aes128CbcEnc = cbc::Encryptor<aes::Aes128>;

/// Encrypts `plaintext` exactly as WeChat does for `encryptedData`.
pub(crate) fn encrypt(key: &[u8; 16], iv: &[u8; 16], plaintext: &[u8]) -> Vec<u8> {
    Aes128CbcEnc::new(key.into(), iv.into()).encrypt_padded_vec::<Pkcs7>(plaintext)
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
}
