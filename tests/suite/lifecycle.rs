//! Start-up and shutdown: readiness, and SIGTERM draining in-flight requests.

use crate::common;

use std::time::Duration;

use actix_web::{test as http_test, web, App};
use common::server::{demo_models, serve_refuses, TestServer};
use infergraph::config::Config;
use infergraph::http::routes;
use infergraph::http::state::{AppState, Phase};
use serde_json::{json, Value};

fn state_in(phase: Phase) -> web::Data<AppState> {
    let config =
        Config::from_file(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config.toml"))
            .unwrap();
    let state = AppState::new(config);
    state.set_phase(phase);
    web::Data::new(state)
}

async fn call(
    state: web::Data<AppState>,
    request: http_test::TestRequest,
) -> (u16, Option<String>, Value) {
    let app = http_test::init_service(App::new().app_data(state).configure(routes::routes)).await;
    let response = http_test::call_service(&app, request.to_request()).await;
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    (
        status,
        retry_after,
        http_test::read_body_json(response).await,
    )
}

#[actix_web::test]
async fn while_models_load_readyz_and_the_graph_answer_503_but_livez_is_up() {
    let (status, retry, body) = call(
        state_in(Phase::Loading),
        http_test::TestRequest::get().uri("/readyz"),
    )
    .await;
    assert_eq!(
        (status, retry.as_deref(), body["status"].as_str()),
        (503, Some("1"), Some("loading"))
    );
    let (status, _, body) = call(
        state_in(Phase::Loading),
        http_test::TestRequest::get().uri("/livez"),
    )
    .await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
    let request = http_test::TestRequest::post()
        .uri("/v1/graph")
        .set_json(json!({"text": "hi"}));
    let (status, retry, body) = call(state_in(Phase::Loading), request).await;
    assert_eq!(
        (status, retry.as_deref(), body["error_type"].as_str()),
        (503, Some("1"), Some("not_ready"))
    );
}

#[actix_web::test]
async fn while_loading_or_draining_every_model_route_answers_503() {
    let generate = json!({"text": "hi"});
    let routes = [
        ("/v1/models/gpt2/generate", generate.clone()),
        ("/v1/models/gpt2/generate/stream", generate),
        (
            "/v1/models/bert-base-uncased/classify",
            json!({"text": "hi"}),
        ),
        ("/v1/completions", json!({"model": "gpt2", "prompt": "hi"})),
    ];
    for (phase, error_type) in [
        (Phase::Loading, "not_ready"),
        (Phase::ShuttingDown, "shutting_down"),
    ] {
        for (path, body) in &routes {
            let request = http_test::TestRequest::post().uri(path).set_json(body);
            let (status, retry, body) = call(state_in(phase), request).await;
            assert_eq!(
                (status, retry.as_deref(), body["error_type"].as_str()),
                (503, Some("1"), Some(error_type)),
                "{path}"
            );
        }
    }
}

#[actix_web::test]
async fn while_shutting_down_readyz_and_new_requests_answer_503() {
    let (status, _, body) = call(
        state_in(Phase::ShuttingDown),
        http_test::TestRequest::get().uri("/healthz"),
    )
    .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (503, Some("shutting_down"))
    );
    let request = http_test::TestRequest::post()
        .uri("/classify_generated_texts")
        .insert_header(("content-type", "text/plain"))
        .set_payload("I have an idea!");
    let (status, retry, body) = call(state_in(Phase::ShuttingDown), request).await;
    assert_eq!(
        (status, retry.as_deref(), body["error_type"].as_str()),
        (503, Some("1"), Some("shutting_down"))
    );
}

#[test]
fn sigterm_lets_the_in_flight_request_finish_then_exits_zero() {
    let mut server = TestServer::start(&demo_models(), "[limits]\nmax_new_tokens = 1000\n");
    let url = server.url("/v1/graph");
    let request = std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let mut response = awc::Client::builder()
                .timeout(Duration::from_secs(120))
                .finish()
                .post(url)
                .send_json(&json!({"text": "I have an idea!", "max_new_tokens": 1000}))
                .await
                .expect("the in-flight request gets its answer");
            let status = response.status().as_u16();
            let body: Value = response.json().limit(1 << 22).await.unwrap();
            (status, body)
        })
    });
    server
        .wait_for_log("graph started", Duration::from_secs(30))
        .expect("the request reached the graph");
    server.signal("TERM");
    let (status, body) = request.join().unwrap();
    assert_eq!(status, 200, "{body}");
    for result in body["results"].as_array().unwrap() {
        assert_eq!(result["generated_tokens"], 1000, "{}", result["model"]);
    }
    assert!(
        server.wait_exit(Duration::from_secs(60)).success(),
        "exit status 0"
    );
    // The request really was in flight when the signal arrived.
    let signalled = server
        .log_position("shutting down")
        .expect("the shutdown is logged");
    let finished = server
        .log_position("graph finished")
        .expect("the graph finished");
    assert!(
        signalled < finished,
        "SIGTERM came before the graph finished"
    );
}

#[test]
fn a_model_that_fails_to_load_stops_the_server_with_its_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    let good = common::fixture("bert-tiny");
    std::fs::write(
        &config,
        format!(
            "[server]\nport = 0\n[[models]]\nname = \"g\"\npath = \"/nonexistent/gpt2\"\nrole = \"generator\"\n\
             [[models]]\nname = \"c\"\npath = {good:?}\nrole = \"classifier\"\n"
        ),
    )
    .unwrap();
    let stderr = serve_refuses(&config, &["--backend", "cpu"]);
    assert!(
        stderr.contains("model \"g\"") && stderr.contains("/nonexistent/gpt2"),
        "{stderr}"
    );
}

#[test]
fn a_bad_config_fails_at_start_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "[server]\nprot = 3000\n").unwrap();
    let stderr = serve_refuses(&config, &[]);
    assert!(
        stderr.contains("prot") && stderr.contains("config.toml"),
        "{stderr}"
    );
}
