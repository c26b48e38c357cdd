-- The access token of each mini-program, shared by every instance of wxlogin: one row per app,
-- renewed under the write lock (BEGIN IMMEDIATE) by one instance at a time. The token is a
-- secret that lives at most two hours; it is stored as WeChat issued it, since every instance
-- must be able to use it. Timestamps follow 0001's convention.
CREATE TABLE access_tokens (
    app_id     TEXT NOT NULL PRIMARY KEY,
    token      TEXT,
    expires_at TEXT
) STRICT;
