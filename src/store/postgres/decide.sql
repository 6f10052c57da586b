-- What one rule answers (see fixed.sql): the decision, and when a hit is
-- admitted the rule's row as it must be written.
DO $$ BEGIN
    CREATE TYPE __SCHEMA__.answer AS (
        allowed boolean, remaining bigint, reset bigint, retry bigint,
        a bigint, b bigint, c bigint, log bigint[], expires bigint
    );
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;

-- Whether answer a is more restrictive than b: refused before admitted,
-- then the longer retry, the fewer remaining, the longer reset.
CREATE OR REPLACE FUNCTION __SCHEMA__.worse(a __SCHEMA__.answer, b __SCHEMA__.answer)
RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN a.allowed <> b.allowed THEN NOT a.allowed
        WHEN a.retry <> b.retry THEN a.retry > b.retry
        WHEN a.remaining <> b.remaining THEN a.remaining < b.remaining
        ELSE a.reset > b.reset
    END
$$;

-- Counts a refusal of p_key; whether it began a ban (the p_after-th
-- refusal within p_within).
CREATE OR REPLACE FUNCTION __SCHEMA__.refused(
    p_key bytea, p_after bigint, p_within bigint, p_length bigint, p_now bigint
) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    v_times bigint[];
    recent integer := 0;
    t bigint;
BEGIN
    SELECT b.refusals INTO v_times FROM __SCHEMA__.bans b
     WHERE b.key = p_key AND b.expires_at > p_now;
    IF p_after > 1 THEN
        FOREACH t IN ARRAY coalesce(v_times[1:p_after - 1], '{}') LOOP
            EXIT WHEN p_now - t >= p_within;
            recent := recent + 1;
        END LOOP;
    END IF;
    IF recent + 1 >= p_after THEN
        PERFORM __SCHEMA__.put_ban(p_key, p_now + p_length, '{}', p_now + p_length);
        RETURN true;
    END IF;
    PERFORM __SCHEMA__.put_ban(p_key, 0,
        (ARRAY[p_now] || coalesce(v_times, '{}'))[1:p_after - 1], p_now + p_within);
    RETURN false;
END $$;

CREATE OR REPLACE FUNCTION __SCHEMA__.put_ban(
    p_key bytea, p_until bigint, p_refusals bigint[], p_expires_at bigint
) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO __SCHEMA__.bans AS b (key, until, refusals, expires_at)
    VALUES (p_key, p_until, p_refusals, p_expires_at)
    ON CONFLICT (key) DO UPDATE
       SET until = excluded.until, refusals = excluded.refusals,
           expires_at = excluded.expires_at;
END $$;

-- One decision: every rule decided, spent in all of them only if all admit,
-- the most restrictive reported (when admitted the least remaining, then
-- the longest reset; when refused the refusing rule with the longest
-- retry), bans checked and begun in the same transaction.
--
-- p_limits, p_windows (µs), p_bursts: the rules; p_ban: refusals that begin
-- a ban (0: none), the span they fall within and the ban's length (µs);
-- p_mode: 'hit' (decide and spend) or 'peek' (decide cost 1, spend
-- nothing); p_now: the time to decide at, or NULL for the server's clock.
-- Returns allowed, the limit, remaining, reset and retry (µs), and banned:
-- 0, 1 (refused by a ban) or 2 (this refusal began a ban).
CREATE OR REPLACE FUNCTION __SCHEMA__.decide(
    p_key bytea, p_algorithm text, p_limits bigint[], p_windows bigint[],
    p_bursts bigint[], p_ban bigint[], p_mode text, p_cost bigint, p_now bigint,
    OUT allowed boolean, OUT "limit" bigint, OUT remaining bigint,
    OUT reset bigint, OUT retry bigint, OUT banned integer
) LANGUAGE plpgsql AS $$
DECLARE
    v_now bigint := __SCHEMA__.now_us(p_now);
    v_cost bigint := CASE WHEN p_mode = 'peek' THEN 1 ELSE p_cost END;
    rules integer := array_length(p_limits, 1);
    r __SCHEMA__.answer;
    best __SCHEMA__.answer;
    answers __SCHEMA__.answer[];
    worst integer := 1;
    everyone boolean := true;
    v_until bigint;
    i integer;
