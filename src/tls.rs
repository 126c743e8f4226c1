//! TLS with rustls (ring as the crypto provider): the server's listener, the graph node's
//! client side of the hop, and the health probe's.
//!
//! INVARIANTS:
//! - Every certificate, key and CA bundle is read at start, and a bad one stops the start
//!   with the file's name and what is wrong with it.
//! - Each is read again when its file changes (size, time or inode, looked at on use at most
//!   every `CHECK_EVERY`), so certificates rotate without a restart; Kubernetes swaps a
//!   mounted Secret's files in place, which reads as a change. A re-read that fails keeps the
//!   last good value and logs why, so a half-written file breaks no handshake.
//! - There is no fallback to a system trust store: a model node is trusted because the
//!   config's CA bundle says so, and a client certificate because the node's `client_ca` does.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{
    ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig,
    SignatureScheme,
};

use crate::config::tls::{RemoteTls, ServerTls};

/// How often, at most, a file is looked at for a change.
const CHECK_EVERY: Duration = Duration::from_secs(1);

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The listener's settings for `[server.tls]`.
pub fn server_config(tls: &ServerTls) -> Result<ServerConfig, String> {
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match &tls.client_ca {
        Some(ca) => builder.with_client_cert_verifier(Arc::new(ClientCaVerifier {
            roots: watch_roots(ca, {
                let provider = provider.clone();
                move |roots| {
                    WebPkiClientVerifier::builder_with_provider(roots, provider.clone()).build()
                }
            })?,
            signatures: Signatures(provider.clone()),
        })),
        None => builder.with_no_client_auth(),
    };
    let identity = Identity::watch(&tls.cert, &tls.key, provider)?;
    Ok(builder.with_cert_resolver(Arc::new(identity)))
}

/// The hop's settings for `[remote.tls]`: model nodes' certificates checked against the CA
/// bundle, and the client certificate presented when one is configured.
pub fn client_config(tls: &RemoteTls) -> Result<ClientConfig, String> {
    let provider = provider();
    let verifier = NodeVerifier {
        roots: watch_roots(&tls.ca, {
            let provider = provider.clone();
            move |roots| {
                WebPkiServerVerifier::builder_with_provider(roots, provider.clone()).build()
            }
        })?,
        signatures: Signatures(provider.clone()),
    };
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    let mut config = match (&tls.cert, &tls.key) {
        (Some(cert), Some(key)) => {
            builder.with_client_cert_resolver(Arc::new(Identity::watch(cert, key, provider)?))
        }
        _ => builder.with_no_client_auth(),
    };
    // The hop speaks HTTP/1.1 (its streams are chunked responses), with or without TLS.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The health probe's settings: it trusts exactly the leaf certificate the server's config
/// names (the probe asks its own server, so no CA is needed), and presents `client` when
/// the server requires a client certificate.
pub fn probe_config(
    server: &ServerTls,
    client: Option<(&Path, &Path)>,
) -> Result<ClientConfig, String> {
    let provider = provider();
    let leaf = read_certs(&server.cert)?.swap_remove(0);
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedLeaf {
            leaf,
            signatures: Signatures(provider.clone()),
        }));
    Ok(match client {
        Some((cert, key)) => {
            builder.with_client_cert_resolver(Arc::new(Identity::watch(cert, key, provider)?))
        }
        None => builder.with_no_client_auth(),
    })
}

fn read_file(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(&read_file(path)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: not a PEM certificate file: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: holds no PEM certificate", path.display()));
    }
    Ok(certs)
}

fn read_roots(path: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(path)? {
        roots
            .add(cert)
            .map_err(|e| format!("{}: not a usable CA certificate: {e}", path.display()))?;
    }
    Ok(roots)
}

/// A verifier built from the CA bundle `ca`, and built again whenever the file changes.
fn watch_roots<T, E: fmt::Display>(
    ca: &Path,
    build: impl Fn(Arc<RootCertStore>) -> Result<T, E> + Send + Sync + 'static,
) -> Result<Watched<T>, String> {
    Watched::new(vec![ca.to_path_buf()], move |files| {
        build(Arc::new(read_roots(&files[0])?)).map_err(|e| format!("{}: {e}", files[0].display()))
    })
}

/// A certificate chain and its private key, checked to belong together.
fn read_identity(
    cert: &Path,
    key: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, String> {
    let chain = read_certs(cert)?;
    let private = PrivateKeyDer::from_pem_slice(&read_file(key)?)
        .map_err(|e| format!("{}: not a PEM private key: {e}", key.display()))?;
    CertifiedKey::from_der(chain, private, provider).map_err(|e| {
        format!(
            "{} with {}: not a usable certificate and key: {e}",
            cert.display(),
            key.display()
        )
    })
}

/// The handshake-signature methods of both verifier traits, delegated to the verifier's
/// `signatures` (the traits differ; these methods do not).
macro_rules! signature_checks {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.signatures.tls12(message, cert, dss)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.signatures.tls13(message, cert, dss)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.signatures.schemes()
        }
    };
}

