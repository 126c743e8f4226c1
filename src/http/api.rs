//! The HTTP API's request and response bodies, in one place.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::models::logprobs::{PromptLogprobs, TokenLogprob};
use crate::models::{FinishReason, ResponseFormat};

/// What every input text must hold (`/openapi.json` states it as a pattern): a character
/// that is neither white space (Rust's `char::is_whitespace`) nor a control character
/// (`char::is_control`). A text of those alone may have no tokens at all: SmolLM2's
/// vocabulary, as Hugging Face ships it, has none for six of the C0 controls.
pub const TEXT_PATTERN: &str =
    r"[^\x00-\x20\x7F-\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]";

/// An optional integer field that also takes an integral number written as a float
/// (`2.0`), as JSON Schema's `integer` does.
fn integral<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<u64>,
{
    use serde::de::Error;
    let Some(number) = Option::<serde_json::Number>::deserialize(deserializer)? else {
        return Ok(None);
    };
    whole(&number)
        .and_then(|n| T::try_from(n).ok())
        .map(Some)
        .ok_or_else(|| D::Error::custom(format!("{number} is not a non-negative integer in range")))
}

/// vLLM's `top_k` on the OpenAI routes: a positive integer, or -1 or 0 for every token (as
/// `None`); whole floats count, as [`integral`] reads them.
fn top_k_or_all<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<usize>, D::Error> {
    use serde::de::Error;
    let Some(number) = Option::<serde_json::Number>::deserialize(deserializer)? else {
        return Ok(None);
    };
    if number.as_f64() == Some(-1.0) {
        return Ok(None);
    }
    whole(&number)
        .and_then(|k| usize::try_from(k).ok())
        .map(|k| (k > 0).then_some(k))
        .ok_or_else(|| {
            D::Error::custom(format!(
                "top_k: {number} is not a positive integer, or -1 or 0 for every token"
            ))
        })
}

/// `number` as a `u64`, if it is a whole one (`3.0` too, as JSON Schema's integers are).
pub(super) fn whole(number: &serde_json::Number) -> Option<u64> {
    number.as_u64().or_else(|| {
        let f = number.as_f64()?;
        // 2^64: the first float past u64's range.
        (f >= 0.0 && f.fract() == 0.0 && f < 18_446_744_073_709_551_616.0).then_some(f as u64)
    })
}

/// `POST /generate_score`: the BentoML example's current API.
#[derive(Debug, Deserialize, ToSchema)]
pub struct GenerateScoreRequest {
    /// Not only white space and control characters; at most `limits.max_input_chars`
    /// characters.
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

/// The body of `POST /v1/graph` (and its streams) and of `POST /v1/models/{name}/generate`:
/// a text and how to continue it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GenerationRequest {
    /// Not only white space and control characters; at most `limits.max_input_chars`
    /// characters.
    pub text: String,
    /// Tokens to add to the prompt. With `max_length` too, whichever ends the generation
    /// first applies.
    #[schema(minimum = 1)]
    #[serde(default, deserialize_with = "integral")]
    pub max_new_tokens: Option<usize>,
    /// Total tokens, prompt included. Defaults to `generation.max_length` in config.
    #[schema(minimum = 2)]
    #[serde(default, deserialize_with = "integral")]
    pub max_length: Option<usize>,
    /// End-of-sequence is suppressed until this many tokens are generated (a budget that
    /// ends the generation first still ends it).
    #[serde(default, deserialize_with = "integral")]
    pub min_new_tokens: Option<usize>,
    /// 0 (the default) is greedy; above 0, tokens are sampled.
    #[schema(minimum = 0, maximum = 100)]
    pub temperature: Option<f64>,
    #[schema(minimum = 1)]
    #[serde(default, deserialize_with = "integral")]
    pub top_k: Option<usize>,
    #[schema(exclusive_minimum = 0, maximum = 1)]
    pub top_p: Option<f64>,
    /// Keeps the tokens at least this many times as likely as the most likely one (0 keeps
    /// all), after `top_k` and `top_p`.
    #[schema(minimum = 0, maximum = 1)]
    pub min_p: Option<f64>,
    /// Above 1 discourages repeating any token of the sequence so far.
    #[schema(exclusive_minimum = 0, maximum = 100)]
    pub repetition_penalty: Option<f64>,
    /// OpenAI's: lowers the logit of each token the continuation already holds by this much
    /// (prompt tokens do not count). 0, the default, is none; below 0 favours repeats.
    #[schema(minimum = -2, maximum = 2)]
    pub presence_penalty: Option<f64>,
    /// OpenAI's: lowers a token's logit by this much for each time the continuation holds
    /// it. 0, the default, is none.
    #[schema(minimum = -2, maximum = 2)]
    pub frequency_penalty: Option<f64>,
    /// Makes a sampled result reproducible.
    #[serde(default, deserialize_with = "integral")]
    pub seed: Option<u64>,
    /// Up to 4 strings; a generation ends once its continuation contains one.
    pub stop: Option<Vec<String>>,
    /// Model routes only: report each new token's log-probability under the model (raw
    /// logits, before sampling's changes) with this many most likely alternatives (0 to 20).
    #[schema(minimum = 0, maximum = 20)]
    #[serde(default, deserialize_with = "integral")]
    pub logprobs: Option<usize>,
    /// Model routes only, with `logprobs`: report the prompt's tokens' too, each under the
    /// logits of the position before it.
    pub prompt_logprobs: Option<bool>,
    /// Model routes only (a graph's generators have vocabularies of their own): token id (as
    /// a string: its decimal digits) to a bias from −100 to 100 added to its logit before
    /// each pick, as OpenAI's (at most 1024 ids, each in the model's vocabulary; the model
    /// loaded on this server).
    #[schema(value_type = Option<Object>)]
    pub logit_bias: Option<serde_json::Map<String, serde_json::Value>>,
    /// Model routes only: `{"type": "json_object"}` keeps the continuation a JSON object
    /// (JSON mode), `{"type": "json_schema", "json_schema": {"name", "schema"}}` a value of
    /// the schema (README: JSON mode); `{"type": "text"}`, the default, any text.
    #[schema(value_type = Option<Object>)]
    pub response_format: Option<ResponseFormat>,
}

