//! JSON MODE: `response_format: {"type": "json_object"}` keeps a generation's text a JSON
//! object, and `{"type": "json_schema"}` a value of the schema: every prefix of it one such a
//! value can start with, ended by the model only once whole. On the OpenAI routes and the
//! per-model routes; a graph refuses it.

use crate::common;

use common::server::{demo_models, ModelEntry, TestServer};
use serde_json::{json, Value};

/// Whether `text` is a JSON object so far: whole, or cut short. serde_json's verdict, not
/// the server's grammar: a text cut short fails to parse at its end (an EOF error).
fn json_object_so_far(text: &str) -> bool {
    let start = text.trim_start();
    if start.is_empty() {
        return true;
    }
    start.starts_with('{')
        && match serde_json::from_str::<Value>(text) {
            Ok(value) => value.is_object(),
            Err(error) => error.is_eof(),
        }
}

fn random_generators() -> Vec<ModelEntry> {
    vec![
        ("gpt2", common::fixture("gpt2-tiny-a"), "generator"),
        ("llama", common::fixture("llama-tiny"), "generator"),
        ("mistral", common::fixture("mistral-tiny"), "generator"),
        ("qwen2", common::fixture("qwen2-tiny"), "generator"),
    ]
}

#[test]
fn the_oracle_tells_a_json_object_cut_short_from_text_that_is_none() {
    for cut in [
        "",
        " {",
        "{\"a\": tr",
        "{\"a\": -",
        "{\"a\": \"\\u00",
        "{\"a\": [1.5e",
        "{}\n",
    ] {
        assert!(json_object_so_far(cut), "{cut:?}");
    }
    for not in ["[1", "{\"a\" 1", "{\"a\": 01", "{} x", "```json\n{"] {
        assert!(!json_object_so_far(not), "{not:?}");
    }
}

#[actix_web::test]
async fn a_random_models_sampled_text_in_json_mode_is_a_json_object_so_far_on_every_tokenizer() {
    let server = TestServer::start(&random_generators(), "");
    let mut plain_texts_outside_json = 0;
    for (model, _, _) in random_generators() {
        for seed in 1..=3 {
            let body = |json_mode: bool| {
                let mut body = json!({"text": "Reply in JSON:", "max_new_tokens": 40,
                    "temperature": 1.0, "seed": seed});
                if json_mode {
                    body["response_format"] = json!({"type": "json_object"});
                }
                body
            };
            let path = format!("/v1/models/{model}/generate");
            let (status, answer) = server.post_json(&path, &body(true)).await;
            assert_eq!(status, 200, "{answer}");
            let text = answer["continuation"].as_str().unwrap();
            assert!(json_object_so_far(text), "{model} seed {seed}: {text:?}");
            if answer["finish_reason"] == "eos" {
                let whole: Value = serde_json::from_str(text).unwrap();
                assert!(whole.is_object(), "{model}: {text:?}");
            }
            let (_, plain) = server.post_json(&path, &body(false)).await;
            if !json_object_so_far(plain["continuation"].as_str().unwrap()) {
                plain_texts_outside_json += 1;
            }
        }
        // The OpenAI completions route takes it too (as vLLM's does).
        let (status, answer) = server
            .post_json(
                "/v1/completions",
                &json!({"model": model, "prompt": "JSON:", "max_tokens": 30, "seed": 9,
                    "response_format": {"type": "json_object"}}),
            )
            .await;
        assert_eq!(status, 200, "{answer}");
        let text = answer["choices"][0]["text"].as_str().unwrap();
        assert!(json_object_so_far(text), "{model}: {text:?}");
    }
    // The per-model chat route: the answer alone is the JSON object.
    let (status, answer) = server
        .post_json(
            "/v1/models/llama/chat",
            &json!({"messages": [{"role": "user", "content": "JSON please"}],
                "max_new_tokens": 30, "temperature": 1.0, "seed": 4,
                "response_format": {"type": "json_object"}}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let text = answer["continuation"].as_str().unwrap();
    assert!(
        json_object_so_far(text) && !text.trim().is_empty(),
        "{text:?}"
    );
    // Without JSON mode the same draws leave JSON: the constraint is what kept them in it.
    assert!(plain_texts_outside_json >= 10, "{plain_texts_outside_json}");
}

#[actix_web::test]
async fn the_real_smollm2_answers_bare_json_in_json_mode_and_a_pydantic_model_through_the_client() {
    let server = TestServer::start(&[common::real_smollm2()], "");
    let question = "Give me a JSON object describing a cat with name and age.";
    let stdout = common::openai_check("json_check.py", &[&server.base, "smollm2", question]);
    let read: Value = serde_json::from_slice(&stdout).unwrap();

    let answer = read["json_mode"]["text"].as_str().unwrap();
    assert_eq!(read["json_mode"]["finish_reason"], "stop", "{read}");
    let cat: Value = serde_json::from_str(answer).unwrap();
    assert!(cat["name"].is_string() && cat["age"].is_number(), "{cat}");
    assert_eq!(read["streamed"]["text"], read["json_mode"]["text"]);
    assert_eq!(read["streamed"]["finish_reasons"], json!(["stop"]));
    // Asked the same without JSON mode, the model fences its JSON in Markdown and talks on.
    let plain = read["plain"]["text"].as_str().unwrap();
    assert!(plain.starts_with("```json"), "{plain:?}");
    assert!(serde_json::from_str::<Value>(plain).is_err());

    // Structured outputs: the client's own parsing into its pydantic model succeeded (it
    // raises otherwise); the keys come in the model's order.
    let structured = &read["structured"];
    assert_eq!(structured["finish_reason"], "stop", "{structured}");
    let cat = &structured["cat"];
    assert!(cat["name"].is_string() && cat["age"].is_i64() && cat["likes"].is_array());
    let written: serde_json::Map<String, Value> =
        serde_json::from_str(structured["text"].as_str().unwrap()).unwrap();
    let keys: Vec<&String> = written.keys().collect();
    assert_eq!(keys, ["name", "age", "color", "likes", "owner"]);
}

#[actix_web::test]
async fn unsupported_schemas_other_formats_and_graphs_are_refused_by_name() {
    let server = TestServer::start(&random_generators()[..1], "");
    for (path, body, says) in [
        (
            "/v1/chat/completions",
            json!({"model": "gpt2", "messages": [{"role": "user", "content": "Hi"}],
                "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema":
                    {"type": "object", "properties": {"e": {"type": "string", "format": "email"}}}}}}),
            "response_format.json_schema: #/properties/e: \"format\" is not supported",
        ),
        (
            "/v1/models/gpt2/generate",
            json!({"text": "Hi", "response_format": {"type": "json_schema", "json_schema": {"schema": {}}}}),
            "name: must be 1 to 64 letters",
        ),
        (
            "/v1/completions",
            json!({"model": "gpt2", "prompt": "Hi", "response_format": {"type": "xml"}}),
            "type \"xml\" is not supported",
        ),
        (
            "/v1/models/gpt2/generate",
            json!({"text": "Hi", "response_format": {"type": "json_object", "strict": true}}),
            "unknown field `strict`",
        ),
    ] {
        let (status, answer) = server.post_json(path, &body).await;
        assert_eq!(status, 422, "{path}: {answer}");
        let error = answer["error"].as_str().unwrap();
        assert!(error.contains(says), "{path}: {error}");
    }
    let graph = TestServer::start(&common::server::fixture_models(), "");
    let (status, answer) = graph
        .post_json(
            "/v1/graph",
            &json!({"text": "Hi", "response_format": {"type": "json_object"}}),
        )
        .await;
    assert_eq!(status, 422, "{answer}");
    assert!(answer["error"]
        .as_str()
        .unwrap()
        .starts_with("response_format"));
}

