//! Bad input gets a JSON error with the right status, and the server keeps serving.

mod common;

use std::path::Path;

use common::server::{fixture_models, TestServer};
use serde_json::{json, Value};

/// Small limits, so oversized inputs are cheap to send.
const LIMITS: &str =
    "[limits]\nmax_body_bytes = 4096\nmax_input_chars = 1000\nmax_new_tokens = 64\n";

async fn send(
    server: &TestServer,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> (u16, Value, Option<String>) {
    let mut request = awc::Client::default().post(server.url(path));
    if let Some(content_type) = content_type {
        request = request.insert_header(("content-type", content_type));
    }
    let mut response = request.send_body(body).await.unwrap();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body, retry_after)
}

/// What is wrong, route, content type, body, expected status, expected `error_type`.
type Case = (
    &'static str,
    &'static str,
    Option<&'static str>,
    Vec<u8>,
    u16,
    &'static str,
);

const JSON: Option<&str> = Some("application/json");
const TEXT: Option<&str> = Some("text/plain; charset=utf-8");

#[actix_web::test]
async fn every_kind_of_bad_input_gets_its_status_and_a_json_error() {
    let server = TestServer::start(&fixture_models(), LIMITS);
    let graph_json = |v: Value| v.to_string().into_bytes();
    let long_prompt = "word ".repeat(40); // 40+ tokens: more than gpt2-tiny-b's n_positions (32)
    let cases: Vec<Case> = vec![
        (
            "malformed JSON",
            "/v1/graph",
            JSON,
            b"{\"text\": ".to_vec(),
            400,
            "malformed_json",
        ),
        (
            "malformed JSON (bento)",
            "/generate_score",
            JSON,
            b"not json".to_vec(),
            400,
            "malformed_json",
        ),
        (
            "invalid UTF-8 in JSON",
            "/v1/graph",
            JSON,
            vec![b'"', 0xff, 0xfe, b'"'],
            400,
            "invalid_utf8",
        ),
        (
            "invalid UTF-8 in text",
            "/classify_generated_texts",
            TEXT,
            vec![0xc3, 0x28],
            400,
            "invalid_utf8",
        ),
        (
            "text to a JSON endpoint",
            "/v1/graph",
            TEXT,
            graph_json(json!({"text": "hi"})),
            415,
            "unsupported_media_type",
        ),
        (
            "no content type to a JSON endpoint",
            "/generate_score",
            None,
            graph_json(json!({"original_sentence": "hi"})),
            415,
            "unsupported_media_type",
        ),
        (
            "JSON to the text endpoint",
            "/classify_generated_texts",
            JSON,
            b"\"hi\"".to_vec(),
            415,
            "unsupported_media_type",
        ),
        (
            "oversized JSON body",
            "/v1/graph",
            JSON,
            graph_json(json!({"text": "a".repeat(5000)})),
            413,
            "payload_too_large",
        ),
        (
            "oversized text body",
            "/classify_generated_texts",
            TEXT,
            vec![b'a'; 5000],
            413,
            "payload_too_large",
        ),
        (
            "empty text",
            "/v1/graph",
            JSON,
            graph_json(json!({"text": ""})),
            422,
            "validation",
        ),
        (
            "whitespace-only text",
            "/classify_generated_texts",
            TEXT,
            b"  \n\t ".to_vec(),
            422,
            "validation",
        ),
        (
            "empty body",
            "/classify_generated_texts",
            TEXT,
            Vec::new(),
            422,
            "validation",
        ),
        (
            "text over the character limit",
            "/v1/graph",
            JSON,
            graph_json(json!({"text": "é".repeat(1500)})),
            422,
            "validation",
        ),
        (
            "wrongly-typed text",
            "/v1/graph",
            JSON,
            graph_json(json!({"text": 5})),
            422,
            "validation",
        ),
        (
            "missing field",
            "/generate_score",
            JSON,
            graph_json(json!({"sentence": "hi"})),
            422,
            "validation",
        ),
        (
            "unknown field",
            "/v1/graph",
            JSON,
            graph_json(json!({"text": "hi", "temprature": 1})),
            422,
            "validation",
        ),
        (
            "max_new_tokens 0",
            "/v1/graph",
            JSON,
            graph_json(json!({"text": "hi", "max_new_tokens": 0})),
            422,
            "validation",
        ),
        (
            "max_new_tokens over the limit",
            "/v1/graph",
            JSON,
            graph_json(json!({"text": "hi", "max_new_tokens": 65})),
            422,
            "validation",
        ),
        (
            "negative max_length",
            "/v1/graph",
            JSON,
            graph_json(json!({"text": "hi", "max_length": -1})),
            422,
            "validation",
        ),
        (
            "both budgets",
            "/v1/graph",
            JSON,
            graph_json(json!({"text": "hi", "max_length": 9, "max_new_tokens": 3})),
            422,
            "validation",
        ),
        (
            "no room under max_length",
            "/v1/graph",
            JSON,
            graph_json(json!({"text": "Hello, my name is", "max_length": 5})),
            422,
            "validation",
        ),
        (
            "no room under n_positions",
            "/v1/graph",
            JSON,
            graph_json(json!({"text": long_prompt})),
            422,
            "validation",
        ),
        (
            "unknown route",
            "/v2/graph",
            JSON,
            graph_json(json!({"text": "hi"})),
            404,
            "not_found",
        ),
    ];
    for (what, path, content_type, body, status, error_type) in cases {
        let (got, body, _) = send(&server, path, content_type, body).await;
        assert_eq!(got, status, "{what}: {body}");
        assert_eq!(body["error_type"], error_type, "{what}: {body}");
        assert!(
            !body["error"].as_str().unwrap().is_empty(),
            "{what}: an explanation"
        );
    }
    // The errors name what was wrong.
    let (_, body, _) = send(
        &server,
        "/v1/graph",
        JSON,
        graph_json(json!({"text": long_prompt})),
    )
    .await;
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("tokens long") && error.contains("n_positions (32)"),
        "{body}"
    );
    let (_, body, _) = send(
        &server,
        "/v1/graph",
        JSON,
        graph_json(json!({"text": "hi", "max_new_tokens": 65})),
    )
    .await;
    assert!(
        body["error"].as_str().unwrap().contains("max_new_tokens"),
        "{body}"
    );

    let (_, body, _) = send(
        &server,
        "/v1/graph",
        JSON,
        graph_json(json!({"text": "hi", "top_p": 2.0})),
    )
    .await;
    assert!(
        body["error"].as_str().unwrap().starts_with("top_p"),
        "{body}"
    );

    // And after all that, the server still serves.
    let (status, body, _) = send(
        &server,
        "/classify_generated_texts",
        TEXT,
        b"I have an idea!".to_vec(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body.as_array().unwrap().len(), 3);
}

