//! API keys and node keys: the middleware that guards every route but the public list.
//!
//! INVARIANTS:
//! - The middleware wraps the whole `App`, so it runs before routing: a route added later,
//!   the websocket, `/docs` and paths that match nothing are all behind it without doing
//!   anything. Only `PUBLIC`, `GET`/`HEAD /` (the page, which carries no data and must load
//!   for a browser to ask for a key; everything it then fetches needs one) and `/metrics`
//!   when `[auth] public_metrics` pass without a key, matched as exact paths, so no spelling
//!   of another route can pass as public.
//! - Keys are held only as SHA-256 digests and compared in constant time against every
//!   accepted digest (no early exit), so neither a timing nor a memory dump gives a key away.
//!   A key is never logged; a refusal is counted by reason only.
//! - Keys come from `INFERGRAPH_API_KEYS` or `[auth] keys_file`, never from the config file
//!   or the command line. The file is re-read every `RELOAD_EVERY` and on SIGHUP; a file
//!   that cannot be read or parsed leaves the keys as they were (and says so in the log),
//!   so a half-written file does not lock everyone out.
//! - A model node (a server that runs no graph) also accepts its node key (`INFERGRAPH_NODE_KEY`
//!   or `[auth] node_key_file`), which its graph nodes send on every hop; users' keys are
//!   accepted there only if that node is given them too.
//! - Traces (`/v1/traces`, `/v1/traces/{id}`) show every user's request ids, token counts and
//!   labels, so with auth on they answer admin keys only (`INFERGRAPH_ADMIN_KEYS` or
//!   `[auth] admin_keys_file`; an admin key is also a user's key everywhere else), 403 to
//!   others. Judged on the path as the router matches it, so no spelling gets around it.
//! - Auth is on whenever keys are given. Without keys, a server bound to a non-loopback
//!   address refuses to start unless `[auth] mode = "none"`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;
use std::time::Duration;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{web, Error, HttpMessage, ResponseError};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use crate::config::auth::{AuthMode, Secret};
use crate::config::Config;
use crate::telemetry::metrics::Exposition;

/// Routes that answer without a key: probes, which kubelets send without credentials.
pub const PUBLIC: [&str; 3] = ["/livez", "/readyz", "/healthz"];

/// The page, public for GET and HEAD only: it holds no data, and a browser must load it
/// without a key for it to ask for one.
const PAGE: &str = "/";

/// How often the key files are re-read, so a rotated key takes effect within a second.
const RELOAD_EVERY: Duration = Duration::from_millis(250);

/// The environment variables keys come from.
pub const API_KEYS_ENV: &str = "INFERGRAPH_API_KEYS";
pub const NODE_KEY_ENV: &str = "INFERGRAPH_NODE_KEY";
pub const ADMIN_KEYS_ENV: &str = "INFERGRAPH_ADMIN_KEYS";

/// The websocket subprotocol a browser offers beside `infergraph.key.<key>` (browsers cannot
/// set headers on a websocket); the server answers with it, never with the key.
pub const WS_PROTOCOL: &str = "infergraph";
const WS_KEY_PREFIX: &str = "infergraph.key.";

type KeyDigest = [u8; 32];

fn digest(key: &str) -> KeyDigest {
    Sha256::digest(key.as_bytes()).into()
}

/// Who a request comes from, as the key check found it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Client {
    /// A user's API key, by the first bytes of its digest in hex.
    Key(String),
    /// A graph node, by the node key: never limited.
    Node,
    /// No key: the peer's address.
    Address(IpAddr),
}

impl Client {
    /// How `/metrics` names it.
    pub fn label(&self) -> &str {
        match self {
            Self::Key(label) => label,
            Self::Node => "node",
            Self::Address(_) => "address",
        }
    }
}

/// Keys from the environment (fixed for the process's life) and from a file (re-read).
struct KeySet {
    fixed: Vec<KeyDigest>,
    file: Option<PathBuf>,
    /// The file's last contents read and their digests.
    loaded: RwLock<(Vec<u8>, Vec<KeyDigest>)>,
}

