//! Calling one model for a route: finding it by name and role, checking its queue, running
//! a generation or embeddings within the deadline, the timings and trace attributes; and the
//! checks of a conversation for a chat and of a `logit_bias` against the model's vocabulary.
//! The per-model routes (`model_routes.rs`), `/v1/completions` (`openai.rs`),
//! `/v1/chat/completions` (`chat.rs`) and `/v1/embeddings` (`embeddings.rs`) share it.

use std::future::Future;
use std::time::{Duration, Instant};

use futures_util::future::try_join_all;
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;

use super::api::{
    ChatContent, ChatRequestMessage, ContentPart, ModelTimings, TokenPromptBounds, ToolCall,
};
use super::error::ApiError;
use super::state::AppState;
use crate::actors::{CallContext, Classify, Embed, Embedded, Generate, Generated};
use crate::engine::generation::TokenEvent;
use crate::graph::loader::ModelHandle;
use crate::graph::Named;
use crate::models::chat::ChatMessage;
use crate::models::sampling::MAX_LOGIT_BIAS;
use crate::models::{Generation, GenerationParams, Prompt};
use crate::telemetry::traces::model_trace;
use crate::work::WorkSpan;

/// Embeds `texts` on `embedder` (they batch with other requests' texts) before the deadline,
/// and keeps the request's trace; the embeddings in order, and the trace's id.
pub(super) async fn run_embeddings(
    state: &AppState,
    embedder: &Named<Embed>,
    texts: Vec<String>,
    context: &CallContext,
    begun: Instant,
) -> Result<(Vec<Embedded>, String), ApiError> {
    let calls = texts.into_iter().map(|text| {
        let send = embedder.addr.send(Embed {
            text,
            context: context.clone(),
        });
        let model = embedder.name.clone();
        async move {
            send.await
                .map_err(|_| ApiError::Model(format!("model {model:?} is not running")))?
                .map_err(ApiError::from)
        }
    });
    let embedded = within_deadline(context, try_join_all(calls)).await?;
    let calls: Vec<_> = embedded
        .iter()
        .map(|e| {
            let attributes = json!({
                "model": embedder.name,
                "input_tokens": e.embedding.input_ids.len(),
            });
            (e.span, attributes)
        })
        .collect();
    let trace = model_trace(
        &context.request_id,
        &context.trace_id,
        begun,
        Instant::now(),
        "embed",
        &calls,
    );
    Ok((embedded, state.record_trace(trace)))
}

/// One generation a request asks of a generator.
pub(super) struct GenerationCall {
    pub prompt: Prompt,
    pub params: GenerationParams,
    /// The request's ids, deadline and cancellation.
    pub context: CallContext,
}

impl GenerationCall {
    /// Runs it on `generator` before the deadline; a full queue is a 429 at once.
    pub async fn run(
        self,
        generator: &Named<Generate>,
        tokens: Option<mpsc::UnboundedSender<TokenEvent>>,
    ) -> Result<Generated, ApiError> {
        let context = self.context;
        let deadline = context.clone();
        let send = generator.addr.send(Generate {
            prompt: self.prompt,
            params: self.params,
            events: tokens,
            context,
        });
        let model = generator.name.clone();
        within_deadline(&deadline, async move {
            send.await
                .map_err(|_| ApiError::Model(format!("model {model:?} is not running")))?
                .map_err(ApiError::from)
        })
        .await
    }

    /// As `run`, passing each token to `on_token` as it is generated; every token comes
    /// before this returns.
    pub async fn run_streaming(
        self,
        generator: &Named<Generate>,
        mut on_token: impl FnMut(TokenEvent),
    ) -> Result<Generated, ApiError> {
        let (tokens, mut relay) = mpsc::unbounded_channel();
        let run = self.run(generator, Some(tokens));
        tokio::pin!(run);
        let result = loop {
            tokio::select! {
                Some(token) = relay.recv() => on_token(token),
                result = &mut run => break result,
            }
        };
        // The engine sends a request's tokens before its answer: what is left is buffered.
        while let Ok(token) = relay.try_recv() {
            on_token(token);
        }
        result
    }
}

/// `work`, or a 504 once the call's deadline has passed (dropping `work`).
pub(super) async fn within_deadline<T>(
    context: &CallContext,
    work: impl Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    let budget = context.remaining().unwrap_or(Duration::MAX);
    tokio::time::timeout(budget, work)
        .await
        .map_err(|_| ApiError::Timeout(context.timeout_ms))?
}

/// A `generate` span's attributes, as the graph's trace has them.
pub(super) fn generation_attributes(model: &str, g: &Generation) -> serde_json::Value {
    json!({
        "model": model,
        "prompt_tokens": g.prompt_ids.len(),
        "generated_tokens": g.new_token_ids.len(),
        "finish_reason": g.finish_reason,
    })
}

