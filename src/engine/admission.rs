//! The front of every engine: a bounded queue that refuses at once when full, and the
//! counters the engine keeps.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;

use crate::histogram::{Histogram, BATCH, SECONDS};
use crate::work::ActorError;

/// How large an engine's batch and queue may grow.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// Requests served by one forward.
    pub max_batch: usize,
    /// Requests waiting for a batch; one more is refused with 429.
    pub queue_capacity: usize,
    /// Fault injection for resilience drills: a model step fed exactly this prompt panics.
    pub panic_on_prompt: Option<String>,
    /// Fault injection for resilience drills: picking a token for exactly this prompt panics.
    pub panic_picking_on_prompt: Option<String>,
}

/// Counters an engine keeps as it runs, for tests, metrics and load tests.
#[derive(Debug)]
pub struct EngineStats {
    /// Accepted and not yet taken into a batch.
    pub queued: AtomicUsize,
    /// In the running batch.
    pub active: AtomicUsize,
    /// Batched forwards run (decode steps, or classification batches).
    pub steps: AtomicU64,
    /// Requests taken into a batch.
    pub admitted: AtomicU64,
    pub completed: AtomicU64,
    pub cancelled: AtomicU64,
    pub failed: AtomicU64,
    /// Refused because the queue was full.
    pub rejected: AtomicU64,
    /// Time spent in model forwards, in nanoseconds.
    pub busy_nanos: AtomicU64,
    /// Tokens generated (0 for a classifier).
    pub tokens: AtomicU64,
    /// Model steps that failed, after which the engine dropped its batch and carried on.
    pub restarts: AtomicU64,
    /// Requests served by each forward.
    pub batch_size: Histogram,
    /// From submission to a request's first token.
    pub time_to_first_token: Histogram,
    /// Between a request's successive tokens.
    pub token_latency: Histogram,
}

impl Default for EngineStats {
    fn default() -> Self {
        Self {
            queued: AtomicUsize::new(0),
            active: AtomicUsize::new(0),
            steps: AtomicU64::new(0),
            admitted: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            busy_nanos: AtomicU64::new(0),
            tokens: AtomicU64::new(0),
            restarts: AtomicU64::new(0),
            batch_size: Histogram::new(BATCH),
            time_to_first_token: Histogram::new(SECONDS),
            token_latency: Histogram::new(SECONDS),
        }
    }
}

impl EngineStats {
    /// Records one forward that served `batch` requests and took `elapsed`.
    pub fn record_forward(&self, batch: usize, elapsed: std::time::Duration) {
        self.busy_nanos
            .fetch_add(elapsed.as_nanos() as u64, Ordering::Relaxed);
        self.batch_size.observe(batch as f64);
    }
}

/// The sending side of an engine's queue, with its name, limits and counters.
pub struct Admission<J> {
    name: Arc<str>,
    settings: EngineSettings,
    queue: SyncSender<J>,
    stats: Arc<EngineStats>,
}

impl<J> Clone for Admission<J> {
    fn clone(&self) -> Self {
        Self {
            name: self.name.clone(),
            settings: self.settings.clone(),
            queue: self.queue.clone(),
            stats: self.stats.clone(),
        }
    }
}

impl<J> Admission<J> {
    /// A queue for engine `name`, and the receiving end its thread works from.
    pub fn new(name: &str, settings: EngineSettings) -> (Self, Receiver<J>) {
        let (queue, jobs) = sync_channel(settings.queue_capacity);
        let admission = Self {
            name: name.into(),
            settings,
            queue,
            stats: Arc::new(EngineStats::default()),
        };
        (admission, jobs)
    }

    /// Queues `job`, or refuses it at once when the queue is full.
    pub fn submit(&self, job: J) -> Result<(), ActorError> {
        match self.offer(job)? {
            None => Ok(()),
            Some(_) => {
                self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                Err(ActorError::Overloaded {
                    model: self.name.to_string(),
                })
            }
        }
    }

    /// Queues `job` if there is room (`None`), or hands it back when the queue is full,
    /// without counting a refusal: for callers that wait for room instead.
    pub fn offer(&self, job: J) -> Result<Option<J>, ActorError> {
        // Counted before the send, so the engine's decrement never sees it below zero.
        self.stats.queued.fetch_add(1, Ordering::AcqRel);
        match self.queue.try_send(job) {
            Ok(()) => Ok(None),
            Err(refused) => {
                self.stats.queued.fetch_sub(1, Ordering::AcqRel);
                match refused {
                    TrySendError::Full(job) => Ok(Some(job)),
                    TrySendError::Disconnected(_) => Err(ActorError::Unavailable {
                        model: self.name.to_string(),
                    }),
                }
            }
        }
    }

    /// Refuses, counting the refusal, when the queue is full right now: for callers that
    /// refuse before they start work (a stream, a graph request) rather than midway.
    pub fn check_room(&self) -> Result<(), ActorError> {
        if self.stats.queued.load(Ordering::Acquire) < self.settings.queue_capacity {
            return Ok(());
        }
        self.stats.rejected.fetch_add(1, Ordering::Relaxed);
        Err(ActorError::Overloaded {
            model: self.name.to_string(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn settings(&self) -> &EngineSettings {
        &self.settings
    }

    pub fn stats(&self) -> &Arc<EngineStats> {
        &self.stats
    }
}

/// How long an engine waits idle before it hands the activations the allocator keeps for
/// the next step back to the system (`memory::return_kept`): longer than the gaps of steady
/// traffic, so that only a server left idle gives up the speed.
const IDLE_BEFORE_RETURNING: Duration = Duration::from_secs(2);

/// Takes what is waiting, up to `room` jobs; blocks for the first when `wait` is set.
/// `None` means every sender is gone: the server stopped.
pub fn take_jobs<J>(
    jobs: &Receiver<J>,
    stats: &EngineStats,
    room: usize,
    wait: bool,
) -> Option<Vec<J>> {
    let mut taken = Vec::new();
    if wait {
        let first = match jobs.recv_timeout(IDLE_BEFORE_RETURNING) {
            Ok(job) => job,
            Err(RecvTimeoutError::Timeout) => {
                crate::memory::return_kept();
                jobs.recv().ok()?
            }
            Err(RecvTimeoutError::Disconnected) => return None,
        };
        taken.push(first);
    }
    while taken.len() < room {
        match jobs.try_recv() {
            Ok(job) => taken.push(job),
            Err(_) => break,
        }
    }
    stats.queued.fetch_sub(taken.len(), Ordering::AcqRel);
    Some(taken)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_that_comes_after_the_idle_return_is_still_taken_and_a_closed_queue_ends_the_wait() {
        let stats = EngineStats::default();
        let (send, jobs) = sync_channel(1);
        std::thread::spawn(move || {
            std::thread::sleep(IDLE_BEFORE_RETURNING + Duration::from_millis(200));
            send.send(7u32).unwrap();
        });
        stats.queued.fetch_add(1, Ordering::AcqRel);
        assert_eq!(take_jobs(&jobs, &stats, 4, true), Some(vec![7]));
        assert_eq!(take_jobs(&jobs, &stats, 4, true), None);
    }
}
