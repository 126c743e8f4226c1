//! The per-model API: `POST /v1/models/{name}/generate`, `/generate/stream`, `/chat`,
//! `/chat/stream`, `/classify` and `/embed`, one model on its own. (`/v1/completions` in
//! `openai.rs`, `/v1/chat/completions` in `chat.rs` and `/v1/embeddings` in `embeddings.rs`
//! are built on the same calls, in `model_calls.rs`.)
//!
//! SHARING: a model route sends its work to the same actor, and so to the same engine and
//! queue, as the graph does: a model's `engine.queue_capacity` bounds both.
//!
//! BACKPRESSURE: a full queue answers 429 with `Retry-After` at once, before any work. A
//! classify request checks for room before it queues its texts; once admitted, its texts
//! wait for room (as the graph's classifications do) rather than losing the ones done.
//!
//! CANCELLATION: as on the graph routes, the client leaving, the response stream being
//! dropped, or `limits.request_timeout_ms` passing (504) cancels the request's work: a
//! queued generation never starts, a running one leaves the batch within one decode step.

use std::time::Instant;

use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::future::try_join_all;
use serde_json::json;
use tokio::sync::mpsc;

use super::api::{
    ChatGenerationRequest, ClassifyRequest, ClassifyResponse, ClassifyResult, EmbedRequest,
    EmbedResponse, EmbedResult, GenerationRequest, LabelScore, ModelGenerateResponse,
    ModelStreamEvent, RequestErrors,
};
use super::error::ApiError;
use super::model_calls::{
    check_messages, check_room, conversation, find_classifier, find_embedder, find_generator,
    generation_attributes, logit_bias, require_chat_template, run_embeddings, timings,
    within_deadline, GenerationCall,
};
use super::request::{call_context, generation_params, read_json, validate_text, TRACE_ID_HEADER};
use super::sse::event_stream;
use super::state::AppState;
use super::tools::ToolUse;
use crate::actors::{Classify, Generate, Generated};
use crate::graph::Named;
use crate::models::chat::Conversation;
use crate::models::{GenerationParams, Prompt};
use crate::telemetry::traces::model_trace;
use crate::work::WorkSpan;

/// Most texts one classify request may carry.
const MAX_TEXTS: usize = 32;

/// Generate a continuation of `text` with one generator.
#[utoipa::path(post, path = "/v1/models/{name}/generate", tag = "models", request_body = GenerationRequest,
    params(("name" = String, Path, description = "A generator's name (`GET /v1/models`)")),
    responses((status = 200, description = "The generation, with timings", body = ModelGenerateResponse,
            headers(("x-trace-id" = String, description = "The request's trace"))), RequestErrors))]
pub(super) async fn generate(
    state: web::Data<AppState>,
    req: HttpRequest,
    name: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let begun = Instant::now();
    let generator = find_generator(&state, &name, "/v1/models/{name}/generate")?;
    let (prompt, params) = read_text(&state, &req, &generator.name, payload).await?;
    answer_generation(&state, &req, &generator, prompt, params, begun).await
}

/// The same as Server-Sent Events: a `token` event per token, then `done` (the whole answer)
/// or `error`.
#[utoipa::path(post, path = "/v1/models/{name}/generate/stream", tag = "models", request_body = GenerationRequest,
    params(("name" = String, Path, description = "A generator's name (`GET /v1/models`)")),
    responses(
        (status = 200, description = "Server-Sent Events; each `data:` is a ModelStreamEvent, `event:` its type",
            content_type = "text/event-stream", body = ModelStreamEvent),
        RequestErrors))]
pub(super) async fn generate_stream(
    state: web::Data<AppState>,
    req: HttpRequest,
    name: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let begun = Instant::now();
    let generator = find_generator(&state, &name, "/v1/models/{name}/generate/stream")?;
    let (prompt, params) = read_text(&state, &req, &generator.name, payload).await?;
    stream_generation(state, &req, generator, prompt, params, begun)
}

