//! The graph coordinator: the configured inference graphs (`config::graphs`) as an actor.
//!
//! ORDER: steps run one after the other, each on the request's text or on the results of
//! the step before. Within a step, `parallel` sends every call at once and waits for all of
//! them; `each`, `switch` and `split` call once per input item, one at a time. Results keep
//! their order: input item by input item, calls in the listed order.
//!
//! STREAMING: with `RunGraph::events`, every token, every finished call, every routing
//! choice and every skipped failure is sent as it happens, tagged with its step. Every
//! event of a step precedes every event of the next; a generator's tokens precede its
//! `Generated` event.
//!
//! FAILURE: a failing call in a step with `on_error = "fail"` fails the request with that
//! call's error (after the step's other calls in flight are done); with `"continue"`, its
//! result is left out and the failure named in the outcome. Cancellation always ends the
//! request. Other requests and the actors themselves are untouched.

pub mod loader;
mod run;
pub mod trace;

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{Actor, Context, Handler, Message, Recipient, ResponseFuture};
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::actors::{CallContext, Classify, Embed, Generate};
use crate::config::graphs::{Action, GraphSpec};
use crate::engine::generation::TokenEvent;
use crate::models::{Classification, FinishReason, Generation, GenerationParams};
use crate::telemetry::metrics::ServerMetrics;
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

/// The actors the graphs call, by name.
pub struct GraphModels {
    pub generators: Vec<Named<Generate>>,
    pub classifiers: Vec<Named<Classify>>,
    pub embedders: Vec<Named<Embed>>,
}

pub struct GraphCoordinator {
    /// The config's graphs, in order; `RunGraph::graph` indexes them.
    graphs: Vec<Arc<GraphSpec>>,
    models: Arc<GraphModels>,
}

impl GraphCoordinator {
    /// `graphs` must only call models in `models` (`config::graphs` checks it at start).
    pub fn new(graphs: Vec<Arc<GraphSpec>>, models: GraphModels) -> Self {
        Self {
            graphs,
            models: Arc::new(models),
        }
    }
}

impl Actor for GraphCoordinator {
    type Context = Context<Self>;
}

/// Run one graph on `text`.
pub struct RunGraph {
    /// Which graph: an index into the config's `graphs`.
    pub graph: usize,
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

/// Progress of a streaming graph request, in the order the graph makes it; `step` names
/// the step each comes from.
#[derive(Debug, Clone)]
pub enum GraphEvent {
    /// A generator produced a token.
    Token {
        step: String,
        model: String,
        token: TokenEvent,
    },
    /// A generator finished; `text` is prompt plus continuation.
    Generated {
        step: String,
        model: String,
        text: String,
        finish_reason: FinishReason,
    },
    /// A classifier scored the text of `of` (the generator that wrote it; `None` for the
    /// request's own text).
    Classified {
        step: String,
        of: Option<String>,
        classifier: String,
        score: f32,
        label: String,
    },
    /// A switch or split step sent the item `of` to `to`.
    Routed {
        step: String,
        of: Option<String>,
        to: String,
        reason: String,
    },
    /// A select step kept the item `of`.
    Selected {
        step: String,
        of: Option<String>,
        score: f32,
    },
    /// A call failed in a step that carries on without its result.
    Skipped { step: String, failure: StepFailure },
}

/// One result flowing between steps: a text, what made it, and its score once classified.
#[derive(Debug, Clone)]
pub struct Item {
    /// The generator that wrote `text`; `None` for the request's own text.
    pub source: Option<String>,
    pub text: String,
    /// The generation that made `text`, when a generator did.
    pub generation: Option<Generation>,
    /// `text`'s score and the classifier that gave it. A generate call clears it: it
    /// scored the old text.
    pub classification: Option<(String, Classification)>,
}

impl Item {
    fn request(text: &str) -> Self {
        Self {
            source: None,
            text: text.to_string(),
            generation: None,
            classification: None,
        }
    }

    pub fn score(&self) -> Option<f32> {
        self.classification.as_ref().map(|(_, c)| c.score)
    }
}

/// One model call a request made.
#[derive(Debug, Clone)]
pub struct CallRecord {
    pub action: Action,
    /// The model called.
    pub model: String,
    /// Whose text it took: the generator that wrote it, `None` for the request's text.
    pub of: Option<String>,
    pub span: WorkSpan,
    /// What the call made: the new item.
    pub made: Item,
}

/// A call that failed in a step that carried on (`on_error = "continue"`).
#[derive(Debug, Clone)]
pub struct StepFailure {
    /// The model that failed; `None` when no model was called (no switch case matched).
    pub model: Option<String>,
    /// Whose text the call took.
    pub of: Option<String>,
    pub error: Arc<ActorError>,
}

/// A routing choice of a switch or split step.
#[derive(Debug, Clone)]
pub struct Route {
    pub of: Option<String>,
    pub to: String,
    /// What chose it: the case that matched, or the split's draw.
    pub reason: String,
}

/// What one step did.
#[derive(Debug, Clone)]
pub struct StepOutcome {
    pub name: String,
    /// `parallel`, `each`, `switch`, `split` or `select`.
    pub kind: &'static str,
    pub started: Instant,
    pub finished: Instant,
    /// Its results, the next step's input.
    pub items: Vec<Item>,
    /// Its model calls, in the order they were sent.
    pub calls: Vec<CallRecord>,
    pub routes: Vec<Route>,
    pub failures: Vec<StepFailure>,
}

#[derive(Debug, Clone)]
pub struct GraphOutcome {
    pub graph: Arc<GraphSpec>,
    /// The last step's results.
    pub results: Vec<Item>,
    /// Every step, in order.
    pub steps: Vec<StepOutcome>,
    /// When the coordinator received the request; work spans are relative to it.
    pub received: Instant,
    pub total: Duration,
}

impl GraphOutcome {
    /// Counts what its steps did in `metrics`.
    pub fn record_metrics(&self, metrics: &ServerMetrics) {
        for step in &self.steps {
            let skipped: Vec<&str> = step
                .failures
                .iter()
                .map(|f| f.model.as_deref().unwrap_or_default())
                .collect();
            let routed: Vec<&str> = step.routes.iter().map(|r| r.to.as_str()).collect();
            let seconds = (step.finished - step.started).as_secs_f64();
            metrics.record_graph_step(&self.graph.name, &step.name, seconds, &skipped, &routed);
        }
    }

    /// Every model call, step by step.
    pub fn calls(&self) -> impl Iterator<Item = &CallRecord> {
        self.steps.iter().flat_map(|s| &s.calls)
    }

    /// Tokens generated by every generate call (also those a later step left out).
    pub fn generated_tokens(&self) -> usize {
        self.calls()
            .filter(|c| c.action == Action::Generate)
            .filter_map(|c| c.made.generation.as_ref())
            .map(|g| g.new_token_ids.len())
            .sum()
    }
}

impl Handler<RunGraph> for GraphCoordinator {
    type Result = ResponseFuture<Result<GraphOutcome, ActorError>>;

    fn handle(&mut self, msg: RunGraph, _: &mut Context<Self>) -> Self::Result {
        let received = Instant::now();
        let graph = self.graphs[msg.graph].clone();
        let span = tracing::info_span!(parent: &msg.context.parent, "graph", graph = %graph.name);
        let run = run::GraphRun {
            graph,
            models: self.models.clone(),
            msg,
        };
        Box::pin(run.execute(received).instrument(span))
    }
}
