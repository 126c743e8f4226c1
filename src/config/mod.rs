//! `config.toml`: which models form the graph, where they run, and how the server listens.
//!
//! ROLES OF A SERVER: a config with `[[graphs]]` runs those graphs (see `graphs`); without
//! any, a config whose models make the built-in graph (at least one generator and exactly
//! one classifier, each loaded here or served elsewhere) runs that; any other set of
//! models, all loaded here, runs a *model node*, which serves the per-model API for them
//! (e.g. one `[[models]]` entry for gpt2-medium alone).
//!
//! Unknown keys are errors (a typo must not silently fall back to a default), and messages
//! name the offending key. Relative model paths are resolved against the config file's
//! folder, so `infergraph serve --config /etc/infergraph/config.toml` works from anywhere.

pub mod auth;
pub mod graphs;
pub mod tls;

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::backend::BackendChoice;
use crate::models::{Dtype, Pooling};
use graphs::{GraphEntry, GraphSpec};

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `auto`, `wgpu` or `cpu`; `--backend` and `INFERGRAPH_BACKEND` override it.
    #[serde(default)]
    pub backend: BackendChoice,
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub logging: LoggingConfig,
    #[serde(default)]
    pub generation: GenerationDefaults,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub engine: EngineConfig,
    #[serde(default)]
    pub otlp: OtlpConfig,
    #[serde(default)]
    pub remote: RemoteConfig,
    #[serde(default)]
    pub auth: auth::AuthConfig,
    /// The models of the graph, generators in the order their results are reported.
    pub models: Vec<ModelConfig>,
    /// `[[graphs]]` as written; `graphs` holds them checked.
    #[serde(default, rename = "graphs")]
    graph_entries: Vec<GraphEntry>,
    /// The graphs this server runs, checked against `models`: the `[[graphs]]`, or without
    /// any, the built-in graph when the models make one (none on a model node).
    #[serde(skip)]
    pub graphs: Vec<GraphSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub host: String,
    /// 0 picks a free port (the log says which).
    pub port: u16,
    /// HTTP worker threads; model math never runs on them. 0 means one per core.
    pub workers: usize,
    /// How long in-flight requests may run after SIGTERM/SIGINT before the process exits.
    pub shutdown_grace_secs: u64,
    /// Graph requests whose traces `GET /v1/traces` keeps (0 keeps none).
    pub traces_kept: usize,
    /// HTTPS instead of HTTP on the listener; absent is plain HTTP.
    pub tls: Option<tls::ServerTls>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 3000,
            workers: 0,
            shutdown_grace_secs: 30,
            traces_kept: 200,
            tls: None,
        }
    }
}

/// What a request gets when it does not say.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GenerationDefaults {
    /// Total tokens (prompt + continuation), as the BentoML example's pipelines use.
    pub max_length: usize,
}

impl Default for GenerationDefaults {
    fn default() -> Self {
        Self { max_length: 128 }
    }
}

/// Exporting traces to an OpenTelemetry collector (OTLP/HTTP, JSON); off by default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpConfig {
    /// The collector's traces URL, e.g. `http://localhost:4318/v1/traces`; unset is off.
    pub endpoint: Option<String>,
    pub service_name: String,
}

impl Default for OtlpConfig {
    fn default() -> Self {
        Self {
            endpoint: None,
            service_name: "infergraph".into(),
        }
    }
}

/// How a graph node reaches models served by other nodes (`url`/`urls` entries).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RemoteConfig {
    /// Opening a connection to a model node; past it the replica counts as down.
    pub connect_timeout_ms: u64,
    /// The longest silence allowed from a model node while it answers (between two streamed
    /// events too); past it the request gets 503 `model_unavailable`.
    pub read_timeout_ms: u64,
    /// How often each replica's `/readyz` is asked, so a replica that went down is used
    /// again once it is back.
    pub health_interval_ms: u64,
    /// The node key sent on every hop (`[auth] node_key_file` or `INFERGRAPH_NODE_KEY`),
    /// filled in at start, never from the file.
    #[serde(skip)]
    pub node_key: Option<auth::Secret>,
    /// How `https://` model nodes are checked (required when any url is https).
    pub tls: Option<tls::RemoteTls>,
    /// `tls` read into the hop's rustls settings, filled in at start (so a bad file stops
    /// the start, naming it), never from the file.
    #[serde(skip)]
    pub client_tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

