//! `OsTokens`: shape, uniqueness and digest of minted tokens.

use std::collections::HashSet;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use wxlogin_crypto::OsTokens;
use wxlogin_domain::{Token, TokenMinter};

#[test]
fn tokens_have_prefix_and_32_random_bytes() {
    let token = OsTokens.mint();
    let text = token.expose();
    assert!(text.starts_with(Token::PREFIX));
    assert_eq!(text.len(), 4 + 43);
    let body = &text[Token::PREFIX.len()..];
    assert_eq!(URL_SAFE_NO_PAD.decode(body).unwrap().len(), 32);
}

#[test]
fn tokens_are_unique() {
    let minted: HashSet<String> = (0..10_000)
        .map(|_| OsTokens.mint().expose().to_owned())
        .collect();
    assert_eq!(minted.len(), 10_000);
}

#[test]
fn digest_is_sha256() {
    // FIPS 180-2, appendix B.1: SHA-256("abc").
    let expected = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    let hex: String = OsTokens
        .digest("abc")
        .as_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(hex, expected);
}

#[test]
fn digest_is_stable_and_distinguishes_tokens() {
    let a = OsTokens.mint();
    let b = OsTokens.mint();
    assert_eq!(OsTokens.digest(a.expose()), OsTokens.digest(a.expose()));
    assert_ne!(OsTokens.digest(a.expose()), OsTokens.digest(b.expose()));
}
