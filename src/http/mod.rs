//! The HTTP server: routes over the graph coordinator, and the server's lifecycle.
//!
//! LIFECYCLE: the server listens at once (`/livez` answers while models load); `/readyz`
//! turns 200 when every model is loaded and its actor started. On SIGTERM or SIGINT,
//! `/readyz` and new graph requests answer 503, in-flight requests get
//! `server.shutdown_grace_secs` to finish, and `serve` returns. A model that fails to load
//! stops the server with that error.

pub mod api;
mod disconnect;
pub mod error;
pub mod handlers;
mod metrics;
pub mod state;
pub mod stream;

use std::time::Instant;

use actix::Actor;
use actix_web::{middleware, web, App, HttpServer};
use tracing_actix_web::TracingLogger;

use crate::actors::{ClassifierActor, GeneratorActor};
use crate::backend::{self, SelectedDevice};
use crate::config::{Config, EngineConfig, Role};
use crate::engine::EngineSettings;
use crate::graph::{GraphCoordinator, Named};
use crate::models::{self, Classifier, Generator};
use crate::telemetry::{echo_request_id, RequestSpan};
use api::ModelInfo;
use state::{AppState, Phase, ReadyGraph};

/// Serves `config`'s graph until a shutdown signal; blocks the calling thread.
pub fn serve(config: Config) -> Result<(), String> {
    actix_web::rt::System::new().block_on(run(config))
}

async fn run(config: Config) -> Result<(), String> {
    let device = backend::select(config.backend);
    tracing::info!(
        backend = device.backend,
        device = %device.name,
        reason = %device.reason,
        "device selected"
    );
    let state = web::Data::new(AppState::new(config.clone()));
    let workers = match config.server.workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let server = HttpServer::new({
        let state = state.clone();
        move || {
            App::new()
                .app_data(state.clone())
                .wrap(middleware::from_fn(metrics::record_http))
                .wrap(middleware::from_fn(echo_request_id))
                .wrap(TracingLogger::<RequestSpan>::new())
                .configure(handlers::routes)
        }
    })
    .on_connect(disconnect::remember_socket)
    .workers(workers)
    .disable_signals()
    .shutdown_timeout(config.server.shutdown_grace_secs)
    .bind((config.server.host.as_str(), config.server.port))
    .map_err(|e| {
        format!(
            "cannot listen on {}:{}: {e}",
            config.server.host, config.server.port
        )
    })?;
    for addr in server.addrs() {
        tracing::info!(%addr, "listening on http://{addr}");
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

/// The graph's models, loaded and ready to be handed to their actors.
struct LoadedGraph {
    generators: Vec<(String, Generator)>,
    classifier: (String, Classifier),
    infos: Vec<ModelInfo>,
}

fn load_models(config: &Config, device: &SelectedDevice) -> Result<LoadedGraph, String> {
    let mut generators = Vec::new();
    let mut classifier = None;
    let mut infos = Vec::new();
    for model in &config.models {
        let started = Instant::now();
        let fail = |e: models::ModelError| format!("model {:?}: {e}", model.name);
        let info = match model.role {
            Role::Generator => {
                let generator =
                    models::load_generator(&model.path, &device.device).map_err(fail)?;
                let info = generator_info(&model.name, &generator, device);
                generators.push((model.name.clone(), generator));
                info
            }
            Role::Classifier => {
                let loaded = models::load_classifier(&model.path, &device.device).map_err(fail)?;
                let info = classifier_info(&model.name, &loaded, device);
                classifier = Some((model.name.clone(), loaded));
                info
            }
        };
        tracing::info!(
            model = %model.name,
            role = %info.role,
            path = %model.path.display(),
            parameters = info.parameters,
            device = %device.name,
            load_ms = started.elapsed().as_millis() as u64,
            "model loaded"
        );
        infos.push(info);
    }
    Ok(LoadedGraph {
        generators,
        classifier: classifier.expect("config validation guarantees one classifier"),
        infos,
    })
}

impl LoadedGraph {
    /// Starts one actor per model and the coordinator over them.
    fn start(self, engine: &EngineConfig) -> ReadyGraph {
        let settings = EngineSettings {
            max_batch: engine.max_batch,
            queue_capacity: engine.queue_capacity,
            panic_on_prompt: engine.panic_on_prompt.clone(),
        };
        let mut engines = Vec::new();
        let generators = self
            .generators
            .into_iter()
            .map(|(name, generator)| {
                let actor = GeneratorActor::new(name.clone(), generator, settings.clone());
                engines.push(actor.engine().clone());
                Named {
                    addr: actor.start(),
                    name,
                }
            })
            .collect();
        let (name, classifier) = self.classifier;
        let actor = ClassifierActor::new(name.clone(), classifier, settings);
        let classifier_engine = actor.engine().clone();
        let classifier = Named {
            addr: actor.start(),
            name,
        };
        ReadyGraph {
            coordinator: GraphCoordinator::new(generators, classifier).start(),
            models: self.infos,
            engines,
            classifier_engine,
        }
    }
}

fn generator_info(name: &str, generator: &Generator, device: &SelectedDevice) -> ModelInfo {
    let c = generator.model().config();
    ModelInfo {
        name: name.to_string(),
        role: "generator".into(),
        architecture: "gpt2".into(),
        path: generator.dir().display().to_string(),
        layers: c.n_layer,
        hidden_size: c.n_embd,
        heads: c.n_head,
        vocab_size: c.vocab_size,
        context_length: c.n_positions,
        parameters: c.parameter_count(),
        dtype: "f32".into(),
        backend: device.backend.into(),
        device: device.name.clone(),
        labels: None,
    }
}

fn classifier_info(name: &str, classifier: &Classifier, device: &SelectedDevice) -> ModelInfo {
    let model = classifier.model();
    let c = model.config();
    ModelInfo {
        name: name.to_string(),
        role: "classifier".into(),
        architecture: "bert".into(),
        path: classifier.dir().display().to_string(),
        layers: c.num_hidden_layers,
        hidden_size: c.hidden_size,
        heads: c.num_attention_heads,
        vocab_size: c.vocab_size,
        context_length: c.max_position_embeddings,
        parameters: c.parameter_count(model.labels().len()),
        dtype: "f32".into(),
        backend: device.backend.into(),
        device: device.name.clone(),
        labels: Some(model.labels().to_vec()),
    }
}