impl Default for RemoteConfig {
    fn default() -> Self {
        Self {
            connect_timeout_ms: 2000,
            read_timeout_ms: 30_000,
            health_interval_ms: 1000,
            node_key: None,
            tls: None,
            client_tls: None,
        }
    }
}

/// Batching and admission, per generator.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// Sequences decoded together in one step.
    pub max_batch: usize,
    /// Requests waiting to join the batch; beyond that, 429.
    pub queue_capacity: usize,
    /// Fault injection for resilience drills, off by default: a generation whose prompt is
    /// exactly this string makes its model step panic (its batch gets 500s; the server
    /// carries on).
    pub panic_on_prompt: Option<String>,
    /// Fault injection, off by default: picking the next token of a generation whose prompt is
    /// exactly this string panics (that request alone gets a 500; its batch carries on).
    pub panic_picking_on_prompt: Option<String>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            max_batch: 8,
            queue_capacity: 32,
            panic_on_prompt: None,
            panic_picking_on_prompt: None,
        }
    }
}

/// Bounds on what one request may ask for.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest request body; bigger ones get 413.
    pub max_body_bytes: usize,
    /// Longest input text, in characters.
    pub max_input_chars: usize,
    /// Longest input text, in GPT-2 tokens.
    pub max_input_tokens: usize,
    /// Most tokens one generation may add.
    pub max_new_tokens: usize,
    /// A request still running after this long gets 504.
    pub request_timeout_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 * 1024,
            max_input_chars: 8192,
            max_input_tokens: 512,
            max_new_tokens: 512,
            request_timeout_ms: 120_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoggingConfig {
    pub format: LogFormat,
    /// A `tracing` filter such as `info` or `infergraph=debug`; `RUST_LOG` overrides it.
    pub level: String,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Human,
            level: "info".into(),
        }
    }
}

/// What a model does in the graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Generator,
    Classifier,
    /// Sentence embeddings (`/v1/models/{name}/embed`, `/v1/embeddings`), from an encoder
    /// without a head.
    Embedder,
}

/// One `[[models]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "ModelEntry")]
pub struct ModelConfig {
    /// The name results are reported under, e.g. `gpt2`.
    pub name: String,
    pub role: Role,
    pub source: ModelSource,
    /// What its dense layers' weights are kept in (a model served here). None: as stored
    /// (`models::stored_dtype`: f32 for a safetensors folder, a GGUF file's own precision).
    pub dtype: Option<Dtype>,
    /// An embedder's pooling, overriding its folder's (required for a folder without
    /// sentence-transformers' `modules.json`).
    pub pooling: Option<Pooling>,
    /// A generator's chat template, in place of its model's own: `chat_template` as written,
    /// or `chat_template_file` read at start.
    pub chat_template: Option<ConfiguredTemplate>,
}

/// A chat template `config.toml` gives a generator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfiguredTemplate {
    /// `chat_template = "…"`.
    Inline(String),
    /// `chat_template_file = "…"`, relative to the config's folder.
    File(PathBuf),
}

/// Where a model runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// In this process, loaded from a Hugging Face model folder (config.json,
    /// model.safetensors, tokenizer.json) or a GGUF file.
    Local(PathBuf),
    /// On other infergraph servers (replicas of one model node), by base URL
    /// (`http://host:port`).
    Remote(Vec<String>),
}

/// A `[[models]]` entry as written: exactly one of `path`, `url` and `urls`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelEntry {
    name: String,
    role: Role,
    path: Option<PathBuf>,
    url: Option<String>,
    urls: Option<Vec<String>>,
    dtype: Option<Dtype>,
    pooling: Option<Pooling>,
    chat_template: Option<String>,
    chat_template_file: Option<PathBuf>,
}

impl TryFrom<ModelEntry> for ModelConfig {
    type Error = String;

