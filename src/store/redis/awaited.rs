//! Decisions through the Tokio runtime: awaitables, and sync calls on a
//! cluster or over TLS. On a single server decisions wait in the store's
//! queue and go out in batches (see `batch`).

use std::sync::Arc;

use super::batch::{self, Answer, Job, Pending, Reply};
use super::client::Client;
use super::{RedisStore, StoreError};
use crate::runtime;
use crate::store::Outcome;

impl RedisStore {
    /// Decides `job`: on a single server in a batch with whatever else is
    /// waiting (see `batch`); on a cluster, whose keys of different
    /// decisions sit in different slots, in a call of its own.
    pub(super) async fn decide(
        self: &Arc<Self>,
        mode: &'static str,
        key: &[u8],
        cost: u64,
        now_us: Option<u64>,
    ) -> std::result::Result<Outcome, StoreError> {
        let job = self.job(mode, key, cost, now_us);
        if matches!(self.client, Client::Cluster(_)) {
            return self.run_one(&job).await;
        }
        let (reply, answer) = tokio::sync::oneshot::channel();
        let pending = Pending {
            job,
            reply: Reply::Channel(reply),
            deadline: std::time::Instant::now() + self.config.timeout,
        };
        let generation = runtime::live_generation().unwrap_or(0);
        if let Some(batch) = self.queue.push(pending, generation) {
            tokio::spawn(Arc::clone(self).run_batches(batch));
        }
        answer
            .await
            .unwrap_or_else(|_| Err(super::failure::error("the decision was dropped")))
    }

    /// Decides a hit like `hit`, without a task of its own: `done` gets the
    /// decision (the failure policy applied) on a runtime thread when its
    /// batch returns, or here at once if the breaker is open. Used by
    /// awaitables: a hundred concurrent ones wake the runtime once per
    /// batch, not once each.
    pub fn hit_then(
        self: &Arc<Self>,
        key: &[u8],
        cost: u64,
        now_us: Option<u64>,
        done: impl FnOnce(std::result::Result<Outcome, StoreError>) + Send + 'static,
    ) {
        if let Err(open) = self.health.breaker_closed() {
            return done(self.health.settle(Err(open), (Some(key), cost, now_us)));
        }
        let store = Arc::clone(self);
        let job = self.job("hit", key, cost, now_us);
        // The key travels with the answer only when events want it.
        let key: Option<Box<[u8]>> = self.health.events_on().then(|| job.key.clone());
        let finish = move |result: std::result::Result<Outcome, StoreError>| {
            store.health.record(&result);
            done(store.health.settle(result, (key.as_deref(), cost, now_us)));
        };
        let Ok((handle, generation)) = runtime::handle() else {
            return finish(Err(super::failure::error(
                "the Tokio runtime could not start",
            )));
        };
        if matches!(self.client, Client::Cluster(_)) {
            let store = Arc::clone(self);
            handle.spawn(async move {
                let started = std::time::Instant::now();
                let call = tokio::time::timeout(store.config.timeout, store.run_one(&job));
                let result = call.await.unwrap_or_else(|_| Err(store.health.timed_out()));
                store.health.latency.record(started.elapsed());
                finish(result);
            });
            return;
        }
        let pending = Pending {
            job,
            reply: Reply::Call(Answer::new(finish)),
            deadline: std::time::Instant::now() + self.config.timeout,
        };
        if let Some(batch) = self.queue.push(pending, generation) {
            handle.spawn(Arc::clone(self).run_batches(batch));
        }
    }

    /// Runs batches until none waits, answering every decision in them.
    async fn run_batches(self: Arc<Self>, mut batch: Vec<Pending>) {
        let running = batch::Running::new(&self.queue);
        loop {
            // A decision whose deadline passed while it waited fails now;
            // the call gets what is left of the earliest deadline.
            let now = std::time::Instant::now();
            let (late, live): (Vec<Pending>, Vec<Pending>) =
                batch.drain(..).partition(|p| p.deadline <= now);
            for pending in late {
                pending.reply.send(Err(self.health.timed_out()));
            }
            batch = live;
            let result = match batch.iter().map(|p| p.deadline).min() {
                None => Ok(Vec::new()),
                Some(deadline) => {
                    let jobs: Vec<&Job> = batch.iter().map(|p| &p.job).collect();
                    match tokio::time::timeout(deadline - now, self.run_jobs(&jobs)).await {
                        Ok(result) => result,
                        Err(_) => Err(self.health.timed_out()),
                    }
                }
            };
            let answered = std::time::Instant::now();
            for pending in &batch {
                // Each decision's round trip: from its call (its deadline
                // less the timeout) to the batch's answer.
                let called = pending.deadline - self.config.timeout;
                self.health
                    .latency
                    .record(answered.saturating_duration_since(called));
            }
            match result {
                Ok(decisions) => {
                    for (pending, decision) in batch.drain(..).zip(decisions) {
                        pending.reply.send(Ok(decision));
                    }
                }
                Err(err) => {
                    for pending in batch.drain(..) {
                        pending.reply.send(Err(err.clone()));
                    }
                }
            }
            match self.queue.next() {
                Some(next) => batch = next,
                None => {
                    running.finish();
                    return;
                }
            }
        }
    }

    /// One script call deciding `job` alone.
    async fn run_one(&self, job: &Job) -> std::result::Result<Outcome, StoreError> {
        self.run_jobs(&[job])
            .await?
            .pop()
            .ok_or_else(|| super::failure::error("the script returned no decision"))
    }

    /// One script call deciding `jobs` in order (layout in prelude.lua).
    async fn run_jobs(&self, jobs: &[&Job]) -> std::result::Result<Vec<Outcome>, StoreError> {
        let mut conn = self.connection().await?;
        let mut invocation = self.script.prepare_invoke();
        self.script_args(jobs, &mut invocation);
        let reply = invocation
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.redis_err(e))?;
        let list = self.decisions(reply, jobs.len())?;
        for (job, decision) in jobs.iter().zip(&list) {
            self.remember(job, decision);
        }
        Ok(list)
    }

    /// What a hit of cost 1 would get, spending nothing.
    pub async fn peek(
        self: &Arc<Self>,
        key: &[u8],
        now_us: Option<u64>,
    ) -> std::result::Result<Outcome, StoreError> {
        match self
            .health
            .guarded(self.decide("peek", key, 1, now_us))
            .await
        {
            Ok(d) => Ok(d),
            Err(err) => self.health.policy(err, 1),
        }
    }
}
