-- The PostgreSQL store's schema, version 1. Installed by one transaction in
-- the schema the store is configured with (__SCHEMA__, quoted), as
-- __UNLOGGED__ tables by default: rate-limit state need not survive a crash.
--
-- Times are integer microseconds (the server's clock_timestamp(), or a time
-- given by the caller, in tests); every row carries the time it expires at,
-- after which it counts as absent and the janitor may delete it.
CREATE SCHEMA IF NOT EXISTS __SCHEMA__;

CREATE TABLE IF NOT EXISTS __SCHEMA__.schema_version (version integer NOT NULL);

-- One row per key and rule. `key` is the bounded digest of the key's
-- length-prefixed parts (as for Redis). The columns mean what each
-- algorithm's functions say: fixed (a = window start, b = spent), sliding
-- (a = window start, b = previous count, c = current count), gcra and
-- token_bucket (a = time of the last write, b = debt), sliding_log (log =
-- admitted hits as pairs time, cost, oldest first; b = their total cost).
CREATE __UNLOGGED__ TABLE IF NOT EXISTS __SCHEMA__.state (
    key bytea NOT NULL,
    rule smallint NOT NULL,
    a bigint NOT NULL DEFAULT 0,
    b bigint NOT NULL DEFAULT 0,
    c bigint NOT NULL DEFAULT 0,
    log bigint[] NOT NULL DEFAULT '{}',
    expires_at bigint NOT NULL,
    PRIMARY KEY (key, rule)
);
CREATE INDEX IF NOT EXISTS state_expires_at ON __SCHEMA__.state (expires_at);

-- A key's ban (until, µs) and its recent refusals (newest first).
CREATE __UNLOGGED__ TABLE IF NOT EXISTS __SCHEMA__.bans (
    key bytea PRIMARY KEY,
    until bigint NOT NULL DEFAULT 0,
    refusals bigint[] NOT NULL DEFAULT '{}',
    expires_at bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS bans_expires_at ON __SCHEMA__.bans (expires_at);

-- The time of a call: p_now, or the server's clock.
CREATE OR REPLACE FUNCTION __SCHEMA__.now_us(p_now bigint) RETURNS bigint
LANGUAGE sql VOLATILE AS $$
    SELECT coalesce(p_now, (extract(epoch FROM clock_timestamp()) * 1000000)::bigint)
$$;

-- ceil(a / b) for a >= 0, b > 0.
CREATE OR REPLACE FUNCTION __SCHEMA__.ceil_div(a bigint, b bigint) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$ SELECT (a + b - 1) / b $$;

-- floor(a / b) for b > 0 (PostgreSQL's integer division truncates).
CREATE OR REPLACE FUNCTION __SCHEMA__.floor_div(a bigint, b bigint) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN a >= 0 THEN a / b ELSE -((-a + b - 1) / b) END
$$;

-- A write's lifetime: positive and at most twice the span (as the Redis
-- store's TTLs).
CREATE OR REPLACE FUNCTION __SCHEMA__.expiry(p_now bigint, p_us bigint, p_span bigint)
RETURNS bigint LANGUAGE sql IMMUTABLE AS $$
    SELECT p_now + greatest(1, least(p_us, 2 * p_span))
$$;