impl KeySet {
    /// `None` when neither the variable nor the file gives a key source.
    fn new(
        env_value: Option<&str>,
        file: Option<&Path>,
        what: &str,
    ) -> Result<Option<Self>, String> {
        let fixed = match env_value {
            Some(value) => parse_keys(value.split(','), what)
                .map_err(|e| format!("{what} in the environment: {e}"))?,
            None => Vec::new(),
        };
        if env_value.is_none() && file.is_none() {
            return Ok(None);
        }
        let set = Self {
            fixed,
            file: file.map(Path::to_path_buf),
            loaded: RwLock::new((Vec::new(), Vec::new())),
        };
        if let Some(path) = &set.file {
            let bytes = std::fs::read(path)
                .map_err(|e| format!("{what} file {}: cannot read it: {e}", path.display()))?;
            set.install(bytes)
                .map_err(|e| format!("{what} file {}: {e}", path.display()))?;
        }
        Ok(Some(set))
    }

    /// Parses `bytes` as the file's keys and makes them the accepted ones.
    fn install(&self, bytes: Vec<u8>) -> Result<usize, String> {
        let text = std::str::from_utf8(&bytes).map_err(|_| "not UTF-8".to_string())?;
        let lines = text.lines().filter(|l| !l.trim_start().starts_with('#'));
        let digests = parse_keys(lines, "key")?;
        let count = digests.len();
        *self.loaded.write().expect("keys lock") = (bytes, digests);
        Ok(count)
    }

    /// Re-reads the file if it changed; a failure keeps the keys in force.
    fn reload(&self, what: &str) {
        let Some(path) = &self.file else { return };
        match std::fs::read(path) {
            Ok(bytes) if bytes == self.loaded.read().expect("keys lock").0 => {}
            Ok(bytes) => match self.install(bytes) {
                Ok(count) => {
                    tracing::info!(file = %path.display(), keys = count, "{what} file re-read")
                }
                Err(error) => {
                    tracing::error!(file = %path.display(), %error, "{what} file not re-read; the keys in force stay")
                }
            },
            Err(error) => {
                tracing::error!(file = %path.display(), %error, "{what} file unreadable; the keys in force stay")
            }
        }
    }

    fn count(&self) -> usize {
        self.fixed.len() + self.loaded.read().expect("keys lock").1.len()
    }

    /// Whether `candidate` is one of the keys, looking at every key whatever matches.
    fn accepts(&self, candidate: &KeyDigest) -> bool {
        let loaded = self.loaded.read().expect("keys lock");
        let mut found = subtle::Choice::from(0);
        for key in self.fixed.iter().chain(&loaded.1) {
            found |= key.ct_eq(candidate);
        }
        found.into()
    }
}

/// Digests of `keys` (blank ones skipped); a key must be visible ASCII without commas, so it
/// travels unchanged in a header and in a websocket subprotocol.
fn parse_keys<'a>(
    keys: impl Iterator<Item = &'a str>,
    what: &str,
) -> Result<Vec<KeyDigest>, String> {
    let mut digests = Vec::new();
    for (i, key) in keys.map(str::trim).enumerate() {
        if key.is_empty() {
            continue;
        }
        let token = |c: char| c.is_ascii_graphic() && !"\"(),/:;<=>?@[\\]{}".contains(c);
        if !key.chars().all(token) {
            return Err(format!(
                "{what} number {} has a character other than letters, digits and -._~+!#$%&'*^`|",
                i + 1
            ));
        }
        digests.push(digest(key));
    }
    Ok(digests)
}

/// Why a request was refused, as counted in `/metrics`.
#[derive(Clone, Copy)]
enum Refusal {
    Missing,
    Invalid,
}

/// Who may call, shared by every worker.
pub struct Auth {
    users: Option<KeySet>,
    /// Users' keys that also see every trace.
    admins: Option<KeySet>,
    /// Accepted only on a model node.
    nodes: Option<KeySet>,
    public_metrics: bool,
    refused_missing: AtomicU64,
    refused_invalid: AtomicU64,
}

impl Auth {
    /// Reads the keys `config` and the environment give, or says why the server must not
    /// start (no keys on a non-loopback address, an unreadable key file, a malformed key).
    pub fn from_config(config: &Config) -> Result<Self, String> {
        let mut auth = Self::from_sources(
            config,
            std::env::var(API_KEYS_ENV).ok(),
            std::env::var(NODE_KEY_ENV).ok(),
        )?;
        auth.admins = KeySet::new(
            std::env::var(ADMIN_KEYS_ENV).ok().as_deref(),
            config.auth.admin_keys_file.as_deref(),
            "admin keys",
        )?;
        if auth.admins.is_some() && auth.users.is_none() && auth.nodes.is_none() {
            return Err(format!(
                "admin keys are given but no API keys: set {API_KEYS_ENV} or [auth] keys_file too"
            ));
        }
        Ok(auth)
    }

