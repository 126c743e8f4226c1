//! `GET /metrics`: Prometheus text format, and the middleware that counts HTTP requests.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, Error, HttpResponse};

use super::auth::Auth;
use super::fairness::Fairness;
use super::state::AppState;
use crate::actors::remote::Replicas;
use crate::engine::{Admission, EngineStats};
use crate::histogram::Histogram;
use crate::telemetry::metrics::{Exposition, ServerMetrics};

/// Counts every request by route pattern and status, and times it. A pattern's `{name}`
/// segments are written `:name`: braces inside label values trip up some Prometheus
/// parsers (prometheus-parse among them).
pub async fn record_http(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let started = Instant::now();
    let state = request.app_data::<web::Data<AppState>>().cloned();
    let response = next.call(request).await?;
    if let Some(state) = state {
        let route = response.request().match_pattern().map_or_else(
            || "unmatched".into(),
            |p| p.replace('{', ":").replace('}', ""),
        );
        state.metrics.record_http(
            &route,
            response.status().as_u16(),
            started.elapsed().as_secs_f64(),
        );
    }
    Ok(response)
}

#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format 0.0.4", content_type = "text/plain", body = String)))]
pub async fn metrics(
    state: web::Data<AppState>,
    auth: web::Data<Auth>,
    fairness: web::Data<Fairness>,
) -> HttpResponse {
    let mut out = Exposition::default();
    let m = &state.metrics;
    out.family(
        "infergraph_http_requests_total",
        "counter",
        "HTTP requests by route and status.",
    );
    for ((route, status), count) in m.http_requests.lock().expect("metrics lock").iter() {
        out.sample(
            "infergraph_http_requests_total",
            &[("route", route), ("status", &status.to_string())],
            *count as f64,
        );
    }
    out.family(
        "infergraph_http_request_duration_seconds",
        "histogram",
        "HTTP request durations by route.",
    );
    for (route, histogram) in m.http_durations.lock().expect("metrics lock").iter() {
        out.histogram(
            "infergraph_http_request_duration_seconds",
            &[("route", route)],
            histogram,
        );
    }
    out.family(
        "infergraph_graph_stage_duration_seconds",
        "histogram",
        "Graph stages: generate (until the last generator is done), classify, total.",
    );
    for (stage, histogram) in [
        ("generate", &m.generate_stage),
        ("classify", &m.classify_stage),
        ("total", &m.total),
    ] {
        out.histogram(
            "infergraph_graph_stage_duration_seconds",
            &[("stage", stage)],
            histogram,
        );
    }
    render_graphs(&mut out, m);
    auth.expose(&mut out);
    fairness.expose(&mut out);
    if let Some(graph) = state.graph() {
        let mut actors: Vec<(&str, &EngineStats, &str)> = graph
            .engines
            .iter()
            .map(|e| (e.admission().name(), e.stats(), "generator"))
            .collect();
        if let Some(engine) = &graph.classifier_engine {
            let classifier: &Admission<_> = engine.admission();
            actors.push((classifier.name(), classifier.stats(), "classifier"));
        }
        for (_, engine) in &graph.embedders {
            let embedder = engine.admission();
            actors.push((embedder.name(), embedder.stats(), "embedder"));
        }
        render_actors(&mut out, &actors);
        render_hops(&mut out, &graph.remotes);
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(out.finish())
}

/// Each remote model's hop: call latency and failures by kind, so the hop's overhead can be
/// read off beside the node's own figures.
fn render_hops(out: &mut Exposition, remotes: &[std::sync::Arc<Replicas>]) {
    out.family(
        "infergraph_hop_duration_seconds",
        "histogram",
        "Calls to a remote model, from sending the request to reading the answer.",
    );
    for remote in remotes {
        out.histogram(
            "infergraph_hop_duration_seconds",
            &[("model", &remote.model)],
            &remote.latency,
        );
    }
    out.family(
        "infergraph_hop_errors_total",
        "counter",
        "Failed calls to a remote model, by kind (connect, timeout, reset, overloaded, status).",
    );
    for remote in remotes {
        for (kind, count) in remote.errors.lock().expect("hop errors lock").iter() {
            out.sample(
                "infergraph_hop_errors_total",
                &[("model", &remote.model), ("kind", kind)],
                *count as f64,
            );
        }
    }
    out.family(
        "infergraph_hop_replica_ready",
        "gauge",
        "1 while a remote model's replica is ready for calls.",
    );
    for remote in remotes {
        for replica in &remote.replicas {
            let ready = replica.ready.load(std::sync::atomic::Ordering::Acquire);
            out.sample(
                "infergraph_hop_replica_ready",
                &[("model", &remote.model), ("url", &replica.url)],
                f64::from(u8::from(ready)),
            );
        }
    }
}

fn render_actors(out: &mut Exposition, actors: &[(&str, &EngineStats, &str)]) {
    use std::sync::atomic::Ordering::Relaxed;
    type Read = fn(&EngineStats) -> f64;
    let scalars: [(&str, &str, &str, Read); 6] = [
        (
            "infergraph_actor_queue_depth",
            "gauge",
            "Requests waiting in the actor's queue.",
            |s| s.queued.load(Relaxed) as f64,
        ),
        (
            "infergraph_actor_active",
            "gauge",
            "Requests in the actor's running batch.",
            |s| s.active.load(Relaxed) as f64,
        ),
        (
            "infergraph_actor_busy_seconds_total",
            "counter",
            "Time the actor's model spent in forwards.",
            |s| s.busy_nanos.load(Relaxed) as f64 / 1e9,
        ),
        (
            "infergraph_actor_tokens_generated_total",
            "counter",
            "Tokens generated.",
            |s| s.tokens.load(Relaxed) as f64,
        ),
        (
            "infergraph_actor_restarts_total",
            "counter",
            "Failed model steps after which the actor dropped its batch and carried on.",
            |s| s.restarts.load(Relaxed) as f64,
        ),
        (
            "infergraph_actor_rejected_total",
            "counter",
            "Requests refused because the queue was full (429).",
            |s| s.rejected.load(Relaxed) as f64,
        ),
    ];
    for (name, kind, help, read) in scalars {
        out.family(name, kind, help);
        for (model, stats, role) in actors {
            out.sample(name, &[("model", model), ("role", role)], read(stats));
        }
    }
    out.family(
        "infergraph_actor_requests_total",
        "counter",
        "Requests the actor finished, by outcome.",
    );
    for (model, stats, role) in actors {
        for (outcome, counter) in [
            ("completed", &stats.completed),
            ("cancelled", &stats.cancelled),
            ("failed", &stats.failed),
        ] {
            out.sample(
                "infergraph_actor_requests_total",
                &[("model", model), ("role", role), ("outcome", outcome)],
                counter.load(Relaxed) as f64,
            );
        }
    }
    type Pick = fn(&EngineStats) -> &Histogram;
    let histograms: [(&str, &str, Pick); 3] = [
        (
            "infergraph_actor_batch_size",
            "Requests served by each forward.",
            |s| &s.batch_size,
        ),
        (
            "infergraph_actor_time_to_first_token_seconds",
            "From queueing to a request's first token.",
            |s| &s.time_to_first_token,
        ),
        (
            "infergraph_actor_token_latency_seconds",
            "Between a request's successive tokens.",
            |s| &s.token_latency,
        ),
    ];
    for (name, help, pick) in histograms {
        out.family(name, "histogram", help);
        for (model, stats, role) in actors {
            out.histogram(name, &[("model", model), ("role", role)], pick(stats));
        }
    }
}

/// Per graph and step: requests by outcome, step durations, skipped calls and routes.
fn render_graphs(out: &mut Exposition, m: &ServerMetrics) {
    out.family(
        "infergraph_graph_requests_total",
        "counter",
        "Graph requests by graph and outcome (ok, or the error type).",
    );
    for ((graph, outcome), count) in m.graph_requests.lock().expect("metrics lock").iter() {
        out.sample(
            "infergraph_graph_requests_total",
            &[("graph", graph), ("outcome", outcome)],
            *count as f64,
        );
    }
    out.family(
        "infergraph_graph_step_duration_seconds",
        "histogram",
        "Each graph step's duration, by graph and step.",
    );
    for ((graph, step), histogram) in m.graph_steps.lock().expect("metrics lock").iter() {
        out.histogram(
            "infergraph_graph_step_duration_seconds",
            &[("graph", graph), ("step", step)],
            histogram,
        );
    }
    for (name, help, counts) in [
        (
            "infergraph_graph_step_skipped_total",
            "Calls a step with on_error = continue went on without, by graph, step and model.",
            &m.graph_skipped,
        ),
        (
            "infergraph_graph_routes_total",
            "Switch and split choices, by graph, step and the model chosen.",
            &m.graph_routes,
        ),
    ] {
        out.family(name, "counter", help);
        for ((graph, step, model), count) in counts.lock().expect("metrics lock").iter() {
            out.sample(
                name,
                &[("graph", graph), ("step", step), ("model", model)],
                *count as f64,
            );
        }
    }
}
