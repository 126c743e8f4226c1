//! `POST /v1/chat/completions`: OpenAI's chat API over the generators that have a chat
//! template, so the official OpenAI clients (and what is built on them) can chat with the
//! server. (The conversation checks it shares with the per-model chat routes are in
//! `model_calls.rs`.)
//!
//! TEMPLATES: a conversation is rendered with the model's own template (its folder's or
//! file's), never one from the request: a `chat_template` field is refused, since a template
//! is code. A model without one cannot chat (422 naming it), rather than get a made-up
//! format. A template that raises (or runs past its fuel) answers 422 with the template's
//! message (in a stream, an error chunk), and the model serves the next request as before.
//!
//! FIDELITY: as `/v1/completions` (see `openai.rs`): what OpenAI defines and would change the
//! output but is not implemented is refused by name unless neutral, and so is any unknown
//! field. `temperature` defaults to 1 as OpenAI's does; the answer is the assistant's text
//! alone, its length capped by `limits.max_new_tokens`.
//!
//! TOOLS: `tools` go to the template, and the answer is read for calls as `tools.rs` says.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::future::try_join_all;
use serde_json::{Map, Value};
use tokio::sync::mpsc;

use super::api::{
    ChatAnswer, ChatChoice, ChatChunkChoice, ChatCompletion, ChatCompletionChunk,
    ChatCompletionRequest, ChatDelta, ChatLogprobs, CompletionUsage, GenerationRequest,
    RequestErrors, ToolCallChunk,
};
use super::completion::{
    before_stop, chat_logprobs, check_n, check_sampling, choice_params, finish_reason,
    least_tokens, named_as_openai, record, usage, Frame, StopHold,
};
use super::error::ApiError;
use super::model_calls::{
    check_messages, check_room, conversation, find_generator, logit_bias, require_chat_template,
    GenerationCall,
};
use super::request::{call_context, generation_params, read_json, TRACE_ID_HEADER};
use super::sse::event_stream;
use super::state::AppState;
use super::tools::{tool_calls, CallHold, Ending, ToolUse};
use crate::models::chat::Conversation;
use crate::models::logprobs::MAX_TOP_LOGPROBS;
use crate::models::Prompt;

/// Every field `ChatCompletionRequest` reads; anything else is refused by name.
const KNOWN_FIELDS: [&str; 29] = [
    "model",
    "messages",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "repetition_penalty",
    "min_tokens",
    "ignore_eos",
    "seed",
    "stop",
    "stream",
    "stream_options",
    "n",
    "logprobs",
    "top_logprobs",
    "response_format",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "frequency_penalty",
    "presence_penalty",
    "logit_bias",
    "user",
    "store",
    "metadata",
    "service_tier",
];

/// OpenAI's limits on `metadata`, which is checked as OpenAI checks it though nothing keeps it.
pub(super) const MAX_METADATA_PAIRS: usize = 16;
pub(super) const MAX_METADATA_KEY_CHARS: usize = 64;
pub(super) const MAX_METADATA_VALUE_CHARS: usize = 512;

/// OpenAI-compatible chat with a generator, through its own chat template.
#[utoipa::path(post, path = "/v1/chat/completions", tag = "openai", request_body = ChatCompletionRequest,
    responses(
        (status = 200, description = "The answer; with `stream: true`, Server-Sent Events whose `data:` lines are ChatCompletionChunks, then `[DONE]`",
            content((ChatCompletion = "application/json"), (ChatCompletionChunk = "text/event-stream")),
            headers(("x-trace-id" = String, description = "The request's trace"))),
        RequestErrors))]