/// Answer a conversation with one generator, through its chat template: the answer as
/// `/generate` gives it, with `generated` and `continuation` both the answer alone.
#[utoipa::path(post, path = "/v1/models/{name}/chat", tag = "models", request_body = ChatGenerationRequest,
    params(("name" = String, Path, description = "A generator's name (`GET /v1/models`); it needs a chat template")),
    responses((status = 200, description = "The answer, with timings", body = ModelGenerateResponse,
            headers(("x-trace-id" = String, description = "The request's trace"))), RequestErrors))]
pub(super) async fn chat(
    state: web::Data<AppState>,
    req: HttpRequest,
    name: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let begun = Instant::now();
    let generator = find_generator(&state, &name, "/v1/models/{name}/chat")?;
    let (prompt, params) = read_chat(&state, &req, &generator.name, payload).await?;
    answer_generation(&state, &req, &generator, prompt, params, begun).await
}

/// The same as Server-Sent Events, as `/generate/stream` sends them.
#[utoipa::path(post, path = "/v1/models/{name}/chat/stream", tag = "models", request_body = ChatGenerationRequest,
    params(("name" = String, Path, description = "A generator's name (`GET /v1/models`); it needs a chat template")),
    responses(
        (status = 200, description = "Server-Sent Events; each `data:` is a ModelStreamEvent, `event:` its type",
            content_type = "text/event-stream", body = ModelStreamEvent),
        RequestErrors))]
pub(super) async fn chat_stream(
    state: web::Data<AppState>,
    req: HttpRequest,
    name: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let begun = Instant::now();
    let generator = find_generator(&state, &name, "/v1/models/{name}/chat/stream")?;
    let (prompt, params) = read_chat(&state, &req, &generator.name, payload).await?;
    stream_generation(state, &req, generator, prompt, params, begun)
}

/// A generate request's text and parameters for `model`, checked.
async fn read_text(
    state: &AppState,
    req: &HttpRequest,
    model: &str,
    payload: web::Payload,
) -> Result<(Prompt, GenerationParams), ApiError> {
    let request: GenerationRequest = read_json(state, req, payload).await?;
    let params = model_params(state, model, &request)?;
    validate_text(state, "text", &request.text)?;
    Ok((Prompt::Text(request.text), params))
}

/// A model route's parameters for `model`: the limits' checks, then its `logit_bias`
/// against the model's vocabulary.
fn model_params(
    state: &AppState,
    model: &str,
    request: &GenerationRequest,
) -> Result<GenerationParams, ApiError> {
    let mut params = generation_params(state, request)?;
    params.sampling.logit_bias = logit_bias(state, model, request.logit_bias.as_ref())?;
    Ok(params)
}

/// A chat request's conversation and parameters, checked; a model without a template is
/// refused before the body is read.
async fn read_chat(
    state: &AppState,
    req: &HttpRequest,
    model: &str,
    payload: web::Payload,
) -> Result<(Prompt, GenerationParams), ApiError> {
    require_chat_template(state, model)?;
    let body: serde_json::Map<String, serde_json::Value> = read_json(state, req, payload).await?;
    check_messages(body.get("messages"))?;
    let mut request: ChatGenerationRequest =
        serde_json::from_value(body.into()).map_err(|e| ApiError::Validation(e.to_string()))?;
    let params = model_params(state, model, &request.parameters())?;
    let max_chars = state.config.limits.max_input_chars;
    let tools = ToolUse::read(request.tools.take(), None, None, max_chars)?;
    let conversation = Conversation {
        messages: conversation(state, &request.messages)?,
        tools: tools.for_template(),
    };
    Ok((Prompt::Chat(conversation), params))
}

/// Runs `prompt` on `generator` and answers with the whole generation.
async fn answer_generation(
    state: &AppState,
    req: &HttpRequest,
    generator: &Named<Generate>,
    prompt: Prompt,
    params: GenerationParams,
    begun: Instant,
) -> Result<HttpResponse, ApiError> {
    // Dropped with this future (timeout) or tripped by the client leaving.
    let (context, _guards) = call_context(state, req);
    let id = context.request_id.clone();
    let call = GenerationCall {
        prompt,
        params,
        context,
    };
    let trace_id = call.context.trace_id.clone();
    let generated = call.run(generator, None).await?;
    let answer = generation_answer(state, (id, &trace_id), &generator.name, &generated, begun);
    Ok(HttpResponse::Ok()
        .insert_header((TRACE_ID_HEADER, answer.trace_id.clone()))
        .json(answer))
}

