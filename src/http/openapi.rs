//! `GET /openapi.json`, generated from the API types and route annotations; `GET /docs`, a
//! page that renders it; and `GET /`, a page to try the graph. The pages are embedded in the
//! binary and load nothing from elsewhere.

use actix_web::http::Method;
use actix_web::{web, HttpResponse};
use serde_json::{json, Value};
use utoipa::OpenApi;

use super::api::{TokenPromptBounds, TEXT_PATTERN};
use super::auth::{admin_only, Auth};
use super::chat::{MAX_METADATA_KEY_CHARS, MAX_METADATA_PAIRS, MAX_METADATA_VALUE_CHARS};
use super::model_calls::MAX_LOGIT_BIAS_TOKENS;
use super::model_calls::MAX_NAME_CHARS;
use super::request::{MAX_STOP_CHARS, MAX_STOP_STRINGS, MAX_TOP_K};
use super::state::AppState;
use super::tools::MAX_TOOLS;
use crate::config::{Config, Role};
use crate::models::sampling::MAX_LOGIT_BIAS;

use super::{chat, embeddings, handlers, metrics, model_routes, openai, stream};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "infergraph",
        description = "An inference graph: GPT-2 generators feeding a BERT classifier. \
                       Every error body is `{\"error\", \"error_type\"}`."
    ),
    paths(
        handlers::classify_generated_texts,
        handlers::generate_score,
        handlers::graph,
        stream::sse,
        handlers::graphs,
        handlers::named_graph,
        stream::named_sse,
        stream::websocket,
        handlers::models,
        model_routes::generate,
        model_routes::generate_stream,
        model_routes::chat,
        model_routes::chat_stream,
        model_routes::classify,
        model_routes::embed,
        openai::completions,
        chat::chat_completions,
        embeddings::embeddings,
        handlers::engines,
        handlers::traces,
        handlers::trace,
        metrics::metrics,
        handlers::livez,
        handlers::readyz,
        handlers::healthz,
        openapi_json,
        docs,
        page,
    )
)]
pub struct ApiDoc;

#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "This OpenAPI document", content_type = "application/json", body = Object)))]
pub async fn openapi_json(state: web::Data<AppState>, auth: web::Data<Auth>) -> HttpResponse {
    let mut doc = document(
        &state.config,
        &chat_models(&state),
        &token_prompt_bounds(&state),
    );
    if auth.enabled() {
        require_keys(&mut doc, &auth);
    }
    HttpResponse::Ok().json(doc)
}

/// With keys on: the two ways to send one, required by every operation but the public
/// ones, each of which documents the 401 a missing or refused key gets (and the traces the
/// 403 a key that is not an admin's gets).
fn require_keys(doc: &mut Value, auth: &Auth) {
    doc["components"]["securitySchemes"] = json!({
        "bearer": {"type": "http", "scheme": "bearer",
                   "description": "An API key (on a model node: its node key)"},
        "api_key": {"type": "apiKey", "in": "header", "name": "x-api-key"},
    });
    doc["security"] = json!([{"bearer": []}, {"api_key": []}]);
    let error = |description: &str| {
        json!({
            "description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
        })
    };
    let Some(paths) = doc["paths"].as_object_mut() else {
        return;
    };
    for (path, operations) in paths {
        let Some(operations) = operations.as_object_mut() else {
            continue;
        };
        for (method, operation) in operations {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).ok();
            if method.is_some_and(|m| auth.is_public(&m, path)) {
                operation["security"] = json!([]);
                continue;
            }
            let mut refused = error("No key, or one this server does not accept");
            refused["headers"] = json!({"WWW-Authenticate": {"schema": {"const": "Bearer"}}});
            operation["responses"]["401"] = refused;
            if admin_only(path.split('{').next().unwrap_or(path)) {
                operation["responses"]["403"] = error("A key that is not an admin's");
            }
        }
    }
}