/// Handshake signatures, checked the same way whoever the peer is.
struct Signatures(Arc<CryptoProvider>);

impl Signatures {
    fn tls12(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn tls13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Reads a watched value from its files.
type Reader<T> = Box<dyn Fn(&[PathBuf]) -> Result<T, String> + Send + Sync>;

/// A value read from files and read again when one of them changes.
struct Watched<T> {
    files: Vec<PathBuf>,
    read: Reader<T>,
    current: Mutex<Current<T>>,
}

struct Current<T> {
    value: Arc<T>,
    /// What the files looked like when `value` was read (or last failed to be).
    stamps: Vec<Option<Stamp>>,
    checked: Instant,
}

/// Enough of a file's metadata to tell that it changed: a rewrite changes the time or the
/// size, a swapped symlink (a Kubernetes Secret) the inode.
type Stamp = (SystemTime, u64, u64);

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len(), meta.ino()))
}

impl<T> Watched<T> {
    fn new(
        files: Vec<PathBuf>,
        read: impl Fn(&[PathBuf]) -> Result<T, String> + Send + Sync + 'static,
    ) -> Result<Self, String> {
        let stamps = files.iter().map(|f| stamp(f)).collect();
        let value = Arc::new(read(&files)?);
        Ok(Self {
            files,
            read: Box::new(read),
            current: Mutex::new(Current {
                value,
                stamps,
                checked: Instant::now(),
            }),
        })
    }

    /// The current value, read again first if a file changed since it was last looked at.
    fn get(&self) -> Arc<T> {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if current.checked.elapsed() >= CHECK_EVERY {
            current.checked = Instant::now();
            let stamps: Vec<_> = self.files.iter().map(|f| stamp(f)).collect();
            if stamps != current.stamps {
                current.stamps = stamps;
                match (self.read)(&self.files) {
                    Ok(value) => {
                        tracing::info!(files = ?self.files, "TLS files changed; re-read");
                        current.value = Arc::new(value);
                    }
                    Err(error) => {
                        tracing::warn!(%error, "TLS files changed but cannot be used; keeping the previous ones");
                    }
                }
            }
        }
        current.value.clone()
    }
}

/// A certificate and key presented to peers, as a server or as a client.
struct Identity(Watched<CertifiedKey>);

impl Identity {
    fn watch(cert: &Path, key: &Path, provider: Arc<CryptoProvider>) -> Result<Self, String> {
        let files = vec![cert.to_path_buf(), key.to_path_buf()];
        Watched::new(files, move |files| {
            read_identity(&files[0], &files[1], &provider)
        })
        .map(Self)
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity({:?})", self.0.files)
    }
}

impl ResolvesServerCert for Identity {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.get())
    }
}

impl ResolvesClientCert for Identity {
    fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.get())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Checks model nodes' certificates against the (re-read) CA bundle.
struct NodeVerifier {
    roots: Watched<Arc<WebPkiServerVerifier>>,
    signatures: Signatures,
}

impl fmt::Debug for NodeVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeVerifier({:?})", self.roots.files)
    }
}

impl ServerCertVerifier for NodeVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.roots.get().verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )
    }

    signature_checks!();
}

/// Requires a client certificate chaining to the (re-read) `client_ca` bundle.
struct ClientCaVerifier {
    roots: Watched<Arc<dyn ClientCertVerifier>>,
    signatures: Signatures,
}

impl fmt::Debug for ClientCaVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClientCaVerifier({:?})", self.roots.files)
    }
}

impl ClientCertVerifier for ClientCaVerifier {
    /// No hints: the bundle may change under a borrowed list, and our clients (the hop, the
    /// probe) each hold one certificate and send it regardless.
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.roots
            .get()
            .verify_client_cert(end_entity, intermediates, now)
    }

    signature_checks!();
}

/// The probe's check: the peer's leaf must be byte for byte the configured one (its
/// handshake signature is still verified).
struct PinnedLeaf {
    leaf: CertificateDer<'static>,
    signatures: Signatures,
}

impl fmt::Debug for PinnedLeaf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PinnedLeaf")
    }
}

impl ServerCertVerifier for PinnedLeaf {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.leaf.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "the server presented another certificate than its config names".into(),
            ))
        }
    }

    signature_checks!();
}