    fn from_sources(
        config: &Config,
        api_keys: Option<String>,
        node_key: Option<String>,
    ) -> Result<Self, String> {
        let settings = &config.auth;
        let users = KeySet::new(
            api_keys.as_deref(),
            settings.keys_file.as_deref(),
            "API keys",
        )?;
        // The node key is accepted on a model node only: a graph node sends it.
        let nodes = if config.runs_graph() {
            None
        } else {
            KeySet::new(
                node_key.as_deref(),
                settings.node_key_file.as_deref(),
                "node key",
            )?
        };
        let auth = Self {
            users,
            admins: None,
            nodes,
            public_metrics: settings.public_metrics,
            refused_missing: AtomicU64::new(0),
            refused_invalid: AtomicU64::new(0),
        };
        let host = &config.server.host;
        let how = format!(
            "set {API_KEYS_ENV} (comma-separated) or [auth] keys_file (one key a line){}, \
             or, if something in front of this server does the guarding, [auth] mode = \"none\" \
             (or INFERGRAPH_AUTH=none)",
            if config.runs_graph() {
                ""
            } else {
                ", or on a model node INFERGRAPH_NODE_KEY or [auth] node_key_file"
            }
        );
        match (settings.mode, auth.enabled()) {
            (AuthMode::None, true) => {
                Err("[auth] mode is \"none\" but keys are given; remove them or the mode".into())
            }
            (AuthMode::None, false) => {
                tracing::warn!(%host, "auth is off ([auth] mode = \"none\"): anyone who reaches this server may call it");
                Ok(auth)
            }
            (AuthMode::Keys, false) => Err(format!("[auth] mode is \"keys\" but no keys are given: {how}")),
            (AuthMode::Auto, false) if !is_loopback(host) => Err(format!(
                "this server listens on {host}, beyond this machine, and no API keys are given: {how}"
            )),
            (AuthMode::Auto, false) => {
                tracing::info!(%host, "auth is off: no keys are given and the server listens on loopback only");
                Ok(auth)
            }
            (_, true) => {
                tracing::info!(
                    api_keys = auth.users.as_ref().map_or(0, KeySet::count),
                    node_keys = auth.nodes.as_ref().map_or(0, KeySet::count),
                    "auth is on: every route but {} needs a key",
                    auth.public_list().join(", ")
                );
                Ok(auth)
            }
        }
    }

    /// Whether any key source is configured (even one whose file now lists no key).
    pub fn enabled(&self) -> bool {
        self.users.is_some() || self.nodes.is_some() || self.admins.is_some()
    }

    fn public_list(&self) -> Vec<&'static str> {
        let mut list = PUBLIC.to_vec();
        list.push("/ (the page: GET and HEAD)");
        if self.public_metrics {
            list.push("/metrics");
        }
        list
    }

    /// Whether `method path` answers without a key.
    pub fn is_public(&self, method: &Method, path: &str) -> bool {
        PUBLIC.contains(&path)
            || (self.public_metrics && path == "/metrics")
            || (path == PAGE && (method == Method::GET || method == Method::HEAD))
    }

    /// Who `key` belongs to, if it is accepted, and whether it is an admin key.
    fn identify(&self, key: &str) -> Option<(Client, bool)> {
        let candidate = digest(key);
        // Every set is always asked, so the time taken does not tell which holds the key.
        let user = self.users.as_ref().is_some_and(|s| s.accepts(&candidate));
        let admin = self.admins.as_ref().is_some_and(|s| s.accepts(&candidate));
        let node = self.nodes.as_ref().is_some_and(|s| s.accepts(&candidate));
        if user || admin {
            // Four bytes of the digest tell keys apart in /metrics and reveal nothing usable.
            let label: String = candidate[..4].iter().map(|b| format!("{b:02x}")).collect();
            Some((Client::Key(format!("key-{label}")), admin))
        } else {
            node.then_some((Client::Node, false))
        }
    }

    #[cfg(test)]
    fn accepts(&self, key: &str) -> bool {
        self.identify(key).is_some()
    }

    fn check(&self, request: &ServiceRequest) -> Result<(Client, bool), Refusal> {
        let key = presented_key(request.headers()).ok_or(Refusal::Missing)?;
        self.identify(key).ok_or(Refusal::Invalid)
    }

    fn count(&self, refusal: Refusal) {
        let counter = match refusal {
            Refusal::Missing => &self.refused_missing,
            Refusal::Invalid => &self.refused_invalid,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Re-reads the key files every `RELOAD_EVERY` and on SIGHUP, for the server's life.
    pub async fn watch(auth: web::Data<Self>) {
        let sets = [&auth.users, &auth.admins, &auth.nodes];
        if sets
            .iter()
            .all(|set| set.as_ref().and_then(|s| s.file.as_ref()).is_none())
        {
            return;
        }
        use tokio::signal::unix::{signal, SignalKind};
        let mut hangup = signal(SignalKind::hangup()).ok();
        let mut tick = tokio::time::interval(RELOAD_EVERY);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                Some(()) = async { hangup.as_mut()?.recv().await } => {
                    tracing::info!("SIGHUP: re-reading the key files");
                }
            }
            if let Some(users) = &auth.users {
                users.reload("API keys");
            }
            if let Some(admins) = &auth.admins {
                admins.reload("admin keys");
            }
            if let Some(nodes) = &auth.nodes {
                nodes.reload("node key");
            }
        }
    }

    /// The refusal counters and key counts, for `/metrics`.
    pub fn expose(&self, out: &mut Exposition) {
        out.family(
            "infergraph_auth_refusals_total",
            "counter",
            "Requests refused for a missing or an unaccepted key.",
        );
        for (reason, counter) in [
            ("missing", &self.refused_missing),
            ("invalid", &self.refused_invalid),
        ] {
            out.sample(
                "infergraph_auth_refusals_total",
                &[("reason", reason)],
                counter.load(Ordering::Relaxed) as f64,
            );
        }
        out.family(
            "infergraph_auth_keys",
            "gauge",
            "Keys accepted now, by kind (api or node).",
        );
        for (kind, set) in [
            ("api", &self.users),
            ("admin", &self.admins),
            ("node", &self.nodes),
        ] {
            let count = set.as_ref().map_or(0, KeySet::count);
            out.sample("infergraph_auth_keys", &[("kind", kind)], count as f64);
        }
    }
}

