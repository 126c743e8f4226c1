//! The classifier's engine: texts from different graph requests, waiting at the same time,
//! are scored by one batched forward. (Within one graph request the coordinator still sends
//! its texts one at a time, as the graph prescribes.)

use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::admission::{take_jobs, Admission, EngineSettings, EngineStats};
use super::cancel::CancelToken;
use super::generation::guarded;
use super::pool::{self, StartGate};
use crate::models::{Classification, Classifier};
use crate::work::{ActorError, WorkSpan};

/// How often `submit_when_room` looks for room in a full queue.
const ROOM_POLL: Duration = Duration::from_millis(2);

/// What the engine answers: the classification and when its batch ran.
pub type Reply = Result<(Classification, WorkSpan), ActorError>;

pub struct Job {
    text: String,
    /// The second text of a pair (BERT's segment B), for callers that score pairs.
    pair: Option<String>,
    /// When it was queued.
    submitted: Instant,
    cancel: CancelToken,
    reply: oneshot::Sender<Reply>,
}

/// A handle to a running classifier engine; clones share it.
#[derive(Clone)]
pub struct ClassificationEngine {
    admission: Admission<Job>,
}

impl ClassificationEngine {
    /// Starts the engine's thread, which owns `classifier` from now on.
    pub fn start(name: &str, classifier: Classifier, settings: EngineSettings) -> Self {
        Self::start_held(name, classifier, settings).0
    }

    /// Like `start`, but the engine takes no job until the returned gate is dropped.
    pub fn start_held(
        name: &str,
        classifier: Classifier,
        settings: EngineSettings,
    ) -> (Self, StartGate) {
        let max_batch = settings.max_batch.max(1);
        let (admission, jobs) = Admission::new(name, settings);
        let stats = admission.stats().clone();
        let engine = name.to_string();
        let gate = pool::spawn_engine(name, move || {
            run(&engine, &classifier, max_batch, &stats, jobs)
        });
        (Self { admission }, gate)
    }

    /// Queues a text (or a text pair), or refuses it at once when the queue is full.
    pub fn submit(
        &self,
        text: String,
        pair: Option<String>,
        cancel: CancelToken,
    ) -> Result<oneshot::Receiver<Reply>, ActorError> {
        let (reply, answer) = oneshot::channel();
        self.admission.submit(Job {
            text,
            pair,
            submitted: Instant::now(),
            cancel,
            reply,
        })?;
        Ok(answer)
    }

    /// Queues a text, waiting for room while the queue is full, until `cancel` is set.
    ///
    /// For requests the server has already admitted (the entrance refuses new ones
    /// while any queue is full): refusing one now would throw away its finished generations.
    pub async fn submit_when_room(
        &self,
        text: String,
        pair: Option<String>,
        cancel: CancelToken,
    ) -> Result<oneshot::Receiver<Reply>, ActorError> {
        let (reply, answer) = oneshot::channel();
        let mut job = Job {
            text,
            pair,
            submitted: Instant::now(),
            cancel: cancel.clone(),
            reply,
        };
        while let Some(refused) = self.admission.offer(job)? {
            if cancel.is_cancelled() {
                return Err(ActorError::Cancelled);
            }
            job = refused;
            // A forward frees room; it takes milliseconds at least, so look again after one.
            tokio::time::sleep(ROOM_POLL).await;
        }
        Ok(answer)
    }

    /// Its name, limits and counters.
    pub fn admission(&self) -> &Admission<Job> {
        &self.admission
    }
}

fn run(
    name: &str,
    classifier: &Classifier,
    max_batch: usize,
    stats: &Arc<EngineStats>,
    jobs: Receiver<Job>,
) {
    while let Some(taken) = take_jobs(&jobs, stats, max_batch, true) {
        let (cancelled, batch): (Vec<Job>, Vec<Job>) =
            taken.into_iter().partition(|j| j.cancel.is_cancelled());
        for job in cancelled {
            stats.cancelled.fetch_add(1, Ordering::Relaxed);
            let _ = job.reply.send(Err(ActorError::Cancelled));
        }
        if batch.is_empty() {
            continue;
        }
        stats
            .admitted
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        stats.active.store(batch.len(), Ordering::Release);
        let started = Instant::now();
        let items: Vec<(&str, Option<&str>)> = batch
            .iter()
            .map(|j| (j.text.as_str(), j.pair.as_deref()))
            .collect();
        let result = guarded(|| classifier.classify_batch(&items));
        let finished = Instant::now();
        stats.steps.fetch_add(1, Ordering::Relaxed);
        stats.record_forward(batch.len(), finished - started);
        let span = |job: &Job| WorkSpan {
            queued: job.submitted,
            started,
            finished,
            batch_size: batch.len(),
        };
        stats.active.store(0, Ordering::Release);
        match result {
            Ok(classifications) => {
                stats
                    .completed
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                let spans: Vec<WorkSpan> = batch.iter().map(span).collect();
                for ((job, classification), span) in
                    batch.into_iter().zip(classifications).zip(spans)
                {
                    let _ = job.reply.send(Ok((classification, span)));
                }
            }
            Err(message) => {
                stats.restarts.fetch_add(1, Ordering::Relaxed);
                tracing::error!(model = name, texts = batch.len(), %message, "classification batch failed; its requests get an error");
                stats
                    .failed
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                for job in batch {
                    let _ = job.reply.send(Err(ActorError::Failed {
                        model: name.to_string(),
                        message: message.clone(),
                    }));
                }
            }
        }
    }
}
