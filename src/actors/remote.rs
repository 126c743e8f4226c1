//! A model served by other infergraph servers (the replicas of a model node), as an actor
//! like a local one: it takes the same `Generate` and `Classify` messages, so the graph
//! coordinator does not know the difference.
//!
//! STREAMING: a generation goes over the node's `POST /v1/models/{name}/generate/stream`
//! (a conversation over `/chat/stream`, rendered by the node with the model's template);
//! each `token` event is passed on as it arrives, so the graph's streams are as live
//! through the hop as without it.
//!
//! CANCELLATION: when the call's `CancelToken` is set, the upstream response is dropped and
//! its connection closed; the node sees its client leave and frees the slot within one
//! decode step. Every hop carries `x-request-id`, the W3C `traceparent` (the node's trace has
//! the same trace id), the time left (`x-infergraph-deadline-ms`: the node answers 504
//! rather than work past it) and, when one is given, the node key (`Authorization: Bearer`).
//!
//! BACKPRESSURE: the hop waits for room. A node's 429 for a request the graph has admitted
//! is retried after its `Retry-After` until the request's deadline or cancellation, so no
//! finished generation is lost to a full remote queue (as with the local classifier).
//!
//! FAILURE: connection refused or reset, or a node silent past `remote.read_timeout_ms`,
//! answers 503 `model_unavailable` naming the model and the URL, never a hang. The replica is
//! then skipped until its `/readyz` answers 200 again (asked every
//! `remote.health_interval_ms`); a call that failed before any output is retried once on
//! another replica. Each call goes to the ready replica with the fewest calls in flight.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::{Actor, Context, Handler, ResponseFuture};
use futures_util::StreamExt;
use serde_json::{json, Value};

use super::{CallContext, Classified, Classify, Generate, Generated};
use crate::config::RemoteConfig;
use crate::engine::generation::TokenEvent;
use crate::engine::CancelToken;
use crate::histogram::{Histogram, SECONDS};
use crate::models::{
    Classification, FinishReason, Generation, GenerationParams, ModelError, Prompt, ResponseFormat,
};
use crate::work::{ActorError, WorkSpan};

/// The request header telling a node how many milliseconds the request has left.
pub const DEADLINE_HEADER: &str = "x-infergraph-deadline-ms";

/// A node's answer, as awc reads it.
type NodeResponse = awc::ClientResponse<actix_web::dev::Decompress<actix_web::dev::Payload>>;

/// The time a call without a deadline may take across the hop, silences aside.
const NO_DEADLINE: Duration = Duration::from_secs(24 * 3600);

/// How long a call waits before asking a full node again, when it gives no `Retry-After`.
const ROOM_RETRY: Duration = Duration::from_millis(200);

/// How often a call made before the first probes are done looks again.
const PROBE_WAIT: Duration = Duration::from_millis(20);

/// One replica of a remote model, as the graph node sees it.
#[derive(Debug)]
pub struct Replica {
    /// Its base URL, `http://host:port` or `https://host:port`.
    pub url: String,
    /// Calls sent to it and not yet answered: where the next call goes.
    pub in_flight: AtomicUsize,
    /// Its `/readyz` answered 200 and no call to it has failed since.
    pub ready: AtomicBool,
    /// Calls it answered, for spreading ties between replicas and for `/v1/models`.
    pub served: AtomicU64,
    /// Why it is not ready (its last failed probe or call), so that a call finding no ready
    /// replica can say why: a refused connection, an untrusted certificate, a status.
    why_down: Mutex<Option<String>>,
}

impl Replica {
    fn mark_down(&self, why: String) {
        self.ready.store(false, Ordering::Release);
        *self.why_down.lock().expect("why_down lock") = Some(why);
    }
}

/// A remote model's replicas and the hop's counters; shared with the HTTP side (readiness,
/// `/v1/models`, `/metrics`).
#[derive(Debug)]
pub struct Replicas {
    pub model: String,
    pub replicas: Vec<Replica>,
    /// Each successful call's time across the hop (request sent to answer read).
    pub latency: Histogram,
    /// Failed calls by kind: `connect`, `timeout`, `reset`, `overloaded`, `status`.
    pub errors: Mutex<BTreeMap<&'static str, u64>>,
    /// The model as its node describes it (its `GET /v1/models` entry), once one answered.
    pub details: Mutex<Option<Value>>,
    /// Every replica has been probed once: before that, "not ready" means "not asked yet".
    probed: AtomicBool,
}

