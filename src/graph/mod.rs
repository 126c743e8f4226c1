//! The graph coordinator: the inference graph as an actor.
//!
//! ORDER: a `RunGraph` goes to every generator at once and waits for all of them; only then
//! are the generated texts classified, one at a time, in generator order. Results come back
//! in generator order too.
//!
//! STREAMING: with `RunGraph::events`, every token, every finished generation and every
//! score is sent as it happens; a model's tokens all precede its `Generated` event, and all
//! `Generated` events precede the first `Classified`.
//!
//! FAILURE: the first failing step fails the request with that step's error; other
//! requests and the actors themselves are untouched.

pub mod loader;

use std::time::{Duration, Instant};

use actix::{Actor, Context, Handler, Message, Recipient, ResponseFuture};
use futures_util::future::join_all;
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::actors::{CallContext, Classify, Generate};
use crate::engine::generation::TokenEvent;
use crate::models::{Classification, FinishReason, Generation, GenerationParams};
use crate::work::{ActorError, WorkSpan};

/// A model actor, local or remote (whichever takes `M`), and the name its results are
/// reported under.
pub struct Named<M: Message + Send>
where
    M::Result: Send,
{
    pub name: String,
    pub addr: Recipient<M>,
}

// Not derived: the derive would demand `M: Clone`, and messages are not.
impl<M: Message + Send> Clone for Named<M>
where
    M::Result: Send,
{
    fn clone(&self) -> Self {
        Self {
            name: self.name.clone(),
            addr: self.addr.clone(),
        }
    }
}

pub struct GraphCoordinator {
    /// In the order results are reported and classified.
    generators: Vec<Named<Generate>>,
    classifier: Named<Classify>,
}

impl GraphCoordinator {
    pub fn new(generators: Vec<Named<Generate>>, classifier: Named<Classify>) -> Self {
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
    /// For streaming requests: where progress goes as it happens.
    pub events: Option<mpsc::UnboundedSender<GraphEvent>>,
    pub text: String,
    pub params: GenerationParams,
    /// The request it serves; its cancellation drops pending steps, its span holds them.
    pub context: CallContext,
}

impl Message for RunGraph {
    type Result = Result<GraphOutcome, ActorError>;
}

/// Progress of a streaming graph request, in the order the graph makes it.
#[derive(Debug, Clone)]
pub enum GraphEvent {
    /// A generator produced a token.
    Token { model: String, token: TokenEvent },
    /// A generator finished; `text` is prompt plus continuation.
    Generated {
        model: String,
        text: String,
        finish_reason: FinishReason,
    },
    /// The classifier scored `model`'s text.
    Classified {
        model: String,
        score: f32,
        label: String,
    },
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
        let span = tracing::info_span!(parent: &msg.context.parent, "graph");
        let generators = self.generators.clone();
        let classifier = self.classifier.clone();
        Box::pin(
            async move {
                let parent = tracing::Span::current();
                tracing::info!(generators = generators.len(), "graph started");
                let runs = generators.iter().map(|g| {
                    // A streaming request's tokens go through a channel per generator,
                    // relayed with the model's name until the engine closes it.
                    let (tokens, mut relay) = match &msg.events {
                        Some(_) => {
                            let (tx, rx) = mpsc::unbounded_channel();
                            (Some(tx), Some(rx))
                        }
                        None => (None, None),
                    };
                    let reply = g.addr.send(Generate {
                        prompt: msg.text.clone(),
                        params: msg.params.clone(),
                        events: tokens,
                        context: CallContext {
                            parent: parent.clone(),
                            ..msg.context.clone()
                        },
                    });
                    let events = msg.events.clone();
                    async move {
                        let forward = async {
                            if let (Some(relay), Some(events)) = (relay.as_mut(), &events) {
                                while let Some(token) = relay.recv().await {
                                    let model = g.name.clone();
                                    let _ = events.send(GraphEvent::Token { model, token });
                                }
                            }
                        };
                        // The relay ends when the engine answers, so every token of this
                        // model is out before its `Generated` event.
                        let (reply, ()) = futures_util::join!(reply, forward);
                        let reply = reply.map_err(|_| ActorError::Unavailable {
                            model: g.name.clone(),
                        })??;
                        if let Some(events) = &events {
                            let _ = events.send(GraphEvent::Generated {
                                model: g.name.clone(),
                                text: reply.generation.text.clone(),
                                finish_reason: reply.generation.finish_reason,
                            });
                        }
                        Ok::<_, ActorError>((g.name.clone(), reply))
                    }
                });
                let mut generated = Vec::with_capacity(generators.len());
                for run in join_all(runs).await {
                    generated.push(run?);
                }
                let mut results = Vec::with_capacity(generated.len());
                for (model, output) in generated {
                    if msg.context.cancel.is_cancelled() {
                        return Err(ActorError::Cancelled);
                    }
                    let classified = classifier
                        .addr
                        .send(Classify {
                            text: output.generation.text.clone(),
                            pair: None,
                            context: CallContext {
                                parent: parent.clone(),
                                ..msg.context.clone()
                            },
                        })
                        .await
                        .map_err(|_| ActorError::Unavailable {
                            model: classifier.name.clone(),
                        })??;
                    if let Some(events) = &msg.events {
                        let _ = events.send(GraphEvent::Classified {
                            model: model.clone(),
                            score: classified.classification.score,
                            label: classified.classification.label.clone(),
                        });
                    }
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
