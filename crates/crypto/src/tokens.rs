//! Bearer tokens and their digests.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::TryRng;
use rand::rngs::SysRng;
use secrecy::zeroize::Zeroizing;
use sha2::{Digest, Sha256};
use wxlogin_domain::{Token, TokenDigest, TokenMinter};

/// Mints `wxl_` + 43 base64url characters (32 bytes straight from the OS random source) and
/// digests tokens with SHA-256.
///
/// A plain hash is enough for the digest: the token already has 256 bits of entropy, so there
/// is nothing to brute-force and no need for a slow or salted hash.
#[derive(Debug, Clone, Copy, Default)]
pub struct OsTokens;

impl TokenMinter for OsTokens {
    fn mint(&self) -> Token {
        let mut bytes = Zeroizing::new([0u8; 32]);
        // Read the OS source directly (not a user-space generator) so a token never depends on
        // state that a fork or snapshot could duplicate. If the OS cannot deliver randomness
        // there is no safe token to hand out; failing loudly is the only correct answer.
        SysRng
            .try_fill_bytes(bytes.as_mut_slice())
            .expect("the OS random source failed; cannot mint a token");
        let mut text = String::with_capacity(Token::PREFIX.len() + 43);
        text.push_str(Token::PREFIX);
        URL_SAFE_NO_PAD.encode_string(bytes.as_slice(), &mut text);
        Token::new(text)
    }

    fn digest(&self, token: &str) -> TokenDigest {
        TokenDigest::from_bytes(Sha256::digest(token.as_bytes()).into())
    }
}
