//! Streaming graph requests: `GET /v1/graph/ws` (websocket; a frame's `"graph"` picks a
//! graph), `POST /v1/graph/stream` and `POST /v1/graphs/{name}/stream` (Server-Sent
//! Events), all carrying `api::StreamEvent`s.
//!
//! LIMITS: readiness and capacity are checked before the upgrade / before the 200, so an
//! overloaded server answers 429 rather than opening a stream that would fail.
//!
//! CANCELLATION: an SSE request is cancelled when its response stream is dropped or its
//! client disconnects; a websocket request when the client sends `{"type":"cancel","id"}`,
//! or when the connection closes (which cancels all of its requests).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use actix::Addr;
use actix_web::{web, HttpRequest, HttpResponse};
use actix_ws::Message;
use tokio::sync::mpsc;

use super::api::{GenerationRequest, RequestErrors, StreamEvent};
use super::error::ApiError;
use super::graph_calls::{
    admit, check_capacity, execute, failure_report, find_graph, graph_answer, read_graph_request,
};
use super::request::{call_context, graph_params};
use super::sse::event_stream;
use super::state::AppState;
use crate::actors::CallContext;
use crate::engine::{CancelOnDrop, CancelToken};
use crate::graph::{GraphCoordinator, GraphEvent, RunGraph};
use crate::telemetry::TraceId;

/// A websocket connection with no request running is closed after this long without a frame.
const WS_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// `POST /v1/graph/stream`: the `/v1/graph` body in, `text/event-stream` out.
#[utoipa::path(post, path = "/v1/graph/stream", tag = "streaming", request_body = GenerationRequest,
    responses(
        (status = 200, description = "Server-Sent Events; each `data:` is a StreamEvent, `event:` its type",
            content_type = "text/event-stream", body = StreamEvent),
        RequestErrors))]
pub async fn sse(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    graph_sse(state, req, payload, None).await
}

/// `POST /v1/graphs/{name}/stream`: one graph's events, as `/v1/graph/stream` sends them.
#[utoipa::path(post, path = "/v1/graphs/{name}/stream", tag = "streaming", request_body = GenerationRequest,
    params(("name" = String, Path, description = "A graph's name, as `GET /v1/graphs` lists it")),
    responses(
        (status = 200, description = "Server-Sent Events; each `data:` is a StreamEvent, `event:` its type",
            content_type = "text/event-stream", body = StreamEvent),
        RequestErrors))]
pub async fn named_sse(
    state: web::Data<AppState>,
    req: HttpRequest,
    name: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    graph_sse(state, req, payload, Some(&name)).await
}

async fn graph_sse(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
    graph: Option<&str>,
) -> Result<HttpResponse, ApiError> {
    let (request, params) = read_graph_request(&state, &req, payload, graph).await?;
    let (coordinator, graph) = admit(&state, graph, &request.text)?;

    // The guards live as long as the response body: dropping it (the client is gone) cancels.
    let (context, guards) = call_context(&state, &req);
    let (sink, events) = mpsc::unbounded_channel();
    let run = RunGraph {
        graph,
        events: None,
        text: request.text,
        params,
        context,
    };
    actix_web::rt::spawn(stream_graph(state.clone(), coordinator, run, sink));
    Ok(event_stream(events, guards, |event: &StreamEvent| {
        format!(
            "event: {}\ndata: {}\n\n",
            event.kind(),
            serde_json::to_string(event).expect("events serialize")
        )
    }))
}

/// `GET /v1/graph/ws`: upgrade, then serve any number of requests over the connection.
#[utoipa::path(get, path = "/v1/graph/ws", tag = "streaming",
    description = "Websocket. Send GenerationRequest JSON text frames (optionally with an `id`, and a `graph` naming one of `GET /v1/graphs`; the default graph otherwise), or `{\"type\": \"cancel\", \"id\"}`; receive StreamEvent text frames.",
    responses(
        (status = 101, description = "Switching to the websocket protocol"),
        (status = 400, description = "Not a websocket upgrade request", body = super::api::ErrorBody),
        (status = 429, description = "A model's queue is full; see Retry-After", body = super::api::ErrorBody),
        (status = 503, description = "Loading or shutting down", body = super::api::ErrorBody)))]