/// The answer of `POST /v1/graph` (the default graph) and `POST /v1/graphs/{name}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct GraphResponse {
    /// The request id (the `x-request-id` header).
    pub id: String,
    /// The request's trace, at `GET /v1/traces/{trace_id}` (also the `x-trace-id` header).
    pub trace_id: String,
    /// The graph that ran.
    pub graph: String,
    /// The last step's results (for the built-in graph: one per generator, in order).
    pub results: Vec<GraphResult>,
    /// What every step did, in order.
    pub steps: Vec<StepReport>,
    /// Calls that failed in steps that carry on (`on_error = "continue"`): their results
    /// are missing from the answer, and each is named here.
    pub failures: Vec<StepFailureReport>,
    /// Tokens generated by all of the request's generate calls (also those whose results
    /// a later step left out).
    pub generated_tokens: usize,
    pub timings: GraphTimings,
}

/// One result: a text, what made it, and its score once a classifier gave one.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct GraphResult {
    /// The generator that wrote `generated`; absent when it is the request's own text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Prompt plus continuation (the request's text, for a result no generator made).
    pub generated: String,
    /// The classifier's top-class probability for `generated`, once classified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// The next three: only for a generated text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<FinishReason>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generated_tokens: Option<usize>,
}

/// What one step of the graph did (when it ran is in `timings.steps`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StepReport {
    pub name: String,
    /// `parallel`, `each`, `switch`, `split` or `select`.
    pub kind: String,
    pub results: Vec<GraphResult>,
    /// For a switch or split step: where each item went, and why.
    pub routes: Vec<RouteReport>,
}

/// A switch or split step's choice for one item.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RouteReport {
    /// The generator whose text was routed; absent for the request's own text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The model it was sent to: the branch taken.
    pub to: String,
    /// The switch case that matched (`label = "LABEL_0"`, `otherwise`, ..) or the split's
    /// draw (`drew 37 of 0..100: weight 90`).
    pub reason: String,
}

/// A failed call the graph carried on without.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StepFailureReport {
    pub step: String,
    /// The model that failed; absent when none was called (no switch case matched).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The generator whose text the call took; absent for the request's own text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub of: Option<String>,
    pub error: String,
    /// As in an error body: `model_unavailable`, `overloaded`, `no_route`, ..
    pub error_type: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct GraphTimings {
    pub total_ms: f64,
    /// Model time of the generations, by model (summed over a model's calls).
    pub generate_ms: BTreeMap<String, f64>,
    /// Model time of each classification, in the order they ran.
    pub classify_ms: Vec<f64>,
    /// When each model call ran, relative to the coordinator receiving the request.
    pub spans: Vec<StepSpan>,
    /// When each graph step ran, on the same clock.
    pub steps: Vec<StepTiming>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StepTiming {
    pub name: String,
    pub start_ms: f64,
    pub end_ms: f64,
}

/// One model call of the graph on the request's timeline.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StepSpan {
    /// `generate` or `classify`.
    pub step: String,
    /// The generator whose text this call produced or scored (for a call on the request's
    /// own text, the model called).
    pub model: String,
    /// The graph step the call belongs to.
    pub graph_step: String,
    pub start_ms: f64,
    pub end_ms: f64,
}

/// `GET /v1/graphs`: every graph the server runs, with its steps.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct GraphsResponse {
    pub graphs: Vec<GraphInfo>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct GraphInfo {
    /// At `POST /v1/graphs/{name}`.
    pub name: String,
    /// Whether it also serves `/v1/graph`, the seed endpoints and the default streams.
    pub default: bool,
    pub steps: Vec<StepInfo>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StepInfo {
    pub name: String,
    /// `parallel`, `each`, `switch`, `split` or `select`.
    pub kind: String,
    /// `request` (the request's text) or `previous` (the step before's results).
    pub input: String,
    /// `fail` or `continue`.
    pub on_error: String,
    /// The model calls it may make; a switch's carry `when`, a split's `weight`.
    pub calls: Vec<CallInfo>,
    /// A select step's rule: `highest_score` or `lowest_score`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub select: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CallInfo {
    /// `generate` or `classify`.
    pub action: String,
    pub model: String,
    /// A switch case's condition, as written (`label = "LABEL_0"`), or `otherwise`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    /// A split branch's percent of requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    /// A generate call's own prompt around the item's text (`{text}`); the item's text
    /// afterwards is the answer alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// A generate call's conversation around the item's text, rendered with the model's
    /// chat template; the item's text afterwards is the answer alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat: Option<ChatStepInfo>,
}

/// A `chat = { system, user }` call, as configured.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChatStepInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    pub user: String,
}

/// `GET /v1/models`: every model in full (`models`), and the same list as the OpenAI API
/// shapes it (`object`, `data`), so OpenAI clients can list them.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ModelsResponse {
    pub models: Vec<ModelInfo>,
    /// Always `list`.
    pub object: String,
    pub data: Vec<OpenAiModel>,
}

/// A model as OpenAI's `GET /v1/models` lists it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OpenAiModel {
    /// The model's name, as `model` in `/v1/completions` takes it.
    pub id: String,
    /// Always `model`.
    pub object: String,
    /// When the server loaded it, in seconds since the Unix epoch.
    pub created: u64,
    /// Always `infergraph`.
    pub owned_by: String,
}

/// What a generator takes as a token-id prompt: checked by `model_calls::check_token_ids`,
/// stated per model in the OpenAPI document.
pub struct TokenPromptBounds {
    /// One below its vocabulary's size.
    pub max_id: usize,
    /// What its context leaves room for, at most `limits.max_input_tokens`.
    pub max_len: usize,
}

