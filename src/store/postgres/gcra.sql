-- GCRA / token bucket: a = time of the last write, b = debt, where
-- debt = (TAT - a) * limit, the theoretical arrival time scaled by the limit
-- and kept relative to the write, so it stays below burst * window.
CREATE OR REPLACE FUNCTION __SCHEMA__.gcra_decide(
    p_key bytea, p_rule smallint, p_limit bigint, p_window bigint, p_burst bigint,
    p_mode text, p_cost bigint, p_now bigint,
    OUT allowed boolean, OUT remaining bigint, OUT reset bigint, OUT retry bigint,
    OUT a bigint, OUT b bigint, OUT c bigint, OUT log bigint[], OUT expires bigint
) LANGUAGE plpgsql AS $$
DECLARE
    v_at bigint;
    v_debt bigint;
    owed bigint := 0;
    elapsed bigint;
    tolerance bigint := p_burst * p_window;
    after bigint;
BEGIN
    SELECT s.a, s.b INTO v_at, v_debt FROM __SCHEMA__.state s
     WHERE s.key = p_key AND s.rule = p_rule AND s.expires_at > p_now;
    -- Debt now: what is left after (now - at) * limit has drained.
    IF v_at IS NOT NULL AND v_debt > 0 THEN
        elapsed := greatest(p_now - v_at, 0);
        IF elapsed < __SCHEMA__.ceil_div(v_debt, p_limit) THEN
            owed := v_debt - elapsed * p_limit;
        END IF;
    END IF;
    after := owed + p_cost * p_window;
    IF after <= tolerance AND p_mode <> 'peek' THEN
        allowed := true;
        remaining := __SCHEMA__.floor_div(tolerance - after, p_window);
        reset := __SCHEMA__.ceil_div(after, p_limit);
        retry := 0;
        a := p_now;
        b := after;
        c := 0;
        log := '{}';
        -- The state matters until the debt drains: a burst above the limit
        -- takes burst / limit windows, the span the lifetime is capped at.
        expires := __SCHEMA__.expiry(p_now, __SCHEMA__.ceil_div(after, p_limit),
            CASE WHEN p_burst > p_limit
                 THEN __SCHEMA__.ceil_div(p_burst * p_window, p_limit)
                 ELSE p_window END);
        RETURN;
    END IF;
    remaining := __SCHEMA__.floor_div(tolerance - owed, p_window);
    reset := __SCHEMA__.ceil_div(owed, p_limit);
    IF after <= tolerance THEN
        allowed := true;
        retry := 0;
        RETURN;
    END IF;
    allowed := false;
    retry := __SCHEMA__.ceil_div(after - tolerance, p_limit);
END $$;
