//! Route handlers: parse and validate, run the graph through the coordinator, shape the answer.

use std::time::{Duration, Instant};

use actix::Addr;
use actix_web::http::header;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

use super::api::{
    CallInfo, ChatStepInfo, EnginesResponse, ErrorBody, GenerateScoreRequest, GeneratedScore,
    GenerationRequest, GraphInfo, GraphResponse, GraphResult, GraphTimings, GraphsResponse,
    HealthBody, ModelsResponse, OpenAiModel, RequestErrors, RouteReport, StepFailureReport,
    StepInfo, StepReport, StepSpan, StepTiming, TracesResponse,
};
use super::disconnect;
use super::error::ApiError;
use super::state::{AppState, Phase};
use super::stream;
use crate::actors::remote::DEADLINE_HEADER;
use crate::actors::CallContext;
use crate::config::graphs::{Action, Best, Call, Framing, GraphSpec, OnError, StepInput, StepKind};
use crate::engine::{CancelOnDrop, CancelToken};
use crate::graph::trace::graph_trace;
use crate::graph::{GraphCoordinator, GraphOutcome, Item, RunGraph, StepFailure};
use crate::models::sampling::SamplingParams;
use crate::models::GenerationParams;
use crate::telemetry::metrics::ServerMetrics;
use crate::telemetry::traces::Trace;
use crate::telemetry::{RequestId, TraceId};

pub fn routes(cfg: &mut web::ServiceConfig) {
    for (path, allow, route) in table() {
        cfg.service(resource(path, allow, route));
    }
    cfg.default_service(web::to(not_found));
}

/// Every route the server answers: (path, method, handler). The router is built from this
/// list and nothing else, so `paths` is what the route-walking tests can trust.
fn table() -> Vec<(&'static str, &'static str, actix_web::Route)> {
    use super::{chat, embeddings, metrics, model_routes, openai, openapi};
    vec![
        ("/openapi.json", "GET", web::get().to(openapi::openapi_json)),
        ("/docs", "GET", web::get().to(openapi::docs)),
        ("/", "GET", web::get().to(openapi::page)),
        (
            "/classify_generated_texts",
            "POST",
            web::post().to(classify_generated_texts),
        ),
        ("/generate_score", "POST", web::post().to(generate_score)),
        ("/v1/graph", "POST", web::post().to(graph)),
        ("/v1/graph/stream", "POST", web::post().to(stream::sse)),
        ("/v1/graph/ws", "GET", web::get().to(stream::websocket)),
        ("/v1/graphs", "GET", web::get().to(graphs)),
        ("/v1/graphs/{name}", "POST", web::post().to(named_graph)),
        (
            "/v1/graphs/{name}/stream",
            "POST",
            web::post().to(stream::named_sse),
        ),
        ("/v1/models", "GET", web::get().to(models)),
        (
            "/v1/models/{name}/generate",
            "POST",
            web::post().to(model_routes::generate),
        ),
        (
            "/v1/models/{name}/generate/stream",
            "POST",
            web::post().to(model_routes::generate_stream),
        ),
        (
            "/v1/models/{name}/chat",
            "POST",
            web::post().to(model_routes::chat),
        ),
        (
            "/v1/models/{name}/chat/stream",
            "POST",
            web::post().to(model_routes::chat_stream),
        ),
        (
            "/v1/models/{name}/classify",
            "POST",
            web::post().to(model_routes::classify),
        ),
        (
            "/v1/models/{name}/embed",
            "POST",
            web::post().to(model_routes::embed),
        ),
        (
            "/v1/embeddings",
            "POST",
            web::post().to(embeddings::embeddings),
        ),
        (
            "/v1/completions",
            "POST",
            web::post().to(openai::completions),
        ),
        (
            "/v1/chat/completions",
            "POST",
            web::post().to(chat::chat_completions),
        ),
        ("/v1/engines", "GET", web::get().to(engines)),
        ("/metrics", "GET", web::get().to(metrics::metrics)),
        ("/v1/traces", "GET", web::get().to(traces)),
        ("/v1/traces/{id}", "GET", web::get().to(trace)),
        ("/livez", "GET", web::get().to(livez)),
        ("/readyz", "GET", web::get().to(readyz)),
        ("/healthz", "GET", web::get().to(healthz)),
    ]
}

