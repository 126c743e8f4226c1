//! The generation engine behind each generator actor: continuous batching on the model's
//! own thread.
//!
//! BATCHING: between decode steps the engine admits queued requests (prefilled together,
//! then merged into the running batch) up to `engine.max_batch`, and retires finished or
//! cancelled ones. One batched forward serves every active sequence; each sequence keeps
//! its own sampler and RNG, so its tokens do not depend on what it is batched with.
//!
//! BACKPRESSURE: each engine has a bounded admission queue (`engine.queue_capacity`). A
//! request that finds it full is refused at once (HTTP 429 with `Retry-After`), so nothing
//! waits unboundedly, and every accepted request gets exactly one answer. Refusal happens at
//! the graph's entrance only: a graph request past it, whose generations are done, waits for
//! room in the classifier's queue (until its timeout or its client leaves) rather than
//! losing that work to a 429.
//!
//! CANCELLATION: every request carries a `CancelToken`, set when whoever waits for it goes
//! away (its HTTP handler timed out or was dropped, its client disconnected). A queued request
//! that is cancelled never starts; a running one leaves the batch before the next step.
//!
//! FAILURE: a panic or error inside a prefill or decode step answers the requests of that
//! step with an error (HTTP 500). The engine then drops the batch's state and carries on
//! with the same model, so the next request succeeds.

pub mod admission;
pub mod cancel;
pub mod classification;
pub mod generation;
pub mod pool;

pub use admission::{Admission, EngineSettings, EngineStats};
pub use cancel::{CancelOnDrop, CancelToken};
pub use classification::{BatchEngine, BatchModel, ClassificationEngine, EmbeddingEngine};
pub use generation::GenerationEngine;
pub use pool::StartGate;
