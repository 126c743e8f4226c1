//! The graph across processes: model nodes serving some models, a graph node reaching them
//! over HTTP. Real `infergraph serve` processes on 127.0.0.1.

use crate::common;

use std::time::Duration;

use common::server::{
    demo_models, fixture_models, free_port, header, models_toml, total, ModelEntry, TestServer,
    JSON_HEADER, SLOT_HOLDING_BODY,
};
use common::*;
use serde_json::{json, Value};

/// Timeouts short enough that a lost node shows within a test, long enough for 2 cores.
/// `expose_internals`: the tests read the replicas' URLs back from `/v1/models`.
const REMOTE: &str = "[remote]\nconnect_timeout_ms = 1000\nread_timeout_ms = 5000\nhealth_interval_ms = 200\n[limits]\nmax_new_tokens = 1000\nrequest_timeout_ms = 60000\n[auth]\nexpose_internals = true\n";

fn entry(models: &[ModelEntry], name: &str) -> ModelEntry {
    models.iter().find(|m| m.0 == name).unwrap().clone()
}

/// A model node serving `models` (on `port`, 0 for any).
fn model_node(port: u16, models: &[ModelEntry]) -> TestServer {
    TestServer::start_toml(
        port,
        &models_toml(models),
        "[limits]\nmax_new_tokens = 1000\n",
    )
}

/// The graph of `models`, with the ones in `remote` reached at their URLs, in the same order.
fn graph_node(models: &[ModelEntry], remote: &[(&str, Vec<String>)]) -> TestServer {
    let toml: String = models
        .iter()
        .map(
            |(name, path, role)| match remote.iter().find(|(r, _)| r == name) {
                Some((_, urls)) => {
                    format!("\n[[models]]\nname = \"{name}\"\nurls = {urls:?}\nrole = \"{role}\"\n")
                }
                None => models_toml(&[(name, path.clone(), role)]),
            },
        )
        .collect();
    let server = TestServer::start_toml(0, &toml, REMOTE);
    wait_until(
        "the remote models are ready",
        Duration::from_secs(30),
        || server.is_ready(),
    );
    server
}

/// The answer of `path` on `server` for `body`, less what differs between any two runs.
async fn comparable(server: &TestServer, path: &str, body: &Value) -> Value {
    let (status, answer) = server.post_json(path, body).await;
    assert_eq!(status, 200, "{path}: {answer}");
    match answer.get("results") {
        Some(results) => results.clone(),
        None => answer,
    }
}

/// The `data:` of every SSE event of a graph stream, less its timings and ids.
async fn streamed(server: &TestServer, body: &Value) -> Vec<Value> {
    let mut response = awc::Client::default()
        .post(server.url("/v1/graph/stream"))
        .send_json(body)
        .await
        .unwrap();
    let bytes = response.body().limit(1 << 22).await.unwrap();
    let mut events: Vec<Value> = std::str::from_utf8(&bytes)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str::<Value>(d).unwrap())
        .map(|mut e| {
            e.as_object_mut()
                .unwrap()
                .retain(|k, _| !["id", "trace_id", "timings"].contains(&k.as_str()));
            e
        })
        .collect();
    // Tokens of different models interleave as they come; each model's order is what counts.
    events.sort_by_key(|e| {
        (
            e["type"] != "token",
            e["model"].as_str().unwrap_or("").to_string(),
        )
    });
    events
}

/// The results of a graph request streamed over `/v1/graph/ws` (its `done` event).
async fn websocket_results(server: &TestServer, body: &Value) -> Value {
    use awc::ws::{Frame, Message};
    use futures_util::{SinkExt, StreamExt};
    let url = server.url("/v1/graph/ws").replacen("http", "ws", 1);
    let (_, mut socket) = awc::Client::new()
        .ws(url)
        .max_frame_size(1 << 24)
        .connect()
        .await
        .unwrap();
    socket
        .send(Message::Text(body.to_string().into()))
        .await
        .unwrap();
    while let Some(Ok(frame)) = socket.next().await {
        let Frame::Text(bytes) = frame else { continue };
        let event: Value = serde_json::from_slice(&bytes).unwrap();
        match event["type"].as_str() {
            Some("done") => return event["results"].clone(),
            Some("error") => panic!("{event}"),
            _ => {}
        }
    }
    panic!("the socket closed before the request's done event")
}