/// Each route's path and method, as the router serves them.
pub fn paths() -> Vec<(&'static str, &'static str)> {
    table()
        .into_iter()
        .map(|(path, method, _)| (path, method))
        .collect()
}

/// `path`, answered by `route`; any other method gets 405 with `Allow: allow`.
fn resource(path: &str, allow: &'static str, route: actix_web::Route) -> actix_web::Resource {
    web::resource(path)
        .route(route)
        .default_service(web::to(move |req: HttpRequest| async move {
            Err::<HttpResponse, _>(ApiError::MethodNotAllowed {
                method: req.method().to_string(),
                allow,
            })
        }))
}

/// The seed's endpoint: a `text/plain` prompt in, `[{generated, score}]` out.
#[utoipa::path(post, path = "/classify_generated_texts", tag = "graph",
    request_body(content = String, content_type = "text/plain", description = "The prompt"),
    responses((status = 200, description = "One result per generator", body = Vec<GeneratedScore>), RequestErrors))]
pub(super) async fn classify_generated_texts(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    require_content_type(&req, ContentKind::Text)?;
    let body = read_body(&req, payload, state.config.limits.max_body_bytes).await?;
    let text = std::str::from_utf8(&body).map_err(|_| ApiError::InvalidUtf8)?;
    let (outcome, trace_id) = run_graph(&state, &req, None, text, default_params(&state)).await?;
    Ok(HttpResponse::Ok()
        .insert_header((TRACE_ID_HEADER, trace_id))
        .json(seed_answer(&outcome)))
}

/// The BentoML example's current API: `{"original_sentence"}` in, `[{generated, score}]` out.
#[utoipa::path(post, path = "/generate_score", tag = "graph", request_body = GenerateScoreRequest,
    responses((status = 200, description = "One result per generator", body = Vec<GeneratedScore>), RequestErrors))]
pub(super) async fn generate_score(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let request: GenerateScoreRequest = read_json(&state, &req, payload).await?;
    let (outcome, trace_id) = run_graph(
        &state,
        &req,
        None,
        &request.original_sentence,
        default_params(&state),
    )
    .await?;
    Ok(HttpResponse::Ok()
        .insert_header((TRACE_ID_HEADER, trace_id))
        .json(seed_answer(&outcome)))
}

/// The default graph's full answer: every result's label, token counts and finish reason,
/// every step, and timings.
#[utoipa::path(post, path = "/v1/graph", tag = "graph", request_body = GenerationRequest,
    responses((status = 200, description = "Every result, with timings", body = GraphResponse,
            headers(("x-trace-id" = String, description = "The request's trace"))), RequestErrors))]
pub(super) async fn graph(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    answer_graph(state, req, payload, None).await
}

/// One of the configured graphs, by name (`GET /v1/graphs` lists them).
#[utoipa::path(post, path = "/v1/graphs/{name}", tag = "graph", request_body = GenerationRequest,
    params(("name" = String, Path, description = "A graph's name, as `GET /v1/graphs` lists it")),
    responses((status = 200, description = "Every result, with timings", body = GraphResponse,
            headers(("x-trace-id" = String, description = "The request's trace"))), RequestErrors))]
pub(super) async fn named_graph(
    state: web::Data<AppState>,
    req: HttpRequest,
    name: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    answer_graph(state, req, payload, Some(&name)).await
}

async fn answer_graph(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
    graph: Option<&str>,
) -> Result<HttpResponse, ApiError> {
    let (request, params) = read_graph_request(&state, &req, payload, graph).await?;
    let (outcome, trace_id) = run_graph(&state, &req, graph, &request.text, params).await?;
    Ok(HttpResponse::Ok()
        .insert_header((TRACE_ID_HEADER, trace_id.clone()))
        .json(graph_answer(request_id(&req), &outcome, trace_id)))
}

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
    let params = generation_params(state, &request)?;
    Ok((request, params))
}

