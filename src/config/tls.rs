//! `[server.tls]` and `[remote.tls]`: where the certificates are, as written in the config.
//!
//! INVARIANT: only paths live here (PEM files, relative ones resolved against the config's
//! folder); `crate::tls` reads them at start, failing with the file's name, and again
//! whenever a file changes, so certificates rotate without a restart.

use std::path::PathBuf;

use serde::Deserialize;

/// TLS on this server's listener (rustls).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTls {
    /// The certificate chain, leaf first (PEM).
    pub cert: PathBuf,
    /// The leaf's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// When set, mutual TLS: a client must present a certificate signed by one of these CAs
    /// (PEM bundle), or the handshake fails. For model nodes that serve only graph nodes.
    pub client_ca: Option<PathBuf>,
}

/// How a graph node checks `https://` model nodes, and what it presents to them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteTls {
    /// The CAs (PEM bundle) that model nodes' certificates must chain to; there is no
    /// fallback to a system store, so a node is trusted only because the config says so.
    pub ca: PathBuf,
    /// A client certificate chain (PEM) for model nodes that require one; with `key`.
    pub cert: Option<PathBuf>,
    /// The client certificate's private key (PEM); with `cert`.
    pub key: Option<PathBuf>,
}

impl ServerTls {
    pub(super) fn paths_mut(&mut self) -> impl Iterator<Item = &mut PathBuf> {
        [&mut self.cert, &mut self.key]
            .into_iter()
            .chain(self.client_ca.as_mut())
    }
}

impl RemoteTls {
    pub(super) fn paths_mut(&mut self) -> impl Iterator<Item = &mut PathBuf> {
        std::iter::once(&mut self.ca)
            .chain(self.cert.as_mut())
            .chain(self.key.as_mut())
    }
}