/// A Llama-family model on a node of its own: the graph node reaches it as any other.
#[actix_web::test]
async fn a_llama_family_model_node_serves_the_split_graph() {
    let all = crate::llama_server::llama_family_models();
    let qwen3 = model_node(0, &[entry(&all, "qwen3")]);
    let split = graph_node(&all, &[("qwen3", vec![qwen3.base.clone()])]);
    let whole = TestServer::start(&all, "");
    let body = json!({"text": "Hello, my name is", "max_new_tokens": 8});
    let results = comparable(&split, "/v1/graph", &body).await;
    assert_eq!(results, comparable(&whole, "/v1/graph", &body).await);
    assert_eq!(results[3]["model"], "qwen3", "{results}");
    assert_eq!(streamed(&split, &body).await, streamed(&whole, &body).await);
}

#[actix_web::test]
async fn a_model_node_serves_a_4_bit_gguf_generator_to_the_split_graph() {
    let gguf = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/gguf/llama-kquant-tiny-q4_0.gguf");
    let all: Vec<ModelEntry> = vec![
        ("kquant", gguf, "generator"),
        ("bert", fixture("bert-tiny"), "classifier"),
    ];
    let node = model_node(0, &[entry(&all, "kquant")]);
    let split = graph_node(&all, &[("kquant", vec![node.base.clone()])]);
    let whole = TestServer::start(&all, "");
    let body = json!({"text": "Hello, my name is", "max_new_tokens": 6});
    let results = comparable(&split, "/v1/graph", &body).await;
    assert_eq!(results, comparable(&whole, "/v1/graph", &body).await);
    assert_eq!(streamed(&split, &body).await, streamed(&whole, &body).await);
}

