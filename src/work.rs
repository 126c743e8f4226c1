//! What a model's work reports to whoever asked for it, local or across a hop: when it ran
//! (`WorkSpan`) and why it could not be done (`ActorError`). Below the engines, the actors
//! and the graph, which all speak it.

use std::time::Instant;

use crate::models::ModelError;

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

/// Why a model actor (or the graph calling it) could not answer.
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
    /// A graph's switch step found no case for an item, and has no `otherwise`.
    #[error(
        "graph {graph:?} step {step:?}: no case matches {detail}, and the step has no `otherwise`"
    )]
    NoRoute {
        graph: String,
        step: String,
        detail: String,
    },
    /// A model served by another node could not be reached, or stopped answering.
    #[error("model {model:?} at {url} is unavailable: {reason}")]
    Unreachable {
        model: String,
        url: String,
        reason: String,
    },
}
