-- Session activity and retention: `sessions.last_seen_at` (the idle timeout counts from it)
-- and the indexes that let the purge of ended sessions find them without a scan.

-- Added nullable, backfilled from created_at (a session stored before this migration was last
-- seen, as far as we know, when its login created it), then made NOT NULL: one transaction,
-- so no instance ever sees the column half filled.
ALTER TABLE sessions ADD COLUMN last_seen_at timestamptz;
UPDATE sessions SET last_seen_at = created_at;
ALTER TABLE sessions ALTER COLUMN last_seen_at SET NOT NULL;

-- The purge of ended sessions deletes `revoked_at <= $1 OR expires_at <= $1 OR
-- last_seen_at < $2`: one index per term, so PostgreSQL answers the OR with a BitmapOr of the
-- three instead of a sequential scan. Partial: only revoked sessions have a revocation time,
-- and they are purged soon after. (Indexing last_seen_at costs touches their HOT updates;
-- a session is touched at most once a minute.)
CREATE INDEX sessions_revoked_at ON sessions (revoked_at) WHERE revoked_at IS NOT NULL;
CREATE INDEX sessions_expires_at ON sessions (expires_at);
CREATE INDEX sessions_last_seen_at ON sessions (last_seen_at);
