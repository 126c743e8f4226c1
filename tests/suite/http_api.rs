//! The REST API against a real server process on the tiny fixture models.

use crate::common;

use common::server::{demo_models, fixture_models, TestServer};
use serde_json::{json, Value};

async fn post_text(server: &TestServer, path: &str, text: &str) -> (u16, Value) {
    let (status, body, _) = server
        .post(path, Some("text/plain"), text.as_bytes().to_vec())
        .await;
    (status, body)
}

async fn post_json(server: &TestServer, path: &str, body: Value) -> (u16, Value) {
    server.post_json(path, &body).await
}

async fn get(server: &TestServer, path: &str) -> (u16, Value) {
    let mut response = awc::Client::default()
        .get(server.url(path))
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[actix_web::test]
async fn the_seed_endpoint_returns_three_scored_generations_that_start_with_the_prompt() {
    let server = TestServer::start(&fixture_models(), "");
    let (status, body) = post_text(&server, "/classify_generated_texts", "I have an idea!").await;
    assert_eq!(status, 200, "{body}");
    let results = body.as_array().unwrap();
    assert_eq!(results.len(), 3);
    for result in results {
        let object = result.as_object().unwrap();
        assert_eq!(object.len(), 2, "exactly the seed's shape: {result}");
        assert!(result["generated"]
            .as_str()
            .unwrap()
            .starts_with("I have an idea!"));
        let score = result["score"].as_f64().unwrap();
        assert!(
            (0.5..=1.0).contains(&score),
            "top-class probability of 2 labels: {score}"
        );
    }
}

#[actix_web::test]
async fn generate_score_and_v1_graph_agree_with_the_seed_endpoint() {
    let server = TestServer::start(&fixture_models(), "");
    let text = "Hello, my name is";
    let (_, seed) = post_text(&server, "/classify_generated_texts", text).await;
    let (status, bento) = post_json(
        &server,
        "/generate_score",
        json!({"original_sentence": text}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(bento, seed);
    let (status, graph) = post_json(&server, "/v1/graph", json!({"text": text})).await;
    assert_eq!(status, 200);
    let from_graph: Vec<Value> = graph["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| json!({"generated": r["generated"], "score": r["score"]}))
        .collect();
    assert_eq!(Value::Array(from_graph), seed);
}

#[actix_web::test]
async fn v1_graph_reports_each_models_result_in_graph_order_with_the_request_id() {
    let server = TestServer::start(&fixture_models(), "");
    let mut response = awc::Client::default()
        .post(server.url("/v1/graph"))
        .insert_header(("x-request-id", "trace-me-42"))
        .send_json(&json!({"text": "Hello, my name is", "max_new_tokens": 5}))
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response.headers().get("x-request-id").unwrap(),
        "trace-me-42"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["id"], "trace-me-42");
    let models: Vec<&str> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["model"].as_str().unwrap())
        .collect();
    assert_eq!(models, ["gpt2", "distilgpt2", "gpt2-medium"]);
    for r in body["results"].as_array().unwrap() {
        assert_eq!(r["prompt_tokens"], 5);
        assert_eq!(r["generated_tokens"], 5);
        assert_eq!(r["finish_reason"], "length");
        assert!(r["label"].as_str().unwrap().starts_with("LABEL_"));
    }
    let timings = &body["timings"];
    assert!(timings["total_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(timings["generate_ms"].as_object().unwrap().len(), 3);
    assert_eq!(timings["classify_ms"].as_array().unwrap().len(), 3);
    assert!(
        server
            .wait_for_log("trace-me-42", std::time::Duration::from_secs(5))
            .is_some(),
        "the id is in the logs"
    );
}

#[actix_web::test]
async fn max_length_counts_the_prompt_as_the_seed_does() {
    let server = TestServer::start(&fixture_models(), "");
    let (status, body) = post_json(
        &server,
        "/v1/graph",
        json!({"text": "Hello, my name is", "max_length": 8}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    for r in body["results"].as_array().unwrap() {
        assert_eq!(r["generated_tokens"], 3, "8 total - 5 prompt tokens");
    }
    // A prompt that already fills max_length gets one token, as transformers gives it.
    for max_length in [5, 2] {
        let body = json!({"text": "Hello, my name is", "max_length": max_length});
        let (status, body) = post_json(&server, "/v1/graph", body).await;
        assert_eq!(status, 200, "{body}");
        for r in body["results"].as_array().unwrap() {
            assert_eq!(r["generated_tokens"], 1, "max_length {max_length}: {r}");
        }
    }
}

#[actix_web::test]
async fn models_lists_every_model_with_its_role_sizes_and_device() {
    let server = TestServer::start(&fixture_models(), "");
    let (status, body) = get(&server, "/v1/models").await;
    assert_eq!(status, 200);
    let models = body["models"].as_array().unwrap();
    assert_eq!(models.len(), 4);
    assert_eq!(models[0]["name"], "gpt2");
    assert_eq!(models[0]["role"], "generator");
    assert_eq!(models[0]["architecture"], "gpt2");
    assert_eq!(models[0]["layers"], 2);
    assert_eq!(models[0]["hidden_size"], 32);
    assert_eq!(models[0]["context_length"], 64);
    // Counted from the config, checked against the fixture's tensor sizes.
    assert_eq!(
        models[0]["parameters"],
        50257 * 32 + 64 * 32 + 2 * (12 * 32 * 32 + 13 * 32) + 2 * 32
    );
    assert_eq!(models[3]["role"], "classifier");
    assert_eq!(models[3]["labels"], json!(["LABEL_0", "LABEL_1"]));
    for m in models {
        assert_eq!(m["backend"], "cpu");
        assert_eq!(m["dtype"], "f32");
    }
}

#[actix_web::test]
async fn health_endpoints_answer_when_ready() {
    let server = TestServer::start(&fixture_models(), "");
    for path in ["/livez", "/readyz", "/healthz"] {
        let (status, body) = get(&server, path).await;
        assert_eq!(
            (status, body["status"].as_str()),
            (200, Some("ok")),
            "{path}"
        );
    }
}

/// The graph's shape, read from the instants each actor recorded: generations run at the
/// same time, classifications one after another and only once every generation is done.
#[actix_web::test]
async fn generations_overlap_and_classifications_run_one_at_a_time_after_them() {
    // The demo models have room for long generations, so each takes long enough to overlap.
    let server = TestServer::start(&demo_models(), "");
    let (status, body) = post_json(
        &server,
        "/v1/graph",
        json!({"text": "I have an idea!", "max_new_tokens": 200}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let spans = body["timings"]["spans"].as_array().unwrap();
    let of = |step: &str| -> Vec<(f64, f64)> {
        spans
            .iter()
            .filter(|s| s["step"] == step)
            .map(|s| {
                (
                    s["start_ms"].as_f64().unwrap(),
                    s["end_ms"].as_f64().unwrap(),
                )
            })
            .collect()
    };
    let generate = of("generate");
    let classify = of("classify");
    assert_eq!((generate.len(), classify.len()), (3, 3));
    let last_start = generate.iter().map(|s| s.0).fold(f64::MIN, f64::max);
    let first_end = generate.iter().map(|s| s.1).fold(f64::MAX, f64::min);
    assert!(
        last_start < first_end,
        "all three generations were running at once: {generate:?}"
    );
    let last_generation_end = generate.iter().map(|s| s.1).fold(f64::MIN, f64::max);
    assert!(
        classify[0].0 >= last_generation_end,
        "classification waits for every generation"
    );
    for pair in classify.windows(2) {
        assert!(
            pair[0].1 <= pair[1].0,
            "classifications do not overlap: {classify:?}"
        );
    }
}

#[actix_web::test]
async fn a_seeded_sampled_graph_request_is_reproducible() {
    let server = TestServer::start(&fixture_models(), "");
    let request = json!({"text": "I have an idea!", "temperature": 0.9, "top_k": 50, "seed": 1234, "max_new_tokens": 12});
    let (status, first) = post_json(&server, "/v1/graph", request.clone()).await;
    assert_eq!(status, 200, "{first}");
    let (_, second) = post_json(&server, "/v1/graph", request).await;
    let texts = |body: &Value| -> Vec<Value> {
        body["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["generated"].clone())
            .collect()
    };
    assert_eq!(texts(&first), texts(&second));
    let (_, greedy) = post_json(
        &server,
        "/v1/graph",
        json!({"text": "I have an idea!", "max_new_tokens": 12}),
    )
    .await;
    assert_ne!(
        texts(&first),
        texts(&greedy),
        "sampling is not greedy decoding"
    );
}
