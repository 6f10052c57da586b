//! What a limiter reports about itself: its activity counters and its repr.

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use std::fmt::Write;
use std::sync::atomic::Ordering::Relaxed;

use super::PyRateLimiter;
use crate::metrics::LATENCY_BOUNDS_US;
use crate::store::remote::RemoteStore;
use crate::store::OnFull;

impl PyRateLimiter {
    /// The dict of `stats()`.
    pub(super) fn stats_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let mut s = self.inner.stats();
        let (mut errors, mut breaker, mut cache_hits) = (0, "closed", 0);
        if let Some(remote) = &self.remote {
            let tally = remote.health().tally();
            (s.allowed, s.blocked) = (tally.allowed, tally.blocked);
            errors = remote.health().errors();
            s.bans = remote.bans_begun();
            breaker = remote.health().breaker_state().name();
            cache_hits = remote.local_cache().0;
            if let RemoteStore::Postgres(pg) = remote {
                (s.cleanup_runs, s.expired_removed) = pg.sweeps();
            }
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
        dict.set_item(intern!(py, "bans"), s.bans)?;
        dict.set_item(intern!(py, "banned_keys"), s.banned_keys)?;
        dict.set_item(intern!(py, "denied"), self.guard.denied.load(Relaxed))?;
        let shadow_refused = self.guard.shadow_refused.load(Relaxed);
        dict.set_item(intern!(py, "shadow_refused"), shadow_refused)?;
        dict.set_item(intern!(py, "local_cache_hits"), cache_hits)?;
        dict.set_item(intern!(py, "events_dropped"), self.events.dropped())?;
        Ok(dict)
    }

    /// The dict of `metrics()`: every decision counted once, by what the
    /// caller got, and the store's health.
    pub(super) fn metrics_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let stats = self.stats_dict(py)?;
        let tally = match &self.remote {
            Some(remote) => remote.health().tally(),
            None => self.inner.tally(),
        };
        // Each a counter of its own: every result only grows.
        let guard = &self.guard;
        let decisions = PyDict::new(py);
        let admitted = tally.allowed + guard.allow_listed.load(Relaxed);
        decisions.set_item("admitted", admitted)?;
        decisions.set_item("refused", tally.limit_refused)?;
        decisions.set_item("banned", tally.ban_refused)?;
        decisions.set_item("denied", guard.denied.load(Relaxed))?;
        decisions.set_item("shadow", tally.shadowed)?;
        let dict = PyDict::new(py);
        dict.set_item("name", &self.name)?;
        dict.set_item("algorithm", self.algorithm())?;
        let storage = self.remote.as_ref().map_or("memory", RemoteStore::kind);
        dict.set_item("storage", storage)?;
        dict.set_item("decisions", decisions)?;
        dict.set_item("near_limit", tally.near_limit)?;
        for name in [
            "storage_errors",
            "breaker",
            "active_keys",
            "banned_keys",
            "bans",
            "rejected_full",
            "expired_removed",
            "cleanup_runs",
        ] {
            dict.set_item(name, stats.get_item(name)?)?;
        }
        let latency = match &self.remote {
            None => None,
            Some(remote) => {
                let snapshot = remote.health().latency();
                let bounds: Vec<f64> = LATENCY_BOUNDS_US
                    .iter()
                    .map(|&us| us as f64 / 1e6)
                    .collect();
                let latency = PyDict::new(py);
                latency.set_item("bounds", bounds)?;
                latency.set_item("counts", &snapshot.counts)?;
                latency.set_item("sum", snapshot.sum_ns as f64 / 1e9)?;
                latency.set_item("count", snapshot.count())?;
                Some(latency)
            }
        };
        dict.set_item("latency", latency)?;
        Ok(dict)
    }

    /// The text of `repr()`: 0.3.1's fields first, in its format (strings in
    /// double quotes; `max_keys` and `cleanup_interval` only when set, the
    /// interval as Rust prints a float: `5`, `0.5`), then the options 0.3.1
    /// did not have, when not at their defaults.
    pub(super) fn repr_text(&self) -> String {
        let mut text = if self.spec.quotas.len() == 1 {
            format!(
                "RateLimiter(limit={}, window_seconds={}",
                self.max_requests(),
                self.window_seconds()
            )
        } else {
            let parts: Vec<String> = self
                .limits()
                .iter()
                .map(|(l, w)| format!("{l}/{w}s"))
                .collect();
            format!("RateLimiter(rate={:?}", parts.join(";"))
        };
        let _ = write!(text, ", algorithm={:?}", self.algorithm());
        if let Some(max_keys) = self.spec.max_keys {
            let _ = write!(text, ", max_keys={max_keys}");
        }
        if let Some(interval) = self.cleanup_interval() {
            let _ = write!(text, ", cleanup_interval={interval}");
        }
        if self.spec.max_keys.is_some() && self.spec.on_full == OnFull::Allow {
            text.push_str(", on_full=\"allow\"");
        }
        if let (Some(burst), true) = (self.spec.burst, self.spec.kind.has_burst()) {
            let _ = write!(text, ", burst={burst}");
        }
        if let Some(remote) = &self.remote {
            let _ = write!(text, ", storage={:?}", remote.url_shown());
        }
        if let Some(ban) = self.spec.ban {
            let secs = |n: u64| n as f64 / 1e9;
            let _ = write!(
                text,
                ", ban_after={}, ban_within={}, ban_seconds={}",
                ban.after,
                secs(ban.within),
                secs(ban.duration)
            );
        }
        if self.guard.shadow {
            text.push_str(", shadow=True");
        }
        if self.named {
            let _ = write!(text, ", name={:?}", self.name);
        }
        text.push(')');
        text
    }
}