/// A generator whose tokenizer yields ids its weights do not cover: a broken model folder.
fn model_with_a_1000_token_vocabulary(dir: &Path) {
    let source = common::fixture("gpt2-tiny-b");
    for file in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(source.join(file), dir.join(file)).unwrap();
    }
    let config = std::fs::read_to_string(source.join("config.json")).unwrap();
    std::fs::write(
        dir.join("config.json"),
        config.replace("\"vocab_size\": 50257", "\"vocab_size\": 1000"),
    )
    .unwrap();
    let bytes = std::fs::read(source.join("model.safetensors")).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let tensors: Vec<(String, Vec<usize>, Vec<u8>)> = file
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            let mut shape = view.shape().to_vec();
            let mut data = view.data().to_vec();
            if name.ends_with("wte.weight") {
                shape[0] = 1000;
                data.truncate(1000 * shape[1] * 4);
            }
            (name, shape, data)
        })
        .collect();
    let views = tensors.iter().map(|(name, shape, data)| {
        (
            name.clone(),
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), data)
                .unwrap(),
        )
    });
    safetensors::serialize_to_file(views, None, &dir.join("model.safetensors")).unwrap();
}

#[actix_web::test]
async fn a_model_error_is_a_500_and_the_actor_serves_the_next_request() {
    let broken = tempfile::tempdir().unwrap();
    model_with_a_1000_token_vocabulary(broken.path());
    let mut models = fixture_models();
    models[1].1 = broken.path().to_path_buf();
    let server = TestServer::start(&models, "");

    // "Hello" is token 15496: outside the broken model's vocabulary.
    let (status, body, _) = send(
        &server,
        "/classify_generated_texts",
        TEXT,
        b"Hello".to_vec(),
    )
    .await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["error_type"], "model_error");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("outside the model's vocabulary"),
        "{body}"
    );

    // "a,b" is tokens 64, 11, 65: inside it. The same actors answer.
    let (status, body, _) = send(&server, "/classify_generated_texts", TEXT, b"a,b".to_vec()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body.as_array().unwrap().len(), 3);
}