/// `GET /v1/graphs`: every graph with its steps, in config order.
#[utoipa::path(get, path = "/v1/graphs", tag = "graph",
    responses((status = 200, description = "Every graph the server runs (none on a model node)", body = GraphsResponse), (status = 503, description = "Still loading", body = ErrorBody)))]
pub(super) async fn graphs(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let graph = state.graph().ok_or(ApiError::NotReady)?;
    Ok(HttpResponse::Ok().json(GraphsResponse {
        graphs: graph.graphs.iter().map(|g| graph_info(g)).collect(),
    }))
}

fn graph_info(spec: &GraphSpec) -> GraphInfo {
    let call = |call: &Call| CallInfo {
        action: call.action.as_str().into(),
        model: call.model.clone(),
        when: None,
        weight: None,
        prompt: match &call.framing {
            Some(Framing::Prompt(prompt)) => Some(prompt.clone()),
            _ => None,
        },
        chat: match &call.framing {
            Some(Framing::Chat { system, user }) => Some(ChatStepInfo {
                system: system.clone(),
                user: user.clone(),
            }),
            _ => None,
        },
    };
    GraphInfo {
        name: spec.name.clone(),
        default: spec.default,
        steps: spec
            .steps
            .iter()
            .map(|step| StepInfo {
                name: step.name.clone(),
                kind: step.kind.as_str().into(),
                input: match step.input {
                    StepInput::Request => "request",
                    StepInput::Previous => "previous",
                }
                .into(),
                on_error: match step.on_error {
                    OnError::Fail => "fail",
                    OnError::Continue => "continue",
                }
                .into(),
                calls: match &step.kind {
                    StepKind::Parallel(calls) => calls.iter().map(call).collect(),
                    StepKind::Each(c) => vec![call(c)],
                    StepKind::Switch { cases, otherwise } => cases
                        .iter()
                        .map(|case| CallInfo {
                            when: Some(case.when.to_string()),
                            ..call(&case.call)
                        })
                        .chain(otherwise.iter().map(|c| CallInfo {
                            when: Some("otherwise".into()),
                            ..call(c)
                        }))
                        .collect(),
                    StepKind::Split(branches) => branches
                        .iter()
                        .map(|b| CallInfo {
                            weight: Some(b.weight),
                            ..call(&b.call)
                        })
                        .collect(),
                    StepKind::Select(_) => Vec::new(),
                },
                select: match step.kind {
                    StepKind::Select(Best::HighestScore) => Some("highest_score".into()),
                    StepKind::Select(Best::LowestScore) => Some("lowest_score".into()),
                    _ => None,
                },
            })
            .collect(),
    }
}

#[utoipa::path(get, path = "/v1/models", tag = "operations",
    responses((status = 200, description = "Every model of the graph", body = ModelsResponse), (status = 503, description = "Still loading", body = ErrorBody)))]
pub(super) async fn models(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let graph = state.graph().ok_or(ApiError::NotReady)?;
    let mut models = graph.model_infos();
    if !state.config.auth.expose_internals {
        super::exposure::hide_internals(&mut models);
    }
    let data = models
        .iter()
        .map(|m| OpenAiModel {
            id: m.name.clone(),
            object: "model".into(),
            created: graph.started_at_secs,
            owned_by: "infergraph".into(),
        })
        .collect();
    Ok(HttpResponse::Ok().json(ModelsResponse {
        models,
        object: "list".into(),
        data,
    }))
}

/// Each engine's counters: what is queued, running, done, refused.
#[utoipa::path(get, path = "/v1/engines", tag = "operations",
    responses((status = 200, description = "Every engine's limits and counters", body = EnginesResponse), (status = 503, description = "Still loading", body = ErrorBody)))]
pub(super) async fn engines(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let graph = state.graph().ok_or(ApiError::NotReady)?;
    Ok(HttpResponse::Ok().json(EnginesResponse {
        engines: graph.engine_infos(),
    }))
}

