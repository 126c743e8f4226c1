//! `/openapi.json` is valid OpenAPI (checked by a real validator) and covers every route.

use crate::common;

use common::server::{fixture_models, TestServer};
use serde_json::Value;

/// Every route the server answers (the default 404 service aside).
const ROUTES: [&str; 28] = [
    "/",
    "/classify_generated_texts",
    "/generate_score",
    "/v1/graph",
    "/v1/graph/stream",
    "/v1/graph/ws",
    "/v1/graphs",
    "/v1/graphs/{name}",
    "/v1/graphs/{name}/stream",
    "/v1/models",
    "/v1/models/{name}/generate",
    "/v1/models/{name}/generate/stream",
    "/v1/models/{name}/chat",
    "/v1/models/{name}/chat/stream",
    "/v1/models/{name}/classify",
    "/v1/models/{name}/embed",
    "/v1/completions",
    "/v1/chat/completions",
    "/v1/embeddings",
    "/v1/engines",
    "/v1/traces",
    "/v1/traces/{id}",
    "/metrics",
    "/livez",
    "/readyz",
    "/healthz",
    "/openapi.json",
    "/docs",
];

#[actix_web::test]
async fn the_document_is_valid_openapi_3_and_covers_every_route() {
    let server = TestServer::start(&fixture_models(), "");
    let mut response = awc::Client::default()
        .get(server.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let body = response.body().limit(1 << 22).await.unwrap();
    let document: Value = serde_json::from_slice(&body).unwrap();
    assert!(document["openapi"].as_str().unwrap().starts_with("3."));
    let mut paths: Vec<&str> = document["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    paths.sort();
    let mut expected = ROUTES.to_vec();
    expected.sort();
    assert_eq!(paths, expected);

    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &body).unwrap();
    common::run_ok(
        "openapi-spec-validator (installed by .ci/run) on the document",
        std::process::Command::new("python3")
            .args(["-m", "openapi_spec_validator"])
            .arg(file.path()),
    );
}

#[actix_web::test]
async fn the_docs_page_renders_the_document() {
    let server = TestServer::start(&fixture_models(), "");
    let mut response = awc::Client::default()
        .get(server.url("/docs"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert!(response
        .headers()
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let page = String::from_utf8(response.body().await.unwrap().to_vec()).unwrap();
    assert!(page.contains("fetch(\"/openapi.json\")"));
}