/// The key a request carries: `Authorization: Bearer`, `x-api-key`, or for a browser's
/// websocket an `infergraph.key.<key>` subprotocol offer.
fn presented_key(headers: &header::HeaderMap) -> Option<&str> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    let api_key = || {
        headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let protocol = || offered_protocols(headers).find_map(|p| p.strip_prefix(WS_KEY_PREFIX));
    bearer.or_else(api_key).or_else(protocol)
}

fn offered_protocols(headers: &header::HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
}

/// Whether `host` (as `[server] host` names it) is reachable from this machine only.
pub fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The middleware: public paths pass; any other request needs an accepted key, or gets 401.
pub async fn require_key(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let auth = request
        .app_data::<web::Data<Auth>>()
        .cloned()
        .expect("serve registers Auth");
    if !auth.enabled() || auth.is_public(request.method(), request.path()) {
        return Ok(next.call(request).await?.map_into_left_body());
    }
    match auth.check(&request) {
        Ok((_, false)) if admin_only(request.match_info().as_str()) => {
            let error = ApiError::Forbidden {
                error_type: "admin_only",
                message: format!(
                    "traces show every user's requests: they answer admin keys only \
                     ({ADMIN_KEYS_ENV} or [auth] admin_keys_file)"
                ),
            };
            return Ok(request
                .into_response(error.error_response())
                .map_into_right_body());
        }
        Ok((client, _)) => {
            request.extensions_mut().insert(client);
        }
        Err(refusal) => {
            auth.count(refusal);
            let error = ApiError::Unauthorized(match refusal {
                Refusal::Missing => {
                    "an API key is needed: send it as Authorization: Bearer <key> or x-api-key"
                }
                Refusal::Invalid => "the API key is not accepted",
            });
            return Ok(request
                .into_response(error.error_response())
                .map_into_right_body());
        }
    }
    let answer_protocol = offered_protocols(request.headers()).any(|p| p == WS_PROTOCOL);
    let mut response = next.call(request).await?;
    // A browser drops a websocket whose offered subprotocols get no answer.
    if answer_protocol && response.status() == StatusCode::SWITCHING_PROTOCOLS {
        response.headers_mut().insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            header::HeaderValue::from_static(WS_PROTOCOL),
        );
    }
    Ok(response.map_into_left_body())
}

/// Whether `path` (as the router matches it) is one only admin keys may read.
pub fn admin_only(path: &str) -> bool {
    path == "/v1/traces" || path.starts_with("/v1/traces/")
}