    fn try_from(entry: ModelEntry) -> Result<Self, String> {
        let name = entry.name;
        let source = match (entry.path, entry.url, entry.urls) {
            (Some(path), None, None) => ModelSource::Local(path),
            (None, Some(url), None) => ModelSource::Remote(vec![url]),
            (None, None, Some(urls)) if !urls.is_empty() => ModelSource::Remote(urls),
            _ => {
                return Err(format!(
                    "models {name:?}: give exactly one of path, url, urls (a non-empty list)"
                ))
            }
        };
        if let ModelSource::Remote(urls) = &source {
            if let Some(bad) = urls.iter().find(|u| !is_base_url(u)) {
                return Err(format!(
                    "models {name:?}: url {bad:?} must be http://host:port or https://host:port, with no path"
                ));
            }
        }
        if entry.dtype.is_some() && matches!(source, ModelSource::Remote(_)) {
            return Err(format!(
                "models {name:?}: dtype is the serving node's to set; a url entry takes none"
            ));
        }
        if entry.pooling.is_some() && entry.role != Role::Embedder {
            return Err(format!(
                "models {name:?}: pooling is an embedder's; this model is not role = \"embedder\""
            ));
        }
        // An embedder's calls have no hop to a model node (yet): it runs where it is named.
        if entry.role == Role::Embedder && matches!(source, ModelSource::Remote(_)) {
            return Err(format!(
                "models {name:?}: an embedder is served by the server that names it; give it a path"
            ));
        }
        let chat_template = match (entry.chat_template, entry.chat_template_file) {
            (None, None) => None,
            (Some(text), None) => Some(ConfiguredTemplate::Inline(text)),
            (None, Some(file)) => Some(ConfiguredTemplate::File(file)),
            (Some(_), Some(_)) => {
                return Err(format!(
                    "models {name:?}: give chat_template or chat_template_file, not both"
                ))
            }
        };
        // The template renders where the model runs: a node's own config names it.
        if chat_template.is_some()
            && (entry.role != Role::Generator || matches!(source, ModelSource::Remote(_)))
        {
            return Err(format!(
                "models {name:?}: a chat template is a local generator's (role = \"generator\" with a path)"
            ));
        }
        Ok(Self {
            name,
            role: entry.role,
            source,
            dtype: entry.dtype,
            pooling: entry.pooling,
            chat_template,
        })
    }
}

/// `http(s)://host:port` (or `http(s)://host`), nothing after.
fn is_base_url(url: &str) -> bool {
    url.strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .is_some_and(|rest| !rest.is_empty() && !rest.contains(['/', '?', '#', ' ']))
}

impl ModelConfig {
    /// The folder to load, for a model served here.
    pub fn path(&self) -> Option<&Path> {
        match &self.source {
            ModelSource::Local(path) => Some(path),
            ModelSource::Remote(_) => None,
        }
    }
}

