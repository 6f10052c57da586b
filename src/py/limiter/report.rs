//! What a limiter reports about itself: its activity counters and its repr.

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::PyRateLimiter;

impl PyRateLimiter {
    /// The dict of `stats()`.
    pub(super) fn stats_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let mut s = self.inner.stats();
        let (mut errors, mut breaker) = (0, "closed");
        if let Some(remote) = &self.remote {
            (s.allowed, s.blocked, errors) = remote.counters();
            breaker = remote.breaker_state().name();
        }
        let dict = PyDict::new(py);
        dict.set_item(intern!(py, "allowed"), s.allowed)?;
        dict.set_item(intern!(py, "blocked"), s.blocked)?;
        dict.set_item(intern!(py, "total_checks"), s.total_checks())?;
        dict.set_item(intern!(py, "active_keys"), s.active_keys)?;
        dict.set_item(intern!(py, "rejected_full"), s.rejected_full)?;
        dict.set_item(intern!(py, "expired_removed"), s.expired_removed)?;
        dict.set_item(intern!(py, "cleanup_runs"), s.cleanup_runs)?;
        dict.set_item(intern!(py, "storage_errors"), errors)?;
        dict.set_item(intern!(py, "breaker"), breaker)?;
        Ok(dict)
    }

    /// The text of `repr()`.
    pub(super) fn repr_text(&self) -> String {
        let limits = if self.spec.quotas.len() == 1 {
            format!(
                "limit={}, window_seconds={}",
                self.max_requests(),
                self.window_seconds()
            )
        } else {
            let parts: Vec<String> = self
                .limits()
                .iter()
                .map(|(l, w)| format!("{l}/{w}s"))
                .collect();
            format!("rate='{}'", parts.join(";"))
        };
        let burst = match (self.spec.burst, self.spec.kind.has_burst()) {
            (Some(b), true) => format!(", burst={b}"),
            _ => String::new(),
        };
        let storage = match &self.remote {
            Some(remote) => format!(", storage='{}'", remote.url_shown()),
            None => String::new(),
        };
        format!(
            "RateLimiter({limits}, algorithm='{}'{burst}{storage})",
            self.algorithm()
        )
    }
}
