//! API keys and node keys: every route but the public list needs a key, on a graph node and
//! on a model node; keys rotate through the key file; the `openai` client meets them as it
//! meets OpenAI's. Real `infergraph serve` processes on 127.0.0.1.

use crate::common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use awc::http::Method;
use common::prometheus;
use common::server::{
    fixture_models, fixtures_with_gpt2_at, gpt2_alone, header, models_toml, serve_refuses,
    TestServer,
};
use serde_json::{json, Value};

const GOOD: &str = "k-good-0123456789";
const OTHER_GOOD: &str = "k-env-9876543210";
const REVOKED: &str = "k-revoked-55555";
const WRONG: &str = "k-wrong-00000000";
const NODE_KEY: &str = "n-node-abcdef0123";

/// The routes that answer without a key (`/metrics` only when `[auth] public_metrics`).
const PUBLIC: [&str; 3] = ["/livez", "/readyz", "/healthz"];

/// The page at `/` answers these without a key (it holds no data, and asks for the key);
/// its other methods are refused like any route's.
const PAGE_METHODS: [&str; 2] = ["GET", "HEAD"];

fn is_public(method: &str, path: &str) -> bool {
    PUBLIC.contains(&path) || (path == "/" && PAGE_METHODS.contains(&method))
}

/// Every method a client might send, so a route's other methods are walked too.
const METHODS: [&str; 7] = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"];

/// Paths no route serves, and spellings of public paths that must not pass as public.
const UNROUTED: [&str; 8] = [
    "/nope",
    "//",
    "/index.html",
    "/v1/nope",
    "/livez/",
    "/LIVEZ",
    "/%6civez",
    "/v1/models/gpt2/generate/",
];

/// Writes `keys` to `file` the way an operator's tool should: a new file renamed over the old,
/// so the server never reads half of it.
fn write_keys(file: &Path, keys: &[&str]) {
    let next = file.with_extension("next");
    std::fs::write(&next, format!("# API keys\n{}\n", keys.join("\n"))).unwrap();
    std::fs::rename(&next, file).unwrap();
}

/// A graph node on the fixtures whose keys are `OTHER_GOOD` (environment) and `keys` (file).
fn keyed_graph_node(dir: &Path, keys: &[&str]) -> TestServer {
    let file = dir.join("api-keys");
    write_keys(&file, keys);
    TestServer::start_with_env(
        &[("INFERGRAPH_API_KEYS", OTHER_GOOD)],
        &models_toml(&fixture_models()),
        &format!("[auth]\nkeys_file = {:?}\n", file),
    )
}

/// What a walk's request got back.
struct Answer {
    status: u16,
    body: Value,
    www_authenticate: Option<String>,
}

/// Sends `method path` with `key` as a bearer token (none when `None`); a body-taking method
/// sends `{}` as JSON, which every route refuses or answers quickly.
async fn call(server: &TestServer, method: &str, path: &str, key: Option<&str>) -> Answer {
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .finish();
    let mut request = client.request(
        Method::from_bytes(method.as_bytes()).unwrap(),
        server.url(path),
    );
    if let Some(key) = key {
        request = request.insert_header(("authorization", format!("Bearer {key}")));
    }
    let mut response = if ["POST", "PUT", "PATCH"].contains(&method) {
        request
            .insert_header(("content-type", "application/json"))
            .send_body("{}")
            .await
    } else {
        request.send().await
    }
    .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let www_authenticate = header(response.headers(), "www-authenticate");
    let body = response
        .body()
        .limit(1 << 22)
        .await
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null);
    Answer {
        status: response.status().as_u16(),
        body,
        www_authenticate,
    }
}

