//! `Decision`: one hit's outcome as a small frozen object, and the seed's
//! `check()` dict; both are made from a core decision here and nowhere else.

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};

use crate::algorithm::Decision;
use crate::clock::NANOS_PER_SEC;
use crate::store::Outcome;

fn seconds(nanos: u64) -> f64 {
    nanos as f64 / NANOS_PER_SEC as f64
}

/// The outcome of one hit: exact times as float seconds, and the whole
/// seconds (rounded up) that `check()` and HTTP headers report.
#[pyclass(frozen, module = "rust_py_rate_limit._native", name = "Decision")]
pub struct PyDecision {
    inner: Decision,
    banned: bool,
    denied: bool,
    shadow_refused: bool,
}

impl PyDecision {
    pub fn new(inner: Decision) -> Self {
        Self::from_outcome(Outcome::from(inner))
    }

    pub fn from_outcome(o: Outcome) -> Self {
        Self {
            inner: o.decision,
            banned: o.banned,
            denied: o.denied,
            shadow_refused: o.shadow_refused,
        }
    }

    /// The decision and its flags.
    pub fn outcome(&self) -> Outcome {
        Outcome {
            decision: self.inner,
            banned: self.banned,
            denied: self.denied,
            shadow_refused: self.shadow_refused,
        }
    }
}

#[pymethods]
impl PyDecision {
    /// Whether the hit was admitted (and counted).
    #[getter]
    fn allowed(&self) -> bool {
        self.inner.allowed
    }

    /// Refused because the key is banned (or this refusal began its ban).
    #[getter]
    fn banned(&self) -> bool {
        self.banned
    }

    /// Refused because the key is on the deny list.
    #[getter]
    fn denied(&self) -> bool {
        self.denied
    }

    /// Would have been refused: admitted by shadow mode instead.
    #[getter]
    fn shadow_refused(&self) -> bool {
        self.shadow_refused
    }

    /// The limit of the (most restrictive) rule that decided.
    #[getter]
    fn limit(&self) -> u64 {
        self.inner.limit
    }

    /// Units that can still be spent now.
    #[getter]
    fn remaining(&self) -> u64 {
        self.inner.remaining
    }

    /// Exact seconds until the key's allowance is full again.
    #[getter]
    fn reset_after(&self) -> f64 {
        seconds(self.inner.reset_after)
    }

    /// Exact seconds until a hit of the same cost can be admitted (0 when
    /// allowed).
    #[getter]
    fn retry_after(&self) -> f64 {
        seconds(self.inner.retry_after)
    }

    /// `reset_after` in whole seconds, rounded up.
    #[getter]
    fn reset_after_seconds(&self) -> u64 {
        self.inner.reset_after_secs()
    }

    /// `retry_after` in whole seconds, rounded up: never 0 while blocked.
    #[getter]
    fn retry_after_seconds(&self) -> u64 {
        self.inner.retry_after_secs()
    }

    /// `reset_after` in integer nanoseconds.
    #[getter]
    fn reset_after_ns(&self) -> u64 {
        self.inner.reset_after
    }

    /// `retry_after` in integer nanoseconds.
    #[getter]
    fn retry_after_ns(&self) -> u64 {
        self.inner.retry_after
    }

    /// The legacy rate-limit headers of this decision (`X-RateLimit-Limit`,
    /// `-Remaining`, `-Reset`, and `Retry-After` when refused) as a list of
    /// `(name, value)` pairs: `str` pairs, or with `raw` the lower-case
    /// bytes pairs ASGI wants. The request policy's hot path; see
    /// `rust_py_rate_limit._policy.render`.
    #[pyo3(signature = (raw = false))]
    fn _legacy_headers<'py>(&self, py: Python<'py>, raw: bool) -> PyResult<Bound<'py, PyList>> {
        let d = &self.inner;
        let values = [
            d.limit,
            d.remaining,
            d.reset_after_secs(),
            d.retry_after_secs(),
        ];
        let count = if d.allowed { 3 } else { 4 };
        let names = header_names(py, raw);
        let mut buf = itoa::Buffer::new();
        let mut pairs = Vec::with_capacity(count);
        for (name, value) in names.iter().zip(values).take(count) {
            let text = buf.format(value);
            let value: Bound<'py, PyAny> = if raw {
                PyBytes::new(py, text.as_bytes()).into_any()
            } else {
                PyString::new(py, text).into_any()
            };
            pairs.push(PyTuple::new(py, [name.bind(py).clone(), value])?);
        }
        PyList::new(py, pairs)
    }

    /// The same five keys as `check()` returns.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        check_dict(py, &self.inner)
    }

    fn __bool__(&self) -> bool {
        self.inner.allowed
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<PyDecision>()
            .is_ok_and(|o| o.get().outcome() == self.outcome())
    }

    fn __repr__(&self) -> String {
        let d = &self.inner;
        let mut text = format!(
            "Decision(allowed={}, limit={}, remaining={}, reset_after={:?}, retry_after={:?}",
            if d.allowed { "True" } else { "False" },
            d.limit,
            d.remaining,
            seconds(d.reset_after),
            seconds(d.retry_after)
        );
        for (flag, name) in [
            (self.banned, "banned"),
            (self.denied, "denied"),
            (self.shadow_refused, "shadow_refused"),
        ] {
            if flag {
                text.push_str(", ");
                text.push_str(name);
                text.push_str("=True");
            }
        }
        text.push(')');
        text
    }
}

const HEADER_NAMES: [&str; 4] = [
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
    "Retry-After",
];

/// The legacy header names, made once: as `str`, or as ASGI's lower-case
/// bytes.
fn header_names(py: Python<'_>, raw: bool) -> &[Py<PyAny>; 4] {
    static TEXT: PyOnceLock<[Py<PyAny>; 4]> = PyOnceLock::new();
    static RAW: PyOnceLock<[Py<PyAny>; 4]> = PyOnceLock::new();
    if raw {
        RAW.get_or_init(py, || {
            HEADER_NAMES.map(|n| {
                PyBytes::new(py, n.to_ascii_lowercase().as_bytes())
                    .into_any()
                    .unbind()
            })
        })
    } else {
        TEXT.get_or_init(py, || {
            HEADER_NAMES.map(|n| PyString::new(py, n).into_any().unbind())
        })
    }
}

/// The seed's `check()` payload.
pub fn check_dict<'py>(py: Python<'py>, d: &Decision) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item(intern!(py, "allowed"), d.allowed)?;
    dict.set_item(intern!(py, "limit"), d.limit)?;
    dict.set_item(intern!(py, "remaining"), d.remaining)?;
    dict.set_item(intern!(py, "reset_after_seconds"), d.reset_after_secs())?;
    dict.set_item(intern!(py, "retry_after_seconds"), d.retry_after_secs())?;
    Ok(dict)
}
