//! FUNCTION CALLING: `/v1/chat/completions` with `tools`. A named function or `required`
//! keeps the answer to the tools' parameters, and it comes back as `tool_calls`, plainly
//! and streamed; `auto` reads calls out of the model's text; `none` leaves the tools out of
//! the prompt. Requests that cannot be kept to are refused by name.

use crate::common;

use common::server::{ModelEntry, TestServer};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// The fixtures whose templates read `tools` (Llama 3.1's, Qwen2.5's, Qwen3's), copied with
/// room for a prompt that lists tools: the fixtures' 128 positions are fewer than their
/// templates' tool prompts take (rotary positions have no table to outgrow).
fn tool_models(dir: &Path) -> Vec<ModelEntry> {
    ["llama-tiny", "qwen2-tiny", "qwen3-tiny"]
        .into_iter()
        .map(|fixture| {
            let name = fixture.trim_end_matches("-tiny");
            (name, long_copy(fixture, dir), "generator")
        })
        .collect()
}

/// A copy of `fixture` in `dir` with `max_position_embeddings` 1024 (its other files
/// linked).
fn long_copy(fixture: &str, dir: &Path) -> PathBuf {
    let from = common::fixture(fixture);
    let to = dir.join(fixture);
    std::fs::create_dir(&to).unwrap();
    for entry in std::fs::read_dir(&from).unwrap() {
        let entry = entry.unwrap();
        std::os::unix::fs::symlink(entry.path(), to.join(entry.file_name())).unwrap();
    }
    let config = to.join("config.json");
    let mut json: Value = serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    json["max_position_embeddings"] = json!(1024);
    std::fs::remove_file(&config).unwrap();
    std::fs::write(&config, json.to_string()).unwrap();
    to
}

/// Two tools whose every call is bounded (a string with `maxLength`, enums, an integer
/// with bounds), so that a random model's constrained call ends within its budget.
fn tools() -> Value {
    json!([
        {"type": "function", "function": {"name": "get_weather", "parameters": {
            "type": "object", "required": ["city", "days"], "properties": {
                "city": {"type": "string", "maxLength": 12},
                "unit": {"enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer", "minimum": 1, "maximum": 7}}}}},
        {"type": "function", "function": {"name": "get_time", "parameters": {
            "type": "object", "required": ["zone"],
            "properties": {"zone": {"enum": ["UTC", "CET"]}}}}},
    ])
}

/// Whether `call` (`{"name", "arguments"}` as parsed) is a call of one of `tools()` with
/// every argument its schema requires, the optional one or not, in order, and no other.
fn keeps_to_the_tools(name: &str, arguments: &Value) -> bool {
    let arguments = arguments.as_object().unwrap();
    let keys: Vec<&str> = arguments.keys().map(String::as_str).collect();
    match name {
        "get_weather" => {
            (keys == ["city", "unit", "days"] || keys == ["city", "days"])
                && (1..=7).contains(&arguments["days"].as_i64().unwrap_or(0))
                && arguments["city"]
                    .as_str()
                    .is_some_and(|c| c.chars().count() <= 12)
                && arguments
                    .get("unit")
                    .is_none_or(|unit| unit == "celsius" || unit == "fahrenheit")
        }
        "get_time" => {
            keys == ["zone"] && ["UTC", "CET"].contains(&arguments["zone"].as_str().unwrap_or(""))
        }
        _ => false,
    }
}

/// A choice's calls as `(name, parsed arguments)`.
fn calls(tool_calls: &Value) -> Vec<(String, Value)> {
    tool_calls
        .as_array()
        .unwrap()
        .iter()
        .map(|call| {
            assert_eq!(call["type"], "function", "{call}");
            assert!(call["id"].as_str().unwrap().starts_with("call_"), "{call}");
            let function = &call["function"];
            let arguments = serde_json::from_str(function["arguments"].as_str().unwrap()).unwrap();
            (function["name"].as_str().unwrap().to_string(), arguments)
        })
        .collect()
}

