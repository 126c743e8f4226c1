//! The HTTP server: routes over the graph coordinator, and the server's lifecycle.
//!
//! LIFECYCLE: the server listens at once (`/livez` answers while models load); `/readyz`
//! turns 200 when every model is loaded and its actor started. On SIGTERM or SIGINT,
//! `/readyz` and new graph requests answer 503, in-flight requests get
//! `server.shutdown_grace_secs` to finish, and `serve` returns. A model that fails to load
//! stops the server with that error.
//!
//! LAYERS: imports between these modules point down only, never up or across.
//! - Plumbing, below the routes: `api` (the types), `error`, `state`, `disconnect`,
//!   `exposure`, the middlewares `auth`, `origin` and `fairness`; and what the routes share:
//!   `request` (reading and checking bodies, the call context, trace ids, generation
//!   parameters), `sse` (event-stream responses), `graph_calls` (running a graph),
//!   `model_calls` (calling one model), `completion` (what `/v1/completions` and
//!   `/v1/chat/completions` share), `tools` (tool calls, which the chat routes share) and
//!   `calls_written` (a constrained answer's calls read as far as they are written).
//!   Plumbing points at plumbing only, without a circle.
//! - Routes: `handlers` (the graph, model list, engine, trace and health routes), `stream`,
//!   `model_routes`, `openai`, `chat`, `embeddings`, `metrics`. A route points at plumbing
//!   only, never at another route.
//! - `openapi`: the document, gathering the routes' `#[utoipa::path]`s.
//! - `routes`: the table of every path and its handler; the only module that points at
//!   `openapi`.
//!
//! `tests::imports_point_down` checks this on the source.

pub mod api;
pub mod auth;
mod calls_written;
mod chat;
mod completion;
mod disconnect;
mod embeddings;
pub mod error;
mod exposure;
pub mod fairness;
mod graph_calls;
mod handlers;
mod metrics;
mod model_calls;
mod model_routes;
mod openai;
mod openapi;
mod origin;
mod request;
pub mod routes;
mod sse;
pub mod state;
mod stream;
mod tools;

use actix_web::{middleware, web, App, HttpServer};
use tracing_actix_web::TracingLogger;

use crate::backend;
use crate::config::Config;
use crate::graph::loader::load_models;
use crate::telemetry::otlp::OtlpExporter;
use crate::telemetry::{echo_request_id, RequestSpan};
use state::{AppState, Phase};

/// Serves `config`'s graph until a shutdown signal; blocks the calling thread.
pub fn serve(config: Config) -> Result<(), String> {
    actix_web::rt::System::new().block_on(run(config))
}

async fn run(mut config: Config) -> Result<(), String> {
    // Who may call is settled before anything listens or loads.
    let auth = web::Data::new(auth::Auth::from_config(&config)?);
    let origins = web::Data::new(origin::Origins::from_config(&config));
    let fairness = web::Data::new(fairness::Fairness::from_config(&config));
    config.remote.node_key = auth::node_key(&config)?;
    if let Some(settings) = &config.remote.tls {
        config.remote.client_tls = Some(std::sync::Arc::new(crate::tls::client_config(settings)?));
    }
    let device = backend::select(config.backend);
    tracing::info!(
        backend = device.backend,
        device = %device.name,
        reason = %device.reason,
        "device selected"
    );
    let mut state = AppState::new(config.clone());
    if let Some(endpoint) = &config.otlp.endpoint {
        tracing::info!(%endpoint, "exporting traces over OTLP");
        state = state.with_exporter(OtlpExporter::start(
            endpoint.clone(),
            config.otlp.service_name.clone(),
        ));
    }
    let state = web::Data::new(state);
    let workers = match config.server.workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let server = HttpServer::new({
        let state = state.clone();
        let auth = auth.clone();
        let origins = origins.clone();
        let fairness = fairness.clone();
        move || {
            App::new()
                .app_data(state.clone())
                .app_data(auth.clone())
                .app_data(origins.clone())
                .app_data(fairness.clone())
                // All three run before routing: every route, present or future, is behind
                // them. The origin check comes first, as a preflight carries no key; the
                // fair share last, as it counts by the key the key check found.
                .wrap(middleware::from_fn(fairness::fair_share))
                .wrap(middleware::from_fn(auth::require_key))
                .wrap(middleware::from_fn(origin::check_origin))
                .wrap(middleware::from_fn(metrics::record_http))
                .wrap(middleware::from_fn(echo_request_id))
                .wrap(TracingLogger::<RequestSpan>::new())
                .configure(routes::routes)
        }
    })
    .on_connect(disconnect::remember_socket)
    .workers(workers)
    .disable_signals()
    .shutdown_timeout(config.server.shutdown_grace_secs);
    let address = (config.server.host.as_str(), config.server.port);
    let (server, scheme) = match &config.server.tls {
        Some(settings) => (
            server.bind_rustls_0_23(address, crate::tls::server_config(settings)?),
            "https",
        ),
        None => (server.bind(address), "http"),
    };
    let server = server.map_err(|e| {
        format!(
            "cannot listen on {}:{}: {e}",
            config.server.host, config.server.port
        )
    })?;
    for addr in server.addrs() {
        tracing::info!(%addr, "listening on {scheme}://{addr}");
    }
    let server = server.run();
    let handle = server.handle();

    actix_web::rt::spawn({
        let state = state.clone();
        let handle = handle.clone();
        async move {
            let loaded = actix_web::rt::task::spawn_blocking(move || load_models(&config, &device))
                .await
                .unwrap_or_else(|e| Err(format!("model loading panicked: {e}")));
            match loaded {
                Ok(graph) => {
                    state.set_ready(graph.start(&state.config.engine));
                    tracing::info!("ready: every model is loaded");
                }
                Err(error) => {
                    tracing::error!(%error, "a model failed to load; stopping");
                    state.set_failed(error);
                    handle.stop(false).await;
                }
            }
        }
    });
    actix_web::rt::spawn(stop_on_signal(state.clone(), handle));
    actix_web::rt::spawn(auth::Auth::watch(auth));

    server.await.map_err(|e| format!("server error: {e}"))?;
    if let Some(error) = state.failure() {
        return Err(error.to_string());
    }
    tracing::info!("stopped");
    Ok(())
}

