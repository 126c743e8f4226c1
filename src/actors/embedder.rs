//! An embedder's actor: the handle on a sentence-embedding model, whose engine batches texts
//! from concurrent requests on the model's own thread, as the classifier's does.

use actix::{Actor, Context, Handler, Message, ResponseFuture};

use super::CallContext;
use crate::engine::{EmbeddingEngine, EngineSettings};
use crate::models::{Embedder, Embedding};
use crate::work::{ActorError, WorkSpan};

pub struct EmbedderActor {
    /// The name the model is known by.
    name: String,
    /// Owns the model; the actor only forwards work to it, so it never blocks its arbiter.
    engine: EmbeddingEngine,
}

impl Actor for EmbedderActor {
    type Context = Context<Self>;
}

impl EmbedderActor {
    /// Starts the model's engine thread; `start()` the returned actor on an arbiter.
    pub fn new(name: String, embedder: Embedder, settings: EngineSettings) -> Self {
        let engine = EmbeddingEngine::start(&name, embedder, settings);
        Self { name, engine }
    }

    pub fn engine(&self) -> &EmbeddingEngine {
        &self.engine
    }
}

/// Embed `text`. Sent for requests already admitted, so a full queue is waited out.
pub struct Embed {
    pub text: String,
    /// The request it serves: ids, deadline, cancellation, span.
    pub context: CallContext,
}

impl Message for Embed {
    type Result = Result<Embedded, ActorError>;
}

pub struct Embedded {
    pub embedding: Embedding,
    pub span: WorkSpan,
}

impl Handler<Embed> for EmbedderActor {
    type Result = ResponseFuture<Result<Embedded, ActorError>>;

    fn handle(&mut self, msg: Embed, _: &mut Context<Self>) -> Self::Result {
        let context = msg.context;
        let span = tracing::info_span!(parent: &context.parent, "embed", model = %self.name, request_id = %context.request_id);
        let engine = self.engine.clone();
        let model = self.name.clone();
        Box::pin(async move {
            let (embedding, span_times) = engine
                .submit_when_room(msg.text, context.cancel)
                .await?
                .await
                .map_err(|_| ActorError::Unavailable { model })??;
            tracing::debug!(parent: &span, tokens = embedding.input_ids.len(), "embedded");
            Ok(Embedded {
                embedding,
                span: span_times,
            })
        })
    }
}
