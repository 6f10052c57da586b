//! The one mapping from core errors to Python exceptions.

use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyValueError};
use pyo3::PyErr;

use crate::Error;

impl From<Error> for PyErr {
    fn from(err: Error) -> PyErr {
        match err {
            Error::InvalidArgument { .. } | Error::CostExceedsCapacity { .. } => {
                PyValueError::new_err(err.to_string())
            }
        }
    }
}

// Named after the package that exports it, so tracebacks and `repr` show
// `rust_py_rate_limit.StorageError`, the name users import.
create_exception!(
    rust_py_rate_limit,
    StorageError,
    PyException,
    "The storage backend (Redis) failed and the limiter's on_error is 'raise'."
);
