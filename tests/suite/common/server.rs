//! A real `infergraph serve` process on 127.0.0.1 with a port of its own, for HTTP tests.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long a server may take to load tiny models and report ready.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// For `TestServer::raw_request`: a JSON body follows.
pub const JSON_HEADER: &str = "content-type: application/json\r\n";

/// A `/v1/graph` body that decodes far longer than any test waits: its request holds its
/// slots until it is cancelled.
pub const SLOT_HOLDING_BODY: &str =
    r#"{"text": "I have an idea!", "max_new_tokens": 1000, "min_new_tokens": 1000}"#;

pub struct TestServer {
    child: Child,
    /// `http://127.0.0.1:PORT`, or `https://…` with `[server.tls]`.
    pub base: String,
    /// Every line the server logged so far, and a signal for each new one.
    logs: Arc<(Mutex<Vec<String>>, Condvar)>,
    /// Holds the generated config file.
    _dir: tempfile::TempDir,
}

/// The seed graph written out as `[[graphs]]`, for configs that add graphs of their own
/// after it (it stays the default, as the first graph).
pub const SEED_GRAPH: &str = r#"
[[graphs]]
name = "seed"
  [[graphs.steps]]
  parallel = { generate = ["gpt2", "distilgpt2", "gpt2-medium"] }
  [[graphs.steps]]
  each = { classify = "bert-base-uncased" }
"#;

/// A `[[models]]` entry: name, folder, role.
pub type ModelEntry = (&'static str, PathBuf, &'static str);

/// `[[models]]` TOML for `models`, each loaded from its folder.
pub fn models_toml(models: &[ModelEntry]) -> String {
    models
        .iter()
        .map(|(name, path, role)| {
            format!("\n[[models]]\nname = \"{name}\"\npath = {path:?}\nrole = \"{role}\"\n")
        })
        .collect()
}

/// `[[models]]` TOML for the fixture models, with `gpt2` served by the model node at `url`.
pub fn fixtures_with_gpt2_at(url: &str) -> String {
    fixture_models()
        .into_iter()
        .map(|(name, path, role)| match name {
            "gpt2" => {
                format!("\n[[models]]\nname = \"gpt2\"\nurls = [{url:?}]\nrole = \"generator\"\n")
            }
            _ => models_toml(&[(name, path, role)]),
        })
        .collect()
}

/// `[[models]]` TOML for the fixture `gpt2` alone: a model node's.
pub fn gpt2_alone() -> String {
    let models: Vec<_> = fixture_models()
        .into_iter()
        .filter(|m| m.0 == "gpt2")
        .collect();
    models_toml(&models)
}

/// A port nobody listens on now, for a server that must come back on the same one.
/// Runs `infergraph serve --config CONFIG` (plus `args`) on a config it must refuse at start,
/// and returns what it wrote to stderr.
pub fn serve_refuses(config: &Path, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_infergraph"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("INFERGRAPH_API_KEYS")
        .env_remove("INFERGRAPH_NODE_KEY")
        .env_remove("INFERGRAPH_ADMIN_KEYS")
        .env_remove("INFERGRAPH_AUTH")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "serve accepted it: {stderr}");
    stderr
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The graph on the tiny transformers fixtures: three GPT-2s and a BERT.
pub fn fixture_models() -> Vec<ModelEntry> {
    vec![
        ("gpt2", super::fixture("gpt2-tiny-a"), "generator"),
        ("distilgpt2", super::fixture("gpt2-tiny-b"), "generator"),
        ("gpt2-medium", super::fixture("gpt2-tiny-c"), "generator"),
        (
            "bert-base-uncased",
            super::fixture("bert-tiny"),
            "classifier",
        ),
    ]
}

/// The graph on the embedded demo models (n_positions 1024, so long generations fit).
pub fn demo_models() -> Vec<ModelEntry> {
    let weights = Path::new(env!("CARGO_MANIFEST_DIR")).join("model-weights");
    vec![
        ("gpt2", weights.join("gpt2"), "generator"),
        ("distilgpt2", weights.join("distilgpt2"), "generator"),
        ("gpt2-medium", weights.join("gpt2-medium"), "generator"),
        (
            "bert-base-uncased",
            weights.join("bert-base-uncased"),
            "classifier",
        ),
    ]
}

