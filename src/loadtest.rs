//! `infergraph loadtest`: drive the graph at a fixed concurrency (or an open-loop rate) for
//! a bounded number of requests or time, then report throughput, latency, errors, and the
//! load each actor carried. Every run is bounded and stops by itself.
//!
//! Targets: `actor` starts the actor system in-process and sends `RunGraph` messages to the
//! coordinator (no HTTP: the actors' own capacity); `http` posts to `/v1/graph`; `ws`
//! streams over `/v1/graph/ws` and also measures time to first token and between tokens.
//! With `graph`, every target drives that configured graph instead of the default one
//! (`/v1/graphs/{name}`, or `"graph"` in each websocket frame). With `model`, `actor` and
//! `http` drive that one model instead of a graph: `Generate` or `Classify` messages
//! straight to its actor, or `/v1/models/{name}/generate` (or `/classify`).

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use serde_json::json;

use crate::actors::{CallContext, Classify, Embed, Generate};
use crate::backend::{self, BackendChoice};
use crate::config::{Config, Role};
use crate::engine::CancelToken;
use crate::graph::loader::{load_models, ModelHandle, RunningGraph};
use crate::graph::RunGraph;
use crate::http::api::{EngineInfo, EnginesResponse, ModelsResponse};
use crate::http::error::ApiError;
use crate::models::sampling::SamplingParams;
use crate::models::{GenerationParams, Prompt};

/// What to drive.
#[derive(Debug, Clone)]
pub enum Target {
    /// In-process, from this config.
    Actor {
        config: PathBuf,
        backend: Option<BackendChoice>,
    },
    /// `POST /v1/graph` of the server at this base URL.
    Http { base: String, key: Option<String> },
    /// `/v1/graph/ws` of the server at this base URL.
    Ws { base: String, key: Option<String> },
}

#[derive(Debug, Clone)]
pub struct Options {
    pub target: Target,
    /// Requests in flight at once (the cap, with `rate`).
    pub concurrency: usize,
    /// Stop after this many requests…
    pub requests: Option<usize>,
    /// …or stop starting new ones after this long.
    pub duration: Option<Duration>,
    /// Open loop: start requests at this rate (per second), whatever the latency.
    pub rate: Option<f64>,
    pub prompts: Vec<String>,
    pub max_new_tokens: usize,
    pub temperature: f32,
    pub seed: Option<u64>,
    /// Drive this model on its own rather than the graph (`actor` and `http` only).
    pub model: Option<String>,
    /// Drive this configured graph rather than the default one.
    pub graph: Option<String>,
}

/// The prompts used when no file is given.
pub const BUILT_IN_PROMPTS: [&str; 4] = [
    "I have an idea!",
    "The quick brown fox jumps over the lazy dog because",
    "In the beginning of the twenty-first century, the city",
    "Hello, my name is",
];

#[derive(Debug, Serialize)]
pub struct Report {
    pub target: String,
    /// The model driven on its own; `None` when the run drove a graph.
    pub model: Option<String>,
    /// The graph driven, when not the default one.
    pub graph: Option<String>,
    pub concurrency: usize,
    pub requests: usize,
    pub ok: usize,
    /// Failed requests by `error_type`.
    pub errors: BTreeMap<String, usize>,
    pub elapsed_s: f64,
    pub requests_per_s: f64,
    pub generated_tokens_per_s: f64,
    pub latency_ms: Percentiles,
    /// Streaming only: from sending the request to its first token.
    pub ttft_ms: Option<Percentiles>,
    /// Streaming only: between a model's successive tokens.
    pub inter_token_ms: Option<Percentiles>,
    pub actors: Vec<ActorLoad>,
}

#[derive(Debug, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

/// What one actor carried during the run, from its counters sampled every 50 ms.
#[derive(Debug, Serialize)]
pub struct ActorLoad {
    pub model: String,
    pub role: String,
    pub queue_depth_max: usize,
    pub queue_depth_mean: f64,
    /// Share of the run its model spent in forwards.
    pub busy_percent: f64,
    pub mean_batch_size: f64,
}