impl TokenPromptBounds {
    pub fn of(model: &ModelInfo, max_input_tokens: usize) -> Self {
        Self {
            max_id: model.vocab_size - 1,
            max_len: (model.context_length - 1).min(max_input_tokens),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ModelInfo {
    pub name: String,
    /// `generator`, `classifier` or `embedder`.
    pub role: String,
    /// Its `config.json`'s `model_type`: `gpt2`, `llama`, `mistral`, `qwen2`, `qwen3`,
    /// `bert`, `roberta`, `xlm-roberta`, `camembert` or `distilbert`.
    pub architecture: String,
    pub path: String,
    /// The checkpoint's format: `safetensors` (a Hugging Face folder) or `gguf` (a GGUF
    /// file, named by `path`).
    #[serde(default)]
    pub format: String,
    pub layers: usize,
    pub hidden_size: usize,
    pub heads: usize,
    pub vocab_size: usize,
    /// Longest sequence the model takes, in tokens.
    pub context_length: usize,
    pub parameters: usize,
    /// What the dense layers' weights are kept in: `f32`, `f16`, `bf16`, `int8`, `w8a8`, `q4`
    /// or `w4a8` (`dtype` in config, else as stored; the word embeddings too; position
    /// embeddings, layer norms and biases stay f32).
    pub dtype: String,
    /// `wgpu` or `cpu`.
    pub backend: String,
    pub device: String,
    /// Classifier label names, in class order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<Vec<String>>,
    /// A generator that can chat (`/v1/chat/completions`, `/v1/models/{name}/chat`): where
    /// its chat template came from (`chat_template.jinja`, `tokenizer_config.json`, `gguf`,
    /// `config`). Absent: it has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat_template: Option<String>,
    /// An embedder's pooling: `mean` or `cls`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pooling: Option<String>,
    /// An embedder's embedding length.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimension: Option<usize>,
    /// `local` (loaded by this server), or `remote` (served by the model nodes in
    /// `replicas`; the other fields are as the node reports them, once one answered).
    #[serde(default)]
    pub location: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<Vec<ReplicaInfo>>,
}

/// One model node serving a remote model, as this server sees it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReplicaInfo {
    pub url: String,
    /// Its `/readyz` answered 200 and no call to it has failed since.
    pub ready: bool,
    /// Calls sent to it and not yet answered.
    pub in_flight: usize,
    /// Calls it answered.
    pub served: u64,
}

/// One event of a streaming graph request: a websocket text frame, or an SSE event whose
/// `event:` is the `type`. Per request: `started`, then each step's events in step order
/// (`token`s interleaved across a parallel step's models, a generator's `generated` after
/// its tokens, `classified`, `routed`, `selected`, `skipped`), and `done` (or `error`) last.
/// For the built-in graph: every `generated` before the first `classified`, and the
/// `classified` scores in generator order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum StreamEvent {
    Started {
        id: String,
    },
    Token {
        id: String,
        /// The graph step it comes from.
        step: String,
        model: String,
        /// Position in the model's continuation, from 0.
        index: usize,
        token_id: u32,
        /// What the token adds to the text; never a broken UTF-8 character.
        text: String,
    },
    Generated {
        id: String,
        step: String,
        model: String,
        /// Prompt plus continuation.
        text: String,
        finish_reason: FinishReason,
    },
    Classified {
        id: String,
        step: String,
        /// The generator whose text was scored; absent for the request's own text.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        model: Option<String>,
        /// The classifier that scored it.
        classifier: String,
        score: f32,
        label: String,
    },
    /// A switch or split step sent an item to `to`.
    Routed {
        id: String,
        step: String,
        /// The generator whose text was routed; absent for the request's own text.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        model: Option<String>,
        to: String,
        reason: String,
    },
    /// A select step kept one result.
    Selected {
        id: String,
        step: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        model: Option<String>,
        score: f32,
    },
    /// A call failed in a step that carries on without it (also in `done`'s `failures`).
    Skipped {
        id: String,
        #[serde(flatten)]
        failure: StepFailureReport,
    },
    /// Exactly what `POST /v1/graph` answers.
    Done(GraphResponse),
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
            Self::Routed { .. } => "routed",
            Self::Selected { .. } => "selected",
            Self::Skipped { .. } => "skipped",
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
            | Self::Routed { id, .. }
            | Self::Selected { id, .. }
            | Self::Skipped { id, .. } => Some(id),
            Self::Done(answer) => Some(&answer.id),
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

/// The errors a graph or model request may answer with, for the OpenAPI document; each body
/// is an `ErrorBody` (the variants mirror `ApiError`'s statuses).
#[derive(utoipa::IntoResponses)]
pub enum RequestErrors {
    /// Malformed JSON or invalid UTF-8.
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// No model of that name (`model_not_found`, naming those there are), or a graph route
    /// on a model node (`no_graph`).
    #[response(status = 404)]
    NotFound(ErrorBody),
    /// The body is over `limits.max_body_bytes`.
    #[response(status = 413)]
    PayloadTooLarge(ErrorBody),
    /// Wrong content type.
    #[response(status = 415)]
    UnsupportedMediaType(ErrorBody),
    /// Invalid input or parameters, or a model whose role does not fit the route.
    #[response(status = 422)]
    Validation(ErrorBody),
    /// A model's queue is full; see `Retry-After`.
    #[response(status = 429)]
    Overloaded(ErrorBody),
    /// A model failed.
    #[response(status = 500)]
    Model(ErrorBody),
    /// Loading or shutting down (see `Retry-After`), or a remote model unreachable.
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
    /// `ok`, `loading`, `shutting_down`, `failed`, or `models_unavailable` (a graph node
    /// while a remote model has no ready replica).
    pub status: String,
    /// With `models_unavailable`: those models.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<Vec<String>>,
}

/// `GET /v1/traces`: the kept traces, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TracesResponse {
    pub traces: Vec<crate::telemetry::traces::TraceSummary>,
}

/// How long one model request took: waiting in the model's queue, in the model, and in all.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ModelTimings {
    /// From reaching the model's queue to its first forward.
    pub queue_ms: f64,
    /// From its first forward to its answer.
    pub compute_ms: f64,
    /// From the server receiving the request to the answer.
    pub total_ms: f64,
}

