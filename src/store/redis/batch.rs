//! Concurrent decisions of one limiter share one script call.
//!
//! While a call is on the wire, the decisions that arrive queue here; when
//! it returns, every queued decision goes out in the next call (at most
//! `MAX_BATCH`), decided in arrival order as if each had its own call. A
//! lone caller waits for nothing: its call starts at once. A hundred
//! concurrent awaits then cost Redis a few script runs instead of a
//! hundred, which is where a Redis server spends most of its time.
//!
//! The queue lives in the store; the calls run on a task of the Tokio
//! runtime, never in a caller's future, so a caller that gives up (its
//! deadline passed, its awaitable was cancelled) cannot strand the others.
//! A sync caller waits on a channel; an awaitable needs no task at all: its
//! `Answer` hands the result to its event loop. Each decision keeps its own
//! deadline, also while it waits for the call before its own.

use std::sync::Mutex;
use std::time::Instant;

use tokio::sync::oneshot;

use super::StoreError;
use crate::store::Outcome;

/// The most decisions one script call carries: bounds how long the
/// single-threaded server is busy with one call.
pub(super) const MAX_BATCH: usize = 64;

/// One decision to make.
pub(super) struct Job {
    /// `"hit"` or `"peek"`.
    pub mode: &'static str,
    /// The decision's key of each rule.
    pub keys: Vec<String>,
    pub cost: u64,
    /// The time to decide at instead of the server's (tests).
    pub now_us: Option<u64>,
    /// The limiter's key, for the local cache.
    pub key: Box<[u8]>,
    /// The store's time before the call went out (ns; see `local`).
    pub at: u64,
}

/// A queued decision, where its result goes, and by when.
pub(super) struct Pending {
    pub job: Job,
    pub reply: Reply,
    pub deadline: Instant,
}

/// Where a decision's result goes: a waiting future, or a function called
/// with it on the runtime's thread (an awaitable's hand-off to its loop).
pub(super) enum Reply {
    Channel(oneshot::Sender<Result<Outcome, StoreError>>),
    Call(Answer),
}

/// A function to call with the result. Dropped unanswered (its batch was
/// lost to a panic, say), it answers with an error: an awaitable never
/// waits forever.
pub(super) struct Answer(Option<AnswerFn>);

type AnswerFn = Box<dyn FnOnce(Result<Outcome, StoreError>) + Send>;

impl Answer {
    pub(super) fn new(f: impl FnOnce(Result<Outcome, StoreError>) + Send + 'static) -> Self {
        Self(Some(Box::new(f)))
    }
}

impl Drop for Answer {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f(Err(super::failure::error("the decision was dropped")));
        }
    }
}

impl Reply {
    pub(super) fn send(self, result: Result<Outcome, StoreError>) {
        match self {
            Reply::Channel(tx) => {
                let _ = tx.send(result);
            }
            Reply::Call(mut answer) => {
                if let Some(f) = answer.0.take() {
                    f(result);
                }
            }
        }
    }
}

/// The decisions waiting for the call on the wire.
#[derive(Default)]
pub(super) struct Queue {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    waiting: Vec<Pending>,
    /// Whether a task is running calls (and will take what waits).
    running: bool,
    /// The runtime generation the state belongs to.
    generation: u64,
}

impl Queue {
    /// Queues `pending`; returns the batch to start a task with if no task
    /// is running calls.
    pub(super) fn push(&self, pending: Pending, generation: u64) -> Option<Vec<Pending>> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.generation != generation {
            // Inherited across fork: the parent's task runs nowhere here, and
            // its waiters belong to the parent (never answer them here).
            std::mem::forget(std::mem::take(&mut state.waiting));
            state.running = false;
            state.generation = generation;
        }
        state.waiting.push(pending);
        if state.running {
            return None;
        }
        state.running = true;
        Some(take(&mut state.waiting))
    }

    /// After a call: the next batch, or `None` and the task stops.
    pub(super) fn next(&self) -> Option<Vec<Pending>> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.waiting.is_empty() {
            state.running = false;
            return None;
        }
        Some(take(&mut state.waiting))
    }
}

