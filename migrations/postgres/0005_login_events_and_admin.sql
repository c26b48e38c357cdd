-- What the operators' API (/admin/v1) needs: a record of logins for its statistics, and an
-- index for its look-up of users by openid in any app.
--
-- One row per login (never per refresh): when it happened and in which mini-program. Nothing
-- that names a user, so it is no login history and erasure has nothing to remove here. Rows
-- older than a day are deleted by the hourly purge of ended sessions.
CREATE TABLE login_events (
    at     timestamptz NOT NULL,
    app_id text        NOT NULL
);

-- "Logins since …" for the statistics, and the purge's "older than …".
CREATE INDEX login_events_at ON login_events (at);

-- Operators search users by openid across every app (UNIQUE (app_id, open_id) cannot serve a
-- search that names no app).
CREATE INDEX wechat_identities_open_id ON wechat_identities (open_id);
