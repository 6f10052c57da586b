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

/// A positive integer argument of at most `max`. `bool` is refused even
/// though it is an `int` subclass: `RateLimiter(True, 60)` is a bug, not a
/// limit of 1. A value out of range gets a `ValueError` quoting the bound.
pub fn positive_int(obj: &Bound<'_, PyAny>, name: &str, max: u64) -> PyResult<u64> {
    match int_value(obj, name)? {
        Some(v) if v <= max => Ok(v),
        Some(v) => Err(PyValueError::new_err(format!(
            "{name} must be at most {max}, got {v}"
        ))),
        None => Err(PyValueError::new_err(format!(
            "{name} must be at most {max}, got a larger number"
        ))),
    }
}

/// A positive integer argument: Some(value), or None when it is beyond
/// `u64` (the caller says which bound applies).
pub fn int_value(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<Option<u64>> {
    if obj.is_instance_of::<PyBool>() || !obj.is_instance_of::<PyInt>() {
        return Err(PyTypeError::new_err(format!(
            "{name} must be an int, not {}",
            type_name(obj)
        )));
    }
    match obj.extract::<u64>() {
        Ok(0) => Err(PyValueError::new_err(format!(
            "{name} must be a positive integer, got 0"
        ))),
        Ok(v) => Ok(Some(v)),
        Err(_) if obj.lt(0)? => Err(PyValueError::new_err(match obj.extract::<i64>() {
            Ok(v) => format!("{name} must be a positive integer, got {v}"),
            // Say which side without formatting a huge number.
            Err(_) => format!("{name} must be a positive integer, got a negative number"),
        })),
        Err(_) => Ok(None),
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
/// with any other key. Both read the string's own data through the C API:
/// never a method a `str` subclass could override (an `encode()` that
/// returned another key's bytes would share that key's counter).
pub fn key_bytes<'a>(key: &'a Bound<'_, PyAny>) -> PyResult<Cow<'a, [u8]>> {
    let Ok(text) = key.cast::<PyString>() else {
        return Err(PyTypeError::new_err(format!(
            "key must be str, not {}",
            type_name(key)
        )));
    };
    match text.to_str() {
        Ok(s) => Ok(Cow::Borrowed(s.as_bytes())),
        Err(_) => surrogate_bytes(text),
    }
}

#[cold]
fn surrogate_bytes<'a>(text: &Bound<'_, PyString>) -> PyResult<Cow<'a, [u8]>> {
    let py = text.py();
    // SAFETY: `text` is a valid str for the call; the codec and error
    // handler names are NUL-terminated; the result is a new reference (or
    // NULL with an exception set), owned by the Bound at once.
    let encoded = unsafe {
        let raw = pyo3::ffi::PyUnicode_AsEncodedString(
            text.as_ptr(),
            c"utf-8".as_ptr(),
            c"surrogatepass".as_ptr(),
        );
        Bound::from_owned_ptr_or_err(py, raw)?
    };
    Ok(Cow::Owned(encoded.cast::<PyBytes>()?.as_bytes().to_vec()))
}

/// The `cost` argument as the caller passed it: omitted (the fast, common
/// case: 1), or whatever was given, `None` included, which
/// [`PyRateLimiter`](super::limiter::PyRateLimiter) refuses.
///
/// `Option<&Bound>` cannot tell an explicit `None` from an omitted
/// argument; this extracts every object as given.
pub enum Cost<'a, 'py> {
    /// Not passed.
    Omitted,
    /// Passed, as is.
    Given(Borrowed<'a, 'py, PyAny>),
}

impl<'a, 'py> FromPyObject<'a, 'py> for Cost<'a, 'py> {
    type Error = PyErr;

    #[inline]
    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        Ok(Cost::Given(obj))
    }
}