/// Queue time until the first forward, compute from there to the last answer.
pub(super) fn timings(spans: &[WorkSpan], begun: Instant) -> ModelTimings {
    let ms = |d: Duration| (d.as_secs_f64() * 1e6).round() / 1e3;
    let first = |f: fn(&WorkSpan) -> Instant| spans.iter().map(f).min().unwrap_or(begun);
    let (queued, started) = (first(|s| s.queued), first(|s| s.started));
    let finished = spans.iter().map(|s| s.finished).max().unwrap_or(begun);
    ModelTimings {
        queue_ms: ms(started.saturating_duration_since(queued)),
        compute_ms: ms(finished.saturating_duration_since(started)),
        total_ms: ms(begun.elapsed()),
    }
}

/// The model called `name`, if the server is ready: 503 while loading or draining, 404
/// naming the models there are.
fn find_model<'a>(state: &'a AppState, name: &str) -> Result<ModelHandle<'a>, ApiError> {
    let graph = state.ready_graph()?;
    graph.model(name).ok_or_else(|| ApiError::ModelNotFound {
        name: name.to_string(),
        available: graph
            .model_names()
            .into_iter()
            .map(str::to_string)
            .collect(),
    })
}

/// The generator called `name`; a classifier is a 422 on `route`.
pub(super) fn find_generator(
    state: &AppState,
    name: &str,
    route: &'static str,
) -> Result<Named<Generate>, ApiError> {
    match find_model(state, name)? {
        ModelHandle::Generator(generator, _) => Ok(generator.clone()),
        ModelHandle::Classifier(..) => Err(ApiError::WrongRole {
            model: name.to_string(),
            role: "classifier",
            route,
            needs: "generator",
        }),
        ModelHandle::Embedder(..) => Err(ApiError::WrongRole {
            model: name.to_string(),
            role: "embedder",
            route,
            needs: "generator",
        }),
    }
}

/// The embedder called `name`; a generator or a classifier is a 422 on `route`.
pub(super) fn find_embedder(
    state: &AppState,
    name: &str,
    route: &'static str,
) -> Result<Named<Embed>, ApiError> {
    let role = match find_model(state, name)? {
        ModelHandle::Embedder(embedder, _) => return Ok(embedder.clone()),
        ModelHandle::Generator(..) => "generator",
        ModelHandle::Classifier(..) => "classifier",
    };
    Err(ApiError::WrongRole {
        model: name.to_string(),
        role,
        route,
        needs: "embedder",
    })
}

/// The classifier called `name`; a generator is a 422.
pub(super) fn find_classifier(state: &AppState, name: &str) -> Result<Named<Classify>, ApiError> {
    let role = match find_model(state, name)? {
        ModelHandle::Classifier(classifier, _) => return Ok(classifier.clone()),
        ModelHandle::Generator(..) => "generator",
        ModelHandle::Embedder(..) => "embedder",
    };
    Err(ApiError::WrongRole {
        model: name.to_string(),
        role,
        route: "/v1/models/{name}/classify",
        needs: "classifier",
    })
}

/// A 429 when model `name`'s queue is full right now.
pub(super) fn check_room(state: &AppState, name: &str) -> Result<(), ApiError> {
    Ok(find_model(state, name)?.check_room()?)
}

/// Longest `name` a message may carry, OpenAI's bound.
pub(super) const MAX_NAME_CHARS: usize = 64;

