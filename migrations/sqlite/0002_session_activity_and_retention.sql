-- Session activity and retention: `sessions.last_seen_at` (the idle timeout counts from it)
-- and the indexes that let the purge of ended sessions find them without a scan.
--
-- SQLite cannot add a NOT NULL column without a constant default (and a STRICT table has no
-- default that would be a time), so the table is rebuilt the way SQLite's documentation
-- describes for such changes: a new table, the rows copied with `last_seen_at` backfilled
-- from `created_at` (a session stored before this migration was last seen, as far as we know,
-- when its login created it), the old table dropped and the new one renamed. Nothing refers
-- to `sessions`, so foreign keys may stay on; the whole migration is one transaction.

CREATE TABLE sessions_0002 (
    id           TEXT NOT NULL PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    app_id       TEXT NOT NULL,
    -- UNIQUE gives the index that makes authenticating a request one indexed read.
    token_digest BLOB NOT NULL UNIQUE CHECK (length(token_digest) = 32),
    session_key  TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    expires_at   TEXT NOT NULL,
    revoked_at   TEXT,
    -- When the session was last used (written at most once a minute per session, and only
    -- ever forward); a login or refresh sets it to its own time.
    last_seen_at TEXT NOT NULL
) STRICT;

INSERT INTO sessions_0002
    (id, user_id, app_id, token_digest, session_key, created_at, expires_at, revoked_at,
     last_seen_at)
SELECT id, user_id, app_id, token_digest, session_key, created_at, expires_at, revoked_at,
       created_at
FROM sessions;

-- Drops the old table's indexes with it.
DROP TABLE sessions;
ALTER TABLE sessions_0002 RENAME TO sessions;

-- Listing and revoking a user's sessions (logout everywhere, admin, account deletion), and the
-- ON DELETE CASCADE from users.
CREATE INDEX sessions_user_id ON sessions (user_id);

-- The purge of ended sessions deletes `revoked_at <= ? OR expires_at <= ? OR last_seen_at < ?`:
-- one index per term, so SQLite answers the OR from the three indexes instead of a scan.
-- Partial: only revoked sessions have a revocation time, and they are purged soon after.
CREATE INDEX sessions_revoked_at ON sessions (revoked_at) WHERE revoked_at IS NOT NULL;
CREATE INDEX sessions_expires_at ON sessions (expires_at);
CREATE INDEX sessions_last_seen_at ON sessions (last_seen_at);
