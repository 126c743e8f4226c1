//! `[auth]`: who may call this server, as written in the config.
//!
//! INVARIANT: no secret is ever written here. The config names where keys come from (a file,
//! the environment); `http::auth` reads them at start and on rotation. A committed
//! `config.toml` and the process's command line therefore never carry a key.

use std::path::PathBuf;

use serde::Deserialize;

/// Whether API keys are required.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Keys are required when any are given, and a server bound to a non-loopback address
    /// refuses to start without them.
    #[default]
    Auto,
    /// Keys are required; the server refuses to start without any.
    Keys,
    /// No keys, on any address: the operator says the network in front does the guarding.
    None,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// `auto`, `keys` or `none`; `--auth` and `INFERGRAPH_AUTH` override it.
    pub mode: AuthMode,
    /// A file of API keys, one a line (`#` comments and blank lines skipped), re-read when it
    /// changes and on SIGHUP. Keys in `INFERGRAPH_API_KEYS` (comma-separated) count too.
    pub keys_file: Option<PathBuf>,
    /// Whether `/metrics` answers without a key (for a Prometheus that sends none).
    pub public_metrics: bool,
    /// On a model node: a file holding the node key its graph nodes must send, re-read like
    /// `keys_file`. On a graph node: the key it sends on every hop. `INFERGRAPH_NODE_KEY`
    /// gives it too.
    pub node_key_file: Option<PathBuf>,
    /// A file of admin keys (re-read like `keys_file`): users' keys that also read every
    /// trace (`/v1/traces` answers no other key). `INFERGRAPH_ADMIN_KEYS` gives them too.
    pub admin_keys_file: Option<PathBuf>,
    /// Origins (`scheme://host[:port]`) besides the server's own whose pages may call it,
    /// with CORS headers; a request from any other `Origin` gets 403.
    pub allowed_origins: Vec<String>,
    /// Host names a server bound to loopback answers to besides the loopback ones (against
    /// DNS rebinding); on another bind, listing any turns the check on there too.
    pub allowed_hosts: Vec<String>,
    /// Requests one client (an API key, else an address) may hold at once, queued or
    /// running; past it, 429 for that client only. 0: no limit.
    pub max_in_flight_per_client: usize,
    /// Whether `/v1/models` shows weight files' paths and replicas' URLs; off, it shows
    /// folder names and numbered replicas only.
    pub expose_internals: bool,
}

/// A secret read at start (never from the config file), kept out of `Debug` output so a
/// logged config shows no key.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Self(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}
