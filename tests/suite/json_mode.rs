//! JSON MODE: `response_format: {"type": "json_object"}` keeps a generation's text a JSON
//! object: every prefix of it one a JSON object can start with, ended by the model only once
//! whole. On the OpenAI routes and the per-model routes; a graph refuses it.

use crate::common;

use common::server::{ModelEntry, TestServer};
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
async fn the_real_smollm2_answers_a_bare_json_object_in_json_mode_where_its_plain_answer_is_fenced()
{
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
}

#[actix_web::test]
async fn structured_outputs_other_formats_and_graphs_are_refused_by_name() {
    let server = TestServer::start(&random_generators()[..1], "");
    for (path, body, says) in [
        (
            "/v1/chat/completions",
            json!({"model": "gpt2", "messages": [{"role": "user", "content": "Hi"}],
                "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}}),
            "json_schema is not supported",
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
