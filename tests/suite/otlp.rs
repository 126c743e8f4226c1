//! Traces reach an OpenTelemetry collector over OTLP/HTTP (JSON), when one is configured.

use crate::common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;

use common::server::{fixture_models, header, TestServer};
use serde_json::{json, Value};

/// A one-request collector: answers 200 and hands back the path and the JSON body.
fn receive_one(listener: TcpListener) -> std::thread::JoinHandle<(String, Value)> {
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream);
        let mut request_line = String::new();
        reader.read_line(&mut request_line).unwrap();
        let mut length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line.trim().is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap();
                }
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        let mut stream = reader.into_inner();
        stream
            .write_all(
                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: application/json\r\n\r\n{}",
            )
            .unwrap();
        let path = request_line.split_whitespace().nth(1).unwrap().to_string();
        (path, serde_json::from_slice(&body).unwrap())
    })
}

#[actix_web::test]
async fn every_graph_request_is_exported_as_an_otlp_trace() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let collector = format!("http://{}/v1/traces", listener.local_addr().unwrap());
    let received = receive_one(listener);
    let server = TestServer::start(
        &fixture_models(),
        &format!("[otlp]\nendpoint = \"{collector}\"\nservice_name = \"graph-under-test\"\n"),
    );

    let response = awc::Client::default()
        .post(server.url("/v1/graph"))
        .send_json(&json!({"text": "I have an idea!", "max_new_tokens": 4}))
        .await
        .unwrap();
    let trace_id = header(response.headers(), "x-trace-id").unwrap();

    let (path, export) = received.join().unwrap();
    assert_eq!(path, "/v1/traces");
    let resource = &export["resourceSpans"][0];
    assert_eq!(
        resource["resource"]["attributes"][0],
        json!({"key": "service.name", "value": {"stringValue": "graph-under-test"}})
    );
    let spans = resource["scopeSpans"][0]["spans"].as_array().unwrap();
    assert_eq!(
        spans.len(),
        2 + 3 * 3 + 3 * 3,
        "request, graph, and each step with its queue and compute"
    );
    let ids: Vec<&str> = spans
        .iter()
        .map(|s| s["spanId"].as_str().unwrap())
        .collect();
    for span in spans {
        assert_eq!(span["traceId"], trace_id.as_str());
        assert_eq!(span["spanId"].as_str().unwrap().len(), 16);
        let parent = span["parentSpanId"].as_str().unwrap();
        assert!(
            parent.is_empty() == (span["name"] == "request"),
            "only the root has no parent"
        );
        assert!(
            parent.is_empty() || ids.contains(&parent),
            "every parent is in the trace"
        );
        let start: u64 = span["startTimeUnixNano"].as_str().unwrap().parse().unwrap();
        let end: u64 = span["endTimeUnixNano"].as_str().unwrap().parse().unwrap();
        assert!(start <= end && start > 1_600_000_000_000_000_000);
    }
    let generate = spans.iter().find(|s| s["name"] == "generate").unwrap();
    let attribute = |key: &str| {
        generate["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["key"] == key)
            .cloned()
    };
    assert_eq!(
        attribute("infergraph.generated_tokens").unwrap()["value"],
        json!({"intValue": "4"})
    );
}
