//! Running a graph for a route: the admission checks (readiness, the graph, the text, room
//! in the queues), the run through the coordinator with its metrics and trace, and the
//! answer's shape. The graph routes (`handlers.rs`) and the streaming ones (`stream.rs`)
//! share it.

use std::time::{Duration, Instant};

use actix::Addr;
use actix_web::{web, HttpRequest};

use super::api::{
    GenerationRequest, GraphResponse, GraphResult, GraphTimings, RouteReport, StepFailureReport,
    StepReport, StepSpan, StepTiming,
};
use super::error::ApiError;
use super::request::{graph_params, read_json, validate_text};
use super::state::AppState;
use crate::config::graphs::{Action, GraphSpec};
use crate::graph::trace::graph_trace;
use crate::graph::{GraphCoordinator, GraphOutcome, Item, RunGraph, StepFailure};
use crate::models::GenerationParams;
use crate::telemetry::metrics::ServerMetrics;

/// The body of a request to `graph` (the default one for `None`) and its generation
/// parameters, checked; an unknown graph is refused before the body is read.
pub(super) async fn read_graph_request(
    state: &AppState,
    req: &HttpRequest,
    payload: web::Payload,
    graph: Option<&str>,
) -> Result<(GenerationRequest, GenerationParams), ApiError> {
    find_graph(state, graph)?;
    let request: GenerationRequest = read_json(state, req, payload).await?;
    let params = graph_params(state, &request)?;
    Ok((request, params))
}

/// The graph's entrance, where every route refuses what it will refuse: the server is
/// ready, runs `graph` (the default one for `None`), `text` is valid, and every local
/// model the graph calls has room in its queue. Past it, nothing is refused. Returns the
/// coordinator and the graph's index.
pub(super) fn admit(
    state: &AppState,
    graph: Option<&str>,
    text: &str,
) -> Result<(Addr<GraphCoordinator>, usize), ApiError> {
    let (coordinator, index) = find_graph(state, graph)?;
    validate_text(state, "text", text)?;
    let running = state.graph().ok_or(ApiError::NotReady)?;
    check_capacity(state, Some(&running.graphs[index]))?;
    Ok((coordinator, index))
}

/// The coordinator and the index of `graph` (the default one for `None`), if the server is
/// ready for work and runs it.
pub(super) fn find_graph(
    state: &AppState,
    graph: Option<&str>,
) -> Result<(Addr<GraphCoordinator>, usize), ApiError> {
    let running = state.ready_graph()?;
    let coordinator = running
        .coordinator
        .clone()
        .ok_or_else(|| ApiError::NoGraph {
            models: running.model_names().join(", "),
        })?;
    let found = match graph {
        None => running.default_graph(),
        Some(name) => running.graph(name),
    };
    let (index, _) = found.ok_or_else(|| ApiError::GraphNotFound {
        name: graph.unwrap_or_default().to_string(),
        available: running.graphs.iter().map(|g| g.name.clone()).collect(),
    })?;
    Ok((coordinator, index))
}

/// Runs `run` through the coordinator within the request timeout, and keeps its trace.
/// Returns the outcome and the trace's id.
pub(super) async fn execute(
    state: &AppState,
    coordinator: &Addr<GraphCoordinator>,
    run: RunGraph,
) -> Result<(GraphOutcome, String), ApiError> {
    let begun = Instant::now();
    let (request_id, trace_id) = (run.context.request_id.clone(), run.context.trace_id.clone());
    let graph = state
        .graph()
        .and_then(|g| g.graphs.get(run.graph))
        .map_or(String::new(), |g| g.name.clone());
    let budget = run.context.remaining().unwrap_or(Duration::MAX);
    let timeout_ms = run.context.timeout_ms;
    let result = match tokio::time::timeout(budget, coordinator.send(run)).await {
        Err(_) => Err(ApiError::Timeout(timeout_ms)),
        Ok(Err(_mailbox)) => Err(ApiError::Model(
            "the graph coordinator is not running".into(),
        )),
        Ok(Ok(result)) => result.map_err(ApiError::from),
    };
    let outcome = match result {
        Ok(outcome) => outcome,
        Err(error) => {
            state
                .metrics
                .record_graph_request(&graph, error.error_type());
            return Err(error);
        }
    };
    state.metrics.record_graph_request(&graph, "ok");
    outcome.record_metrics(&state.metrics);
    record_stages(&state.metrics, &outcome);
    let trace_id = state.record_trace(graph_trace(
        &request_id,
        &trace_id,
        begun,
        Instant::now(),
        &outcome,
    ));
    Ok((outcome, trace_id))
}

