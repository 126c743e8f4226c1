//! A graph request's trace: the graph's span, its steps' and each model call's, built on
//! telemetry's span tree (the graph knows its outcome; telemetry only keeps and serves
//! traces).

use std::time::Instant;

use serde_json::json;

use super::{CallRecord, GraphOutcome};
use crate::config::graphs::Action;
use crate::telemetry::traces::{SpanTree, Trace};

/// The trace of one graph request that ran from `begun` to `ended`: the graph's span, one
/// span per step, and in each step one span per model call (with its queue wait and
/// compute). The built-in graph (no `[[graphs]]` in config) keeps the shape its traces had
/// before graphs were configurable: its calls hang from the graph span, generations first.
pub fn graph_trace(
    request_id: &str,
    trace_id: &str,
    begun: Instant,
    ended: Instant,
    outcome: &GraphOutcome,
) -> Trace {
    let (mut tree, root) = SpanTree::new(request_id, begun, ended);
    let spec = &outcome.graph;
    let mut attributes = json!({"graph": spec.name});
    if spec.builtin {
        attributes["generators"] = json!(outcome.results.len());
    }
    let graph = tree.add(
        Some(root),
        "graph",
        outcome.received,
        outcome.received + outcome.total,
        attributes,
    );
    for step in &outcome.steps {
        let parent = if spec.builtin {
            graph
        } else {
            let attributes = json!({
                "step": step.name,
                "kind": step.kind,
                "results": step.items.len(),
                "failures": step.failures.len(),
            });
            tree.add(Some(graph), "step", step.started, step.finished, attributes)
        };
        for call in &step.calls {
            self::call(&mut tree, parent, call);
        }
    }
    tree.finish(request_id, trace_id, ended)
}

/// One call of a graph: a `generate` or `classify` span with what it made.
fn call(tree: &mut SpanTree, parent: usize, call: &CallRecord) {
    let made = &call.made;
    // `model` is the generator whose text it is, as the waterfall labels rows.
    let model = call.of.clone().unwrap_or_else(|| call.model.clone());
    let attributes = match (call.action, &made.generation, &made.classification) {
        (Action::Generate, Some(g), _) => json!({
            "model": model,
            "prompt_tokens": g.prompt_ids.len(),
            "generated_tokens": g.new_token_ids.len(),
            "finish_reason": g.finish_reason,
        }),
        (_, _, Some((classifier, c))) => json!({
            "model": model,
            "classifier": classifier,
            "label": c.label,
            "score": c.score,
            "input_tokens": c.input_ids.len(),
        }),
        _ => json!({"model": model}),
    };
    tree.work(parent, call.action.as_str(), &call.span, attributes);
}