pub(super) async fn chat_completions(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let begun = Instant::now();
    state.ready_graph()?;
    let body: Map<String, Value> = read_json(&state, &req, payload).await?;
    let mut request = parse(body)?;
    let tools = ToolUse::read(
        request.tools.take(),
        request.tool_choice.as_ref(),
        request.parallel_tool_calls,
        state.config.limits.max_input_chars,
    )?;
    let generator = find_generator(&state, &request.model, "/v1/chat/completions")?;
    require_chat_template(&state, &generator.name)?;
    let messages = conversation(&state, &request.messages)?;
    let most = state.config.limits.max_new_tokens;
    for (name, value) in [
        ("max_tokens", request.max_tokens),
        ("max_completion_tokens", request.max_completion_tokens),
    ] {
        if let Some(n) = value.filter(|&n| n == 0 || n > most) {
            return Err(ApiError::Validation(format!(
                "{name}: {n} is out of range 1..={most}"
            )));
        }
    }
    // The newer name wins, as vLLM has it.
    let max_tokens = request
        .max_completion_tokens
        .or(request.max_tokens)
        .unwrap_or(most);
    let mut params = generation_params(
        &state,
        &GenerationRequest {
            text: String::new(),
            max_new_tokens: Some(max_tokens),
            max_length: None,
            min_new_tokens: least_tokens(request.min_tokens, request.ignore_eos, max_tokens),
            temperature: Some(request.temperature.unwrap_or(1.0)),
            top_k: request.top_k,
            top_p: request.top_p,
            min_p: request.min_p,
            repetition_penalty: request.repetition_penalty,
            presence_penalty: request.presence_penalty,
            frequency_penalty: request.frequency_penalty,
            seed: request.seed,
            stop: request.stop.clone().map(|s| s.into_vec()),
            logprobs: (request.logprobs == Some(true)).then(|| request.top_logprobs.unwrap_or(0)),
            prompt_logprobs: None,
            // Checked below against this generator's vocabulary.
            logit_bias: None,
            response_format: Some(
                tools.response_format(request.response_format.unwrap_or_default())?,
            ),
        },
    )
    .map_err(named_as_openai)?;
    params.sampling.logit_bias = logit_bias(&state, &generator.name, request.logit_bias.as_ref())?;
    let (context, guards) = call_context(&state, &req);
    let shape = Shape {
        id: format!("chatcmpl-{}", context.request_id),
        created: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        model: generator.name.clone(),
    };
    let stops = params.stop.clone();
    let n = request.n.unwrap_or(1) as usize;
    let conversation = Conversation {
        messages,
        tools: tools.for_template(),
    };
    let calls = (0..n).map(|choice| GenerationCall {
        prompt: Prompt::Chat(conversation.clone()),
        params: choice_params(&params, choice),
        context: context.clone(),
    });

    if !request.stream.unwrap_or(false) {
        let generated = try_join_all(calls.map(|call| call.run(&generator, None))).await?;
        let trace_id = record(&state, &context, &generator.name, begun, &generated);
        let usage = usage(&generated, n);
        let choices = generated
            .into_iter()
            .enumerate()
            .map(|(index, generated)| {
                let text = before_stop(&generated.generation.new_text, &stops);
                let reason = generated.generation.finish_reason;
                let (message, finish) = match tools.read_calls(text) {
                    Some(calls) => (
                        ChatAnswer {
                            role: "assistant".into(),
                            content: calls.text,
                            tool_calls: Some(tool_calls(calls.calls, &shape.call_ids(index))),
                        },
                        tools.finish_reason(reason, calls.whole),
                    ),
                    None => (
                        ChatAnswer {
                            role: "assistant".into(),
                            content: Some(text.to_string()),
                            tool_calls: None,
                        },
                        finish_reason(reason),
                    ),
                };
                ChatChoice {
                    index,
                    message,
                    logprobs: generated.generation.logprobs.as_deref().map(chat_logprobs),
                    finish_reason: finish.into(),
                }
            })
            .collect();
        let answer = ChatCompletion {
            id: shape.id,
            object: "chat.completion".into(),
            created: shape.created,
            model: shape.model,
            usage,
            choices,
        };
        drop(guards);
        return Ok(HttpResponse::Ok()
            .insert_header((TRACE_ID_HEADER, trace_id))
            .json(answer));
    }

    // A stream opened only to fail at once would hide the 429 from the client.
    check_room(&state, &generator.name)?;
    let include_usage = request
        .stream_options
        .and_then(|o| o.include_usage)
        .unwrap_or(false);
    let calls: Vec<GenerationCall> = calls.collect();
    let (sink, frames) = mpsc::unbounded_channel();
    actix_web::rt::spawn(async move {
        let runs = calls.into_iter().enumerate().map(|(index, call)| {
            let (generator, sink, shape, tools) = (&generator, sink.clone(), &shape, &tools);
            let mut hold = StopHold::new(stops.clone());
            let mut call_hold = tools
                .may_call()
                .then(|| CallHold::new(tools, shape.call_ids(index)));
            async move {
                // OpenAI's first chunk of a choice names the speaker, with empty content.
                let opening = ChatDelta {
                    role: Some("assistant".into()),
                    content: Some(String::new()),
                    tool_calls: None,
                };
                let _ = sink.send(Frame::Chunk(shape.chunk(index, opening, None, None)));
                let send_calls = |pieces: Vec<ToolCallChunk>| {
                    if !pieces.is_empty() {
                        let delta = ChatDelta {
                            tool_calls: Some(pieces),
                            ..ChatDelta::default()
                        };
                        let _ = sink.send(Frame::Chunk(shape.chunk(index, delta, None, None)));
                    }
                };
                let generated = call
                    .run_streaming(generator, |token| {
                        let mut text = hold.push(&token.text);
                        if let Some(call_hold) = call_hold.as_mut() {
                            let pieces;
                            (text, pieces) = call_hold.push(&text);
                            send_calls(pieces);
                        }
                        // A held-back partial character or the end-of-turn token adds no
                        // text, but its log-probability still goes out.
                        let logprobs = token
                            .logprob
                            .map(|logprob| chat_logprobs(std::slice::from_ref(&logprob)));
                        if !text.is_empty() || logprobs.is_some() {
                            let _ = sink.send(Frame::Chunk(shape.content(index, text, logprobs)));
                        }
                    })
                    .await?;
                let mut held = hold.finish();
                let ended = generated.generation.finish_reason;
                let mut reason = finish_reason(ended);
                if let Some(call_hold) = call_hold.as_mut() {
                    let pieces;
                    (held, pieces) = call_hold.push(&held);
                    send_calls(pieces);
                    match call_hold.finish(tools) {
                        Ending::Calls { pieces, whole } => {
                            send_calls(pieces);
                            reason = tools.finish_reason(ended, whole);
                        }
                        Ending::Text(text) => held.push_str(&text),
                    }
                }
                if !held.is_empty() {
                    let _ = sink.send(Frame::Chunk(shape.content(index, held, None)));
                }
                let done = shape.chunk(index, ChatDelta::default(), None, Some(reason.into()));
                let _ = sink.send(Frame::Chunk(done));
                Ok::<_, ApiError>(generated)
            }
        });
        match try_join_all(runs).await {
            Ok(generated) => {
                record(&state, &context, &shape.model, begun, &generated);
                if include_usage {
                    let _ = sink.send(Frame::Chunk(shape.usage_chunk(usage(&generated, n))));
                }
                let _ = sink.send(Frame::Done);
            }
            Err(error) => {
                let _ = sink.send(Frame::Error(error));
            }
        }
    });
    Ok(event_stream(frames, guards, Frame::render))
}

