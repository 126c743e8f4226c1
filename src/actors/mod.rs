//! One actix actor per model, each owning its burn model on its own OS thread.
//!
//! THREADING: every model actor runs in a `SyncArbiter` of one thread, so model math never
//! blocks an actix arbiter or an HTTP worker, and one model's work never waits on another's.
//!
//! FAILURE: model calls run under `catch_unwind`. A panic inside a model becomes that
//! request's error (a 500), and the actor, its thread and its model go on serving.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use crate::models::ModelError;

pub mod classifier;
pub mod generator;

pub use classifier::{Classified, ClassifierActor, Classify};
pub use generator::{Generate, Generated, GeneratorActor};

/// When an actor started and finished one piece of model work, as it measured them.
#[derive(Debug, Clone, Copy)]
pub struct WorkSpan {
    pub started: Instant,
    pub finished: Instant,
}

/// Why a model actor could not answer.
#[derive(Debug, thiserror::Error)]
pub enum ActorError {
    /// The model refused or failed the input; `InvalidInput` is the caller's fault.
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("model {model:?} panicked: {message}")]
    Panicked { model: String, message: String },
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

/// The text a panic was raised with.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// Runs `work` on the current (actor) thread, turning a panic into an error, and records
/// when it ran.
fn run_guarded<T>(
    model: &str,
    work: impl FnOnce() -> Result<T, ModelError>,
) -> Result<(T, WorkSpan), ActorError> {
    let started = Instant::now();
    let result = catch_unwind(AssertUnwindSafe(work)).map_err(|payload| {
        let message = panic_message(payload.as_ref());
        tracing::error!(model, %message, "model panicked; the actor carries on");
        ActorError::Panicked {
            model: model.to_string(),
            message,
        }
    })?;
    let span = WorkSpan {
        started,
        finished: Instant::now(),
    };
    Ok((result?, span))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_in_model_work_becomes_that_requests_error() {
        let result: Result<((), WorkSpan), ActorError> =
            run_guarded("gpt2", || panic!("index out of bounds"));
        match result {
            Err(ActorError::Panicked { model, message }) => {
                assert_eq!(model, "gpt2");
                assert_eq!(message, "index out of bounds");
            }
            _ => panic!("expected a panic error"),
        }
        // The thread that ran it is still usable.
        let (value, span) = run_guarded("gpt2", || Ok(7)).unwrap();
        assert_eq!(value, 7);
        assert!(span.finished >= span.started);
    }

    #[test]
    fn a_model_error_passes_through_unchanged() {
        let result: Result<((), WorkSpan), ActorError> =
            run_guarded("bert", || Err(ModelError::InvalidInput("empty".into())));
        assert!(matches!(
            result,
            Err(ActorError::Model(ModelError::InvalidInput(_)))
        ));
    }
}