/// The node key this server sends on every hop, if one is given.
pub fn node_key(config: &Config) -> Result<Option<Secret>, String> {
    if let Ok(key) = std::env::var(NODE_KEY_ENV) {
        return Ok(Some(Secret::new(key.trim().to_string())));
    }
    let Some(path) = &config.auth.node_key_file else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("node key file {}: cannot read it: {e}", path.display()))?;
    // The first key is the one sent; a model node's file may list the next one too.
    let key = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .ok_or_else(|| format!("node key file {}: no key in it", path.display()))?;
    Ok(Some(Secret::new(key.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(host: &str, extra: &str) -> Config {
        let toml = format!(
            "[server]\nhost = \"{host}\"\n{extra}\n[[models]]\nname = \"g\"\npath = \"g\"\nrole = \"generator\"\n\
             [[models]]\nname = \"c\"\npath = \"c\"\nrole = \"classifier\"\n"
        );
        Config::from_toml(&toml, Path::new(".")).unwrap()
    }

    #[test]
    fn loopback_hosts_are_told_from_the_others() {
        for host in [
            "127.0.0.1",
            "127.0.0.2",
            "::1",
            "[::1]",
            "localhost",
            "LOCALHOST",
        ] {
            assert!(is_loopback(host), "{host}");
        }
        for host in [
            "0.0.0.0",
            "::",
            "10.0.0.1",
            "example.com",
            "localhost.example.com",
        ] {
            assert!(!is_loopback(host), "{host}");
        }
    }

    #[test]
    fn a_non_loopback_bind_without_keys_is_refused_with_how_to_set_them() {
        let error = Auth::from_sources(&config("0.0.0.0", ""), None, None)
            .err()
            .unwrap();
        assert!(
            error.contains(API_KEYS_ENV) && error.contains("mode = \"none\""),
            "{error}"
        );
        assert!(
            Auth::from_sources(&config("0.0.0.0", "[auth]\nmode = \"none\""), None, None).is_ok()
        );
        let on = Auth::from_sources(&config("0.0.0.0", ""), Some("k1".into()), None).unwrap();
        assert!(on.enabled());
    }

    #[test]
    fn loopback_without_keys_is_off_and_keys_turn_it_on() {
        assert!(!Auth::from_sources(&config("127.0.0.1", ""), None, None)
            .unwrap()
            .enabled());
        let error = Auth::from_sources(&config("127.0.0.1", "[auth]\nmode = \"keys\""), None, None)
            .err()
            .unwrap();
        assert!(error.contains("no keys are given"), "{error}");
    }

    #[test]
    fn every_listed_key_is_accepted_and_nothing_else() {
        let auth = Auth::from_sources(
            &config("127.0.0.1", ""),
            Some(" k-one , k.two,".into()),
            None,
        )
        .unwrap();
        assert!(auth.accepts("k-one") && auth.accepts("k.two"));
        for wrong in ["", "k-one ", "k", "k-onf", "K-ONE"] {
            assert!(!auth.accepts(wrong), "{wrong:?}");
        }
        // The node key counts only on a model node; this config runs a graph.
        let auth = Auth::from_sources(&config("127.0.0.1", ""), Some("u".into()), Some("n".into()))
            .unwrap();
        assert!(auth.accepts("u") && !auth.accepts("n"));
    }

    #[test]
    fn a_key_with_a_space_or_a_comma_in_the_file_is_refused_by_line() {
        let set = KeySet::new(None, None, "API keys").unwrap();
        assert!(set.is_none());
        let error = parse_keys(["ok", "bad key"].into_iter(), "key").unwrap_err();
        assert!(error.contains("number 2"), "{error}");
        assert!(
            !error.contains("bad key"),
            "a key must not be echoed: {error}"
        );
    }

    #[test]
    fn a_key_is_found_in_each_place_a_client_may_put_it() {
        let headers = |pairs: &[(&str, &str)]| {
            let mut map = header::HeaderMap::new();
            for (name, value) in pairs {
                map.append(
                    header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    header::HeaderValue::from_str(value).unwrap(),
                );
            }
            map
        };
        assert_eq!(
            presented_key(&headers(&[("authorization", "Bearer abc")])),
            Some("abc")
        );
        assert_eq!(
            presented_key(&headers(&[("authorization", "bearer  abc ")])),
            Some("abc")
        );
        assert_eq!(
            presented_key(&headers(&[("authorization", "Basic abc")])),
            None
        );
        assert_eq!(
            presented_key(&headers(&[("x-api-key", "abc")])),
            Some("abc")
        );
        let offer = [("sec-websocket-protocol", "infergraph, infergraph.key.abc")];
        assert_eq!(presented_key(&headers(&offer)), Some("abc"));
        assert_eq!(presented_key(&headers(&[])), None);
    }
}
