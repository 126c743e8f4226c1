//! `POST /v1/completions`: OpenAI's (legacy) completions API over the generators, so the
//! official OpenAI clients work against the server.
//!
//! FIDELITY: a field that OpenAI defines and would change the output, but that is not
//! implemented, is refused with a 422 naming it (unless it has its neutral value); unknown
//! fields are refused by name. Nothing is silently ignored. As OpenAI does, `temperature`
//! defaults to 1 (sampled) and `max_tokens` to 16 (or `limits.max_new_tokens`, if lower).
//!
//! Each prompt of a list is `n` generations on the model's engine, run at once (they batch
//! together) and answered as `n` choices each; the first failure fails the request and
//! cancels the rest. Error bodies keep the server's envelope (`{"error", "error_type"}`);
//! an error during a stream is a `data: {"error": {"message", "type"}}` chunk, with no
//! `[DONE]` after it.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::future::try_join_all;
use serde_json::{Map, Value};
use tokio::sync::mpsc;

use super::api::{
    whole, Completion, CompletionChoice, CompletionRequest, CompletionUsage, GenerationRequest,
    RequestErrors,
};
use super::completion::{
    before_stop, check_n, check_sampling, choice_params, completion_logprobs, finish_reason,
    least_tokens, named_as_openai, record, usage, Frame, StopHold,
};
use super::error::ApiError;
use super::model_calls::{check_token_ids, find_generator, logit_bias, GenerationCall};
use super::request::{call_context, generation_params, read_json, validate_text, TRACE_ID_HEADER};
use super::sse::event_stream;
use super::state::AppState;
use crate::models::{Generation, Prompt};

/// Every field `CompletionRequest` reads; anything else is refused by name.
const KNOWN_FIELDS: [&str; 24] = [
    "model",
    "prompt",
    "max_tokens",
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
    "best_of",
    "echo",
    "logprobs",
    "suffix",
    "frequency_penalty",
    "presence_penalty",
    "logit_bias",
    "response_format",
    "user",
];

/// OpenAI's default `max_tokens`.
const DEFAULT_MAX_TOKENS: usize = 16;

/// The most prompts one request may carry.
const MAX_PROMPTS: usize = 16;

/// The most alternatives `logprobs` may ask for (OpenAI's limit on this route).
const MAX_LOGPROBS: usize = 5;

/// OpenAI-compatible text completion with a generator.
#[utoipa::path(post, path = "/v1/completions", tag = "openai", request_body = CompletionRequest,
    responses(
        (status = 200, description = "The completion; with `stream: true`, Server-Sent Events whose `data:` lines are Completion chunks, then `[DONE]`",
            content((Completion = "application/json"), (Completion = "text/event-stream")),
            headers(("x-trace-id" = String, description = "The request's trace"))),
        RequestErrors))]