/// The generators that can chat: those with a chat template once the models are loaded
/// (a remote one as its node describes it), every generator before.
fn chat_models(state: &AppState) -> Vec<String> {
    let config = &state.config;
    let Some(graph) = state.graph() else {
        return names(config, Role::Generator)
            .into_iter()
            .map(str::to_string)
            .collect();
    };
    let local = graph.models.iter().filter(|m| m.role == "generator");
    let mut chat: Vec<String> = local
        .filter(|m| m.chat_template.is_some())
        .map(|m| m.name.clone())
        .collect();
    for remote in &graph.remotes {
        let details = remote.details.lock().expect("details lock");
        if details
            .as_ref()
            .is_some_and(|d| !d["chat_template"].is_null())
        {
            chat.push(remote.model.clone());
        }
    }
    chat
}

/// Each generator's bounds once the models are loaded: a local one's, `None` for a remote one
/// (whose node takes text only).
fn token_prompt_bounds(state: &AppState) -> Vec<(String, Option<TokenPromptBounds>)> {
    let Some(graph) = state.graph() else {
        return Vec::new();
    };
    let local = graph.models.iter().filter(|m| m.role == "generator");
    let local = local.map(|m| {
        let bounds = TokenPromptBounds::of(m, state.config.limits.max_input_tokens);
        (m.name.clone(), Some(bounds))
    });
    let remote = graph.remotes.iter().map(|r| (r.model.clone(), None));
    local.chain(remote).collect()
}

/// A `logit_bias` with token ids up to `max_id`: at most
/// [`MAX_LOGIT_BIAS_TOKENS`] of them, in decimal digits, each with a bias of at most 100 either
/// way. `None`: none (a model on a node, whose vocabulary is not here).
fn logit_bias(max_id: Option<usize>) -> Value {
    let Some(max_id) = max_id else {
        return json!({"type": ["object", "null"], "maxProperties": 0});
    };
    json!({
        "type": ["object", "null"],
        "maxProperties": MAX_LOGIT_BIAS_TOKENS,
        "propertyNames": {"pattern": format!("^({})$", decimal_range(max_id))},
        "additionalProperties": {
            "type": "number",
            "minimum": -MAX_LOGIT_BIAS,
            "maximum": MAX_LOGIT_BIAS,
        },
    })
}

/// A regular expression (alternatives, no anchors) that matches exactly the decimal numerals
/// of `0..=max`, without sign or leading zeros: the shorter numerals, then for each digit of
/// `max` those that share the digits before it and have a smaller one there, then `max`.
fn decimal_range(max: usize) -> String {
    let digits: Vec<u8> = max.to_string().bytes().map(|b| b - b'0').collect();
    let width = digits.len();
    let mut alternatives = vec!["0".to_string()];
    if width > 2 {
        alternatives.push(format!("[1-9][0-9]{{0,{}}}", width - 2));
    } else if width == 2 {
        alternatives.push("[1-9]".to_string());
    }
    for (i, &digit) in digits.iter().enumerate() {
        // The first digit is at least 1 (0 alone is counted above).
        let low = u8::from(i == 0);
        if digit > low {
            let prefix: String = digits[..i].iter().map(|d| char::from(b'0' + d)).collect();
            let rest = width - i - 1;
            let tail = match rest {
                0 => String::new(),
                1 => "[0-9]".to_string(),
                n => format!("[0-9]{{{n}}}"),
            };
            alternatives.push(format!("{prefix}[{low}-{}]{tail}", digit - 1));
        }
    }
    if max > 0 {
        alternatives.push(max.to_string());
    }
    alternatives.join("|")
}

