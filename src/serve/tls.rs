//! TLS for `cdpctl serve` when `serve.tls_cert` and `serve.tls_key` name PEM
//! files (rustls, ring provider, HTTP/1.1 by ALPN).

use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// Builds the acceptor from a certificate chain and its private key.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor> {
    let read = |p: &Path, what: &str| {
        std::fs::read(p).with_context(|| {
            format!(
                "cannot read the TLS {what} {} (serve.tls_{what}); check the path and its permissions",
                p.display()
            )
        })
    };
    let cert_pem = read(cert, "cert")?;
    let key_pem = read(key, "key")?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| {
            anyhow!(
                "serve.tls_cert {}: not a PEM certificate chain ({e})",
                cert.display()
            )
        })?;
    if chain.is_empty() {
        bail!(
            "serve.tls_cert {}: no CERTIFICATE block found; give the server certificate (and its intermediates) in PEM",
            cert.display()
        );
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        anyhow!(
            "serve.tls_key {}: no PEM private key found ({e}); give a PKCS#8, PKCS#1 or SEC1 key in PEM",
            key.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| {
            anyhow!(
                "serve.tls_cert/serve.tls_key: the key does not fit the certificate or is unsupported ({e})"
            )
        })?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(cfg)))
}
