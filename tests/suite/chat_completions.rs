//! `POST /v1/chat/completions` and the per-model `/v1/models/{name}/chat` routes: the real
//! SmolLM2-135M-Instruct GGUF answering through its own template (with the official `openai`
//! client, unchanged, and across a hop from a graph node), and what the routes refuse.

use crate::common;
use std::path::{Path, PathBuf};

use common::real_smollm2;
use common::server::{models_toml, serve_refuses, ModelEntry, TestServer};
use serde_json::{json, Value};

const QUESTION: &str = "What is the capital of France?";
const ANSWER: &str = "The capital of France is Paris.";
/// The question rendered with SmolLM2's template (its default system turn included), and
/// the answer's tokens, `<|im_end|>` included.
const PROMPT_TOKENS: u64 = 37;
const ANSWER_TOKENS: u64 = 8;

fn question() -> Value {
    json!([{"role": "user", "content": QUESTION}])
}

/// The `data:` payloads of an SSE body.
fn data_lines(body: &str) -> Vec<&str> {
    body.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect()
}

#[actix_web::test]
async fn the_official_openai_client_asks_the_real_smollm2_and_hears_paris_plain_and_streamed() {
    let server = TestServer::start(&[real_smollm2()], "");
    let stdout = common::openai_check("chat_check.py", &[&server.base, "smollm2", QUESTION]);
    let seen: Value = serde_json::from_slice(&stdout).unwrap();
    let usage = json!({
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": ANSWER_TOKENS,
        "total_tokens": PROMPT_TOKENS + ANSWER_TOKENS,
    });
    assert_eq!(seen["object"], "chat.completion");
    assert_eq!(seen["model"], "smollm2");
    assert!(seen["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(seen["role"], "assistant");
    assert_eq!(seen["content"], ANSWER);
    assert_eq!(seen["finish_reason"], "stop");
    assert_eq!(seen["usage"], usage);

    assert_eq!(seen["chunk_objects"], json!(["chat.completion.chunk"]));
    assert_eq!(seen["chunk_ids"].as_array().unwrap().len(), 1, "one id");
    assert_eq!(seen["first_delta_role"], "assistant");
    assert_eq!(seen["streamed"], ANSWER);
    assert_eq!(seen["streamed_finish_reasons"], json!(["stop"]));
    assert_eq!(seen["usage_on_other_chunks"], json!([]));
    assert_eq!(seen["last_choices"], json!([]));
    assert_eq!(seen["last_usage"], usage);
    // The answer repeats no token, and the penalties count the answer's tokens alone (the
    // question's " capital" and " France" would cost 4 each otherwise).
    assert_eq!(seen["with_penalties"], ANSWER);
    assert_eq!(seen["top_k_1"], ANSWER);
    let banned = seen["first_token_banned"].as_str().unwrap();
    assert!(
        !banned.is_empty() && !banned.starts_with("The"),
        "{banned:?}"
    );

    // One entry per answer token, the end-of-turn token too; greedy, so each is its
    // position's most likely.
    let tokens: Vec<&str> = seen["logprob_tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(tokens.len() as u64, ANSWER_TOKENS);
    assert!(tokens.concat().starts_with(ANSWER), "{tokens:?}");
    for (i, logprob) in seen["logprobs"].as_array().unwrap().iter().enumerate() {
        let top = &seen["top_logprobs"][i];
        assert_eq!(top.as_array().unwrap().len(), 2);
        assert_eq!(top[0], json!([tokens[i], logprob]), "token {i}");
        assert!(logprob.as_f64().unwrap() <= 0.0);
    }
}

#[actix_web::test]
async fn a_streamed_chat_is_role_then_content_then_finish_then_usage_then_done_on_the_wire() {
    let server = TestServer::start(&[real_smollm2()], "");
    let body = json!({"model": "smollm2", "messages": question(), "temperature": 0,
        "stream": true, "stream_options": {"include_usage": true}});
    let text = server.post_sse("/v1/chat/completions", &body).await;
    let lines = data_lines(&text);
    assert_eq!(lines.last(), Some(&"[DONE]"));
    let chunks: Vec<Value> = lines[..lines.len() - 1]
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for chunk in &chunks {
        // With include_usage, every chunk carries `usage`: null but on the last.
        assert!(chunk.as_object().unwrap().contains_key("usage"), "{chunk}");
    }
    let first = &chunks[0]["choices"][0];
    assert_eq!(first["delta"], json!({"role": "assistant", "content": ""}));
    let (usage_chunk, rest) = chunks.split_last().unwrap();
    let (finish_chunk, content) = rest.split_last().unwrap();
    assert_eq!(finish_chunk["choices"][0]["delta"], json!({}));
    assert_eq!(finish_chunk["choices"][0]["finish_reason"], "stop");
    let streamed: String = content[1..]
        .iter()
        .map(|c| {
            assert!(c["usage"].is_null() && c["choices"][0]["finish_reason"].is_null());
            c["choices"][0]["delta"]["content"].as_str().unwrap()
        })
        .collect();
    assert_eq!(streamed, ANSWER);
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(usage_chunk["usage"]["completion_tokens"], ANSWER_TOKENS);
}

#[actix_web::test]
async fn a_stop_string_ends_the_answer_and_is_left_out_of_it_plain_and_streamed() {
    let server = TestServer::start(&[real_smollm2()], "");
    // "France is Paris" spans three tokens: a stream must hold " France" and " is" back
    // until " Paris" shows they begin the stop string. The answer ends with ".", the start
    // of ".\n": held back, then sent once the end-of-turn token ends the answer.
    let cases = [
        ("France is Paris", "The capital of ", "stop"),
        (".\n", ANSWER, "stop"),
        ("Rome", ANSWER, "stop"),
    ];
    for (stop, want, reason) in cases {
        let body = json!({"model": "smollm2", "messages": question(), "temperature": 0,
            "stop": stop});
        let (status, plain) = server.post_json("/v1/chat/completions", &body).await;
        assert_eq!(status, 200, "{plain}");
        let choice = &plain["choices"][0];
        assert_eq!(choice["message"]["content"], want, "stop {stop:?}");
        assert_eq!(choice["finish_reason"], reason, "stop {stop:?}");

        let mut streamed = body.clone();
        streamed["stream"] = json!(true);
        let text = server.post_sse("/v1/chat/completions", &streamed).await;
        let pieces: Vec<String> = data_lines(&text)
            .into_iter()
            .filter(|l| *l != "[DONE]")
            .filter_map(|l| {
                let chunk: Value = serde_json::from_str(l).unwrap();
                let content = chunk["choices"][0]["delta"]["content"].as_str()?;
                Some(content.to_string())
            })
            .collect();
        // Held text sent too early would show here: the pieces join to the cut answer.
        assert_eq!(pieces.concat(), want, "stop {stop:?}: {pieces:?}");
    }
}

#[actix_web::test]
async fn n_answers_come_numbered_plain_and_streamed_each_with_its_own_end() {
    let server = TestServer::start(&[real_smollm2()], "");
    let body = json!({"model": "smollm2", "messages": question(), "temperature": 0, "n": 2,
        "stream_options": {"include_usage": true}});
    let mut plain = body.clone();
    plain.as_object_mut().unwrap().remove("stream_options");
    let (status, answer) = server.post_json("/v1/chat/completions", &plain).await;
    assert_eq!(status, 200, "{answer}");
    for (index, choice) in answer["choices"].as_array().unwrap().iter().enumerate() {
        assert_eq!(choice["index"], index);
        assert_eq!(
            choice["message"]["content"], ANSWER,
            "greedy: every answer the same"
        );
        assert_eq!(choice["finish_reason"], "stop");
    }
    assert_eq!(answer["choices"].as_array().unwrap().len(), 2);
    // The conversation counts once.
    assert_eq!(answer["usage"]["prompt_tokens"], PROMPT_TOKENS);
    assert_eq!(answer["usage"]["completion_tokens"], 2 * ANSWER_TOKENS);

    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let text = server.post_sse("/v1/chat/completions", &streamed).await;
    let (mut roles, mut contents, mut ends) = ([0, 0], [String::new(), String::new()], [0, 0]);
    let mut usage = Value::Null;
    for line in data_lines(&text).into_iter().filter(|l| *l != "[DONE]") {
        let chunk: Value = serde_json::from_str(line).unwrap();
        if !chunk["usage"].is_null() {
            usage = chunk["usage"].clone();
        }
        for choice in chunk["choices"].as_array().unwrap() {
            let index = choice["index"].as_u64().unwrap() as usize;
            roles[index] += usize::from(choice["delta"]["role"] == "assistant");
            contents[index] += choice["delta"]["content"].as_str().unwrap_or_default();
            ends[index] += usize::from(choice["finish_reason"] == "stop");
        }
    }
    assert_eq!(roles, [1, 1], "one opening chunk an answer");
    assert_eq!(contents, [ANSWER, ANSWER]);
    assert_eq!(ends, [1, 1], "one finish chunk an answer");
    assert_eq!(usage["completion_tokens"], 2 * ANSWER_TOKENS);
}

#[actix_web::test]
async fn a_developer_message_is_rendered_as_the_system_message_it_replaces() {
    let server = TestServer::start(&[real_smollm2()], "");
    let ask = |role: &str| {
        json!({"model": "smollm2", "temperature": 0, "max_tokens": 12, "messages": [
            {"role": role, "content": "You are a pirate."},
            {"role": "user", "content": "Say hello."},
        ]})
    };
    let (status, system) = server
        .post_json("/v1/chat/completions", &ask("system"))
        .await;
    assert_eq!(status, 200, "{system}");
    let (status, developer) = server
        .post_json("/v1/chat/completions", &ask("developer"))
        .await;
    assert_eq!(status, 200, "{developer}");
    assert_eq!(developer["choices"], system["choices"]);
    assert_eq!(developer["usage"], system["usage"]);
    // Without its system turn the template adds SmolLM2's default one: another prompt.
    let (_, default) = server
        .post_json(
            "/v1/chat/completions",
            &json!({"model": "smollm2", "temperature": 0, "max_tokens": 12,
                "messages": [{"role": "user", "content": "Say hello."}]}),
        )
        .await;
    assert_ne!(default["usage"], system["usage"]);
}

#[actix_web::test]
async fn per_model_chat_answers_as_generate_does_with_the_answer_alone_and_streams_its_tokens() {
    let server = TestServer::start(&[real_smollm2()], "");
    let body = json!({"messages": question(), "max_new_tokens": 32});
    let (status, answer) = server.post_json("/v1/models/smollm2/chat", &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["model"], "smollm2");
    assert_eq!(answer["generated"], ANSWER, "no prompt echo for a chat");
    assert_eq!(answer["continuation"], ANSWER);
    assert_eq!(answer["finish_reason"], "eos");
    assert_eq!(answer["prompt_tokens"], PROMPT_TOKENS);
    assert_eq!(answer["generated_tokens"], ANSWER_TOKENS);
    assert_eq!(
        answer["token_ids"].as_array().unwrap().last(),
        Some(&json!(2))
    );

    let text = server
        .post_sse("/v1/models/smollm2/chat/stream", &body)
        .await;
    let events: Vec<Value> = data_lines(&text)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let (done, tokens) = events.split_last().unwrap();
    assert_eq!(done["type"], "done", "{done}");
    assert_eq!(done["generated"], ANSWER);
    assert_eq!(done["token_ids"], answer["token_ids"]);
    let streamed: String = tokens
        .iter()
        .map(|t| {
            assert_eq!(t["type"], "token");
            t["text"].as_str().unwrap()
        })
        .collect();
    assert_eq!(streamed, ANSWER);
    assert_eq!(tokens.len() as u64, ANSWER_TOKENS);

    // The model list says it can chat, and where its template came from.
    let mut response = awc::Client::default()
        .get(server.url("/v1/models"))
        .send()
        .await
        .unwrap();
    let models: Value = response.json().await.unwrap();
    assert_eq!(models["models"][0]["chat_template"], "gguf");
}

#[actix_web::test]
async fn a_chat_through_a_graph_node_is_rendered_on_the_model_node_and_answers_the_same() {
    let node = TestServer::start(&[real_smollm2()], "");
    let graph = common::graph_with_generator_on(&node, "smollm2");
    let body = json!({"model": "smollm2", "messages": question(), "temperature": 0});
    let (status, answer) = graph.post_json("/v1/chat/completions", &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["choices"][0]["message"]["content"], ANSWER);
    assert_eq!(answer["usage"]["prompt_tokens"], PROMPT_TOKENS);
    assert_eq!(answer["usage"]["completion_tokens"], ANSWER_TOKENS);
    let per_model = json!({"messages": question()});
    let (status, answer) = graph.post_json("/v1/models/smollm2/chat", &per_model).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["generated"], ANSWER);
}

/// llama-tiny (Llama 3's template) can chat; the GPT-2 fixture has no template.
fn chat_and_plain_models() -> Vec<ModelEntry> {
    vec![
        ("llama", common::fixture("llama-tiny"), "generator"),
        ("gpt2", common::fixture("gpt2-tiny-a"), "generator"),
    ]
}

#[actix_web::test]
async fn what_chat_does_not_implement_or_know_gets_a_422_naming_it() {
    let server = TestServer::start(&chat_and_plain_models(), "[limits]\nmax_new_tokens = 16\n");
    let base = json!({"model": "llama", "messages": [{"role": "user", "content": "Hi"}]});
    let with = |extra: Value| {
        let mut body = base.clone();
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    for (body, named) in [
        (with(json!({"n": 5})), "n: 5 choices; give 1 to 4"),
        (
            with(json!({"top_logprobs": 2})),
            "top_logprobs: only with logprobs: true",
        ),
        (
            with(json!({"logprobs": true, "top_logprobs": 21})),
            "top_logprobs: 21 is out of range 0..=20",
        ),
        (with(json!({"store": true})), "store (only false"),
        (with(json!({"service_tier": "flex"})), "service_tier"),
        (
            with(json!({"metadata": {"k": "v".repeat(513)}})),
            "metadata: \"k\" is over",
        ),
        (
            with(json!({"metadata": {"k": 1}})),
            "metadata: \"k\" must have a string value",
        ),
        (
            with(json!({"response_format": {"type": "json_schema", "json_schema": {}}})),
            "response_format.json_schema: name: must be",
        ),
        (
            with(json!({"chat_template": "{{ messages }}"})),
            "chat_template: a request cannot carry a chat template",
        ),
        (with(json!({"beam": 2})), "unknown fields: beam"),
        (with(json!({"messages": []})), "messages: must not be empty"),
        (
            with(json!({"messages": [{"role": "function", "content": "42"}]})),
            "messages[0].role: \"function\" is not supported",
        ),
        (
            with(json!({"messages": [{"role": "user", "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "http://x/y.png"}},
            ]}]})),
            "messages[0].content[1]: \"image_url\" parts are not supported",
        ),
        (
            with(json!({"messages": [{"role": "user", "content": "Hi", "id": "m1"}]})),
            "messages[0]: unknown fields: id",
        ),
        (
            with(json!({"messages": [{"role": "user", "content": "Hi", "name": "Ada L."}]})),
            "messages[0].name: \"Ada L.\" is not 1 to 64 letters, digits, _ or -",
        ),
        (
            with(json!({"messages": [{"role": "user", "content": "Hi", "name": "x".repeat(65)}]})),
            "messages[0].name",
        ),
        (
            with(json!({"max_tokens": 17})),
            "max_tokens: 17 is out of range",
        ),
        (
            with(json!({"max_completion_tokens": 17})),
            "max_completion_tokens: 17 is out of range",
        ),
    ] {
        let (status, answer) = server.post_json("/v1/chat/completions", &body).await;
        assert_eq!(status, 422, "{body}: {answer}");
        assert_eq!(answer["error_type"], "validation", "{body}");
        let error = answer["error"].as_str().unwrap();
        assert!(error.contains(named), "{body}: {error}");
    }
    // Neutral values of those fields change nothing, so they are taken; text parts are
    // joined.
    let neutral = with(
        json!({"n": 1, "logprobs": false, "tools": [], "tool_choice": "none",
        "response_format": {"type": "text"}, "frequency_penalty": 0, "presence_penalty": 0,
        "logit_bias": {}, "user": "me", "temperature": 0, "max_completion_tokens": 3,
        "store": false, "service_tier": "auto", "metadata": {"run": "nightly"},
        "messages": [{"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
                     {"role": "user", "content": "Hi", "name": "ada_L-1"}]}),
    );
    let (status, answer) = server.post_json("/v1/chat/completions", &neutral).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["usage"]["completion_tokens"], 3);

    // A model without a template cannot chat, on either route, and says which model.
    for (path, body) in [
        (
            "/v1/chat/completions",
            json!({"model": "gpt2", "messages": question()}),
        ),
        ("/v1/models/gpt2/chat", json!({"messages": question()})),
        (
            "/v1/models/gpt2/chat/stream",
            json!({"messages": question()}),
        ),
    ] {
        let (status, answer) = server.post_json(path, &body).await;
        assert_eq!(status, 422, "{path}: {answer}");
        assert_eq!(answer["error_type"], "no_chat_template", "{path}");
        let error = answer["error"].as_str().unwrap();
        assert!(
            error.contains("\"gpt2\" cannot chat: no chat template"),
            "{path}: {error}"
        );
    }
    let (status, answer) = server
        .post_json(
            "/v1/models/llama/chat",
            &json!({"messages": [{"role": "robot", "content": "beep"}]}),
        )
        .await;
    assert_eq!(status, 422, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("\"robot\""));
}

/// A copy of llama-tiny whose template raises for a message that says "boom".
fn raising_copy(dir: &Path) -> PathBuf {
    let source = common::fixture("llama-tiny");
    let copy = dir.join("llama-raising");
    std::fs::create_dir(&copy).unwrap();
    for file in [
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
    ] {
        std::os::unix::fs::symlink(source.join(file), copy.join(file)).unwrap();
    }
    let mut config: Value = serde_json::from_str(
        &std::fs::read_to_string(source.join("tokenizer_config.json")).unwrap(),
    )
    .unwrap();
    config["chat_template"] = json!(concat!(
        "{{ bos_token }}{% for m in messages %}",
        "{% if m.content == 'boom' %}{{ raise_exception('no booms in this chat') }}{% endif %}",
        "<|start_header_id|>{{ m.role }}<|end_header_id|>\n\n{{ m.content }}<|eot_id|>",
        "{% endfor %}",
        "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}",
    ));
    std::fs::write(
        copy.join("tokenizer_config.json"),
        serde_json::to_string(&config).unwrap(),
    )
    .unwrap();
    copy
}

#[actix_web::test]
async fn a_template_that_raises_answers_422_with_its_message_and_the_server_carries_on() {
    let dir = tempfile::tempdir().unwrap();
    let models: Vec<ModelEntry> = vec![("raising", raising_copy(dir.path()), "generator")];
    let server = TestServer::start(&models, "");
    let boom = json!([{"role": "user", "content": "boom"}]);
    for (path, body) in [
        (
            "/v1/chat/completions",
            json!({"model": "raising", "messages": boom, "max_tokens": 2}),
        ),
        (
            "/v1/models/raising/chat",
            json!({"messages": boom, "max_new_tokens": 2}),
        ),
    ] {
        let (status, answer) = server.post_json(path, &body).await;
        assert_eq!(status, 422, "{path}: {answer}");
        let error = answer["error"].as_str().unwrap();
        assert!(error.contains("no booms in this chat"), "{path}: {error}");
    }
    // Streamed, the same message is the stream's error chunk.
    let streamed = json!({"model": "raising", "messages": boom, "stream": true});
    let text = server.post_sse("/v1/chat/completions", &streamed).await;
    let last: Value = serde_json::from_str(data_lines(&text).last().unwrap()).unwrap();
    assert!(
        last["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no booms in this chat"),
        "{text}"
    );
    // The model serves the next conversation as before.
    let fine = json!({"model": "raising", "messages": question(), "max_tokens": 2});
    let (status, answer) = server.post_json("/v1/chat/completions", &fine).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["usage"]["completion_tokens"], 2);
}

/// A graph that scores the request, then has a chat step answer it (with a system prompt),
/// and scores the answer (the default graph gives scores); and one whose step writes a
/// prompt of its own.
const CHAT_GRAPHS: &str = r#"
[[graphs]]
name = "answer"
  [[graphs.steps]]
  name = "mood"
  each = { classify = "bert" }
  [[graphs.steps]]
  name = "reply"
  each = { generate = "llama", chat = { system = "Answer in one short sentence.", user = "Answer this: {text}" } }
  [[graphs.steps]]
  name = "score"
  each = { classify = "bert" }

[[graphs]]
name = "rewrite"
  [[graphs.steps]]
  each = { generate = "llama", prompt = "Rewrite politely: {text}\n" }
"#;

fn chat_graph_models() -> Vec<ModelEntry> {
    vec![
        ("llama", common::fixture("llama-tiny"), "generator"),
        ("bert", common::fixture("bert-tiny"), "classifier"),
    ]
}

#[actix_web::test]
async fn a_graph_step_that_chats_or_prompts_answers_as_the_model_route_does_and_streams_and_traces()
{
    let server = TestServer::start(&chat_graph_models(), CHAT_GRAPHS);
    let text = "I have an idea!";
    let (status, answer) = server
        .post_json(
            "/v1/graphs/answer",
            &json!({"text": text, "max_new_tokens": 6}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let messages = json!([
        {"role": "system", "content": "Answer in one short sentence."},
        {"role": "user", "content": format!("Answer this: {text}")},
    ]);
    let (status, alone) = server
        .post_json(
            "/v1/models/llama/chat",
            &json!({"messages": messages, "max_new_tokens": 6}),
        )
        .await;
    assert_eq!(status, 200, "{alone}");
    let result = &answer["results"][0];
    assert_eq!(result["model"], "llama");
    assert_eq!(result["generated"], alone["generated"], "the answer alone");
    assert_eq!(result["prompt_tokens"], alone["prompt_tokens"]);
    assert_eq!(answer["steps"][0]["results"][0]["generated"], text);

    // Streamed, the tokens add up to that answer; the trace has both steps.
    let events: Vec<Value> = data_lines(
        &server
            .post_sse(
                "/v1/graphs/answer/stream",
                &json!({"text": text, "max_new_tokens": 6}),
            )
            .await,
    )
    .iter()
    .map(|l| serde_json::from_str(l).unwrap())
    .collect();
    let generated = events.iter().find(|e| e["type"] == "generated").unwrap();
    assert_eq!(generated["text"], alone["generated"]);
    let streamed: String = events
        .iter()
        .filter(|e| e["type"] == "token")
        .map(|e| e["text"].as_str().unwrap())
        .collect();
    assert_eq!(streamed, alone["generated"].as_str().unwrap());
    let trace_id = answer["trace_id"].as_str().unwrap();
    let mut response = awc::Client::default()
        .get(server.url(&format!("/v1/traces/{trace_id}")))
        .send()
        .await
        .unwrap();
    let trace: Value = response.json().limit(1 << 22).await.unwrap();
    let trace = trace.to_string();
    assert!(
        trace.contains("\"reply\"") && trace.contains("\"mood\""),
        "{trace}"
    );

    // A prompt of the step's own: the result is the continuation alone.
    let (status, rewritten) = server
        .post_json(
            "/v1/graphs/rewrite",
            &json!({"text": text, "max_new_tokens": 6}),
        )
        .await;
    assert_eq!(status, 200, "{rewritten}");
    let (_, plain) = server
        .post_json(
            "/v1/models/llama/generate",
            &json!({"text": format!("Rewrite politely: {text}\n"), "max_new_tokens": 6}),
        )
        .await;
    assert_eq!(rewritten["results"][0]["generated"], plain["continuation"]);

    // /v1/graphs shows the steps' prompts.
    let mut response = awc::Client::default()
        .get(server.url("/v1/graphs"))
        .send()
        .await
        .unwrap();
    let graphs: Value = response.json().await.unwrap();
    let reply = &graphs["graphs"][0]["steps"][1]["calls"][0];
    assert_eq!(
        reply["chat"],
        json!({"system": "Answer in one short sentence.", "user": "Answer this: {text}"})
    );
    assert_eq!(
        graphs["graphs"][1]["steps"][0]["calls"][0]["prompt"],
        "Rewrite politely: {text}\n"
    );
}

#[test]
fn a_chat_step_for_a_model_without_a_template_fails_at_start_naming_graph_step_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    let models = [
        ("gpt2", common::fixture("gpt2-tiny-a"), "generator"),
        ("bert", common::fixture("bert-tiny"), "classifier"),
    ];
    let graphs = "[[graphs]]\nname = \"ask\"\n[[graphs.steps]]\nname = \"reply\"\n\
                  each = { generate = \"gpt2\", chat = { user = \"{text}\" } }\n\
                  [[graphs.steps]]\neach = { classify = \"bert\" }\n";
    std::fs::write(
        &path,
        format!(
            "backend = \"cpu\"\n[server]\nport = 0\n{graphs}{}",
            models_toml(&models)
        ),
    )
    .unwrap();
    let stderr = serve_refuses(&path, &[]);
    for part in [
        "graphs \"ask\" step 1 (\"reply\")",
        "each.chat",
        "\"gpt2\" has no chat template",
    ] {
        assert!(stderr.contains(part), "{part:?} is not in: {stderr}");
    }
}

#[actix_web::test]
async fn a_template_from_config_toml_lets_a_plain_model_chat_and_wins_over_a_models_own() {
    let dir = tempfile::tempdir().unwrap();
    let template = "{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}\
                    {% if add_generation_prompt %}[assistant] {% endif %}";
    let file = dir.path().join("plain.jinja");
    std::fs::write(&file, template).unwrap();
    let models = format!(
        "[[models]]\nname = \"gpt2\"\npath = {:?}\nrole = \"generator\"\nchat_template = {:?}\n\n\
         [[models]]\nname = \"llama\"\npath = {:?}\nrole = \"generator\"\nchat_template_file = {:?}\n",
        common::fixture("gpt2-tiny-a"),
        template,
        common::fixture("llama-tiny"),
        file
    );
    let server = TestServer::start_toml(0, &models, "");
    let mut response = awc::Client::default()
        .get(server.url("/v1/models"))
        .send()
        .await
        .unwrap();
    let listed: Value = response.json().await.unwrap();
    for info in listed["models"].as_array().unwrap() {
        assert_eq!(info["chat_template"], "config", "{info}");
    }
    // The rendered prompt is the configured template's, for the plain model and for the one
    // that ships its own.
    for (name, fixture) in [("gpt2", "gpt2-tiny-a"), ("llama", "llama-tiny")] {
        let tokenizer =
            infergraph::models::load_generator(&common::fixture(fixture), &common::cpu())
                .unwrap()
                .tokenizer()
                .encode_rendered("[user] Hi\n[assistant] ")
                .unwrap();
        let body = json!({"messages": [{"role": "user", "content": "Hi"}], "max_new_tokens": 3});
        let (status, answer) = server
            .post_json(&format!("/v1/models/{name}/chat"), &body)
            .await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["prompt_tokens"], tokenizer.len(), "{name}: {answer}");
    }
}

#[actix_web::test]
async fn vllms_min_tokens_and_ignore_eos_hold_the_answer_past_its_end_of_turn() {
    let server = TestServer::start(&[real_smollm2()], "[limits]\nmax_new_tokens = 16\n");
    let ask = |extra: Value| {
        let server = &server;
        async move {
            let mut body = json!({"model": "smollm2", "messages": question(), "temperature": 0,
                "max_tokens": 12});
            body.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            server.post_json("/v1/chat/completions", &body).await
        }
    };
    let (status, plain) = ask(json!({})).await;
    assert_eq!(status, 200, "{plain}");
    assert_eq!(plain["choices"][0]["finish_reason"], "stop");
    assert_eq!(plain["usage"]["completion_tokens"], ANSWER_TOKENS);
    // The answer's end of turn is its 8th token: held back until the 10th, or for the whole
    // budget.
    for (extra, tokens, reason) in [
        (json!({"min_tokens": 10}), None, None),
        (json!({"ignore_eos": true}), Some(12), Some("length")),
        (
            json!({"ignore_eos": true, "min_tokens": 3}),
            Some(12),
            Some("length"),
        ),
    ] {
        let (status, answer) = ask(extra.clone()).await;
        assert_eq!(status, 200, "{extra}: {answer}");
        let generated = answer["usage"]["completion_tokens"].as_u64().unwrap();
        assert!(generated >= 10, "{extra}: {answer}");
        if let Some(tokens) = tokens {
            assert_eq!(generated, tokens, "{extra}");
        }
        if let Some(reason) = reason {
            assert_eq!(answer["choices"][0]["finish_reason"], reason, "{extra}");
        }
        let content = answer["choices"][0]["message"]["content"].as_str().unwrap();
        assert!(content.starts_with(ANSWER), "{extra}: {content:?}");
    }
    for route in ["/v1/chat/completions", "/v1/completions"] {
        let body = json!({"model": "smollm2", "messages": question(), "prompt": "Hi",
            "min_tokens": 17});
        let mut body = body.as_object().unwrap().clone();
        body.remove(if route == "/v1/completions" {
            "messages"
        } else {
            "prompt"
        });
        let (status, answer) = server.post_json(route, &Value::Object(body)).await;
        assert_eq!(status, 422, "{route}: {answer}");
        let error = answer["error"].as_str().unwrap();
        assert!(
            error.contains("min_tokens: 17 is out of range 0..=16"),
            "{route}: {error}"
        );
    }
}
