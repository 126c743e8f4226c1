//! The per-model API on a real server: each model on its own answers exactly what it
//! answers inside the graph, streams, and is traced and counted like the graph routes.

use crate::common;

use common::server::{
    counter, demo_models, fixture_models, header, total, TestServer, JSON_HEADER,
};
use common::*;
use serde_json::{json, Value};

/// The `(event, data)` pairs of a Server-Sent Events body.
fn sse_events(body: &str) -> Vec<(String, Value)> {
    body.split("\n\n")
        .filter(|frame| !frame.trim().is_empty())
        .map(|frame| {
            let field = |name: &str| {
                frame
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .unwrap_or_else(|| panic!("no {name} in {frame:?}"))
                    .to_string()
            };
            (
                field("event: "),
                serde_json::from_str(&field("data: ")).unwrap(),
            )
        })
        .collect()
}

async fn stream(server: &TestServer, path: &str, body: &Value) -> Vec<(String, Value)> {
    sse_events(&server.post_sse(path, body).await)
}

/// The graph's result for `model` on `body`.
async fn graph_result(server: &TestServer, body: &Value, model: &str) -> Value {
    let (status, graph) = server.post_json("/v1/graph", body).await;
    assert_eq!(status, 200, "{graph}");
    graph["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["model"] == model)
        .unwrap()
        .clone()
}

#[actix_web::test]
async fn generate_equals_the_graphs_generation_greedy_and_seeded() {
    let server = TestServer::start(&fixture_models(), "");
    let greedy = json!({"text": "Hello, my name is", "max_new_tokens": 6});
    let seeded = json!({"text": "Hello, my name is", "max_new_tokens": 6,
        "temperature": 0.9, "top_k": 20, "top_p": 0.95, "seed": 42});
    for body in [greedy, seeded] {
        for model in ["gpt2", "distilgpt2", "gpt2-medium"] {
            let (status, answer) = server
                .post_json(&format!("/v1/models/{model}/generate"), &body)
                .await;
            assert_eq!(status, 200, "{answer}");
            let expected = graph_result(&server, &body, model).await;
            assert_eq!(answer["model"], model);
            assert_eq!(answer["generated"], expected["generated"], "{model} {body}");
            assert_eq!(answer["finish_reason"], expected["finish_reason"]);
            assert_eq!(answer["prompt_tokens"], expected["prompt_tokens"]);
            assert_eq!(answer["generated_tokens"], expected["generated_tokens"]);
            assert_eq!(answer["token_ids"].as_array().unwrap().len(), 6);
            let generated = answer["generated"].as_str().unwrap();
            assert_eq!(
                generated,
                format!(
                    "Hello, my name is{}",
                    answer["continuation"].as_str().unwrap()
                )
            );
            let timings = &answer["timings"];
            for key in ["queue_ms", "compute_ms", "total_ms"] {
                assert!(timings[key].as_f64().unwrap() >= 0.0, "{timings}");
            }
            assert!(
                timings["total_ms"].as_f64().unwrap() >= timings["compute_ms"].as_f64().unwrap()
            );
        }
    }
}

#[actix_web::test]
async fn with_both_budgets_whichever_ends_the_generation_first_applies() {
    let server = TestServer::start(&fixture_models(), "");
    for (max_new_tokens, max_length) in [(3, 20), (12, 8)] {
        // EOS suppressed, so only the budgets end it.
        let body = json!({"text": "Hello, my name is", "max_new_tokens": max_new_tokens,
            "max_length": max_length, "min_new_tokens": max_new_tokens});
        let (status, answer) = server.post_json("/v1/models/gpt2/generate", &body).await;
        assert_eq!(status, 200, "{answer}");
        let prompt = answer["prompt_tokens"].as_u64().unwrap();
        assert_eq!(
            answer["generated_tokens"].as_u64().unwrap(),
            max_new_tokens.min(max_length - prompt),
            "{answer}"
        );
        assert_eq!(
            answer["prompt_token_ids"].as_array().unwrap().len() as u64,
            prompt
        );
    }
}

#[actix_web::test]
async fn the_streamed_tokens_concatenate_to_the_continuation_and_done_is_the_answer() {
    let server = TestServer::start(&demo_models(), "");
    // Byte-level tokens: characters split over several tokens must not split in the text.
    let body =
        json!({"text": "Café ☕ naïve 日本", "max_new_tokens": 12, "seed": 3, "temperature": 1.0});
    let events = stream(&server, "/v1/models/gpt2/generate/stream", &body).await;
    let (last, done) = events.last().unwrap();
    assert_eq!(last, "done", "{events:?}");
    assert_eq!(done["type"], "done");
    let tokens: Vec<&Value> = events
        .iter()
        .filter(|(kind, _)| kind == "token")
        .map(|(_, e)| e)
        .collect();
    assert_eq!(tokens.len(), 12);
    let mut text = String::new();
    for (i, token) in tokens.iter().enumerate() {
        assert_eq!(token["index"], i);
        assert_eq!(token["token_id"], done["token_ids"][i]);
        text += token["text"].as_str().unwrap();
    }
    assert_eq!(text, done["continuation"].as_str().unwrap());

    let (status, answer) = server.post_json("/v1/models/gpt2/generate", &body).await;
    assert_eq!(status, 200);
    for key in [
        "generated",
        "continuation",
        "token_ids",
        "finish_reason",
        "prompt_tokens",
    ] {
        assert_eq!(answer[key], done[key], "{key}");
    }
}

#[actix_web::test]
async fn classify_equals_the_graphs_score_and_a_list_is_answered_in_order() {
    let server = TestServer::start(&fixture_models(), "");
    let body = json!({"text": "I have an idea!", "max_new_tokens": 4});
    let mut texts = Vec::new();
    for model in ["gpt2", "distilgpt2", "gpt2-medium"] {
        let expected = graph_result(&server, &body, model).await;
        let text = expected["generated"].clone();
        let (status, one) = server
            .post_json(
                "/v1/models/bert-base-uncased/classify",
                &json!({"text": text}),
            )
            .await;
        assert_eq!(status, 200, "{one}");
        let result = &one["results"][0];
        assert_eq!(result["score"], expected["score"], "{model}");
        assert_eq!(result["label"], expected["label"]);
        let scores = result["scores"].as_array().unwrap();
        assert_eq!(scores.len(), 2);
        let sum: f64 = scores.iter().map(|s| s["score"].as_f64().unwrap()).sum();
        assert!((sum - 1.0).abs() < 1e-5, "{scores:?}");
        texts.push((text, one["results"][0].clone()));
    }
    // Reversed, to see that the order is the request's, not the engine's.
    texts.reverse();
    let list: Vec<&Value> = texts.iter().map(|(t, _)| t).collect();
    let (status, many) = server
        .post_json(
            "/v1/models/bert-base-uncased/classify",
            &json!({"texts": list}),
        )
        .await;
    assert_eq!(status, 200, "{many}");
    let results = many["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    for ((_, alone), batched) in texts.iter().zip(results) {
        assert_eq!(alone["label"], batched["label"]);
        let (a, b) = (
            alone["score"].as_f64().unwrap(),
            batched["score"].as_f64().unwrap(),
        );
        assert!((a - b).abs() < 1e-5, "batched {b} vs alone {a}");
    }
}

#[actix_web::test]
async fn a_text_pair_is_scored_as_the_classify_command_scores_it() {
    let server = TestServer::start(&fixture_models(), "");
    let (status, answer) = server
        .post_json(
            "/v1/models/bert-base-uncased/classify",
            &json!({"text": "The cat sat.", "text_pair": "It was tired."}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_infergraph"))
        .args(["classify", "--json", "--backend", "cpu", "--model"])
        .arg(fixture("bert-tiny"))
        .args(["--text", "The cat sat.", "--text-pair", "It was tired."])
        .output()
        .unwrap();
    assert!(output.status.success());
    let expected: Value = serde_json::from_slice(&output.stdout).unwrap();
    let result = &answer["results"][0];
    assert_eq!(result["label"], expected["label"]);
    let (a, b) = (
        result["score"].as_f64().unwrap(),
        expected["score"].as_f64().unwrap(),
    );
    assert!((a - b).abs() < 1e-6, "{a} vs {b}");
}

#[actix_web::test]
async fn model_requests_are_traced_counted_and_carry_the_request_id() {
    let server = TestServer::start(&fixture_models(), "");
    let mut response = awc::Client::default()
        .post(server.url("/v1/models/gpt2/generate"))
        .insert_header(("x-request-id", "model-route-1"))
        .send_json(&json!({"text": "Hello", "max_new_tokens": 3}))
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        header(response.headers(), "x-request-id").as_deref(),
        Some("model-route-1")
    );
    let trace_id = header(response.headers(), "x-trace-id").unwrap();
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["id"], "model-route-1");
    assert_eq!(answer["trace_id"], trace_id.as_str());

    let mut response = awc::Client::default()
        .get(server.url(&format!("/v1/traces/{trace_id}")))
        .send()
        .await
        .unwrap();
    let trace: Value = response.json().await.unwrap();
    let names: Vec<&str> = trace["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["request", "generate", "queue", "compute"]);
    assert_eq!(trace["spans"][1]["attributes"]["model"], "gpt2");
    assert_eq!(trace["request_id"], "model-route-1");

    let mut response = awc::Client::default()
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap();
    let text = String::from_utf8(response.body().await.unwrap().to_vec()).unwrap();
    let lines: Vec<_> = text.lines().map(|l| Ok(l.to_string())).collect();
    let metrics = prometheus_parse::Scrape::parse(lines.into_iter()).unwrap();
    let counted = metrics.samples.iter().any(|s| {
        s.metric == "infergraph_http_requests_total"
            && s.labels.get("route") == Some("/v1/models/:name/generate")
            && s.labels.get("status") == Some("200")
            && matches!(s.value, prometheus_parse::Value::Counter(n) if n == 1.0)
    });
    assert!(counted, "{text}");
    let completed = metrics.samples.iter().any(|s| {
        s.metric == "infergraph_actor_requests_total"
            && s.labels.get("model") == Some("gpt2")
            && s.labels.get("outcome") == Some("completed")
            && matches!(s.value, prometheus_parse::Value::Counter(n) if n >= 1.0)
    });
    assert!(completed, "{text}");
}

#[test]
fn a_disconnected_stream_frees_its_slot() {
    use std::io::Read;
    let server = TestServer::start(&demo_models(), "[limits]\nmax_new_tokens = 1000\n");
    let body = r#"{"text": "I have an idea!", "max_new_tokens": 1000, "min_new_tokens": 1000}"#;
    let mut stream = server.raw_request("POST /v1/models/gpt2/generate/stream", JSON_HEADER, body);
    let mut first = [0u8; 256];
    let n = stream.read(&mut first).unwrap();
    assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"));
    let gpt2 = |engines: &Value, key: &str| counter(engines, "gpt2", key);
    wait_until(
        "the generation runs",
        std::time::Duration::from_secs(30),
        || gpt2(&server.engines(), "active") == 1,
    );
    drop(stream);
    wait_until(
        "the slot is free",
        std::time::Duration::from_secs(30),
        || gpt2(&server.engines(), "active") == 0,
    );
    let after = server.engines();
    assert_eq!(
        (gpt2(&after, "cancelled"), gpt2(&after, "completed")),
        (1, 0),
        "{after}"
    );
}

#[test]
fn a_client_that_leaves_a_generation_frees_its_slot() {
    let server = TestServer::start(&demo_models(), "[limits]\nmax_new_tokens = 1000\n");
    let body = r#"{"text": "I have an idea!", "max_new_tokens": 1000, "min_new_tokens": 1000}"#;
    let stream = server.raw_request("POST /v1/models/distilgpt2/generate", JSON_HEADER, body);
    let active = || total(&server.engines(), "active");
    wait_until(
        "the generation runs",
        std::time::Duration::from_secs(30),
        || active() == 1,
    );
    drop(stream);
    wait_until(
        "the slot is free",
        std::time::Duration::from_secs(30),
        || active() == 0,
    );
    assert_eq!(total(&server.engines(), "cancelled"), 1);
}

/// `logit_bias` on the model routes, as the OpenAI routes take it: −100 on the greedy first
/// token puts another first, +100 on one token makes greedy pick it at every step (generate,
/// its stream and chat); an id outside the vocabulary is a 422 naming it, and a graph, whose
/// generators each have their own vocabulary, refuses the field.
#[actix_web::test]
async fn a_logit_bias_steers_generate_its_stream_and_chat_and_a_graph_refuses_it() {
    let server = TestServer::start(&fixture_models(), "");
    let with = |bias: Value| {
        json!({"text": "Hello, my name is", "max_new_tokens": 4,
        "logit_bias": bias})
    };
    let generate = |body: Value| {
        let server = &server;
        async move {
            let (status, answer) = server.post_json("/v1/models/gpt2/generate", &body).await;
            assert_eq!(status, 200, "{body}: {answer}");
            answer["token_ids"].clone()
        }
    };
    let greedy = generate(with(json!({}))).await;
    let first = greedy[0].as_u64().unwrap();
    let banned = generate(with(json!({first.to_string(): -100}))).await;
    assert_ne!(banned[0], greedy[0], "{banned}");
    let forced = json!([11, 11, 11, 11]);
    assert_eq!(generate(with(json!({"11": 100}))).await, forced);
    let events = stream(
        &server,
        "/v1/models/gpt2/generate/stream",
        &with(json!({"11": 100})),
    )
    .await;
    let (last, done) = events.last().unwrap();
    assert_eq!(last, "done", "{events:?}");
    assert_eq!(done["token_ids"], forced);

    for (path, body, named) in [
        (
            "/v1/models/gpt2/generate",
            with(json!({"50257": -100})),
            "logit_bias: \"50257\" is not a token id of the model's vocabulary (0 to 50256)",
        ),
        (
            "/v1/graph",
            with(json!({"11": 5})),
            "logit_bias: token ids are one model's",
        ),
    ] {
        server.assert_refused(path, &body, named).await;
    }

    let chat = TestServer::start(&[("llama", common::fixture("llama-tiny"), "generator")], "");
    let body = json!({"messages": [{"role": "user", "content": "Hi"}], "max_new_tokens": 3,
        "logit_bias": {"11": 100}});
    let (status, answer) = chat.post_json("/v1/models/llama/chat", &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["token_ids"], json!([11, 11, 11]));
}
