//! Awaited decisions over a connection of the caller's own event loop.
//!
//! An awaited decision that went through the runtime crossed threads twice:
//! from the caller to a runtime worker, and back to the loop through its
//! wake-up pipe. A `Link` skips both: it is a non-blocking connection (the
//! sync client's, `resp::Conn`) that one event loop watches. The caller's
//! thread writes the script call itself; when the reply arrives the loop
//! calls `readable`, which parses it and hands back the settled decisions,
//! to resolve the futures right there. So one awaited decision costs about
//! what a sync one does, plus one turn of the loop.
//!
//! Batching is the runtime path's: one call on the wire at a time; decisions
//! that arrive meanwhile wait and go out together in the next call (at most
//! `MAX_BATCH`), each decided as if alone. Each keeps its own deadline; the
//! loop's timer calls `expire`, and a call that outlived a deadline fails
//! and closes the connection (its late reply must never answer a later
//! call). Every result goes through the store's breaker, counters and
//! failure policy.
//!
//! Nothing here knows Python: `R` is whatever the binding resolves (a
//! future), and the binding runs every method on the loop's thread.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::batch::{Job, MAX_BATCH};
use super::resp::{self, Conn, Failure, Sock, Value};
use super::{RedisStore, StoreError};
use crate::store::Outcome;

/// A decision waiting for its answer on a link.
pub struct LinkPending<R> {
    job: Job,
    reply: R,
    deadline: Instant,
}

/// What the loop must do after a step.
pub struct Step<R> {
    /// Decisions answered, the failure policy applied.
    pub answered: Vec<(R, Result<Outcome, StoreError>)>,
    /// Output is left to write: watch for the socket being writable.
    pub want_write: bool,
    /// The connection is gone: stop watching it, and forget the link.
    pub closed: bool,
    /// Arm a timer this far ahead (none is armed and a deadline waits).
    pub arm_timer: Option<Duration>,
    /// The connection of a link that closed: drop it only once the loop
    /// stopped watching its socket (closing a watched descriptor is
    /// undefined for some loops, and its number could be reused meanwhile).
    pub retired: Option<Retired>,
}

