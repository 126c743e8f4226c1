//! The HTTP API's request and response bodies, in one place.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::models::FinishReason;

/// `POST /generate_score`: the BentoML example's current API.
#[derive(Debug, Deserialize, ToSchema)]
pub struct GenerateScoreRequest {
    pub original_sentence: String,
}

/// One element of the seed-compatible answer of `/classify_generated_texts` and
/// `/generate_score`.
#[derive(Debug, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct GeneratedScore {
    /// Prompt plus continuation, as Hugging Face's text-generation pipeline returns it.
    pub generated: String,
    /// The classifier's top-class probability for `generated`.
    pub score: f32,
}

/// `POST /v1/graph`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GraphRequest {
    pub text: String,
    /// Tokens to add to the prompt. Exclusive with `max_length`.
    pub max_new_tokens: Option<usize>,
    /// Total tokens, prompt included. Defaults to `generation.max_length` in config.
    pub max_length: Option<usize>,
    /// End-of-sequence is suppressed until this many tokens are generated.
    pub min_new_tokens: Option<usize>,
    /// 0 (the default) is greedy; above 0, tokens are sampled.
    pub temperature: Option<f32>,
    pub top_k: Option<usize>,
    pub top_p: Option<f32>,
    /// Above 1 discourages repeating any token of the sequence so far.
    pub repetition_penalty: Option<f32>,
    /// Makes a sampled result reproducible.
    pub seed: Option<u64>,
    /// Up to 4 strings; a generation ends once its continuation contains one.
    pub stop: Option<Vec<String>>,
}

/// `POST /v1/graph`'s answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct GraphResponse {
    /// The request id (the `x-request-id` header).
    pub id: String,
    /// The request's trace, at `GET /v1/traces/{trace_id}` (also the `x-trace-id` header).
    pub trace_id: String,
    /// One per generator, in the graph's order.
    pub results: Vec<GraphResult>,
    pub timings: GraphTimings,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct GraphResult {
    pub model: String,
    pub generated: String,
    pub score: f32,
    pub label: String,
    pub finish_reason: FinishReason,
    pub prompt_tokens: usize,
    pub generated_tokens: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct GraphTimings {
    pub total_ms: f64,
    /// Model time of each generation, by model.
    pub generate_ms: BTreeMap<String, f64>,
    /// Model time of each classification, in generator order.
    pub classify_ms: Vec<f64>,
    /// When each step ran, relative to the coordinator receiving the request.
    pub spans: Vec<StepSpan>,
}

/// One step of the graph on the request's timeline.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StepSpan {
    /// `generate` or `classify`.
    pub step: String,
    /// The generator whose text this step produced or scored.
    pub model: String,
    pub start_ms: f64,
    pub end_ms: f64,
}

/// `GET /v1/models`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ModelsResponse {
    pub models: Vec<ModelInfo>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ModelInfo {
    pub name: String,
    /// `generator` or `classifier`.
    pub role: String,
    /// `gpt2` or `bert`.
    pub architecture: String,
    pub path: String,
    pub layers: usize,
    pub hidden_size: usize,
    pub heads: usize,
    pub vocab_size: usize,
    /// Longest sequence the model takes, in tokens.
    pub context_length: usize,
    pub parameters: usize,
    /// The element type weights are computed in (checkpoints in F16/BF16 are widened).
    pub dtype: String,
    /// `wgpu` or `cpu`.
    pub backend: String,
    pub device: String,
    /// Classifier label names, in class order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<Vec<String>>,
}

/// One event of a streaming graph request: a websocket text frame, or an SSE event whose
/// `event:` is the `type`. Per request: `started`, then `token`s (interleaved across models),
/// each model's `generated` after its tokens, the `classified` scores in generator order
/// after every `generated`, and `done` (or `error`) last.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum StreamEvent {
    Started {
        id: String,
    },
    Token {
        id: String,
        model: String,
        /// Position in the model's continuation, from 0.
        index: usize,
        token_id: u32,
        /// What the token adds to the text; never a broken UTF-8 character.
        text: String,
    },
    Generated {
        id: String,
        model: String,
        /// Prompt plus continuation.
        text: String,
        finish_reason: FinishReason,
    },
    Classified {
        id: String,
        model: String,
        score: f32,
        label: String,
    },
    /// Exactly what `POST /v1/graph` answers.
    Done {
        id: String,
        trace_id: String,
        results: Vec<GraphResult>,
        timings: GraphTimings,
    },
    Error {
        /// Absent when the frame itself could not be read as a request.
        id: Option<String>,
        error: String,
        error_type: String,
    },
}

impl StreamEvent {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Started { .. } => "started",
            Self::Token { .. } => "token",
            Self::Generated { .. } => "generated",
            Self::Classified { .. } => "classified",
            Self::Done { .. } => "done",
            Self::Error { .. } => "error",
        }
    }

    /// Whether this event ends its request.
    pub fn is_last(&self) -> bool {
        matches!(self, Self::Done { .. } | Self::Error { .. })
    }

    pub fn id(&self) -> Option<&str> {
        match self {
            Self::Started { id }
            | Self::Token { id, .. }
            | Self::Generated { id, .. }
            | Self::Classified { id, .. }
            | Self::Done { id, .. } => Some(id),
            Self::Error { id, .. } => id.as_deref(),
        }
    }
}

/// `GET /v1/engines`: each model engine's counters.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EnginesResponse {
    pub engines: Vec<EngineInfo>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EngineInfo {
    pub model: String,
    /// `generator` or `classifier`.
    pub role: String,
    pub max_batch: usize,
    pub queue_capacity: usize,
    /// Accepted, waiting to join the batch.
    pub queued: usize,
    /// In the running batch.
    pub active: usize,
    /// Decode steps run so far.
    pub steps: u64,
    /// Requests that entered the batch.
    pub admitted: u64,
    pub completed: u64,
    pub cancelled: u64,
    pub failed: u64,
    /// Refused with 429 because the queue was full.
    pub rejected: u64,
    /// Time the model spent in forwards.
    pub busy_seconds: f64,
    pub tokens_generated: u64,
    /// Forwards run, and the requests they served in all (their ratio is the mean batch).
    pub forwards: u64,
    pub batched_requests: f64,
}

/// The errors a graph request may answer with, for the OpenAPI document; each body is an
/// `ErrorBody` (the variants mirror `ApiError`'s statuses).
#[derive(utoipa::IntoResponses)]
pub enum GraphErrors {
    /// Malformed JSON or invalid UTF-8.
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// The body is over `limits.max_body_bytes`.
    #[response(status = 413)]
    PayloadTooLarge(ErrorBody),
    /// Wrong content type.
    #[response(status = 415)]
    UnsupportedMediaType(ErrorBody),
    /// Invalid input or parameters.
    #[response(status = 422)]
    Validation(ErrorBody),
    /// A model's queue is full; see `Retry-After`.
    #[response(status = 429)]
    Overloaded(ErrorBody),
    /// A model failed.
    #[response(status = 500)]
    Model(ErrorBody),
    /// Loading or shutting down; see `Retry-After`.
    #[response(status = 503)]
    Unavailable(ErrorBody),
    /// Past `limits.request_timeout_ms`.
    #[response(status = 504)]
    Timeout(ErrorBody),
}

/// Every error body.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: String,
    pub error_type: String,
}

/// `GET /livez`, `/readyz`, `/healthz`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HealthBody {
    /// `ok`, `loading`, `shutting_down` or `failed`.
    pub status: String,
}

/// `GET /v1/traces`: the kept traces, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TracesResponse {
    pub traces: Vec<crate::telemetry::traces::TraceSummary>,
}