/// OpenAI's rule for a message's `name`: 1 to 64 ASCII letters, digits, `_` or `-`.
fn is_participant_name(name: &str) -> bool {
    (1..=MAX_NAME_CHARS).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Checks `messages` as sent, so that a refusal names the message and what is wrong with
/// it (a role we do not take, an image part), which serde's messages cannot. What passes
/// deserializes as `ChatRequestMessage`s; a missing list is left to serde to name.
pub(super) fn check_messages(messages: Option<&Value>) -> Result<(), ApiError> {
    let invalid = |message: String| Err(ApiError::Validation(message));
    let Some(messages) = messages else {
        return Ok(());
    };
    let Some(list) = messages.as_array() else {
        return invalid("messages: must be a list of {role, content} messages".into());
    };
    if list.is_empty() {
        return invalid("messages: must not be empty".into());
    }
    for (i, message) in list.iter().enumerate() {
        let Some(message) = message.as_object() else {
            return invalid(format!("messages[{i}]: must be a {{role, content}} object"));
        };
        let role = match message.get("role").and_then(Value::as_str) {
            Some(role @ ("system" | "developer" | "user" | "assistant" | "tool")) => role,
            Some(role) => {
                return invalid(format!(
                    "messages[{i}].role: {role:?} is not supported; the roles are system (or developer), user, assistant and tool"
                ))
            }
            None => return invalid(format!("messages[{i}].role: must be a string")),
        };
        // An assistant's calls, and the answer of a tool to one, have fields of their own.
        let own_field = match role {
            "assistant" => "tool_calls",
            "tool" => "tool_call_id",
            _ => "name",
        };
        let unknown: Vec<&str> = message
            .keys()
            .map(String::as_str)
            .filter(|key| !["role", "content", "name", own_field].contains(key))
            .collect();
        if !unknown.is_empty() {
            return invalid(format!(
                "messages[{i}]: unknown fields: {}",
                unknown.join(", ")
            ));
        }
        if let Some(name) = message.get("name") {
            if !name.as_str().is_some_and(is_participant_name) {
                return invalid(format!(
                    "messages[{i}].name: {name} is not 1 to {MAX_NAME_CHARS} letters, digits, _ or -"
                ));
            }
        }
        if role == "tool" && !message.get("tool_call_id").is_some_and(Value::is_string) {
            return invalid(format!(
                "messages[{i}].tool_call_id: a tool's message names the call it answers"
            ));
        }
        let calls = message.get("tool_calls").filter(|c| !c.is_null());
        if calls.is_some_and(|c| c.as_array().is_none_or(Vec::is_empty)) {
            return invalid(format!(
                "messages[{i}].tool_calls: must be a non-empty list of calls"
            ));
        }
        let parts = match message.get("content") {
            Some(Value::String(_)) => continue,
            // An assistant's message may be its calls alone.
            None | Some(Value::Null) if calls.is_some() => continue,
            Some(Value::Array(parts)) => parts,
            _ => {
                return invalid(format!(
                    "messages[{i}].content: must be a string or a list of text parts"
                ))
            }
        };
        for (j, part) in parts.iter().enumerate() {
            let text_part =
                part.as_object().is_some_and(|p| p.len() == 2) && part["text"].is_string();
            match part.get("type").and_then(Value::as_str) {
                Some("text") if text_part => {}
                Some(kind) if kind != "text" => {
                    return invalid(format!(
                        "messages[{i}].content[{j}]: {kind:?} parts are not supported; only text"
                    ))
                }
                _ => {
                    return invalid(format!(
                        "messages[{i}].content[{j}]: a text part is {{\"type\": \"text\", \"text\": \"..\"}}"
                    ))
                }
            }
        }
    }
    Ok(())
}

/// The conversation the template renders: each text (a message's content, or each of its
/// parts) within `limits.max_input_chars`. (Its rendered length is bounded in tokens, by
/// `limits.max_input_tokens`, as any prompt's.)
pub(super) fn conversation(
    state: &AppState,
    messages: &[ChatRequestMessage],
) -> Result<Vec<ChatMessage>, ApiError> {
    if messages.is_empty() {
        return Err(ApiError::Validation("messages: must not be empty".into()));
    }
    let limit = state.config.limits.max_input_chars;
    let check = |field: String, text: &str| {
        let chars = text.chars().count();
        if chars > limit {
            return Err(ApiError::Validation(format!(
                "{field}: {chars} characters; the limit is {limit}"
            )));
        }
        Ok(())
    };
    let mut conversation = Vec::with_capacity(messages.len());
    for (i, message) in messages.iter().enumerate() {
        match &message.content {
            Some(ChatContent::Text(text)) => check(format!("messages[{i}].content"), text)?,
            Some(ChatContent::Parts(parts)) => {
                for (j, ContentPart::Text { text }) in parts.iter().enumerate() {
                    check(format!("messages[{i}].content[{j}].text"), text)?;
                }
            }
            None => {}
        }
        if let Some(id) = &message.tool_call_id {
            check(format!("messages[{i}].tool_call_id"), id)?;
        }
        let tool_calls = match &message.tool_calls {
            Some(calls) => {
                let mut written = Vec::with_capacity(calls.len());
                for (j, call) in calls.iter().enumerate() {
                    let field = format!("messages[{i}].tool_calls[{j}]");
                    check(format!("{field}.id"), &call.id)?;
                    check(format!("{field}.function.name"), &call.function.name)?;
                    check(
                        format!("{field}.function.arguments"),
                        &call.function.arguments,
                    )?;
                    written.push(template_call(call, &field)?);
                }
                Some(written)
            }
            None => None,
        };
        let text = message.content.as_ref().map(ChatContent::text);
        conversation.push(ChatMessage {
            name: message.name.clone(),
            tool_calls,
            tool_call_id: message.tool_call_id.clone(),
            ..ChatMessage::new(message.role.as_str(), text.unwrap_or_default())
        });
    }
    Ok(conversation)
}

/// A call as templates write it: `arguments` an object (OpenAI sends its JSON text; a text
/// that is no object's is passed on as it is, as the model may have written it).
fn template_call(call: &ToolCall, field: &str) -> Result<Value, ApiError> {
    let text = &call.function.arguments;
    let arguments = serde_json::from_str(text)
        .ok()
        .filter(Value::is_object)
        .unwrap_or_else(|| Value::String(text.clone()));
    if call.kind != "function" {
        return Err(ApiError::Validation(format!(
            "{field}.type: only \"function\""
        )));
    }
    Ok(json!({
        "id": call.id,
        "type": "function",
        "function": {"name": call.function.name, "arguments": arguments},
    }))
}

/// Most tokens one request's `logit_bias` may name.
pub(super) const MAX_LOGIT_BIAS_TOKENS: usize = 1024;

/// `logit_bias` as sent, as the sampler takes it. Only for `model` loaded
/// on this server, whose vocabulary the ids must be in: each key a token id in decimal digits
/// (no sign, no leading zero), each value a number from −100 to 100.
pub(super) fn logit_bias(
    state: &AppState,
    model: &str,
    sent: Option<&Map<String, Value>>,
) -> Result<Vec<(u32, f32)>, ApiError> {
    let Some(sent) = sent.filter(|bias| !bias.is_empty()) else {
        return Ok(Vec::new());
    };
    if sent.len() > MAX_LOGIT_BIAS_TOKENS {
        return Err(ApiError::Validation(format!(
            "logit_bias: {} tokens; at most {MAX_LOGIT_BIAS_TOKENS}",
            sent.len()
        )));
    }
    let max_id = local_token_bounds(state, model, "logit_bias")?.max_id;
    let most = f64::from(MAX_LOGIT_BIAS);
    sent.iter()
        .map(|(key, value)| {
            let id = key
                .parse::<u32>()
                .ok()
                .filter(|&id| id.to_string() == *key && id as usize <= max_id)
                .ok_or_else(|| {
                    ApiError::Validation(format!(
                        "logit_bias: {key:?} is not a token id of the model's vocabulary (0 to {max_id})"
                    ))
                })?;
            let value = value
                .as_f64()
                .filter(|v| (-most..=most).contains(v))
                .ok_or_else(|| {
                    ApiError::Validation(format!(
                        "logit_bias: token {id}'s bias {value} is not a number from -{most} to {most}"
                    ))
                })?;
            Ok((id, value as f32))
        })
        .collect()
}

/// The token-id bounds of `model`, for `field`'s token ids: only a model loaded on this server
/// has its vocabulary here (a model node's routes take text).
pub(super) fn local_token_bounds(
    state: &AppState,
    model: &str,
    field: &str,
) -> Result<TokenPromptBounds, ApiError> {
    let graph = state.ready_graph()?;
    let Some(info) = graph.models.iter().find(|m| m.name == model) else {
        return Err(ApiError::Validation(format!(
            "{field}: token ids need the model loaded on this server, not on a model node"
        )));
    };
    Ok(TokenPromptBounds::of(
        info,
        state.config.limits.max_input_tokens,
    ))
}

/// A 422 for a token-id prompt that `model` cannot take, before any work starts (a stream's
/// answer has begun by the time its engine would refuse it): none, more than
/// `limits.max_input_tokens` or than the model's context leaves room for, or an id outside
/// its vocabulary; or a model on a node, whose routes take text.
pub(super) fn check_token_ids(
    state: &AppState,
    model: &str,
    field: &str,
    ids: &[u32],
) -> Result<(), ApiError> {
    let bounds = local_token_bounds(state, model, field)?;
    if ids.is_empty() || ids.len() > bounds.max_len {
        return Err(ApiError::Validation(format!(
            "{field}: {} token ids; give 1 to {}",
            ids.len(),
            bounds.max_len
        )));
    }
    if let Some(id) = ids.iter().find(|&&id| id as usize > bounds.max_id) {
        return Err(ApiError::Validation(format!(
            "{field}: token id {id} is not in the model's vocabulary (ids 0 to {})",
            bounds.max_id
        )));
    }
    Ok(())
}

/// A 422 naming `model` when it has no chat template: a local model as it loaded, a remote
/// one as its node described it (once one answered; its node checks again anyway).
pub(super) fn require_chat_template(state: &AppState, model: &str) -> Result<(), ApiError> {
    let graph = state.ready_graph()?;
    let local = graph
        .models
        .iter()
        .find(|m| m.name == model)
        .map(|m| m.chat_template.is_some());
    let remote = || {
        let replicas = graph.remotes.iter().find(|r| r.model == model)?;
        let details = replicas.details.lock().expect("details lock");
        details.as_ref().map(|d| !d["chat_template"].is_null())
    };
    if local.or_else(remote) == Some(false) {
        return Err(ApiError::NoChatTemplate {
            model: model.to_string(),
        });
    }
    Ok(())
}