/// The paths to walk: the router's own list (so a new route is walked without editing this
/// test), checked against `/openapi.json`, plus paths no route serves.
async fn walked_paths(server: &TestServer, key: &str) -> Vec<String> {
    let routes = infergraph::http::routes::paths();
    let answer = call(server, "GET", "/openapi.json", Some(key)).await;
    assert_eq!(answer.status, 200);
    let documented: BTreeSet<&str> = answer.body["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let routed: BTreeSet<&str> = routes.iter().map(|(path, _)| *path).collect();
    assert_eq!(
        documented, routed,
        "the document and the router list the same routes"
    );
    routes
        .iter()
        .map(|(path, _)| {
            path.replace("{name}", "gpt2")
                .replace("{id}", "no-such-trace")
        })
        .chain(UNROUTED.iter().map(|p| p.to_string()))
        .collect()
}

/// Walks every path with every method: with each key in `refused`, only `PUBLIC` and the
/// page's GET and HEAD answer (and the rest is a 401 in the API's error shape); with `good`,
/// nothing is refused for its key.
/// Nothing answers 5xx either way.
async fn walk(server: &TestServer, good: &str, refused: &[Option<&str>]) {
    let paths = walked_paths(server, good).await;
    for path in &paths {
        for method in METHODS {
            for key in refused {
                let answer = call(server, method, path, *key).await;
                let what = format!("{method} {path} with key {key:?}");
                if is_public(method, path) {
                    assert_ne!(answer.status, 401, "{what}: a public route");
                    if method == "GET" {
                        assert_eq!(answer.status, 200, "{what}");
                    }
                    continue;
                }
                assert_eq!(answer.status, 401, "{what}");
                assert_eq!(
                    answer.www_authenticate.as_deref(),
                    Some("Bearer realm=\"infergraph\""),
                    "{what}"
                );
                if method != "HEAD" {
                    assert_eq!(answer.body["error_type"], "unauthorized", "{what}");
                    assert!(answer.body["error"].is_string(), "{what}");
                }
            }
            let answer = call(server, method, path, Some(good)).await;
            let what = format!("{method} {path} with the good key");
            assert_ne!(answer.status, 401, "{what}: {}", answer.body);
            assert!(
                answer.status < 500,
                "{what}: {} {}",
                answer.status,
                answer.body
            );
        }
    }
}

/// The websocket upgrade: refused without a key (before upgrading), accepted with one in the
/// `Authorization` header or, as a browser sends it, in the subprotocol offer.
async fn check_websocket(server: &TestServer, good: &str) {
    let url = server.url("/v1/graph/ws");
    for offer in [
        vec!["infergraph".to_string()],
        vec![format!("infergraph.key.{WRONG}")],
    ] {
        match awc::Client::new()
            .ws(&url)
            .protocols(&offer)
            .connect()
            .await
        {
            Err(awc::error::WsClientError::InvalidResponseStatus(status)) => {
                assert_eq!(status.as_u16(), 401, "offer {offer:?}")
            }
            other => panic!("offer {offer:?}: {:?}", other.map(|(r, _)| r.status())),
        }
    }
    let (response, _socket) = awc::Client::new()
        .ws(&url)
        .bearer_auth(good)
        .connect()
        .await
        .expect("an upgrade with the key in Authorization");
    assert_eq!(response.status().as_u16(), 101);
    let (response, _socket) = awc::Client::new()
        .ws(&url)
        .protocols(["infergraph".to_string(), format!("infergraph.key.{good}")])
        .connect()
        .await
        .expect("an upgrade with the key in the subprotocol offer");
    assert_eq!(response.status().as_u16(), 101);
    assert_eq!(
        header(response.headers(), "sec-websocket-protocol").as_deref(),
        Some("infergraph"),
        "the answer names the plain protocol, never the key"
    );
}

#[actix_web::test]
async fn on_a_graph_node_only_the_public_routes_answer_without_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let server = keyed_graph_node(dir.path(), &[REVOKED, GOOD]);
    write_keys(&dir.path().join("api-keys"), &[GOOD]);
    // The revoked key must stop working before the walk relies on it being refused.
    let deadline = Instant::now() + Duration::from_secs(5);
    while call(&server, "GET", "/v1/models", Some(REVOKED))
        .await
        .status
        != 401
    {
        assert!(Instant::now() < deadline, "the revoked key still works");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    walk(&server, GOOD, &[None, Some(WRONG), Some(REVOKED)]).await;
    check_websocket(&server, GOOD).await;
    // The key from the environment works beside the file's.
    assert_eq!(
        call(&server, "GET", "/v1/models", Some(OTHER_GOOD))
            .await
            .status,
        200
    );
    // `x-api-key` is the other header a client may use.
    let mut response = awc::Client::default()
        .get(server.url("/v1/models"))
        .insert_header(("x-api-key", GOOD))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status().as_u16(),
        200,
        "{:?}",
        response.body().await
    );
}