/// Why a configuration was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read config: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl Config {
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::from_toml(&text, base).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_path_buf(),
                message,
            },
            ConfigError::Invalid { message, .. } => ConfigError::Invalid {
                path: path.to_path_buf(),
                message,
            },
            other => other,
        })
    }

    /// Parses `text`, resolving relative model paths against `base`.
    pub fn from_toml(text: &str, base: &Path) -> Result<Self, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::from("<config>"),
            message: e.to_string(),
        })?;
        for model in &mut config.models {
            let template = match &mut model.chat_template {
                Some(ConfiguredTemplate::File(path)) => Some(path),
                _ => None,
            };
            let source = match &mut model.source {
                ModelSource::Local(path) => Some(path),
                ModelSource::Remote(_) => None,
            };
            for path in [source, template].into_iter().flatten() {
                if path.is_relative() {
                    *path = base.join(&*path);
                }
            }
        }
        let auth = &mut config.auth;
        for path in [
            &mut auth.keys_file,
            &mut auth.admin_keys_file,
            &mut auth.node_key_file,
        ]
        .into_iter()
        .flatten()
        .chain(config.server.tls.iter_mut().flat_map(|t| t.paths_mut()))
        .chain(config.remote.tls.iter_mut().flat_map(|t| t.paths_mut()))
        {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        }
        config.validate()?;
        config.graphs = if config.graph_entries.is_empty() {
            config.builtin_graph().into_iter().collect()
        } else {
            graphs::check_graphs(&config.graph_entries, &config.models).map_err(|message| {
                ConfigError::Invalid {
                    path: PathBuf::from("<config>"),
                    message,
                }
            })?
        };
        Ok(config)
    }

    /// Today's graph when the models make one: every generator, then the classifier.
    fn builtin_graph(&self) -> Option<GraphSpec> {
        let generators: Vec<&str> = self.generators().map(|g| g.name.as_str()).collect();
        let classifier = self.classifier()?;
        (!generators.is_empty()).then(|| GraphSpec::builtin(&generators, &classifier.name))
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: PathBuf::from("<config>"),
            message,
        };
        let mut names = std::collections::HashSet::new();
        for model in &self.models {
            if model.name.trim().is_empty() {
                return Err(invalid("models.name: must not be empty".into()));
            }
            if !names.insert(&model.name) {
                return Err(invalid(format!(
                    "models.name: {:?} appears twice",
                    model.name
                )));
            }
        }
        let limits = &self.limits;
        for (key, value) in [
            ("limits.max_body_bytes", limits.max_body_bytes),
            ("limits.max_input_chars", limits.max_input_chars),
            ("limits.max_input_tokens", limits.max_input_tokens),
            ("limits.max_new_tokens", limits.max_new_tokens),
            (
                "limits.request_timeout_ms",
                limits.request_timeout_ms as usize,
            ),
        ] {
            if value == 0 {
                return Err(invalid(format!("{key}: must be positive")));
            }
        }
        if self.generation.max_length < 2 {
            return Err(invalid("generation.max_length: must be at least 2".into()));
        }
        let remote = &self.remote;
        for (key, value) in [
            ("remote.connect_timeout_ms", remote.connect_timeout_ms),
            ("remote.read_timeout_ms", remote.read_timeout_ms),
            ("remote.health_interval_ms", remote.health_interval_ms),
        ] {
            if value == 0 {
                return Err(invalid(format!("{key}: must be positive")));
            }
        }
        if self.models.is_empty() {
            return Err(invalid(
                "models: at least one [[models]] entry is needed".into(),
            ));
        }
        let classifiers = self
            .models
            .iter()
            .filter(|m| m.role == Role::Classifier)
            .count();
        if classifiers > 1 {
            return Err(invalid(
                "models: a graph has exactly one role = \"classifier\"; this config has more"
                    .into(),
            ));
        }
        let https_model = self.models.iter().find(|m| {
            matches!(&m.source, ModelSource::Remote(urls) if urls.iter().any(|u| u.starts_with("https://")))
        });
        if let (Some(model), None) = (https_model, &self.remote.tls) {
            return Err(invalid(format!(
                "models {:?}: an https:// url needs [remote.tls] ca = \"<CA bundle, PEM>\" to check the node's certificate",
                model.name
            )));
        }
        if let Some(tls) = &self.remote.tls {
            if tls.cert.is_some() != tls.key.is_some() {
                return Err(invalid(
                    "remote.tls: a client certificate needs both cert and key".into(),
                ));
            }
        }
        if !self.runs_graph() {
            if let Some(remote) = self.models.iter().find(|m| m.path().is_none()) {
                return Err(invalid(format!(
                    "models {:?}: a model node (a config without both a generator and the \
                     classifier) serves only models loaded here; give it a path",
                    remote.name
                )));
            }
        }
        Ok(())
    }

    /// Whether this server runs graphs (its `[[graphs]]`, or without any, at least one
    /// generator and the classifier), or is a model node serving only the per-model API.
    pub fn runs_graph(&self) -> bool {
        !self.graph_entries.is_empty()
            || (self.generators().next().is_some()
                && self.models.iter().any(|m| m.role == Role::Classifier))
    }

    /// The graph `/v1/graph` and the seed endpoints serve, on a graph node.
    pub fn default_graph(&self) -> Option<&GraphSpec> {
        self.graphs.iter().find(|g| g.default)
    }

    pub fn generators(&self) -> impl Iterator<Item = &ModelConfig> {
        self.models.iter().filter(|m| m.role == Role::Generator)
    }

    /// The graph's classifier, if there is one.
    pub fn classifier(&self) -> Option<&ModelConfig> {
        self.models.iter().find(|m| m.role == Role::Classifier)
    }
}
