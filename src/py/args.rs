//! Argument conversion: strict types, and messages that name the argument.

use std::borrow::Cow;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyFloat, PyInt, PyString};

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".to_owned())
}

/// A positive integer argument. `bool` is refused even though it is an
/// `int` subclass: `RateLimiter(True, 60)` is a bug, not a limit of 1.
pub fn positive_int(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<u64> {
    if obj.is_instance_of::<PyBool>() || !obj.is_instance_of::<PyInt>() {
        return Err(PyTypeError::new_err(format!(
            "{name} must be an int, not {}",
            type_name(obj)
        )));
    }
    match obj.extract::<i64>() {
        Ok(v) if v > 0 => Ok(v as u64),
        Ok(v) => Err(PyValueError::new_err(format!(
            "{name} must be a positive integer, got {v}"
        ))),
        // Beyond i64: say which side without formatting a huge number.
        Err(_) if obj.lt(0)? => Err(PyValueError::new_err(format!(
            "{name} must be a positive integer, got a negative number"
        ))),
        Err(_) => Err(PyValueError::new_err(format!(
            "{name} is too large (at most {} is accepted)",
            i64::MAX
        ))),
    }
}

/// A non-negative, finite number of seconds (int or float), as nanoseconds.
pub fn seconds_to_nanos(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<u64> {
    let too_large = || PyValueError::new_err(format!("{name} is too large"));
    if obj.is_instance_of::<PyBool>() {
        return Err(PyTypeError::new_err(format!(
            "{name} must be a number of seconds, not bool"
        )));
    }
    if obj.is_instance_of::<PyInt>() {
        let secs = match obj.extract::<i64>() {
            Ok(v) => v,
            Err(_) if obj.lt(0)? => i64::MIN,
            Err(_) => return Err(too_large()),
        };
        if secs < 0 {
            return Err(PyValueError::new_err(format!(
                "{name} must not be negative"
            )));
        }
        return (secs as u64)
            .checked_mul(crate::clock::NANOS_PER_SEC)
            .ok_or_else(too_large);
    }
    if obj.is_instance_of::<PyFloat>() {
        let secs: f64 = obj.extract()?;
        if !secs.is_finite() {
            return Err(PyValueError::new_err(format!(
                "{name} must be finite, got {secs}"
            )));
        }
        if secs < 0.0 {
            return Err(PyValueError::new_err(format!(
                "{name} must not be negative, got {secs}"
            )));
        }
        let nanos = (secs * 1e9).round();
        // 2^64 is exactly representable; anything at or above it overflows.
        if nanos >= 18_446_744_073_709_551_616.0 {
            return Err(too_large());
        }
        return Ok(nanos as u64);
    }
    Err(PyTypeError::new_err(format!(
        "{name} must be an int or float number of seconds, not {}",
        type_name(obj)
    )))
}

/// A key's bytes: the UTF-8 of a `str`, borrowed from the string's cache.
///
/// A `str` holding lone surrogates has no UTF-8 form; it is encoded with
/// `surrogatepass`, whose bytes are never valid UTF-8, so it cannot collide
/// with any other key.
pub fn key_bytes<'a>(key: &'a Bound<'_, PyAny>) -> PyResult<Cow<'a, [u8]>> {
    let Ok(text) = key.cast::<PyString>() else {
        return Err(PyTypeError::new_err(format!(
            "key must be str, not {}",
            type_name(key)
        )));
    };
    match text.to_str() {
        Ok(s) => Ok(Cow::Borrowed(s.as_bytes())),
        Err(_) => {
            let encoded = text.call_method1("encode", ("utf-8", "surrogatepass"))?;
            Ok(Cow::Owned(encoded.cast::<PyBytes>()?.as_bytes().to_vec()))
        }
    }
}
