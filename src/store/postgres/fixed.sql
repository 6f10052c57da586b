-- Fixed window: a = window start, b = spent.
--
-- Every algorithm defines <name>_decide and <name>_commit (see decide.sql).
-- _decide(key, rule, limit, window, burst, mode, cost, now) -> allowed,
--   remaining, reset, retry, and when admitted w1..w4, what _commit needs.
--   A peek reports remaining and reset as they stand, before the hit.
-- _commit(key, rule, limit, window, burst, cost, now, w1..w4) writes an
--   admitted hit.
CREATE OR REPLACE FUNCTION __SCHEMA__.fixed_decide(
    p_key bytea, p_rule smallint, p_limit bigint, p_window bigint, p_burst bigint,
    p_mode text, p_cost bigint, p_now bigint,
    OUT allowed boolean, OUT remaining bigint, OUT reset bigint, OUT retry bigint,
    OUT w1 bigint, OUT w2 bigint, OUT w3 bigint, OUT w4 bigint
) LANGUAGE plpgsql AS $$
DECLARE
    v_start bigint;
    v_count bigint;
BEGIN
    SELECT s.a, s.b INTO v_start, v_count FROM __SCHEMA__.state s
     WHERE s.key = p_key AND s.rule = p_rule AND s.expires_at > p_now;
    IF v_start IS NULL OR p_now - v_start >= p_window THEN
        v_start := p_now;
        v_count := 0;
    END IF;
    reset := least(v_start + p_window - p_now, p_window);
    IF v_count + p_cost <= p_limit THEN
        allowed := true;
        retry := 0;
        IF p_mode = 'peek' THEN
            remaining := p_limit - v_count;
            RETURN;
        END IF;
        remaining := p_limit - v_count - p_cost;
        w1 := v_start;
        w2 := v_count + p_cost;
        w3 := reset;
        RETURN;
    END IF;
    allowed := false;
    remaining := p_limit - v_count;
    retry := reset;
END $$;

CREATE OR REPLACE FUNCTION __SCHEMA__.fixed_commit(
    p_key bytea, p_rule smallint, p_limit bigint, p_window bigint, p_burst bigint,
    p_cost bigint, p_now bigint, w1 bigint, w2 bigint, w3 bigint, w4 bigint
) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM __SCHEMA__.put(p_key, p_rule, w1, w2, 0, '{}',
                          __SCHEMA__.expiry(p_now, w3, p_window));
END $$;
