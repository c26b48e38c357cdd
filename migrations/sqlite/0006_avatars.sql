-- Avatars uploaded through POST /api/v1/me/avatar (chooseAvatar's temporary file), served at
-- GET /avatars/{id}. At most one per user: an upload deletes the user's earlier ones, and
-- erasing the user deletes them (ON DELETE CASCADE). Kept in the database so that a deploy
-- needs no file store; every instance on one database serves every avatar.
CREATE TABLE avatars (
    id           TEXT NOT NULL PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    content_type TEXT NOT NULL CHECK (content_type IN ('image/png', 'image/jpeg', 'image/webp')),
    bytes        BLOB NOT NULL,
    created_at   TEXT NOT NULL
) STRICT;

CREATE INDEX avatars_user_id ON avatars (user_id);
