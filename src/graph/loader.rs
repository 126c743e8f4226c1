//! Loading the graph's models from `config.toml` and starting an actor for each: a local
//! one over a loaded model, or a remote one over the model nodes that serve it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use actix::{Actor, Addr};

use super::{GraphCoordinator, GraphModels, Named};
use crate::actors::remote::{RemoteModel, Replicas};
use crate::actors::{ClassifierActor, Classify, Embed, EmbedderActor, Generate, GeneratorActor};
use crate::backend::SelectedDevice;
use crate::config::graphs::{Condition, Framing, GraphSpec, StepKind};
use crate::config::{Config, ConfiguredTemplate, EngineConfig, ModelSource, RemoteConfig, Role};
use crate::engine::{
    ClassificationEngine, EmbeddingEngine, EngineSettings, EngineStats, GenerationEngine,
};
use crate::http::api::{EngineInfo, ModelInfo, ReplicaInfo};
use crate::models::{self, Classifier, Embedder, Generator};
use crate::work::ActorError;

/// A started server's models: the coordinator (on a graph node), what each model is, and
/// each model's actor and, for local ones, its engine.
pub struct RunningGraph {
    /// `None` on a model node, which serves only the per-model API.
    pub coordinator: Option<Addr<GraphCoordinator>>,
    /// The graphs the coordinator runs, in config order (`RunGraph::graph` indexes them);
    /// shared with the coordinator.
    pub graphs: Vec<Arc<GraphSpec>>,
    /// Every model's name and role, in config order.
    pub order: Vec<(String, Role)>,
    /// What each local model is.
    pub models: Vec<ModelInfo>,
    /// Each local generator's engine, for its counters.
    pub engines: Vec<GenerationEngine>,
    pub classifier_engine: Option<ClassificationEngine>,
    /// The actors the coordinator uses (local or remote), also reached on their own by the
    /// per-model routes (`/v1/models/{name}/..`): one engine, and so one queue, per model
    /// for both.
    pub generators: Vec<Named<Generate>>,
    pub classifier: Option<Named<Classify>>,
    /// The embedders (always local), each with its engine, reached by the per-model and
    /// OpenAI routes.
    pub embedders: Vec<(Named<Embed>, EmbeddingEngine)>,
    /// Each remote model's replicas and hop counters.
    pub remotes: Vec<Arc<Replicas>>,
    /// When the models were ready, in seconds since the Unix epoch (OpenAI's `created`).
    pub started_at_secs: u64,
}

/// One model of a running server, found by name; the engine is `None` for a remote model.
pub enum ModelHandle<'a> {
    Generator(&'a Named<Generate>, Option<&'a GenerationEngine>),
    Classifier(&'a Named<Classify>, Option<&'a ClassificationEngine>),
    Embedder(&'a Named<Embed>, &'a EmbeddingEngine),
}

impl ModelHandle<'_> {
    /// A 429 (counted) when a local model's queue is full right now. (A remote model's
    /// node answers for its own queue; the hop waits for room there.)
    pub fn check_room(&self) -> Result<(), ActorError> {
        match self {
            Self::Generator(_, Some(engine)) => engine.admission().check_room(),
            Self::Classifier(_, Some(engine)) => engine.admission().check_room(),
            Self::Embedder(_, engine) => engine.admission().check_room(),
            _ => Ok(()),
        }
    }
}

impl RunningGraph {
    /// The graph called `name` and its index, if the server runs one.
    pub fn graph(&self, name: &str) -> Option<(usize, &GraphSpec)> {
        self.find_graph(|g| g.name == name)
    }

    /// The graph `/v1/graph` and the seed endpoints serve, and its index.
    pub fn default_graph(&self) -> Option<(usize, &GraphSpec)> {
        self.find_graph(|g| g.default)
    }

    fn find_graph(&self, wanted: impl Fn(&GraphSpec) -> bool) -> Option<(usize, &GraphSpec)> {
        self.graphs
            .iter()
            .map(|g| &**g)
            .enumerate()
            .find(|(_, g)| wanted(g))
    }