#[actix_web::test]
async fn refusals_are_counted_in_metrics_and_no_key_is_logged() {
    let dir = tempfile::tempdir().unwrap();
    let server = keyed_graph_node(dir.path(), &[GOOD]);
    for key in [None, Some(WRONG), Some(WRONG)] {
        assert_eq!(call(&server, "GET", "/v1/engines", key).await.status, 401);
    }
    assert_eq!(
        call(&server, "GET", "/metrics", None).await.status,
        401,
        "not public unless set"
    );
    let mut response = awc::Client::default()
        .get(server.url("/metrics"))
        .bearer_auth(GOOD)
        .send()
        .await
        .unwrap();
    let text = String::from_utf8(response.body().await.unwrap().to_vec()).unwrap();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    let refusals = |reason| {
        prometheus::value(
            &scrape,
            "infergraph_auth_refusals_total",
            &[("reason", reason)],
        )
    };
    assert_eq!(
        refusals("missing"),
        2.0,
        "the three /v1/engines and the /metrics call"
    );
    assert_eq!(refusals("invalid"), 2.0);
    assert_eq!(
        prometheus::value(&scrape, "infergraph_auth_keys", &[("kind", "api")]),
        2.0
    );
    assert!(server.log_position(WRONG).is_none() && server.log_position(GOOD).is_none());
}

#[actix_web::test]
async fn metrics_can_be_made_public_for_a_prometheus_without_a_key() {
    let server = TestServer::start_with_env(
        &[("INFERGRAPH_API_KEYS", GOOD)],
        &models_toml(&fixture_models()),
        "[auth]\npublic_metrics = true\n",
    );
    let scrape = prometheus::scrape(&server).await;
    assert_eq!(
        prometheus::value(&scrape, "infergraph_auth_keys", &[("kind", "api")]),
        1.0
    );
    assert_eq!(call(&server, "GET", "/v1/engines", None).await.status, 401);
}