#[utoipa::path(get, path = "/livez", tag = "operations", responses((status = 200, description = "The process is up", body = HealthBody)))]
pub(super) async fn livez() -> HttpResponse {
    HttpResponse::Ok().json(HealthBody {
        status: "ok".into(),
        unavailable: None,
    })
}

/// The same as `/readyz`, under the name some platforms probe.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "Every model is loaded", body = HealthBody),
        (status = 503, description = "Loading, shutting down, or failed", body = HealthBody)))]
pub(super) async fn healthz(state: web::Data<AppState>) -> HttpResponse {
    readyz(state).await
}

#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "Every model is loaded", body = HealthBody),
        (status = 503, description = "Loading, shutting down, or failed", body = HealthBody)))]
pub(super) async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let status = match state.phase() {
        Phase::Ready => {
            let unavailable = state
                .graph()
                .map_or(Vec::new(), |g| g.unavailable_remotes());
            if unavailable.is_empty() {
                return HttpResponse::Ok().json(HealthBody {
                    status: "ok".into(),
                    unavailable: None,
                });
            }
            return HttpResponse::ServiceUnavailable()
                .insert_header((header::RETRY_AFTER, 1))
                .json(HealthBody {
                    status: "models_unavailable".into(),
                    unavailable: Some(unavailable.into_iter().map(str::to_string).collect()),
                });
        }
        Phase::Loading => "loading",
        Phase::ShuttingDown => "shutting_down",
        Phase::Failed => "failed",
    };
    HttpResponse::ServiceUnavailable()
        .insert_header((header::RETRY_AFTER, 1))
        .json(HealthBody {
            status: status.into(),
            unavailable: None,
        })
}

async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound(format!(
        "{} {}",
        req.method(),
        req.path()
    )))
}

/// Validates `text` and runs `graph` (the default one for `None`) on it, cancelling the
/// work if the client leaves.
async fn run_graph(
    state: &AppState,
    req: &HttpRequest,
    graph: Option<&str>,
    text: &str,
    params: GenerationParams,
) -> Result<(GraphOutcome, String), ApiError> {
    let (coordinator, graph) = admit(state, graph, text)?;
    // Dropped with this future (timeout) or tripped by the client leaving: the engines
    // then stop the work.
    let (context, _guards) = call_context(state, req);
    let run = RunGraph {
        graph,
        events: None,
        text: text.to_string(),
        params,
        context,
    };
    execute(state, &coordinator, run).await
}

/// Cancels a request's work when dropped, or when its client disconnects first. The
/// handler holds it, or for a stream the response body, so whoever waits for the answer
/// owns the work behind it.
pub(super) type CancelGuards = (CancelOnDrop, Option<disconnect::WatchGuard>);

