//! TLS for probe connections, with libpq's `sslmode` meanings, on rustls (ring).
//!
//! - `disable`: plain TCP.
//! - `allow`, `prefer`: TLS when the server offers it; the certificate is not checked.
//! - `require`: TLS or fail; not checked, unless `sslrootcert` is given, in which case
//!   the chain is checked as with `verify-ca` (libpq does the same).
//! - `verify-ca`: the chain must lead to a root in `sslrootcert`.
//! - `verify-full`: that, and the host name (or IP) must match the certificate.
//!
//! `sslrootcert = "system"` uses the operating system's roots.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

/// What the probe does for a node's `sslmode` and `sslrootcert`.
pub struct Tls {
    pub mode: SslMode,
    pub connector: Option<MakeRustlsConnect>,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Builds the probe's TLS setup; an error names what is wrong (for `misconfigured`).
pub fn for_node(sslmode: Option<&str>, rootcert: Option<&str>) -> Result<Tls, String> {
    let mode = sslmode.unwrap_or("prefer");
    let (pg_mode, verify) = match mode {
        "disable" => {
            return Ok(Tls {
                mode: SslMode::Disable,
                connector: None,
            })
        }
        "allow" | "prefer" => (SslMode::Prefer, Verify::Nothing),
        "require" if rootcert.is_none() => (SslMode::Require, Verify::Nothing),
        "require" | "verify-ca" => (SslMode::Require, Verify::Chain),
        "verify-full" => (SslMode::Require, Verify::Full),
        other => return Err(format!("unknown sslmode {other:?}")),
    };
    let verifier: Arc<dyn ServerCertVerifier> = match verify {
        Verify::Nothing => Arc::new(Relaxed {
            chain: None,
            provider: provider(),
        }),
        Verify::Chain | Verify::Full => {
            let Some(path) = rootcert else {
                return Err(format!(
                    "sslmode {mode:?} needs OPTIONS[\"sslrootcert\"] (a PEM file, or \"system\")"
                ));
            };
            let roots = Arc::new(load_roots(path)?);
            let inner = WebPkiServerVerifier::builder_with_provider(roots, provider())
                .build()
                .map_err(|e| format!("sslrootcert {path:?}: {e}"))?;
            if matches!(verify, Verify::Full) {
                inner
            } else {
                Arc::new(Relaxed {
                    chain: Some(inner),
                    provider: provider(),
                })
            }
        }
    };
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Tls {
        mode: pg_mode,
        connector: Some(MakeRustlsConnect::new(config)),
    })
}

enum Verify {
    Nothing,
    Chain,
    Full,
}

fn load_roots(path: &str) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    if path == "system" {
        let found = rustls_native_certs::load_native_certs();
        for cert in found.certs {
            let _ = roots.add(cert);
        }
    } else {
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("sslrootcert {path:?}: {e}"))?;
        for cert in certs {
            let cert = cert.map_err(|e| format!("sslrootcert {path:?}: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("sslrootcert {path:?}: {e}"))?;
        }
    }
    if roots.is_empty() {
        return Err(format!("sslrootcert {path:?} holds no certificate"));
    }
    Ok(roots)
}

/// The two checks libpq makes that rustls's WebPKI verifier does not offer:
/// `require` without a root (encrypt, check nothing: `chain` is None) and
/// `verify-ca` (check the chain, not the name). Handshake signatures are always
/// verified with the provider's algorithms.
#[derive(Debug)]
struct Relaxed {
    chain: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Relaxed {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_map_to_libpq_meanings() {
        assert!(for_node(Some("disable"), None).unwrap().connector.is_none());
        let t = for_node(Some("prefer"), None).unwrap();
        assert!(t.connector.is_some() && t.mode == SslMode::Prefer);
        let t = for_node(None, None).unwrap();
        assert!(t.mode == SslMode::Prefer);
        let t = for_node(Some("require"), None).unwrap();
        assert!(t.connector.is_some() && t.mode == SslMode::Require);
    }

    #[test]
    fn verification_needs_a_root_and_names_the_problem() {
        let e = for_node(Some("verify-full"), None).err().unwrap();
        assert!(e.contains("sslrootcert"), "{e}");
        let e = for_node(Some("verify-ca"), Some("/nonexistent/root.crt"))
            .err()
            .unwrap();
        assert!(e.contains("/nonexistent/root.crt"), "{e}");
        let e = for_node(Some("bogus"), None).err().unwrap();
        assert!(e.contains("bogus"), "{e}");
    }
}
