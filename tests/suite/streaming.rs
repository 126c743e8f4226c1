//! Streaming over a real websocket client and a real SSE client, against the real server.

use crate::common;

use std::time::Duration;

use awc::ws;
use common::server::{
    demo_models, fixture_models, total, TestServer, JSON_HEADER, SLOT_HOLDING_BODY,
};
use common::wait_until;
use common::ws::{connect, events_until_last, next_event, send};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};

/// The order invariants of one request's events, and token texts adding up to the text.
fn check_stream(events: &[Value], prompt: &str, models: &[&str]) {
    assert_eq!(events.first().unwrap()["type"], "started");
    assert_eq!(
        events.last().unwrap()["type"],
        "done",
        "{:?}",
        events.last()
    );
    let position = |pred: &dyn Fn(&Value) -> bool| events.iter().position(pred);
    let first_classified = position(&|e| e["type"] == "classified").unwrap();
    for model in models {
        let generated = position(&|e| e["type"] == "generated" && e["model"] == *model).unwrap();
        assert!(
            generated < first_classified,
            "every generated before the first classified"
        );
        let tokens: Vec<&Value> = events
            .iter()
            .filter(|e| e["type"] == "token" && e["model"] == *model)
            .collect();
        let last_token = events
            .iter()
            .rposition(|e| e["type"] == "token" && e["model"] == *model)
            .unwrap();
        assert!(
            last_token < generated,
            "{model}: its tokens come before its generated event"
        );
        let indices: Vec<u64> = tokens
            .iter()
            .map(|t| t["index"].as_u64().unwrap())
            .collect();
        assert_eq!(indices, (0..tokens.len() as u64).collect::<Vec<_>>());
        let streamed: String = tokens.iter().map(|t| t["text"].as_str().unwrap()).collect();
        let text = events[generated]["text"].as_str().unwrap();
        assert_eq!(
            format!("{prompt}{streamed}"),
            text,
            "{model}: the tokens add up to the generated text"
        );
    }
    let classified: Vec<&str> = events
        .iter()
        .filter(|e| e["type"] == "classified")
        .map(|e| e["model"].as_str().unwrap())
        .collect();
    assert_eq!(classified, models, "classifications in generator order");
}

const MODELS: [&str; 3] = ["gpt2", "distilgpt2", "gpt2-medium"];

async fn v1_graph(server: &TestServer, body: &Value) -> Value {
    let mut response = awc::Client::default()
        .post(server.url("/v1/graph"))
        .send_json(body)
        .await
        .unwrap();
    response.json().await.unwrap()
}

#[actix_web::test]
async fn websocket_events_follow_the_graph_and_done_equals_v1_graph() {
    let server = TestServer::start(&fixture_models(), "");
    let mut socket = connect(&server).await;
    // A prompt whose continuations hold multi-byte and incomplete characters.
    let prompt = "Café 😀 naïve";
    send(
        &mut socket,
        json!({"id": "r1", "text": prompt, "max_new_tokens": 12}),
    )
    .await;
    let events = events_until_last(&mut socket, "r1").await;
    check_stream(&events, prompt, &MODELS);
    let done = events.last().unwrap();
    let reference = v1_graph(&server, &json!({"text": prompt, "max_new_tokens": 12})).await;
    assert_eq!(done["results"], reference["results"]);
    assert!(done["timings"]["total_ms"].as_f64().unwrap() > 0.0);
}

#[actix_web::test]
async fn sse_streams_the_same_events_to_a_plain_http_client() {
    let server = TestServer::start(&fixture_models(), "");
    let prompt = "Hello, my name is";
    let body = json!({"text": prompt, "max_new_tokens": 10});
    let mut response = awc::Client::default()
        .post(server.url("/v1/graph/stream"))
        .send_json(&body)
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response.headers().get("content-type").unwrap(),
        "text/event-stream"
    );
    let text = String::from_utf8(response.body().limit(1 << 22).await.unwrap().to_vec()).unwrap();
    let events: Vec<Value> = text
        .split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            let kind = block
                .lines()
                .find_map(|l| l.strip_prefix("event: "))
                .unwrap();
            let data: Value = serde_json::from_str(
                block
                    .lines()
                    .find_map(|l| l.strip_prefix("data: "))
                    .unwrap(),
            )
            .unwrap();
            assert_eq!(data["type"], kind, "the SSE event name is the event's type");
            data
        })
        .collect();
    check_stream(&events, prompt, &MODELS);
    let reference = v1_graph(&server, &body).await;
    assert_eq!(events.last().unwrap()["results"], reference["results"]);
}

#[actix_web::test]
async fn two_requests_on_one_connection_both_complete() {
    let server = TestServer::start(&fixture_models(), "");
    let mut socket = connect(&server).await;
    send(
        &mut socket,
        json!({"id": "a", "text": "I have an idea!", "max_new_tokens": 6}),
    )
    .await;
    send(
        &mut socket,
        json!({"id": "b", "text": "The quick brown fox", "max_new_tokens": 9}),
    )
    .await;
    let mut by_id: std::collections::HashMap<String, Vec<Value>> = Default::default();
    let mut finished = 0;
    while finished < 2 {
        let event = next_event(&mut socket).await;
        let id = event["id"].as_str().unwrap().to_string();
        if event["type"] == "done" {
            finished += 1;
        }
        by_id.entry(id).or_default().push(event);
    }
    check_stream(&by_id["a"], "I have an idea!", &MODELS);
    check_stream(&by_id["b"], "The quick brown fox", &MODELS);
}

