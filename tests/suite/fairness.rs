//! A fair share per client: a flooding key gets 429 past its share while another key's
//! requests are all answered. A real `infergraph serve` on 127.0.0.1.

use crate::common;

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::time::Duration;

use common::server::{demo_models, models_toml, TestServer, JSON_HEADER, SLOT_HOLDING_BODY};
use serde_json::json;

const FLOODER: &str = "k-flooder-0000000001";
const CALM: &str = "k-calm-000000000002";
const SHARE: usize = 2;

/// The status `stream` has been answered with, or `None` while its request still runs.
fn status_now(stream: &TcpStream) -> Option<u16> {
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).ok()?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[actix_web::test]
async fn a_flooding_client_gets_429_past_its_share_while_another_is_served() {
    let server = TestServer::start_with_env(
        &[("INFERGRAPH_API_KEYS", &format!("{FLOODER},{CALM}"))],
        &models_toml(&demo_models()),
        &format!("[auth]\nmax_in_flight_per_client = {SHARE}\n[limits]\nmax_new_tokens = 1000\n"),
    );
    // The flood: requests that each hold their place until their client goes away.
    let flood: Vec<TcpStream> = (0..SHARE + 4)
        .map(|_| {
            server.raw_request(
                "POST /v1/graph",
                &format!("{JSON_HEADER}authorization: Bearer {FLOODER}\r\n"),
                SLOT_HOLDING_BODY,
            )
        })
        .collect();
    // A refusal comes at once; an admitted request decodes for seconds. Everything up to the
    // calm client's requests runs well within that.
    std::thread::sleep(Duration::from_millis(500));
    let statuses: Vec<Option<u16>> = flood.iter().map(status_now).collect();
    let refused = statuses.iter().filter(|s| **s == Some(429)).count();
    let running = statuses.iter().filter(|s| s.is_none()).count();
    assert_eq!((running, refused), (SHARE, 4), "{statuses:?}");

    // A refusal says when to come back, and names the client's share.
    let refusal = server.raw_request(
        "POST /v1/graph",
        &format!("{JSON_HEADER}authorization: Bearer {FLOODER}\r\nconnection: close\r\n"),
        SLOT_HOLDING_BODY,
    );
    let answer = common::server::read_all(refusal);
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 1"),
        "{answer}"
    );
    assert!(answer.contains("its share"), "{answer}");

    let mut response = awc::Client::default()
        .get(server.url("/metrics"))
        .bearer_auth(CALM)
        .send()
        .await
        .unwrap();
    let text = String::from_utf8(response.body().limit(1 << 22).await.unwrap().to_vec()).unwrap();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    let refused_clients: Vec<_> = scrape
        .samples
        .iter()
        .filter(|s| {
            s.metric == "infergraph_client_requests_total"
                && s.labels.get("outcome") == Some("refused")
        })
        .map(|s| (s.labels.get("client").unwrap().to_string(), s.value.clone()))
        .collect();
    assert_eq!(
        refused_clients.len(),
        1,
        "only the flooder was refused: {refused_clients:?}"
    );
    assert!(
        refused_clients[0].0.starts_with("key-"),
        "{refused_clients:?}"
    );
    assert!(
        !text.contains(FLOODER) && !text.contains(CALM),
        "no key in the metrics"
    );
    let in_flight: f64 = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "infergraph_client_in_flight")
        .map(|s| match s.value {
            prometheus_parse::Value::Gauge(v) => v,
            _ => 0.0,
        })
        .sum();
    assert_eq!(
        in_flight,
        (SHARE + 1) as f64,
        "the flood's two and this scrape"
    );

    // The other client is admitted and answered, every request.
    for i in 0..4 {
        let mut response = awc::Client::default()
            .post(server.url("/v1/models/gpt2/generate"))
            .bearer_auth(CALM)
            .timeout(Duration::from_secs(60))
            .send_json(&json!({"text": format!("Request {i}"), "max_new_tokens": 3}))
            .await
            .unwrap();
        let body = response.body().await.unwrap();
        assert_eq!(response.status().as_u16(), 200, "{body:?}");
    }

    // The flooder's places come back when its requests go away.
    drop(flood);
    common::wait_until(
        "the flood's places are given back",
        Duration::from_secs(10),
        || {
            let request = server.raw_request(
                "GET /v1/graphs",
                &format!("authorization: Bearer {FLOODER}\r\nconnection: close\r\n"),
                "",
            );
            common::server::read_all(request).starts_with("HTTP/1.1 200")
        },
    );
}
