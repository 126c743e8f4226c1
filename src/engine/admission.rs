//! The front of every engine: a bounded queue that refuses at once when full, and the
//! counters the engine keeps.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;

use crate::actors::ActorError;

/// How large an engine's batch and queue may grow.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// Requests served by one forward.
    pub max_batch: usize,
    /// Requests waiting for a batch; one more is refused with 429.
    pub queue_capacity: usize,
    /// Fault injection for resilience drills: a model step fed exactly this prompt panics.
    pub panic_on_prompt: Option<String>,
}

/// Counters an engine keeps as it runs, for tests, metrics and load tests.
#[derive(Debug, Default)]
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
        // Counted before the send, so the engine's decrement never sees it below zero.
        self.stats.queued.fetch_add(1, Ordering::AcqRel);
        self.queue.try_send(job).map_err(|refused| {
            self.stats.queued.fetch_sub(1, Ordering::AcqRel);
            let model = self.name.to_string();
            match refused {
                TrySendError::Full(_) => {
                    self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                    ActorError::Overloaded { model }
                }
                TrySendError::Disconnected(_) => ActorError::Unavailable { model },
            }
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
        taken.push(jobs.recv().ok()?);
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