#[actix_web::test]
async fn malformed_and_oversized_frames_get_error_events_and_the_connection_lives_on() {
    let server = TestServer::start(&fixture_models(), "[limits]\nmax_body_bytes = 4096\n");
    let mut socket = connect(&server).await;
    socket
        .send(ws::Message::Text("{not json".into()))
        .await
        .unwrap();
    let event = next_event(&mut socket).await;
    assert_eq!(
        (event["type"].as_str(), event["error_type"].as_str()),
        (Some("error"), Some("malformed_json"))
    );
    send(&mut socket, json!({"text": "x".repeat(5000)})).await;
    let event = next_event(&mut socket).await;
    assert_eq!(event["error_type"], "payload_too_large");
    send(
        &mut socket,
        json!({"id": "bad", "text": "hi", "top_p": 3.0}),
    )
    .await;
    let event = next_event(&mut socket).await;
    assert_eq!(
        (event["id"].as_str(), event["error_type"].as_str()),
        (Some("bad"), Some("validation"))
    );
    // Ping is answered, and a good request still runs.
    socket
        .send(ws::Message::Ping("are you there".into()))
        .await
        .unwrap();
    loop {
        if let ws::Frame::Pong(bytes) = socket.next().await.unwrap().unwrap() {
            assert_eq!(&bytes[..], b"are you there");
            break;
        }
    }
    send(
        &mut socket,
        json!({"id": "good", "text": "Hello", "max_new_tokens": 3}),
    )
    .await;
    let events = events_until_last(&mut socket, "good").await;
    assert_eq!(events.last().unwrap()["type"], "done");
}

const LONG: &str = "[limits]\nmax_new_tokens = 1000\n";

#[actix_web::test]
async fn cancel_stops_the_generation() {
    let server = TestServer::start(&demo_models(), LONG);
    let mut socket = connect(&server).await;
    send(&mut socket, json!({"id": "long", "text": "I have an idea!", "max_new_tokens": 1000, "min_new_tokens": 1000})).await;
    loop {
        if next_event(&mut socket).await["type"] == "token" {
            break;
        }
    }
    send(&mut socket, json!({"type": "cancel", "id": "long"})).await;
    let events = events_until_last(&mut socket, "long").await;
    let last = events.last().unwrap();
    assert_eq!(
        (last["type"].as_str(), last["error_type"].as_str()),
        (Some("error"), Some("cancelled")),
        "{last}"
    );
    let after = server.engines();
    assert_eq!(total(&after, "active"), 0, "{after}");
    assert_eq!(
        total(&after, "completed"),
        0,
        "no generation ran to its end: {after}"
    );
}

#[actix_web::test]
async fn closing_the_connection_mid_stream_frees_the_slots() {
    let server = TestServer::start(&demo_models(), LONG);
    let mut socket = connect(&server).await;
    send(
        &mut socket,
        json!({"text": "I have an idea!", "max_new_tokens": 1000, "min_new_tokens": 1000}),
    )
    .await;
    loop {
        if next_event(&mut socket).await["type"] == "token" {
            break;
        }
    }
    socket.close().await.unwrap();
    drop(socket);
    wait_until("the slots are free", Duration::from_secs(30), || {
        total(&server.engines(), "active") == 0
    });
    let after = server.engines();
    assert_eq!(total(&after, "cancelled"), 3, "{after}");
    assert_eq!(total(&after, "completed"), 0, "{after}");
}

#[test]
fn closing_an_sse_stream_mid_way_frees_the_slots() {
    use std::io::Read;
    let server = TestServer::start(&demo_models(), LONG);
    let mut stream = server.raw_request("POST /v1/graph/stream", JSON_HEADER, SLOT_HOLDING_BODY);
    let mut first = [0u8; 256];
    let n = stream.read(&mut first).unwrap();
    assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"));
    wait_until("the request runs", Duration::from_secs(30), || {
        total(&server.engines(), "active") == 3
    });
    drop(stream);
    wait_until("the slots are free", Duration::from_secs(30), || {
        total(&server.engines(), "active") == 0
    });
    let after = server.engines();
    assert_eq!(
        (total(&after, "cancelled"), total(&after, "completed")),
        (3, 0),
        "{after}"
    );
}

#[actix_web::test]
async fn overload_is_refused_with_429_before_the_stream_opens() {
    let server = TestServer::start(
        &demo_models(),
        &format!("{LONG}[engine]\nmax_batch = 1\nqueue_capacity = 1\n"),
    );
    // One request runs and one waits in every generator's queue: the queues are full.
    let running = server.raw_request("POST /v1/graph", JSON_HEADER, SLOT_HOLDING_BODY);
    wait_until("one request runs", Duration::from_secs(30), || {
        total(&server.engines(), "active") == 3
    });
    let queued = server.raw_request("POST /v1/graph", JSON_HEADER, SLOT_HOLDING_BODY);
    wait_until("one request waits", Duration::from_secs(30), || {
        total(&server.engines(), "queued") == 3
    });

    let response = awc::Client::default()
        .post(server.url("/v1/graph/stream"))
        .send_json(&json!({"text": "Hello"}))
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 429);
    assert_eq!(response.headers().get("retry-after").unwrap(), "1");

    match awc::Client::new()
        .ws(server.url("/v1/graph/ws"))
        .connect()
        .await
    {
        Err(awc::error::WsClientError::InvalidResponseStatus(status)) => {
            assert_eq!(status.as_u16(), 429)
        }
        other => panic!(
            "expected a 429 instead of the upgrade, got {:?}",
            other.map(|(r, _)| r.status())
        ),
    }
    drop((running, queued));
    wait_until("the slots are free", Duration::from_secs(30), || {
        total(&server.engines(), "active") == 0
    });
}