/// Reads the body, refusing a template, unknown fields and unimplemented ones by name.
fn parse(body: Map<String, Value>) -> Result<ChatCompletionRequest, ApiError> {
    if body.contains_key("chat_template") {
        return Err(ApiError::Validation(
            "chat_template: a request cannot carry a chat template (a template is code); \
             the model's own is used"
                .into(),
        ));
    }
    let unknown: Vec<&str> = body
        .keys()
        .map(String::as_str)
        .filter(|key| !KNOWN_FIELDS.contains(key))
        .collect();
    if !unknown.is_empty() {
        return Err(ApiError::Validation(format!(
            "unknown fields: {}",
            unknown.join(", ")
        )));
    }
    let texts = |v: &Value| v.as_array().is_some_and(|a| a.iter().all(Value::is_string));
    if let Some(stop) = body.get("stop") {
        if !(stop.is_string() || stop.is_null() || texts(stop)) {
            return Err(ApiError::Validation(
                "stop: must be a string or a list of strings".into(),
            ));
        }
    }
    check_messages(body.get("messages"))?;
    let request: ChatCompletionRequest = serde_json::from_value(Value::Object(body))
        .map_err(|e| ApiError::Validation(e.to_string()))?;
    check_n(request.n)?;
    check_metadata(request.metadata.as_ref())?;
    if let Some(n) = request.top_logprobs {
        if request.logprobs != Some(true) {
            return Err(ApiError::Validation(
                "top_logprobs: only with logprobs: true".into(),
            ));
        }
        if n > MAX_TOP_LOGPROBS {
            return Err(ApiError::Validation(format!(
                "top_logprobs: {n} is out of range 0..={MAX_TOP_LOGPROBS}"
            )));
        }
    }
    let mut unsupported = Vec::new();
    if request.store == Some(true) {
        unsupported.push("store (only false: no answer is stored)");
    }
    if request
        .service_tier
        .as_deref()
        .is_some_and(|tier| !matches!(tier, "auto" | "default"))
    {
        unsupported.push("service_tier (only \"auto\" or \"default\")");
    }
    check_sampling(unsupported, request.temperature)?;
    Ok(request)
}