/// One request's result.
#[derive(Default)]
struct Outcome {
    latency: Duration,
    error: Option<String>,
    tokens: usize,
    ttft: Option<Duration>,
    gaps: Vec<Duration>,
}

/// What each request asks for: a graph run (the default graph for `None`), or one
/// model's work.
enum Scope {
    Graph(Option<String>),
    Model { name: String, role: Role },
}

/// How requests reach the graph.
enum Driver {
    Actor(Box<RunningGraph>),
    /// `client` sends the API key, if any, on every request (`/v1/engines` too).
    Http {
        client: awc::Client,
        base: String,
    },
    /// The key goes in the websocket's subprotocol offer, as a browser sends it.
    Ws {
        client: awc::Client,
        base: String,
        key: Option<String>,
    },
}

/// A client that sends `key` as `Authorization: Bearer` on every request.
fn client_with(key: Option<&str>) -> awc::Client {
    let mut builder = awc::Client::builder().timeout(Duration::from_secs(600));
    if let Some(key) = key {
        builder = builder.add_default_header((
            actix_web::http::header::AUTHORIZATION,
            format!("Bearer {key}"),
        ));
    }
    builder.finish()
}

/// Runs the load test and returns its report.
pub fn run(options: Options) -> Result<Report, String> {
    if options.concurrency == 0 {
        return Err("--concurrency must be at least 1".into());
    }
    actix::System::new().block_on(run_async(options))
}

async fn run_async(options: Options) -> Result<Report, String> {
    // The actix runtime is single-threaded per arbiter, and awc's client is not `Send`.
    let driver = Rc::new(match &options.target {
        Target::Actor {
            config,
            backend: choice,
        } => {
            let mut config = Config::from_file(config).map_err(|e| e.to_string())?;
            if let Some(choice) = choice {
                config.backend = *choice;
            }
            let device = backend::select(config.backend);
            let engine = config.engine.clone();
            let graph = actix_web::rt::task::spawn_blocking(move || load_models(&config, &device))
                .await
                .map_err(|e| e.to_string())??
                .start(&engine);
            Driver::Actor(Box::new(graph))
        }
        Target::Http { base, key } => Driver::Http {
            client: client_with(key.as_deref()),
            base: base.trim_end_matches('/').to_string(),
        },
        Target::Ws { base, key } => Driver::Ws {
            client: client_with(key.as_deref()),
            base: base.trim_end_matches('/').to_string(),
            key: key.clone(),
        },
    });
    let scope = Rc::new(scope(&driver, &options).await?);
    let total = options.requests.unwrap_or(if options.duration.is_some() {
        usize::MAX
    } else {
        32
    });
    let deadline = options.duration.map(|d| Instant::now() + d);
    let started = Instant::now();
    let issued = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let samples = Arc::new(Mutex::new(Vec::<Vec<EngineInfo>>::new()));
    let finished = CancelToken::new();

    let sampler = actix_web::rt::spawn(sample_engines(
        driver.clone(),
        samples.clone(),
        finished.clone(),
    ));
    let progress = actix_web::rt::spawn(show_progress(
        done.clone(),
        total,
        options.duration,
        finished.clone(),
    ));

    // Each task takes the next request number until the budget or the time is spent.
    let next = {
        let issued = issued.clone();
        move || -> Option<usize> {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return None;
            }
            let n = issued.fetch_add(1, Ordering::AcqRel);
            (n < total).then_some(n)
        }
    };
    let outcomes: Vec<Outcome> = match options.rate {
        None => {
            let workers = (0..options.concurrency).map(|_| {
                let (driver, scope, options, next, done) = (
                    driver.clone(),
                    scope.clone(),
                    options.clone(),
                    next.clone(),
                    done.clone(),
                );
                async move {
                    let mut outcomes = Vec::new();
                    while let Some(n) = next() {
                        outcomes.push(driver.send(&scope, &options, n).await);
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    outcomes
                }
            });
            futures_util::future::join_all(workers)
                .await
                .into_iter()
                .flatten()
                .collect()
        }
        Some(rate) => {
            let permits = Arc::new(tokio::sync::Semaphore::new(options.concurrency));
            let interval = Duration::from_secs_f64(1.0 / rate.max(1e-3));
            let mut tasks = Vec::new();
            let mut tick = tokio::time::interval(interval);
            while let Some(n) = {
                tick.tick().await;
                next()
            } {
                let permit = permits
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("semaphore open");
                let (driver, scope, options, done) =
                    (driver.clone(), scope.clone(), options.clone(), done.clone());
                tasks.push(actix_web::rt::spawn(async move {
                    let outcome = driver.send(&scope, &options, n).await;
                    done.fetch_add(1, Ordering::Relaxed);
                    drop(permit);
                    outcome
                }));
            }
            let mut outcomes = Vec::new();
            for task in tasks {
                outcomes.push(task.await.map_err(|e| e.to_string())?);
            }
            outcomes
        }
    };
    let elapsed = started.elapsed();
    finished.cancel();
    let _ = progress.await;
    let _ = sampler.await;
    let samples = samples.lock().expect("samples lock").clone();
    Ok(report(&options, outcomes, elapsed, &samples))
}