/// The graph's stage durations: generation (until the last generate call is done), the
/// classifications (first start to last end), and the whole.
fn record_stages(metrics: &ServerMetrics, outcome: &GraphOutcome) {
    let since = |t: Instant| t.saturating_duration_since(outcome.received).as_secs_f64();
    let of = |action| outcome.calls().filter(move |c| c.action == action);
    let generated = of(Action::Generate)
        .map(|c| since(c.span.finished))
        .fold(f64::NAN, f64::max);
    let classify_start = of(Action::Classify)
        .map(|c| since(c.span.started))
        .fold(f64::MAX, f64::min);
    let classify_end = of(Action::Classify)
        .map(|c| since(c.span.finished))
        .fold(0.0, f64::max);
    // A graph without generations (or classifications) has no such stage.
    if !generated.is_nan() {
        metrics.generate_stage.observe(generated);
    }
    if classify_end >= classify_start {
        metrics
            .classify_stage
            .observe(classify_end - classify_start);
    }
    metrics.total.observe(outcome.total.as_secs_f64());
}

/// Refuses at once when a local model's queue is already full (of those `graph` calls, or
/// of all for `None`), so a stream is never opened only to fail; a race lost after this
/// check still ends in an `overloaded` error event.
pub(super) fn check_capacity(state: &AppState, graph: Option<&GraphSpec>) -> Result<(), ApiError> {
    let running = state.graph().ok_or(ApiError::NotReady)?;
    let calls = |name: &str| graph.is_none_or(|g| g.models().contains(&name));
    for engine in &running.engines {
        if calls(engine.admission().name()) {
            engine.admission().check_room()?;
        }
    }
    if let Some(engine) = &running.classifier_engine {
        if calls(engine.admission().name()) {
            engine.admission().check_room()?;
        }
    }
    for (_, engine) in &running.embedders {
        if calls(engine.admission().name()) {
            engine.admission().check_room()?;
        }
    }
    Ok(())
}

fn graph_result(item: &Item) -> GraphResult {
    let generation = item.generation.as_ref();
    let classification = item.classification.as_ref().map(|(_, c)| c);
    GraphResult {
        model: item.source.clone(),
        generated: item.text.clone(),
        score: classification.map(|c| c.score),
        label: classification.map(|c| c.label.clone()),
        finish_reason: generation.map(|g| g.finish_reason),
        prompt_tokens: generation.map(|g| g.prompt_ids.len()),
        generated_tokens: generation.map(|g| g.new_token_ids.len()),
    }
}

/// What a failure a step carried on without looks like in answers and events.
pub(super) fn failure_report(step: &str, failure: &StepFailure) -> StepFailureReport {
    let error = ApiError::from(&*failure.error);
    StepFailureReport {
        step: step.to_string(),
        model: failure.model.clone(),
        of: failure.of.clone(),
        error: error.to_string(),
        error_type: error.error_type().into(),
    }
}

pub(super) fn graph_answer(id: String, outcome: &GraphOutcome, trace_id: String) -> GraphResponse {
    // Milliseconds, to the microsecond.
    let ms = |d: Duration| (d.as_secs_f64() * 1e6).round() / 1e3;
    let since = |t: Instant| ms(t.saturating_duration_since(outcome.received));
    let mut spans = Vec::new();
    let mut generate_ms = std::collections::BTreeMap::new();
    let mut classify_ms = Vec::new();
    // Generations first, then classifications, as the built-in graph always listed them.
    for action in [Action::Generate, Action::Classify, Action::Embed] {
        for step in &outcome.steps {
            for call in step.calls.iter().filter(|c| c.action == action) {
                let work = ms(call.span.finished - call.span.started);
                match action {
                    Action::Generate => {
                        *generate_ms.entry(call.model.clone()).or_insert(0.0) += work
                    }
                    Action::Classify => classify_ms.push(work),
                    Action::Embed => {}
                }
                spans.push(StepSpan {
                    step: action.as_str().into(),
                    model: call.of.clone().unwrap_or_else(|| call.model.clone()),
                    graph_step: step.name.clone(),
                    start_ms: since(call.span.started),
                    end_ms: since(call.span.finished),
                });
            }
        }
    }
    GraphResponse {
        id,
        trace_id,
        graph: outcome.graph.name.clone(),
        results: outcome.results.iter().map(graph_result).collect(),
        steps: outcome
            .steps
            .iter()
            .map(|step| StepReport {
                name: step.name.clone(),
                kind: step.kind.into(),
                results: step.items.iter().map(graph_result).collect(),
                routes: step
                    .routes
                    .iter()
                    .map(|r| RouteReport {
                        model: r.of.clone(),
                        to: r.to.clone(),
                        reason: r.reason.clone(),
                    })
                    .collect(),
            })
            .collect(),
        failures: outcome
            .steps
            .iter()
            .flat_map(|step| step.failures.iter().map(|f| failure_report(&step.name, f)))
            .collect(),
        generated_tokens: outcome.generated_tokens(),
        timings: GraphTimings {
            total_ms: ms(outcome.total),
            generate_ms,
            classify_ms,
            spans,
            steps: outcome
                .steps
                .iter()
                .map(|step| StepTiming {
                    name: step.name.clone(),
                    start_ms: since(step.started),
                    end_ms: since(step.finished),
                })
                .collect(),
        },
    }
}
