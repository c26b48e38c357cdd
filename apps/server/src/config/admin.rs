//! `[[admin.users]]`: the operators of `/admin/v1`, parsed once at start like every other
//! section. Each entry names an operator and the argon2id PHC hash of its password (made by
//! `wxlogin hash-password`); a hash that is not one stops the server with the entry's key.

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use wxlogin_domain::{OperatorAccount, OperatorName, PasswordHash};

use super::{ConfigError, bad};

/// `[admin]`: no operators by default (then nobody can use `/admin/v1`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminSettings {
    pub users: Vec<OperatorSettings>,
}

/// One `[[admin.users]]` entry. `Debug` hides the hash.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorSettings {
    /// The operator's name, the user-id of HTTP Basic.
    pub name: String,
    /// `$argon2id$v=19$…`, as `wxlogin hash-password` prints it.
    pub password_hash: SecretString,
}

impl AdminSettings {
    /// The operators, each checked: a valid and unique name, an argon2id PHC hash.
    pub(super) fn parse(self) -> Result<Vec<OperatorAccount>, ConfigError> {
        let mut operators: Vec<OperatorAccount> = Vec::with_capacity(self.users.len());
        for (i, user) in self.users.into_iter().enumerate() {
            let key = |field: &str| format!("admin.users[{i}].{field}");
            let name =
                OperatorName::parse(&user.name).or_else(|e| bad(&key("name"), e.reason.text()))?;
            if operators.iter().any(|o| o.name == name) {
                return bad(&key("name"), "names another operator already configured");
            }
            let hash = user.password_hash.expose_secret().trim();
            // The reason only: the hash itself is never echoed.
            wxlogin_crypto::check_password_hash(hash).or_else(|e| {
                bad(
                    &key("password_hash"),
                    &format!("{e}; make one with `wxlogin hash-password`"),
                )
            })?;
            operators.push(OperatorAccount {
                name,
                password_hash: PasswordHash::new(hash.to_owned()),
            });
        }
        Ok(operators)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, hash: &str) -> OperatorSettings {
        OperatorSettings {
            name: name.into(),
            password_hash: SecretString::from(hash),
        }
    }

    #[test]
    fn operators_need_a_name_and_an_argon2id_hash() {
        let hash = wxlogin_crypto::hash_password("pw").expect("hashes");
        let ok = AdminSettings {
            users: vec![entry("alice", &hash), entry("bob", &format!(" {hash}\n"))],
        }
        .parse()
        .expect("valid");
        assert_eq!(ok.len(), 2);
        assert_eq!(ok[1].name.as_str(), "bob");
        assert_eq!(ok[1].password_hash.as_str(), hash, "trimmed");
        assert!(AdminSettings::default().parse().expect("valid").is_empty());

        let err = |users| {
            AdminSettings { users }
                .parse()
                .expect_err("invalid")
                .to_string()
        };
        let e = err(vec![entry("alice", &hash), entry("a:b", &hash)]);
        assert!(e.contains("admin.users[1].name"), "{e}");
        let e = err(vec![entry("alice", &hash), entry("alice", &hash)]);
        assert!(e.contains("admin.users[1].name"), "{e}");
        let e = err(vec![entry("alice", "plain-password-SECRET")]);
        assert!(e.contains("admin.users[0].password_hash"), "{e}");
        assert!(e.contains("hash-password"), "{e}");
        assert!(!e.contains("SECRET"), "{e}");
        let argon2i = hash.replacen("$argon2id$", "$argon2i$", 1);
        let e = err(vec![entry("alice", &argon2i)]);
        assert!(e.contains("argon2id"), "{e}");
        assert!(!e.contains(&argon2i), "{e}");
    }

    #[test]
    fn debug_hides_the_hash() {
        let s = entry(
            "alice",
            "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2g",
        );
        assert!(!format!("{s:?}").contains("argon2id"));
    }
}

#[cfg(test)]
mod file_tests {
    use crate::config::Settings;

    /// The file layer reads `[[admin.users]]` into the typed operators.
    #[test]
    fn operators_come_from_the_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("wxlogin.toml");
        let hash = wxlogin_crypto::hash_password("pw").expect("hashes");
        std::fs::write(
            &path,
            format!(
                "[[admin.users]]\nname = \"alice\"\npassword_hash = \"{hash}\"\n\n\
                 [[admin.users]]\nname = \"bob\"\npassword_hash = \"{hash}\"\n"
            ),
        )
        .expect("write");
        let c = Settings::load(Some(&path))
            .expect("loads")
            .parse()
            .expect("valid");
        let names: Vec<&str> = c.operators.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, ["alice", "bob"]);

        std::fs::write(
            &path,
            "[[admin.users]]\nname = \"alice\"\npasword_hash = \"x\"\n",
        )
        .expect("write");
        let err = Settings::load(Some(&path))
            .expect_err("unknown key")
            .to_string();
        assert!(err.contains("pasword_hash"), "{err}");
    }
}
