//! Loading PEM material and building rustls server configs and reqwest clients with client certificates.

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}: {message}")]
    Pem { path: String, message: String },
    #[error("TLS setup: {0}")]
    Setup(String),
}

pub fn install_crypto_provider() {
    // Ignore the error: it only says a provider is already installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { path: path.display().to_string(), source })
}

pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs: Result<Vec<_>, _> = rustls_pemfile::certs(&mut pem.as_slice()).collect();
    let certs = certs.map_err(|e| TlsError::Pem { path: path.display().to_string(), message: e.to_string() })?;
    if certs.is_empty() {
        return Err(TlsError::Pem { path: path.display().to_string(), message: "no certificate found".into() });
    }
    Ok(certs)
}

pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path)?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| TlsError::Pem { path: path.display().to_string(), message: e.to_string() })?
        .ok_or_else(|| TlsError::Pem { path: path.display().to_string(), message: "no private key found".into() })
}

/// A server config that asks for client certificates and verifies any presented one against `client_ca`.
/// Connections without a certificate are accepted so that the HTTP layer can answer 401, as kube-apiserver does.
pub fn server_config(cert: &Path, key: &Path, client_ca: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for c in load_certs(client_ca)? {
        roots.add(c).map_err(|e| TlsError::Setup(format!("{}: {e}", client_ca.display())))?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsError::Setup(e.to_string()))?;
    let mut cfg = rustls::ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(load_certs(cert)?, load_key(key)?)
        .map_err(|e| TlsError::Setup(format!("{}: {e}", cert.display())))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// An HTTPS client trusting only `ca` and presenting `cert`/`key`.
pub fn client(
    ca: &Path,
    cert: &Path,
    key: &Path,
    timeout: Option<std::time::Duration>,
) -> Result<reqwest::Client, TlsError> {
    let ca_pem = read(ca)?;
    let mut id_pem = read(cert)?;
    id_pem.push(b'\n');
    id_pem.extend(read(key)?);
    let root =
        reqwest::Certificate::from_pem(&ca_pem).map_err(|e| TlsError::Setup(format!("{}: {e}", ca.display())))?;
    let identity = reqwest::Identity::from_pem(&id_pem)
        .map_err(|e| TlsError::Setup(format!("{} / {}: {e}", cert.display(), key.display())))?;
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(root)
        .identity(identity)
        .pool_idle_timeout(std::time::Duration::from_secs(60))
        .connect_timeout(std::time::Duration::from_secs(5));
    if let Some(t) = timeout {
        b = b.timeout(t);
    }
    b.build().map_err(|e| TlsError::Setup(e.to_string()))
}