impl Replicas {
    pub fn new(model: &str, urls: &[String]) -> Self {
        Self {
            model: model.to_string(),
            replicas: urls
                .iter()
                .map(|url| Replica {
                    url: url.trim_end_matches('/').to_string(),
                    in_flight: AtomicUsize::new(0),
                    ready: AtomicBool::new(false),
                    served: AtomicU64::new(0),
                    why_down: Mutex::new(Some("not probed yet".into())),
                })
                .collect(),
            latency: Histogram::new(SECONDS),
            errors: Mutex::new(BTreeMap::new()),
            details: Mutex::new(None),
            probed: AtomicBool::new(false),
        }
    }

    /// Whether any replica can take a call.
    pub fn any_ready(&self) -> bool {
        self.replicas
            .iter()
            .any(|r| r.ready.load(Ordering::Acquire))
    }

    /// The ready replica with the fewest calls in flight (the least served on a tie), other
    /// than `avoid` when another is ready.
    fn pick(&self, avoid: Option<usize>) -> Option<usize> {
        let ready = |i: &usize| self.replicas[*i].ready.load(Ordering::Acquire);
        let load = |i: &usize| {
            let r = &self.replicas[*i];
            (
                r.in_flight.load(Ordering::Acquire),
                r.served.load(Ordering::Relaxed),
            )
        };
        let candidates: Vec<usize> = (0..self.replicas.len()).filter(ready).collect();
        candidates
            .iter()
            .copied()
            .filter(|&i| Some(i) != avoid)
            .min_by_key(load)
            .or_else(|| candidates.into_iter().min_by_key(load))
    }

    fn count_error(&self, kind: &'static str) {
        *self
            .errors
            .lock()
            .expect("hop errors lock")
            .entry(kind)
            .or_insert(0) += 1;
    }

