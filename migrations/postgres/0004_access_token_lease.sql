-- The access token is renewed under a lease instead of 0003's row lock (SELECT … FOR UPDATE),
-- so no transaction spans the WeChat call: the instance that takes the lease (one conditional
-- UPDATE, when the lease is free or has expired) fetches outside any transaction and stores
-- the token while releasing the lease. `lease_holder` names the caller that holds it (a random
-- id), `lease_until` is when it expires and anyone may take it over; both are NULL while
-- nobody renews. `fetched_at` is when the stored token was fetched: inside the refresh margin
-- it is asked of WeChat again at most once per interval. NULL on rows stored before this
-- migration (read as fetched long ago).
ALTER TABLE access_tokens
    ADD COLUMN fetched_at   timestamptz,
    ADD COLUMN lease_holder text,
    ADD COLUMN lease_until  timestamptz;
