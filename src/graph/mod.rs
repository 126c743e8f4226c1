//! The graph coordinator: the inference graph as an actor.
//!
//! ORDER: a `RunGraph` goes to every generator at once and waits for all of them; only then
//! are the generated texts classified, one at a time, in generator order. Results come back
//! in generator order too.
//!
//! FAILURE: the first failing step fails the request with that step's error; other
//! requests and the actors themselves are untouched.

use std::time::{Duration, Instant};

use actix::{Actor, Addr, Context, Handler, Message, ResponseFuture};
use futures_util::future::join_all;
use tracing::Instrument;

use crate::actors::{ActorError, ClassifierActor, Classify, Generate, GeneratorActor, WorkSpan};
use crate::engine::CancelToken;
use crate::models::{Classification, Generation, GenerationParams};

/// A model actor and the name its results are reported under.
pub struct Named<A: Actor> {
    pub name: String,
    pub addr: Addr<A>,
}

// Not derived: the derive would demand `A: Clone`, and actors are not.
impl<A: Actor> Clone for Named<A> {
    fn clone(&self) -> Self {
        Self {
            name: self.name.clone(),
            addr: self.addr.clone(),
        }
    }
}

pub struct GraphCoordinator {
    /// In the order results are reported and classified.
    generators: Vec<Named<GeneratorActor>>,
    classifier: Named<ClassifierActor>,
}

impl GraphCoordinator {
    pub fn new(generators: Vec<Named<GeneratorActor>>, classifier: Named<ClassifierActor>) -> Self {
        Self {
            generators,
            classifier,
        }
    }
}

impl Actor for GraphCoordinator {
    type Context = Context<Self>;
}

/// Run the whole graph on `text`.
pub struct RunGraph {
    pub request_id: String,
    /// Set when the answer is no longer wanted: pending steps are dropped.
    pub cancel: CancelToken,
    pub text: String,
    pub params: GenerationParams,
    /// The HTTP request's span: every step is recorded under it.
    pub parent: tracing::Span,
}

impl Message for RunGraph {
    type Result = Result<GraphOutcome, ActorError>;
}

/// One generator's output and its score.
#[derive(Debug, Clone)]
pub struct ModelResult {
    pub model: String,
    pub generation: Generation,
    pub classification: Classification,
    pub generate: WorkSpan,
    pub classify: WorkSpan,
}

#[derive(Debug, Clone)]
pub struct GraphOutcome {
    /// In generator order.
    pub results: Vec<ModelResult>,
    /// When the coordinator received the request; work spans are relative to it.
    pub received: Instant,
    pub total: Duration,
}

impl Handler<RunGraph> for GraphCoordinator {
    type Result = ResponseFuture<Result<GraphOutcome, ActorError>>;

    fn handle(&mut self, msg: RunGraph, _: &mut Context<Self>) -> Self::Result {
        let received = Instant::now();
        let span = tracing::info_span!(parent: &msg.parent, "graph");
        let generators = self.generators.clone();
        let classifier = self.classifier.clone();
        Box::pin(
            async move {
                let parent = tracing::Span::current();
                tracing::info!(generators = generators.len(), "graph started");
                let sends = generators.iter().map(|g| {
                    g.addr.send(Generate {
                        request_id: msg.request_id.clone(),
                        cancel: msg.cancel.clone(),
                        prompt: msg.text.clone(),
                        params: msg.params.clone(),
                        parent: parent.clone(),
                    })
                });
                let mut generated = Vec::with_capacity(generators.len());
                for (g, reply) in generators.iter().zip(join_all(sends).await) {
                    let reply = reply.map_err(|_| ActorError::Unavailable {
                        model: g.name.clone(),
                    })??;
                    generated.push((g.name.clone(), reply));
                }
                let mut results = Vec::with_capacity(generated.len());
                for (model, output) in generated {
                    if msg.cancel.is_cancelled() {
                        return Err(ActorError::Cancelled);
                    }
                    let classified = classifier
                        .addr
                        .send(Classify {
                            request_id: msg.request_id.clone(),
                            cancel: msg.cancel.clone(),
                            text: output.generation.text.clone(),
                            parent: parent.clone(),
                        })
                        .await
                        .map_err(|_| ActorError::Unavailable {
                            model: classifier.name.clone(),
                        })??;
                    results.push(ModelResult {
                        model,
                        generation: output.generation,
                        classification: classified.classification,
                        generate: output.span,
                        classify: classified.span,
                    });
                }
                let total = received.elapsed();
                tracing::info!(total_ms = total.as_secs_f64() * 1e3, "graph finished");
                Ok(GraphOutcome {
                    results,
                    received,
                    total,
                })
            }
            .instrument(span),
        )
    }
}
