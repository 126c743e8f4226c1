//! Exporting traces over OTLP/HTTP with the JSON encoding (`POST {endpoint}` with an
//! `ExportTraceServiceRequest`), to any OpenTelemetry collector. Off unless configured.
//!
//! BACKPRESSURE: exports go through a bounded queue to one background task; when the collector
//! is slow or gone, traces beyond the queue are dropped (and counted), never piling up in memory
//! or slowing requests.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::traces::Trace;

/// Traces waiting for the collector before new ones are dropped.
const QUEUE: usize = 1024;

/// A handle to the export task.
pub struct OtlpExporter {
    queue: mpsc::Sender<Arc<Trace>>,
    /// Traces dropped because the queue was full.
    pub dropped: Arc<AtomicU64>,
}

impl OtlpExporter {
    /// Starts exporting to `endpoint` (e.g. `http://collector:4318/v1/traces`) on the current
    /// actix runtime.
    pub fn start(endpoint: String, service_name: String) -> Self {
        let (queue, mut traces) = mpsc::channel::<Arc<Trace>>(QUEUE);
        actix_web::rt::spawn(async move {
            let client = awc::Client::builder()
                .timeout(Duration::from_secs(10))
                .finish();
            while let Some(trace) = traces.recv().await {
                let body = export_request(&trace, &service_name);
                match client.post(&endpoint).send_json(&body).await {
                    Ok(response) if response.status().is_success() => {}
                    Ok(response) => {
                        tracing::warn!(status = %response.status(), %endpoint, "the OTLP collector refused a trace")
                    }
                    Err(error) => {
                        tracing::warn!(%error, %endpoint, "cannot reach the OTLP collector")
                    }
                }
            }
        });
        Self {
            queue,
            dropped: Arc::default(),
        }
    }

    pub fn export(&self, trace: Arc<Trace>) {
        if self.queue.try_send(trace).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The OTLP JSON `ExportTraceServiceRequest` for one trace. 64-bit integers are strings and
/// ids are hex, as the OTLP JSON mapping requires.
pub fn export_request(trace: &Trace, service_name: &str) -> Value {
    // Span ids must be unique within the trace: the trace id's first half plus the index.
    let base = u64::from_str_radix(&trace.trace_id[..16], 16).unwrap_or(0);
    let span_id = |index: usize| format!("{:016x}", base.wrapping_add(index as u64 + 1));
    let nanos = |ms: f64| ((trace.started_at_ms as f64 + ms) * 1e6) as u64;
    let spans: Vec<Value> = trace
        .spans
        .iter()
        .map(|span| {
            let mut attributes: Vec<Value> = span
                .attributes
                .iter()
                .map(|(key, value)| json!({"key": format!("infergraph.{key}"), "value": any_value(value)}))
                .collect();
            attributes.push(json!({"key": "infergraph.request_id", "value": {"stringValue": trace.request_id}}));
            json!({
                "traceId": trace.trace_id,
                "spanId": span_id(span.id),
                "parentSpanId": span.parent.map(span_id).unwrap_or_default(),
                "name": span.name,
                "kind": if span.parent.is_none() { 2 } else { 1 },
                "startTimeUnixNano": nanos(span.start_ms).to_string(),
                "endTimeUnixNano": nanos(span.end_ms).to_string(),
                "attributes": attributes,
            })
        })
        .collect();
    json!({
        "resourceSpans": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service_name}}]},
            "scopeSpans": [{"scope": {"name": "infergraph"}, "spans": spans}],
        }]
    })
}

fn any_value(value: &Value) -> Value {
    match value {
        Value::Bool(b) => json!({"boolValue": b}),
        Value::Number(n) if n.is_i64() || n.is_u64() => json!({"intValue": n.to_string()}),
        Value::Number(n) => json!({"doubleValue": n.as_f64()}),
        Value::String(s) => json!({"stringValue": s}),
        other => json!({"stringValue": other.to_string()}),
    }
}
