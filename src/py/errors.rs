//! The one mapping from core errors to Python exceptions.

use pyo3::exceptions::PyValueError;
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
