//! Loading the graph's models from `config.toml` and starting an actor for each.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use actix::{Actor, Addr};

use super::{GraphCoordinator, Named};
use crate::actors::{ActorError, ClassifierActor, GeneratorActor};
use crate::backend::SelectedDevice;
use crate::config::{Config, EngineConfig, Role};
use crate::engine::{ClassificationEngine, EngineSettings, EngineStats, GenerationEngine};
use crate::http::api::{EngineInfo, ModelInfo};
use crate::models::{self, Classifier, Generator};

/// A started graph: the coordinator, what each model is, and each model's actor and engine.
pub struct RunningGraph {
    pub coordinator: Addr<GraphCoordinator>,
    pub models: Vec<ModelInfo>,
    /// Each generator's engine, for its counters; in the order of `generators`.
    pub engines: Vec<GenerationEngine>,
    pub classifier_engine: ClassificationEngine,
    /// The actors the coordinator uses, also reached on their own by the per-model routes
    /// (`/v1/models/{name}/..`): one engine, and so one queue, per model for both.
    pub generators: Vec<Named<GeneratorActor>>,
    pub classifier: Named<ClassifierActor>,
    /// When the models were ready, in seconds since the Unix epoch (OpenAI's `created`).
    pub started_at_secs: u64,
}

/// One model of a running graph, found by name.
pub enum ModelHandle<'a> {
    Generator(&'a Named<GeneratorActor>, &'a GenerationEngine),
    Classifier(&'a Named<ClassifierActor>, &'a ClassificationEngine),
}

impl ModelHandle<'_> {
    /// A 429 (counted) when the model's queue is full right now.
    pub fn check_room(&self) -> Result<(), ActorError> {
        match self {
            Self::Generator(_, engine) => engine.admission().check_room(),
            Self::Classifier(_, engine) => engine.admission().check_room(),
        }
    }
}

impl RunningGraph {
    /// The model called `name`, if the graph has one.
    pub fn model(&self, name: &str) -> Option<ModelHandle<'_>> {
        if let Some(i) = self.generators.iter().position(|g| g.name == name) {
            return Some(ModelHandle::Generator(
                &self.generators[i],
                &self.engines[i],
            ));
        }
        (self.classifier.name == name)
            .then(|| ModelHandle::Classifier(&self.classifier, &self.classifier_engine))
    }

    /// Every model's name, in config order.
    pub fn model_names(&self) -> Vec<&str> {
        self.models.iter().map(|m| m.name.as_str()).collect()
    }

    /// Each engine's limits and counters, generators first.
    pub fn engine_infos(&self) -> Vec<EngineInfo> {
        let generators = self.engines.iter().map(|e| {
            (
                e.admission().name(),
                e.admission().settings(),
                e.stats(),
                "generator",
            )
        });
        let classifier = self.classifier_engine.admission();
        let classifier = (
            classifier.name(),
            classifier.settings(),
            classifier.stats().as_ref(),
            "classifier",
        );
        generators
            .chain(std::iter::once(classifier))
            .map(|(name, settings, stats, role)| engine_info(name, settings, stats, role))
            .collect()
    }
}

fn engine_info(
    name: &str,
    settings: &EngineSettings,
    stats: &EngineStats,
    role: &str,
) -> EngineInfo {
    let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    EngineInfo {
        model: name.to_string(),
        role: role.to_string(),
        max_batch: settings.max_batch,
        queue_capacity: settings.queue_capacity,
        queued: stats.queued.load(Ordering::Acquire),
        active: stats.active.load(Ordering::Acquire),
        steps: load(&stats.steps),
        admitted: load(&stats.admitted),
        completed: load(&stats.completed),
        cancelled: load(&stats.cancelled),
        failed: load(&stats.failed),
        rejected: load(&stats.rejected),
        busy_seconds: load(&stats.busy_nanos) as f64 / 1e9,
        tokens_generated: load(&stats.tokens),
        forwards: stats.batch_size.count(),
        batched_requests: stats.batch_size.sum(),
    }
}

/// The graph's models, loaded and ready to be handed to their actors.
pub struct LoadedGraph {
    generators: Vec<(String, Generator)>,
    classifier: (String, Classifier),
    infos: Vec<ModelInfo>,
}

/// Loads every model of `config` onto `device`, logging each one's load time.
pub fn load_models(config: &Config, device: &SelectedDevice) -> Result<LoadedGraph, String> {
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
    /// Starts one actor per model and the coordinator over them (in the current actix system).
    pub fn start(self, engine: &EngineConfig) -> RunningGraph {
        let settings = EngineSettings {
            max_batch: engine.max_batch,
            queue_capacity: engine.queue_capacity,
            panic_on_prompt: engine.panic_on_prompt.clone(),
        };
        let mut engines = Vec::new();
        let generators: Vec<Named<GeneratorActor>> = self
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
        RunningGraph {
            coordinator: GraphCoordinator::new(generators.clone(), classifier.clone()).start(),
            models: self.infos,
            engines,
            classifier_engine,
            generators,
            classifier,
            started_at_secs: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
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
