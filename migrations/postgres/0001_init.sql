-- wxlogin's PostgreSQL schema: the same tables as migrations/sqlite, with native types.
--
-- Conventions (the adapter in crates/store-postgres relies on them):
-- * ids are native `uuid` (16 bytes, compared as numbers; v7 ids keep inserts at the right
--   edge of the primary-key indexes);
-- * timestamps are `timestamptz`, which keeps microseconds: the adapter truncates the
--   domain's nanosecond values to microseconds before binding them;
-- * token digests are 32-byte `bytea`.

CREATE TABLE users (
    id           uuid        NOT NULL,
    nick_name    text,
    avatar_url   text,
    gender       smallint,
    country      text,
    province     text,
    city         text,
    language     text,
    phone_number text,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    CONSTRAINT users_pkey PRIMARY KEY (id),
    CONSTRAINT users_gender_check CHECK (gender BETWEEN 0 AND 2)
);

-- A WeChat identity: (app_id, open_id), plus the unionid shared by the mini-programs of one
-- Open Platform account. Kept apart from users so one user can hold identities of several apps.
CREATE TABLE wechat_identities (
    user_id    uuid        NOT NULL,
    app_id     text        NOT NULL,
    open_id    text        NOT NULL,
    union_id   text,
    created_at timestamptz NOT NULL,
    CONSTRAINT wechat_identities_user_fkey
        FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE,
    -- The login lookup (find the user by openid), and the arbiter of the login upsert
    -- (`ON CONFLICT (app_id, open_id) DO NOTHING`): what makes concurrent first logins of one
    -- openid end up with a single identity.
    CONSTRAINT wechat_identities_app_open_key UNIQUE (app_id, open_id),
    -- One identity per user and app. Its index also serves the join from a user (or session)
    -- to its identity, and the ON DELETE CASCADE from users, which would otherwise scan.
    CONSTRAINT wechat_identities_user_app_key UNIQUE (user_id, app_id)
);

-- Finding a user's identities in sibling apps by unionid (account linking, admin look-ups).
-- Partial: those look-ups always name a unionid, and identities without one stay out of it.
CREATE INDEX wechat_identities_union_id ON wechat_identities (union_id)
    WHERE union_id IS NOT NULL;

-- A login session: only the SHA-256 digest of its bearer token, never the token, and the
-- session_key that this session's own login exchanged.
CREATE TABLE sessions (
    id           uuid        NOT NULL,
    user_id      uuid        NOT NULL,
    app_id       text        NOT NULL,
    token_digest bytea       NOT NULL,
    session_key  text        NOT NULL,
    created_at   timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    revoked_at   timestamptz,
    CONSTRAINT sessions_pkey PRIMARY KEY (id),
    CONSTRAINT sessions_user_fkey
        FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE,
    -- UNIQUE gives the index that makes authenticating a request one indexed read.
    CONSTRAINT sessions_token_digest_key UNIQUE (token_digest),
    CONSTRAINT sessions_token_digest_check CHECK (octet_length(token_digest) = 32)
);

-- Listing and revoking a user's sessions (logout everywhere, admin, account deletion), and the
-- ON DELETE CASCADE from users, which would otherwise scan the table.
CREATE INDEX sessions_user_id ON sessions (user_id);
