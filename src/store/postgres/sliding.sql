-- Sliding window counter: a = current window start, b = previous window's
-- count, c = current window's count.

-- When the window's spent units (c, of this window, and prev, of the last)
-- have all left, e into the current window.
CREATE OR REPLACE FUNCTION __SCHEMA__.sliding_reset(c bigint, prev bigint, w bigint, e bigint)
RETURNS bigint LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN c > 0 THEN 2 * w - e WHEN prev > 0 THEN w - e ELSE 0 END
$$;

-- How far into its window a count p must fall to leave room units.
CREATE OR REPLACE FUNCTION __SCHEMA__.sliding_admit_at(p bigint, room bigint, w bigint)
RETURNS bigint LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN p = 0 THEN 0 ELSE w - __SCHEMA__.floor_div(room * w, p) END
$$;

CREATE OR REPLACE FUNCTION __SCHEMA__.sliding_decide(
    p_key bytea, p_rule smallint, p_limit bigint, p_window bigint, p_burst bigint,
    p_mode text, p_cost bigint, p_now bigint,
    OUT allowed boolean, OUT remaining bigint, OUT reset bigint, OUT retry bigint,
    OUT a bigint, OUT b bigint, OUT c bigint, OUT log bigint[], OUT expires bigint
) LANGUAGE plpgsql AS $$
DECLARE
    v_start bigint;
    v_prev bigint := 0;
    v_curr bigint := 0;
    k bigint;
    e bigint;
    free bigint;
BEGIN
    SELECT s.a, s.b, s.c INTO v_start, v_prev, v_curr FROM __SCHEMA__.state s
     WHERE s.key = p_key AND s.rule = p_rule AND s.expires_at > p_now;
    IF v_start IS NULL THEN
        v_start := p_now;
        v_prev := 0;
        v_curr := 0;
    ELSE
        k := CASE WHEN p_now < v_start THEN 0
                  ELSE __SCHEMA__.floor_div(p_now - v_start, p_window) END;
        IF k = 1 THEN
            v_start := v_start + p_window;
            v_prev := v_curr;
            v_curr := 0;
        ELSIF k >= 2 THEN
            v_start := p_now;
            v_prev := 0;
            v_curr := 0;
        END IF;
    END IF;
    e := greatest(p_now - v_start, 0);
    -- free = floor((limit*W - prev*(W-e)) / W) - curr
    free := greatest(
        __SCHEMA__.floor_div(p_limit * p_window - v_prev * (p_window - e), p_window) - v_curr,
        0);
    IF p_cost <= free THEN
        allowed := true;
        retry := 0;
        IF p_mode = 'peek' THEN
            remaining := free;
            reset := __SCHEMA__.sliding_reset(v_curr, v_prev, p_window, e);
            RETURN;
        END IF;
        remaining := free - p_cost;
        reset := __SCHEMA__.sliding_reset(v_curr + p_cost, v_prev, p_window, e);
        a := v_start;
        b := v_prev;
        c := v_curr + p_cost;
        log := '{}';
        expires := __SCHEMA__.expiry(p_now, 2 * p_window - e, p_window);
        RETURN;
    END IF;
    allowed := false;
    remaining := free;
    reset := __SCHEMA__.sliding_reset(v_curr, v_prev, p_window, e);
    IF v_curr + p_cost <= p_limit THEN
        retry := __SCHEMA__.sliding_admit_at(v_prev, p_limit - v_curr - p_cost, p_window) - e;
    ELSE
        retry := (p_window - e) + __SCHEMA__.sliding_admit_at(v_curr, p_limit - p_cost, p_window);
    END IF;
END $$;