impl TestServer {
    /// Starts a server on `models`, with `extra` TOML appended to its config, and waits
    /// until it is ready.
    pub fn start(models: &[ModelEntry], extra: &str) -> Self {
        Self::start_toml(0, &models_toml(models), extra)
    }

    /// Starts a server on `port` (0: any free one) whose `[[models]]` are the TOML `models`
    /// (entries with `url`s too), with `extra` TOML, and waits until its models are loaded.
    pub fn start_toml(port: u16, models: &str, extra: &str) -> Self {
        Self::start_on(&[], "127.0.0.1", port, models, extra)
    }

    /// As `start_toml`, listening on `host`, with the binary run through `wrapper` (e.g.
    /// `ip netns exec NAME`, for a test host of its own).
    pub fn start_on(wrapper: &[&str], host: &str, port: u16, models: &str, extra: &str) -> Self {
        Self::launch(wrapper, host, port, models, extra, &[])
    }

    /// As `start_toml` on any free port, with `env` set for the server (keys, for one).
    pub fn start_with_env(env: &[(&str, &str)], models: &str, extra: &str) -> Self {
        Self::start_with_env_on(0, env, models, extra)
    }

    /// As `start_with_env`, on `port`.
    pub fn start_with_env_on(port: u16, env: &[(&str, &str)], models: &str, extra: &str) -> Self {
        Self::launch(&[], "127.0.0.1", port, models, extra, env)
    }