pub async fn websocket(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, actix_web::Error> {
    find_graph(&state, None)?;
    check_capacity(&state, None)?;
    let (response, session, frames) = actix_ws::handle(&req, body)
        .map_err(|e| ApiError::BadRequest(format!("not a websocket upgrade request: {e}")))?;
    // The protocol limit is generous; requests are held to `limits.max_body_bytes` by
    // `Connection::on_text`, which answers oversized ones with an error event.
    let frames = frames.max_frame_size(4 * state.config.limits.max_body_bytes.max(64 * 1024));
    actix_web::rt::spawn(Connection::new(state, session).run(frames));
    Ok(response)
}

/// One websocket connection: its requests and the events on their way out.
struct Connection {
    state: web::Data<AppState>,
    session: actix_ws::Session,
    /// Running requests by id; dropping an entry cancels that request.
    requests: HashMap<String, CancelOnDrop>,
    /// Every request's events, to be written to the socket in order.
    sink: mpsc::UnboundedSender<StreamEvent>,
    events: mpsc::UnboundedReceiver<StreamEvent>,
}

impl Connection {
    fn new(state: web::Data<AppState>, session: actix_ws::Session) -> Self {
        let (sink, events) = mpsc::unbounded_channel();
        Self {
            state,
            session,
            requests: HashMap::new(),
            sink,
            events,
        }
    }

    async fn run(mut self, mut frames: actix_ws::MessageStream) {
        let mut last_frame = Instant::now();
        loop {
            let idle_deadline = last_frame + WS_IDLE_TIMEOUT;
            tokio::select! {
                frame = frames.recv() => {
                    last_frame = Instant::now();
                    match frame {
                        Some(Ok(Message::Text(text))) => self.on_text(&text),
                        Some(Ok(Message::Binary(_))) => self.refuse(None, ApiError::Validation(
                            "binary frames are not understood; send JSON text frames".into(),
                        )),
                        Some(Ok(Message::Ping(bytes))) => {
                            if self.session.pong(&bytes).await.is_err() {
                                break;
                            }
                        }
                        Some(Ok(Message::Close(_))) | None => break,
                        Some(Ok(_)) => {}
                        Some(Err(error)) => {
                            // A frame the protocol layer rejects (e.g. over its size limit)
                            // leaves the stream unusable: say why, then close.
                            self.refuse(None, ApiError::BadRequest(format!("websocket protocol error: {error}")));
                            self.flush().await;
                            break;
                        }
                    }
                }
                Some(event) = self.events.recv() => {
                    if event.is_last() {
                        if let Some(id) = event.id() {
                            self.requests.remove(id);
                        }
                    }
                    if self.send(&event).await.is_err() {
                        break;
                    }
                }
                _ = actix_web::rt::time::sleep_until(idle_deadline.into()), if self.requests.is_empty() => {
                    break;
                }
            }
        }
        // Dropping `requests` cancels whatever is still running.
        let _ = self.session.close(None).await;
    }

    /// A text frame: a graph request (the `/v1/graph` body, optionally with an `id` and a
    /// `graph`) or `{"type": "cancel", "id": ..}`.
    fn on_text(&mut self, text: &str) {
        let limit = self.state.config.limits.max_body_bytes;
        if text.len() > limit {
            return self.refuse(None, ApiError::PayloadTooLarge { limit });
        }
        let mut value: serde_json::Value = match serde_json::from_str(text) {
            Ok(value) => value,
            Err(e) => return self.refuse(None, ApiError::MalformedJson(e.to_string())),
        };
        let Some(object) = value.as_object_mut() else {
            return self.refuse(
                None,
                ApiError::Validation("a frame must be a JSON object".into()),
            );
        };
        let id = match object.remove("id") {
            Some(serde_json::Value::String(id)) if !id.is_empty() => Some(id),
            None => None,
            Some(_) => {
                return self.refuse(
                    None,
                    ApiError::Validation("id: must be a non-empty string".into()),
                )
            }
        };
        if object.get("type").and_then(|t| t.as_str()) == Some("cancel") {
            match id {
                // The request ends with a `cancelled` error event.
                Some(id) => drop(self.requests.remove(&id)),
                None => self.refuse(
                    None,
                    ApiError::Validation("cancel: needs the request's id".into()),
                ),
            }
            return;
        }
        let id = id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        if self.requests.contains_key(&id) {
            return self.refuse(
                Some(id.clone()),
                ApiError::Validation(format!("id: {id:?} is already running")),
            );
        }
        let graph = match object.remove("graph") {
            Some(serde_json::Value::String(graph)) => Some(graph),
            None => None,
            Some(_) => {
                return self.refuse(
                    Some(id),
                    ApiError::Validation("graph: must be a graph's name".into()),
                )
            }
        };
        let request: GenerationRequest = match serde_json::from_value(value) {
            Ok(request) => request,
            Err(e) => return self.refuse(Some(id), ApiError::Validation(e.to_string())),
        };
        let checked = find_graph(&self.state, graph.as_deref())
            .and_then(|_| graph_params(&self.state, &request))
            .and_then(|params| Ok((params, admit(&self.state, graph.as_deref(), &request.text)?)));
        let (params, (coordinator, graph)) = match checked {
            Ok(checked) => checked,
            Err(error) => return self.refuse(Some(id), error),
        };
        let cancel = CancelToken::new();
        self.requests
            .insert(id.clone(), CancelOnDrop(cancel.clone()));
        // Each request of a connection is a trace of its own, with the server's timeout.
        let timeout = Duration::from_millis(self.state.config.limits.request_timeout_ms);
        let context = CallContext {
            request_id: id,
            trace_id: TraceId::new().0,
            deadline: Some(Instant::now() + timeout),
            timeout_ms: self.state.config.limits.request_timeout_ms,
            cancel,
            parent: tracing::Span::current(),
        };
        let run = RunGraph {
            graph,
            events: None,
            text: request.text,
            params,
            context,
        };
        actix_web::rt::spawn(stream_graph(
            self.state.clone(),
            coordinator,
            run,
            self.sink.clone(),
        ));
    }

    fn refuse(&self, id: Option<String>, error: ApiError) {
        let _ = self.sink.send(error_event(id, &error));
    }

    /// Writes the events already waiting.
    async fn flush(&mut self) {
        while let Ok(event) = self.events.try_recv() {
            if self.send(&event).await.is_err() {
                return;
            }
        }
    }

    async fn send(&mut self, event: &StreamEvent) -> Result<(), actix_ws::Closed> {
        self.session
            .text(serde_json::to_string(event).expect("events serialize"))
            .await
    }
}

/// Runs one graph request (`run`, whose `events` this sets), sending its events to `sink`:
/// `started` first, `done` or `error` last.
async fn stream_graph(
    state: web::Data<AppState>,
    coordinator: Addr<GraphCoordinator>,
    mut run: RunGraph,
    sink: mpsc::UnboundedSender<StreamEvent>,
) {
    let (id, cancel) = (run.context.request_id.clone(), run.context.cancel.clone());
    let _ = sink.send(StreamEvent::Started { id: id.clone() });
    let (progress, mut relay) = mpsc::unbounded_channel();
    run.events = Some(progress);
    let graph = async {
        let outcome = execute(&state, &coordinator, run).await;
        // Whatever ended the request (answer, error, timeout), stop the work behind it;
        // the relay below then ends as the coordinator lets go of its sender.
        cancel.cancel();
        outcome
    };
    let forward = async {
        while let Some(event) = relay.recv().await {
            let _ = sink.send(stream_event(&id, event));
        }
    };
    let (outcome, ()) = futures_util::join!(graph, forward);
    let last = match outcome {
        Ok((outcome, trace_id)) => StreamEvent::Done(graph_answer(id, &outcome, trace_id)),
        Err(error) => error_event(Some(id), &error),
    };
    let _ = sink.send(last);
}

fn stream_event(id: &str, event: GraphEvent) -> StreamEvent {
    let id = id.to_string();
    match event {
        GraphEvent::Token { step, model, token } => StreamEvent::Token {
            id,
            step,
            model,
            index: token.index,
            token_id: token.token_id,
            text: token.text,
        },
        GraphEvent::Generated {
            step,
            model,
            text,
            finish_reason,
        } => StreamEvent::Generated {
            id,
            step,
            model,
            text,
            finish_reason,
        },
        GraphEvent::Classified {
            step,
            of,
            classifier,
            score,
            label,
        } => StreamEvent::Classified {
            id,
            step,
            model: of,
            classifier,
            score,
            label,
        },
        GraphEvent::Routed {
            step,
            of,
            to,
            reason,
        } => StreamEvent::Routed {
            id,
            step,
            model: of,
            to,
            reason,
        },
        GraphEvent::Selected { step, of, score } => StreamEvent::Selected {
            id,
            step,
            model: of,
            score,
        },
        GraphEvent::Skipped { step, failure } => StreamEvent::Skipped {
            id,
            failure: failure_report(&step, &failure),
        },
    }
}

fn error_event(id: Option<String>, error: &ApiError) -> StreamEvent {
    StreamEvent::Error {
        id,
        error: error.to_string(),
        error_type: error.error_type().to_string(),
    }
}