    /// Every URL, for messages when none is ready.
    fn urls(&self) -> String {
        self.replicas
            .iter()
            .map(|r| r.url.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Why each replica is down, for the message when none is ready.
    fn why_down(&self) -> String {
        self.replicas
            .iter()
            .filter_map(|r| {
                let why = r.why_down.lock().expect("why_down lock");
                why.as_ref().map(|why| format!("{}: {why}", r.url))
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Counts a call in flight on a replica for as long as it lives.
struct InFlight<'a>(&'a Replica);

impl<'a> InFlight<'a> {
    fn enter(replica: &'a Replica) -> Self {
        replica.in_flight.fetch_add(1, Ordering::AcqRel);
        Self(replica)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The actor for one remote model.
pub struct RemoteModel {
    hop: Hop,
}

impl RemoteModel {
    /// Starts asking each replica's `/readyz` (on the current arbiter); `start()` the actor
    /// on the same one.
    pub fn new(replicas: Arc<Replicas>, settings: &RemoteConfig) -> Self {
        let mut client = awc::Client::builder();
        // The node key goes on every hop, health checks and `/v1/models` details included.
        if let Some(key) = &settings.node_key {
            client = client.bearer_auth(key.expose());
        }
        let connector = awc::Connector::new()
            .timeout(Duration::from_millis(settings.connect_timeout_ms))
            // A bounded lifetime, so replicas added behind a Service get calls too.
            .conn_lifetime(Duration::from_secs(30));
        let connector = match &settings.client_tls {
            Some(tls) => connector.rustls_0_23(tls.clone()),
            None => connector,
        };
        let client = client.connector(connector).disable_timeout().finish();
        let hop = Hop {
            client,
            replicas,
            read_timeout: Duration::from_millis(settings.read_timeout_ms),
        };
        actix::spawn(
            hop.clone()
                .watch(Duration::from_millis(settings.health_interval_ms)),
        );
        Self { hop }
    }
}

impl Actor for RemoteModel {
    type Context = Context<Self>;
}

impl Handler<Generate> for RemoteModel {
    type Result = ResponseFuture<Result<Generated, ActorError>>;

    fn handle(&mut self, msg: Generate, _: &mut Context<Self>) -> Self::Result {
        let hop = self.hop.clone();
        Box::pin(async move { hop.generate(msg).await })
    }
}

impl Handler<Classify> for RemoteModel {
    type Result = ResponseFuture<Result<Classified, ActorError>>;

    fn handle(&mut self, msg: Classify, _: &mut Context<Self>) -> Self::Result {
        let hop = self.hop.clone();
        Box::pin(async move { hop.classify(msg).await })
    }
}

/// What one try on one replica came to.
enum Attempt<T> {
    Done(T),
    /// The node's queue was full: wait this long, then try again.
    Full(Duration),
    /// Failed before producing anything: another replica may serve it.
    Retryable(ActorError),
    Fatal(ActorError),
}

/// The client side of the hop; clones share the connection pool and the replicas.
#[derive(Clone)]
struct Hop {
    client: awc::Client,
    replicas: Arc<Replicas>,
    read_timeout: Duration,
}

impl Hop {
    fn unreachable(&self, url: &str, reason: impl std::fmt::Display) -> ActorError {
        ActorError::Unreachable {
            model: self.replicas.model.clone(),
            url: url.to_string(),
            reason: reason.to_string(),
        }
    }

    /// Asks every replica's `/readyz`, now and every `interval`, for as long as the server runs.
    async fn watch(self, interval: Duration) {
        loop {
            for replica in &self.replicas.replicas {
                let answer = self
                    .client
                    .get(format!("{}/readyz", replica.url))
                    .timeout(self.read_timeout.min(interval.max(Duration::from_secs(1))))
                    .send()
                    .await;
                let why_down = match answer {
                    Ok(response) if response.status().is_success() => None,
                    Ok(response) => Some(format!("/readyz answered {}", response.status())),
                    Err(error) => Some(error.to_string()),
                };
                let ready = why_down.is_none();
                *replica.why_down.lock().expect("why_down lock") = why_down;
                let was = replica.ready.swap(ready, Ordering::AcqRel);
                if ready != was {
                    tracing::info!(model = %self.replicas.model, url = %replica.url, ready, "replica state changed");
                }
                if ready
                    && self
                        .replicas
                        .details
                        .lock()
                        .expect("details lock")
                        .is_none()
                {
                    self.fetch_details(&replica.url).await;
                }
            }
            self.replicas.probed.store(true, Ordering::Release);
            actix::clock::sleep(interval).await;
        }
    }

    /// Keeps the node's description of the model, for `/v1/models`.
    async fn fetch_details(&self, url: &str) {
        let Ok(mut response) = self
            .client
            .get(format!("{url}/v1/models"))
            .timeout(self.read_timeout)
            .send()
            .await
        else {
            return;
        };
        let Ok(models) = response.json::<Value>().limit(1 << 22).await else {
            return;
        };
        let entry = models["models"]
            .as_array()
            .and_then(|m| m.iter().find(|m| m["name"] == self.replicas.model.as_str()));
        if let Some(entry) = entry {
            *self.replicas.details.lock().expect("details lock") = Some(entry.clone());
        }
    }

    /// Runs `attempt` on replicas until one answers: a full node is waited out, a failure
    /// before any output is retried once on another replica.
    async fn call<T, F, Fut>(&self, context: &CallContext, mut attempt: F) -> Result<T, ActorError>
    where
        F: FnMut(usize) -> Fut,
        Fut: std::future::Future<Output = Attempt<T>>,
    {
        let mut avoid = None;
        let mut retried = false;
        loop {
            if context.cancel.is_cancelled() {
                return Err(ActorError::Cancelled);
            }
            // A call in the first moments after start waits for the first probes, so it
            // meets the replicas as they are (and why one is down) rather than unasked.
            while !self.replicas.probed.load(Ordering::Acquire) {
                wait_or_cancel(PROBE_WAIT, &context.cancel).await;
                if context.cancel.is_cancelled() {
                    return Err(ActorError::Cancelled);
                }
            }
            let Some(index) = self.replicas.pick(avoid) else {
                let urls = self.replicas.urls();
                let why = self.replicas.why_down();
                return Err(self.unreachable(&urls, format!("no replica is ready ({why})")));
            };
            let replica = &self.replicas.replicas[index];
            let started = Instant::now();
            let outcome = {
                let _in_flight = InFlight::enter(replica);
                attempt(index).await
            };
            match outcome {
                Attempt::Done(value) => {
                    replica.served.fetch_add(1, Ordering::Relaxed);
                    self.replicas
                        .latency
                        .observe(started.elapsed().as_secs_f64());
                    return Ok(value);
                }
                Attempt::Full(wait) => {
                    self.replicas.count_error("overloaded");
                    let wait = context.remaining().map_or(wait, |left| wait.min(left));
                    if context.remaining() == Some(Duration::ZERO) {
                        return Err(ActorError::Overloaded {
                            model: self.replicas.model.clone(),
                        });
                    }
                    wait_or_cancel(wait, &context.cancel).await;
                }
                Attempt::Retryable(error) => {
                    replica.mark_down(error.to_string());
                    tracing::warn!(model = %self.replicas.model, url = %replica.url, %error, "replica failed; skipped until it is ready again");
                    if retried || !self.replicas.any_ready() {
                        return Err(error);
                    }
                    retried = true;
                    avoid = Some(index);
                }
                Attempt::Fatal(error) => return Err(error),
            }
        }
    }

    async fn generate(&self, msg: Generate) -> Result<Generated, ActorError> {
        // A conversation is rendered where the model and its template are: on the node.
        let route = match msg.prompt {
            Prompt::Text(_) => "generate",
            Prompt::Chat(_) => "chat",
            // A node's routes take text: its vocabulary is not this server's to check.
            Prompt::Tokens(_) => {
                let refusal = "prompt: token ids need the model loaded on this server";
                return Err(ActorError::Model(ModelError::InvalidInput(refusal.into())));
            }
        };
        let body = generation_body(&msg.prompt, &msg.params);
        let path = format!("/v1/models/{}/{route}/stream", self.replicas.model);
        let context = &msg.context;
        let events = msg.events.as_ref();
        self.call(context, |replica| {
            self.stream_generation(replica, &path, &body, context, events)
        })
        .await
    }

    async fn classify(&self, msg: Classify) -> Result<Classified, ActorError> {
        let body = json!({"text": msg.text, "text_pair": msg.pair});
        let path = format!("/v1/models/{}/classify", self.replicas.model);
        let context = &msg.context;
        self.call(context, |replica| {
            self.post_classify(replica, &path, &body, context)
        })
        .await
    }

    /// Sends a POST of `body` carrying the call's ids, trace and deadline: a 2xx response,
    /// or how the attempt ended without one (a refusal, or no answer within
    /// `remote.read_timeout_ms`).
    async fn send(
        &self,
        replica: &Replica,
        path: &str,
        body: &Value,
        context: &CallContext,
    ) -> Result<NodeResponse, Attempt<()>> {
        let span_id = &uuid::Uuid::new_v4().simple().to_string()[..16];
        // The whole exchange may last the request's time; silences are bounded below.
        let mut request = self
            .client
            .post(format!("{}{path}", replica.url))
            .insert_header(("x-request-id", context.request_id.as_str()))
            .insert_header((
                "traceparent",
                format!("00-{}-{span_id}-01", context.trace_id),
            ))
            .timeout(context.remaining().unwrap_or(NO_DEADLINE));
        if let Some(left) = context.remaining() {
            request = request.insert_header((DEADLINE_HEADER, left.as_millis().to_string()));
        }
        let sent = tokio::select! {
            sent = tokio::time::timeout(self.read_timeout, request.send_json(body)) => sent,
            () = cancelled(&context.cancel) => return Err(Attempt::Fatal(ActorError::Cancelled)),
        };
        let (kind, reason) = match sent {
            Ok(Ok(response)) if response.status().is_success() => return Ok(response),
            Ok(Ok(mut response)) => return Err(self.refused(replica, &mut response).await),
            Ok(Err(error @ awc::error::SendRequestError::Connect(_))) => {
                ("connect", error.to_string())
            }
            Ok(Err(awc::error::SendRequestError::Timeout)) | Err(_) => (
                "timeout",
                format!("no answer for {} ms", self.read_timeout.as_millis()),
            ),
            Ok(Err(error)) => ("reset", error.to_string()),
        };
        self.replicas.count_error(kind);
        Err(Attempt::Retryable(self.unreachable(&replica.url, reason)))
    }

    /// One streamed generation on `replica`.
    async fn stream_generation(
        &self,
        replica: usize,
        path: &str,
        body: &Value,
        context: &CallContext,
        events: Option<&tokio::sync::mpsc::UnboundedSender<TokenEvent>>,
    ) -> Attempt<Generated> {
        let replica = &self.replicas.replicas[replica];
        let queued = Instant::now();
        let mut response = match self.send(replica, path, body, context).await {
            Ok(response) => response,
            Err(attempt) => return retype(attempt),
        };
        let mut buffer = Vec::new();
        let mut produced = false;
        loop {
            let chunk = tokio::select! {
                chunk = tokio::time::timeout(self.read_timeout, response.next()) => chunk,
                () = cancelled(&context.cancel) => return Attempt::Fatal(ActorError::Cancelled),
            };
            let reason = match chunk {
                Ok(Some(Ok(bytes))) => {
                    buffer.extend_from_slice(&bytes);
                    while let Some(event) = next_event(&mut buffer) {
                        match event["type"].as_str() {
                            Some("token") => {
                                produced = true;
                                if let Some(events) = events {
                                    let _ = events.send(TokenEvent {
                                        index: event["index"].as_u64().unwrap_or(0) as usize,
                                        token_id: event["token_id"].as_u64().unwrap_or(0) as u32,
                                        text: event["text"].as_str().unwrap_or("").to_string(),
                                        logprob: serde_json::from_value(event["logprob"].clone())
                                            .ok()
                                            .flatten(),
                                    });
                                }
                            }
                            Some("done") => return self.generated(replica, &event, queued),
                            _ => return self.failed(replica, &event, produced),
                        }
                    }
                    continue;
                }
                Ok(Some(Err(error))) => {
                    self.replicas.count_error("reset");
                    format!("the stream broke: {error}")
                }
                Ok(None) => {
                    self.replicas.count_error("reset");
                    "the stream ended before its last event".to_string()
                }
                Err(_) => {
                    self.replicas.count_error("timeout");
                    format!("no answer for {} ms", self.read_timeout.as_millis())
                }
            };
            let error = self.unreachable(&replica.url, reason);
            // Tokens already went to the client: a retry elsewhere would repeat them.
            return if produced {
                Attempt::Fatal(error)
            } else {
                Attempt::Retryable(error)
            };
        }
    }

    /// One classification on `replica`.
    async fn post_classify(
        &self,
        replica: usize,
        path: &str,
        body: &Value,
        context: &CallContext,
    ) -> Attempt<Classified> {
        let replica = &self.replicas.replicas[replica];
        let queued = Instant::now();
        let mut response = match self.send(replica, path, body, context).await {
            Ok(response) => response,
            Err(attempt) => return retype(attempt),
        };
        let answer = tokio::select! {
            answer = tokio::time::timeout(self.read_timeout, response.json::<Value>().limit(1 << 22)) => answer,
            () = cancelled(&context.cancel) => return Attempt::Fatal(ActorError::Cancelled),
        };
        let answer = match answer {
            Ok(Ok(answer)) => answer,
            Ok(Err(error)) => {
                self.replicas.count_error("reset");
                return Attempt::Retryable(self.unreachable(&replica.url, error));
            }
            Err(_) => {
                self.replicas.count_error("timeout");
                let reason = format!("no answer for {} ms", self.read_timeout.as_millis());
                return Attempt::Retryable(self.unreachable(&replica.url, reason));
            }
        };
        let result = &answer["results"][0];
        let floats = |v: &Value| -> Vec<f32> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_f64)
                        .map(|f| f as f32)
                        .collect()
                })
                .unwrap_or_default()
        };
        let classification = Classification {
            input_ids: result["input_token_ids"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_u64)
                        .map(|i| i as u32)
                        .collect()
                })
                .unwrap_or_default(),
            logits: floats(&result["logits"]),
            scores: result["scores"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s["score"].as_f64())
                        .map(|f| f as f32)
                        .collect()
                })
                .unwrap_or_default(),
            label: result["label"].as_str().unwrap_or_default().to_string(),
            score: result["score"].as_f64().unwrap_or(0.0) as f32,
        };
        Attempt::Done(Classified {
            classification,
            span: work_span(queued, &answer["timings"]),
        })
    }

    /// A `done` event: the node's whole answer.
    fn generated(&self, replica: &Replica, done: &Value, queued: Instant) -> Attempt<Generated> {
        let ids = |v: &Value| -> Vec<u32> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_u64)
                        .map(|i| i as u32)
                        .collect()
                })
                .unwrap_or_default()
        };
        let finish_reason = serde_json::from_value::<FinishReason>(done["finish_reason"].clone());
        let Ok(finish_reason) = finish_reason else {
            return Attempt::Fatal(
                self.unreachable(&replica.url, "a done event without a finish_reason"),
            );
        };
        let text = |key: &str| done[key].as_str().unwrap_or_default().to_string();
        Attempt::Done(Generated {
            generation: Generation {
                prompt_ids: ids(&done["prompt_token_ids"]),
                new_token_ids: ids(&done["token_ids"]),
                text: text("generated"),
                new_text: text("continuation"),
                finish_reason,
                logprobs: serde_json::from_value(done["logprobs"].clone())
                    .ok()
                    .flatten(),
                prompt_logprobs: serde_json::from_value(done["prompt_logprobs"].clone())
                    .ok()
                    .flatten(),
            },
            span: work_span(queued, &done["timings"]),
        })
    }

    /// An `error` event, or an error body: what the node said, as this side's error.
    fn failed<T>(&self, replica: &Replica, error: &Value, produced: bool) -> Attempt<T> {
        let message = error["error"].as_str().unwrap_or("no message").to_string();
        let model = self.replicas.model.clone();
        match error["error_type"].as_str().unwrap_or_default() {
            "overloaded" if !produced => Attempt::Full(ROOM_RETRY),
            "validation" | "wrong_role" | "no_chat_template" => {
                Attempt::Fatal(ActorError::Model(ModelError::InvalidInput(message)))
            }
            "cancelled" => Attempt::Fatal(ActorError::Cancelled),
            // Every replica holds the same node key, so trying another would not help.
            "unauthorized" => {
                self.replicas.count_error("unauthorized");
                Attempt::Fatal(self.unreachable(
                    &replica.url,
                    format!("the node refused this graph node's node key ({message}); give both the same INFERGRAPH_NODE_KEY or [auth] node_key_file"),
                ))
            }
            // The node is loading, draining, or does not serve the model: another may.
            "not_ready" | "shutting_down" | "model_not_found" if !produced => {
                self.replicas.count_error("status");
                Attempt::Retryable(self.unreachable(&replica.url, message))
            }
            _ => {
                self.replicas.count_error("status");
                Attempt::Fatal(ActorError::Failed { model, message })
            }
        }
    }

    /// A non-2xx answer: its error body, and a 429's `Retry-After`.
    async fn refused<T, S>(
        &self,
        replica: &Replica,
        response: &mut awc::ClientResponse<S>,
    ) -> Attempt<T>
    where
        S: futures_util::Stream<Item = Result<actix_web::web::Bytes, awc::error::PayloadError>>
            + Unpin,
    {
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = tokio::time::timeout(self.read_timeout, response.json::<Value>().limit(1 << 20))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_else(|| json!({"error": format!("status {status}"), "error_type": ""}));
        if status == 429 {
            return Attempt::Full(retry_after.unwrap_or(ROOM_RETRY));
        }
        self.failed(replica, &body, false)
    }
}

