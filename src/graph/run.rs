//! One graph request, run step by step (the ORDER, STREAMING and FAILURE of the module
//! above).

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::Instant;

use futures_util::future::join_all;
use tokio::sync::mpsc;
use tracing::Instrument;

use super::{
    CallRecord, GraphEvent, GraphModels, GraphOutcome, Item, Route, RunGraph, StepFailure,
    StepOutcome,
};
use crate::actors::{CallContext, Classify, Embed, Generate};
use crate::config::graphs::{
    Action, Best, Call, Condition, Framing, GraphSpec, OnError, SplitBranch, StepInput, StepKind,
    StepSpec, SwitchCase,
};
use crate::models::chat::ChatMessage;
use crate::models::embedder::cosine;
use crate::models::{Classification, Prompt};
use crate::work::ActorError;

/// The label of an embed call's score: the cosine similarity to the request's text.
const SIMILARITY: &str = "similarity";

pub(super) struct GraphRun {
    pub graph: Arc<GraphSpec>,
    pub models: Arc<GraphModels>,
    pub msg: RunGraph,
}

impl GraphRun {
    /// Runs every step in order; `received` is when the coordinator got the request.
    pub async fn execute(self, received: Instant) -> Result<GraphOutcome, ActorError> {
        let graph_span = tracing::Span::current();
        tracing::info!(steps = self.graph.steps.len(), "graph started");
        let mut previous = Vec::new();
        let mut steps = Vec::with_capacity(self.graph.steps.len());
        for (index, step) in self.graph.steps.iter().enumerate() {
            if self.msg.context.cancel.is_cancelled() {
                return Err(ActorError::Cancelled);
            }
            let input = match step.input {
                StepInput::Request => vec![Item::request(&self.msg.text)],
                StepInput::Previous => std::mem::take(&mut previous),
            };
            let span = tracing::info_span!(parent: &graph_span, "step", step = %step.name, kind = step.kind.as_str());
            let outcome = StepRun::new(&self, step, index)
                .run(input)
                .instrument(span)
                .await?;
            previous = outcome.items.clone();
            steps.push(outcome);
        }
        let total = received.elapsed();
        tracing::info!(total_ms = total.as_secs_f64() * 1e3, "graph finished");
        Ok(GraphOutcome {
            graph: self.graph,
            results: previous,
            steps,
            received,
            total,
        })
    }

    fn send(&self, event: GraphEvent) {
        if let Some(events) = &self.msg.events {
            let _ = events.send(event);
        }
    }
}

/// One step of one request, gathering what it did.
struct StepRun<'a> {
    run: &'a GraphRun,
    step: &'a StepSpec,
    /// Its position in the graph, from 0 (part of a split's draw).
    index: usize,
    started: Instant,
    calls: Vec<CallRecord>,
    routes: Vec<Route>,
    failures: Vec<StepFailure>,
}

impl<'a> StepRun<'a> {
    fn new(run: &'a GraphRun, step: &'a StepSpec, index: usize) -> Self {
        Self {
            run,
            step,
            index,
            started: Instant::now(),
            calls: Vec::new(),
            routes: Vec::new(),
            failures: Vec::new(),
        }
    }

    async fn run(mut self, input: Vec<Item>) -> Result<StepOutcome, ActorError> {
        let step = self.step;
        let items = match &step.kind {
            StepKind::Parallel(calls) => self.parallel(&input, calls).await?,
            StepKind::Each(call) => {
                let plan = input.iter().map(|item| (item, call)).collect();
                self.one_at_a_time(plan).await?
            }
            StepKind::Switch { cases, otherwise } => {
                let mut plan = Vec::with_capacity(input.len());
                for item in &input {
                    if let Some(call) = self.choose_case(item, cases, otherwise.as_ref())? {
                        plan.push((item, call));
                    }
                }
                self.one_at_a_time(plan).await?
            }
            StepKind::Split(branches) => {
                let (call, reason) = self.draw(branches);
                for item in &input {
                    self.route(item, call, reason.clone());
                }
                let plan = input.iter().map(|item| (item, call)).collect();
                self.one_at_a_time(plan).await?
            }
            StepKind::Select(best) => self.select(input, *best),
        };
        Ok(StepOutcome {
            name: step.name.clone(),
            kind: step.kind.as_str(),
            started: self.started,
            finished: Instant::now(),
            items,
            calls: self.calls,
            routes: self.routes,
            failures: self.failures,
        })
    }

