//! Quotas: how many units a key may spend per window, validated once so the
//! algorithms' arithmetic can never overflow.

use crate::clock::{Nanos, NANOS_PER_SEC};
use crate::error::{Error, Result};

/// `limit` units per `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Quota {
    limit: u64,
    window: Nanos,
}

impl Quota {
    /// The largest limit accepted: 2^53 - 1, so every count is exact in a
    /// double (Redis Lua numbers) and `count + cost` never overflows.
    pub const MAX_LIMIT: u64 = (1 << 53) - 1;
    /// The longest window accepted, in seconds (about 31.7 years): windows in
    /// nanoseconds then stay far below `u64::MAX`, and in microseconds below
    /// 2^53.
    pub const MAX_WINDOW_SECONDS: u64 = 1_000_000_000;

    /// A quota of `limit` per `window` nanoseconds.
    pub fn new(limit: u64, window: Nanos) -> Result<Self> {
        if limit == 0 {
            return Err(Error::invalid("limit", "must be a positive integer, got 0"));
        }
        if limit > Self::MAX_LIMIT {
            return Err(Error::invalid(
                "limit",
                format!("must be at most {}, got {limit}", Self::MAX_LIMIT),
            ));
        }
        if window == 0 {
            return Err(Error::invalid("window_seconds", "must be positive, got 0"));
        }
        if window > Self::MAX_WINDOW_SECONDS * NANOS_PER_SEC {
            return Err(Error::invalid(
                "window_seconds",
                format!(
                    "must be at most {} seconds, got {}",
                    Self::MAX_WINDOW_SECONDS,
                    window.div_ceil(NANOS_PER_SEC)
                ),
            ));
        }
        Ok(Self { limit, window })
    }

    /// A quota of `limit` per `window_seconds` whole seconds.
    pub fn per_seconds(limit: u64, window_seconds: u64) -> Result<Self> {
        if window_seconds > Self::MAX_WINDOW_SECONDS {
            return Err(Error::invalid(
                "window_seconds",
                format!(
                    "must be at most {}, got {window_seconds}",
                    Self::MAX_WINDOW_SECONDS
                ),
            ));
        }
        Self::new(limit, window_seconds * NANOS_PER_SEC)
    }

    /// Units admitted per window.
    #[inline]
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// The window length in nanoseconds.
    #[inline]
    pub fn window(&self) -> Nanos {
        self.window
    }
}

/// Parses a rate string into its limits: `"100/minute"`, `"100 per minute"`,
/// `"10/30s"`, `"5/5m"`, `"1000 per 2 hours"`; several joined by `;` make a
/// compound limit, e.g. `"10/second;1000/hour"`.
pub fn parse_rates(text: &str) -> Result<Vec<Quota>> {
    let parts: Vec<&str> = text.split(';').map(str::trim).collect();
    if parts.iter().all(|p| p.is_empty()) {
        return Err(Error::invalid("rate", "is empty"));
    }
    parts.into_iter().map(parse_rate).collect()
}

/// Parses one `N/unit` rate.
pub fn parse_rate(part: &str) -> Result<Quota> {
    let bad = |why: &str| Error::invalid("rate", format!("part {part:?} {why}"));
    let lower = part.trim().to_ascii_lowercase();
    let (count, period) = if let Some((c, p)) = lower.split_once('/') {
        (c, p)
    } else if let Some((c, p)) = lower.split_once(" per ") {
        (c, p)
    } else {
        return Err(bad(
            "is not of the form N/period, e.g. \"100/minute\" or \"10/30s\"",
        ));
    };
    let limit = parse_number(count.trim()).ok_or_else(|| {
        bad(&format!(
            "has a count {:?} that is not a whole number",
            count.trim()
        ))
    })?;
    let period = period.trim();
    let digits = period.chars().take_while(char::is_ascii_digit).count();
    let (multiple, unit) = period.split_at(digits);
    let multiple = if multiple.is_empty() {
        1
    } else {
        parse_number(multiple).ok_or_else(|| bad("has a period count that is too large"))?
    };
    let unit_secs = match unit.trim() {
        "s" | "sec" | "secs" | "second" | "seconds" => 1,
        "m" | "min" | "mins" | "minute" | "minutes" => 60,
        "h" | "hr" | "hrs" | "hour" | "hours" => 3600,
        "d" | "day" | "days" => 86_400,
        other => {
            return Err(bad(&format!(
                "has an unknown period {other:?} (use second, minute, hour or day)"
            )))
        }
    };
    if multiple == 0 {
        return Err(bad("has a period of 0"));
    }
    let window_seconds = multiple
        .checked_mul(unit_secs)
        .ok_or_else(|| bad("has a period that is too long"))?;
    Quota::per_seconds(limit, window_seconds).map_err(|e| match e {
        Error::InvalidArgument { reason, .. } => bad(&format!("is out of range: {reason}")),
        other => other,
    })
}

fn parse_number(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        let q = |text: &str| {
            parse_rates(text)
                .unwrap()
                .iter()
                .map(|q| (q.limit(), q.window() / NANOS_PER_SEC))
                .collect::<Vec<_>>()
        };
        assert_eq!(q("100/minute"), [(100, 60)]);
        assert_eq!(q("100 per minute"), [(100, 60)]);
        assert_eq!(q("100 PER Minute"), [(100, 60)]);
        assert_eq!(q("10/30s"), [(10, 30)]);
        assert_eq!(q("5/5m"), [(5, 300)]);
        assert_eq!(q("1000 per 2 hours"), [(1000, 7200)]);
        assert_eq!(q("7/day"), [(7, 86_400)]);
        assert_eq!(q(" 10/second ; 1000/hour "), [(10, 1), (1000, 3600)]);
    }

    #[test]
    fn malformed_strings_name_the_bad_part() {
        for (text, needle) in [
            ("", "empty"),
            ("10", "\"10\""),
            ("ten/second", "\"ten\""),
            ("10/fortnight", "fortnight"),
            ("10/0s", "period of 0"),
            ("0/second", "0/second"),
            ("-1/second", "-1"),
            ("10/second;;", "\"\""),
            ("10/second;5/lightyear", "lightyear"),
            ("99999999999999999999/s", "whole number"),
            ("10/99999999999999999999s", "too large"),
            ("10/999999999999999d", "too long"),
        ] {
            let err = parse_rates(text).unwrap_err().to_string();
            assert!(err.starts_with("rate "), "{err}");
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }

    #[test]
    fn accepts_the_bounds() {
        assert!(Quota::per_seconds(1, 1).is_ok());
        assert!(Quota::per_seconds(Quota::MAX_LIMIT, Quota::MAX_WINDOW_SECONDS).is_ok());
    }

    #[test]
    fn rejects_zero_and_too_large_naming_the_argument() {
        let cases = [
            (Quota::per_seconds(0, 1), "limit"),
            (Quota::per_seconds(Quota::MAX_LIMIT + 1, 1), "limit"),
            (Quota::per_seconds(1, 0), "window_seconds"),
            (
                Quota::per_seconds(1, Quota::MAX_WINDOW_SECONDS + 1),
                "window_seconds",
            ),
            (Quota::per_seconds(1, u64::MAX), "window_seconds"),
        ];
        for (result, name) in cases {
            match result {
                Err(Error::InvalidArgument { name: got, .. }) => assert_eq!(got, name),
                other => panic!("expected an error naming {name}, got {other:?}"),
            }
        }
    }
}
