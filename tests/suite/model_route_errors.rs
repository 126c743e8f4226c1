//! The per-model routes refuse what they must with the graph's error envelope and statuses:
//! unknown models, the wrong role, bad input, a full queue, a timeout, a wrong method.

use crate::common;

use std::time::Duration;

use common::server::{
    counter, demo_models, fixture_models, header, total, TestServer, JSON_HEADER,
};
use common::*;
use serde_json::{json, Value};

const JSON: Option<&str> = Some("application/json");

#[actix_web::test]
async fn every_refusal_has_its_status_error_type_and_message() {
    let server = TestServer::start(
        &fixture_models(),
        "[limits]\nmax_body_bytes = 4096\nmax_input_chars = 100\nmax_new_tokens = 16\n",
    );
    let long_prompt = "a ".repeat(45); // 45 tokens: more than gpt2-tiny-b's n_positions (32)
    let texts: Vec<String> = (0..33).map(|i| format!("text {i}")).collect();
    // Route, body, status, error_type, a piece of the message.
    let cases: Vec<(&str, Value, u16, &str, &str)> = vec![
        (
            "/v1/models/gpt3/generate",
            json!({"text": "hi"}),
            404,
            "model_not_found",
            "gpt2, distilgpt2, gpt2-medium, bert-base-uncased",
        ),
        (
            "/v1/models/nope/classify",
            json!({"text": "hi"}),
            404,
            "model_not_found",
            "\"nope\"",
        ),
        (
            "/v1/models/bert-base-uncased/generate",
            json!({"text": "hi"}),
            422,
            "wrong_role",
            "is a classifier",
        ),
        (
            "/v1/models/bert-base-uncased/generate/stream",
            json!({"text": "hi"}),
            422,
            "wrong_role",
            "needs a generator",
        ),
        (
            "/v1/models/gpt2/classify",
            json!({"text": "hi"}),
            422,
            "wrong_role",
            "needs a classifier",
        ),
        (
            "/v1/models/gpt2/generate",
            json!({"text": "  \n"}),
            422,
            "validation",
            "text: must hold a character other than white space",
        ),
        (
            "/v1/models/gpt2/generate",
            json!({"text": "hi", "max_new_tokens": 17}),
            422,
            "validation",
            "max_new_tokens: 17 is out of range",
        ),
        (
            "/v1/models/gpt2/generate",
            json!({"text": "hi", "temperature": -1}),
            422,
            "validation",
            "temperature",
        ),
        (
            "/v1/models/gpt2/generate",
            json!({"text": "hi", "beams": 4}),
            422,
            "validation",
            "unknown field `beams`",
        ),
        (
            "/v1/models/distilgpt2/generate",
            json!({"text": long_prompt}),
            422,
            "validation",
            "n_positions (32)",
        ),
        (
            "/v1/models/bert-base-uncased/classify",
            json!({"text": "a", "texts": ["b"]}),
            422,
            "validation",
            "exactly one",
        ),
        (
            "/v1/models/bert-base-uncased/classify",
            json!({}),
            422,
            "validation",
            "exactly one",
        ),
        (
            "/v1/models/bert-base-uncased/classify",
            json!({"texts": []}),
            422,
            "validation",
            "texts: 0 texts",
        ),
        (
            "/v1/models/bert-base-uncased/classify",
            json!({"texts": texts}),
            422,
            "validation",
            "texts: 33 texts",
        ),
        (
            "/v1/models/bert-base-uncased/classify",
            json!({"texts": ["fine", " "]}),
            422,
            "validation",
            "texts[1]: must hold a character other than white space",
        ),
        (
            "/v1/models/bert-base-uncased/classify",
            json!({"text": "x".repeat(101)}),
            422,
            "validation",
            "text: 101 characters; the limit is 100",
        ),
        (
            "/v1/models/bert-base-uncased/classify",
            json!({"text": "fine", "text_pair": ""}),
            422,
            "validation",
            "text_pair",
        ),
    ];
    for (path, body, status, error_type, message) in cases {
        let (got, answer) = server.post_json(path, &body).await;
        assert_eq!(got, status, "{path} {body}: {answer}");
        assert_eq!(answer["error_type"], error_type, "{path} {body}: {answer}");
        let error = answer["error"].as_str().unwrap();
        assert!(error.contains(message), "{path} {body}: {error}");
    }
    // Wire-level refusals, as on the graph routes.
    let wire: Vec<(Option<&str>, Vec<u8>, u16, &str)> = vec![
        (JSON, b"{\"text\": ".to_vec(), 400, "malformed_json"),
        (
            Some("text/plain"),
            b"hi".to_vec(),
            415,
            "unsupported_media_type",
        ),
        (JSON, vec![b'x'; 5000], 413, "payload_too_large"),
    ];
    for (content_type, body, status, error_type) in wire {
        let (got, answer, _) = server
            .post("/v1/models/gpt2/generate", content_type, body)
            .await;
        assert_eq!(
            (got, answer["error_type"].as_str()),
            (status, Some(error_type))
        );
    }
    server.assert_serves_the_graph("I have an idea!").await;
}

