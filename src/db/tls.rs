//! TLS for PostgreSQL connections (rustls), with libpq's `sslmode` semantics:
//! `disable` never encrypts, `allow` tries without TLS first, `prefer` tries
//! TLS first, `require` encrypts without checking the certificate (unless a
//! root certificate file exists: then it behaves as `verify-ca`), `verify-ca`
//! checks that the server certificate chains to `sslrootcert` (not its host
//! name), `verify-full` checks the chain and the host name. Only the
//! certificates in `sslrootcert` (default `~/.postgresql/root.crt`) are
//! trusted, or the system's store with `sslrootcert=system`. A client
//! certificate (`sslcert`/`sslkey`) is offered when configured.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres_rustls::MakeRustlsConnect;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    pub fn parse(s: &str) -> Result<Self, String> {
        Ok(match s {
            "disable" => Self::Disable,
            "allow" => Self::Allow,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            other => {
                return Err(format!(
                "unknown sslmode {other:?}; use disable, allow, prefer, require, verify-ca or verify-full"
            ))
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Allow => "allow",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }

    /// The first mode tokio-postgres is asked for (`allow` starts
    /// unencrypted; the connect loop retries the other way).
    pub fn to_pg(self) -> tokio_postgres::config::SslMode {
        use tokio_postgres::config::SslMode as M;
        match self {
            Self::Disable | Self::Allow => M::Disable,
            Self::Prefer => M::Prefer,
            _ => M::Require,
        }
    }

    pub fn verifies(self) -> bool {
        matches!(self, Self::VerifyCa | Self::VerifyFull)
    }
}

/// Everything TLS needs besides the host name.
#[derive(Debug, Clone)]
pub struct TlsParams {
    pub mode: SslMode,
    /// A PEM file of CA certificates, or `system` for the operating
    /// system's trusted roots.
    pub root_cert: Option<PathBuf>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
}

/// tokio-postgres' TLS connector: rustls, and no TLS (rather than an error)
/// for Unix-socket connections, which have no host name.
#[derive(Clone)]
pub struct MakeTls(MakeRustlsConnect);

type Inner<S> = <MakeRustlsConnect as MakeTlsConnect<S>>::TlsConnect;
type InnerStream<S> = <MakeRustlsConnect as MakeTlsConnect<S>>::Stream;

impl<S> MakeTlsConnect<S> for MakeTls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = InnerStream<S>;
    type TlsConnect = HostTls<S>;
    type Error = rustls::pki_types::InvalidDnsNameError;

    fn make_tls_connect(&mut self, hostname: &str) -> Result<Self::TlsConnect, Self::Error> {
        if hostname.is_empty() {
            return Ok(HostTls(None));
        }
        Ok(HostTls(Some(
            <MakeRustlsConnect as MakeTlsConnect<S>>::make_tls_connect(&mut self.0, hostname)?,
        )))
    }
}

/// The TLS connector for one host (none for a Unix socket).
pub struct HostTls<S>(Option<Inner<S>>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static;

impl<S> TlsConnect<S> for HostTls<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = InnerStream<S>;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Stream, Self::Error>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        match self.0 {
            Some(c) => {
                let fut = c.connect(stream);
                Box::pin(async move { fut.await.map_err(Into::into) })
            }
            None => Box::pin(async { Err("TLS is not used over Unix sockets".into()) }),
        }
    }
}

/// The connector for `mode` and `root_cert` without a client certificate
/// (cancel requests).
pub fn make_tls(mode: SslMode, root_cert: Option<&Path>) -> Result<MakeTls> {
    make_tls_with(&TlsParams {
        mode,
        root_cert: root_cert.map(Path::to_path_buf),
        client_cert: None,
        client_key: None,
    })
}

pub fn make_tls_with(p: &TlsParams) -> Result<MakeTls> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS setup")?;
    let builder = if p.mode.verifies() {
        let roots = Arc::new(load_roots(p.root_cert.as_ref(), p.mode)?);
        let inner = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
            .build()
            .context("TLS setup: certificate verifier")?;
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Verify {
                inner,
                check_name: p.mode == SslMode::VerifyFull,
            }))
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
    };
    let config = match &p.client_cert {
        Some(cert) => {
            let key = p
                .client_key
                .clone()
                .unwrap_or_else(|| cert.with_extension("key"));
            let (chain, key) = load_client_cert(cert, &key)?;
            builder
                .with_client_auth_cert(chain, key)
                .with_context(|| format!("sslcert {}: unusable with sslkey", cert.display()))?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(MakeTls(MakeRustlsConnect::new(config)))
}

/// `sslrootcert=system`: the operating system's trusted roots.
pub fn is_system(path: &Path) -> bool {
    path.as_os_str() == "system"
}

fn load_roots(root: Option<&PathBuf>, mode: SslMode) -> Result<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    match root {
        Some(path) if is_system(path) => {
            let found = rustls_native_certs::load_native_certs();
            if found.certs.is_empty() {
                bail!("sslrootcert=system: no trusted certificates found in the system store (install ca-certificates, or set sslrootcert to a CA file)");
            }
            roots.add_parsable_certificates(found.certs);
        }
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path).map_err(|e| {
                anyhow!(
                    "sslrootcert {}: cannot read it ({e}); sslmode={} needs the CA certificate that signed the server's certificate there",
                    path.display(),
                    mode.as_str()
                )
            })?;
            for cert in certs {
                let cert = cert.map_err(|e| {
                    anyhow!("sslrootcert {}: not a PEM certificate ({e})", path.display())
                })?;
                roots.add(cert).with_context(|| {
                    format!("sslrootcert {}: unusable certificate", path.display())
                })?;
            }
            if roots.is_empty() {
                bail!("sslrootcert {}: holds no certificate", path.display());
            }
        }
        None => bail!(
            "sslmode={} needs the CA certificate to trust: put it in ~/.postgresql/root.crt, or set sslrootcert (PGSSLROOTCERT, postgresql.sslrootcert, or sslrootcert=system for the system's trusted roots)",
            mode.as_str()
        ),
    }
    Ok(roots)
}

fn load_client_cert(
    cert: &Path,
    key: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| anyhow!("sslcert {}: cannot read it ({e})", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow!("sslcert {}: not a PEM certificate ({e})", cert.display()))?;
    if chain.is_empty() {
        bail!("sslcert {}: holds no certificate", cert.display());
    }
    {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let meta = std::fs::metadata(key)
            .map_err(|e| anyhow!("sslkey {}: cannot read it ({e})", key.display()))?;
        let mode = meta.permissions().mode();
        // libpq: u=rw (0600) or less, or u=rw,g=r (0640) when owned by root.
        let allowed = if meta.uid() == 0 { 0o037 } else { 0o077 };
        if mode & allowed != 0 {
            bail!(
                "sslkey {}: has group or world access; permissions should be u=rw (0600) or less (chmod 0600 {})",
                key.display(),
                key.display()
            );
        }
    }
    let key_der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| anyhow!("sslkey {}: not a PEM private key ({e})", key.display()))?;
    Ok((chain, key_der))
}

/// `verify-ca` / `verify-full`: the chain must lead to a trusted root;
/// the host name is checked only for `verify-full`.
#[derive(Debug)]
struct Verify {
    inner: Arc<WebPkiServerVerifier>,
    check_name: bool,
}

impl ServerCertVerifier for Verify {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // The name is checked after the chain, so a name error means the
        // chain is good.
        match self
            .inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check_name => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// libpq's `require`: encrypted, certificate not checked.
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