/// Runs `prompt` on `generator`, streaming a `token` event per token, then `done` or
/// `error`.
fn stream_generation(
    state: web::Data<AppState>,
    req: &HttpRequest,
    generator: Named<Generate>,
    prompt: Prompt,
    params: GenerationParams,
    begun: Instant,
) -> Result<HttpResponse, ApiError> {
    // A stream opened only to fail at once would hide the 429 from the client.
    check_room(&state, &generator.name)?;
    // The guards live as long as the response body: dropping it (the client is gone) cancels.
    let (context, guards) = call_context(&state, req);
    let (sink, events) = mpsc::unbounded_channel();
    let id = context.request_id.clone();
    let call = GenerationCall {
        prompt,
        params,
        context,
    };
    let trace_id = call.context.trace_id.clone();
    actix_web::rt::spawn(async move {
        let generated = call
            .run_streaming(&generator, |token| {
                let _ = sink.send(ModelStreamEvent::Token {
                    index: token.index,
                    token_id: token.token_id,
                    text: token.text,
                    logprob: token.logprob,
                });
            })
            .await;
        let last = match generated {
            Ok(generated) => ModelStreamEvent::Done(Box::new(generation_answer(
                &state,
                (id, &trace_id),
                &generator.name,
                &generated,
                begun,
            ))),
            Err(error) => ModelStreamEvent::Error {
                error: error.to_string(),
                error_type: error.error_type().to_string(),
            },
        };
        let _ = sink.send(last);
    });
    Ok(event_stream(events, guards, |event: &ModelStreamEvent| {
        format!(
            "event: {}\ndata: {}\n\n",
            event.kind(),
            serde_json::to_string(event).expect("events serialize")
        )
    }))
}

/// Score one text, or several, with the classifier: each text's label, score and every
/// label's score.
#[utoipa::path(post, path = "/v1/models/{name}/classify", tag = "models", request_body = ClassifyRequest,
    params(("name" = String, Path, description = "A classifier's name (`GET /v1/models`)")),
    responses((status = 200, description = "One result per text, in order", body = ClassifyResponse,
            headers(("x-trace-id" = String, description = "The request's trace"))), RequestErrors))]
pub(super) async fn classify(
    state: web::Data<AppState>,
    req: HttpRequest,
    name: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let begun = Instant::now();
    let classifier = find_classifier(&state, &name)?;
    let request: ClassifyRequest = read_json(&state, &req, payload).await?;
    let texts = request_texts(&state, request.text, request.texts)?;
    if let Some(pair) = &request.text_pair {
        validate_text(&state, "text_pair", pair)?;
    }
    check_room(&state, &classifier.name)?;
    let (context, _guards) = call_context(&state, &req);
    let id = context.request_id.clone();
    let calls = texts.into_iter().map(|text| {
        let send = classifier.addr.send(Classify {
            text,
            pair: request.text_pair.clone(),
            context: context.clone(),
        });
        let model = classifier.name.clone();
        async move {
            send.await
                .map_err(|_| ApiError::Model(format!("model {model:?} is not running")))?
                .map_err(ApiError::from)
        }
    });
    let classified = within_deadline(&context, try_join_all(calls)).await?;
    let labels = state
        .ready_graph()?
        .models
        .iter()
        .find(|m| m.name == classifier.name)
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let spans: Vec<WorkSpan> = classified.iter().map(|c| c.span).collect();
    let calls: Vec<_> = classified
        .iter()
        .map(|c| {
            let result = &c.classification;
            let attributes = json!({
                "model": classifier.name,
                "label": result.label,
                "score": result.score,
                "input_tokens": result.input_ids.len(),
            });
            (c.span, attributes)
        })
        .collect();
    let trace = model_trace(
        &id,
        &context.trace_id,
        begun,
        Instant::now(),
        "classify",
        &calls,
    );
    let trace_id = state.record_trace(trace);
    let results = classified
        .into_iter()
        .map(|c| ClassifyResult {
            scores: labels
                .iter()
                .zip(&c.classification.scores)
                .map(|(label, &score)| LabelScore {
                    label: label.clone(),
                    score,
                })
                .collect(),
            label: c.classification.label,
            score: c.classification.score,
            logits: c.classification.logits,
            input_token_ids: c.classification.input_ids,
        })
        .collect();
    Ok(HttpResponse::Ok()
        .insert_header((TRACE_ID_HEADER, trace_id.clone()))
        .json(ClassifyResponse {
            id,
            model: classifier.name.clone(),
            trace_id,
            results,
            timings: timings(&spans, begun),
        }))
}

