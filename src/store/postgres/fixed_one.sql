-- The decision of a fixed window limiter with one rule and no automatic
-- bans, as one statement instead of decide() (same parameters, same
-- columns, same answers): PL/pgSQL runs each of its statements apart, this
-- is planned once and runs as one. A statement, not a function, so it
-- needs nothing the schema of version 1 lacks. See fixed.sql for the
-- arithmetic and decide.sql for the answer.
--
-- $1 key, $3[1] limit, $4[1] window (µs), $7 mode ('hit' or 'peek'),
-- $8 cost, $9 now (NULL: the server's clock); $2, $5, $6 are unused.
--
-- A hit is spent by one INSERT ... ON CONFLICT DO UPDATE whose WHERE reads
-- the row's latest version under its lock, so two decisions on a key can
-- never both spend its last unit; the advisory lock of decide() is taken
-- too, so this statement and decide() (a peek of another limiter sharing
-- the key space) never interleave. A refused hit writes nothing. A refusal
-- or a peek reports the row as this statement's snapshot saw it.
WITH t AS (
    SELECT coalesce($9::bigint, (extract(epoch FROM clock_timestamp()) * 1000000)::bigint) AS now,
           $3::bigint[] AS limits, ($4::bigint[])[1] AS win, $8::bigint AS cost
      FROM (SELECT pg_advisory_xact_lock(
                ('x' || encode(substring($1::bytea FROM greatest(length($1::bytea) - 7, 1) FOR 8),
                               'hex'))::bit(64)::bigint)) AS locked
),
ban AS (
    SELECT b.until FROM __SCHEMA__.bans b, t WHERE b.key = $1 AND b.until > t.now
),
spent AS (
    INSERT INTO __SCHEMA__.state AS s (key, rule, a, b, c, log, expires_at)
    SELECT $1, 1, t.now, t.cost, 0, '{}', t.now + t.win
      FROM t
     WHERE $7::text = 'hit' AND t.cost <= t.limits[1] AND NOT EXISTS (SELECT FROM ban)
    ON CONFLICT (key, rule) DO UPDATE SET
        a = CASE WHEN s.expires_at <= excluded.a OR excluded.a - s.a >= ($4::bigint[])[1]
                 THEN excluded.a ELSE s.a END,
        b = CASE WHEN s.expires_at <= excluded.a OR excluded.a - s.a >= ($4::bigint[])[1]
                 THEN excluded.b ELSE s.b + excluded.b END,
        c = 0,
        log = '{}',
        expires_at = CASE WHEN s.expires_at <= excluded.a OR excluded.a - s.a >= ($4::bigint[])[1]
                          THEN excluded.expires_at
                          ELSE excluded.a + greatest(1, least(s.a + ($4::bigint[])[1] - excluded.a,
                                                            ($4::bigint[])[1])) END
     WHERE (CASE WHEN s.expires_at <= excluded.a OR excluded.a - s.a >= ($4::bigint[])[1]
                 THEN 0 ELSE s.b END) + excluded.b <= ($3::bigint[])[1]
    RETURNING s.a, s.b
),
-- The window as it stands (a refusal, a peek): a row expired or of a past
-- window counts as a fresh window.
seen AS (
    SELECT CASE WHEN s.a IS NULL OR t.now - s.a >= t.win THEN t.now ELSE s.a END AS start,
           CASE WHEN s.a IS NULL OR t.now - s.a >= t.win THEN 0 ELSE s.b END AS spent
      FROM t LEFT JOIN __SCHEMA__.state s
        ON s.key = $1 AND s.rule = 1 AND s.expires_at > t.now
)
SELECT CASE WHEN ban.until IS NOT NULL THEN false
            WHEN $7::text = 'hit' THEN spent.b IS NOT NULL
            ELSE seen.spent + 1 <= t.limits[1] END AS allowed,
       t.limits[1] AS "limit",
       CASE WHEN ban.until IS NOT NULL THEN 0
            WHEN spent.b IS NOT NULL THEN t.limits[1] - spent.b
            ELSE t.limits[1] - seen.spent END AS remaining,
       CASE WHEN ban.until IS NOT NULL THEN ban.until - t.now
            WHEN spent.b IS NOT NULL THEN least(spent.a + t.win - t.now, t.win)
            ELSE least(seen.start + t.win - t.now, t.win) END AS reset,
       CASE WHEN ban.until IS NOT NULL THEN ban.until - t.now
            WHEN spent.b IS NOT NULL THEN 0
            WHEN $7::text = 'peek' AND seen.spent + 1 <= t.limits[1] THEN 0
            ELSE least(seen.start + t.win - t.now, t.win) END AS retry,
       CASE WHEN ban.until IS NOT NULL THEN 1 ELSE 0 END AS banned
  FROM t CROSS JOIN seen LEFT JOIN spent ON true LEFT JOIN ban ON true