/// What the model calls made for `req` carry: its ids, a fresh cancellation, and its
/// deadline (`limits.request_timeout_ms` from now, or sooner when the graph node that sent
/// it across a hop says so in `x-infergraph-deadline-ms`); and the guards that cancel it.
pub(super) fn call_context(state: &AppState, req: &HttpRequest) -> (CallContext, CancelGuards) {
    let cancel = CancelToken::new();
    let guards = (
        CancelOnDrop(cancel.clone()),
        disconnect::watch(req, cancel.clone()),
    );
    let configured = state.config.limits.request_timeout_ms;
    let budget = req
        .headers()
        .get(DEADLINE_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(configured, |left| left.min(configured));
    let context = CallContext {
        request_id: request_id(req),
        trace_id: trace_id(req),
        deadline: Some(Instant::now() + Duration::from_millis(budget)),
        timeout_ms: budget,
        cancel,
        parent: tracing::Span::current(),
    };
    (context, guards)
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

/// Checks a request's input text: not blank, and within `limits.max_input_chars`.
/// `field` names it in the error.
pub(super) fn validate_text(state: &AppState, field: &str, text: &str) -> Result<(), ApiError> {
    if text.chars().all(char::is_whitespace) {
        return Err(ApiError::Validation(format!(
            "{field}: must not be empty or only whitespace"
        )));
    }
    let chars = text.chars().count();
    let limit = state.config.limits.max_input_chars;
    if chars > limit {
        return Err(ApiError::Validation(format!(
            "{field}: {chars} characters; the limit is {limit}"
        )));
    }
    Ok(())
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

/// The response header naming a graph request's trace (`GET /v1/traces/{id}`).
pub const TRACE_ID_HEADER: &str = "x-trace-id";

/// `GET /v1/traces`: the kept traces, newest first.
#[utoipa::path(get, path = "/v1/traces", tag = "operations", responses((status = 200, description = "The kept traces, newest first", body = TracesResponse)))]
pub(super) async fn traces(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(TracesResponse {
        traces: state.traces.summaries(),
    })
}

/// `GET /v1/traces/{id}`: one trace's span tree.
#[utoipa::path(get, path = "/v1/traces/{id}", tag = "operations",
    params(("id" = String, Path, description = "A trace id, from `x-trace-id`")),
    responses((status = 200, description = "The trace's span tree", body = Trace), (status = 404, description = "Unknown or no longer kept", body = ErrorBody)))]
pub(super) async fn trace(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let trace = state.traces.get(&id).ok_or_else(|| {
        ApiError::NotFound(format!(
            "trace {:?} (only the last {} are kept)",
            id.as_str(),
            state.config.server.traces_kept
        ))
    })?;
    Ok(HttpResponse::Ok().json(trace.as_ref()))
}

/// The id `telemetry::RequestSpan` gave this request.
pub(super) fn request_id(req: &HttpRequest) -> String {
    req.extensions()
        .get::<RequestId>()
        .map(|id| id.0.clone())
        .unwrap_or_default()
}

/// The trace `telemetry::RequestSpan` put this request in.
pub(super) fn trace_id(req: &HttpRequest) -> String {
    req.extensions()
        .get::<TraceId>()
        .map_or_else(TraceId::new, Clone::clone)
        .0
}

/// What the seed endpoints use: the configured total length, as the BentoML example does.
fn default_params(state: &AppState) -> GenerationParams {
    let limits = &state.config.limits;
    GenerationParams {
        max_new_tokens: limits.max_new_tokens,
        max_length: Some(state.config.generation.max_length),
        max_prompt_tokens: Some(limits.max_input_tokens),
        ..GenerationParams::default()
    }
}

pub(super) fn generation_params(
    state: &AppState,
    request: &GenerationRequest,
) -> Result<GenerationParams, ApiError> {
    let limits = &state.config.limits;
    let mut params = default_params(state);
    // Both may be given: each bounds the generation, whichever ends it first.
    if let Some(n) = request.max_new_tokens {
        if n == 0 || n > limits.max_new_tokens {
            return Err(ApiError::Validation(format!(
                "max_new_tokens: {n} is out of range 1..={}",
                limits.max_new_tokens
            )));
        }
        params.max_new_tokens = n;
        params.max_length = None;
    }
    if let Some(n) = request.max_length {
        let most = limits.max_input_tokens + limits.max_new_tokens;
        if !(2..=most).contains(&n) {
            return Err(ApiError::Validation(format!(
                "max_length: {n} is out of range 2..={most}"
            )));
        }
        params.max_length = Some(n);
    }
    if let Some(n) = request.min_new_tokens {
        if n > limits.max_new_tokens {
            return Err(ApiError::Validation(format!(
                "min_new_tokens: {n} is out of range 0..={}",
                limits.max_new_tokens
            )));
        }
        params.min_new_tokens = n;
    }
    if let Some(k) = request.top_k.filter(|&k| k > MAX_TOP_K) {
        return Err(ApiError::Validation(format!(
            "top_k: {k} is out of range 1..={MAX_TOP_K}"
        )));
    }
    // Checked as sent (the schema's ranges are on these numbers), then narrowed.
    for (name, value, exclusive_low, high) in [
        ("temperature", request.temperature, false, 100.0),
        ("top_p", request.top_p, true, 1.0),
        (
            "repetition_penalty",
            request.repetition_penalty,
            true,
            100.0,
        ),
    ] {
        if let Some(v) = value.filter(|&v| !(v <= high && (v > 0.0 || !exclusive_low && v == 0.0)))
        {
            let low = if exclusive_low { "(0" } else { "[0" };
            return Err(ApiError::Validation(format!(
                "{name}: {v} is out of range {low}, {high}]"
            )));
        }
    }
    params.sampling = SamplingParams {
        temperature: narrow(request.temperature.unwrap_or(0.0)),
        top_k: request.top_k,
        top_p: request.top_p.map(narrow),
        repetition_penalty: narrow(request.repetition_penalty.unwrap_or(1.0)),
        seed: request.seed,
    };
    params.sampling.validate().map_err(ApiError::Validation)?;
    if let Some(stop) = &request.stop {
        if stop.len() > MAX_STOP_STRINGS {
            return Err(ApiError::Validation(format!(
                "stop: {} strings; at most {MAX_STOP_STRINGS}",
                stop.len()
            )));
        }
        if let Some(bad) = stop
            .iter()
            .find(|s| s.is_empty() || s.chars().count() > MAX_STOP_CHARS)
        {
            return Err(ApiError::Validation(format!(
                "stop: {bad:?} must be 1 to {MAX_STOP_CHARS} characters"
            )));
        }
        params.stop = stop.clone();
    }
    Ok(params)
}

/// `value` as an `f32`; a positive value below `f32`'s range stays positive (the smallest
/// normal `f32`, which samples the same), so a range check made on `value` still holds.
fn narrow(value: f64) -> f32 {
    let narrowed = value as f32;
    if value > 0.0 && narrowed == 0.0 {
        f32::MIN_POSITIVE
    } else {
        narrowed
    }
}

/// A `top_k` this large keeps every token of any vocabulary there is.
pub(super) const MAX_TOP_K: usize = 1_000_000;
pub(super) const MAX_STOP_STRINGS: usize = 4;
pub(super) const MAX_STOP_CHARS: usize = 64;

/// `[{generated, score}]`: the default graph's results (whose scores are checked at start).
fn seed_answer(outcome: &GraphOutcome) -> Vec<GeneratedScore> {
    outcome
        .results
        .iter()
        .map(|item| GeneratedScore {
            generated: item.text.clone(),
            score: item.score().unwrap_or(f32::NAN),
        })
        .collect()
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

#[derive(Clone, Copy)]
enum ContentKind {
    Json,
    Text,
}

/// JSON endpoints need a JSON content type; the text endpoint takes `text/plain` or none
/// (as `curl --data-binary` sends).
fn require_content_type(req: &HttpRequest, kind: ContentKind) -> Result<(), ApiError> {
    let found = req
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or("").to_string());
    let essence = found.as_deref().map(|v| {
        v.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    });
    let ok = match (kind, essence.as_deref()) {
        (ContentKind::Json, Some(e)) => e == "application/json" || e.ends_with("+json"),
        (ContentKind::Text, Some(e)) => e == "text/plain",
        (ContentKind::Text, None) => true,
        (ContentKind::Json, None) => false,
    };
    if ok {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType {
            found: found.unwrap_or_else(|| "none".into()),
            expected: match kind {
                ContentKind::Json => "application/json",
                ContentKind::Text => "text/plain",
            },
        })
    }
}

/// Reads the body, refusing it as soon as it is known to exceed `limit`.
async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<web::Bytes, ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::BadRequest(format!("cannot read the body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Reads a JSON body: syntax errors are 400, well-formed JSON of the wrong shape is 422.
pub(super) async fn read_json<T: DeserializeOwned>(
    state: &AppState,
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<T, ApiError> {
    require_content_type(req, ContentKind::Json)?;
    let body = read_body(req, payload, state.config.limits.max_body_bytes).await?;
    let text = std::str::from_utf8(&body).map_err(|_| ApiError::InvalidUtf8)?;
    serde_json::from_str(text).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => ApiError::Validation(e.to_string()),
        _ => ApiError::MalformedJson(e.to_string()),
    })
}