/// `POST /v1/models/{name}/generate`'s answer (and its stream's `done` event).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ModelGenerateResponse {
    /// The request id (the `x-request-id` header).
    pub id: String,
    pub model: String,
    /// The request's trace, at `GET /v1/traces/{trace_id}` (also the `x-trace-id` header).
    pub trace_id: String,
    /// Prompt plus continuation, as in the graph's results (the answer alone, for a chat).
    pub generated: String,
    /// The prompt's token ids.
    pub prompt_token_ids: Vec<u32>,
    /// The continuation alone.
    pub continuation: String,
    pub finish_reason: FinishReason,
    pub prompt_tokens: usize,
    pub generated_tokens: usize,
    /// The continuation's token ids.
    pub token_ids: Vec<u32>,
    /// Each new token's log-probability, when the request gave `logprobs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<Vec<TokenLogprob>>,
    /// The prompt's tokens', when the request gave `prompt_logprobs: true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_logprobs: Option<PromptLogprobs>,
    pub timings: ModelTimings,
}

/// One event of `POST /v1/models/{name}/generate/stream`, an SSE event whose `event:` is
/// the `type`: `token`s, then `done` or `error`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ModelStreamEvent {
    Token {
        /// Position in the continuation, from 0.
        index: usize,
        token_id: u32,
        /// What the token adds to the continuation; never a broken UTF-8 character.
        text: String,
        /// The token's log-probability, when the request gave `logprobs`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        logprob: Option<TokenLogprob>,
    },
    /// Exactly what `POST /v1/models/{name}/generate` answers.
    /// Boxed: with log-probabilities it outweighs a token by far.
    Done(Box<ModelGenerateResponse>),
    Error {
        error: String,
        error_type: String,
    },
}

impl ModelStreamEvent {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Token { .. } => "token",
            Self::Done(_) => "done",
            Self::Error { .. } => "error",
        }
    }
}

/// `POST /v1/models/{name}/classify`: one `text` or a list of `texts` (exactly one of the
/// two), each scored with the same optional `text_pair` as its second segment.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClassifyRequest {
    pub text: Option<String>,
    #[schema(min_items = 1, max_items = 32)]
    pub texts: Option<Vec<String>>,
    pub text_pair: Option<String>,
}

/// `POST /v1/models/{name}/classify`'s answer: one result per text, in order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ClassifyResponse {
    pub id: String,
    pub model: String,
    pub trace_id: String,
    pub results: Vec<ClassifyResult>,
    pub timings: ModelTimings,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ClassifyResult {
    /// The top class's name.
    pub label: String,
    /// The top class's probability.
    pub score: f32,
    /// Every class's probability, in class order.
    pub scores: Vec<LabelScore>,
    /// The model's raw outputs, in class order.
    pub logits: Vec<f32>,
    /// The text's (and pair's) token ids, as the model saw them.
    pub input_token_ids: Vec<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LabelScore {
    pub label: String,
    pub score: f32,
}

/// `POST /v1/models/{name}/embed`: one `text` or a list of `texts` (exactly one of the two).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmbedRequest {
    pub text: Option<String>,
    #[schema(min_items = 1, max_items = 32)]
    pub texts: Option<Vec<String>>,
}

/// `POST /v1/models/{name}/embed`'s answer: one embedding per text, in order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EmbedResponse {
    pub id: String,
    pub model: String,
    pub trace_id: String,
    /// The length of every embedding.
    pub dimension: usize,
    pub results: Vec<EmbedResult>,
    pub timings: ModelTimings,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EmbedResult {
    /// The pooled (and, where the model says so, L2-normalised) last hidden state.
    pub embedding: Vec<f32>,
    /// Tokens the model read, after truncation.
    pub input_tokens: usize,
    /// Whether the text was cut to the model's maximum length.
    pub truncated: bool,
}

