//! The trace of a real request: generations side by side, classifications in turn, queue
//! wait and compute apart, every child inside its parent.

use crate::common;

use common::server::{demo_models, header, TestServer};
use serde_json::{json, Value};

#[actix_web::test]
async fn a_graph_requests_trace_is_a_waterfall_of_its_steps() {
    // The demo models have room for generations long enough to overlap.
    let server = TestServer::start(&demo_models(), "");
    let client = awc::Client::default();
    let mut response = client
        .post(server.url("/v1/graph"))
        .insert_header(("x-request-id", "traced-1"))
        .send_json(&json!({"text": "I have an idea!", "max_new_tokens": 200}))
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let header = header(response.headers(), "x-trace-id").unwrap();
    let body: Value = response.json().limit(1 << 22).await.unwrap();
    assert_eq!(body["trace_id"], header.as_str());

    let mut listed = client.get(server.url("/v1/traces")).send().await.unwrap();
    let listed: Value = listed.json().await.unwrap();
    assert_eq!(
        listed["traces"][0]["trace_id"],
        header.as_str(),
        "newest first"
    );

    let mut response = client
        .get(server.url(&format!("/v1/traces/{header}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let trace: Value = response.json().limit(1 << 22).await.unwrap();
    assert_eq!(trace["request_id"], "traced-1");
    let spans = trace["spans"].as_array().unwrap();
    let span = |id: &Value| &spans[id.as_u64().unwrap() as usize];
    let range = |s: &Value| {
        (
            s["start_ms"].as_f64().unwrap(),
            s["end_ms"].as_f64().unwrap(),
        )
    };
    for s in spans.iter().skip(1) {
        let (start, end) = range(s);
        let (parent_start, parent_end) = range(span(&s["parent"]));
        assert!(start <= end, "{s}");
        assert!(
            parent_start <= start && end <= parent_end,
            "{} inside its parent",
            s["name"]
        );
    }
    let named =
        |name: &str| -> Vec<&Value> { spans.iter().filter(|s| s["name"] == name).collect() };
    let generate = named("generate");
    let classify = named("classify");
    assert_eq!((generate.len(), classify.len()), (3, 3));
    let starts: Vec<f64> = generate.iter().map(|s| range(s).0).collect();
    let ends: Vec<f64> = generate.iter().map(|s| range(s).1).collect();
    assert!(
        starts.iter().cloned().fold(f64::MIN, f64::max)
            < ends.iter().cloned().fold(f64::MAX, f64::min),
        "the generations overlap"
    );
    for pair in classify.windows(2) {
        assert!(
            range(pair[0]).1 <= range(pair[1]).0,
            "the classifications do not overlap"
        );
    }
    for step in generate.iter().chain(&classify) {
        let children: Vec<&Value> = spans.iter().filter(|s| s["parent"] == step["id"]).collect();
        let names: Vec<&str> = children
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            ["queue", "compute"],
            "queue wait and compute are separate"
        );
        assert!(
            range(children[0]).1 <= range(children[1]).0,
            "queued, then computed"
        );
        assert!(step["attributes"]["batch_size"].as_u64().unwrap() >= 1);
        assert!(step["attributes"]["model"].is_string());
    }
    assert_eq!(generate[0]["attributes"]["generated_tokens"], 200);

    let missing = client
        .get(server.url("/v1/traces/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status().as_u16(), 404);
}
