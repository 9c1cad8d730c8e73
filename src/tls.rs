//! Certificates: PEM files read into what rustls and Pingora use, checked the way an
//! operator needs (each problem names the file and what is wrong with it, never the key's
//! bytes), and the listener's certificate resolver, which hands every new handshake the
//! certificate stored last, so a renewed certificate is served without restarting the
//! listener or dropping a connection. The config compiler loads and checks the files;
//! `server.rs` builds the listener over a [`CertResolver`] and its watcher stores the
//! certificates it reloads; `upstream` hands a [`CaCerts`] to Pingora's connector.

use std::{fmt, path::Path, sync::Arc};

use arc_swap::ArcSwap;
use aws_lc_rs::digest;
use pingora::{
    protocols::tls::CaType,
    utils::tls::{WrappedX509, parse_x509},
};
use rustls::{
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

/// What is wrong with a certificate and key pair, by file: the config compiler reports a
/// [`CertError::Certificate`] at the certificate's YAML key and the others at the key's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    #[error("{0}")]
    Certificate(String),
    #[error("{0}")]
    Key(String),
    #[error(
        "the private key does not match the certificate (a renewed certificate with the old key?)"
    )]
    Mismatch,
}

/// A certificate chain and its private key, ready to be served. Compared by the bytes of
/// the two files it came from; printed without any key material.
#[derive(Clone)]
pub struct ServerCert {
    key: Arc<CertifiedKey>,
    fingerprint: [u8; 32],
    /// The leaf certificate's notAfter, in seconds since the Unix epoch.
    not_after: i64,
    subject: String,
}

impl ServerCert {
    /// Reads and checks `certificate` (PEM, leaf first, then intermediates) and `key`
    /// (PEM: PKCS#8, PKCS#1 or SEC1; RSA, ECDSA or Ed25519).
    pub fn load(certificate: &Path, key: &Path) -> Result<ServerCert, CertError> {
        let cert_pem = std::fs::read(certificate).map_err(|e| {
            CertError::Certificate(format!("cannot read {}: {e}", certificate.display()))
        })?;
        let key_pem = std::fs::read(key)
            .map_err(|e| CertError::Key(format!("cannot read {}: {e}", key.display())))?;
        Self::from_pem(&cert_pem, &key_pem, certificate, key)
    }

    /// Like [`ServerCert::load`], from the files' bytes; the paths only name them in errors.
    pub fn from_pem(
        cert_pem: &[u8],
        key_pem: &[u8],
        cert_path: &Path,
        key_path: &Path,
    ) -> Result<ServerCert, CertError> {
        let chain = certificates(cert_pem, cert_path).map_err(CertError::Certificate)?;
        let (not_after, subject) = describe(&chain[0]).map_err(|e| {
            CertError::Certificate(format!(
                "{}: the first certificate {e}",
                cert_path.display()
            ))
        })?;
        // The key file's contents never reach a message: only what kind of problem it has.
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| {
            CertError::Key(match e {
                rustls_pki_types::pem::Error::NoItemsFound => format!(
                    "{} holds no PEM private key (BEGIN PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)",
                    key_path.display()
                ),
                _ => format!("{} is not a valid PEM private key", key_path.display()),
            })
        })?;
        let signing_key = rustls::crypto::ring::sign::any_supported_type(&key).map_err(|_| {
            CertError::Key(format!(
                "{}: unsupported or malformed private key (RSA, ECDSA P-256/P-384 or Ed25519 expected)",
                key_path.display()
            ))
        })?;
        let certified = CertifiedKey::new(chain, signing_key);
        match certified.keys_match() {
            Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
            Err(_) => return Err(CertError::Mismatch),
        }
        Ok(ServerCert {
            key: Arc::new(certified),
            fingerprint: fingerprint(cert_pem, key_pem),
            not_after,
            subject,
        })
    }

    /// The leaf certificate's notAfter, in seconds since the Unix epoch.
    pub fn not_after(&self) -> i64 {
        self.not_after
    }

    /// The leaf certificate's subject, for logs.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The certificate chain, leaf first (DER).
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.key.cert
    }

    /// Whether these are the files this certificate was read from (by their bytes).
    pub fn came_from(&self, cert_pem: &[u8], key_pem: &[u8]) -> bool {
        self.fingerprint == fingerprint(cert_pem, key_pem)
    }
}

impl PartialEq for ServerCert {
    fn eq(&self, other: &Self) -> bool {
        self.fingerprint == other.fingerprint
    }
}

impl Eq for ServerCert {}

impl fmt::Debug for ServerCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerCert")
            .field("subject", &self.subject)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

fn fingerprint(cert_pem: &[u8], key_pem: &[u8]) -> [u8; 32] {
    let mut context = digest::Context::new(&digest::SHA256);
    context.update(&(cert_pem.len() as u64).to_be_bytes());
    context.update(cert_pem);
    context.update(key_pem);
    let mut out = [0u8; 32];
    out.copy_from_slice(context.finish().as_ref());
    out
}