#[actix_web::test]
async fn the_split_graph_answers_what_the_all_in_one_server_answers() {
    let all = fixture_models();
    let medium = model_node(0, &[entry(&all, "gpt2-medium")]);
    let bert = model_node(0, &[entry(&all, "bert-base-uncased")]);
    let split = graph_node(
        &all,
        &[
            ("gpt2-medium", vec![medium.base.clone()]),
            ("bert-base-uncased", vec![bert.base.clone()]),
        ],
    );
    let whole = TestServer::start(&all, "");

    let plain = json!({"text": "Hello, my name is", "max_new_tokens": 8});
    let penalized = json!({"text": "Hello, my name is", "max_new_tokens": 8,
        "presence_penalty": 1.2, "frequency_penalty": 0.6});
    for body in [
        plain.clone(),
        json!({"text": "I have an idea!", "max_new_tokens": 6, "temperature": 0.8, "top_p": 0.9, "seed": 5}),
        penalized.clone(),
    ] {
        assert_eq!(
            comparable(&split, "/v1/graph", &body).await,
            comparable(&whole, "/v1/graph", &body).await,
            "{body}"
        );
        assert_eq!(streamed(&split, &body).await, streamed(&whole, &body).await);
        assert_eq!(
            websocket_results(&split, &body).await,
            websocket_results(&whole, &body).await
        );
    }
    // The penalties reach the model node: they change what the tiny models say.
    assert_ne!(
        comparable(&whole, "/v1/graph", &plain).await,
        comparable(&whole, "/v1/graph", &penalized).await
    );
    // A logit bias needs the model's vocabulary, which is on its node.
    let (status, body) = split
        .post_json(
            "/v1/completions",
            &json!({"model": "gpt2-medium", "prompt": "Hi", "logit_bias": {"11": 5}}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("logit_bias: token ids need the model loaded on this server"),
        "{body}"
    );
    let text = b"I have an idea!".to_vec();
    let (status, split_seed, _) = split
        .post(
            "/classify_generated_texts",
            Some("text/plain"),
            text.clone(),
        )
        .await;
    let (_, whole_seed, _) = whole
        .post("/classify_generated_texts", Some("text/plain"), text)
        .await;
    assert_eq!(status, 200, "{split_seed}");
    assert_eq!(split_seed, whole_seed);

    // Each remote model shows where it is served, and the hop is measured.
    let mut response = awc::Client::default()
        .get(split.url("/v1/models"))
        .send()
        .await
        .unwrap();
    let models: Value = response.json().await.unwrap();
    let medium_info = models["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "gpt2-medium")
        .unwrap()
        .clone();
    assert_eq!(medium_info["location"], "remote");
    assert_eq!(medium_info["replicas"][0]["url"], medium.base.as_str());
    assert_eq!(medium_info["replicas"][0]["ready"], true);
    assert_eq!(
        medium_info["architecture"], "gpt2",
        "as its node describes it"
    );
    let mut response = awc::Client::default()
        .get(split.url("/metrics"))
        .send()
        .await
        .unwrap();
    let text = String::from_utf8(response.body().limit(1 << 22).await.unwrap().to_vec()).unwrap();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    let hops = scrape.samples.iter().find(|s| {
        s.metric == "infergraph_hop_duration_seconds_count"
            && s.labels.get("model") == Some("gpt2-medium")
    });
    assert!(
        matches!(hops.map(|s| &s.value), Some(prometheus_parse::Value::Untyped(n) | prometheus_parse::Value::Counter(n)) if *n >= 5.0),
        "{text}"
    );

    // A model node runs no graph, and says so.
    let (status, body) = medium.post_json("/v1/graph", &json!({"text": "hi"})).await;
    assert_eq!(
        (status, body["error_type"].as_str()),
        (404, Some("no_graph")),
        "{body}"
    );
}

#[actix_web::test]
async fn one_trace_id_spans_the_graph_node_and_the_model_node() {
    let all = fixture_models();
    let medium = model_node(0, &[entry(&all, "gpt2-medium")]);
    let split = graph_node(&all, &[("gpt2-medium", vec![medium.base.clone()])]);
    let response = awc::Client::default()
        .post(split.url("/v1/graph"))
        .send_json(&json!({"text": "Hello", "max_new_tokens": 3}))
        .await
        .unwrap();
    let trace_id = header(response.headers(), "x-trace-id").unwrap();
    let mut response = awc::Client::default()
        .get(medium.url(&format!("/v1/traces/{trace_id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status().as_u16(),
        200,
        "the node kept trace {trace_id}"
    );
    let trace: Value = response.json().await.unwrap();
    assert_eq!(trace["trace_id"], trace_id.as_str());
    assert_eq!(trace["spans"][1]["name"], "generate");
    assert_eq!(trace["spans"][1]["attributes"]["model"], "gpt2-medium");
}

#[test]
fn cancelling_a_streamed_graph_request_leaves_the_model_node_idle() {
    let all = demo_models();
    let medium = model_node(0, &[entry(&all, "gpt2-medium")]);
    let split = graph_node(&all, &[("gpt2-medium", vec![medium.base.clone()])]);
    let stream = split.raw_request("POST /v1/graph/stream", JSON_HEADER, SLOT_HOLDING_BODY);
    wait_until("the node generates", Duration::from_secs(30), || {
        total(&medium.engines(), "active") == 1
    });
    drop(stream);
    wait_until("the node is idle", Duration::from_secs(30), || {
        let engines = medium.engines();
        total(&engines, "active") + total(&engines, "queued") == 0
    });
    assert_eq!(total(&medium.engines(), "cancelled"), 1);
    // The graph node's own generators stop at their next step (under a loaded machine that
    // can come after the node went idle).
    wait_until("the graph node is idle", Duration::from_secs(30), || {
        total(&split.engines(), "active") == 0
    });
}

#[actix_web::test]
async fn a_lost_model_node_is_a_fast_named_503_and_its_return_needs_no_restart() {
    let all = demo_models();
    let port = free_port();
    let mut medium = model_node(port, &[entry(&all, "gpt2-medium")]);
    let url = medium.base.clone();
    let split = graph_node(&all, &[("gpt2-medium", vec![url.clone()])]);

    // Killed mid-request: the request gets 503 naming the model and the URL, not a 504.
    let running = actix_web::rt::spawn({
        let request = awc::Client::builder()
            .timeout(Duration::from_secs(120))
            .finish()
            .post(split.url("/v1/graph"))
            .send_json(&serde_json::from_str::<Value>(SLOT_HOLDING_BODY).unwrap());
        async move {
            let mut response = request.await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        }
    });
    // Let the request reach the node, then lose the node.
    let engines = |server: &TestServer| total(&server.engines(), "active");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while engines(&medium) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the request never reached the node"
        );
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    medium.kill();
    let (status, body) = running.await.unwrap();
    assert_eq!(
        (status, body["error_type"].as_str()),
        (503, Some("model_unavailable")),
        "{body}"
    );
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("gpt2-medium") && error.contains(&url),
        "{error}"
    );
    // New requests too, and readiness says so.
    let (status, body) = split
        .post_json("/v1/graph", &json!({"text": "Hello", "max_new_tokens": 2}))
        .await;
    assert_eq!(
        (status, body["error_type"].as_str()),
        (503, Some("model_unavailable")),
        "{body}"
    );
    assert!(!split.is_ready());

    // Back on the same address: the graph node serves again by itself.
    let _medium = model_node(port, &[entry(&all, "gpt2-medium")]);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !split.is_ready() {
        assert!(
            std::time::Instant::now() < deadline,
            "the graph node did not recover"
        );
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    split.assert_serves_the_graph("I have an idea!").await;
}

#[actix_web::test]
async fn two_replicas_share_the_calls_and_losing_one_loses_no_request() {
    let all = fixture_models();
    let medium = entry(&all, "gpt2-medium");
    let first = model_node(0, std::slice::from_ref(&medium));
    let mut second = model_node(0, std::slice::from_ref(&medium));
    let split = graph_node(
        &all,
        &[("gpt2-medium", vec![first.base.clone(), second.base.clone()])],
    );
    for _ in 0..6 {
        split.assert_serves_the_graph("I have an idea!").await;
    }
    let served = |node: &TestServer| total(&node.engines(), "completed");
    assert!(
        served(&first) > 0 && served(&second) > 0,
        "both replicas served"
    );
    assert_eq!(served(&first) + served(&second), 6);

    second.kill();
    for _ in 0..6 {
        split.assert_serves_the_graph("I have an idea!").await;
    }
    assert!(served(&first) >= 9, "the rest went to the replica left");
}

#[actix_web::test]
async fn a_model_node_generates_in_json_mode_and_to_a_schema_as_the_all_in_one_server_does() {
    let all = fixture_models();
    let medium = model_node(0, &[entry(&all, "gpt2-medium")]);
    let split = graph_node(&all, &[("gpt2-medium", vec![medium.base.clone()])]);
    let whole = TestServer::start(&all, "");
    let path = "/v1/models/gpt2-medium/generate";
    let plain = json!({"text": "Hello", "max_new_tokens": 24, "temperature": 1.0, "seed": 3});
    let generated = |answer: Value| json!([answer["continuation"], answer["token_ids"]]);
    let schema = json!({"type": "object", "properties": {"yes": {"type": "boolean"}}});
    for format in [
        json!({"type": "json_object"}),
        json!({"type": "json_schema", "json_schema": {"name": "yes", "schema": schema}}),
    ] {
        let mut constrained = plain.clone();
        constrained["response_format"] = format;
        let remote = generated(comparable(&split, path, &constrained).await);
        assert_eq!(
            remote,
            generated(comparable(&whole, path, &constrained).await)
        );
        assert!(remote[0].as_str().unwrap().trim_start().starts_with('{'));
        // The node applied it: the same draw without it is other text.
        assert_ne!(remote, generated(comparable(&split, path, &plain).await));
    }
}