/// Checks that the `model` or `graph` asked for (if any) exists where the run goes, and
/// learns the model's role.
async fn scope(driver: &Driver, options: &Options) -> Result<Scope, String> {
    let Some(name) = options.model.as_deref() else {
        if let (Some(graph), Driver::Actor(running)) = (&options.graph, driver) {
            running
                .graph(graph)
                .ok_or_else(|| format!("--graph {graph:?}: the config has no such graph"))?;
        }
        return Ok(Scope::Graph(options.graph.clone()));
    };
    if options.graph.is_some() {
        return Err("give --model or --graph, not both".into());
    }
    let role = match driver {
        Driver::Actor(graph) => graph.model(name).map(|m| match m {
            ModelHandle::Generator(..) => Role::Generator,
            ModelHandle::Classifier(..) => Role::Classifier,
            ModelHandle::Embedder(..) => Role::Embedder,
        }),
        Driver::Http { client, base } => {
            let models: ModelsResponse = client
                .get(format!("{base}/v1/models"))
                .send()
                .await
                .map_err(|e| format!("{base}/v1/models: {e}"))?
                .json()
                .limit(1 << 22)
                .await
                .map_err(|e| format!("{base}/v1/models: {e}"))?;
            models
                .models
                .iter()
                .find(|m| m.name == name)
                .map(|m| match m.role.as_str() {
                    "classifier" => Role::Classifier,
                    "embedder" => Role::Embedder,
                    _ => Role::Generator,
                })
        }
        Driver::Ws { .. } => {
            return Err("--model works with --target actor and http, not ws".into());
        }
    };
    let role = role.ok_or_else(|| format!("--model {name:?}: no such model"))?;
    Ok(Scope::Model {
        name: name.to_string(),
        role,
    })
}