    fn launch(
        wrapper: &[&str],
        host: &str,
        port: u16,
        models: &str,
        extra: &str,
        env: &[(&str, &str)],
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config =
            format!("backend = \"cpu\"\n[server]\nhost = \"{host}\"\nport = {port}\nworkers = 2\n");
        config.push_str(extra);
        config.push_str(models);
        let path = dir.path().join("config.toml");
        std::fs::write(&path, config).unwrap();
        let binary = env!("CARGO_BIN_EXE_infergraph");
        let (program, args) = match wrapper.split_first() {
            Some((program, rest)) => (*program, [rest, &[binary]].concat()),
            None => (binary, Vec::new()),
        };
        let mut child = Command::new(program)
            .args(args)
            .args(["serve", "--config", path.to_str().unwrap()])
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            .env_remove("INFERGRAPH_BACKEND")
            .env_remove("INFERGRAPH_PORT")
            .env_remove("INFERGRAPH_API_KEYS")
            .env_remove("INFERGRAPH_NODE_KEY")
            .env_remove("INFERGRAPH_ADMIN_KEYS")
            .env_remove("INFERGRAPH_AUTH")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the server binary starts");
        let logs = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[server] {line}");
                sink.0.lock().unwrap().push(line);
                sink.1.notify_all();
            }
        });
        let mut server = Self {
            child,
            base: String::new(),
            logs,
            _dir: dir,
        };
        let listening = server
            .wait_for_log("listening on ", START_TIMEOUT)
            .expect("the server logs its address");
        // `http://ADDR` or `https://ADDR`, as the server says.
        let url = listening.split("listening on ").nth(1).unwrap();
        server.base = url.split_whitespace().next().unwrap().to_string();
        server
            .wait_for_log("ready: every model is loaded", START_TIMEOUT)
            .expect("the server becomes ready");
        server
    }

    /// Kills the process at once, as a crash or a lost machine would end it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `GET /v1/engines`, over a plain socket so that no client library sits between the
    /// test and the counters.
    pub fn engines(&self) -> serde_json::Value {
        let response = read_all(self.raw_request("GET /v1/engines", "connection: close\r\n", ""));
        serde_json::from_str(response.split("\r\n\r\n").nth(1).expect("a body")).unwrap()
    }

    /// Whether `/readyz` answers 200 now (over a plain socket, so a sync test can poll it).
    pub fn is_ready(&self) -> bool {
        read_all(self.raw_request("GET /readyz", "connection: close\r\n", ""))
            .starts_with("HTTP/1.1 200")
    }

    /// Writes `request_line`, `headers` (each ending in CRLF) and `body` to a new socket,
    /// which the test reads or drops (a client that goes away) as it likes.
    pub fn raw_request(&self, request_line: &str, headers: &str, body: &str) -> TcpStream {
        let address = self.base.trim_start_matches("http://");
        let mut stream = TcpStream::connect(address).unwrap();
        write!(
            stream,
            "{request_line} HTTP/1.1\r\nhost: {address}\r\n{headers}content-length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        stream
    }

    /// POSTs `body` with `content_type` (none when `None`): the status, the JSON body (null
    /// when it is not JSON) and the `Retry-After` header.
    pub async fn post(
        &self,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> (u16, serde_json::Value, Option<String>) {
        let mut request = awc::Client::default().post(self.url(path));
        if let Some(content_type) = content_type {
            request = request.insert_header(("content-type", content_type));
        }
        let mut response = request.send_body(body).await.unwrap();
        let retry_after = header(response.headers(), "retry-after");
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(serde_json::Value::Null);
        (status, body, retry_after)
    }

    /// POSTs `body` as JSON: the status and the JSON body (null when it is not JSON).
    pub async fn post_json(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let (status, body, _) = self
            .post(
                path,
                Some("application/json"),
                body.to_string().into_bytes(),
            )
            .await;
        (status, body)
    }

    /// POSTs `body` as JSON to a streaming route and reads the whole 200 `text/event-stream`
    /// answer.
    /// Posts `body` to `path` and checks that the answer is a 422 whose error names `named`.
    pub async fn assert_refused(&self, path: &str, body: &serde_json::Value, named: &str) {
        let (status, answer) = self.post_json(path, body).await;
        assert_eq!(status, 422, "{path} {body}: {answer}");
        assert!(
            answer["error"].as_str().unwrap().contains(named),
            "{path} {body}: {answer}"
        );
    }

    pub async fn post_sse(&self, path: &str, body: &serde_json::Value) -> String {
        let mut response = awc::Client::default()
            .post(self.url(path))
            .send_json(body)
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200, "{path}");
        assert_eq!(
            header(response.headers(), "content-type").as_deref(),
            Some("text/event-stream")
        );
        let bytes = response.body().limit(1 << 22).await.unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    /// Asserts that `/classify_generated_texts` on `text` answers 200 with all three results:
    /// the server, and every actor in the graph, still serve.
    pub async fn assert_serves_the_graph(&self, text: &str) {
        let (status, body, _) = self
            .post(
                "/classify_generated_texts",
                Some("text/plain"),
                text.as_bytes().to_vec(),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body.as_array().unwrap().len(), 3, "{body}");
    }

    /// The first log line containing `needle`, waiting up to `timeout` for it.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let (lines, changed) = &*self.logs;
        let mut lines = lines.lock().unwrap();
        loop {
            if let Some(line) = lines.iter().find(|l| l.contains(needle)) {
                return Some(line.clone());
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            lines = changed.wait_timeout(lines, left).unwrap().0;
        }
    }

    /// Index of the first log line containing `needle`.
    pub fn log_position(&self, needle: &str) -> Option<usize> {
        self.logs
            .0
            .lock()
            .unwrap()
            .iter()
            .position(|l| l.contains(needle))
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the server did not exit in {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `counter` of `model`'s engine in an `/v1/engines` answer.
pub fn counter(engines: &serde_json::Value, model: &str, counter: &str) -> u64 {
    engines["engines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["model"] == model)
        .unwrap()[counter]
        .as_u64()
        .unwrap()
}

/// `counter` summed over every engine of an `/v1/engines` answer.
pub fn total(engines: &serde_json::Value, counter: &str) -> u64 {
    engines["engines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e[counter].as_u64().unwrap())
        .sum()
}

/// Everything the server sends on `stream` until it closes it.
pub fn read_all(mut stream: TcpStream) -> String {
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

/// Header `name` of a response, as text (`None` when it is missing).
pub fn header(headers: &awc::http::header::HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .map(|v| v.to_str().expect("a text header").to_string())
}
