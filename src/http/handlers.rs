//! The graph routes (`/classify_generated_texts`, `/generate_score`, `/v1/graph`,
//! `/v1/graphs`, `/v1/graphs/{name}`) and the operations routes (`/v1/models`,
//! `/v1/engines`, `/v1/traces`, the health probes): parse and validate, run the graph through
//! the coordinator, shape the answer.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

use super::api::{
    CallInfo, ChatStepInfo, EnginesResponse, ErrorBody, GenerateScoreRequest, GeneratedScore,
    GenerationRequest, GraphInfo, GraphResponse, GraphsResponse, HealthBody, ModelsResponse,
    OpenAiModel, RequestErrors, StepInfo, TracesResponse,
};
use super::error::ApiError;
use super::graph_calls::{admit, execute, graph_answer, read_graph_request};
use super::request::{
    call_context, default_params, read_body, read_json, request_id, require_content_type,
    ContentKind, TRACE_ID_HEADER,
};
use super::state::{AppState, Phase};
use crate::config::graphs::{Best, Call, Framing, GraphSpec, OnError, StepInput, StepKind};
use crate::graph::{GraphOutcome, RunGraph};
use crate::models::GenerationParams;
use crate::telemetry::traces::Trace;

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
