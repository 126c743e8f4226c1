//! TLS: a model node over mutual TLS behind its node key, a graph node that does not trust a
//! node's certificate, certificates renewed without a restart, the health probe over TLS, and
//! bad certificate files refused at start. The CAs are made here (rcgen), the servers are real
//! `infergraph serve` processes, and the clients are rustls on both sides.

use crate::common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::server::{fixtures_with_gpt2_at, free_port, gpt2_alone, serve_refuses, TestServer};
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{json, Value};

const USER_KEY: &str = "k-user-0123456789";
const NODE_KEY: &str = "n-node-abcdef0123";

/// A test CA and the files of the certificates it signs, in a folder of its own.
struct TestCa {
    cert: rcgen::Certificate,
    key: KeyPair,
    dir: PathBuf,
}

impl TestCa {
    fn new(dir: &Path, name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let dir = dir.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("ca.pem"), cert.pem()).unwrap();
        Self { cert, key, dir }
    }

    fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// A certificate for 127.0.0.1, good for serving and for calling, written as
    /// `{name}.pem` and `{name}.key`; returns both paths.
    fn issue(&self, name: &str) -> (PathBuf, PathBuf) {
        let mut params = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        let (cert_file, key_file) = (
            self.dir.join(format!("{name}.pem")),
            self.dir.join(format!("{name}.key")),
        );
        std::fs::write(&cert_file, cert.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        (cert_file, key_file)
    }
}

/// One HTTP/1.1 request over TLS to `base` (`https://127.0.0.1:PORT`), trusting `ca` and
/// presenting `client` if given; the whole answer, or why the connection failed.
fn https(
    base: &str,
    request: &str,
    ca: &Path,
    client: Option<&(PathBuf, PathBuf)>,
) -> Result<String, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let config = match client {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_file_iter(cert)
                    .unwrap()
                    .map(Result::unwrap)
                    .collect(),
                PrivateKeyDer::from_pem_file(key).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    let address = base.strip_prefix("https://").expect("an https base URL");
    let tcp = TcpStream::connect(address).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let connection = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut stream = rustls::StreamOwned::new(connection, tcp);
    stream
        .write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    match stream.read_to_end(&mut answer) {
        // A server may close without a TLS close alert once it has answered.
        Err(e) if answer.is_empty() || e.kind() != std::io::ErrorKind::UnexpectedEof => {
            Err(e.to_string())
        }
        _ => Ok(String::from_utf8_lossy(&answer).into_owned()),
    }
}

fn get(path: &str, key: Option<&str>) -> String {
    let auth = key.map_or(String::new(), |k| format!("authorization: Bearer {k}\r\n"));
    format!("GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n{auth}connection: close\r\n\r\n")
}