/// An attempt that ended before any answer, as an attempt of another type.
fn retype<T>(attempt: Attempt<()>) -> Attempt<T> {
    match attempt {
        Attempt::Done(()) => unreachable!("send() ends in a response or in failure"),
        Attempt::Full(wait) => Attempt::Full(wait),
        Attempt::Retryable(error) => Attempt::Retryable(error),
        Attempt::Fatal(error) => Attempt::Fatal(error),
    }
}

/// The request body for a node's `/generate/stream` (a text) or `/chat/stream` (a
/// conversation): the same parameters as here.
fn generation_body(prompt: &Prompt, params: &GenerationParams) -> Value {
    let sampling = &params.sampling;
    let mut body = json!({
        "max_new_tokens": params.max_new_tokens,
        "min_new_tokens": params.min_new_tokens,
        "temperature": sampling.temperature,
        "repetition_penalty": sampling.repetition_penalty,
    });
    let optional = [
        ("max_length", params.max_length.map(|n| json!(n))),
        ("top_k", sampling.top_k.map(|k| json!(k))),
        ("top_p", sampling.top_p.map(|p| json!(p))),
        ("min_p", sampling.min_p.map(|p| json!(p))),
        ("seed", sampling.seed.map(|s| json!(s))),
        // Only when set, so that a node of an earlier version still takes the body.
        (
            "presence_penalty",
            (sampling.presence_penalty != 0.0).then(|| json!(sampling.presence_penalty)),
        ),
        (
            "frequency_penalty",
            (sampling.frequency_penalty != 0.0).then(|| json!(sampling.frequency_penalty)),
        ),
        ("logprobs", params.logprobs.map(|n| json!(n))),
        (
            "prompt_logprobs",
            params.prompt_logprobs.then_some(json!(true)),
        ),
        (
            "stop",
            (!params.stop.is_empty()).then(|| json!(params.stop)),
        ),
        (
            "response_format",
            (!matches!(params.response_format, ResponseFormat::Text))
                .then(|| json!(params.response_format)),
        ),
    ];
    for (key, value) in optional {
        if let Some(value) = value {
            body[key] = value;
        }
    }
    match prompt {
        Prompt::Text(text) => body["text"] = json!(text),
        Prompt::Chat(conversation) => {
            body["messages"] = json!(conversation.messages);
            // The node's route takes OpenAI's calls, whose arguments are JSON text.
            for message in body["messages"].as_array_mut().into_iter().flatten() {
                let calls = message.get_mut("tool_calls").and_then(Value::as_array_mut);
                for call in calls.into_iter().flatten() {
                    if let Some(arguments) = call.pointer_mut("/function/arguments") {
                        if !arguments.is_string() {
                            *arguments = Value::String(arguments.to_string());
                        }
                    }
                }
            }
            if !conversation.tools.is_empty() {
                body["tools"] = json!(conversation.tools);
            }
        }
        // Refused before a body is made (`generate`).
        Prompt::Tokens(_) => {}
    }
    body
}