/// The document, with what the types alone cannot say: this server's models and configured
/// limits, the rules that join several fields, and what each event stream's `data` holds.
/// Everything the schema allows, the server takes, short of a prompt too long in tokens
/// (over `limits.max_input_tokens` or the model's `n_positions`), which only the tokenizer
/// can tell (for a conversation: what its template renders). `chat_models` are the
/// generators that can chat; `token_prompts` bound each generator's token-id prompts.
pub fn document(
    config: &Config,
    chat_models: &[String],
    token_prompts: &[(String, Option<TokenPromptBounds>)],
) -> Value {
    let limits = &config.limits;
    let mut doc = serde_json::to_value(ApiDoc::openapi()).expect("the document serializes");
    let text = json!({
        "type": "string",
        "minLength": 1,
        "maxLength": limits.max_input_chars,
        "pattern": TEXT_PATTERN,
    });
    let schemas = &mut doc["components"]["schemas"];
    for (schema, field) in [
        ("GenerationRequest", "text"),
        ("GenerateScoreRequest", "original_sentence"),
    ] {
        schemas[schema]["properties"][field] = text.clone();
    }
    let nullable = |mut schema: Value| {
        schema["type"] = json!([schema["type"], "null"]);
        schema
    };
    // Exactly one of `text` and `texts` (a null one counts as absent).
    let text_or_texts = json!([
        {"required": ["text"], "properties": {"text": {"type": "string"}}},
        {"required": ["texts"], "properties": {"texts": {"type": "array"}}},
    ]);
    let classify = &mut schemas["ClassifyRequest"];
    classify["properties"]["text"] = nullable(text.clone());
    classify["properties"]["text_pair"] = nullable(text.clone());
    classify["properties"]["texts"]["items"] = text.clone();
    classify["oneOf"] = text_or_texts.clone();
    let embed = &mut schemas["EmbedRequest"];
    embed["properties"]["text"] = nullable(text.clone());
    embed["properties"]["texts"]["items"] = text.clone();
    embed["oneOf"] = text_or_texts;
    let input = &mut schemas["EmbeddingsInput"];
    input["oneOf"][0] = text.clone();
    input["oneOf"][1]["items"] = text.clone();
    input["oneOf"][1]["minItems"] = json!(1);
    input["oneOf"][1]["maxItems"] = json!(32);
    let embeddings = &mut schemas["EmbeddingsRequest"]["properties"];
    embeddings["model"]["enum"] = json!(names(config, Role::Embedder));
    embeddings["dimensions"] = json!({"type": "null"});
    schemas["EmbeddingData"]["properties"]["embedding"] = json!({"oneOf": [
        {"type": "array", "items": {"type": "number"}},
        {"type": "string", "contentEncoding": "base64"},
    ]});
    let generation = &mut schemas["GenerationRequest"];
    generation["properties"]["max_new_tokens"]["maximum"] = json!(limits.max_new_tokens);
    generation["properties"]["max_length"]["maximum"] =
        json!(limits.max_input_tokens + limits.max_new_tokens);
    schemas["CompletionRequest"]["properties"]["max_tokens"]["maximum"] =
        json!(limits.max_new_tokens);
    let prompt = &mut schemas["Prompt"];
    prompt["oneOf"][0] = text.clone();
    prompt["oneOf"][1]["items"] = text.clone();
    prompt["oneOf"][1]["minItems"] = json!(1);
    prompt["oneOf"][1]["maxItems"] = json!(16);
    // Token ids: one prompt's, or up to 16 prompts'; each model bounds them below.
    let ids = |bounds: Option<&TokenPromptBounds>| {
        let mut ids = json!({"type": "array", "minItems": 1,
            "items": {"type": "integer", "minimum": 0}});
        if let Some(bounds) = bounds {
            ids["items"]["maximum"] = json!(bounds.max_id);
            ids["maxItems"] = json!(bounds.max_len);
        }
        ids
    };
    let prompts = |one: Value| {
        let several = json!({"type": "array", "items": one, "minItems": 1, "maxItems": 16});
        json!([one, several])
    };
    let [one_prompt, several] = [prompt["oneOf"][0].clone(), prompt["oneOf"][1].clone()];
    let unbounded = prompts(ids(None));
    prompt["oneOf"][2] = unbounded[0].clone();
    prompt["oneOf"][3] = unbounded[1].clone();
    // Each generator's own: its vocabulary and context; a remote one's node takes text, and
    // no logit bias.
    let per_model: Vec<Value> = token_prompts
        .iter()
        .map(|(name, bounds)| {
            let mut accepted = vec![one_prompt.clone(), several.clone()];
            if let Some(bounds) = bounds {
                let ids = prompts(ids(Some(bounds)));
                accepted.extend([ids[0].clone(), ids[1].clone()]);
            }
            json!({
                "if": {"required": ["model"], "properties": {"model": {"const": name}}},
                "then": {"properties": {
                    "prompt": {"oneOf": accepted},
                    "logit_bias": logit_bias(bounds.as_ref().map(|b| b.max_id)),
                }},
            })
        })
        .collect();
    if !per_model.is_empty() {
        schemas["CompletionRequest"]["allOf"] = json!(per_model);
    }
    let stop = json!({
        "type": "array",
        "maxItems": MAX_STOP_STRINGS,
        "items": {"type": "string", "minLength": 1, "maxLength": MAX_STOP_CHARS},
    });
    schemas["GenerationRequest"]["properties"]["stop"] = nullable(stop.clone());
    schemas["GenerationRequest"]["properties"]["min_new_tokens"]["maximum"] =
        json!(limits.max_new_tokens);
    schemas["GenerationRequest"]["properties"]["top_k"]["maximum"] = json!(MAX_TOP_K);
    // Any u64 (utoipa says int64, whose range is half that).
    let seed = json!({"type": ["integer", "null"], "minimum": 0, "maximum": u64::MAX});
    schemas["GenerationRequest"]["properties"]["seed"] = seed.clone();
    schemas["CompletionRequest"]["properties"]["seed"] = seed.clone();
    schemas["StopStrings"]["oneOf"] = json!([stop["items"], stop]);
    // A `json_schema`'s `schema` is any object here: the keywords it may use are the
    // README's (JSON mode), beyond what a schema of schemas states plainly.
    let response_format = json!({"oneOf": [
        {"type": "null"},
        {"type": "object", "required": ["type"], "additionalProperties": false,
         "properties": {"type": {"enum": ["text", "json_object"]}}},
        {"type": "object", "required": ["type", "json_schema"], "additionalProperties": false,
         "properties": {"type": {"const": "json_schema"}, "json_schema": {
             "type": "object", "required": ["name"], "additionalProperties": false,
             "properties": {
                 "name": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
                 "description": {"type": "string"},
                 "schema": {"type": "object"},
                 "strict": {"type": ["boolean", "null"]},
             }}}},
    ]});
    for schema in [
        "GenerationRequest",
        "ChatGenerationRequest",
        "CompletionRequest",
        "ChatCompletionRequest",
    ] {
        schemas[schema]["properties"]["response_format"] = response_format.clone();
    }
    // A graph's answer has no place for log-probabilities, its texts hold the prompt, and its
    // generators have vocabularies of their own: the graph routes take the model routes' body
    // less `logprobs`, `response_format` and `logit_bias`.
    let mut graph_request = schemas["GenerationRequest"].clone();
    if let Some(properties) = graph_request["properties"].as_object_mut() {
        properties.remove("logprobs");
        properties.remove("prompt_logprobs");
        properties.remove("response_format");
        properties.remove("logit_bias");
    }
    schemas["GraphRequest"] = graph_request;
    // The model routes name their generator in the path, which a schema cannot look at:
    // token ids that every generator here has (none where one is on a node).
    let shared_max_id = token_prompts
        .iter()
        .map(|(_, bounds)| bounds.as_ref().map(|b| b.max_id))
        .try_fold(u32::MAX as usize, |least, max_id| Some(least.min(max_id?)));
    for schema in ["GenerationRequest", "ChatGenerationRequest"] {
        schemas[schema]["properties"]["logit_bias"] = logit_bias(shared_max_id);
    }
    // `prompt_logprobs: true` only with `logprobs`.
    schemas["GenerationRequest"]["if"] = json!({"required": ["prompt_logprobs"],
        "properties": {"prompt_logprobs": {"const": true}}});
    schemas["GenerationRequest"]["then"] =
        json!({"required": ["logprobs"], "properties": {"logprobs": {"type": "integer"}}});
    // The neutral values the server takes of OpenAI fields it does not implement.
    let completion = &mut schemas["CompletionRequest"]["properties"];
    completion["suffix"] = json!({"type": ["string", "null"], "maxLength": 0});
    completion["top_k"]["maximum"] = json!(MAX_TOP_K);
    completion["min_tokens"]["maximum"] = json!(limits.max_new_tokens);
    // Any token id here; each model's own below.
    let any_token = Some(u32::MAX as usize);
    completion["logit_bias"] = logit_bias(any_token);
    completion["model"]["enum"] = json!(names(config, Role::Generator));

    // A conversation: each text within the input limit, only text parts, no fields but
    // these.
    let content = json!({"type": "string", "maxLength": limits.max_input_chars});
    schemas["ContentPart"] = json!({
        "type": "object",
        "required": ["type", "text"],
        "additionalProperties": false,
        "properties": {"type": {"const": "text"}, "text": content},
    });
    schemas["ChatContent"]["oneOf"][0] = content;
    schemas["ChatRequestMessage"]["additionalProperties"] = json!(false);
    // Only an assistant's message has calls, and then may lack content; only a tool's
    // names the call it answers.
    schemas["ChatRequestMessage"]["properties"]["tool_calls"]["minItems"] = json!(1);
    let role = |role: &str| json!({"properties": {"role": {"const": role}}, "required": ["role"]});
    let present = |field: &str| json!({"required": [field], "not": {"properties": {field: {"type": "null"}}}});
    schemas["ChatRequestMessage"]["allOf"] = json!([
        {"if": role("tool"), "then": {"required": ["tool_call_id"], "properties": {"tool_call_id": {"type": "string"}}},
         "else": {"properties": {"tool_call_id": false}}},
        {"if": role("assistant"), "then": {"anyOf": [present("content"), present("tool_calls")]},
         "else": {"allOf": [present("content"), {"properties": {"tool_calls": false}}]}},
    ]);
    let function_name = json!({"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"});
    schemas["Tool"]["properties"]["type"] = json!({"const": "function"});
    schemas["ToolCall"]["properties"]["type"] = json!({"const": "function"});
    schemas["FunctionDefinition"]["properties"]["name"] = function_name.clone();
    // A request's texts, each within the input limit: a tool's description, and the calls
    // of an assistant's message (inline there: an answer's calls are the model's, unbounded).
    let bound = json!(limits.max_input_chars);
    schemas["FunctionDefinition"]["properties"]["description"]["maxLength"] = bound.clone();
    let mut call = schemas["ToolCall"].clone();
    call["properties"]["id"]["maxLength"] = bound.clone();
    call["properties"]["function"] = schemas["FunctionCall"].clone();
    for field in ["name", "arguments"] {
        call["properties"]["function"]["properties"][field]["maxLength"] = bound.clone();
    }
    schemas["ChatRequestMessage"]["properties"]["tool_calls"]["items"] = call;
    schemas["ChatRequestMessage"]["properties"]["tool_call_id"]["maxLength"] =
        json!(limits.max_input_chars);
    schemas["ChatRequestMessage"]["properties"]["name"] = json!({"type": "string",
        "pattern": format!("^[A-Za-z0-9_-]{{1,{MAX_NAME_CHARS}}}$")});
    let chat = &mut schemas["ChatGenerationRequest"]["properties"];
    chat["max_new_tokens"]["maximum"] = json!(limits.max_new_tokens);
    chat["max_length"]["maximum"] = json!(limits.max_input_tokens + limits.max_new_tokens);
    chat["min_new_tokens"]["maximum"] = json!(limits.max_new_tokens);
    chat["top_k"]["maximum"] = json!(MAX_TOP_K);
    chat["seed"] = seed.clone();
    chat["stop"] = nullable(stop.clone());
    let chat = &mut schemas["ChatCompletionRequest"]["properties"];
    chat["model"]["enum"] = json!(chat_models);
    chat["top_k"]["maximum"] = json!(MAX_TOP_K);
    chat["min_tokens"]["maximum"] = json!(limits.max_new_tokens);
    chat["seed"] = seed;
    for field in ["max_tokens", "max_completion_tokens"] {
        chat[field]["maximum"] = json!(limits.max_new_tokens);
    }
    chat["store"] = json!({"enum": [false, null]});
    chat["service_tier"] = json!({"enum": ["auto", "default", null]});
    chat["metadata"] = json!({"type": ["object", "null"], "maxProperties": MAX_METADATA_PAIRS,
        "propertyNames": {"maxLength": MAX_METADATA_KEY_CHARS},
        "additionalProperties": {"type": "string", "maxLength": MAX_METADATA_VALUE_CHARS}});
    chat["tools"]["maxItems"] = json!(MAX_TOOLS);
    chat["tool_choice"] = json!({"oneOf": [
        {"enum": ["none", "auto", "required", null]},
        {"type": "object", "required": ["type", "function"], "additionalProperties": false,
         "properties": {"type": {"const": "function"}, "function": {"type": "object",
            "required": ["name"], "additionalProperties": false,
            "properties": {"name": function_name.clone()}}}},
    ]});
    chat["logit_bias"] = logit_bias(any_token);
    let per_chat_model: Vec<Value> = token_prompts
        .iter()
        .filter(|(name, _)| chat_models.contains(name))
        .map(|(name, bounds)| {
            json!({
                "if": {"required": ["model"], "properties": {"model": {"const": name}}},
                "then": {"properties": {"logit_bias": logit_bias(bounds.as_ref().map(|b| b.max_id))}},
            })
        })
        .collect();
    let mut conditions = per_chat_model;
    // A choice that may call needs tools; a call kept to the tools takes no other format.
    let choice_other_than = |modes: Value| {
        json!({"required": ["tool_choice"],
            "properties": {"tool_choice": {"not": {"enum": modes}}}})
    };
    conditions.push(json!({
        "if": choice_other_than(json!(["none", null])),
        "then": {"required": ["tools"], "properties": {"tools": {"type": "array", "minItems": 1}}},
    }));
    conditions.push(json!({
        "if": choice_other_than(json!(["none", "auto", null])),
        "then": {"properties": {"response_format": {"anyOf": [{"type": "null"},
            {"type": "object", "properties": {"type": {"const": "text"}}}]}}},
    }));
    schemas["ChatCompletionRequest"]["allOf"] = json!(conditions);
    // `echo` not with `stream`.
    schemas["CompletionRequest"]["if"] =
        json!({"required": ["stream"], "properties": {"stream": {"const": true}}});
    schemas["CompletionRequest"]["then"] = json!({"properties": {"echo": {"enum": [false, null]}}});
    // `top_logprobs` only with `logprobs: true`, as OpenAI has it.
    schemas["ChatCompletionRequest"]["if"] =
        json!({"required": ["top_logprobs"], "properties": {"top_logprobs": {"type": "integer"}}});
    schemas["ChatCompletionRequest"]["then"] =
        json!({"required": ["logprobs"], "properties": {"logprobs": {"const": true}}});
    doc["paths"]["/classify_generated_texts"]["post"]["requestBody"]["content"]["text/plain"]
        ["schema"] = text;
    for path in [
        "/v1/graph",
        "/v1/graphs/{name}",
        "/v1/graph/stream",
        "/v1/graphs/{name}/stream",
    ] {
        doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"] =
            json!({"$ref": "#/components/schemas/GraphRequest"});
    }

    // Each per-model route takes the names of the models of its role.
    for (path, role) in [
        ("/v1/models/{name}/generate", Role::Generator),
        ("/v1/models/{name}/generate/stream", Role::Generator),
        ("/v1/models/{name}/classify", Role::Classifier),
        ("/v1/models/{name}/embed", Role::Embedder),
    ] {
        name_parameter(&mut doc, path, &names(config, role));
    }
    let chat_names: Vec<&str> = chat_models.iter().map(String::as_str).collect();
    for path in ["/v1/models/{name}/chat", "/v1/models/{name}/chat/stream"] {
        name_parameter(&mut doc, path, &chat_names);
    }
    // The graph routes take the names of the configured graphs.
    let graphs: Vec<&str> = config.graphs.iter().map(|g| g.name.as_str()).collect();
    for path in ["/v1/graphs/{name}", "/v1/graphs/{name}/stream"] {
        name_parameter(&mut doc, path, &graphs);
    }
    // An SSE response's schema describes each event; its `data` is JSON of the event type.
    for (path, event) in [
        ("/v1/graph/stream", "StreamEvent"),
        ("/v1/graphs/{name}/stream", "StreamEvent"),
        ("/v1/models/{name}/generate/stream", "ModelStreamEvent"),
        ("/v1/models/{name}/chat/stream", "ModelStreamEvent"),
        ("/v1/completions", "Completion"),
        ("/v1/chat/completions", "ChatCompletionChunk"),
    ] {
        let data = if path.starts_with("/v1/models") || path.starts_with("/v1/graph") {
            json!({
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": {"$ref": format!("#/components/schemas/{event}")},
            })
        } else {
            // OpenAI's: `[DONE]`, or a chunk or an error chunk.
            json!({
                "type": "string",
                "if": {"const": "[DONE]"},
                "else": {
                    "contentMediaType": "application/json",
                    "contentSchema": {"oneOf": [
                        {"$ref": format!("#/components/schemas/{event}")},
                        {
                            "type": "object",
                            "required": ["error"],
                            "properties": {"error": {
                                "type": "object",
                                "required": ["message", "type"],
                                "properties": {"message": {"type": "string"}, "type": {"type": "string"}},
                            }},
                        },
                    ]},
                },
            })
        };
        doc["paths"][path]["post"]["responses"]["200"]["content"]["text/event-stream"]["schema"] = json!({
            "type": "object",
            "required": ["data"],
            "properties": {"event": {"type": "string"}, "data": data},
        });
    }
    doc
}