/// `POST /v1/embeddings`, OpenAI's embeddings API, for the embedders.
///
/// `dimensions` (which shortens embeddings) is refused; token-id inputs are refused; any
/// other unknown field is refused by name.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmbeddingsRequest {
    /// An embedder's name (`GET /v1/models`).
    pub model: String,
    /// A text, or a list of 1 to 32 texts.
    pub input: EmbeddingsInput,
    /// `float` (default): a list of numbers; `base64`: the little-endian f32 bytes, base64
    /// encoded (what the official clients ask for by default).
    pub encoding_format: Option<EncodingFormat>,
    pub dimensions: Option<usize>,
    pub user: Option<String>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum EmbeddingsInput {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EncodingFormat {
    Float,
    Base64,
}

/// `POST /v1/embeddings`'s answer, shaped as OpenAI's.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EmbeddingsResponse {
    /// Always `list`.
    pub object: String,
    pub data: Vec<EmbeddingData>,
    pub model: String,
    pub usage: EmbeddingsUsage,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EmbeddingData {
    /// Always `embedding`.
    pub object: String,
    pub index: usize,
    /// A list of numbers (`float`), or a base64 string of little-endian f32s (`base64`).
    #[schema(value_type = Object)]
    pub embedding: serde_json::Value,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EmbeddingsUsage {
    pub prompt_tokens: usize,
    pub total_tokens: usize,
}

/// `POST /v1/completions`, OpenAI's legacy completions API, for the generators.
///
/// Fields OpenAI defines that would change the output and are not implemented are refused
/// (422) unless they have their neutral value: `best_of` above 1, `suffix`.
/// Any other unknown field is refused too, by name.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompletionRequest {
    /// A generator's name (`GET /v1/models`).
    pub model: String,
    /// One prompt, or several, answered as `n` choices each (in order).
    pub prompt: Prompt,
    /// Tokens to add to each prompt (OpenAI's default, 16, when absent).
    #[schema(minimum = 1)]
    #[serde(default, deserialize_with = "integral")]
    pub max_tokens: Option<usize>,
    /// OpenAI's default is 1 (sampled); 0 is greedy.
    #[schema(minimum = 0, maximum = 2)]
    pub temperature: Option<f64>,
    #[schema(exclusive_minimum = 0, maximum = 1)]
    pub top_p: Option<f64>,
    /// vLLM's: keep the `top_k` most likely tokens; -1 or 0 keeps all.
    #[schema(minimum = -1)]
    #[serde(default, deserialize_with = "top_k_or_all")]
    pub top_k: Option<usize>,
    /// vLLM's: as `/generate`'s `min_p`.
    #[schema(minimum = 0, maximum = 1)]
    pub min_p: Option<f64>,
    /// vLLM's: as `/generate`'s `repetition_penalty` (the prompt's tokens count).
    #[schema(exclusive_minimum = 0, maximum = 100)]
    pub repetition_penalty: Option<f64>,
    /// vLLM's: the end of sequence (or of turn) is held back until this many tokens are
    /// generated, as `/generate`'s `min_new_tokens`.
    #[schema(minimum = 0)]
    #[serde(default, deserialize_with = "integral")]
    pub min_tokens: Option<usize>,
    /// vLLM's: never end at the end of sequence (or of turn), only at the token budget or a
    /// stop string, as load tests ask for a fixed length.
    pub ignore_eos: Option<bool>,
    #[serde(default, deserialize_with = "integral")]
    pub seed: Option<u64>,
    /// Up to 4 strings; a choice ends once its text contains one, and its text stops before
    /// it (as OpenAI's does).
    pub stop: Option<StopStrings>,
    /// Answer as Server-Sent Events (`data: {chunk}` lines, then `data: [DONE]`).
    pub stream: Option<bool>,
    pub stream_options: Option<StreamOptions>,
    /// Choices a prompt (1 when absent, at most 4), choice `j` sampled with `seed + j`.
    /// Choice `i·n + j` is prompt i's choice j.
    #[schema(minimum = 1, maximum = 4)]
    #[serde(default, deserialize_with = "integral")]
    pub n: Option<u32>,
    /// Only 1.
    #[schema(minimum = 1, maximum = 1)]
    #[serde(default, deserialize_with = "integral")]
    pub best_of: Option<u32>,
    /// Each choice's text starts with its prompt, and with `logprobs` its log-probabilities
    /// start with the prompt's tokens' (the first one's null). Not with `stream`.
    pub echo: Option<bool>,
    /// Report each token's log-probability with this many most likely alternatives (0 to
    /// 5, OpenAI's range).
    #[schema(minimum = 0, maximum = 5)]
    #[serde(default, deserialize_with = "integral")]
    pub logprobs: Option<usize>,
    /// Only `null` or empty.
    pub suffix: Option<String>,
    /// Lowers a token's logit by this much for each time the choice's text holds it (its
    /// prompt does not count); 0 is none.
    #[schema(minimum = -2, maximum = 2)]
    pub frequency_penalty: Option<f64>,
    /// Lowers the logit of each token the choice's text already holds by this much; 0 is
    /// none.
    #[schema(minimum = -2, maximum = 2)]
    pub presence_penalty: Option<f64>,
    /// Token id (as a string: its decimal digits) to a bias from −100 to 100 added to its
    /// logit before sampling, for a model loaded on this server (at most 1024 ids, each in
    /// its vocabulary).
    #[schema(value_type = Option<Object>)]
    pub logit_bias: Option<serde_json::Map<String, serde_json::Value>>,
    /// vLLM's: `{"type": "json_object"}` keeps each choice's text a JSON object (JSON
    /// mode), `{"type": "json_schema", ...}` a value of the schema; `{"type": "text"}`, the
    /// default, any text.
    #[schema(value_type = Option<Object>)]
    pub response_format: Option<ResponseFormat>,
    /// Accepted; it does not change the output.
    pub user: Option<String>,
}

/// A text, several, or token ids as the model's tokenizer gives them (one prompt's, or
/// several prompts'), as an evaluation harness sends them.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Prompt {
    One(String),
    Many(Vec<String>),
    Tokens(TokenIds),
    ManyTokens(Vec<TokenIds>),
}

impl Prompt {
    pub fn into_prompts(self) -> Vec<crate::models::Prompt> {
        use crate::models::Prompt::{Text, Tokens};
        match self {
            Self::One(prompt) => vec![Text(prompt)],
            Self::Many(prompts) => prompts.into_iter().map(Text).collect(),
            Self::Tokens(ids) => vec![Tokens(ids.0)],
            Self::ManyTokens(prompts) => prompts.into_iter().map(|ids| Tokens(ids.0)).collect(),
        }
    }
}

/// One prompt's token ids; whole floats (`3.0`) count, as JSON Schema's integers do.
#[derive(Debug, Clone, ToSchema)]
pub struct TokenIds(pub Vec<u32>);