#[actix_web::test]
async fn a_key_removed_from_the_key_file_stops_working_within_a_second_and_a_new_one_starts() {
    let dir = tempfile::tempdir().unwrap();
    let server = keyed_graph_node(dir.path(), &[REVOKED]);
    assert_eq!(
        call(&server, "GET", "/v1/graphs", Some(REVOKED))
            .await
            .status,
        200
    );
    assert_eq!(
        call(&server, "GET", "/v1/graphs", Some(GOOD)).await.status,
        401
    );
    let rotated = Instant::now();
    write_keys(&dir.path().join("api-keys"), &[GOOD]);
    loop {
        let old = call(&server, "GET", "/v1/graphs", Some(REVOKED))
            .await
            .status;
        let new = call(&server, "GET", "/v1/graphs", Some(GOOD)).await.status;
        if (old, new) == (401, 200) {
            break;
        }
        assert!(
            rotated.elapsed() < Duration::from_secs(1),
            "1 s after the rotation the old key answers {old}, the new one {new}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A file that cannot be read keeps the keys in force rather than locking everyone out.
    std::fs::remove_file(dir.path().join("api-keys")).unwrap();
    assert!(server
        .wait_for_log("the keys in force stay", Duration::from_secs(5))
        .is_some());
    assert_eq!(
        call(&server, "GET", "/v1/graphs", Some(GOOD)).await.status,
        200
    );
    // SIGHUP re-reads at once (the periodic re-read aside).
    write_keys(&dir.path().join("api-keys"), &[GOOD, REVOKED]);
    server.signal("HUP");
    assert!(server
        .wait_for_log("SIGHUP: re-reading the key files", Duration::from_secs(5))
        .is_some());
}

#[actix_web::test]
async fn the_official_openai_client_works_with_the_key_and_raises_authentication_error_without() {
    let server = TestServer::start_with_env(
        &[("INFERGRAPH_API_KEYS", GOOD)],
        &models_toml(&fixture_models()),
        "",
    );
    let stdout = common::openai_check("auth_check.py", &[&server.base, "gpt2", GOOD]);
    let report: Value = serde_json::from_slice(&stdout).unwrap();
    assert_eq!(report["refusals"], 6);
}

#[test]
fn a_server_on_a_non_loopback_address_without_keys_refuses_to_start_and_says_how_to_set_them() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    let models = models_toml(&fixture_models());
    std::fs::write(
        &config,
        format!("[server]\nhost = \"0.0.0.0\"\nport = 0\n{models}"),
    )
    .unwrap();
    let stderr = serve_refuses(&config, &[]);
    for needle in [
        "0.0.0.0",
        "INFERGRAPH_API_KEYS",
        "keys_file",
        "mode = \"none\"",
    ] {
        assert!(stderr.contains(needle), "{needle:?} not in: {stderr}");
    }
    // `--host` wins over the file, and is checked the same way.
    std::fs::write(&config, format!("[server]\nport = 0\n{models}")).unwrap();
    let stderr = serve_refuses(&config, &["--host", "::"]);
    assert!(stderr.contains("INFERGRAPH_API_KEYS"), "{stderr}");
    // A key file that is not there stops the server rather than running it open.
    let missing = dir.path().join("no-such-file");
    std::fs::write(
        &config,
        format!("[server]\nport = 0\n[auth]\nkeys_file = {missing:?}\n{models}"),
    )
    .unwrap();
    let stderr = serve_refuses(&config, &[]);
    assert!(stderr.contains("cannot read it"), "{stderr}");
}

/// A model node for `gpt2` alone, which accepts `NODE_KEY` (and no user's key).
fn keyed_model_node() -> TestServer {
    TestServer::start_with_env(
        &[("INFERGRAPH_NODE_KEY", NODE_KEY)],
        &gpt2_alone(),
        "[limits]\nmax_new_tokens = 1000\n",
    )
}

/// A graph node on the fixtures whose `gpt2` is `node`'s, sending `node_key` on each hop.
fn graph_node_of(node: &TestServer, node_key: Option<&str>) -> TestServer {
    let toml = fixtures_with_gpt2_at(&node.base);
    let mut env = vec![("INFERGRAPH_API_KEYS", GOOD)];
    env.extend(node_key.map(|key| ("INFERGRAPH_NODE_KEY", key)));
    TestServer::start_with_env(
        &env,
        &toml,
        "[remote]\nconnect_timeout_ms = 1000\nread_timeout_ms = 5000\nhealth_interval_ms = 200\n",
    )
}

#[actix_web::test]
async fn on_a_model_node_with_a_node_key_only_the_public_routes_answer_without_it() {
    let node = keyed_model_node();
    // A user's key (one a graph node accepts) is no key here.
    walk(&node, NODE_KEY, &[None, Some(WRONG), Some(GOOD)]).await;
}

#[actix_web::test]
async fn a_graph_node_with_the_node_key_serves_the_split_graph_and_one_without_gets_a_named_503() {
    let node = keyed_model_node();
    let graph = graph_node_of(&node, Some(NODE_KEY));
    common::wait_until("the model node is ready", Duration::from_secs(30), || {
        graph.is_ready()
    });
    let request = json!({"text": "I have an idea!", "max_new_tokens": 3});
    let mut response = awc::Client::default()
        .post(graph.url("/v1/graph"))
        .bearer_auth(GOOD)
        .send_json(&request)
        .await
        .unwrap();
    let body: Value = response.json().limit(1 << 22).await.unwrap();
    assert_eq!(response.status().as_u16(), 200, "{body}");
    assert_eq!(body["results"].as_array().unwrap().len(), 3, "{body}");
    // The node's description reached the graph node too (`/v1/models` on the hop).
    let mut response = awc::Client::default()
        .get(graph.url("/v1/models"))
        .bearer_auth(GOOD)
        .send()
        .await
        .unwrap();
    let models: Value = response.json().limit(1 << 22).await.unwrap();
    let gpt2 = models["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "gpt2")
        .unwrap()
        .clone();
    assert_eq!(gpt2["location"], "remote", "{gpt2}");
    // Without `[auth] expose_internals`, no path or replica URL is shown.
    assert_eq!(gpt2["replicas"][0]["url"], "replica-1", "{gpt2}");
    for model in models["models"].as_array().unwrap() {
        let path = model["path"].as_str().unwrap();
        assert!(!path.contains('/'), "{model}");
    }
    assert!(!models.to_string().contains(&node.base), "{models}");

    let stranger = graph_node_of(&node, None);
    common::wait_until("the model node is ready", Duration::from_secs(30), || {
        stranger.is_ready()
    });
    let started = Instant::now();
    let mut response = awc::Client::default()
        .post(stranger.url("/v1/models/gpt2/generate"))
        .bearer_auth(GOOD)
        .send_json(&json!({"text": "I have an idea!", "max_new_tokens": 3}))
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    assert_eq!(response.status().as_u16(), 503, "{body}");
    assert_eq!(body["error_type"], "model_unavailable");
    assert!(
        body["error"].as_str().unwrap().contains("node key"),
        "{body}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a fast refusal, not a retry loop"
    );
}

#[actix_web::test]
async fn with_auth_on_traces_answer_admin_keys_only() {
    const ADMIN: &str = "k-admin-0123456789";
    let server = TestServer::start_with_env(
        &[
            ("INFERGRAPH_API_KEYS", GOOD),
            ("INFERGRAPH_ADMIN_KEYS", ADMIN),
        ],
        &models_toml(&fixture_models()),
        "",
    );
    let mut response = awc::Client::default()
        .post(server.url("/v1/graph"))
        .bearer_auth(GOOD)
        .send_json(&json!({"text": "I have an idea!", "max_new_tokens": 2}))
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let trace_id = header(response.headers(), "x-trace-id").unwrap();
    let _ = response.body().await;

    let paths = [
        "/v1/traces".to_string(),
        format!("/v1/traces/{trace_id}"),
        // The router reads %74 as `t`; the check reads the path as the router does.
        "/v1/%74races".to_string(),
    ];
    for path in &paths {
        let answer = call(&server, "GET", path, Some(GOOD)).await;
        assert_eq!(answer.status, 403, "{path}: {}", answer.body);
        assert_eq!(answer.body["error_type"], "admin_only", "{path}");
        assert!(answer.body["error"]
            .as_str()
            .unwrap()
            .contains("INFERGRAPH_ADMIN_KEYS"));
        assert_eq!(call(&server, "GET", path, None).await.status, 401, "{path}");
    }
    let answer = call(&server, "GET", "/v1/traces", Some(ADMIN)).await;
    assert_eq!(answer.status, 200);
    assert!(
        answer.body.to_string().contains(&trace_id),
        "{}",
        answer.body
    );
    let answer = call(
        &server,
        "GET",
        &format!("/v1/traces/{trace_id}"),
        Some(ADMIN),
    )
    .await;
    assert_eq!(answer.status, 200);
    // An admin key is a user's key everywhere else.
    assert_eq!(
        call(&server, "GET", "/v1/models", Some(ADMIN)).await.status,
        200
    );
}