impl Driver {
    async fn send(&self, scope: &Scope, options: &Options, n: usize) -> Outcome {
        let prompt = options.prompts[n % options.prompts.len()].clone();
        let started = Instant::now();
        let mut outcome = match (self, scope) {
            (Driver::Actor(graph), Scope::Graph(name)) => {
                let found = match name {
                    Some(name) => graph.graph(name),
                    None => graph.default_graph(),
                };
                let (Some(coordinator), Some((index, _))) = (&graph.coordinator, found) else {
                    return failed("no_graph");
                };
                let run = RunGraph {
                    graph: index,
                    events: None,
                    text: prompt,
                    params: actor_params(options),
                    context: CallContext::detached(format!("loadtest-{n}")),
                };
                match coordinator.send(run).await {
                    Ok(Ok(graph)) => Outcome {
                        tokens: graph.generated_tokens(),
                        ..Outcome::default()
                    },
                    Ok(Err(error)) => failed(ApiError::from(error).error_type()),
                    Err(_) => failed("unavailable"),
                }
            }
            (Driver::Actor(graph), Scope::Model { name, .. }) => {
                let context = CallContext::detached(format!("loadtest-{n}"));
                let tokens = match graph.model(name).expect("checked by scope()") {
                    ModelHandle::Generator(actor, _) => actor
                        .addr
                        .send(Generate {
                            prompt: Prompt::Text(prompt),
                            params: actor_params(options),
                            events: None,
                            context,
                        })
                        .await
                        .map(|r| r.map(|g| g.generation.new_token_ids.len())),
                    ModelHandle::Classifier(actor, _) => actor
                        .addr
                        .send(Classify {
                            text: prompt,
                            pair: None,
                            context,
                        })
                        .await
                        .map(|r| r.map(|_| 0)),
                    ModelHandle::Embedder(actor, _) => actor
                        .addr
                        .send(Embed {
                            text: prompt,
                            context,
                        })
                        .await
                        .map(|r| r.map(|_| 0)),
                };
                match tokens {
                    Ok(Ok(tokens)) => Outcome {
                        tokens,
                        ..Outcome::default()
                    },
                    Ok(Err(error)) => failed(ApiError::from(error).error_type()),
                    Err(_) => failed("unavailable"),
                }
            }
            (Driver::Http { client, base }, scope) => {
                let (path, body) = match scope {
                    Scope::Graph(None) => (
                        "/v1/graph".to_string(),
                        request_body(options, &prompt, None),
                    ),
                    Scope::Graph(Some(graph)) => (
                        format!("/v1/graphs/{graph}"),
                        request_body(options, &prompt, None),
                    ),
                    Scope::Model {
                        name,
                        role: Role::Generator,
                    } => (
                        format!("/v1/models/{name}/generate"),
                        request_body(options, &prompt, None),
                    ),
                    Scope::Model {
                        name,
                        role: Role::Classifier,
                    } => (
                        format!("/v1/models/{name}/classify"),
                        json!({"text": prompt}),
                    ),
                    Scope::Model {
                        name,
                        role: Role::Embedder,
                    } => (format!("/v1/models/{name}/embed"), json!({"text": prompt})),
                };
                match client.post(format!("{base}{path}")).send_json(&body).await {
                    Ok(mut response) => {
                        let status = response.status();
                        match response.json::<serde_json::Value>().limit(1 << 24).await {
                            Ok(body) if status.is_success() => Outcome {
                                tokens: generated_tokens(&body),
                                ..Outcome::default()
                            },
                            Ok(body) => failed(body["error_type"].as_str().unwrap_or("http_error")),
                            Err(_) => failed("bad_response"),
                        }
                    }
                    Err(_) => failed("connection"),
                }
            }
            (Driver::Ws { base, key, .. }, _) => {
                stream_one((base, key.as_deref()), options, &prompt, n).await
            }
        };
        outcome.latency = started.elapsed();
        outcome
    }
}

/// The generation parameters of an in-process request.
fn actor_params(options: &Options) -> GenerationParams {
    GenerationParams {
        max_new_tokens: options.max_new_tokens,
        sampling: SamplingParams {
            temperature: options.temperature,
            seed: options.seed,
            ..SamplingParams::default()
        },
        ..GenerationParams::default()
    }
}

/// Tokens an answer reports: every generation of a graph request, or one model's.
fn generated_tokens(body: &serde_json::Value) -> usize {
    body["generated_tokens"].as_u64().unwrap_or(0) as usize
}

fn failed(error_type: &str) -> Outcome {
    Outcome {
        error: Some(error_type.to_string()),
        ..Outcome::default()
    }
}

fn request_body(options: &Options, prompt: &str, id: Option<String>) -> serde_json::Value {
    let mut body = json!({"text": prompt, "max_new_tokens": options.max_new_tokens, "temperature": options.temperature});
    if let Some(seed) = options.seed {
        body["seed"] = json!(seed);
    }
    if let Some(id) = id {
        body["id"] = json!(id);
        // Over the websocket, the frame names the graph.
        if let Some(graph) = &options.graph {
            body["graph"] = json!(graph);
        }
    }
    body
}