impl<'de> Deserialize<'de> for TokenIds {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        Vec::<serde_json::Number>::deserialize(deserializer)?
            .iter()
            .map(|number| {
                whole(number)
                    .and_then(|id| u32::try_from(id).ok())
                    .ok_or_else(|| D::Error::custom(format!("token id {number} is out of range")))
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum StopStrings {
    One(String),
    Many(Vec<String>),
}

impl StopStrings {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            Self::One(stop) => vec![stop],
            Self::Many(stops) => stops,
        }
    }
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StreamOptions {
    /// Send a last chunk with the whole request's `usage` (and no choices).
    pub include_usage: Option<bool>,
}

/// `POST /v1/completions`' answer, as OpenAI shapes it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Completion {
    /// `cmpl-` and the request id.
    pub id: String,
    /// Always `text_completion`.
    pub object: String,
    /// Seconds since the Unix epoch.
    pub created: u64,
    pub model: String,
    pub choices: Vec<CompletionChoice>,
    /// Absent in stream chunks but the last (with `stream_options.include_usage`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<CompletionUsage>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CompletionChoice {
    /// The continuation (in a stream chunk: what this chunk adds to it).
    pub text: String,
    /// `i·n + j` for choice `j` of the `i`th prompt in `prompt`.
    pub index: usize,
    /// With the request's `logprobs`: the choice's tokens (in a stream chunk: the chunk's);
    /// else null.
    pub logprobs: Option<CompletionLogprobs>,
    /// `stop` (end of sequence or a stop string) or `length`; null in a stream chunk
    /// until the choice's last.
    pub finish_reason: Option<String>,
}

/// OpenAI's completions `logprobs`: one entry per token in each list (with `echo` the
/// prompt's first), stop strings' tokens included. Log-probabilities are the model's own (raw logits, before
/// temperature and top-p).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CompletionLogprobs {
    /// Each token decoded on its own.
    pub tokens: Vec<String>,
    /// Null for a prompt's first token (with `echo`), which nothing before it scores.
    pub token_logprobs: Vec<Option<f32>>,
    /// Each position's most likely tokens, by text (of two ids with one text, the likelier);
    /// null where `token_logprobs` is.
    pub top_logprobs: Vec<Option<std::collections::BTreeMap<String, f32>>>,
    /// Where each token's text starts, in characters, in the prompt followed by the tokens'
    /// texts (OpenAI counts from the prompt's start; with `echo` the prompt's tokens come
    /// first, from 0).
    pub text_offset: Vec<usize>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CompletionUsage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub total_tokens: usize,
}

/// One message of a conversation, as OpenAI's chat API writes it.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatRequestMessage {
    pub role: ChatRole,
    /// A text, or a list of text parts (joined with newlines, as vLLM joins them). Null or
    /// absent only in an assistant's message with `tool_calls`.
    #[serde(default)]
    pub content: Option<ChatContent>,
    /// Who wrote it, one participant of several: 1 to 64 letters, digits, `_` or `-`.
    /// Templates that know the field show it; most leave it out.
    pub name: Option<String>,
    /// An assistant's: the calls it made, as a chat completion returned them.
    pub tool_calls: Option<Vec<ToolCall>>,
    /// A `tool` message's: the call it answers.
    pub tool_call_id: Option<String>,
}

/// Who wrote a message. (`function`, OpenAI's older `tool`, is refused by name.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ChatRole {
    /// Also `developer`, OpenAI's newer name for it: the templates know only `system`.
    #[serde(alias = "developer")]
    System,
    User,
    Assistant,
    /// A tool's answer to an assistant's call (`tool_call_id`).
    Tool,
}

impl ChatRole {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::System => "system",
            Self::User => "user",
            Self::Assistant => "assistant",
            Self::Tool => "tool",
        }
    }
}

