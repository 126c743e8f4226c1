//! The request plumbing every route shares: reading and checking a body, the call context
//! (ids, deadline, cancellation) and trace id of a request, and the generation parameters
//! it asks for.

use std::time::{Duration, Instant};

use actix_web::http::header;
use actix_web::{web, HttpMessage, HttpRequest};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

use super::api::GenerationRequest;
use super::disconnect;
use super::error::ApiError;
use super::state::AppState;
use crate::actors::remote::DEADLINE_HEADER;
use crate::actors::CallContext;
use crate::engine::{CancelOnDrop, CancelToken};
use crate::models::logprobs::MAX_TOP_LOGPROBS;
use crate::models::sampling::{SamplingParams, MAX_PENALTY};
use crate::models::GenerationParams;
use crate::telemetry::{RequestId, TraceId};

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

/// Checks a request's input text: not blank, and within `limits.max_input_chars`.
/// `field` names it in the error.
pub(super) fn validate_text(state: &AppState, field: &str, text: &str) -> Result<(), ApiError> {
    if text.chars().all(|c| c.is_whitespace() || c.is_control()) {
        return Err(ApiError::Validation(format!(
            "{field}: must hold a character other than white space and control characters"
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

/// The response header naming a graph request's trace (`GET /v1/traces/{id}`).
pub const TRACE_ID_HEADER: &str = "x-trace-id";

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
pub(super) fn default_params(state: &AppState) -> GenerationParams {
    let limits = &state.config.limits;
    GenerationParams {
        max_new_tokens: limits.max_new_tokens,
        max_length: Some(state.config.generation.max_length),
        max_prompt_tokens: Some(limits.max_input_tokens),
        ..GenerationParams::default()
    }
}

/// A request's parameters, checked against the limits. `logit_bias` names one model's
/// token ids: the route that knows the model checks it (`model_calls::logit_bias`).
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
        ("min_p", request.min_p, false, 1.0),
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
    for (name, value) in [
        ("presence_penalty", request.presence_penalty),
        ("frequency_penalty", request.frequency_penalty),
    ] {
        let most = f64::from(MAX_PENALTY);
        if let Some(v) = value.filter(|v| !(-most..=most).contains(v)) {
            return Err(ApiError::Validation(format!(
                "{name}: {v} is out of range [-{most}, {most}]"
            )));
        }
    }
    params.sampling = SamplingParams {
        temperature: narrow(request.temperature.unwrap_or(0.0)),
        top_k: request.top_k,
        top_p: request.top_p.map(narrow),
        min_p: request.min_p.map(|p| p as f32),
        repetition_penalty: narrow(request.repetition_penalty.unwrap_or(1.0)),
        presence_penalty: request.presence_penalty.unwrap_or(0.0) as f32,
        frequency_penalty: request.frequency_penalty.unwrap_or(0.0) as f32,
        logit_bias: Vec::new(),
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
    if let Some(n) = request.logprobs.filter(|&n| n > MAX_TOP_LOGPROBS) {
        return Err(ApiError::Validation(format!(
            "logprobs: {n} is out of range 0..={MAX_TOP_LOGPROBS}"
        )));
    }
    params.logprobs = request.logprobs;
    params.prompt_logprobs = request.prompt_logprobs == Some(true);
    params.response_format = request.response_format.clone().unwrap_or_default();
    if params.prompt_logprobs && params.logprobs.is_none() {
        return Err(ApiError::Validation(
            "prompt_logprobs: only with logprobs".into(),
        ));
    }
    Ok(params)
}

/// A graph request's parameters: a model's, less `logprobs`, which a graph's answer has no
/// place for, `response_format` and `logit_bias`.
pub(super) fn graph_params(
    state: &AppState,
    request: &GenerationRequest,
) -> Result<GenerationParams, ApiError> {
    if request.logprobs.is_some() || request.prompt_logprobs.is_some() {
        return Err(ApiError::Validation(
            "logprobs: a graph does not report them; the model routes and the OpenAI routes do"
                .into(),
        ));
    }
    if request.response_format.is_some() {
        return Err(ApiError::Validation(
            "response_format: a graph's texts are prompt plus continuation; the model routes \
             and the OpenAI routes take it"
                .into(),
        ));
    }
    if request.logit_bias.is_some() {
        return Err(ApiError::Validation(
            "logit_bias: token ids are one model's; the model routes and the OpenAI routes \
             take it"
                .into(),
        ));
    }
    generation_params(state, request)
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

#[derive(Clone, Copy)]
pub(super) enum ContentKind {
    Json,
    Text,
}

/// JSON endpoints need a JSON content type; the text endpoint takes `text/plain` or none
/// (as `curl --data-binary` sends).
pub(super) fn require_content_type(req: &HttpRequest, kind: ContentKind) -> Result<(), ApiError> {
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
pub(super) async fn read_body(
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