/// When the node queued, started and finished the work, from its `timings` and the
/// moment this side sent the request. A batch size is not known across the hop (0).
fn work_span(queued: Instant, timings: &Value) -> WorkSpan {
    let ms = |key: &str| Duration::from_secs_f64(timings[key].as_f64().unwrap_or(0.0) / 1e3);
    let finished = Instant::now();
    let started = (queued + ms("queue_ms")).min(finished);
    WorkSpan {
        queued,
        started,
        finished,
        batch_size: 0,
    }
}

/// Takes the first whole SSE event out of `buffer`, as its parsed `data:`.
fn next_event(buffer: &mut Vec<u8>) -> Option<Value> {
    loop {
        let end = buffer.windows(2).position(|w| w == b"\n\n")?;
        let frame: Vec<u8> = buffer.drain(..end + 2).collect();
        let frame = String::from_utf8_lossy(&frame);
        let data = frame.lines().find_map(|l| l.strip_prefix("data: "));
        if let Some(event) = data.and_then(|d| serde_json::from_str(d).ok()) {
            return Some(event);
        }
    }
}

/// Resolves once `cancel` is set.
async fn cancelled(cancel: &CancelToken) {
    while !cancel.is_cancelled() {
        actix::clock::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits `wait`, or less if `cancel` is set meanwhile.
async fn wait_or_cancel(wait: Duration, cancel: &CancelToken) {
    tokio::select! {
        () = actix::clock::sleep(wait) => {}
        () = cancelled(cancel) => {}
    }
}