/// A function the answer may call (OpenAI's `tools` item).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Tool {
    /// Always `function`.
    #[serde(rename = "type")]
    pub kind: String,
    pub function: FunctionDefinition,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FunctionDefinition {
    /// 1 to 64 letters, digits, `_` or `-`. (Given twice, the first tool of the name is
    /// the one a call of it keeps to.)
    pub name: String,
    /// Within `limits.max_input_chars`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// A JSON Schema of the arguments (an object); none: no arguments. With `tool_choice`
    /// `required` or this function's name, the arguments are kept to it as a `json_schema`
    /// `response_format` would keep them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<serde_json::Map<String, serde_json::Value>>,
    /// Accepted: the arguments are kept to `parameters` where the call is constrained.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

/// A call the assistant made.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ToolCall {
    /// `call_`, the request's id and the call's number.
    pub id: String,
    /// Always `function`.
    #[serde(rename = "type")]
    pub kind: String,
    pub function: FunctionCall,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FunctionCall {
    pub name: String,
    /// The arguments as JSON text (an object's; the template is handed the object, as vLLM
    /// hands it, or a text that is none as it is).
    pub arguments: String,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum ChatContent {
    Text(String),
    Parts(Vec<ContentPart>),
}

/// A part of a message's content; only text parts are taken (an image or audio part is
/// refused by name).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum ContentPart {
    Text { text: String },
}

impl ChatContent {
    /// The message's text: its parts joined with newlines.
    pub fn text(&self) -> String {
        match self {
            Self::Text(text) => text.clone(),
            Self::Parts(parts) => parts
                .iter()
                .map(|ContentPart::Text { text }| text.as_str())
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }
}

/// The body of `POST /v1/models/{name}/chat` (and `/chat/stream`): a conversation, which
/// the generator answers as the assistant through its own chat template, with the same
/// parameters as `/generate`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatGenerationRequest {
    /// The conversation so far (at least one message).
    #[schema(min_items = 1)]
    pub messages: Vec<ChatRequestMessage>,
    /// Tokens to answer with at most. With `max_length` too, whichever ends the answer
    /// first applies.
    #[schema(minimum = 1)]
    #[serde(default, deserialize_with = "integral")]
    pub max_new_tokens: Option<usize>,
    /// Total tokens, the rendered prompt included. Defaults to `generation.max_length`.
    #[schema(minimum = 2)]
    #[serde(default, deserialize_with = "integral")]
    pub max_length: Option<usize>,
    #[serde(default, deserialize_with = "integral")]
    pub min_new_tokens: Option<usize>,
    /// 0 (the default) is greedy; above 0, tokens are sampled.
    #[schema(minimum = 0, maximum = 100)]
    pub temperature: Option<f64>,
    #[schema(minimum = 1)]
    #[serde(default, deserialize_with = "integral")]
    pub top_k: Option<usize>,
    #[schema(exclusive_minimum = 0, maximum = 1)]
    pub top_p: Option<f64>,
    #[schema(minimum = 0, maximum = 1)]
    pub min_p: Option<f64>,
    #[schema(exclusive_minimum = 0, maximum = 100)]
    pub repetition_penalty: Option<f64>,
    /// As `/generate`'s: counts the answer's tokens.
    #[schema(minimum = -2, maximum = 2)]
    pub presence_penalty: Option<f64>,
    /// As `/generate`'s: counts the answer's tokens.
    #[schema(minimum = -2, maximum = 2)]
    pub frequency_penalty: Option<f64>,
    #[serde(default, deserialize_with = "integral")]
    pub seed: Option<u64>,
    /// Up to 4 strings; the answer ends once it contains one.
    pub stop: Option<Vec<String>>,
    /// As `/generate`'s.
    #[schema(minimum = 0, maximum = 20)]
    #[serde(default, deserialize_with = "integral")]
    pub logprobs: Option<usize>,
    /// As `/generate`'s.
    #[schema(value_type = Option<Object>)]
    pub logit_bias: Option<serde_json::Map<String, serde_json::Value>>,
    /// As `/generate`'s: the answer a JSON object, or a value of a schema.
    #[schema(value_type = Option<Object>)]
    pub response_format: Option<ResponseFormat>,
    /// Functions the chat template is given, as `/v1/chat/completions` takes them. The
    /// answer is its text: calls are read out of it by `/v1/chat/completions` alone.
    pub tools: Option<Vec<Tool>>,
}

impl ChatGenerationRequest {
    /// Its parameters, as `/generate` reads them.
    pub fn parameters(&self) -> GenerationRequest {
        GenerationRequest {
            text: String::new(),
            max_new_tokens: self.max_new_tokens,
            max_length: self.max_length,
            min_new_tokens: self.min_new_tokens,
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repetition_penalty: self.repetition_penalty,
            presence_penalty: self.presence_penalty,
            frequency_penalty: self.frequency_penalty,
            seed: self.seed,
            stop: self.stop.clone(),
            logprobs: self.logprobs,
            prompt_logprobs: None,
            logit_bias: self.logit_bias.clone(),
            response_format: self.response_format.clone(),
        }
    }
}

/// `POST /v1/chat/completions`, OpenAI's chat API, for the generators that have a chat
/// template.
///
/// Fields OpenAI defines that would change the output and are not implemented are refused
/// (422) unless they have their neutral value: `store`, `service_tier` (and a
/// `response_format` schema, or a constrained call's `parameters`, using keywords it cannot
/// enforce). A `chat_template` is refused (a template is code: only the model's or the
/// config's is used), as is any other unknown field, by name.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatCompletionRequest {
    /// A generator with a chat template (`GET /v1/models`: `chat_template`).
    pub model: String,
    /// The conversation so far (at least one message).
    #[schema(min_items = 1)]
    pub messages: Vec<ChatRequestMessage>,
    /// Tokens to answer with at most (`limits.max_new_tokens` when absent); OpenAI's
    /// older name for `max_completion_tokens`.
    #[schema(minimum = 1)]
    #[serde(default, deserialize_with = "integral")]
    pub max_tokens: Option<usize>,
    /// The same as `max_tokens`, which it overrides.
    #[schema(minimum = 1)]
    #[serde(default, deserialize_with = "integral")]
    pub max_completion_tokens: Option<usize>,
    /// OpenAI's default is 1 (sampled); 0 is greedy.
    #[schema(minimum = 0, maximum = 2)]
    pub temperature: Option<f64>,
    #[schema(exclusive_minimum = 0, maximum = 1)]
    pub top_p: Option<f64>,
    /// vLLM's: keep the `top_k` most likely tokens; -1 or 0 keeps all.
    #[schema(minimum = -1)]
    #[serde(default, deserialize_with = "top_k_or_all")]
    pub top_k: Option<usize>,
    /// vLLM's: as `/generate`'s `min_p`.
    #[schema(minimum = 0, maximum = 1)]
    pub min_p: Option<f64>,
    /// vLLM's: as `/generate`'s `repetition_penalty` (the prompt's tokens count).
    #[schema(exclusive_minimum = 0, maximum = 100)]
    pub repetition_penalty: Option<f64>,
    /// vLLM's: the end of sequence (or of turn) is held back until this many tokens are
    /// generated, as `/generate`'s `min_new_tokens`.
    #[schema(minimum = 0)]
    #[serde(default, deserialize_with = "integral")]
    pub min_tokens: Option<usize>,
    /// vLLM's: never end at the end of sequence (or of turn), only at the token budget or a
    /// stop string, as load tests ask for a fixed length.
    pub ignore_eos: Option<bool>,
    #[serde(default, deserialize_with = "integral")]
    pub seed: Option<u64>,
    /// Up to 4 strings; the answer ends once it contains one, and stops before it (as
    /// OpenAI's does).
    pub stop: Option<StopStrings>,
    /// Answer as Server-Sent Events (`data: {chunk}` lines, then `data: [DONE]`).
    pub stream: Option<bool>,
    pub stream_options: Option<StreamOptions>,
    /// Answers to give (1 when absent, at most 4), answer `j` sampled with `seed + j`.
    #[schema(minimum = 1, maximum = 4)]
    #[serde(default, deserialize_with = "integral")]
    pub n: Option<u32>,
    /// Report each answer token's log-probability (the model's own: raw logits, before
    /// temperature and top-p).
    pub logprobs: Option<bool>,
    /// With `logprobs: true`: this many most likely alternatives per token (0 to 20).
    #[schema(minimum = 0, maximum = 20)]
    #[serde(default, deserialize_with = "integral")]
    pub top_logprobs: Option<usize>,
    /// `{"type": "json_object"}` keeps the answer a JSON object (JSON mode), `{"type":
    /// "json_schema", "json_schema": {"name", "schema", "strict"?}}` a value of the schema
    /// (structured outputs): each token keeps it a prefix of one, and it ends only once the
    /// value is whole (or at `max_tokens`, unfinished, with `finish_reason` "length").
    /// `{"type": "text"}`, the default, any text.
    #[schema(value_type = Option<Object>)]
    pub response_format: Option<ResponseFormat>,
    /// Functions the answer may call (at most 128). The chat template is given
    /// them (one that does not read `tools` gets a system text listing them instead).
    pub tools: Option<Vec<Tool>>,
    /// `"auto"` (the default with tools): the answer is text, or calls the model writes in
    /// its template's format (`<tool_call>{..}</tool_call>`, or an answer that is one
    /// `{"name", "arguments"|"parameters"}` object), returned as `tool_calls` with
    /// `finish_reason` "tool_calls". `"required"`: at least one call, the answer kept to
    /// the tools' names and `parameters`. `{"type": "function", "function": {"name"}}`: a
    /// call of that function, its arguments kept to its `parameters` (`finish_reason`
    /// "stop", as OpenAI's). `"none"` (the default without tools): text, the tools left out
    /// of the prompt.
    #[schema(value_type = Option<Object>)]
    pub tool_choice: Option<serde_json::Value>,
    /// With `tool_choice` `required`: false keeps the answer to one call (true, the default,
    /// allows several); with `auto` the model's calls are all returned.
    pub parallel_tool_calls: Option<bool>,
    /// Lowers a token's logit by this much for each time the choice's text holds it (its
    /// prompt does not count); 0 is none.
    #[schema(minimum = -2, maximum = 2)]
    pub frequency_penalty: Option<f64>,
    /// Lowers the logit of each token the choice's text already holds by this much; 0 is
    /// none.
    #[schema(minimum = -2, maximum = 2)]
    pub presence_penalty: Option<f64>,
    /// Token id (as a string: its decimal digits) to a bias from −100 to 100 added to its
    /// logit before sampling, for a model loaded on this server (at most 1024 ids, each in
    /// its vocabulary).
    #[schema(value_type = Option<Object>)]
    pub logit_bias: Option<serde_json::Map<String, serde_json::Value>>,
    /// Accepted; it does not change the output.
    pub user: Option<String>,
    /// Only `false`: no answer is stored.
    pub store: Option<bool>,
    /// Up to 16 string values (keys up to 64 characters, values up to 512), as OpenAI
    /// takes; kept nowhere, as OpenAI keeps them only with `store`.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
    /// Only `"auto"` or `"default"`: there is one tier.
    pub service_tier: Option<String>,
}

