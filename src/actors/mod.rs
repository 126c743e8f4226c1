//! One actix actor per model. Each owns an engine (`crate::engine`) whose thread owns the
//! burn model.
//!
//! THREADING: model math runs only on the engine's own OS thread, so it never blocks an
//! actix arbiter or an HTTP worker, and one model's work never waits on another's. The
//! actor itself only forwards messages and awaits answers.
//!
//! FAILURE: model work runs under `catch_unwind`. A panic inside a model becomes the
//! affected requests' error (a 500), and the actor, its engine and its model go on serving.

use std::time::Instant;

use crate::models::ModelError;

pub mod classifier;
pub mod generator;

pub use classifier::{Classified, ClassifierActor, Classify};
pub use generator::{Generate, Generated, GeneratorActor};

/// When an engine queued, started and finished one request's model work, as it measured
/// them, and how many requests shared its batch.
#[derive(Debug, Clone, Copy)]
pub struct WorkSpan {
    /// When the request reached the engine's queue.
    pub queued: Instant,
    pub started: Instant,
    pub finished: Instant,
    /// Requests in the batch when this one joined it.
    pub batch_size: usize,
}

/// Why a model actor could not answer.
#[derive(Debug, thiserror::Error)]
pub enum ActorError {
    /// The model refused or failed the input; `InvalidInput` is the caller's fault.
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("model {model:?} is not running")]
    Unavailable { model: String },
    #[error("model {model:?} is at capacity: its queue is full")]
    Overloaded { model: String },
    #[error("the request was cancelled")]
    Cancelled,
    /// A batched step failed; every request in it gets this.
    #[error("model {model:?} failed: {message}")]
    Failed { model: String, message: String },
}
