//! Prometheus metrics in the text exposition format (0.0.4), kept with atomics so that
//! recording never blocks a model thread.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

use crate::histogram::{Histogram, SECONDS};

/// The `_bucket`, `_sum` and `_count` lines of `histogram` as `name` with `labels`
/// (`k="v",..` or empty).
fn render_histogram(histogram: &Histogram, out: &mut String, name: &str, labels: &str) {
    let sep = if labels.is_empty() { "" } else { "," };
    let mut cumulative = 0;
    for (bound, count) in histogram.buckets() {
        cumulative += count;
        let le = bound.map_or("+Inf".to_string(), |b| b.to_string());
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {cumulative}"
        );
    }
    let braces = if labels.is_empty() {
        String::new()
    } else {
        format!("{{{labels}}}")
    };
    let _ = writeln!(out, "{name}_sum{braces} {}", histogram.sum());
    let _ = writeln!(out, "{name}_count{braces} {cumulative}");
}

/// Builds an exposition: each family's `# HELP` and `# TYPE`, then its samples.
#[derive(Default)]
pub struct Exposition {
    text: String,
}

impl Exposition {
    pub fn family(&mut self, name: &str, kind: &str, help: &str) -> &mut Self {
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
        self
    }

    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) -> &mut Self {
        let labels = render_labels(labels);
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(self.text, "{name}{braces} {value}");
        self
    }

    pub fn histogram(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        histogram: &Histogram,
    ) -> &mut Self {
        render_histogram(histogram, &mut self.text, name, &render_labels(labels));
        self
    }

    pub fn finish(self) -> String {
        self.text
    }
}

fn render_labels(labels: &[(&str, &str)]) -> String {
    labels
        .iter()
        .map(|(k, v)| {
            let v = v
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{k}=\"{v}\"")
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// What the HTTP layer and the graph record; the engines keep their own (`EngineStats`).
#[derive(Debug)]
pub struct ServerMetrics {
    /// Requests by (route pattern, status).
    pub http_requests: Mutex<BTreeMap<(String, u16), u64>>,
    /// Durations by route pattern.
    pub http_durations: Mutex<BTreeMap<String, Histogram>>,
    /// The graph's stages: until the last generation ends, the classifications, the whole.
    pub generate_stage: Histogram,
    pub classify_stage: Histogram,
    pub total: Histogram,
    /// Graph requests by (graph, `ok` or the error type).
    pub graph_requests: Mutex<BTreeMap<(String, String), u64>>,
    /// Step durations by (graph, step).
    pub graph_steps: Mutex<BTreeMap<(String, String), Histogram>>,
    /// Calls a step carried on without, by (graph, step, model; empty when none was
    /// called).
    pub graph_skipped: Mutex<BTreeMap<(String, String, String), u64>>,
    /// Switch and split choices by (graph, step, model chosen): a canary's real share.
    pub graph_routes: Mutex<BTreeMap<(String, String, String), u64>>,
}

impl Default for ServerMetrics {
    fn default() -> Self {
        Self {
            http_requests: Mutex::default(),
            http_durations: Mutex::default(),
            generate_stage: Histogram::new(SECONDS),
            classify_stage: Histogram::new(SECONDS),
            total: Histogram::new(SECONDS),
            graph_requests: Mutex::default(),
            graph_steps: Mutex::default(),
            graph_skipped: Mutex::default(),
            graph_routes: Mutex::default(),
        }
    }
}

impl ServerMetrics {
    /// A graph request's end: `ok`, or its error's type.
    pub fn record_graph_request(&self, graph: &str, outcome: &str) {
        *self
            .graph_requests
            .lock()
            .expect("metrics lock")
            .entry((graph.to_string(), outcome.to_string()))
            .or_default() += 1;
    }

    /// One step of a finished graph request: how long it took, the models whose calls it
    /// left out (`on_error = "continue"`) and the models it routed to.
    pub fn record_graph_step(
        &self,
        graph: &str,
        step: &str,
        seconds: f64,
        skipped: &[&str],
        routed: &[&str],
    ) {
        let key = |model: &str| (graph.to_string(), step.to_string(), model.to_string());
        self.graph_steps
            .lock()
            .expect("metrics lock")
            .entry((graph.to_string(), step.to_string()))
            .or_insert_with(|| Histogram::new(SECONDS))
            .observe(seconds);
        let mut counts = self.graph_skipped.lock().expect("metrics lock");
        for model in skipped {
            *counts.entry(key(model)).or_default() += 1;
        }
        let mut counts = self.graph_routes.lock().expect("metrics lock");
        for model in routed {
            *counts.entry(key(model)).or_default() += 1;
        }
    }

    pub fn record_http(&self, route: &str, status: u16, seconds: f64) {
        *self
            .http_requests
            .lock()
            .expect("metrics lock")
            .entry((route.to_string(), status))
            .or_default() += 1;
        self.http_durations
            .lock()
            .expect("metrics lock")
            .entry(route.to_string())
            .or_insert_with(|| Histogram::new(SECONDS))
            .observe(seconds);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_renders_cumulative_buckets_sum_and_count() {
        let h = Histogram::new(&[1.0, 2.0]);
        for v in [0.5, 1.5, 1.5, 9.0] {
            h.observe(v);
        }
        let mut out = String::new();
        render_histogram(&h, &mut out, "x", "a=\"b\"");
        assert_eq!(
            out,
            "x_bucket{a=\"b\",le=\"1\"} 1\nx_bucket{a=\"b\",le=\"2\"} 3\nx_bucket{a=\"b\",le=\"+Inf\"} 4\nx_sum{a=\"b\"} 12.5\nx_count{a=\"b\"} 4\n"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(
            render_labels(&[("k", "a\"b\\c\nd")]),
            "k=\"a\\\"b\\\\c\\nd\""
        );
    }
}