/// `POST /v1/chat/completions`' answer, as OpenAI shapes it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChatCompletion {
    /// `chatcmpl-` and the request id.
    pub id: String,
    /// Always `chat.completion`.
    pub object: String,
    /// Seconds since the Unix epoch.
    pub created: u64,
    pub model: String,
    pub choices: Vec<ChatChoice>,
    pub usage: CompletionUsage,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChatChoice {
    /// The answer's number, from 0 to `n − 1`.
    pub index: usize,
    pub message: ChatAnswer,
    /// With the request's `logprobs: true`: one entry per answer token; else null.
    pub logprobs: Option<ChatLogprobs>,
    /// `stop` (the model ended its turn, or a stop string), `length`, or `tool_calls` (the
    /// answer calls tools it chose to call).
    pub finish_reason: String,
}

/// OpenAI's chat `logprobs`: one entry per answer token, stop strings' and the end-of-turn
/// token's included.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChatLogprobs {
    pub content: Vec<ChatTokenLogprob>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChatTokenLogprob {
    /// The token decoded on its own (a piece of a character split over tokens is U+FFFD).
    pub token: String,
    pub logprob: f32,
    /// `token`'s UTF-8 bytes.
    pub bytes: Vec<u8>,
    /// The most likely tokens at this position, most likely first.
    pub top_logprobs: Vec<ChatTopLogprob>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChatTopLogprob {
    pub token: String,
    pub logprob: f32,
    pub bytes: Vec<u8>,
}

/// The assistant's answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChatAnswer {
    /// Always `assistant`.
    pub role: String,
    /// The text; null when the answer is only calls.
    pub content: Option<String>,
    /// The calls the answer makes, when it makes any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
}

/// One `data:` chunk of a streamed chat completion.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChatCompletionChunk {
    /// The same for every chunk of a request.
    pub id: String,
    /// Always `chat.completion.chunk`.
    pub object: String,
    pub created: u64,
    pub model: String,
    /// One choice, or none in the last chunk with `stream_options.include_usage`.
    pub choices: Vec<ChatChunkChoice>,
    /// Null but in that last chunk.
    pub usage: Option<CompletionUsage>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChatChunkChoice {
    pub index: usize,
    pub delta: ChatDelta,
    /// With the request's `logprobs: true`, the tokens of this chunk; else null.
    pub logprobs: Option<ChatLogprobs>,
    /// Null until the choice's last chunk: `stop` or `length`.
    pub finish_reason: Option<String>,
}

/// What a chunk adds to the answer: the first carries `role` (and empty `content`), the
/// last neither.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct ChatDelta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// Pieces of calls: a call's first piece carries its `id`, `type` and name, the later
    /// ones more of its arguments' text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCallChunk>>,
}

/// A piece of a call in a stream: its place among the answer's calls, and what it adds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ToolCallChunk {
    pub index: usize,
    /// In the call's first piece only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `function`, in the call's first piece only.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    pub function: FunctionCallChunk,
}

/// What a piece adds to a call: its name (in the first piece) and more of its arguments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FunctionCallChunk {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The next piece of the arguments' JSON text; the pieces join to the whole.
    pub arguments: String,
}

#[cfg(test)]
mod tests {
    use super::whole;

    #[test]
    fn a_whole_float_is_read_as_its_integer_up_to_u64s_range() {
        let read = |json: &str| whole(&serde_json::from_str(json).unwrap());
        // Past 2^51 a float's unit in the last place is 0.5 or more: one misread digit would
        // make it fractional or another integer.
        for json in ["4098739353796862.0", "9007199254740993.0", "3.0", "0.0"] {
            let exact: u64 = json.trim_end_matches(".0").parse().unwrap();
            // 2^53 + 1 has no f64: it reads as the nearest one, 2^53.
            let nearest = exact as f64 as u64;
            assert_eq!(read(json), Some(nearest), "{json}");
        }
        assert_eq!(read("18446744073709551615"), Some(u64::MAX));
        for json in ["2.5", "-1", "-1.0", "18446744073709551616.0", "1e300"] {
            assert_eq!(read(json), None, "{json}");
        }
    }
}