/// Every certificate of a PEM file, each checked to be X.509; at least one.
fn certificates(pem: &[u8], path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let mut chain = Vec::new();
    for (index, item) in CertificateDer::pem_slice_iter(pem).enumerate() {
        let cert = item.map_err(|e| format!("{} is not valid PEM: {e}", path.display()))?;
        x509_parser::parse_x509_certificate(&cert).map_err(|_| {
            format!(
                "{}: certificate {} is not a valid X.509 certificate",
                path.display(),
                index + 1
            )
        })?;
        chain.push(cert);
    }
    if chain.is_empty() {
        return Err(format!(
            "{} holds no PEM certificate (BEGIN CERTIFICATE)",
            path.display()
        ));
    }
    Ok(chain)
}

/// The notAfter and subject of a certificate already checked to be X.509.
fn describe(cert: &CertificateDer<'_>) -> Result<(i64, String), String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert)
        .map_err(|_| "is not a valid X.509 certificate".to_owned())?;
    Ok((
        parsed.validity().not_after.timestamp(),
        parsed.subject().to_string(),
    ))
}

/// Trust anchors for verifying an upstream's certificate (a `ca_file`), as DER, each
/// checked to be X.509 when loaded. Compared by content.
#[derive(Clone, PartialEq, Eq)]
pub struct CaCerts(Arc<[Vec<u8>]>);

impl CaCerts {
    /// Reads a PEM file of one or more CA certificates.
    pub fn load(path: &Path) -> Result<CaCerts, String> {
        let pem =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let certs = certificates(&pem, path)?;
        Ok(CaCerts(certs.into_iter().map(|c| c.to_vec()).collect()))
    }

    /// The certificates, DER.
    pub fn der(&self) -> &[Vec<u8>] {
        &self.0
    }

    /// The certificates as Pingora's connector takes a peer's CA list.
    pub fn for_pingora(&self) -> Arc<CaType> {
        // Each was parsed when loaded, so Pingora's parser (which panics on bad DER) only
        // sees valid certificates.
        self.0
            .iter()
            .map(|der| WrappedX509::new(der.clone(), parse_x509))
            .collect()
    }
}

impl fmt::Debug for CaCerts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CaCerts({} certificates)", self.0.len())
    }
}

/// The listener's certificate, swappable while it serves: each handshake takes the
/// certificate stored last (one atomic load); connections already established keep the
/// one they were made with.
#[derive(Debug)]
pub struct CertResolver {
    current: ArcSwap<ServerCert>,
}

impl CertResolver {
    pub fn new(cert: ServerCert) -> Self {
        CertResolver {
            current: ArcSwap::from_pointee(cert),
        }
    }

    /// The certificate new handshakes get.
    pub fn current(&self) -> Arc<ServerCert> {
        self.current.load_full()
    }

    /// Serves `cert` from the next handshake on.
    pub fn store(&self, cert: ServerCert) {
        self.current.store(Arc::new(cert));
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load().key.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(name: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn load(cert: &str, key: &str) -> Result<ServerCert, CertError> {
        ServerCert::from_pem(
            cert.as_bytes(),
            key.as_bytes(),
            Path::new("tls.crt"),
            Path::new("tls.key"),
        )
    }

    #[test]
    fn a_matching_pair_loads() {
        let (cert, key) = pair("gateway.test");
        let loaded = load(&cert, &key).unwrap();
        assert_eq!(loaded.chain().len(), 1);
        assert!(loaded.not_after() > 0);
        assert!(loaded.came_from(cert.as_bytes(), key.as_bytes()));
        assert!(!format!("{loaded:?}").contains("PRIVATE"));
    }

    #[test]
    fn a_key_of_another_certificate_is_a_mismatch() {
        let (cert, _) = pair("a.test");
        let (_, other_key) = pair("b.test");
        assert_eq!(load(&cert, &other_key).unwrap_err(), CertError::Mismatch);
    }

    #[test]
    fn problems_name_the_file_and_never_the_key() {
        let (cert, key) = pair("gateway.test");
        let err = load("not a certificate", &key).unwrap_err();
        assert!(
            matches!(&err, CertError::Certificate(m) if m.contains("tls.crt") && m.contains("no PEM certificate")),
            "{err}"
        );

        let garbled = key.replace("PRIVATE KEY-----\n", "PRIVATE KEY-----\n!!");
        let err = load(&cert, &garbled).unwrap_err();
        let CertError::Key(message) = &err else {
            panic!("{err:?}")
        };
        assert!(message.contains("tls.key"), "{message}");
        let body_line = key.lines().nth(1).unwrap();
        assert!(!message.contains(&body_line[..16]), "{message}");

        // A certificate where the key should be.
        let err = load(&cert, &cert).unwrap_err();
        assert!(
            matches!(&err, CertError::Key(m) if m.contains("no PEM private key")),
            "{err}"
        );
    }

    #[test]
    fn the_resolver_serves_what_was_stored_last() {
        let (cert_a, key_a) = pair("a.test");
        let (cert_b, key_b) = pair("b.test");
        let resolver = CertResolver::new(load(&cert_a, &key_a).unwrap());
        let b = load(&cert_b, &key_b).unwrap();
        resolver.store(b.clone());
        assert_eq!(*resolver.current(), b);
    }
}
