//! The encoders' engine (classifiers and embedders): inputs from different requests, waiting
//! at the same time, are run through one batched forward. (Within one graph request the
//! coordinator still sends its texts one at a time, as the graph prescribes.)
//!
//! One engine serves one model; what differs between a classifier and an embedder is only
//! the model's `BatchModel` impl: what one input is, and what one answer is.

use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::admission::{take_jobs, Admission, EngineSettings, EngineStats};
use super::cancel::CancelToken;
use super::generation::guarded;
use super::pool::{self, StartGate};
use crate::models::{Classification, Classifier, Embedder, Embedding, ModelError};
use crate::work::{ActorError, WorkSpan};

/// How often `submit_when_room` looks for room in a full queue.
const ROOM_POLL: Duration = Duration::from_millis(2);

/// A model whose inputs batch: many in, one answer each, in order.
pub trait BatchModel: Send + 'static {
    type Input: Send + 'static;
    type Output: Send + 'static;
    /// What the log calls a batch's inputs.
    const WHAT: &'static str;
    fn run_batch(&self, inputs: &[&Self::Input]) -> Result<Vec<Self::Output>, ModelError>;
}

impl BatchModel for Classifier {
    /// A text and, for a pair, its second text (BERT's segment B, a reranker's passage).
    type Input = (String, Option<String>);
    type Output = Classification;
    const WHAT: &'static str = "classification";

    fn run_batch(&self, inputs: &[&Self::Input]) -> Result<Vec<Classification>, ModelError> {
        let items: Vec<(&str, Option<&str>)> = inputs
            .iter()
            .map(|(text, pair)| (text.as_str(), pair.as_deref()))
            .collect();
        self.classify_batch(&items)
    }
}

impl BatchModel for Embedder {
    type Input = String;
    type Output = Embedding;
    const WHAT: &'static str = "embedding";

    fn run_batch(&self, inputs: &[&String]) -> Result<Vec<Embedding>, ModelError> {
        let texts: Vec<&str> = inputs.iter().map(|t| t.as_str()).collect();
        self.embed_batch(&texts)
    }
}

/// What the engine answers: the model's output and when its batch ran.
pub type Reply<O> = Result<(O, WorkSpan), ActorError>;

pub struct Job<M: BatchModel> {
    input: M::Input,
    /// When it was queued.
    submitted: Instant,
    cancel: CancelToken,
    reply: oneshot::Sender<Reply<M::Output>>,
}

/// A handle to a running encoder engine; clones share it.
pub struct BatchEngine<M: BatchModel> {
    admission: Admission<Job<M>>,
}

impl<M: BatchModel> Clone for BatchEngine<M> {
    fn clone(&self) -> Self {
        Self {
            admission: self.admission.clone(),
        }
    }
}

/// The classifier's engine.
pub type ClassificationEngine = BatchEngine<Classifier>;
/// An embedder's engine.
pub type EmbeddingEngine = BatchEngine<Embedder>;

impl<M: BatchModel> BatchEngine<M> {
    /// Starts the engine's thread, which owns `model` from now on.
    pub fn start(name: &str, model: M, settings: EngineSettings) -> Self {
        Self::start_held(name, model, settings).0
    }

    /// Like `start`, but the engine takes no job until the returned gate is dropped.
    pub fn start_held(name: &str, model: M, settings: EngineSettings) -> (Self, StartGate) {
        let max_batch = settings.max_batch.max(1);
        let (admission, jobs) = Admission::new(name, settings);
        let stats = admission.stats().clone();
        let engine = name.to_string();
        let gate = pool::spawn_engine(name, move || run(&engine, &model, max_batch, &stats, jobs));
        (Self { admission }, gate)
    }

    fn job(input: M::Input, cancel: CancelToken) -> (Job<M>, oneshot::Receiver<Reply<M::Output>>) {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            input,
            submitted: Instant::now(),
            cancel,
            reply,
        };
        (job, answer)
    }

    /// Queues an input, or refuses it at once when the queue is full.
    pub fn submit(
        &self,
        input: M::Input,
        cancel: CancelToken,
    ) -> Result<oneshot::Receiver<Reply<M::Output>>, ActorError> {
        let (job, answer) = Self::job(input, cancel);
        self.admission.submit(job)?;
        Ok(answer)
    }

    /// Queues an input, waiting for room while the queue is full, until `cancel` is set.
    ///
    /// For requests the server has already admitted (the entrance refuses new ones
    /// while any queue is full): refusing one now would throw away its finished generations.
    pub async fn submit_when_room(
        &self,
        input: M::Input,
        cancel: CancelToken,
    ) -> Result<oneshot::Receiver<Reply<M::Output>>, ActorError> {
        let (mut job, answer) = Self::job(input, cancel.clone());
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
    pub fn admission(&self) -> &Admission<Job<M>> {
        &self.admission
    }
}

fn run<M: BatchModel>(
    name: &str,
    model: &M,
    max_batch: usize,
    stats: &Arc<EngineStats>,
    jobs: Receiver<Job<M>>,
) {
    while let Some(taken) = take_jobs(&jobs, stats, max_batch, true) {
        let (cancelled, batch): (Vec<Job<M>>, Vec<Job<M>>) =
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
        let inputs: Vec<&M::Input> = batch.iter().map(|j| &j.input).collect();
        let result = guarded(|| model.run_batch(&inputs));
        let finished = Instant::now();
        stats.steps.fetch_add(1, Ordering::Relaxed);
        stats.record_forward(batch.len(), finished - started);
        let span = |job: &Job<M>| WorkSpan {
            queued: job.submitted,
            started,
            finished,
            batch_size: batch.len(),
        };
        stats.active.store(0, Ordering::Release);
        match result {
            Ok(outputs) => {
                stats
                    .completed
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                let spans: Vec<WorkSpan> = batch.iter().map(span).collect();
                for ((job, output), span) in batch.into_iter().zip(outputs).zip(spans) {
                    let _ = job.reply.send(Ok((output, span)));
                }
            }
            Err(message) => {
                stats.restarts.fetch_add(1, Ordering::Relaxed);
                tracing::error!(model = name, inputs = batch.len(), %message, "{} batch failed; its requests get an error", M::WHAT);
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
