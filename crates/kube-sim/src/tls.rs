//! reqwest clients with client certificates (the node agents' connection to the API server).

use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}: {source}")]
    Read { path: String, source: std::io::Error },
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