#[actix_web::test]
async fn random_models_calls_keep_to_the_named_or_required_tools_parameters_plain_and_streamed() {
    let dir = tempfile::tempdir().unwrap();
    let models = tool_models(dir.path());
    let server = TestServer::start(&models, "[limits]\nmax_new_tokens = 400\n");
    for &(model, _, _) in &models {
        for seed in 1..=3 {
            let body = |choice: Value| {
                json!({"model": model, "messages": [{"role": "user", "content": "Weather?"}],
                    "tools": tools(), "tool_choice": choice, "parallel_tool_calls": false,
                    "temperature": 1.0, "seed": seed, "max_tokens": 400})
            };
            let named = json!({"type": "function", "function": {"name": "get_weather"}});
            for (choice, reason) in [(named, "stop"), (json!("required"), "tool_calls")] {
                let label = format!("{model} seed {seed} {choice}");
                let (status, answer) = server
                    .post_json("/v1/chat/completions", &body(choice.clone()))
                    .await;
                assert_eq!(status, 200, "{label}: {answer}");
                let choice_0 = &answer["choices"][0];
                assert_eq!(choice_0["finish_reason"], reason, "{label}: {answer}");
                let message = &choice_0["message"];
                assert_eq!(message["content"], Value::Null, "{label}");
                let made = calls(&message["tool_calls"]);
                assert_eq!(made.len(), 1, "{label}: {answer}");
                let (name, arguments) = &made[0];
                assert!(
                    keeps_to_the_tools(name, arguments),
                    "{label}: {name} {arguments}"
                );
                if reason == "stop" {
                    assert_eq!(name, "get_weather");
                }

                // Streamed, the same call comes as it is written: its id and name first,
                // then its arguments piece by piece.
                let mut streamed = body(choice);
                streamed["stream"] = json!(true);
                let text = server.post_sse("/v1/chat/completions", &streamed).await;
                let chunks = common::sse_data(&text);
                let deltas: Vec<&Value> = chunks.iter().map(|c| &c["choices"][0]).collect();
                assert_eq!(deltas[0]["delta"]["role"], "assistant");
                let last = deltas.last().unwrap();
                assert_eq!(last["finish_reason"], reason, "{label}");
                let pieces: Vec<&Value> = deltas
                    .iter()
                    .filter_map(|d| d["delta"]["tool_calls"].as_array())
                    .flatten()
                    .collect();
                assert!(pieces.len() > 2, "{label}: {text}");
                assert!(pieces.iter().all(|p| p["index"] == 0), "{label}: {text}");
                let (first, rest) = pieces.split_first().unwrap();
                assert!(
                    rest.iter().all(|p| p.get("id").is_none()
                        && p.get("type").is_none()
                        && p["function"].get("name").is_none()),
                    "{label}: {text}"
                );
                assert_eq!(first["type"], "function", "{label}");
                assert!(first["id"].as_str().unwrap().starts_with("call_"));
                let arguments = rest.iter().fold(
                    first["function"]["arguments"].as_str().unwrap().to_string(),
                    |joined, p| joined + p["function"]["arguments"].as_str().unwrap(),
                );
                // The same seed writes the same call as the plain answer's, byte for byte.
                let function = json!({"name": first["function"]["name"], "arguments": arguments});
                assert_eq!(function, message["tool_calls"][0]["function"], "{label}");
                assert!(
                    deltas
                        .iter()
                        .all(|d| d["delta"]["content"].as_str().unwrap_or("").is_empty()),
                    "{label}: {text}"
                );
            }
        }
    }
}

#[actix_web::test]
async fn tools_reach_the_prompt_unless_the_choice_is_none_and_text_that_is_no_call_stays_text() {
    let dir = tempfile::tempdir().unwrap();
    let models = tool_models(dir.path());
    let server = TestServer::start(&models, "");
    for &(model, _, _) in &models {
        let ask = |extra: Value| {
            let mut body = json!({"model": model, "temperature": 0, "max_tokens": 8,
                "messages": [{"role": "user", "content": "Weather?"}]});
            body.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            body
        };
        let (_, plain) = server
            .post_json("/v1/chat/completions", &ask(json!({})))
            .await;
        let (_, none) = server
            .post_json(
                "/v1/chat/completions",
                &ask(json!({"tools": tools(), "tool_choice": "none"})),
            )
            .await;
        let (status, auto) = server
            .post_json("/v1/chat/completions", &ask(json!({"tools": tools()})))
            .await;
        assert_eq!(status, 200, "{auto}");
        let prompt_tokens = |answer: &Value| answer["usage"]["prompt_tokens"].as_u64().unwrap();
        assert_eq!(prompt_tokens(&none), prompt_tokens(&plain), "{model}");
        assert!(
            prompt_tokens(&auto) > prompt_tokens(&plain) + 50,
            "{model}: {auto}"
        );
        assert_eq!(
            none["choices"][0]["message"],
            plain["choices"][0]["message"]
        );
        // A random model's greedy text is no call: it comes back as text.
        let message = &auto["choices"][0]["message"];
        assert!(message["content"].is_string(), "{model}: {auto}");
        assert!(message.get("tool_calls").is_none(), "{model}: {auto}");
        assert_ne!(auto["choices"][0]["finish_reason"], "tool_calls");
    }
}