#[actix_web::test]
async fn a_wrong_method_on_a_known_path_is_405_with_allow() {
    let server = TestServer::start(&fixture_models(), "");
    let client = awc::Client::default();
    for (method, path, allow) in [
        ("PUT", "/v1/graph", "POST"),
        ("TRACE", "/v1/models", "GET"),
        ("GET", "/v1/models/gpt2/generate", "POST"),
        ("DELETE", "/v1/completions", "POST"),
        ("POST", "/metrics", "GET"),
    ] {
        let method = awc::http::Method::from_bytes(method.as_bytes()).unwrap();
        let mut response = client
            .request(method.clone(), server.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 405, "{method} {path}");
        assert_eq!(
            header(response.headers(), "allow").as_deref(),
            Some(allow),
            "{method} {path}"
        );
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error_type"], "method_not_allowed");
    }
    let mut response = client.get(server.url("/v1/nothing")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 404);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error_type"], "not_found");
}

#[actix_web::test]
async fn a_full_model_queue_gives_429_with_retry_after_and_the_graph_answers_afterwards() {
    let server = TestServer::start(
        &demo_models(),
        "[engine]\nmax_batch = 1\nqueue_capacity = 1\n[limits]\nmax_new_tokens = 1000\n",
    );
    let holder = r#"{"text": "I have an idea!", "max_new_tokens": 1000, "min_new_tokens": 1000}"#;
    let gpt2 = |key: &str| counter(&server.engines(), "gpt2", key);
    // One generation runs, one waits in gpt2's queue of one; their clients leave at the end.
    let running = server.raw_request("POST /v1/models/gpt2/generate", JSON_HEADER, holder);
    wait_until("the first runs", Duration::from_secs(30), || {
        gpt2("active") == 1
    });
    let queued = server.raw_request("POST /v1/models/gpt2/generate", JSON_HEADER, holder);
    wait_until("the second is queued", Duration::from_secs(30), || {
        gpt2("queued") == 1
    });
    for path in [
        "/v1/models/gpt2/generate",
        "/v1/models/gpt2/generate/stream",
    ] {
        let (status, body, retry_after) = server
            .post(
                path,
                JSON,
                json!({"text": "Hello"}).to_string().into_bytes(),
            )
            .await;
        assert_eq!(status, 429, "{path}: {body}");
        assert_eq!(body["error_type"], "overloaded");
        assert!(
            body["error"].as_str().unwrap().contains("\"gpt2\""),
            "{body}"
        );
        assert_eq!(retry_after.as_deref(), Some("1"));
    }
    // The graph shares gpt2's queue: it is refused at its entrance too.
    let (status, body) = server
        .post_json("/v1/graph", &json!({"text": "Hello", "max_new_tokens": 2}))
        .await;
    assert_eq!(
        (status, body["error_type"].as_str()),
        (429, Some("overloaded"))
    );
    // Other models are not held up by gpt2's queue.
    let (status, body) = server
        .post_json(
            "/v1/models/distilgpt2/generate",
            &json!({"text": "Hello", "max_new_tokens": 2}),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    drop((running, queued));
    wait_until("gpt2 is free again", Duration::from_secs(30), || {
        gpt2("active") + gpt2("queued") == 0
    });
    assert_eq!(gpt2("rejected"), 3, "every refusal counts, the graph's too");
    server.assert_serves_the_graph("I have an idea!").await;
}

#[actix_web::test]
async fn a_generation_past_the_timeout_gets_504_and_leaves_the_batch() {
    // 1000 tokens of the demo gpt2 take ~300 ms on these machines: the timeout sits well below.
    let server = TestServer::start(
        &demo_models(),
        "[limits]\nmax_new_tokens = 1000\nrequest_timeout_ms = 100\n",
    );
    let (status, body) = server
        .post_json(
            "/v1/models/gpt2/generate",
            &json!({"text": "I have an idea!", "max_new_tokens": 1000, "min_new_tokens": 1000}),
        )
        .await;
    assert_eq!(
        (status, body["error_type"].as_str()),
        (504, Some("timeout"))
    );
    assert!(body["error"].as_str().unwrap().contains("100 ms"), "{body}");
    wait_until("the slot is free", Duration::from_secs(30), || {
        total(&server.engines(), "active") == 0
    });
    assert_eq!(total(&server.engines(), "cancelled"), 1);
}

#[actix_web::test]
async fn a_deadline_sent_across_a_hop_is_kept_with_504() {
    // A graph node tells a model node how long the request has left; the node stops there.
    let server = TestServer::start(&demo_models(), "[limits]\nmax_new_tokens = 1000\n");
    let mut response = awc::Client::default()
        .post(server.url("/v1/models/gpt2/generate"))
        .insert_header(("x-infergraph-deadline-ms", "100"))
        .send_json(
            &json!({"text": "I have an idea!", "max_new_tokens": 1000, "min_new_tokens": 1000}),
        )
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 504);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error_type"], "timeout");
    assert!(body["error"].as_str().unwrap().contains("100 ms"), "{body}");
    wait_until("the slot is free", Duration::from_secs(30), || {
        total(&server.engines(), "active") == 0
    });
}
