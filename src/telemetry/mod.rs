//! Logging, request identity and metrics.
//!
//! Every HTTP request gets an id: the client's `x-request-id` when it sends a sane one, a
//! fresh UUID otherwise. It is a field of the request's root span, so every log line of the
//! request (actors' included, whose spans are children of it) carries it, and it is echoed
//! in the `x-request-id` response header. Every request also belongs to a W3C trace
//! (`traceparent`), whose id its kept trace takes.

pub mod metrics;
pub mod otlp;
pub mod traces;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage};
use tracing::Span;
use tracing_actix_web::{DefaultRootSpanBuilder, RootSpanBuilder};

use crate::config::LogFormat;

pub const REQUEST_ID_HEADER: &str = "x-request-id";
pub const TRACEPARENT_HEADER: &str = "traceparent";

/// The id of the request being served, in its extensions.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

impl RequestId {
    /// The client's id if it is short and printable, else a new UUID.
    fn for_request(request: &ServiceRequest) -> Self {
        let from_client = request
            .headers()
            .get(REQUEST_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|id| {
                !id.is_empty() && id.len() <= 128 && id.chars().all(|c| c.is_ascii_graphic())
            });
        Self(from_client.map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_string))
    }
}

/// The W3C trace a request belongs to: the caller's, from its `traceparent` header (so a
/// graph node and the model nodes it calls share one trace id), or a new one.
#[derive(Debug, Clone)]
pub struct TraceId(pub String);

impl TraceId {
    /// A fresh trace id: 32 lowercase hex digits.
    pub fn new() -> Self {
        Self(uuid::Uuid::new_v4().simple().to_string())
    }

    /// The trace id of a valid `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`), else a new one.
    fn for_request(request: &ServiceRequest) -> Self {
        let hex = |s: &str, n: usize| {
            s.len() == n
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        let from_caller = request
            .headers()
            .get(TRACEPARENT_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let parts: Vec<&str> = v.trim().split('-').collect();
                match parts[..] {
                    [version, trace, span, flags]
                        if hex(version, 2)
                            && version != "ff"
                            && hex(trace, 32)
                            && trace.bytes().any(|b| b != b'0')
                            && hex(span, 16)
                            && hex(flags, 2) =>
                    {
                        Some(trace.to_string())
                    }
                    _ => None,
                }
            });
        from_caller.map_or_else(Self::new, Self)
    }
}

impl Default for TraceId {
    fn default() -> Self {
        Self::new()
    }
}

/// Root span of each request, carrying its request id.
pub struct RequestSpan;

impl RootSpanBuilder for RequestSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        let id = RequestId::for_request(request);
        let span = tracing::info_span!(
            "request",
            request_id = %id.0,
            method = %request.method(),
            path = %request.path(),
            status = tracing::field::Empty,
            exception.message = tracing::field::Empty,
            exception.details = tracing::field::Empty,
            http.status_code = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        request.extensions_mut().insert(id);
        request
            .extensions_mut()
            .insert(TraceId::for_request(request));
        span
    }

    fn on_request_end<B: MessageBody>(span: Span, outcome: &Result<ServiceResponse<B>, Error>) {
        if let Ok(response) = outcome {
            span.record("status", response.status().as_u16());
        }
        DefaultRootSpanBuilder::on_request_end(span, outcome);
    }
}

/// Echoes the request id in the response; runs inside `TracingLogger`, which assigns it.
pub async fn echo_request_id(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let id = request.extensions().get::<RequestId>().cloned();
    let mut response = next.call(request).await?;
    if let Some(value) = id.and_then(|id| HeaderValue::from_str(&id.0).ok()) {
        response
            .headers_mut()
            .insert(HeaderName::from_static(REQUEST_ID_HEADER), value);
    }
    Ok(response)
}

/// Installs the global subscriber: `level` unless `RUST_LOG` says otherwise, to stderr.
pub fn init_tracing(format: LogFormat, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    // Colour only on a terminal: `docker logs` and log collectors would show the escapes.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    // A second call (tests that start several servers in one process) keeps the first.
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().with_span_list(true).try_init(),
    };
}
