//! A real server whose graph has the four Llama-family fixtures (llama, mistral, qwen2,
//! qwen3) beside the BERT classifier: the graph, its streams, the per-model routes and
//! `/v1/completions` work on them as on GPT-2.

use crate::common;

use common::server::{ModelEntry, TestServer};
use common::ws::{connect, events_until_last, send};
use common::*;
use serde_json::{json, Value};

const GENERATORS: [(&str, &str); 4] = [
    ("llama", "llama-tiny"),
    ("mistral", "mistral-tiny"),
    ("qwen2", "qwen2-tiny"),
    ("qwen3", "qwen3-tiny"),
];

pub fn llama_family_models() -> Vec<ModelEntry> {
    GENERATORS
        .iter()
        .map(|&(name, folder)| (name, fixture(folder), "generator"))
        .chain([("bert", fixture("bert-tiny"), "classifier")])
        .collect()
}

/// Each generator's token events add up to its continuation, in order, before its
/// `generated` event.
fn check_tokens(events: &[Value], prompt: &str) {
    for (model, _) in GENERATORS {
        let generated = events
            .iter()
            .find(|e| e["type"] == "generated" && e["model"] == model)
            .unwrap_or_else(|| panic!("{model}: no generated event"));
        let streamed: String = events
            .iter()
            .filter(|e| e["type"] == "token" && e["model"] == model)
            .map(|e| e["text"].as_str().unwrap())
            .collect();
        assert_eq!(
            format!("{prompt}{streamed}"),
            generated["text"].as_str().unwrap(),
            "{model}"
        );
    }
}

#[actix_web::test]
async fn the_graph_streams_and_per_model_routes_serve_llama_family_generators() {
    let server = TestServer::start(&llama_family_models(), "");
    // "Café 😀": multi-byte characters, byte-fallback tokens for Llama 2's SentencePiece.
    let prompt = "Café 😀 naïve";
    let body = json!({"text": prompt, "max_new_tokens": 8});

    let (status, answer) = server.post_json("/v1/graph", &body).await;
    assert_eq!(status, 200, "{answer}");
    let results = answer["results"].as_array().unwrap();
    let models: Vec<&str> = results
        .iter()
        .map(|r| r["model"].as_str().unwrap())
        .collect();
    assert_eq!(models, ["llama", "mistral", "qwen2", "qwen3"]);
    for result in results {
        assert!(
            result["generated"].as_str().unwrap().starts_with(prompt),
            "{result}"
        );
        assert_eq!(result["generated_tokens"], 8, "{result}");
        assert!((0.0..=1.0).contains(&result["score"].as_f64().unwrap()));
    }

    let events = sse_data(&server.post_sse("/v1/graph/stream", &body).await);
    check_tokens(&events, prompt);
    assert_eq!(events.last().unwrap()["results"], answer["results"]);

    let mut socket = connect(&server).await;
    let mut frame = body.clone();
    frame["id"] = json!("w1");
    send(&mut socket, frame).await;
    let events = events_until_last(&mut socket, "w1").await;
    check_tokens(&events, prompt);
    assert_eq!(events.last().unwrap()["results"], answer["results"]);

    // Each model alone gives its transformers golden, token for token.
    for (model, folder) in GENERATORS {
        let input = &golden_inputs(folder)[1];
        let expected = u32s(&input["generate"]["new_token_ids"]);
        let request = json!({"text": input["text"], "max_new_tokens": expected.len()});
        let path = format!("/v1/models/{model}/generate");
        let (status, answer) = server.post_json(&path, &request).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(u32s(&answer["token_ids"]), expected, "{model}");
        let events = sse_data(&server.post_sse(&format!("{path}/stream"), &request).await);
        let done = events.last().unwrap();
        assert_eq!(u32s(&done["token_ids"]), expected, "{model} streamed");
        let tokens: Vec<u32> = events
            .iter()
            .filter(|e| e.get("token_id").is_some())
            .map(|e| e["token_id"].as_u64().unwrap() as u32)
            .collect();
        assert_eq!(tokens, expected, "{model}: one token event per token");
    }

    let (status, completion) = server
        .post_json(
            "/v1/completions",
            &json!({"model": "qwen3", "prompt": "Hello", "max_tokens": 5}),
        )
        .await;
    assert_eq!(status, 200, "{completion}");
    assert_eq!(completion["usage"]["completion_tokens"], 5);
    assert_eq!(completion["choices"][0]["finish_reason"], "length");

    let mut response = awc::Client::default()
        .get(server.url("/v1/models"))
        .send()
        .await
        .unwrap();
    let listed: Value = response.json().await.unwrap();
    for (model, _) in GENERATORS {
        let info = listed["models"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == model)
            .unwrap();
        assert_eq!(info["architecture"], model, "{info}");
        assert_eq!(info["role"], "generator");
        assert_eq!(info["context_length"], 128);
        // Mistral's tokenizer (Llama 2's) has no chat template; the others carry theirs.
        let expected = (model != "mistral").then_some("tokenizer_config.json");
        assert_eq!(info["chat_template"].as_str(), expected, "{info}");
    }
}