/// Waits for SIGTERM or SIGINT, then drains: new requests get 503, in-flight ones finish.
async fn stop_on_signal(state: web::Data<AppState>, handle: actix_web::dev::ServerHandle) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot listen for SIGTERM/SIGINT; stop the server by other means");
        return;
    };
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    state.set_phase(Phase::ShuttingDown);
    tracing::info!(
        signal = name,
        grace_secs = state.config.server.shutdown_grace_secs,
        "shutting down: finishing in-flight requests"
    );
    handle.stop(true).await;
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    /// Below the routes (see the module doc).
    const PLUMBING: [&str; 15] = [
        "tools",
        "calls_written",
        "api",
        "error",
        "state",
        "disconnect",
        "exposure",
        "auth",
        "origin",
        "fairness",
        "request",
        "sse",
        "graph_calls",
        "model_calls",
        "completion",
    ];
    const ROUTES: [&str; 7] = [
        "handlers",
        "stream",
        "model_routes",
        "openai",
        "chat",
        "embeddings",
        "metrics",
    ];
    /// Plumbing 0, routes 1, `openapi` 2, `routes` 3; `None` for a module in no layer.
    fn layer(module: &str) -> Option<u8> {
        match module {
            _ if PLUMBING.contains(&module) => Some(0),
            _ if ROUTES.contains(&module) => Some(1),
            "openapi" => Some(2),
            "routes" => Some(3),
            _ => None,
        }
    }

    /// Each module of src/http (but this one) and the siblings it names as `super::x` or in
    /// `super::{x, ..}`. A module's `mod tests`, whose `super` is the module itself, is left
    /// out.
    fn imports() -> BTreeMap<String, BTreeSet<String>> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http");
        let mut sources = BTreeMap::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let module = path.file_stem().unwrap().to_str().unwrap().to_string();
            if path.extension().is_some_and(|e| e == "rs") && module != "mod" {
                sources.insert(module, std::fs::read_to_string(&path).unwrap());
            }
        }
        let modules: BTreeSet<String> = sources.keys().cloned().collect();
        sources
            .iter()
            .map(|(module, source)| {
                let code = source.split("\nmod tests").next().unwrap();
                let named = code
                    .match_indices("super::")
                    .flat_map(|(at, _)| heads(&code[at + "super::".len()..]))
                    .filter(|name| modules.contains(*name))
                    .map(str::to_string)
                    .collect();
                (module.clone(), named)
            })
            .collect()
    }

    /// The names `rest` starts with, after a `super::`: `x` of `x::..`, or each item's
    /// first name in a `{x::{..}, y, ..}` group.
    fn heads(rest: &str) -> Vec<&str> {
        fn head(item: &str) -> &str {
            let item = item.trim_start();
            let end = item
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(item.len());
            &item[..end]
        }
        let Some(group) = rest.strip_prefix('{') else {
            return vec![head(rest)];
        };
        let (mut names, mut start, mut depth) = (Vec::new(), 0, 0);
        for (i, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth > 0 => depth -= 1,
                ',' | '}' if depth == 0 => {
                    names.push(head(&group[start..i]));
                    start = i + 1;
                    if c == '}' {
                        break;
                    }
                }
                _ => {}
            }
        }
        names
    }

    /// A circle of imports, as the modules along it, if there is one.
    fn circle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
        fn visit(
            module: &str,
            graph: &BTreeMap<String, BTreeSet<String>>,
            path: &mut Vec<String>,
            done: &mut BTreeSet<String>,
        ) -> Option<Vec<String>> {
            if let Some(at) = path.iter().position(|m| m == module) {
                let mut circle = path[at..].to_vec();
                circle.push(module.to_string());
                return Some(circle);
            }
            if !done.insert(module.to_string()) {
                return None;
            }
            path.push(module.to_string());
            for next in &graph[module] {
                if let Some(circle) = visit(next, graph, path, done) {
                    return Some(circle);
                }
            }
            path.pop();
            None
        }
        let mut done = BTreeSet::new();
        graph
            .keys()
            .find_map(|module| visit(module, graph, &mut Vec::new(), &mut done))
    }

    #[test]
    fn imports_point_down() {
        let graph = imports();
        assert!(
            graph["stream"].contains("graph_calls"),
            "the parse finds imports"
        );
        for (module, named) in &graph {
            let Some(from) = layer(module) else {
                panic!("src/http/{module}.rs is in no layer: add it to the module doc and here");
            };
            for to in named {
                let down = layer(to).is_some_and(|to| to < from || to == 0 && from == 0);
                assert!(down, "{module} points at {to}: imports point down only");
            }
        }
        assert_eq!(circle(&graph), None, "a circle of imports");
    }
}
