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

#[cfg(test)]
mod tests {
    use super::*;

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
