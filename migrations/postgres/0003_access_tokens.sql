-- The access token of each mini-program, shared by every instance of wxlogin: one row per app,
-- renewed by one instance at a time under the row's lock (SELECT … FOR UPDATE), so N instances
-- make one fetch. The token is a secret that lives at most two hours; it is stored as WeChat
-- issued it, since every instance must be able to use it.
CREATE TABLE access_tokens (
    app_id     text        NOT NULL,
    token      text,
    expires_at timestamptz,
    CONSTRAINT access_tokens_pkey PRIMARY KEY (app_id)
);
