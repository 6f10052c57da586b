//! The core's one error type. The binding maps each variant to one Python
//! exception class in a single `From` impl (`src/py/errors.rs`).

/// Why a call was refused. Being rate limited is not an error: it is a
/// [`Decision`](crate::Decision) with `allowed == false`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// An argument is out of range; `name` is the argument as the caller
    /// spells it.
    #[error("{name} {reason}")]
    InvalidArgument {
        /// The argument's name, e.g. `"limit"`.
        name: &'static str,
        /// What is wrong with it, phrased to follow the name.
        reason: String,
    },
    /// A hit asked for more than the limit can ever admit at once.
    #[error("cost ({cost}) exceeds the capacity ({capacity}): such a hit could never be admitted")]
    CostExceedsCapacity {
        /// The requested cost.
        cost: u64,
        /// The largest cost the limit can ever admit.
        capacity: u64,
    },
}

impl Error {
    /// Shorthand for [`Error::InvalidArgument`].
    pub fn invalid(name: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidArgument {
            name,
            reason: reason.into(),
        }
    }
}

/// Result alias for the core.
pub type Result<T, E = Error> = std::result::Result<T, E>;
