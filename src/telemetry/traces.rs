//! The last graph requests' traces, kept in memory for `GET /v1/traces`: a waterfall of the
//! request, the coordinator, each generation (queue wait and compute apart) running side by
//! side, then each classification in turn.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::actors::WorkSpan;
use crate::graph::GraphOutcome;

/// One request's span tree; times are milliseconds from the trace's start.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Trace {
    pub trace_id: String,
    pub request_id: String,
    /// Wall-clock start, milliseconds since the Unix epoch.
    pub started_at_ms: u64,
    pub duration_ms: f64,
    /// Parents before children; `spans[0]` is the root.
    pub spans: Vec<SpanRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SpanRecord {
    pub id: usize,
    pub parent: Option<usize>,
    /// `request`, `graph`, `generate`, `classify`, `queue` or `compute`.
    pub name: String,
    pub start_ms: f64,
    pub end_ms: f64,
    #[schema(value_type = Object)]
    pub attributes: BTreeMap<String, Value>,
}

/// A trace without its spans, for listings.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TraceSummary {
    pub trace_id: String,
    pub request_id: String,
    pub started_at_ms: u64,
    pub duration_ms: f64,
    pub spans: usize,
}

/// The most recent traces, oldest dropped first.
pub struct TraceStore {
    capacity: usize,
    traces: Mutex<VecDeque<Arc<Trace>>>,
}

impl TraceStore {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            traces: Mutex::new(VecDeque::with_capacity(capacity)),
        }
    }

    pub fn record(&self, trace: Arc<Trace>) {
        if self.capacity == 0 {
            return;
        }
        let mut traces = self.traces.lock().expect("trace store lock");
        if traces.len() == self.capacity {
            traces.pop_front();
        }
        traces.push_back(trace);
    }

    pub fn get(&self, trace_id: &str) -> Option<Arc<Trace>> {
        let traces = self.traces.lock().expect("trace store lock");
        traces.iter().find(|t| t.trace_id == trace_id).cloned()
    }

    /// Newest first.
    pub fn summaries(&self) -> Vec<TraceSummary> {
        let traces = self.traces.lock().expect("trace store lock");
        traces
            .iter()
            .rev()
            .map(|t| TraceSummary {
                trace_id: t.trace_id.clone(),
                request_id: t.request_id.clone(),
                started_at_ms: t.started_at_ms,
                duration_ms: t.duration_ms,
                spans: t.spans.len(),
            })
            .collect()
    }
}

/// The trace of one graph request that ran from `begun` to `ended`.
pub fn graph_trace(
    request_id: &str,
    begun: Instant,
    ended: Instant,
    outcome: &GraphOutcome,
) -> Trace {
    let ms = |t: Instant| t.saturating_duration_since(begun).as_secs_f64() * 1e3;
    let mut spans = Vec::new();
    let mut add =
        |parent: Option<usize>, name: &str, start: Instant, end: Instant, attributes: Value| {
            let id = spans.len();
            let attributes = attributes
                .as_object()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .collect();
            spans.push(SpanRecord {
                id,
                parent,
                name: name.to_string(),
                start_ms: ms(start),
                end_ms: ms(end),
                attributes,
            });
            id
        };
    let root = add(
        None,
        "request",
        begun,
        ended,
        json!({"request_id": request_id}),
    );
    let graph = add(
        Some(root),
        "graph",
        outcome.received,
        outcome.received + outcome.total,
        json!({"generators": outcome.results.len()}),
    );
    let mut work = |name: &str, span: &WorkSpan, attributes: Value| {
        let mut attributes = attributes;
        attributes["batch_size"] = json!(span.batch_size);
        let id = add(Some(graph), name, span.queued, span.finished, attributes);
        add(Some(id), "queue", span.queued, span.started, json!({}));
        add(Some(id), "compute", span.started, span.finished, json!({}));
    };
    for r in &outcome.results {
        let g = &r.generation;
        work(
            "generate",
            &r.generate,
            json!({
                "model": r.model,
                "prompt_tokens": g.prompt_ids.len(),
                "generated_tokens": g.new_token_ids.len(),
                "finish_reason": g.finish_reason,
            }),
        );
    }
    for r in &outcome.results {
        let c = &r.classification;
        work(
            "classify",
            &r.classify,
            json!({"model": r.model, "label": c.label, "score": c.score, "input_tokens": c.input_ids.len()}),
        );
    }
    Trace {
        trace_id: uuid::Uuid::new_v4().simple().to_string(),
        request_id: request_id.to_string(),
        started_at_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
            .saturating_sub(ms(ended) as u64),
        duration_ms: ms(ended),
        spans,
    }
}
