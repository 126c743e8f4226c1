//! The classifier actor: the graph's handle on the BERT model, whose engine batches texts
//! from concurrent graph requests on the model's own thread.

use actix::{Actor, Context, Handler, Message, ResponseFuture};

use super::CallContext;
use crate::engine::{ClassificationEngine, EngineSettings};
use crate::models::{Classification, Classifier};
use crate::work::{ActorError, WorkSpan};

pub struct ClassifierActor {
    /// The name the model is known by.
    name: String,
    /// Owns the model; the actor only forwards work to it, so it never blocks its arbiter.
    engine: ClassificationEngine,
}

impl Actor for ClassifierActor {
    type Context = Context<Self>;
}

impl ClassifierActor {
    /// Starts the model's engine thread; `start()` the returned actor on an arbiter.
    pub fn new(name: String, classifier: Classifier, settings: EngineSettings) -> Self {
        let engine = ClassificationEngine::start(&name, classifier, settings);
        Self { name, engine }
    }

    pub fn engine(&self) -> &ClassificationEngine {
        &self.engine
    }
}

/// Score `text` (with `pair` as its second segment, if any). Sent for requests already
/// admitted, so a full queue is waited out, never refused.
pub struct Classify {
    pub text: String,
    pub pair: Option<String>,
    /// The request it serves: ids, deadline, cancellation, span.
    pub context: CallContext,
}

impl Message for Classify {
    type Result = Result<Classified, ActorError>;
}

pub struct Classified {
    pub classification: Classification,
    pub span: WorkSpan,
}

impl Handler<Classify> for ClassifierActor {
    type Result = ResponseFuture<Result<Classified, ActorError>>;

    fn handle(&mut self, msg: Classify, _: &mut Context<Self>) -> Self::Result {
        let context = msg.context;
        let span = tracing::info_span!(parent: &context.parent, "classify", model = %self.name, request_id = %context.request_id);
        let engine = self.engine.clone();
        let model = self.name.clone();
        Box::pin(async move {
            let (classification, span_times) = engine
                .submit_when_room((msg.text, msg.pair), context.cancel)
                .await?
                .await
                .map_err(|_| ActorError::Unavailable { model })??;
            tracing::debug!(parent: &span, label = %classification.label, score = classification.score, "classified");
            Ok(Classified {
                classification,
                span: span_times,
            })
        })
    }
}
