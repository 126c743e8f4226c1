//! Which pages and host names reach the server: foreign `Origin`s are refused (the websocket
//! before upgrading), foreign `Host`s on a loopback server too (DNS rebinding), listed
//! origins get CORS. A real `infergraph serve` on 127.0.0.1.

use crate::common;

use std::io::Write;
use std::net::TcpStream;

use common::server::{fixture_models, header, read_all, TestServer};

const LISTED: &str = "http://app.example:8080";
const FOREIGN: &str = "http://evil.example";

fn server() -> TestServer {
    TestServer::start(
        &fixture_models(),
        &format!("[auth]\nallowed_origins = [\"{LISTED}/\"]\n"),
    )
}

/// `GET path` with exactly the `Host` header `host` (and `headers`), over a plain socket.
fn get_with_host(server: &TestServer, path: &str, host: &str, headers: &str) -> String {
    let mut stream = TcpStream::connect(server.base.trim_start_matches("http://")).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: {host}\r\n{headers}connection: close\r\n\r\n"
    )
    .unwrap();
    read_all(stream)
}

#[actix_web::test]
async fn a_websocket_from_a_foreign_origin_is_refused_before_upgrading() {
    let server = server();
    let url = server.url("/v1/graph/ws");
    match awc::Client::new().ws(&url).origin(FOREIGN).connect().await {
        Err(awc::error::WsClientError::InvalidResponseStatus(status)) => {
            assert_eq!(status.as_u16(), 403)
        }
        other => panic!("{:?}", other.map(|(r, _)| r.status())),
    }
    // The page's own origin, and a listed one, upgrade.
    for origin in [server.base.clone(), LISTED.to_string()] {
        let (response, _socket) = awc::Client::new()
            .ws(&url)
            .origin(origin.as_str())
            .connect()
            .await
            .unwrap_or_else(|e| panic!("{origin}: {e}"));
        assert_eq!(response.status().as_u16(), 101, "{origin}");
    }
}

#[actix_web::test]
async fn a_cross_site_text_post_is_refused_and_a_listed_origin_gets_cors() {
    let server = server();
    let post = |origin: &str| {
        awc::Client::default()
            .post(server.url("/classify_generated_texts"))
            .insert_header(("origin", origin.to_string()))
            .insert_header(("content-type", "text/plain"))
            .send_body("I have an idea!")
    };
    let mut refused = post(FOREIGN).await.unwrap();
    assert_eq!(refused.status().as_u16(), 403);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error_type"], "forbidden_origin");
    assert!(
        body["error"].as_str().unwrap().contains("allowed_origins"),
        "{body}"
    );

    let listed = post(LISTED).await.unwrap();
    assert_eq!(listed.status().as_u16(), 200);
    assert_eq!(
        header(listed.headers(), "access-control-allow-origin").as_deref(),
        Some(LISTED)
    );
    // The page's own origin needs no CORS headers, and gets none.
    let own = post(&server.base).await.unwrap();
    assert_eq!(own.status().as_u16(), 200);
    assert!(header(own.headers(), "access-control-allow-origin").is_none());

    let preflight = |origin: &str| {
        awc::Client::default()
            .request(awc::http::Method::OPTIONS, server.url("/v1/graph"))
            .insert_header(("origin", origin.to_string()))
            .insert_header(("access-control-request-method", "POST"))
            .insert_header((
                "access-control-request-headers",
                "authorization, content-type",
            ))
            .send()
    };
    let answer = preflight(LISTED).await.unwrap();
    assert_eq!(answer.status().as_u16(), 204);
    let allowed = header(answer.headers(), "access-control-allow-headers").unwrap();
    assert!(allowed.contains("authorization") && allowed.contains("content-type"));
    assert_eq!(preflight(FOREIGN).await.unwrap().status().as_u16(), 403);
}

#[test]
fn a_loopback_server_refuses_a_foreign_host_name() {
    let server = server();
    let port = server.base.rsplit(':').next().unwrap().to_string();
    let rebound = get_with_host(&server, "/v1/models", &format!("evil.example:{port}"), "");
    assert!(rebound.starts_with("HTTP/1.1 403"), "{rebound}");
    assert!(rebound.contains("forbidden_host"), "{rebound}");
    for host in [format!("127.0.0.1:{port}"), format!("localhost:{port}")] {
        let answer = get_with_host(&server, "/v1/models", &host, "");
        assert!(answer.starts_with("HTTP/1.1 200"), "{host}: {answer}");
    }
}
