-- wxlogin's SQLite schema.
--
-- Conventions (the adapter in crates/store-sqlite relies on them):
-- * ids are UUIDs stored as hyphenated lower-case text;
-- * timestamps are UTC RFC 3339 text with nine fractional digits and a `Z`
--   ("2024-05-01T08:00:00.123456789Z"): exact round trips, and fixed width, so text order is
--   time order and `expires_at < ?` comparisons work on the text;
-- * STRICT tables, so a wrongly typed bind fails loudly instead of being stored as-is.

CREATE TABLE users (
    id           TEXT    NOT NULL PRIMARY KEY,
    nick_name    TEXT,
    avatar_url   TEXT,
    gender       INTEGER CHECK (gender IN (0, 1, 2)),
    country      TEXT,
    province     TEXT,
    city         TEXT,
    language     TEXT,
    phone_number TEXT,
    created_at   TEXT    NOT NULL,
    updated_at   TEXT    NOT NULL
) STRICT;

-- A WeChat identity: (app_id, open_id), plus the unionid shared by the mini-programs of one
-- Open Platform account. Kept apart from users so one user can hold identities of several apps.
CREATE TABLE wechat_identities (
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    app_id     TEXT NOT NULL,
    open_id    TEXT NOT NULL,
    union_id   TEXT,
    created_at TEXT NOT NULL,
    -- The login lookup (find the user by openid), and what makes concurrent first logins of
    -- one openid end up with a single identity.
    UNIQUE (app_id, open_id),
    -- One identity per user and app. Its index also serves the join from a user (or session)
    -- to its identity, and the ON DELETE CASCADE from users, which would otherwise scan.
    UNIQUE (user_id, app_id)
) STRICT;

-- Finding a user's identities in sibling apps by unionid (account linking, admin look-ups).
CREATE INDEX wechat_identities_union_id ON wechat_identities (union_id);

-- A login session: only the SHA-256 digest of its bearer token, never the token, and the
-- session_key that this session's own login exchanged.
CREATE TABLE sessions (
    id           TEXT NOT NULL PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    app_id       TEXT NOT NULL,
    -- UNIQUE gives the index that makes authenticating a request one indexed read.
    token_digest BLOB NOT NULL UNIQUE CHECK (length(token_digest) = 32),
    session_key  TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    expires_at   TEXT NOT NULL,
    revoked_at   TEXT
) STRICT;

-- Listing and revoking a user's sessions (logout everywhere, admin, account deletion), and the
-- ON DELETE CASCADE from users.
CREATE INDEX sessions_user_id ON sessions (user_id);
