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

create_exception!(
    rust_py_rate_limit._native,
    StorageError,
    PyException,
    "The storage backend (Redis) failed and the limiter's on_error is 'raise'."
);