/// A closed link's connection, to be dropped after it is unwatched.
pub struct Retired(#[allow(dead_code)] Conn);

impl<R> Default for Step<R> {
    fn default() -> Self {
        Self {
            answered: Vec::new(),
            want_write: false,
            closed: false,
            arm_timer: None,
            retired: None,
        }
    }
}

/// A timer fires up to a millisecond early on some loops (uvloop rounds
/// to whole milliseconds): arm it that much late rather than spin.
const TIMER_SLACK: Duration = Duration::from_millis(1);

/// One event loop's connection to the store's server.
pub struct Link<R> {
    fd: Sock,
    state: Mutex<State<R>>,
}

struct State<R> {
    /// None once closed.
    conn: Option<Conn>,
    /// The decisions of the call on the wire, in order.
    in_flight: Vec<LinkPending<R>>,
    /// Replies the call on the wire still owes before its decisions: 1 for
    /// a SCRIPT LOAD sent ahead of the EVALSHA (after NOSCRIPT).
    loads: usize,
    waiting: Vec<LinkPending<R>>,
    /// Whether the loop has a timer armed for this link.
    timer: bool,
}

impl<R> Link<R> {
    /// The socket the loop watches.
    pub fn fd(&self) -> Sock {
        self.fd
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State<R>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Drops everything (the loop closed): the socket is closed and the
    /// queued replies handed back, unanswered.
    pub fn close(&self) -> Vec<R> {
        let mut state = self.state();
        state.conn = None;
        let mut replies: Vec<R> = state.in_flight.drain(..).map(|p| p.reply).collect();
        replies.extend(state.waiting.drain(..).map(|p| p.reply));
        replies
    }
}

impl RedisStore {
    /// Whether an awaited decision can use a link now: a single server
    /// reached without TLS, and the breaker closed (an open one answers
    /// from the policy at once, on the runtime path).
    pub fn can_link(&self) -> bool {
        self.endpoint.is_some() && self.health.breaker.permits()
    }

    /// Opens a link: connects, logs in and selects the database, within the
    /// deadline. Blocks: run it off the event loop.
    pub fn open_link<R>(&self) -> Result<Link<R>, StoreError> {
        let Some(endpoint) = &self.endpoint else {
            return Err(super::failure::error("no single server to link to"));
        };
        let deadline = resp::Deadline(Instant::now() + self.config.timeout);
        let conn = Conn::connect(endpoint, deadline).map_err(|f| self.sync_err(f))?;
        Ok(Link {
            fd: conn.fd(),
            state: Mutex::new(State {
                conn: Some(conn),
                in_flight: Vec::new(),
                loads: 0,
                waiting: Vec::new(),
                timer: false,
            }),
        })
    }

    /// A hit of `cost` on `key` to decide on a link, answered to `reply`.
    pub fn link_pending<R>(
        &self,
        key: &[u8],
        cost: u64,
        now_us: Option<u64>,
        reply: R,
    ) -> LinkPending<R> {
        LinkPending {
            job: self.job("hit", key, cost, now_us),
            reply,
            deadline: Instant::now() + self.config.timeout,
        }
    }

    /// Submits a decision: sent at once if nothing is on the wire, else
    /// queued for the next call.
    pub fn link_submit<R>(&self, link: &Link<R>, pending: LinkPending<R>) -> Step<R> {
        let mut state = link.state();
        let mut step = Step::default();
        if state.conn.is_none() {
            self.answer(&mut step, pending, Err(self.link_closed()));
            step.closed = true;
            return step;
        }
        state.waiting.push(pending);
        if state.in_flight.is_empty() {
            self.send_next(&mut state, &mut step);
        }
        self.watch(&mut state, &mut step);
        step
    }

    /// The socket is readable: answers the call on the wire if its reply is
    /// whole, and sends the next one.
    pub fn link_readable<R>(&self, link: &Link<R>) -> Step<R> {
        let mut state = link.state();
        let mut step = Step::default();
        let Some(conn) = state.conn.as_mut() else {
            step.closed = true;
            return step;
        };
        if let Err(failure) = conn.read_some() {
            self.fail_link(&mut state, &mut step, self.sync_err(failure));
            return step;
        }
        while let Some(conn) = state.conn.as_mut() {
            let reply = match conn.next_reply() {
                Ok(Some(reply)) => reply,
                Ok(None) => break,
                Err(failure) => {
                    self.fail_link(&mut state, &mut step, self.sync_err(failure));
                    return step;
                }
            };
            if state.in_flight.is_empty() {
                // A reply nobody asked for: the stream cannot be trusted.
                let err = super::failure::error(format!("an unexpected reply from {}", self.peer));
                self.fail_link(&mut state, &mut step, err);
                return step;
            }
            if state.loads > 0 {
                state.loads -= 1;
                if let Value::Error(e) = reply {
                    // The EVALSHA behind it will fail too; answer now.
                    let err = self.sync_err(Failure::Server(e));
                    self.answer_in_flight(&mut state, &mut step, Err(err));
                    state.loads = 0;
                    self.fail_link(&mut state, &mut step, self.link_closed());
                    return step;
                }
                continue;
            }
            match reply {
                Value::Error(e) if e.starts_with("NoScript") || e.starts_with("NOSCRIPT") => {
                    // Flushed or restarted: load it and run the same call again.
                    if let Err(failure) = self.send(&mut state, true) {
                        self.fail_link(&mut state, &mut step, failure);
                        return step;
                    }
                }
                Value::Error(e) => {
                    let err = self.sync_err(Failure::Server(e));
                    self.answer_in_flight(&mut state, &mut step, Err(err));
                    self.send_next(&mut state, &mut step);
                }
                value => {
                    let count = state.in_flight.len();
                    let result = value
                        .into_u64s()
                        .map_err(|f| self.sync_err(f))
                        .and_then(|reply| self.decisions(reply, count));
                    match result {
                        Ok(list) => {
                            for (pending, decision) in state.in_flight.drain(..).zip(list) {
                                self.remember(&pending.job, &decision);
                                self.answer(&mut step, pending, Ok(decision));
                            }
                        }
                        Err(err) => self.answer_in_flight(&mut state, &mut step, Err(err)),
                    }
                    self.send_next(&mut state, &mut step);
                }
            }
        }
        self.watch(&mut state, &mut step);
        step
    }

    /// The socket is writable: writes what is left of the call.
    pub fn link_writable<R>(&self, link: &Link<R>) -> Step<R> {
        let mut state = link.state();
        let mut step = Step::default();
        let Some(conn) = state.conn.as_mut() else {
            step.closed = true;
            return step;
        };
        if let Err(failure) = conn.write_some() {
            self.fail_link(&mut state, &mut step, self.sync_err(failure));
            return step;
        }
        self.watch(&mut state, &mut step);
        step
    }

    /// The loop could not arm the timer asked for: ask again next step.
    pub fn link_timer_failed<R>(&self, link: &Link<R>) {
        link.state().timer = false;
    }

    /// The loop's timer: fails what outlived its deadline. A call on the
    /// wire that did closes the link.
    pub fn link_expire<R>(&self, link: &Link<R>) -> Step<R> {
        let mut state = link.state();
        let mut step = Step::default();
        state.timer = false;
        let now = Instant::now();
        if state.in_flight.iter().any(|p| p.deadline <= now) {
            self.fail_link(&mut state, &mut step, self.health.timed_out());
            return step;
        }
        let (late, live): (Vec<_>, Vec<_>) =
            state.waiting.drain(..).partition(|p| p.deadline <= now);
        state.waiting = live;
        for pending in late {
            self.answer(&mut step, pending, Err(self.health.timed_out()));
        }
        self.watch(&mut state, &mut step);
        step
    }

    fn link_closed(&self) -> StoreError {
        super::failure::error(format!("the connection to {} was closed", self.peer))
    }

    /// Sends the next batch of waiting decisions (late ones fail first).
    fn send_next<R>(&self, state: &mut State<R>, step: &mut Step<R>) {
        let now = Instant::now();
        while state.in_flight.is_empty() && !state.waiting.is_empty() {
            let take = state.waiting.len().min(MAX_BATCH);
            let batch: Vec<_> = state.waiting.drain(..take).collect();
            for pending in batch {
                if pending.deadline <= now {
                    self.answer(step, pending, Err(self.health.timed_out()));
                } else {
                    state.in_flight.push(pending);
                }
            }
        }
        if state.in_flight.is_empty() {
            return;
        }
        if let Err(err) = self.send(state, false) {
            self.fail_link(state, step, err);
        }
    }

    /// Writes the call deciding the in-flight decisions.
    fn send<R>(&self, state: &mut State<R>, reload: bool) -> Result<(), StoreError> {
        let mut args = resp::Args::default();
        let jobs: Vec<&Job> = state.in_flight.iter().map(|p| &p.job).collect();
        self.script_args(&jobs, &mut args);
        let Some(conn) = state.conn.as_mut() else {
            return Err(self.link_closed());
        };
        conn.queue_eval(&self.sync_script, &args, reload);
        state.loads = usize::from(reload);
        conn.write_some().map_err(|f| self.sync_err(f))?;
        Ok(())
    }

    /// Ends a step on a live link: whether output waits to be written (the
    /// connection's own state, so no step can unregister a writer still
    /// needed), and a timer if a deadline waits and none is armed.
    fn watch<R>(&self, state: &mut State<R>, step: &mut Step<R>) {
        let Some(conn) = state.conn.as_ref() else {
            return;
        };
        step.want_write = conn.has_output();
        if state.timer {
            return;
        }
        let next = state
            .in_flight
            .iter()
            .chain(state.waiting.iter())
            .map(|p| p.deadline)
            .min();
        if let Some(deadline) = next {
            state.timer = true;
            step.arm_timer = Some(deadline.saturating_duration_since(Instant::now()) + TIMER_SLACK);
        }
    }

    fn answer_in_flight<R>(
        &self,
        state: &mut State<R>,
        step: &mut Step<R>,
        result: Result<Outcome, StoreError>,
    ) {
        for pending in state.in_flight.drain(..) {
            self.answer(step, pending, result.clone());
        }
    }

    /// Closes the link: every decision on it fails with `err`.
    fn fail_link<R>(&self, state: &mut State<R>, step: &mut Step<R>, err: StoreError) {
        step.retired = state.conn.take().map(Retired);
        let pending: Vec<_> = state
            .in_flight
            .drain(..)
            .chain(state.waiting.drain(..))
            .collect();
        for p in pending {
            self.answer(step, p, Err(err.clone()));
        }
        step.closed = true;
        step.want_write = false;
    }

    /// One decision's result as its caller sees it: recorded by the
    /// breaker, counted, the failure policy applied.
    fn answer<R>(
        &self,
        step: &mut Step<R>,
        pending: LinkPending<R>,
        result: Result<Outcome, StoreError>,
    ) {
        let called = pending.deadline - self.config.timeout;
        self.health.latency.record(called.elapsed());
        self.health.record(&result);
        let job = &pending.job;
        let settled = self
            .health
            .settle(result, (Some(&job.key), job.cost, job.now_us));
        step.answered.push((pending.reply, settled));
    }
}