/// A schema with finitely many values (28), written in at most ~760 bytes with the most white
/// space the grammar allows between parts.
fn finite_schema() -> Value {
    json!({"type": "json_schema", "json_schema": {"name": "finite", "strict": true, "schema": {
    "type": "object", "additionalProperties": false,
    "required": ["ok", "kind", "tags", "none"],
    "properties": {
        "ok": {"type": "boolean"},
        "kind": {"enum": ["cat", "dog"]},
        "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 2},
        "none": {"type": "null"},
    }}}})
}

/// Every value of `finite_schema`, compact.
fn finite_values() -> Vec<String> {
    let tags = [
        "[]",
        "[\"a\"]",
        "[\"b\"]",
        "[\"a\",\"a\"]",
        "[\"a\",\"b\"]",
        "[\"b\",\"a\"]",
        "[\"b\",\"b\"]",
    ];
    let mut values = Vec::new();
    for ok in ["true", "false"] {
        for kind in ["cat", "dog"] {
            for tags in tags {
                values.push(format!(
                    "{{\"ok\":{ok},\"kind\":\"{kind}\",\"tags\":{tags},\"none\":null}}"
                ));
            }
        }
    }
    values
}

/// `text` without white space (none of `finite_schema`'s strings holds any).
fn compact(text: &str) -> String {
    text.chars().filter(|c| !c.is_whitespace()).collect()
}

#[actix_web::test]
async fn a_random_model_under_a_schema_writes_the_start_of_one_of_its_values_on_every_tokenizer() {
    let server = TestServer::start(&random_generators(), "");
    let values = finite_values();
    for (model, _, _) in random_generators() {
        for seed in 1..=3 {
            let body = json!({"text": "Reply in JSON:", "max_new_tokens": 40, "temperature": 1.0,
                "seed": seed, "response_format": finite_schema()});
            let (status, answer) = server
                .post_json(&format!("/v1/models/{model}/generate"), &body)
                .await;
            assert_eq!(status, 200, "{answer}");
            let text = compact(answer["continuation"].as_str().unwrap());
            assert!(
                values.iter().any(|v| v.starts_with(&text)),
                "{model} seed {seed}: {text:?}"
            );
            if answer["finish_reason"] == "eos" {
                assert!(values.contains(&text), "{model}: {text:?}");
            }
        }
    }
}

#[actix_web::test]
async fn a_schema_with_finitely_many_values_ends_every_generation_with_one_of_them() {
    let gpt2 = demo_models().into_iter().next().unwrap();
    let server = TestServer::start(&[gpt2], "[limits]\nmax_new_tokens = 1000\n");
    let values = finite_values();
    for seed in 1..=3 {
        // Each token writes a byte at least, and no value takes more than ~760: the grammar
        // leaves the random model no way to run out of budget.
        let body = json!({"model": "gpt2", "prompt": "JSON:", "max_tokens": 800,
            "temperature": 1.0, "seed": seed, "response_format": finite_schema()});
        let (status, answer) = server.post_json("/v1/completions", &body).await;
        assert_eq!(status, 200, "{answer}");
        let choice = &answer["choices"][0];
        let text = choice["text"].as_str().unwrap();
        assert_eq!(choice["finish_reason"], "stop", "seed {seed}: {text:?}");
        let value: Value = serde_json::from_str(text).unwrap();
        assert!(values.contains(&value.to_string()), "{value}");
    }
}
