//! `GET /metrics`, read back by a real Prometheus text-format parser after known traffic.

use crate::common;

use common::prometheus::{scrape, value};
use common::server::{fixture_models, TestServer};
use prometheus_parse::Value;
use serde_json::{json, Value as Json};

#[actix_web::test]
async fn counters_follow_known_traffic_and_queues_drain_to_zero() {
    let server = TestServer::start(&fixture_models(), "");
    let client = awc::Client::default();
    let mut generated = std::collections::HashMap::<String, f64>::new();
    for text in ["I have an idea!", "Hello, my name is"] {
        let mut response = client
            .post(server.url("/v1/graph"))
            .send_json(&json!({"text": text, "max_new_tokens": 4}))
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        let body: Json = response.json().await.unwrap();
        for r in body["results"].as_array().unwrap() {
            *generated
                .entry(r["model"].as_str().unwrap().to_string())
                .or_default() += r["generated_tokens"].as_f64().unwrap();
        }
    }
    let bad = client
        .post(server.url("/v1/graph"))
        .send_json(&json!({"text": ""}))
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 422);

    let scrape = scrape(&server).await;
    let requests = |status| {
        value(
            &scrape,
            "infergraph_http_requests_total",
            &[("route", "/v1/graph"), ("status", status)],
        )
    };
    assert_eq!((requests("200"), requests("422")), (2.0, 1.0));
    assert_eq!(
        value(
            &scrape,
            "infergraph_http_request_duration_seconds_count",
            &[("route", "/v1/graph")]
        ),
        3.0
    );
    assert_eq!(
        value(
            &scrape,
            "infergraph_graph_stage_duration_seconds_count",
            &[("stage", "total")]
        ),
        2.0
    );
    for (model, tokens) in &generated {
        assert_eq!(
            value(
                &scrape,
                "infergraph_actor_tokens_generated_total",
                &[("model", model)]
            ),
            *tokens,
            "{model}"
        );
        assert_eq!(
            value(
                &scrape,
                "infergraph_actor_requests_total",
                &[("model", model), ("outcome", "completed")]
            ),
            2.0
        );
        assert!(
            value(
                &scrape,
                "infergraph_actor_batch_size_count",
                &[("model", model)]
            ) > 0.0
        );
        assert!(
            value(
                &scrape,
                "infergraph_actor_busy_seconds_total",
                &[("model", model)]
            ) > 0.0
        );
        assert_eq!(
            value(
                &scrape,
                "infergraph_actor_time_to_first_token_seconds_count",
                &[("model", model)]
            ),
            2.0
        );
    }
    assert_eq!(
        value(
            &scrape,
            "infergraph_actor_requests_total",
            &[("role", "classifier"), ("outcome", "completed")]
        ),
        6.0
    );
    for sample in scrape.samples.iter().filter(|s| {
        s.metric == "infergraph_actor_queue_depth" || s.metric == "infergraph_actor_active"
    }) {
        assert_eq!(
            sample.value,
            Value::Gauge(0.0),
            "{} {:?} is back to 0 when idle",
            sample.metric,
            sample.labels
        );
    }
    // The scrape itself is counted, and is never throttled.
    let again = self::scrape(&server).await;
    assert_eq!(
        value(
            &again,
            "infergraph_http_requests_total",
            &[("route", "/metrics"), ("status", "200")]
        ),
        1.0
    );
}
