//! Token parsing: the `Authorization` header (the scheme word in any case), the choice between
//! a body token and a header token, and the digest stored in a token's place. Invariants
//! (beyond no panic): a parsed bearer token is the header's text, trimmed and non-empty, and
//! `Bearer <token>` with the scheme in any case parses back to it; a body token and the same
//! header token never conflict, different ones always do; the digest is SHA-256 of the text;
//! a token of wxlogin's format (`wxl_` + 43 base64url characters) decodes to 32 bytes that
//! re-format to itself, as a minted one does.
//!
//! The input is text: the header value, a newline, the body token (optional).
#![no_main]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libfuzzer_sys::fuzz_target;
use wxlogin_domain::{Token, TokenMinter as _};
use wxlogin_input::{TokenConflict, bearer, pick_token};

/// The 32 random bytes of a token of wxlogin's format, if it is one.
fn token_bytes(token: &str) -> Option<[u8; 32]> {
    let rest = token.strip_prefix(Token::PREFIX)?;
    if rest.len() != 43 {
        return None;
    }
    URL_SAFE_NO_PAD.decode(rest).ok()?.try_into().ok()
}

fn format_token(bytes: &[u8; 32]) -> String {
    format!("{}{}", Token::PREFIX, URL_SAFE_NO_PAD.encode(bytes))
}

/// `bearer` with each letter's case taken from a bit of `mask`.
fn scheme(mask: u8) -> String {
    "bearer"
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if mask >> i & 1 == 1 {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect()
}

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    let (header, body) = match text.split_once('\n') {
        Some((h, b)) => (h, Some(b)),
        None => (text, None),
    };
    let tokens = wxlogin_crypto::OsTokens;
    let mask = bytes.first().copied().unwrap_or(0);

    if let Some(token) = bearer(header) {
        assert!(
            !token.is_empty() && token == token.trim(),
            "untrimmed {token:?}"
        );
        assert!(header.contains(token));
        assert_eq!(bearer(&format!("{} {token}", scheme(mask))), Some(token));
        assert_eq!(
            pick_token(Some(format!(" {token} ")), Some(header)),
            Ok(Some(token.to_owned()))
        );
        assert_eq!(
            pick_token(Some(format!("{token}x")), Some(header)),
            Err(TokenConflict)
        );
    }

    let picked = pick_token(body.map(str::to_owned), Some(header));
    let body = body.map(str::trim).filter(|b| !b.is_empty());
    match (body, bearer(header)) {
        (Some(b), Some(h)) if b != h => assert_eq!(picked, Err(TokenConflict)),
        (Some(b), _) => assert_eq!(picked, Ok(Some(b.to_owned()))),
        (None, h) => assert_eq!(picked, Ok(h.map(str::to_owned))),
    }

    // The digest: SHA-256 of the exact text, so another text (one more byte) differs.
    let digest = tokens.digest(header);
    assert_eq!(digest, tokens.digest(header));
    assert_ne!(digest, tokens.digest(&format!("{header} ")));

    // wxlogin's own format parses and re-formats to itself.
    for candidate in [Some(header), bearer(header), body].into_iter().flatten() {
        if let Some(raw) = token_bytes(candidate) {
            assert_eq!(
                format_token(&raw),
                candidate,
                "non-canonical token accepted"
            );
        }
    }
    if mask == 0 {
        let minted = tokens.mint();
        let minted = minted.expose();
        let raw = token_bytes(minted).expect("a minted token has wxlogin's format");
        assert_eq!(format_token(&raw), minted);
        assert_eq!(bearer(&format!("Bearer {minted}")), Some(minted));
    }
});
