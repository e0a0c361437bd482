//! TLS 1.3 for the migration path: the rustls configurations of both ends,
//! the exporter that binds a stream's key proof to its TLS session, and the
//! hand-over of the negotiated keys to [`super::record`].
//!
//! What authenticates a stream is the migration's one-time key, not a
//! certificate: the key reached both agents over their authenticated
//! management connection, and inside TLS each end proves it holds it with
//! an HMAC over the session's exporter (`handshake`, version 2). A machine
//! in the middle terminates two TLS sessions with two different exporters,
//! so it can neither relay a proof nor forge one, and the source sends no
//! guest byte before the destination's proof checks out. The destination's
//! certificate is therefore a throwaway one, generated once per process, and
//! the source accepts any certificate whose key signs the handshake.
//!
//! Cipher suites: TLS 1.3 only, `TLS13_AES_128_GCM_SHA256` first (AES-GCM
//! with AES-NI/VAES through aws-lc-rs; 128-bit keys are ~30% cheaper than
//! 256 and ample for keys that live one migration), then
//! `TLS13_AES_256_GCM_SHA384`. No session tickets, no resumption, no early
//! data: every stream is a full handshake with fresh keys.

use super::peer_tls::SignatureOnly;
pub use super::provider::provider;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{
    CipherSuite, ClientConfig, ClientConnection, Connection, ConnectionCommon, ServerConfig,
    ServerConnection,
};
use std::sync::{Arc, OnceLock};

/// The exporter label (RFC 8446 §7.5) whose output binds a stream's key
/// proofs to its TLS session.
pub const EXPORTER_LABEL: &[u8] = b"EXPORTER-lpar-mover-migration-stream";
/// The name the source asks for; the destination's certificate carries it
/// (nothing checks it: see the module doc).
pub const SERVER_NAME: &str = "migration-path.lpar-mover";

/// The destination's configuration: a throwaway self-signed certificate,
/// no client certificate (the key proof authenticates the source), secrets
/// extractable for [`super::record`].
pub fn server_config() -> Result<Arc<ServerConfig>, String> {
    static C: OnceLock<Result<Arc<ServerConfig>, String>> = OnceLock::new();
    C.get_or_init(|| {
        let ck = rcgen::generate_simple_self_signed(vec![SERVER_NAME.to_string()])
            .map_err(|e| format!("generating the migration path certificate: {e}"))?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
        let mut c = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_single_cert(vec![ck.cert.der().clone()], key)
            .map_err(|e| e.to_string())?;
        c.send_tls13_tickets = 0;
        c.max_early_data_size = 0;
        c.enable_secret_extraction = true;
        c.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        Ok(Arc::new(c))
    })
    .clone()
}

/// The source's configuration (see the module doc for why any certificate
/// will do).
pub fn client_config() -> Arc<ClientConfig> {
    static C: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    C.get_or_init(|| {
        let mut c = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("TLS 1.3 is in the provider")
            .dangerous()
            // Any certificate, its key proven by the handshake signature: the
            // one-time key proof inside the session authenticates the peer.
            .with_custom_certificate_verifier(Arc::new(SignatureOnly(provider())))
            .with_no_client_auth();
        c.resumption = rustls::client::Resumption::disabled();
        c.enable_secret_extraction = true;
        Arc::new(c)
    })
    .clone()
}

pub(crate) fn client() -> Result<ClientConnection, rustls::Error> {
    let name = ServerName::try_from(SERVER_NAME).expect("a valid DNS name");
    ClientConnection::new(client_config(), name)
}

pub(crate) fn server() -> Result<ServerConnection, String> {
    ServerConnection::new(server_config()?).map_err(|e| e.to_string())
}

/// The stream's channel binding.
pub(crate) fn exporter<D>(conn: &ConnectionCommon<D>) -> Result<[u8; 32], rustls::Error> {
    conn.export_keying_material([0u8; 32], EXPORTER_LABEL, None)
}

/// The cipher suite's name, for reports.
pub(crate) fn suite_name(conn: &Connection) -> &'static str {
    match conn.negotiated_cipher_suite().map(|s| s.suite()) {
        Some(CipherSuite::TLS13_AES_128_GCM_SHA256) => "TLS13_AES_128_GCM_SHA256",
        Some(CipherSuite::TLS13_AES_256_GCM_SHA384) => "TLS13_AES_256_GCM_SHA384",
        _ => "TLS 1.3",
    }
}