/// Held by the task running calls. Dropped without `finish` (the task
/// panicked or was dropped), it frees the queue, so the next caller starts a
/// task instead of waiting for one that is gone; the decisions then waiting
/// get an error (their caller's policy applies).
pub(super) struct Running<'a> {
    queue: &'a Queue,
    finished: bool,
}

impl<'a> Running<'a> {
    pub(super) fn new(queue: &'a Queue) -> Self {
        Self {
            queue,
            finished: false,
        }
    }

    /// The task ends normally (`Queue::next` returned `None`).
    pub(super) fn finish(mut self) {
        self.finished = true;
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        if !self.finished {
            let waiting = {
                let mut state = self.queue.state.lock().unwrap_or_else(|e| e.into_inner());
                state.running = false;
                std::mem::take(&mut state.waiting)
            };
            // Answered (with an error) outside the lock.
            drop(waiting);
        }
    }
}

/// Up to `MAX_BATCH` of the oldest waiting decisions.
fn take(waiting: &mut Vec<Pending>) -> Vec<Pending> {
    if waiting.len() <= MAX_BATCH {
        return std::mem::take(waiting);
    }
    let rest = waiting.split_off(MAX_BATCH);
    std::mem::replace(waiting, rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(cost: u64) -> (Pending, oneshot::Receiver<Result<Outcome, StoreError>>) {
        let (reply, rx) = oneshot::channel();
        let job = Job {
            mode: "hit",
            keys: vec![],
            cost,
            now_us: None,
            key: Box::default(),
            at: 0,
        };
        let pending = Pending {
            job,
            reply: Reply::Channel(reply),
            deadline: Instant::now(),
        };
        (pending, rx)
    }

    #[test]
    fn an_answer_dropped_unanswered_answers_an_error() {
        let (tx, mut rx) = oneshot::channel();
        drop(Answer::new(move |r| {
            let _ = tx.send(r);
        }));
        assert!(matches!(rx.try_recv(), Ok(Err(_))));
    }

    #[test]
    fn the_first_caller_starts_and_the_rest_wait_in_order() {
        let queue = Queue::default();
        let first = queue.push(pending(1).0, 1).expect("nothing runs: start");
        assert_eq!(first.len(), 1);
        for cost in 2..=(MAX_BATCH as u64 + 3) {
            assert!(queue.push(pending(cost).0, 1).is_none(), "a call is out");
        }
        let next = queue.next().expect("waiting decisions");
        let costs: Vec<u64> = next.iter().map(|p| p.job.cost).collect();
        assert_eq!(costs, (2..=(MAX_BATCH as u64 + 1)).collect::<Vec<_>>());
        let last = queue.next().expect("the rest");
        assert_eq!(
            last.iter().map(|p| p.job.cost).collect::<Vec<_>>(),
            [MAX_BATCH as u64 + 2, MAX_BATCH as u64 + 3]
        );
        assert!(queue.next().is_none(), "drained: the task stops");
        assert!(
            queue.push(pending(9).0, 1).is_some(),
            "and the next caller starts one"
        );
    }

    #[test]
    fn a_task_that_dies_frees_the_queue() {
        let queue = Queue::default();
        assert!(queue.push(pending(1).0, 1).is_some());
        let (waiting, mut answer) = pending(2);
        assert!(queue.push(waiting, 1).is_none());
        drop(Running::new(&queue)); // the task panicked
        assert!(
            answer.try_recv().is_err(),
            "the waiting decision gets an error, not silence"
        );
        assert!(
            queue.push(pending(3).0, 1).is_some(),
            "the next caller starts a task"
        );
    }

    #[test]
    fn a_forked_child_does_not_wait_for_the_parents_call() {
        let queue = Queue::default();
        assert!(queue.push(pending(1).0, 1).is_some());
        assert!(queue.push(pending(2).0, 1).is_none());
        // A new runtime generation (a forked child): start afresh.
        let batch = queue.push(pending(3).0, 2).expect("starts in the child");
        assert_eq!(batch.iter().map(|p| p.job.cost).collect::<Vec<_>>(), [3]);
    }
}