fn post(path: &str, key: &str, body: &Value) -> String {
    let body = body.to_string();
    format!(
        "POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {key}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn status(answer: &str) -> u16 {
    answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn server_tls(cert: &Path, key: &Path, client_ca: Option<&Path>) -> String {
    let mut toml = format!("[server.tls]\ncert = {cert:?}\nkey = {key:?}\n");
    if let Some(ca) = client_ca {
        toml.push_str(&format!("client_ca = {ca:?}\n"));
    }
    toml
}

/// A model node serving `gpt2` over TLS with `identity`, requiring client certificates of
/// `client_ca`, accepting `NODE_KEY` and no user's key.
fn tls_model_node(identity: &(PathBuf, PathBuf), client_ca: &Path) -> TestServer {
    TestServer::start_with_env(
        &[("INFERGRAPH_NODE_KEY", NODE_KEY)],
        &gpt2_alone(),
        &server_tls(&identity.0, &identity.1, Some(client_ca)),
    )
}

/// A graph node (plain HTTP) on the fixtures whose `gpt2` is `node`'s, reached over TLS
/// trusting `ca` and presenting `client`, sending `node_key` on each hop.
fn graph_node_of(
    node: &TestServer,
    ca: &Path,
    client: &(PathBuf, PathBuf),
    node_key: Option<&str>,
) -> TestServer {
    let models = fixtures_with_gpt2_at(&node.base);
    let mut env = vec![("INFERGRAPH_API_KEYS", USER_KEY)];
    env.extend(node_key.map(|key| ("INFERGRAPH_NODE_KEY", key)));
    let (cert, key) = client;
    TestServer::start_with_env(
        &env,
        &models,
        &format!(
            "[remote]\nconnect_timeout_ms = 1000\nread_timeout_ms = 60000\nhealth_interval_ms = 200\n\
             [remote.tls]\nca = {ca:?}\ncert = {cert:?}\nkey = {key:?}\n"
        ),
    )
}

/// POSTs `body` to the graph node's `path` with the user's key: status and JSON body.
async fn call(graph: &TestServer, path: &str, body: &Value) -> (u16, Value) {
    let mut response = awc::Client::default()
        .post(graph.url(path))
        .bearer_auth(USER_KEY)
        .timeout(Duration::from_secs(60))
        .send_json(body)
        .await
        .unwrap();
    let body: Value = response.json().limit(1 << 22).await.unwrap();
    (response.status().as_u16(), body)
}

#[actix_web::test]
async fn over_mutual_tls_a_model_node_serves_the_split_graph_and_refuses_users_and_strangers() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "cluster-ca");
    let (node_identity, graph_identity) = (ca.issue("node"), ca.issue("graph"));
    let node = tls_model_node(&node_identity, &ca.ca_file());
    assert!(node.base.starts_with("https://"), "{}", node.base);

    let graph = graph_node_of(&node, &ca.ca_file(), &graph_identity, Some(NODE_KEY));
    common::wait_until(
        "the node is ready over TLS",
        Duration::from_secs(30),
        || graph.is_ready(),
    );
    let (code, body) = call(
        &graph,
        "/v1/graph",
        &json!({"text": "I have an idea!", "max_new_tokens": 3}),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["results"].as_array().unwrap().len(), 3, "{body}");

    // On the node itself: the node key passes, a user's key does not, and a client without
    // a certificate of the cluster's CA does not get through the handshake.
    let generate = json!({"text": "I have an idea!", "max_new_tokens": 2});
    let path = "/v1/models/gpt2/generate";
    let ok = https(
        &node.base,
        &post(path, NODE_KEY, &generate),
        &ca.ca_file(),
        Some(&graph_identity),
    )
    .unwrap();
    assert_eq!(status(&ok), 200, "{ok}");
    let user = https(
        &node.base,
        &post(path, USER_KEY, &generate),
        &ca.ca_file(),
        Some(&graph_identity),
    )
    .unwrap();
    assert_eq!(status(&user), 401, "{user}");
    let anonymous = https(&node.base, &get("/livez", None), &ca.ca_file(), None);
    assert!(
        anonymous.is_err(),
        "no client certificate, no answer: {anonymous:?}"
    );
    let other = TestCa::new(dir.path(), "other-ca");
    let stranger = other.issue("stranger");
    let foreign = https(
        &node.base,
        &get("/livez", None),
        &ca.ca_file(),
        Some(&stranger),
    );
    assert!(foreign.is_err(), "a foreign CA's client: {foreign:?}");

    // A graph node with the certificate but without the node key: a named refusal.
    let keyless = graph_node_of(&node, &ca.ca_file(), &graph_identity, None);
    let (code, body) = call(&keyless, path, &generate).await;
    assert_eq!(code, 503, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("node key"),
        "{body}"
    );
}

#[actix_web::test]
async fn a_graph_node_that_does_not_trust_the_nodes_certificate_gets_a_fast_named_503_until_its_ca_file_does(
) {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "cluster-ca");
    let node = tls_model_node(&ca.issue("node"), &ca.ca_file());
    // The graph node trusts another CA only (its own client certificate is the cluster's).
    let other = TestCa::new(dir.path(), "other-ca");
    let graph = graph_node_of(&node, &other.ca_file(), &ca.issue("graph"), Some(NODE_KEY));
    let started = Instant::now();
    let (code, body) = call(
        &graph,
        "/v1/models/gpt2/generate",
        &json!({"text": "I have an idea!", "max_new_tokens": 2}),
    )
    .await;
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["error_type"], "model_unavailable", "{body}");
    let message = body["error"].as_str().unwrap();
    assert!(message.contains("gpt2"), "names the model: {message}");
    assert!(
        message.to_lowercase().contains("certificate") || message.contains("UnknownIssuer"),
        "says why: {message}"
    );
    // Answered at the handshake, long before the 60 s read timeout a hanging hop would wait.
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );

    // The graph node's CA file rewritten to the cluster's (renamed into place): the hop
    // trusts the node from then on, with no restart.
    let staged = dir.path().join("staged-ca.pem");
    std::fs::copy(ca.ca_file(), &staged).unwrap();
    std::fs::rename(&staged, other.ca_file()).unwrap();
    common::wait_until("the hop trusts the new CA", Duration::from_secs(15), || {
        graph.is_ready()
    });
    let (code, body) = call(
        &graph,
        "/v1/models/gpt2/generate",
        &json!({"text": "I have an idea!", "max_new_tokens": 2}),
    )
    .await;
    assert_eq!(code, 200, "{body}");
}