    /// Every call on every item at once; results item by item, calls in order.
    async fn parallel(&mut self, input: &[Item], calls: &[Call]) -> Result<Vec<Item>, ActorError> {
        let plan: Vec<(&Item, &Call)> = input
            .iter()
            .flat_map(|item| calls.iter().map(move |call| (item, call)))
            .collect();
        let this = &*self;
        let replies = join_all(plan.iter().map(|(item, call)| this.call(call, item))).await;
        let mut items = Vec::with_capacity(replies.len());
        let mut first_error = None;
        for ((item, call), reply) in plan.into_iter().zip(replies) {
            match self.settle(reply, call, item) {
                Ok(made) => items.extend(made),
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        match first_error {
            Some(error) => Err(error),
            None => Ok(items),
        }
    }

    /// The planned calls, one after the other.
    async fn one_at_a_time(&mut self, plan: Vec<(&Item, &Call)>) -> Result<Vec<Item>, ActorError> {
        let mut items = Vec::with_capacity(plan.len());
        for (item, call) in plan {
            if self.run.msg.context.cancel.is_cancelled() {
                return Err(ActorError::Cancelled);
            }
            let reply = self.call(call, item).await;
            items.extend(self.settle(reply, call, item)?);
        }
        Ok(items)
    }

    /// A finished call's result for the step: its item, or (carrying on) nothing.
    fn settle(
        &mut self,
        reply: Result<CallRecord, ActorError>,
        call: &Call,
        item: &Item,
    ) -> Result<Option<Item>, ActorError> {
        match reply {
            Ok(record) => {
                let made = record.made.clone();
                self.calls.push(record);
                Ok(Some(made))
            }
            Err(error) => {
                self.carry_on(Some(call.model.clone()), item, error)?;
                Ok(None)
            }
        }
    }

    /// Records `error` and goes on when the step says so; otherwise (and always for a
    /// cancelled request) returns it.
    fn carry_on(
        &mut self,
        model: Option<String>,
        item: &Item,
        error: ActorError,
    ) -> Result<(), ActorError> {
        if self.step.on_error == OnError::Fail || matches!(error, ActorError::Cancelled) {
            return Err(error);
        }
        tracing::warn!(step = %self.step.name, model = ?model, %error, "call failed; the step carries on without it");
        let failure = StepFailure {
            model,
            of: item.source.clone(),
            error: Arc::new(error),
        };
        self.run.send(GraphEvent::Skipped {
            step: self.step.name.clone(),
            failure: failure.clone(),
        });
        self.failures.push(failure);
        Ok(())
    }

    /// The first case whose condition holds for `item`, else `otherwise`; with neither,
    /// the request fails (or the item is left out, carrying on).
    fn choose_case<'c>(
        &mut self,
        item: &Item,
        cases: &'c [SwitchCase],
        otherwise: Option<&'c Call>,
    ) -> Result<Option<&'c Call>, ActorError> {
        let chosen = cases
            .iter()
            .find(|case| holds(&case.when, item))
            .map(|case| (&case.call, case.when.to_string()))
            .or_else(|| otherwise.map(|call| (call, "otherwise".to_string())));
        match chosen {
            Some((call, reason)) => {
                self.route(item, call, reason);
                Ok(Some(call))
            }
            None => {
                let error = ActorError::NoRoute {
                    graph: self.run.graph.name.clone(),
                    step: self.step.name.clone(),
                    detail: describe(item),
                };
                self.carry_on(None, item, error)?;
                Ok(None)
            }
        }
    }