/// Says which values the `{name}` of POST `path` takes.
fn name_parameter(doc: &mut Value, path: &str, names: &[&str]) {
    for parameter in doc["paths"][path]["post"]["parameters"]
        .as_array_mut()
        .into_iter()
        .flatten()
    {
        parameter["schema"]["enum"] = json!(names);
    }
}

fn names(config: &Config, role: Role) -> Vec<&str> {
    config
        .models
        .iter()
        .filter(|m| m.role == role)
        .map(|m| m.name.as_str())
        .collect()
}

#[utoipa::path(get, path = "/docs", tag = "operations",
    responses((status = 200, description = "The API reference, rendered from /openapi.json", content_type = "text/html", body = String)))]
pub async fn docs() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(include_str!("../../assets/docs.html"))
}

#[utoipa::path(get, path = "/", tag = "operations",
    responses((status = 200, description = "A page to try the graph: streams, scores and the waterfall", content_type = "text/html", body = String)))]
pub async fn page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(include_str!("../../assets/index.html"))
}

#[cfg(test)]
mod tests {
    use super::decimal_range;

    #[test]
    fn a_decimal_range_matches_exactly_the_plain_numerals_up_to_its_bound() {
        for max in [
            0, 1, 9, 10, 11, 19, 99, 100, 101, 110, 999, 1000, 1024, 30521, 49151, 50256,
        ] {
            let pattern = regex::Regex::new(&format!("^({})$", decimal_range(max))).unwrap();
            for n in 0..=2 * max + 20 {
                assert_eq!(
                    pattern.is_match(&n.to_string()),
                    n <= max,
                    "{n} against 0..={max}"
                );
            }
            for other in ["", "00", "01", "-0", "+1", " 1", "1 ", "1.0", "1e2"] {
                assert!(!pattern.is_match(other), "{other:?} against 0..={max}");
            }
        }
    }
}