BEGIN
    -- One decision at a time per key (a digest collision only serializes).
    PERFORM pg_advisory_xact_lock(
        ('x' || encode(substring(p_key FROM greatest(length(p_key) - 7, 1) FOR 8), 'hex'))::bit(64)::bigint);
    SELECT b.until INTO v_until FROM __SCHEMA__.bans b
     WHERE b.key = p_key AND b.until > v_now;
    IF v_until IS NOT NULL THEN
        -- Banned: refused, counters untouched, until the ban ends.
        allowed := false;
        "limit" := p_limits[1];
        remaining := 0;
        reset := v_until - v_now;
        retry := reset;
        banned := 1;
        RETURN;
    END IF;
    FOR i IN 1..rules LOOP
        -- Each algorithm's function called directly (no dispatching layer:
        -- every nested call costs a statement).
        IF p_algorithm = 'fixed' THEN
            r := __SCHEMA__.fixed_decide(
                p_key, i::smallint, p_limits[i], p_windows[i], p_bursts[i], p_mode,
                v_cost, v_now);
        ELSIF p_algorithm = 'sliding' THEN
            r := __SCHEMA__.sliding_decide(
                p_key, i::smallint, p_limits[i], p_windows[i], p_bursts[i], p_mode,
                v_cost, v_now);
        ELSIF p_algorithm = 'sliding_log' THEN
            r := __SCHEMA__.sliding_log_decide(
                p_key, i::smallint, p_limits[i], p_windows[i], p_bursts[i], p_mode,
                v_cost, v_now);
        ELSIF p_algorithm IN ('gcra', 'token_bucket') THEN
            r := __SCHEMA__.gcra_decide(
                p_key, i::smallint, p_limits[i], p_windows[i], p_bursts[i], p_mode,
                v_cost, v_now);
        ELSE
            RAISE EXCEPTION 'unknown algorithm %', p_algorithm;
        END IF;
        everyone := everyone AND r.allowed;
        IF i = 1 THEN
            best := r;
        ELSIF __SCHEMA__.worse(r, best) THEN
            best := r;
            worst := i;
        END IF;
        IF rules > 1 THEN
            answers[i] := r;
        END IF;
    END LOOP;
    r := best;
    allowed := r.allowed;
    "limit" := p_limits[worst];
    remaining := r.remaining;
    reset := r.reset;
    retry := r.retry;
    banned := 0;
    IF everyone THEN
        IF p_mode = 'hit' THEN
            FOR i IN 1..rules LOOP
                IF rules > 1 THEN
                    r := answers[i];
                END IF;
                INSERT INTO __SCHEMA__.state AS s (key, rule, a, b, c, log, expires_at)
                VALUES (p_key, i::smallint, r.a, r.b, r.c, r.log, r.expires)
                ON CONFLICT (key, rule) DO UPDATE
                   SET a = excluded.a, b = excluded.b, c = excluded.c,
                       log = excluded.log, expires_at = excluded.expires_at;
            END LOOP;
        END IF;
    ELSIF p_mode = 'hit' AND p_ban[1] > 0
          AND __SCHEMA__.refused(p_key, p_ban[1], p_ban[2], p_ban[3], v_now) THEN
        -- This refusal began a ban: the next admission waits for it.
        banned := 2;
        retry := greatest(retry, p_ban[3]);
        reset := greatest(reset, p_ban[3]);
    END IF;
END $$;


-- Bans p_key for p_length from now, whatever its counts (replacing a ban).
CREATE OR REPLACE FUNCTION __SCHEMA__.ban(p_key bytea, p_length bigint, p_now bigint)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_now bigint := __SCHEMA__.now_us(p_now);
BEGIN
    PERFORM __SCHEMA__.put_ban(p_key, v_now + p_length, '{}', v_now + p_length);
END $$;

-- Lifts p_key's ban and forgets its refusals; whether it was banned.
CREATE OR REPLACE FUNCTION __SCHEMA__.unban(p_key bytea, p_now bigint)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    v_until bigint;
BEGIN
    DELETE FROM __SCHEMA__.bans b WHERE b.key = p_key RETURNING b.until INTO v_until;
    RETURN coalesce(v_until > __SCHEMA__.now_us(p_now), false);
END $$;

-- How long p_key stays banned (µs), or NULL.
CREATE OR REPLACE FUNCTION __SCHEMA__.banned_for(p_key bytea, p_now bigint)
RETURNS bigint LANGUAGE sql STABLE AS $$
    SELECT b.until - __SCHEMA__.now_us(p_now) FROM __SCHEMA__.bans b
     WHERE b.key = p_key AND b.until > __SCHEMA__.now_us(p_now)
$$;

-- Drops p_key's state, ban and refusals; whether it had live state.
CREATE OR REPLACE FUNCTION __SCHEMA__.reset(p_key bytea, p_now bigint)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    v_now bigint := __SCHEMA__.now_us(p_now);
    live boolean;
BEGIN
    DELETE FROM __SCHEMA__.bans b WHERE b.key = p_key;
    WITH gone AS (
        DELETE FROM __SCHEMA__.state s WHERE s.key = p_key RETURNING s.expires_at
    )
    SELECT coalesce(bool_or(expires_at > v_now), false) INTO live FROM gone;
    RETURN live;
END $$;

-- Deletes up to p_batch expired rows of each table; how many. Rows a
-- decision holds are skipped, not waited for (the next sweep takes them): a
-- sweep never waits on a decision, so it cannot deadlock with a compound
-- decision that locks its rules' rows in another order. (A decision that
-- meets a row the sweep holds waits for the sweep's commit.)
CREATE OR REPLACE FUNCTION __SCHEMA__.sweep(p_batch integer, p_now bigint)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_now bigint := __SCHEMA__.now_us(p_now);
    n bigint;
    m bigint;
BEGIN
    DELETE FROM __SCHEMA__.state WHERE ctid IN (
        SELECT ctid FROM __SCHEMA__.state WHERE expires_at <= v_now LIMIT p_batch
        FOR UPDATE SKIP LOCKED);
    GET DIAGNOSTICS n = ROW_COUNT;
    DELETE FROM __SCHEMA__.bans WHERE ctid IN (
        SELECT ctid FROM __SCHEMA__.bans WHERE expires_at <= v_now LIMIT p_batch
        FOR UPDATE SKIP LOCKED);
    GET DIAGNOSTICS m = ROW_COUNT;
    RETURN n + m;
END $$;