pub(super) async fn completions(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let begun = Instant::now();
    state.ready_graph()?;
    let body: Map<String, Value> = read_json(&state, &req, payload).await?;
    let request = parse(body)?;
    let generator = find_generator(&state, &request.model, "/v1/completions")?;
    let prompts = request.prompt.clone().into_prompts();
    if prompts.is_empty() || prompts.len() > MAX_PROMPTS {
        return Err(ApiError::Validation(format!(
            "prompt: {} prompts; give 1 to {MAX_PROMPTS}",
            prompts.len()
        )));
    }
    let n = request.n.unwrap_or(1) as usize;
    let echo = request.echo == Some(true);
    for (i, prompt) in prompts.iter().enumerate() {
        let field = format!("prompt[{i}]");
        match prompt {
            Prompt::Text(text) => validate_text(&state, &field, text)?,
            Prompt::Tokens(ids) => check_token_ids(&state, &generator.name, &field, ids)?,
            // `into_prompts` makes texts and token ids only.
            Prompt::Chat(_) => {}
        }
    }
    let max_tokens = request
        .max_tokens
        .unwrap_or(DEFAULT_MAX_TOKENS.min(state.config.limits.max_new_tokens));
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
            logprobs: request.logprobs,
            prompt_logprobs: Some(echo && request.logprobs.is_some()),
            // Checked below against this generator's vocabulary.
            logit_bias: None,
            response_format: request.response_format,
        },
    )
    .map_err(named_as_openai)?;
    params.sampling.logit_bias = logit_bias(&state, &generator.name, request.logit_bias.as_ref())?;
    let (context, guards) = call_context(&state, &req);
    let id = context.request_id.clone();
    let shape = Shape {
        id: format!("cmpl-{id}"),
        created: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        model: generator.name.clone(),
    };
    let stops = params.stop.clone();
    // Choice `i·n + j` is prompt i's choice j, as OpenAI numbers them.
    let calls = prompts
        .iter()
        .flat_map(|prompt| (0..n).map(move |choice| (prompt.clone(), choice)));
    let calls = calls.map(|(prompt, choice)| GenerationCall {
        prompt,
        params: choice_params(&params, choice),
        context: context.clone(),
    });

    if !request.stream.unwrap_or(false) {
        let generated = try_join_all(calls.map(|call| call.run(&generator, None))).await?;
        let trace_id = record(&state, &context, &generator.name, begun, &generated);
        let choices = generated
            .iter()
            .enumerate()
            .map(|(index, g)| CompletionChoice {
                text: {
                    let text = before_stop(&g.generation.new_text, &stops);
                    if echo {
                        format!("{}{text}", prompt_text(&prompts[index / n], &g.generation))
                    } else {
                        text.to_string()
                    }
                },
                index,
                // With `echo` the prompt was scored, and offsets count from its start.
                logprobs: g.generation.logprobs.as_deref().map(|tokens| {
                    let offset = if echo {
                        0
                    } else {
                        prompt_text(&prompts[index / n], &g.generation)
                            .chars()
                            .count()
                    };
                    // Only a prompt's first choice scored it (`choice_params`).
                    let scored = &generated[index / n * n].generation.prompt_logprobs;
                    completion_logprobs(scored.as_ref(), tokens, offset)
                }),
                finish_reason: Some(finish_reason(g.generation.finish_reason).into()),
            })
            .collect();
        drop(guards);
        return Ok(HttpResponse::Ok()
            .insert_header((TRACE_ID_HEADER, trace_id))
            .json(shape.completion(choices, Some(usage(&generated, n)))));
    }

    let include_usage = request
        .stream_options
        .and_then(|o| o.include_usage)
        .unwrap_or(false);
    let calls: Vec<GenerationCall> = calls.collect();
    let (sink, frames) = mpsc::unbounded_channel();
    actix_web::rt::spawn(async move {
        let runs = calls.into_iter().enumerate().map(|(index, call)| {
            let (generator, sink, shape) = (&generator, sink.clone(), &shape);
            let mut hold = StopHold::new(stops.clone());
            // A token-id prompt's text is known only at the end: its offsets count from the
            // continuation's start.
            let mut offset = match &prompts[index / n] {
                Prompt::Text(text) => text.chars().count(),
                _ => 0,
            };
            async move {
                let chunk = |text: String, logprobs, finish_reason: Option<String>| {
                    let choice = CompletionChoice {
                        text,
                        index,
                        logprobs,
                        finish_reason,
                    };
                    Frame::Chunk(shape.completion(vec![choice], None))
                };
                let generated = call
                    .run_streaming(generator, |token| {
                        let text = hold.push(&token.text);
                        // A token's log-probability goes out with it even when its text is
                        // held back.
                        let logprobs = token.logprob.map(|logprob| {
                            let shown =
                                completion_logprobs(None, std::slice::from_ref(&logprob), offset);
                            offset += logprob.token.chars().count();
                            shown
                        });
                        if !text.is_empty() || logprobs.is_some() {
                            let _ = sink.send(chunk(text, logprobs, None));
                        }
                    })
                    .await?;
                let reason = finish_reason(generated.generation.finish_reason);
                let _ = sink.send(chunk(hold.finish(), None, Some(reason.into())));
                Ok::<_, ApiError>(generated)
            }
        });
        match try_join_all(runs).await {
            Ok(generated) => {
                record(&state, &context, &shape.model, begun, &generated);
                if include_usage {
                    let last = shape.completion(Vec::new(), Some(usage(&generated, n)));
                    let _ = sink.send(Frame::Chunk(last));
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

/// Reads the body, refusing unknown fields and unimplemented ones by name.
fn parse(body: Map<String, Value>) -> Result<CompletionRequest, ApiError> {
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
    // As `TokenIds` reads them: whole floats (`3.0`) are integers to JSON Schema.
    let id = |v: &Value| v.as_number().and_then(whole).is_some();
    let ids = |v: &Value| v.as_array().is_some_and(|a| a.iter().all(id));
    let id_lists = |v: &Value| v.as_array().is_some_and(|a| a.iter().all(ids));
    match body.get("prompt") {
        Some(v) if !(v.is_string() || texts(v) || ids(v) || id_lists(v)) => {
            return Err(ApiError::Validation(
                "prompt: must be a string, a list of strings, a list of token ids or a list of such lists".into(),
            ))
        }
        _ => {}
    }
    match body.get("stop") {
        Some(v) if !(v.is_string() || texts(v) || v.is_null()) => {
            return Err(ApiError::Validation(
                "stop: must be a string or a list of strings".into(),
            ))
        }
        _ => {}
    }
    let request: CompletionRequest = serde_json::from_value(Value::Object(body))
        .map_err(|e| ApiError::Validation(e.to_string()))?;
    check_n(request.n)?;
    if let Some(n) = request.logprobs.filter(|&n| n > MAX_LOGPROBS) {
        return Err(ApiError::Validation(format!(
            "logprobs: {n} is out of range 0..={MAX_LOGPROBS}"
        )));
    }
    let mut unsupported = Vec::new();
    if request.best_of.is_some_and(|n| n != 1) {
        unsupported.push("best_of (only 1)");
    }
    if request.echo == Some(true) && request.stream == Some(true) {
        unsupported.push("echo with stream (only one of them)");
    }
    if request.suffix.as_ref().is_some_and(|s| !s.is_empty()) {
        unsupported.push("suffix (only null or empty)");
    }
    check_sampling(unsupported, request.temperature)?;
    Ok(request)
}

/// What every completion and chunk of one request shares.
struct Shape {
    id: String,
    created: u64,
    model: String,
}

impl Shape {
    fn completion(
        &self,
        choices: Vec<CompletionChoice>,
        usage: Option<CompletionUsage>,
    ) -> Completion {
        Completion {
            id: self.id.clone(),
            object: "text_completion".into(),
            created: self.created,
            model: self.model.clone(),
            choices,
            usage,
        }
    }
}

/// The text `prompt` reads as in a choice: the client's own, or a token-id prompt's decoded
/// text (the generation's text, which starts with it, less the continuation).
fn prompt_text<'a>(prompt: &'a Prompt, generation: &'a Generation) -> &'a str {
    match prompt {
        Prompt::Text(text) => text,
        _ => generation
            .text
            .strip_suffix(generation.new_text.as_str())
            .unwrap_or(&generation.text),
    }
}
