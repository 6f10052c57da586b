-- Sliding log: log = the admitted hits as pairs (time, cost), oldest first;
-- b = the total cost of the pairs. Pairs at least a window old are dead;
-- they are dropped only when a hit is admitted (a refusal writes nothing).
CREATE OR REPLACE FUNCTION __SCHEMA__.sliding_log_decide(
    p_key bytea, p_rule smallint, p_limit bigint, p_window bigint, p_burst bigint,
    p_mode text, p_cost bigint, p_now bigint,
    OUT allowed boolean, OUT remaining bigint, OUT reset bigint, OUT retry bigint,
    OUT a bigint, OUT b bigint, OUT c bigint, OUT log bigint[], OUT expires bigint
) LANGUAGE plpgsql AS $$
DECLARE
    v_log bigint[];
    edge bigint := p_now - p_window; -- a pair is live while its time is after this
    n integer;
    dead integer := 0;
    total bigint := 0;
    need bigint;
    i integer;
BEGIN
    SELECT s.log INTO v_log FROM __SCHEMA__.state s
     WHERE s.key = p_key AND s.rule = p_rule AND s.expires_at > p_now;
    n := coalesce(array_length(v_log, 1), 0) / 2;
    FOR i IN 1..n LOOP
        IF v_log[2 * i - 1] <= edge THEN
            dead := i;
        ELSE
            total := total + v_log[2 * i];
        END IF;
    END LOOP;
    remaining := p_limit - total;
    -- When the newest pair leaves the window, if any pair is live.
    reset := CASE WHEN n = dead THEN 0 ELSE v_log[2 * n - 1] - edge END;
    IF p_cost <= remaining THEN
        allowed := true;
        retry := 0;
        IF p_mode = 'peek' THEN
            RETURN;
        END IF;
        remaining := remaining - p_cost;
        reset := p_window;
        a := 0;
        b := total + p_cost;
        c := 0;
        log := coalesce(v_log[2 * dead + 1:], '{}') || ARRAY[p_now, p_cost];
        expires := __SCHEMA__.expiry(p_now, p_window, p_window);
        RETURN;
    END IF;
    -- Wait for the oldest live pairs to leave until the cost fits.
    allowed := false;
    need := p_cost - remaining;
    retry := 0;
    FOR i IN dead + 1..n LOOP
        retry := v_log[2 * i - 1] - edge;
        EXIT WHEN v_log[2 * i] >= need;
        need := need - v_log[2 * i];
    END LOOP;
END $$;