#[test]
fn a_renewed_certificate_is_served_without_a_restart_and_the_health_probe_speaks_tls() {
    let dir = tempfile::tempdir().unwrap();
    let first = TestCa::new(dir.path(), "first-ca");
    let (cert, key) = first.issue("server");
    let port = free_port();
    let tls = server_tls(&cert, &key, Some(&first.ca_file()));
    let server = TestServer::start_with_env_on(port, &[], &gpt2_alone(), &tls);
    let client = first.issue("client");
    let answer = https(
        &server.base,
        &get("/livez", None),
        &first.ca_file(),
        Some(&client),
    )
    .unwrap();
    assert_eq!(status(&answer), 200, "{answer}");

    // `infergraph health` reads the same config: it speaks TLS, trusts the configured
    // certificate, and presents it where client certificates are required.
    let config = dir.path().join("health.toml");
    std::fs::write(
        &config,
        format!("[server]\nport = {port}\n{tls}{}", gpt2_alone()),
    )
    .unwrap();
    let health = std::process::Command::new(env!("CARGO_BIN_EXE_infergraph"))
        .args(["health", "--ready", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        health.status.success(),
        "{}{}",
        String::from_utf8_lossy(&health.stdout),
        String::from_utf8_lossy(&health.stderr)
    );
    assert!(String::from_utf8_lossy(&health.stdout)
        .contains(&format!("https://127.0.0.1:{port}/readyz")));

    // A certificate from a new CA written over the old files (new files renamed into place,
    // as a Secret update does): served within seconds, with no restart.
    let second = TestCa::new(dir.path(), "second-ca");
    let (new_cert, new_key) = second.issue("server");
    let staged = (dir.path().join("staged.pem"), dir.path().join("staged.key"));
    std::fs::copy(&new_cert, &staged.0).unwrap();
    std::fs::copy(&new_key, &staged.1).unwrap();
    std::fs::rename(&staged.1, &key).unwrap();
    std::fs::rename(&staged.0, &cert).unwrap();
    common::wait_until(
        "the renewed certificate is served",
        Duration::from_secs(10),
        || {
            https(
                &server.base,
                &get("/livez", None),
                &second.ca_file(),
                Some(&client),
            )
            .is_ok_and(|answer| status(&answer) == 200)
        },
    );
    let old = https(
        &server.base,
        &get("/livez", None),
        &first.ca_file(),
        Some(&client),
    );
    assert!(
        old.is_err(),
        "the old CA no longer verifies the server: {old:?}"
    );
}

#[test]
fn a_bad_certificate_file_or_an_https_node_without_a_ca_stops_the_start_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "ca");
    let (cert, _) = ca.issue("server");
    let garbage = dir.path().join("garbage.key");
    std::fs::write(&garbage, "not a key\n").unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nport = 0\n{}{}",
            server_tls(&cert, &garbage, None),
            gpt2_alone()
        ),
    )
    .unwrap();
    let stderr = serve_refuses(&config, &[]);
    assert!(
        stderr.contains("garbage.key") && stderr.contains("not a PEM private key"),
        "{stderr}"
    );

    let missing = dir.path().join("missing.pem");
    std::fs::write(
        &config,
        format!(
            "[server]\nport = 0\n{}{}",
            server_tls(&missing, &garbage, None),
            gpt2_alone()
        ),
    )
    .unwrap();
    let stderr = serve_refuses(&config, &[]);
    assert!(
        stderr.contains("missing.pem") && stderr.contains("cannot read"),
        "{stderr}"
    );

    let models = fixtures_with_gpt2_at("https://127.0.0.1:9");
    std::fs::write(&config, format!("[server]\nport = 0\n{models}")).unwrap();
    let stderr = serve_refuses(&config, &[]);
    assert!(stderr.contains("[remote.tls] ca"), "{stderr}");
}