/// Embed one text, or several, with an embedder.
#[utoipa::path(post, path = "/v1/models/{name}/embed", tag = "models", request_body = EmbedRequest,
    params(("name" = String, Path, description = "An embedder's name (`GET /v1/models`)")),
    responses((status = 200, description = "One embedding per text, in order", body = EmbedResponse,
            headers(("x-trace-id" = String, description = "The request's trace"))), RequestErrors))]
pub(super) async fn embed(
    state: web::Data<AppState>,
    req: HttpRequest,
    name: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let begun = Instant::now();
    let embedder = find_embedder(&state, &name, "/v1/models/{name}/embed")?;
    let request: EmbedRequest = read_json(&state, &req, payload).await?;
    let texts = request_texts(&state, request.text, request.texts)?;
    check_room(&state, &embedder.name)?;
    let (context, _guards) = call_context(&state, &req);
    let id = context.request_id.clone();
    let (embedded, trace_id) = run_embeddings(&state, &embedder, texts, &context, begun).await?;
    let spans: Vec<WorkSpan> = embedded.iter().map(|e| e.span).collect();
    let dimension = embedded.first().map_or(0, |e| e.embedding.embedding.len());
    let results = embedded
        .into_iter()
        .map(|e| EmbedResult {
            input_tokens: e.embedding.input_ids.len(),
            truncated: e.embedding.truncated,
            embedding: e.embedding.embedding,
        })
        .collect();
    Ok(HttpResponse::Ok()
        .insert_header((TRACE_ID_HEADER, trace_id.clone()))
        .json(EmbedResponse {
            id,
            model: embedder.name.clone(),
            trace_id,
            dimension,
            results,
            timings: timings(&spans, begun),
        }))
}

/// The texts of a classify or embed request: exactly one of `text` and `texts`, each valid.
fn request_texts(
    state: &AppState,
    text: Option<String>,
    texts: Option<Vec<String>>,
) -> Result<Vec<String>, ApiError> {
    let texts = match (text, texts) {
        (Some(text), None) => {
            validate_text(state, "text", &text)?;
            return Ok(vec![text]);
        }
        (None, Some(texts)) => texts,
        _ => {
            return Err(ApiError::Validation(
                "text, texts: give exactly one of the two".into(),
            ))
        }
    };
    if texts.is_empty() || texts.len() > MAX_TEXTS {
        return Err(ApiError::Validation(format!(
            "texts: {} texts; give 1 to {MAX_TEXTS}",
            texts.len()
        )));
    }
    for (i, text) in texts.iter().enumerate() {
        validate_text(state, &format!("texts[{i}]"), text)?;
    }
    Ok(texts)
}

/// Keeps the generation's trace and shapes the answer.
fn generation_answer(
    state: &AppState,
    (id, trace_id): (String, &str),
    model: &str,
    generated: &Generated,
    begun: Instant,
) -> ModelGenerateResponse {
    let g = &generated.generation;
    let attributes = generation_attributes(model, g);
    let trace = model_trace(
        &id,
        trace_id,
        begun,
        Instant::now(),
        "generate",
        &[(generated.span, attributes)],
    );
    ModelGenerateResponse {
        trace_id: state.record_trace(trace),
        id,
        model: model.to_string(),
        generated: g.text.clone(),
        prompt_token_ids: g.prompt_ids.clone(),
        continuation: g.new_text.clone(),
        finish_reason: g.finish_reason,
        prompt_tokens: g.prompt_ids.len(),
        generated_tokens: g.new_token_ids.len(),
        token_ids: g.new_token_ids.clone(),
        logprobs: g.logprobs.clone(),
        prompt_logprobs: g.prompt_logprobs.clone(),
        timings: timings(&[generated.span], begun),
    }
}
