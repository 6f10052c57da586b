-- Fixed window: a = window start, b = spent.
--
-- Every algorithm defines <name>_decide (see decide.sql):
-- _decide(key, rule, limit, window, burst, mode, cost, now) -> allowed,
--   remaining, reset, retry, and when a hit is admitted the rule's row as
--   it must be written (a, b, c, log, expires); decide() writes it only if
--   every rule admits. A peek reports remaining and reset as they stand,
--   before the hit, and no row.
CREATE OR REPLACE FUNCTION __SCHEMA__.fixed_decide(
    p_key bytea, p_rule smallint, p_limit bigint, p_window bigint, p_burst bigint,
    p_mode text, p_cost bigint, p_now bigint,
    OUT allowed boolean, OUT remaining bigint, OUT reset bigint, OUT retry bigint,
    OUT a bigint, OUT b bigint, OUT c bigint, OUT log bigint[], OUT expires bigint
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
        a := v_start;
        b := v_count + p_cost;
        c := 0;
        log := '{}';
        expires := __SCHEMA__.expiry(p_now, reset, p_window);
        RETURN;
    END IF;
    allowed := false;
    remaining := p_limit - v_count;
    retry := reset;
END $$;
