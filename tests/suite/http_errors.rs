//! Bad input gets a JSON error with the right status, and the server keeps serving.

use crate::common;

use common::server::{fixture_models, TestServer};
use serde_json::{json, Value};

/// Small limits, so oversized inputs are cheap to send.
const LIMITS: &str =
    "[limits]\nmax_body_bytes = 4096\nmax_input_chars = 1000\nmax_new_tokens = 64\n";

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
            // A tokenizer may have no token for any of these (SmolLM2 has none for \u{6}).
            "text of control characters only",
            "/v1/graph",
            JSON,
            graph_json(json!({"text": "\u{6}\u{14} \u{96}"})),
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
        let (got, body, _) = server.post(path, content_type, body).await;
        assert_eq!(got, status, "{what}: {body}");
        assert_eq!(body["error_type"], error_type, "{what}: {body}");
        assert!(
            !body["error"].as_str().unwrap().is_empty(),
            "{what}: an explanation"
        );
    }
    // The errors name what was wrong.
    let (_, body, _) = server
        .post("/v1/graph", JSON, graph_json(json!({"text": long_prompt})))
        .await;
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("tokens long") && error.contains("n_positions (32)"),
        "{body}"
    );
    let (_, body, _) = server
        .post(
            "/v1/graph",
            JSON,
            graph_json(json!({"text": "hi", "max_new_tokens": 65})),
        )
        .await;
    assert!(
        body["error"].as_str().unwrap().contains("max_new_tokens"),
        "{body}"
    );

    let (_, body, _) = server
        .post(
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
    server.assert_serves_the_graph("I have an idea!").await;
}