#[actix_web::test]
async fn the_real_smollm2_calls_through_the_openai_client_and_answers_from_the_tools_result() {
    let server = TestServer::start(&[common::real_smollm2()], "");
    let stdout = common::openai_check("tools_check.py", &[&server.base, "smollm2"]);
    let read: Value = serde_json::from_slice(&stdout).unwrap();
    let paris = json!([{"name": "get_weather", "arguments": {"city": "Paris"}}]);
    let without_ids = |calls: &Value| {
        let mut calls = calls.clone();
        for call in calls.as_array_mut().unwrap() {
            call.as_object_mut().unwrap().remove("id");
        }
        calls
    };
    // A named function's call ends as OpenAI's does ("stop"); a required one "tool_calls".
    assert_eq!(read["named"]["finish_reason"], "stop", "{read}");
    assert_eq!(without_ids(&read["named"]["calls"]), paris, "{read}");
    assert_eq!(read["named"]["content"], Value::Null);
    assert_eq!(read["required"]["finish_reason"], "tool_calls", "{read}");
    assert_eq!(without_ids(&read["required"]["calls"]), paris, "{read}");
    assert_eq!(read["streamed"]["finish_reason"], "tool_calls", "{read}");
    assert_eq!(without_ids(&read["streamed"]["calls"]), paris, "{read}");
    // Given the tool's result, the model answers from it.
    let answered = &read["answered"];
    assert_eq!(answered["finish_reason"], "stop", "{read}");
    assert_eq!(answered["calls"], json!([]));
    assert!(
        answered["content"].as_str().unwrap().contains("31"),
        "{read}"
    );

    // Through a graph whose generator is on a model node, the node renders the tools and
    // the call is the same.
    let graph = common::graph_with_generator_on(&server, "smollm2");
    let body = json!({"model": "smollm2", "temperature": 0, "tools": [
            {"type": "function", "function": {"name": "get_weather", "parameters": {
                "type": "object", "properties": {"city": {"type": "string"}}}}}],
        "tool_choice": "required",
        "messages": [{"role": "user", "content": "What is the weather like in Paris today?"}]});
    let (status, direct) = server.post_json("/v1/chat/completions", &body).await;
    assert_eq!(status, 200, "{direct}");
    let (status, through) = graph.post_json("/v1/chat/completions", &body).await;
    assert_eq!(status, 200, "{through}");
    let call = |answer: &Value| calls(&answer["choices"][0]["message"]["tool_calls"]);
    assert_eq!(call(&through), call(&direct));
    assert_eq!(through["usage"], direct["usage"]);
    // A history with a call and its answer reaches the node's template as it reaches ours.
    let mut history = body.clone();
    history["tool_choice"] = json!("none");
    history["messages"].as_array_mut().unwrap().extend([
        json!({"role": "assistant", "content": null, "tool_calls": [{"id": "call_1",
            "type": "function", "function": {"name": "get_weather",
            "arguments": "{\"city\": \"Paris\"}"}}]}),
        json!({"role": "tool", "tool_call_id": "call_1", "content": "{\"temperature_c\": 31}"}),
    ]);
    let (status, direct) = server.post_json("/v1/chat/completions", &history).await;
    assert_eq!(status, 200, "{direct}");
    let (status, through) = graph.post_json("/v1/chat/completions", &history).await;
    assert_eq!(status, 200, "{through}");
    assert_eq!(through["choices"], direct["choices"]);
    assert_eq!(through["usage"], direct["usage"]);
}

#[actix_web::test]
async fn tool_requests_that_cannot_be_kept_get_a_422_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&tool_models(dir.path())[..1], "");
    let with = |extra: Value| {
        let mut body = json!({"model": "llama", "tools": tools(),
            "messages": [{"role": "user", "content": "Hi"}]});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    let function = |name: &str| json!({"type": "function", "function": {"name": name}});
    let tool = |name: &str| json!({"type": "function", "function": {"name": name}});
    for (body, named) in [
        (
            json!({"model": "llama", "tool_choice": "required",
                "messages": [{"role": "user", "content": "Hi"}]}),
            "tool_choice: only with tools",
        ),
        (
            with(json!({"tool_choice": function("get_news")})),
            "tool_choice: no tool is named \"get_news\"",
        ),
        (
            with(json!({"tool_choice": "always"})),
            "tool_choice: \"always\"",
        ),
        (
            with(json!({"tools": [tool("get weather")]})),
            "tools[0].function.name: \"get weather\" is not",
        ),
        (
            with(json!({"tools": [{"type": "retrieval", "function": {"name": "f"}}]})),
            "tools[0].type: only \"function\"",
        ),
        (
            with(json!({"tool_choice": "required", "response_format": {"type": "json_object"}})),
            "response_format: only text with tool_choice",
        ),
        (
            with(
                json!({"tool_choice": "required", "tools": [{"type": "function", "function": {
                "name": "f", "parameters": {"type": "object", "properties": {
                    "code": {"type": "string", "pattern": "^[A-Z]+$"}}}}}]}),
            ),
            "tools[0].function.parameters: #/properties/code: \"pattern\" is not supported",
        ),
        (
            with(json!({"messages": [{"role": "tool", "content": "42"}]})),
            "messages[0].tool_call_id: a tool's message names the call it answers",
        ),
        (
            with(json!({"messages": [{"role": "user", "content": "Hi", "tool_calls": []}]})),
            "messages[0]: unknown fields: tool_calls",
        ),
        (
            with(json!({"messages": [{"role": "assistant", "content": null}]})),
            "messages[0].content: must be a string",
        ),
        (
            with(json!({"messages": [{"role": "assistant", "tool_calls": []}]})),
            "messages[0].tool_calls: must be a non-empty list",
        ),
    ] {
        let (status, answer) = server.post_json("/v1/chat/completions", &body).await;
        assert_eq!(status, 422, "{body}: {answer}");
        let error = answer["error"].as_str().unwrap();
        assert!(error.contains(named), "{body}: {error}");
    }
}