    /// One branch for the whole request, by weight: the same for a given `seed`, so a
    /// seeded request always takes the same branch.
    fn draw<'c>(&self, branches: &'c [SplitBranch]) -> (&'c Call, String) {
        let roll = match self.run.msg.params.sampling.seed {
            Some(seed) => {
                let mut hasher = Fnv::default();
                hasher.write(self.run.graph.name.as_bytes());
                hasher.write(self.step.name.as_bytes());
                hasher.write_u64(self.index as u64);
                mix(seed ^ hasher.finish())
            }
            None => std::collections::hash_map::RandomState::new()
                .build_hasher()
                .finish(),
        } % 100;
        let mut below = 0;
        for branch in branches {
            below += u64::from(branch.weight);
            if roll < below {
                let reason = format!("drew {roll} of 0..100: weight {}", branch.weight);
                return (&branch.call, reason);
            }
        }
        unreachable!("a split's weights add up to 100 (checked at start)")
    }

    fn route(&mut self, item: &Item, call: &Call, reason: String) {
        let route = Route {
            of: item.source.clone(),
            to: call.model.clone(),
            reason,
        };
        self.run.send(GraphEvent::Routed {
            step: self.step.name.clone(),
            of: route.of.clone(),
            to: route.to.clone(),
            reason: route.reason.clone(),
        });
        self.routes.push(route);
    }

    /// The input item with the best score (the first of equals).
    fn select(&self, input: Vec<Item>, best: Best) -> Vec<Item> {
        let better = |a: f32, b: f32| match best {
            Best::HighestScore => a > b,
            Best::LowestScore => a < b,
        };
        let mut kept: Option<Item> = None;
        for item in input {
            let score = item.score().unwrap_or(f32::NAN);
            if kept
                .as_ref()
                .is_none_or(|k| better(score, k.score().unwrap_or(f32::NAN)))
            {
                kept = Some(item);
            }
        }
        if let Some(item) = &kept {
            self.run.send(GraphEvent::Selected {
                step: self.step.name.clone(),
                of: item.source.clone(),
                score: item.score().unwrap_or(f32::NAN),
            });
        }
        kept.into_iter().collect()
    }

    /// One model call on `item`, with its events.
    async fn call(&self, call: &Call, item: &Item) -> Result<CallRecord, ActorError> {
        let models = &self.run.models;
        let unavailable = || ActorError::Unavailable {
            model: call.model.clone(),
        };
        match call.action {
            Action::Generate => {
                let generator = models
                    .generators
                    .iter()
                    .find(|g| g.name == call.model)
                    .ok_or_else(unavailable)?;
                self.generate(&generator.addr, call, item).await
            }
            Action::Classify => {
                let classifier = models
                    .classifiers
                    .iter()
                    .find(|c| c.name == call.model)
                    .ok_or_else(unavailable)?;
                let reply = classifier
                    .addr
                    .send(Classify {
                        text: item.text.clone(),
                        pair: None,
                        context: self.context(),
                    })
                    .await
                    .map_err(|_| unavailable())??;
                let c = &reply.classification;
                self.run.send(GraphEvent::Classified {
                    step: self.step.name.clone(),
                    of: item.source.clone(),
                    classifier: call.model.clone(),
                    score: c.score,
                    label: c.label.clone(),
                });
                Ok(CallRecord {
                    action: call.action,
                    model: call.model.clone(),
                    of: item.source.clone(),
                    span: reply.span,
                    made: Item {
                        classification: Some((call.model.clone(), reply.classification)),
                        ..item.clone()
                    },
                })
            }
            Action::Embed => {
                let embedder = models
                    .embedders
                    .iter()
                    .find(|e| e.name == call.model)
                    .ok_or_else(unavailable)?;
                let embed = |text: &str| {
                    embedder.addr.send(Embed {
                        text: text.to_string(),
                        context: self.context(),
                    })
                };
                // Both texts go to the engine at once, so they share a forward.
                let (request, answer) =
                    futures_util::join!(embed(&self.run.msg.text), embed(&item.text));
                let request = request.map_err(|_| unavailable())??;
                let answer = answer.map_err(|_| unavailable())??;
                let similarity = cosine(&request.embedding.embedding, &answer.embedding.embedding);
                self.run.send(GraphEvent::Classified {
                    step: self.step.name.clone(),
                    of: item.source.clone(),
                    classifier: call.model.clone(),
                    score: similarity,
                    label: SIMILARITY.into(),
                });
                // The score a switch or select reads, shaped as a one-label classification.
                let scored = Classification {
                    input_ids: answer.embedding.input_ids,
                    logits: vec![similarity],
                    scores: vec![similarity],
                    label: SIMILARITY.into(),
                    score: similarity,
                };
                Ok(CallRecord {
                    action: call.action,
                    model: call.model.clone(),
                    of: item.source.clone(),
                    span: answer.span,
                    made: Item {
                        classification: Some((call.model.clone(), scored)),
                        ..item.clone()
                    },
                })
            }
        }
    }

    async fn generate(
        &self,
        generator: &actix::Recipient<Generate>,
        call: &Call,
        item: &Item,
    ) -> Result<CallRecord, ActorError> {
        // A streaming request's tokens go through a channel per call, relayed with the
        // step and the model until the engine closes it.
        let (tokens, mut relay) = match &self.run.msg.events {
            Some(_) => {
                let (tx, rx) = mpsc::unbounded_channel();
                (Some(tx), Some(rx))
            }
            None => (None, None),
        };
        let fill = |template: &str| Framing::fill(template, &item.text);
        let prompt = match &call.framing {
            None => Prompt::Text(item.text.clone()),
            Some(Framing::Prompt(template)) => Prompt::Text(fill(template)),
            Some(Framing::Chat { system, user }) => Prompt::Chat(
                system
                    .iter()
                    .map(|s| ("system", fill(s)))
                    .chain([("user", fill(user))])
                    .map(|(role, content)| ChatMessage::new(role, content))
                    .collect::<Vec<_>>()
                    .into(),
            ),
        };
        let reply = generator.send(Generate {
            prompt,
            params: self.run.msg.params.clone(),
            events: tokens,
            context: self.context(),
        });
        let forward = async {
            if let Some(relay) = relay.as_mut() {
                while let Some(token) = relay.recv().await {
                    self.run.send(GraphEvent::Token {
                        step: self.step.name.clone(),
                        model: call.model.clone(),
                        token,
                    });
                }
            }
        };
        // The relay ends when the engine answers, so every token of this call is out
        // before its `Generated` event.
        let (reply, ()) = futures_util::join!(reply, forward);
        let reply = reply.map_err(|_| ActorError::Unavailable {
            model: call.model.clone(),
        })??;
        // A prompt of the step's own is not the item's: the item becomes the answer alone.
        let text = match call.framing {
            Some(_) => reply.generation.new_text.clone(),
            None => reply.generation.text.clone(),
        };
        self.run.send(GraphEvent::Generated {
            step: self.step.name.clone(),
            model: call.model.clone(),
            text: text.clone(),
            finish_reason: reply.generation.finish_reason,
        });
        Ok(CallRecord {
            action: call.action,
            model: call.model.clone(),
            of: item.source.clone(),
            span: reply.span,
            made: Item {
                source: Some(call.model.clone()),
                text,
                generation: Some(reply.generation),
                classification: None,
            },
        })
    }

    /// The request's context, with this step's span as the call's parent.
    fn context(&self) -> CallContext {
        CallContext {
            parent: tracing::Span::current(),
            ..self.run.msg.context.clone()
        }
    }
}

fn holds(condition: &Condition, item: &Item) -> bool {
    let classification = item.classification.as_ref().map(|(_, c)| c);
    match condition {
        Condition::Label(label) => classification.is_some_and(|c| &c.label == label),
        Condition::ScoreAbove(x) => classification.is_some_and(|c| f64::from(c.score) > *x),
        Condition::ScoreBelow(x) => classification.is_some_and(|c| f64::from(c.score) < *x),
        Condition::TextContains(needle) => item.text.contains(needle.as_str()),
    }
}

/// An item as a switch's "no case matches" names it.
fn describe(item: &Item) -> String {
    let whose = match &item.source {
        Some(model) => format!("{model}'s text"),
        None => "the request's text".into(),
    };
    match &item.classification {
        Some((_, c)) => format!("{whose} (label {:?}, score {:.4})", c.label, c.score),
        None => whose,
    }
}

/// FNV-1a: a fixed hash (unlike std's, which is seeded per process), so a seeded split
/// draws the same branch on every server.
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0 ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// splitmix64's finaliser: consecutive seeds give unrelated draws.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}