/// One streaming request on its own connection: time to first token and token gaps.
async fn stream_one(
    (base, key): (&str, Option<&str>),
    options: &Options,
    prompt: &str,
    n: usize,
) -> Outcome {
    use awc::ws::{Frame, Message};
    let url = format!("{}/v1/graph/ws", base.replacen("http", "ws", 1));
    let started = Instant::now();
    let mut request = awc::Client::new().ws(url).max_frame_size(1 << 24);
    if let Some(key) = key {
        request = request.protocols(["infergraph".to_string(), format!("infergraph.key.{key}")]);
    }
    let (response, mut socket) = match request.connect().await {
        Ok(connected) => connected,
        Err(awc::error::WsClientError::InvalidResponseStatus(status)) if status == 401 => {
            return failed("unauthorized")
        }
        Err(_) => return failed("connection"),
    };
    drop(response);
    let body = request_body(options, prompt, Some(format!("loadtest-{n}")));
    if socket
        .send(Message::Text(body.to_string().into()))
        .await
        .is_err()
    {
        return failed("connection");
    }
    let mut outcome = Outcome::default();
    let mut last_token: BTreeMap<String, Instant> = BTreeMap::new();
    while let Some(Ok(frame)) = socket.next().await {
        let Frame::Text(bytes) = frame else { continue };
        let Ok(event) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
            continue;
        };
        match event["type"].as_str() {
            Some("token") => {
                let now = Instant::now();
                outcome.ttft.get_or_insert(now - started);
                outcome.tokens += 1;
                let model = event["model"].as_str().unwrap_or_default().to_string();
                if let Some(previous) = last_token.insert(model, now) {
                    outcome.gaps.push(now - previous);
                }
            }
            Some("done") => {
                let _ = socket.close().await;
                return outcome;
            }
            Some("error") => return failed(event["error_type"].as_str().unwrap_or("error")),
            _ => {}
        }
    }
    failed("connection")
}

