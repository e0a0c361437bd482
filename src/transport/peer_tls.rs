//! TLS 1.3 for the management path over TCP: the agent's server
//! configuration and a client's, both built on an [`AgentIdentity`].
//!
//! The handshake accepts any certificate whose key signed it; whether that
//! certificate is *trusted* is decided right after the handshake, by
//! [`Trust::check`](super::identity::Trust::check), before either end sends
//! or accepts anything else. That way the refusal says why (unknown key,
//! expired, not signed by the site CA) in an EMG instead of a bare TLS
//! alert. The server asks for a client certificate without requiring one:
//! an agent presents its own and is authenticated by it; `moverctl` and
//! the console present none and log in with a token.

use super::identity::AgentIdentity;
use super::provider::provider;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{ClientConfig, DigitallySignedStruct, DistinguishedName, ServerConfig};
use rustls::{ServerConnection, SignatureScheme};
use std::sync::Arc;

/// The name a client asks for (nothing checks it: certificates are
/// checked by key, see the module doc).
pub const SERVER_NAME: &str = "management.lpar-mover";

/// The first byte of a TLS handshake record: a listener that reads anything
/// else was offered plaintext.
pub const HANDSHAKE_RECORD: u8 = 0x16;

/// The agent's server configuration: its certificate, a client certificate
/// asked for but optional.
pub fn server_config(identity: &AgentIdentity) -> Result<Arc<ServerConfig>, rustls::Error> {
    let mut c = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(Arc::new(SignatureOnly(provider())))
        .with_single_cert(vec![identity.cert.clone()], identity.key.clone_key())?;
    c.send_tls13_tickets = 0;
    c.max_early_data_size = 0;
    c.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    Ok(Arc::new(c))
}

/// A server connection for one accepted socket.
pub fn server(config: &Arc<ServerConfig>) -> Result<ServerConnection, rustls::Error> {
    ServerConnection::new(config.clone())
}

/// A client's configuration: with the agent's identity (an agent calling
/// a peer), or without (moverctl, the console).
pub fn client_config(identity: Option<&AgentIdentity>) -> Result<Arc<ClientConfig>, rustls::Error> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(SignatureOnly(provider())));
    let mut c = match identity {
        Some(id) => builder.with_client_auth_cert(vec![id.cert.clone()], id.key.clone_key())?,
        None => builder.with_no_client_auth(),
    };
    c.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(c))
}

/// A client connection to an agent.
pub fn client(config: &Arc<ClientConfig>) -> Result<rustls::ClientConnection, rustls::Error> {
    let name = ServerName::try_from(SERVER_NAME).expect("a valid DNS name");
    rustls::ClientConnection::new(config.clone(), name)
}

/// Checks the handshake signature against the presented certificate's
/// key; trust is checked after the handshake (see the module doc).
#[derive(Debug)]
pub(super) struct SignatureOnly(pub(super) Arc<CryptoProvider>);

impl SignatureOnly {
    fn tls13(
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

    fn tls12(&self) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls13RequiredForQuic,
        ))
    }
}

impl ServerCertVerifier for SignatureOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls12()
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

impl ClientCertVerifier for SignatureOnly {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls12()
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