    /// The model called `name`, if the server has one.
    pub fn model(&self, name: &str) -> Option<ModelHandle<'_>> {
        if let Some(generator) = self.generators.iter().find(|g| g.name == name) {
            let engine = self.engines.iter().find(|e| e.admission().name() == name);
            return Some(ModelHandle::Generator(generator, engine));
        }
        if let Some((embedder, engine)) = self.embedders.iter().find(|(e, _)| e.name == name) {
            return Some(ModelHandle::Embedder(embedder, engine));
        }
        let classifier = self.classifier.as_ref().filter(|c| c.name == name)?;
        let engine = self
            .classifier_engine
            .as_ref()
            .filter(|e| e.admission().name() == name);
        Some(ModelHandle::Classifier(classifier, engine))
    }

    /// Every model's name, in config order.
    pub fn model_names(&self) -> Vec<&str> {
        self.order.iter().map(|(name, _)| name.as_str()).collect()
    }

    /// The remote models that have no ready replica now (the server is not ready then).
    pub fn unavailable_remotes(&self) -> Vec<&str> {
        self.remotes
            .iter()
            .filter(|r| !r.any_ready())
            .map(|r| r.model.as_str())
            .collect()
    }

    /// What every model is, in config order: a remote one as its node describes it (once
    /// a replica has answered), with its replicas' URLs and state.
    pub fn model_infos(&self) -> Vec<ModelInfo> {
        self.order
            .iter()
            .filter_map(|(name, role)| {
                if let Some(local) = self.models.iter().find(|m| &m.name == name) {
                    return Some(local.clone());
                }
                let remote = self.remotes.iter().find(|r| &r.model == name)?;
                Some(remote_info(remote, *role))
            })
            .collect()
    }

    /// Each local engine's limits and counters, generators first.
    pub fn engine_infos(&self) -> Vec<EngineInfo> {
        let generators = self.engines.iter().map(|e| {
            (
                e.admission().name(),
                e.admission().settings(),
                e.stats(),
                "generator",
            )
        });
        let classifier = self.classifier_engine.iter().map(|c| {
            let admission = c.admission();
            (
                admission.name(),
                admission.settings(),
                admission.stats().as_ref(),
                "classifier",
            )
        });
        let embedders = self.embedders.iter().map(|(_, engine)| {
            let admission = engine.admission();
            (
                admission.name(),
                admission.settings(),
                admission.stats().as_ref(),
                "embedder",
            )
        });
        generators
            .chain(classifier)
            .chain(embedders)
            .map(|(name, settings, stats, role)| engine_info(name, settings, stats, role))
            .collect()
    }
}

