//! The classifier actor: owns one BERT model and scores texts with it.

use std::sync::Arc;

use actix::{Actor, Addr, Handler, Message, SyncArbiter, SyncContext};

use super::{run_guarded, ActorError, WorkSpan};
use crate::models::{Classification, Classifier};

pub struct ClassifierActor {
    /// The name the model is known by.
    name: String,
    /// Shared with the arbiter's factory, which builds the actor on its thread.
    classifier: Arc<Classifier>,
}

impl Actor for ClassifierActor {
    type Context = SyncContext<Self>;
}

impl ClassifierActor {
    /// Starts the actor on a thread of its own.
    pub fn start(name: String, classifier: Classifier) -> Addr<Self> {
        let classifier = Arc::new(classifier);
        SyncArbiter::start(1, move || ClassifierActor {
            name: name.clone(),
            classifier: classifier.clone(),
        })
    }
}

/// Score `text`.
pub struct Classify {
    pub text: String,
    /// The request this work is for, recorded on the actor's span.
    pub request_id: String,
    /// The HTTP request's span: the actor's work is recorded as its child.
    pub parent: tracing::Span,
}

impl Message for Classify {
    type Result = Result<Classified, ActorError>;
}

pub struct Classified {
    pub classification: Classification,
    pub span: WorkSpan,
}

impl Handler<Classify> for ClassifierActor {
    type Result = Result<Classified, ActorError>;

    fn handle(&mut self, msg: Classify, _: &mut SyncContext<Self>) -> Self::Result {
        let _span =
            tracing::info_span!(parent: &msg.parent, "classify", model = %self.name, request_id = %msg.request_id).entered();
        let (classification, span) =
            run_guarded(&self.name, || self.classifier.classify(&msg.text, None))?;
        tracing::debug!(label = %classification.label, score = classification.score, "classified");
        Ok(Classified {
            classification,
            span,
        })
    }
}
