//! The awaitables of a Redis-backed limiter: Tokio futures (or, for a
//! decision, the event loop's own link) resolved into Python futures.

use pyo3::prelude::*;

use super::PyRateLimiter;
use crate::py::args::{key_bytes, Cost};
use crate::py::bridge::{self, OnCancel};
use crate::py::decision::PyDecision;
use crate::py::options::storage_error;
use crate::store::remote::RemoteStore;

impl PyRateLimiter {
    /// The future of `_adecide`: a decision on the Redis store.
    pub(super) fn adecide_future<'py>(
        &self,
        key: &Bound<'py, PyAny>,
        cost: Cost<'_, 'py>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let cost = self.cost(cost)?;
        self.inner.validate_cost(cost)?;
        let bytes = key_bytes(key)?.into_owned();
        if let Some(listed) = self.listed(&bytes, cost)? {
            let (future, complete) = bridge::completion::<PyDecision>(key.py())?;
            complete(Ok(PyDecision::from_outcome(listed)));
            return Ok(future);
        }
        let now = self.remote_now();
        let remote = match self.remote()? {
            RemoteStore::Redis(redis) => redis.clone(),
            RemoteStore::Postgres(pg) => {
                // Concurrent awaits pipeline on the shared connections.
                let pg = pg.clone();
                return bridge::future_into_py(key.py(), OnCancel::Finish, async move {
                    pg.hit(bytes, cost, now)
                        .await
                        .map(PyDecision::from_outcome)
                        .map_err(storage_error)
                });
            }
        };
        // A refusal remembered from Redis answers at once, whichever path
        // the decision would take (see store::redis::local).
        if let Some(refused) = remote.cached_refusal(&bytes, cost, now) {
            let (future, complete) = bridge::completion::<PyDecision>(key.py())?;
            complete(Ok(PyDecision::from_outcome(refused)));
            return Ok(future);
        }
        // On a single server, over the running loop's own connection: no
        // thread hop either way (see store::redis::link).
        if remote.can_link() {
            if let Some(future) = bridge::link_decide(key.py(), &remote, &bytes, cost, now)? {
                return Ok(future);
            }
        }
        // Otherwise (a cluster, TLS, the loop's link still opening, the
        // breaker open) no task per await: the decision joins the store's
        // batch queue and its batch resolves the future.
        let (future, complete) = bridge::completion::<PyDecision>(key.py())?;
        remote.hit_then(&bytes, cost, now, move |result| {
            complete(result.map(PyDecision::from_outcome).map_err(storage_error));
        });
        Ok(future)
    }

    /// The future of `_apeek`.
    pub(super) fn apeek_future<'py>(&self, key: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let remote = self.remote()?.clone();
        let bytes = key_bytes(key)?.into_owned();
        let now = self.remote_now();
        bridge::future_into_py(key.py(), OnCancel::Finish, async move {
            remote
                .peek(&bytes, now)
                .await
                .map(PyDecision::from_outcome)
                .map_err(storage_error)
        })
    }

    /// A runtime future of `op` on the remote store and `key`'s bytes (and
    /// the manual clock's time, if any), finishing even if cancelled.
    fn keyed_future<'py, T, F, Fut>(
        &self,
        key: &Bound<'py, PyAny>,
        op: F,
    ) -> PyResult<Bound<'py, PyAny>>
    where
        F: FnOnce(RemoteStore, Vec<u8>, Option<u64>) -> Fut,
        Fut: std::future::Future<Output = PyResult<T>> + Send + 'static,
        T: for<'a> IntoPyObject<'a> + Send + 'static,
    {
        let remote = self.remote()?.clone();
        let bytes = key_bytes(key)?.into_owned();
        let fut = op(remote, bytes, self.remote_now());
        bridge::future_into_py(key.py(), OnCancel::Finish, fut)
    }

    /// The future of `_areset`.
    pub(super) fn areset_future<'py>(
        &self,
        key: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.keyed_future(key, |remote, bytes, _| async move {
            remote.reset(&bytes).await.map_err(storage_error)
        })
    }

    /// The future of `_aclear`.
    pub(super) fn aclear_future<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let remote = self.remote()?.clone();
        bridge::future_into_py(py, OnCancel::Finish, async move {
            remote.clear().await.map(|_| ()).map_err(storage_error)
        })
    }

    /// The future of `_aban`.
    pub(super) fn aban_future<'py>(
        &self,
        key: &Bound<'py, PyAny>,
        duration: crate::clock::Nanos,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.keyed_future(key, move |remote, bytes, now| async move {
            remote
                .ban(&bytes, duration, now)
                .await
                .map_err(storage_error)
        })
    }

    /// The future of `_aunban`.
    pub(super) fn aunban_future<'py>(
        &self,
        key: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.keyed_future(key, |remote, bytes, now| async move {
            remote.unban(&bytes, now).await.map_err(storage_error)
        })
    }

    /// The future of `_abanned_for`.
    pub(super) fn abanned_for_future<'py>(
        &self,
        key: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.keyed_future(key, |remote, bytes, now| async move {
            let left = remote
                .banned_for(&bytes, now)
                .await
                .map_err(storage_error)?;
            Ok(left.map(|n| n as f64 / crate::clock::NANOS_PER_SEC as f64))
        })
    }
}