/// A remote model's `/v1/models` entry: its node's description, with where it is served.
fn remote_info(remote: &Replicas, role: Role) -> ModelInfo {
    let details = remote.details.lock().expect("details lock").clone();
    let mut info = details
        .and_then(|d| serde_json::from_value::<ModelInfo>(d).ok())
        .unwrap_or_else(|| ModelInfo {
            name: remote.model.clone(),
            role: role_name(role).into(),
            architecture: "unknown".into(),
            path: String::new(),
            format: String::new(),
            layers: 0,
            hidden_size: 0,
            heads: 0,
            vocab_size: 0,
            context_length: 0,
            parameters: 0,
            dtype: "unknown".into(),
            backend: "unknown".into(),
            device: "unknown".into(),
            labels: None,
            chat_template: None,
            pooling: None,
            dimension: None,
            location: String::new(),
            replicas: None,
        });
    info.location = "remote".into();
    info.replicas = Some(
        remote
            .replicas
            .iter()
            .map(|r| ReplicaInfo {
                url: r.url.clone(),
                ready: r.ready.load(Ordering::Acquire),
                in_flight: r.in_flight.load(Ordering::Acquire),
                served: r.served.load(Ordering::Relaxed),
            })
            .collect(),
    );
    info
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Generator => "generator",
        Role::Classifier => "classifier",
        Role::Embedder => "embedder",
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

/// The server's models, the local ones loaded, ready to be handed to their actors.
pub struct LoadedGraph {
    /// Every model in config order: loaded here, or served at these URLs.
    models: Vec<(String, Role, Source)>,
    infos: Vec<ModelInfo>,
    /// Empty on a model node.
    graphs: Vec<Arc<GraphSpec>>,
    remote: RemoteConfig,
}

enum Source {
    Generator(Box<Generator>),
    Classifier(Box<Classifier>),
    Embedder(Box<Embedder>),
    Remote(Vec<String>),
}

/// Loads every local model of `config` onto `device`, logging each one's load time.
pub fn load_models(config: &Config, device: &SelectedDevice) -> Result<LoadedGraph, String> {
    let mut models = Vec::new();
    let mut infos = Vec::new();
    for model in &config.models {
        let started = Instant::now();
        let fail = |e: models::ModelError| format!("model {:?}: {e}", model.name);
        let path = match &model.source {
            ModelSource::Local(path) => path,
            ModelSource::Remote(urls) => {
                tracing::info!(model = %model.name, urls = ?urls, "model served remotely");
                models.push((model.name.clone(), model.role, Source::Remote(urls.clone())));
                continue;
            }
        };
        // A generator's file is read once, its stored dtype with it; encoders are folders.
        let dtype = || match model.dtype {
            Some(dtype) => Ok(dtype),
            None => models::stored_dtype(path).map_err(fail),
        };
        let (info, source) = match model.role {
            Role::Generator => {
                let mut generator =
                    models::load_generator_as(path, &device.device, model.dtype).map_err(fail)?;
                if let Some(template) = &model.chat_template {
                    let (text, origin) = match template {
                        ConfiguredTemplate::Inline(text) => (text.clone(), path.clone()),
                        ConfiguredTemplate::File(file) => (
                            std::fs::read_to_string(file).map_err(|e| {
                                format!("model {:?}: {}: {e}", model.name, file.display())
                            })?,
                            file.clone(),
                        ),
                    };
                    let template =
                        models::configured_chat_template(path, text, &origin).map_err(fail)?;
                    generator.set_chat_template(template);
                }
                let info = generator_info(&model.name, &generator, device);
                (info, Source::Generator(Box::new(generator)))
            }
            Role::Classifier => {
                let loaded =
                    models::load_classifier_in(path, &device.device, dtype()?).map_err(fail)?;
                let info = classifier_info(&model.name, &loaded, device);
                (info, Source::Classifier(Box::new(loaded)))
            }
            Role::Embedder => {
                let loaded =
                    models::load_embedder_in(path, &device.device, dtype()?, model.pooling)
                        .map_err(fail)?;
                let info = embedder_info(&model.name, &loaded, device);
                (info, Source::Embedder(Box::new(loaded)))
            }
        };
        tracing::info!(
            model = %model.name,
            role = %info.role,
            path = %path.display(),
            parameters = info.parameters,
            dtype = %info.dtype,
            device = %device.name,
            load_ms = started.elapsed().as_millis() as u64,
            "model loaded"
        );
        if matches!(info.dtype.as_str(), "w8a8" | "w4a8")
            && !models::kernels::integer_dot_products()
        {
            tracing::warn!(
                model = %model.name,
                dtype = %info.dtype,
                "without AVX-512 VNNI this dtype runs a portable integer kernel, several times \
                 slower (docs/benchmarks.md): int8 or q4 is the faster choice on this CPU"
            );
        }
        infos.push(info);
        models.push((model.name.clone(), model.role, source));
    }
    check_labels(&config.graphs, &infos)?;
    check_chats(&config.graphs, &infos)?;
    // Loaded: from here large blocks are a step's activations, kept for the next step.
    crate::memory::for_serving();
    Ok(LoadedGraph {
        models,
        infos,
        graphs: config.graphs.iter().cloned().map(Arc::new).collect(),
        remote: config.remote.clone(),
    })
}

/// A switch case on a label must name one the classifier has (known here for a local
/// classifier; a remote one's labels are its node's to know).
fn check_labels(graphs: &[GraphSpec], infos: &[ModelInfo]) -> Result<(), String> {
    let labels: Vec<(&str, &[String])> = infos
        .iter()
        .filter_map(|i| Some((i.name.as_str(), i.labels.as_deref()?)))
        .collect();
    for graph in graphs {
        for (number, step) in graph.steps.iter().enumerate() {
            let StepKind::Switch { cases, .. } = &step.kind else {
                continue;
            };
            for (i, case) in cases.iter().enumerate() {
                let Condition::Label(label) = &case.when else {
                    continue;
                };
                // Only one classifier exists, so the label can only be its.
                if let Some((classifier, known)) = labels.first() {
                    if !known.contains(label) {
                        return Err(format!(
                            "graphs {:?} step {} ({:?}): switch[{i}].label: {label:?} is not a \
                             label of {classifier:?} (its labels: {})",
                            graph.name,
                            number + 1,
                            step.name,
                            known.join(", ")
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

/// A `chat` call must go to a generator with a chat template (known here for a local
/// model; a remote one's node refuses a chat itself, naming the model).
fn check_chats(graphs: &[GraphSpec], infos: &[ModelInfo]) -> Result<(), String> {
    for graph in graphs {
        for (number, step) in graph.steps.iter().enumerate() {
            for (key, call) in step.kind.keyed_calls() {
                if !matches!(call.framing, Some(Framing::Chat { .. })) {
                    continue;
                }
                let info = infos.iter().find(|i| i.name == call.model);
                if info.is_some_and(|i| i.chat_template.is_none()) {
                    return Err(format!(
                        "graphs {:?} step {} ({:?}): {key}.chat: {:?} has no chat template, so \
                         it cannot chat (use prompt = \"… {{text}} …\" for a plain prompt)",
                        graph.name,
                        number + 1,
                        step.name,
                        call.model
                    ));
                }
            }
        }
    }
    Ok(())
}

impl LoadedGraph {
    /// Starts one actor per model, and on a graph node the coordinator over them (in the
    /// current actix system).
    pub fn start(self, engine: &EngineConfig) -> RunningGraph {
        let settings = EngineSettings {
            max_batch: engine.max_batch,
            queue_capacity: engine.queue_capacity,
            panic_on_prompt: engine.panic_on_prompt.clone(),
            panic_picking_on_prompt: engine.panic_picking_on_prompt.clone(),
        };
        let mut running = RunningGraph {
            coordinator: None,
            graphs: self.graphs.clone(),
            order: Vec::new(),
            models: self.infos,
            engines: Vec::new(),
            classifier_engine: None,
            generators: Vec::new(),
            classifier: None,
            embedders: Vec::new(),
            remotes: Vec::new(),
            started_at_secs: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        };
        for (name, role, source) in self.models {
            running.order.push((name.clone(), role));
            match source {
                Source::Generator(generator) => {
                    let actor = GeneratorActor::new(name.clone(), *generator, settings.clone());
                    running.engines.push(actor.engine().clone());
                    let addr = actor.start().recipient();
                    running.generators.push(Named { name, addr });
                }
                Source::Classifier(classifier) => {
                    let actor = ClassifierActor::new(name.clone(), *classifier, settings.clone());
                    running.classifier_engine = Some(actor.engine().clone());
                    let addr = actor.start().recipient();
                    running.classifier = Some(Named { name, addr });
                }
                Source::Embedder(embedder) => {
                    let actor = EmbedderActor::new(name.clone(), *embedder, settings.clone());
                    let engine = actor.engine().clone();
                    let addr = actor.start().recipient();
                    running.embedders.push((Named { name, addr }, engine));
                }
                Source::Remote(urls) => {
                    let replicas = Arc::new(Replicas::new(&name, &urls));
                    running.remotes.push(replicas.clone());
                    let actor = RemoteModel::new(replicas, &self.remote).start();
                    match role {
                        Role::Generator => running.generators.push(Named {
                            name,
                            addr: actor.recipient(),
                        }),
                        Role::Classifier => {
                            running.classifier = Some(Named {
                                name,
                                addr: actor.recipient(),
                            })
                        }
                        Role::Embedder => unreachable!("the config refuses remote embedders"),
                    }
                }
            }
        }
        if !self.graphs.is_empty() {
            let models = GraphModels {
                generators: running.generators.clone(),
                classifiers: running.classifier.iter().cloned().collect(),
                embedders: running.embedders.iter().map(|(e, _)| e.clone()).collect(),
            };
            running.coordinator = Some(GraphCoordinator::new(self.graphs, models).start());
        }
        running
    }
}

/// `gguf` for a model read from a GGUF file, else `safetensors`.
fn checkpoint_format(path: &std::path::Path) -> &'static str {
    if path.extension().is_some_and(|e| e == "gguf") {
        "gguf"
    } else {
        "safetensors"
    }
}

fn generator_info(name: &str, generator: &Generator, device: &SelectedDevice) -> ModelInfo {
    let d = generator.model().description();
    ModelInfo {
        name: name.to_string(),
        role: "generator".into(),
        architecture: d.architecture.into(),
        path: generator.dir().display().to_string(),
        format: checkpoint_format(generator.dir()).into(),
        layers: d.layers,
        hidden_size: d.hidden_size,
        heads: d.heads,
        vocab_size: d.vocab_size,
        context_length: d.context_length,
        parameters: d.parameters,
        dtype: generator.model().dtype().into(),
        backend: device.backend.into(),
        device: device.name.clone(),
        labels: None,
        chat_template: generator
            .chat_template()
            .map(|t| t.source().as_str().to_string()),
        pooling: None,
        dimension: None,
        location: "local".into(),
        replicas: None,
    }
}

fn classifier_info(name: &str, classifier: &Classifier, device: &SelectedDevice) -> ModelInfo {
    let model = classifier.model();
    let c = model.shape();
    ModelInfo {
        name: name.to_string(),
        role: "classifier".into(),
        architecture: model.architecture().into(),
        path: classifier.dir().display().to_string(),
        format: checkpoint_format(classifier.dir()).into(),
        layers: c.num_hidden_layers,
        hidden_size: c.hidden_size,
        heads: c.num_attention_heads,
        vocab_size: c.vocab_size,
        context_length: c.max_tokens(),
        parameters: model.parameter_count(),
        dtype: model.dtype().into(),
        backend: device.backend.into(),
        device: device.name.clone(),
        labels: Some(model.labels().to_vec()),
        chat_template: None,
        pooling: None,
        dimension: None,
        location: "local".into(),
        replicas: None,
    }
}

fn embedder_info(name: &str, embedder: &Embedder, device: &SelectedDevice) -> ModelInfo {
    let encoder = embedder.encoder();
    let c = encoder.shape();
    ModelInfo {
        name: name.to_string(),
        role: "embedder".into(),
        architecture: embedder.architecture().into(),
        path: embedder.dir().display().to_string(),
        format: checkpoint_format(embedder.dir()).into(),
        layers: c.num_hidden_layers,
        hidden_size: c.hidden_size,
        heads: c.num_attention_heads,
        vocab_size: c.vocab_size,
        context_length: embedder.tokenizer().max_length().unwrap_or(c.max_tokens()),
        parameters: c.parameter_count(),
        dtype: encoder.dtype().into(),
        backend: device.backend.into(),
        device: device.name.clone(),
        labels: None,
        chat_template: None,
        pooling: Some(embedder.pooling().as_str().into()),
        dimension: Some(embedder.dimension()),
        location: "local".into(),
        replicas: None,
    }
}
