//! Operator passwords: hashes are argon2id PHC strings with fresh salts, they verify only
//! their own password, configured hashes of other kinds are refused, and the async verifier
//! agrees with the plain functions (its dummy hash matching no password tried).

#![cfg(feature = "passwords")]

use wxlogin_crypto::{
    Argon2Verifier, PasswordHashError, check_password_hash, hash_password, verify_password,
};
use wxlogin_domain::{Password, PasswordHash, PasswordVerifier};

#[test]
fn a_hash_is_an_argon2id_phc_string_that_verifies_only_its_password() {
    let phc = hash_password("correct horse battery").expect("hashes");
    assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
    assert!(!phc.contains("correct horse"));
    assert_eq!(check_password_hash(&phc), Ok(()));
    assert!(verify_password(&phc, "correct horse battery"));
    assert!(!verify_password(&phc, "correct horse batter"));
    assert!(!verify_password(&phc, ""));
    // A fresh salt every time.
    let again = hash_password("correct horse battery").expect("hashes");
    assert_ne!(phc, again);
    assert!(verify_password(&again, "correct horse battery"));
}

#[test]
fn an_empty_password_is_refused() {
    assert_eq!(hash_password(""), Err(PasswordHashError::EmptyPassword));
}

#[test]
fn only_complete_argon2id_phc_strings_pass_the_check() {
    let phc = hash_password("pw").expect("hashes");
    assert_eq!(
        check_password_hash("correct horse"),
        Err(PasswordHashError::NotPhc)
    );
    assert_eq!(check_password_hash(""), Err(PasswordHashError::NotPhc));
    let argon2i = phc.replacen("$argon2id$", "$argon2i$", 1);
    assert_eq!(
        check_password_hash(&argon2i),
        Err(PasswordHashError::NotArgon2id)
    );
    assert!(!verify_password(&argon2i, "pw"));
    let bcrypt = "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW";
    assert!(check_password_hash(bcrypt).is_err());
    let bad_params = phc.replacen("m=19456", "m=1", 1);
    assert_eq!(
        check_password_hash(&bad_params),
        Err(PasswordHashError::InvalidParams)
    );
    let (no_output, _) = phc.rsplit_once('$').expect("has fields");
    assert!(check_password_hash(no_output).is_err(), "{no_output}");
    // The errors never quote what they refused.
    let e = check_password_hash("$argon2id$garbage-SECRET").expect_err("refused");
    assert!(!e.to_string().contains("SECRET"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_verifier_checks_off_the_runtime_and_its_dummy_matches_nothing() {
    let verifier = Argon2Verifier::new(Argon2Verifier::DEFAULT_CONCURRENCY).expect("builds");
    let hash = PasswordHash::new(hash_password("s3cret").expect("hashes"));
    assert!(
        verifier
            .verify(&hash, &Password::new("s3cret".into()))
            .await
    );
    assert!(!verifier.verify(&hash, &Password::new("s3cre".into())).await);
    let dummy = verifier.dummy_hash();
    assert_eq!(check_password_hash(dummy.as_str()), Ok(()));
    // The same parameters as the hashes `hash-password` makes, so it costs the same.
    let params = |phc: &str| phc.split('$').nth(3).expect("params").to_owned();
    assert_eq!(params(dummy.as_str()), params(hash.as_str()));
    for guess in ["", "s3cret", "password", "admin"] {
        assert!(!verifier.verify(&dummy, &Password::new(guess.into())).await);
    }
    // A hash that is not argon2id is no match, not a panic.
    let garbage = PasswordHash::new("not a hash".into());
    assert!(!verifier.verify(&garbage, &Password::new("x".into())).await);
    // Clones share the limit and the dummy.
    assert_eq!(verifier.clone().dummy_hash(), dummy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_checks_all_answer_with_a_limit_of_one() {
    let verifier = Argon2Verifier::new(1).expect("builds");
    let hash = PasswordHash::new(hash_password("pw").expect("hashes"));
    let checks: Vec<_> = (0..4)
        .map(|i| {
            let (v, h) = (verifier.clone(), hash.clone());
            tokio::spawn(async move {
                let guess = if i % 2 == 0 { "pw" } else { "nope" };
                v.verify(&h, &Password::new(guess.into())).await
            })
        })
        .collect();
    let mut answers = Vec::new();
    for c in checks {
        answers.push(c.await.expect("the check task ends"));
    }
    assert_eq!(answers, [true, false, true, false]);
}