/// Samples every engine's counters until the run is over.
async fn sample_engines(
    driver: Rc<Driver>,
    samples: Arc<Mutex<Vec<Vec<EngineInfo>>>>,
    finished: CancelToken,
) {
    loop {
        let sample = match &*driver {
            Driver::Actor(graph) => Some(graph.engine_infos()),
            Driver::Http { client, base } | Driver::Ws { client, base, .. } => {
                match client.get(format!("{base}/v1/engines")).send().await {
                    Ok(mut response) => response
                        .json::<EnginesResponse>()
                        .await
                        .ok()
                        .map(|r| r.engines),
                    Err(_) => None,
                }
            }
        };
        if let Some(sample) = sample {
            samples.lock().expect("samples lock").push(sample);
        }
        if finished.is_cancelled() {
            return;
        }
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A progress bar on a terminal's stderr (nothing when stderr is a pipe or a file).
async fn show_progress(
    done: Arc<AtomicUsize>,
    total: usize,
    duration: Option<Duration>,
    finished: CancelToken,
) {
    if !std::io::stderr().is_terminal() {
        return;
    }
    let started = Instant::now();
    while !finished.is_cancelled() {
        let count = done.load(Ordering::Relaxed);
        let fraction = match duration {
            Some(d) => started.elapsed().as_secs_f64() / d.as_secs_f64(),
            None => count as f64 / total as f64,
        }
        .min(1.0);
        let filled = (fraction * 30.0) as usize;
        eprint!(
            "\r  [{}{}] {count} requests, {:.1} s ",
            "#".repeat(filled),
            " ".repeat(30 - filled),
            started.elapsed().as_secs_f64()
        );
        actix_web::rt::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!();
}

fn report(
    options: &Options,
    outcomes: Vec<Outcome>,
    elapsed: Duration,
    samples: &[Vec<EngineInfo>],
) -> Report {
    let ms = |d: &Duration| d.as_secs_f64() * 1e3;
    let mut errors = BTreeMap::new();
    for error in outcomes.iter().filter_map(|o| o.error.clone()) {
        *errors.entry(error).or_insert(0) += 1;
    }
    let ok: Vec<&Outcome> = outcomes.iter().filter(|o| o.error.is_none()).collect();
    let tokens: usize = ok.iter().map(|o| o.tokens).sum();
    let streaming = matches!(options.target, Target::Ws { .. });
    Report {
        model: options.model.clone(),
        graph: options.graph.clone(),
        target: match &options.target {
            Target::Actor { .. } => "actor".into(),
            Target::Http { base, .. } => format!("http {base}"),
            Target::Ws { base, .. } => format!("ws {base}"),
        },
        concurrency: options.concurrency,
        requests: outcomes.len(),
        ok: ok.len(),
        errors,
        elapsed_s: elapsed.as_secs_f64(),
        requests_per_s: ok.len() as f64 / elapsed.as_secs_f64(),
        generated_tokens_per_s: tokens as f64 / elapsed.as_secs_f64(),
        latency_ms: percentiles(ok.iter().map(|o| ms(&o.latency)).collect()),
        ttft_ms: streaming
            .then(|| percentiles(ok.iter().filter_map(|o| o.ttft.as_ref()).map(ms).collect())),
        inter_token_ms: streaming
            .then(|| percentiles(ok.iter().flat_map(|o| o.gaps.iter()).map(ms).collect())),
        actors: actor_loads(samples, elapsed),
    }
}

fn percentiles(mut values: Vec<f64>) -> Percentiles {
    values.sort_by(f64::total_cmp);
    let at = |p: f64| {
        if values.is_empty() {
            return 0.0;
        }
        let rank = ((p * values.len() as f64).ceil() as usize).clamp(1, values.len());
        values[rank - 1]
    };
    Percentiles {
        p50: at(0.50),
        p90: at(0.90),
        p99: at(0.99),
        max: at(1.0),
    }
}

fn actor_loads(samples: &[Vec<EngineInfo>], elapsed: Duration) -> Vec<ActorLoad> {
    let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
        return Vec::new();
    };
    last.iter()
        .enumerate()
        .map(|(i, end)| {
            let start = &first[i];
            let depths: Vec<usize> = samples.iter().map(|s| s[i].queued).collect();
            let forwards = end.forwards.saturating_sub(start.forwards);
            ActorLoad {
                model: end.model.clone(),
                role: end.role.clone(),
                queue_depth_max: depths.iter().copied().max().unwrap_or(0),
                queue_depth_mean: depths.iter().sum::<usize>() as f64 / depths.len() as f64,
                busy_percent: 100.0 * (end.busy_seconds - start.busy_seconds)
                    / elapsed.as_secs_f64(),
                mean_batch_size: if forwards == 0 {
                    0.0
                } else {
                    (end.batched_requests - start.batched_requests) / forwards as f64
                },
            }
        })
        .collect()
}

impl Report {
    /// The human-readable summary.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let p = |p: &Percentiles| {
            format!(
                "{:>9.1} {:>9.1} {:>9.1} {:>9.1}",
                p.p50, p.p90, p.p99, p.max
            )
        };
        out += &format!(
            "target {}{}, concurrency {}: {} requests ({} ok) in {:.1} s\n",
            self.target,
            self.model
                .iter()
                .map(|m| format!(", model {m}"))
                .chain(self.graph.iter().map(|g| format!(", graph {g}")))
                .collect::<String>(),
            self.concurrency,
            self.requests,
            self.ok,
            self.elapsed_s
        );
        out += &format!(
            "throughput: {:.2} requests/s, {:.1} generated tokens/s\n\n",
            self.requests_per_s, self.generated_tokens_per_s
        );
        out += &format!(
            "{:<16} {:>9} {:>9} {:>9} {:>9}\n",
            "ms", "p50", "p90", "p99", "max"
        );
        out += &format!("{:<16} {}\n", "latency", p(&self.latency_ms));
        if let Some(ttft) = &self.ttft_ms {
            out += &format!("{:<16} {}\n", "first token", p(ttft));
        }
        if let Some(gap) = &self.inter_token_ms {
            out += &format!("{:<16} {}\n", "between tokens", p(gap));
        }
        out += "\nerrors: ";
        out += &if self.errors.is_empty() {
            "none".to_string()
        } else {
            self.errors
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        out += &format!(
            "\n\n{:<20} {:>11} {:>11} {:>7} {:>11}\n",
            "actor", "queue max", "queue mean", "busy %", "mean batch"
        );
        for a in &self.actors {
            out += &format!(
                "{:<20} {:>11} {:>11.2} {:>7.1} {:>11.2}\n",
                a.model, a.queue_depth_max, a.queue_depth_mean, a.busy_percent, a.mean_batch_size
            );
        }
        out
    }
}
