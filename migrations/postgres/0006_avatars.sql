-- Avatars uploaded through POST /api/v1/me/avatar (chooseAvatar's temporary file), served at
-- GET /avatars/{id}. At most one per user: an upload deletes the user's earlier ones, and
-- erasing the user deletes them (ON DELETE CASCADE). Kept in the database so that a deploy
-- needs no file store; every instance on one database serves every avatar.
CREATE TABLE avatars (
    id           uuid        PRIMARY KEY,
    user_id      uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    content_type text        NOT NULL CHECK (content_type IN ('image/png', 'image/jpeg', 'image/webp')),
    bytes        bytea       NOT NULL,
    created_at   timestamptz NOT NULL
);

CREATE INDEX avatars_user_id ON avatars (user_id);
