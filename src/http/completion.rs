//! What `/v1/completions` (`openai.rs`) and `/v1/chat/completions` (`chat.rs`) share: the
//! sampling checks, the frames of a stream, OpenAI's finish reasons and usage, and the
//! request's trace.

use std::time::Instant;

use serde_json::{json, Map, Value};

use super::api::CompletionUsage;
use super::error::ApiError;
use super::model_calls::generation_attributes;
use super::state::AppState;
use crate::actors::{CallContext, Generated};
use crate::models::FinishReason;
use crate::telemetry::traces::model_trace;

/// The sampling fields both OpenAI routes take, as sent.
pub(super) struct Sampling<'a> {
    pub frequency_penalty: Option<f64>,
    pub presence_penalty: Option<f64>,
    pub logit_bias: Option<&'a Map<String, Value>>,
    pub temperature: Option<f64>,
}

/// Refuses, in one 422, `unsupported` (what the route found) and the sampling both OpenAI
/// routes cannot honour (non-zero penalties, a logit bias); then checks the temperature.
pub(super) fn check_sampling(
    mut unsupported: Vec<&'static str>,
    sampling: Sampling,
) -> Result<(), ApiError> {
    if sampling.frequency_penalty.is_some_and(|p| p != 0.0) {
        unsupported.push("frequency_penalty (only 0)");
    }
    if sampling.presence_penalty.is_some_and(|p| p != 0.0) {
        unsupported.push("presence_penalty (only 0)");
    }
    if sampling.logit_bias.is_some_and(|b| !b.is_empty()) {
        unsupported.push("logit_bias (only empty)");
    }
    if !unsupported.is_empty() {
        return Err(ApiError::Validation(format!(
            "not implemented: {}",
            unsupported.join(", ")
        )));
    }
    if let Some(t) = sampling.temperature {
        if !(0.0..=2.0).contains(&t) {
            return Err(ApiError::Validation(format!(
                "temperature: {t} is out of range 0..=2"
            )));
        }
    }
    Ok(())
}

/// One `data:` line of a streamed completion (or chat completion).
pub(super) enum Frame<C> {
    Chunk(C),
    Error(ApiError),
    Done,
}

impl<C: serde::Serialize> Frame<C> {
    pub(super) fn render(&self) -> String {
        let data = match self {
            Self::Chunk(chunk) => serde_json::to_string(chunk).expect("chunks serialize"),
            Self::Error(error) => json!({"error": {
                "message": error.to_string(),
                "type": error.error_type(),
            }})
            .to_string(),
            Self::Done => "[DONE]".into(),
        };
        format!("data: {data}\n\n")
    }
}

/// OpenAI's names: an end-of-sequence token or a stop string are both `stop`.
pub(super) fn finish_reason(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::Length => "length",
        FinishReason::Eos | FinishReason::Stop => "stop",
    }
}

pub(super) fn usage(generated: &[Generated]) -> CompletionUsage {
    let prompt_tokens = generated
        .iter()
        .map(|g| g.generation.prompt_ids.len())
        .sum();
    let completion_tokens = generated
        .iter()
        .map(|g| g.generation.new_token_ids.len())
        .sum();
    CompletionUsage {
        prompt_tokens,
        completion_tokens,
        total_tokens: prompt_tokens + completion_tokens,
    }
}

/// Keeps the request's trace (one `generate` span per prompt); returns its id.
pub(super) fn record(
    state: &AppState,
    context: &CallContext,
    model: &str,
    begun: Instant,
    generated: &[Generated],
) -> String {
    let calls: Vec<_> = generated
        .iter()
        .map(|g| (g.span, generation_attributes(model, &g.generation)))
        .collect();
    let trace = model_trace(
        &context.request_id,
        &context.trace_id,
        begun,
        Instant::now(),
        "generate",
        &calls,
    );
    state.record_trace(trace)
}
