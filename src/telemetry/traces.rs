//! The last graph requests' traces, kept in memory for `GET /v1/traces`: a waterfall of the
//! request, the coordinator, each generation (queue wait and compute apart) running side by
//! side, then each classification in turn.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::work::WorkSpan;

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
    /// `request`, `graph`, `step`, `generate`, `classify`, `queue` or `compute`.
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

    /// The newest kept request of trace `trace_id`. (A model node may keep several of one
    /// trace: each call a graph node made to it for one graph request.)
    pub fn get(&self, trace_id: &str) -> Option<Arc<Trace>> {
        let traces = self.traces.lock().expect("trace store lock");
        traces
            .iter()
            .rev()
            .find(|t| t.trace_id == trace_id)
            .cloned()
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

/// A trace's spans as they are added, timed from the request's start (the graph builds its
/// requests' trees with it: `graph::trace`).
pub struct SpanTree {
    begun: Instant,
    spans: Vec<SpanRecord>,
}

impl SpanTree {
    /// A tree whose root is the request's span, from `begun` to `ended`; and the root's id.
    pub fn new(request_id: &str, begun: Instant, ended: Instant) -> (Self, usize) {
        let mut tree = Self {
            begun,
            spans: Vec::new(),
        };
        let attributes = json!({"request_id": request_id});
        let root = tree.add(None, "request", begun, ended, attributes);
        (tree, root)
    }

    fn ms(&self, t: Instant) -> f64 {
        t.saturating_duration_since(self.begun).as_secs_f64() * 1e3
    }

    pub fn add(
        &mut self,
        parent: Option<usize>,
        name: &str,
        start: Instant,
        end: Instant,
        attributes: Value,
    ) -> usize {
        let id = self.spans.len();
        self.spans.push(SpanRecord {
            id,
            parent,
            name: name.to_string(),
            start_ms: self.ms(start),
            end_ms: self.ms(end),
            attributes: attributes
                .as_object()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .collect(),
        });
        id
    }

    /// One model call: its span, with its queue wait and its compute as children.
    pub fn work(&mut self, parent: usize, name: &str, span: &WorkSpan, mut attributes: Value) {
        attributes["batch_size"] = json!(span.batch_size);
        let id = self.add(Some(parent), name, span.queued, span.finished, attributes);
        self.add(Some(id), "queue", span.queued, span.started, json!({}));
        self.add(Some(id), "compute", span.started, span.finished, json!({}));
    }

    pub fn finish(self, request_id: &str, trace_id: &str, ended: Instant) -> Trace {
        let duration_ms = self.ms(ended);
        Trace {
            trace_id: trace_id.to_string(),
            request_id: request_id.to_string(),
            started_at_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64)
                .saturating_sub(duration_ms as u64),
            duration_ms,
            spans: self.spans,
        }
    }
}

/// The trace of one request to a single model (`/v1/models/{name}/..`, `/v1/completions`)
/// that ran from `begun` to `ended`: one `step` span (`generate` or `classify`) per model
/// call, each with the call's attributes.
pub fn model_trace(
    request_id: &str,
    trace_id: &str,
    begun: Instant,
    ended: Instant,
    step: &str,
    calls: &[(WorkSpan, Value)],
) -> Trace {
    let (mut tree, root) = SpanTree::new(request_id, begun, ended);
    for (span, attributes) in calls {
        tree.work(root, step, span, attributes.clone());
    }
    tree.finish(request_id, trace_id, ended)
}