/// What every chunk of one request shares.
struct Shape {
    id: String,
    created: u64,
    model: String,
}

impl Shape {
    fn chunk(
        &self,
        index: usize,
        delta: ChatDelta,
        logprobs: Option<ChatLogprobs>,
        finish_reason: Option<String>,
    ) -> ChatCompletionChunk {
        let choice = ChatChunkChoice {
            index,
            delta,
            logprobs,
            finish_reason,
        };
        self.with(vec![choice], None)
    }

    /// A chunk of choice `index`'s text, and the log-probabilities of the token it came with.
    fn content(
        &self,
        index: usize,
        text: String,
        logprobs: Option<ChatLogprobs>,
    ) -> ChatCompletionChunk {
        let delta = ChatDelta {
            content: Some(text),
            ..ChatDelta::default()
        };
        self.chunk(index, delta, logprobs, None)
    }

    /// What the ids of choice `index`'s calls start with (unique as the request's id is).
    fn call_ids(&self, index: usize) -> String {
        format!("{}_{index}", self.id.trim_start_matches("chatcmpl-"))
    }

    /// `stream_options.include_usage`'s last chunk: no choices, the whole request's usage.
    fn usage_chunk(&self, usage: CompletionUsage) -> ChatCompletionChunk {
        self.with(Vec::new(), Some(usage))
    }

    fn with(
        &self,
        choices: Vec<ChatChunkChoice>,
        usage: Option<CompletionUsage>,
    ) -> ChatCompletionChunk {
        ChatCompletionChunk {
            id: self.id.clone(),
            object: "chat.completion.chunk".into(),
            created: self.created,
            model: self.model.clone(),
            choices,
            usage,
        }
    }
}

/// `metadata` within OpenAI's limits: string values only.
fn check_metadata(metadata: Option<&Map<String, Value>>) -> Result<(), ApiError> {
    let Some(metadata) = metadata else {
        return Ok(());
    };
    if metadata.len() > MAX_METADATA_PAIRS {
        return Err(ApiError::Validation(format!(
            "metadata: at most {MAX_METADATA_PAIRS} pairs"
        )));
    }
    for (key, value) in metadata {
        let Some(value) = value.as_str() else {
            return Err(ApiError::Validation(format!(
                "metadata: {key:?} must have a string value"
            )));
        };
        if key.chars().count() > MAX_METADATA_KEY_CHARS
            || value.chars().count() > MAX_METADATA_VALUE_CHARS
        {
            return Err(ApiError::Validation(format!(
                "metadata: {key:?} is over {MAX_METADATA_KEY_CHARS} characters or its value over {MAX_METADATA_VALUE_CHARS}"
            )));
        }
    }
    Ok(())
}
