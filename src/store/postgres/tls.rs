//! TLS for the PostgreSQL store (rustls), with libpq's `sslmode` meanings:
//!
//! - `disable`, `prefer` (the default): no TLS;
//! - `require`: encrypted; the server's certificate is checked only when
//!   `sslrootcert` names the CA to check it against (as libpq does);
//! - `verify-ca`, `verify-full`: encrypted, the certificate checked against
//!   `sslrootcert` (or the web's root certificates without it), host name
//!   included (both are held to `verify-full`).
//!
//! tokio-postgres reads neither `sslrootcert` nor the two `verify-` modes,
//! so they are taken out of the URL here, before it parses the rest.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::{Error, Result};

/// `url` without what tokio-postgres cannot read, and the TLS it asks for.
pub(super) fn split(url: &str) -> Result<(String, Option<MakeRustlsConnect>)> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), None));
    };
    let (query, fragment) = match query.split_once('#') {
        Some((q, f)) => (q, Some(f)),
        None => (query, None),
    };
    let mut kept = Vec::new();
    let (mut mode, mut root) = (None, None);
    for param in query.split('&').filter(|p| !p.is_empty()) {
        match param.split_once('=') {
            Some(("sslmode", value)) => mode = Some(value.to_owned()),
            Some(("sslrootcert", value)) => root = Some(decode(value)),
            _ => kept.push(param.to_owned()),
        }
    }
    let verify = match mode.as_deref() {
        None | Some("disable" | "prefer") => {
            if root.is_some() {
                return Err(Error::invalid(
                    "storage",
                    "has an sslrootcert, which needs sslmode=require, verify-ca or verify-full",
                ));
            }
            if let Some(mode) = mode {
                kept.push(format!("sslmode={mode}"));
            }
            None
        }
        Some("require") => Some(root.is_some()),
        Some("verify-ca" | "verify-full") => Some(true),
        Some(other) => {
            return Err(Error::invalid(
                "storage",
                format!(
                    "has an sslmode that is not disable, prefer, require, verify-ca or \
                     verify-full: {other:?}"
                ),
            ))
        }
    };
    let tls = match verify {
        None => None,
        Some(verify) => {
            kept.push("sslmode=require".to_owned());
            Some(connector(verify, root.as_deref())?)
        }
    };
    let mut out = base.to_owned();
    if !kept.is_empty() {
        out.push('?');
        out.push_str(&kept.join("&"));
    }
    if let Some(fragment) = fragment {
        out.push('#');
        out.push_str(fragment);
    }
    Ok((out, tls))
}

/// `%XX` escapes of a URL parameter decoded (a path may hold any byte).
fn decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A rustls connector: checking the server against `root` (a PEM file) or
/// the web's roots when `verify`, else encrypting only.
fn connector(verify: bool, root: Option<&str>) -> Result<MakeRustlsConnect> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::invalid("storage", format!("asks for TLS, which failed: {e}")))?;
    let config = if verify {
        let mut roots = rustls::RootCertStore::empty();
        match root {
            Some(path) => {
                let certs = CertificateDer::pem_file_iter(path)
                    .and_then(|certs| certs.collect::<std::result::Result<Vec<_>, _>>())
                    .map_err(|e| {
                        Error::invalid(
                            "storage",
                            format!("has an sslrootcert that cannot be read ({path:?}): {e}"),
                        )
                    })?;
                let (added, _) = roots.add_parsable_certificates(certs);
                if added == 0 {
                    return Err(Error::invalid(
                        "storage",
                        format!("has an sslrootcert with no usable certificate ({path:?})"),
                    ));
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(EncryptOnly(provider)))
            .with_no_client_auth()
    };
    Ok(MakeRustlsConnect::new(config))
}

/// `sslmode=require` without a CA: any certificate is taken (the handshake's
/// signatures are still checked), as libpq does.
#[derive(Debug)]
struct EncryptOnly(Arc<CryptoProvider>);

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
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
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_keeps_what_tokio_postgres_reads() {
        let (url, tls) = split("postgresql://u@h/db?application_name=x").expect("parses");
        assert_eq!(url, "postgresql://u@h/db?application_name=x");
        assert!(tls.is_none());
        let (url, tls) =
            split("postgresql://u@h/db?sslmode=require&connect_timeout=3").expect("parses");
        assert_eq!(url, "postgresql://u@h/db?connect_timeout=3&sslmode=require");
        assert!(tls.is_some());
        let (url, tls) = split("postgresql://u@h/db?sslmode=verify-full").expect("parses");
        assert_eq!(url, "postgresql://u@h/db?sslmode=require");
        assert!(tls.is_some());
    }

    fn err(url: &str) -> String {
        match split(url) {
            Ok(_) => panic!("{url} parsed"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn bad_modes_and_files_are_named() {
        let mode = err("postgresql://h/db?sslmode=allow");
        assert!(mode.contains("sslmode that is not"), "{mode}");
        let file = err("postgresql://h/db?sslmode=require&sslrootcert=/nonexistent.pem");
        assert!(
            file.contains("cannot be read (\"/nonexistent.pem\")"),
            "{file}"
        );
        let alone = err("postgresql://h/db?sslrootcert=/x.pem");
        assert!(alone.contains("which needs sslmode"), "{alone}");
        assert_eq!(decode("%2Ftmp%2Fca.pem"), "/tmp/ca.pem");
    }
}
