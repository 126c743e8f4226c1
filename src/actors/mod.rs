//! One actix actor per model. A local one owns an engine (`crate::engine`) whose thread
//! owns the burn model; a remote one (`remote.rs`) owns the HTTP hop to the model nodes that
//! serve it. Both take the same messages, so their callers cannot tell them apart.
//!
//! THREADING: model math runs only on the engine's own OS thread, so it never blocks an
//! actix arbiter or an HTTP worker, and one model's work never waits on another's. The
//! actor itself only forwards messages and awaits answers.
//!
//! FAILURE: model work runs under `catch_unwind`. A panic inside a model becomes the
//! affected requests' error (a 500), and the actor, its engine and its model go on serving.

pub mod classifier;
pub mod embedder;
pub mod generator;
pub mod remote;

use std::time::{Duration, Instant};

use crate::engine::CancelToken;

pub use classifier::{Classified, ClassifierActor, Classify};
pub use embedder::{Embed, Embedded, EmbedderActor};
pub use generator::{Generate, Generated, GeneratorActor};

/// What every model call carries about the request it serves, to a local engine or across
/// a hop to another node.
#[derive(Debug, Clone)]
pub struct CallContext {
    /// The request's id (`x-request-id`), recorded on spans and passed on.
    pub request_id: String,
    /// The request's trace id (W3C `traceparent`), the same on every node it crosses.
    pub trace_id: String,
    /// When the request's time is up; a node across a hop is told how much is left.
    pub deadline: Option<Instant>,
    /// The time the request was granted in all, in milliseconds, for its 504's message.
    pub timeout_ms: u64,
    /// Set when the answer is no longer wanted; the work is then dropped.
    pub cancel: CancelToken,
    /// The HTTP request's span: the actor's work is recorded as its child.
    pub parent: tracing::Span,
}

impl CallContext {
    /// A call outside any HTTP request (load tests, benches): fresh ids, no deadline.
    pub fn detached(request_id: String) -> Self {
        Self {
            request_id,
            trace_id: uuid::Uuid::new_v4().simple().to_string(),
            deadline: None,
            timeout_ms: 0,
            cancel: CancelToken::new(),
            parent: tracing::Span::none(),
        }
    }

    /// The time left before the deadline, if there is one.
    pub fn remaining(&self) -> Option<Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }
}
