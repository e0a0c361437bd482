//! The management path over TLS: what a client trusts ([`ClientTls`]), the
//! client's TLS stream ([`TlsStream`]), and the EMGs of every refusal
//! (unknown peer, expired or wrong certificate, plaintext offered to a TLS
//! listener), made here so the agent and its clients word them alike.
//!
//! ```text
//! client                                   agent (TCP, has an identity)
//! connect ──────────── TCP ───────────────▶ first byte: 0x16 TLS, else plaintext → refused (0x1E)
//! TLS 1.3 handshake ◀═════════════════════▶ [client certificate: agents only]
//! check the agent's certificate             check the client's, if it sent one:
//!   (trusted_ca / pinned fingerprint)         trusted → authenticated as that peer agent
//!   refused → EMG, nothing sent               refused → one EMG line (0x1B/0x1C/0x1D), closed
//!                                           greeting ──▶ (token login as before, for clients)
//! ```
//!
//! A client without TLS settings speaks plaintext on TCP: it sends one
//! blank line first (ignored by a plaintext agent) so that a TLS-only
//! agent, which waits for a ClientHello, can answer it with its refusal.

use super::cause;
use crate::emg::{Emg, Module, phase};
use crate::transport::identity::{
    AgentIdentity, CertificateDer, Fingerprint, Refusal, Trust, show_time,
};
use crate::transport::peer_tls;
use rustls::{ClientConfig, ClientConnection, StreamOwned};
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

/// How a client speaks TLS to agents: whom it trusts, and (an agent) the
/// certificate it presents.
#[derive(Clone, Debug)]
pub struct ClientTls {
    config: Arc<ClientConfig>,
    /// Whom the client trusts.
    pub trust: Trust,
}

impl ClientTls {
    /// A client (moverctl, the console) that trusts `trust` and presents no
    /// certificate.
    pub fn client(trust: Trust) -> Result<ClientTls, Emg> {
        let config = peer_tls::client_config(None).map_err(tls_setup)?;
        Ok(ClientTls { config, trust })
    }

    /// An agent calling its peers: presents `identity`.
    pub fn agent(identity: &AgentIdentity, trust: Trust) -> Result<ClientTls, Emg> {
        let config = peer_tls::client_config(Some(identity)).map_err(tls_setup)?;
        Ok(ClientTls { config, trust })
    }

    /// From a CA certificate file and/or pinned fingerprints (none: `None`).
    pub fn from_options(ca: Option<&Path>, pins: &[Fingerprint]) -> Result<Option<Self>, Emg> {
        Trust::configure(ca, pins)?
            .map(ClientTls::client)
            .transpose()
    }

    /// Connects TLS over `tcp`, and checks the agent's certificate before
    /// anything is sent; the agent's key fingerprint and certificate (for
    /// [`ClientTls::check_name`] once the agent has said its name).
    pub fn handshake(
        &self,
        tcp: TcpStream,
        module: Module,
        address: &str,
    ) -> Result<(TlsStream, Fingerprint, CertificateDer<'static>), Emg> {
        let failed = |m: String| connection_error(module, address, m);
        let conn = peer_tls::client(&self.config).map_err(|e| failed(e.to_string()))?;
        let mut s = StreamOwned::new(conn, tcp);
        while s.conn.is_handshaking() {
            if let Err(e) = s.conn.complete_io(&mut s.sock) {
                return Err(handshake_failed(module, address, &e));
            }
        }
        let chain = s.conn.peer_certificates().unwrap_or_default();
        let fingerprint = self
            .trust
            .check(chain, crate::transport::identity::now())
            .map_err(|r| refusal(module, &format!("the agent at {address}"), &r, &self.trust))?;
        let end = chain[0].clone().into_owned();
        let tcp = s.sock.try_clone().map_err(|e| failed(e.to_string()))?;
        Ok((
            TlsStream {
                tls: Arc::new(Mutex::new(s)),
                tcp,
            },
            fingerprint,
            end,
        ))
    }

    /// Checks that the agent at `address`, whose certificate `end` the
    /// handshake accepted, was issued that certificate for `name`, the
    /// name its greeting gives.
    pub fn check_name(
        &self,
        end: &CertificateDer<'_>,
        name: &str,
        module: Module,
        address: &str,
    ) -> Result<(), Emg> {
        self.trust
            .check_name(end, name)
            .map_err(|r| refusal(module, &format!("the agent at {address}"), &r, &self.trust))
    }
}

/// The TLS settings `Client::connect` uses (moverctl sets them from its
/// options once; none: plaintext on TCP).
pub fn default_client_tls() -> Option<&'static ClientTls> {
    DEFAULT.get().and_then(Option::as_ref)
}

/// Sets [`default_client_tls`] (once per process; later calls are ignored).
pub fn set_default_client_tls(tls: Option<ClientTls>) {
    let _ = DEFAULT.set(tls);
}

static DEFAULT: OnceLock<Option<ClientTls>> = OnceLock::new();

/// A client's TLS connection; clones share it (the client reads and
/// writes from one thread, in turn).
#[derive(Debug)]
pub struct TlsStream {
    tls: Arc<Mutex<StreamOwned<ClientConnection, TcpStream>>>,
    /// The socket, for timeouts and shutdown.
    pub tcp: TcpStream,
}

impl TlsStream {
    /// A second handle on the same connection.
    pub fn try_clone(&self) -> io::Result<TlsStream> {
        Ok(TlsStream {
            tls: self.tls.clone(),
            tcp: self.tcp.try_clone()?,
        })
    }
}

impl Read for TlsStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.tls.lock().unwrap().read(buf)
    }
}

impl Write for TlsStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut s = self.tls.lock().unwrap();
        let n = s.write(buf)?;
        s.flush()?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tls.lock().unwrap().flush()
    }
}

fn tls_setup(e: rustls::Error) -> Emg {
    Emg::new(
        Module::Management,
        phase::INFORMATION,
        0x01,
        format!("cannot set up TLS with this identity: {e}"),
        "Check the identity (moverd identity) and make a new one if it is damaged.",
    )
}

fn connection_error(module: Module, address: &str, message: String) -> Emg {
    Emg::new(
        module,
        phase::CONNECT,
        cause::CONNECTION,
        format!("Connection refused (management path, agent {address}): {message}"),
        "Check that moverd runs there and listens on that address (moverd --listen), \
         and that the management network is up; then retry.",
    )
}

fn handshake_failed(module: Module, address: &str, e: &io::Error) -> Emg {
    let inner = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
    match inner {
        Some(rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. }) => {
            Emg::new(
                module,
                phase::CONNECT,
                cause::PLAINTEXT_REFUSED,
                format!(
                    "the agent at {address} does not speak TLS on its management port (it \
                     answered in clear): {e}"
                ),
                "Give that agent an identity (moverd init) so that it listens with TLS, or \
                 connect to it without TLS settings if it is configured \
                 insecure_plaintext_management on a trusted network.",
            )
        }
        Some(rustls::Error::InvalidCertificate(_) | rustls::Error::PeerMisbehaved(_)) => Emg::new(
            module,
            phase::CONNECT,
            cause::WRONG_CERTIFICATE,
            format!("the agent at {address} presented a wrong certificate: {e}"),
            "Check that agent's identity (moverd identity there): its certificate must be \
                 the one made with its key (moverd init).",
        ),
        _ => connection_error(module, address, format!("TLS handshake: {e}")),
    }
}

/// The EMG for a peer's certificate that `trust` refused. `who` names the
/// peer ("the agent at host:port", "the client 10.0.0.2:4711").
pub fn refusal(module: Module, who: &str, r: &Refusal, trust: &Trust) -> Emg {
    let trusted = match trust {
        Trust::Ca { file, .. } => format!("certificates signed by the site CA {}", file.display()),
        Trust::Pinned(keys) => format!("{} pinned key(s) in trusted_peers", keys.len()),
    };
    let (code, message, action) = match r {
        Refusal::Unknown { fingerprint } => (
            cause::UNKNOWN_PEER,
            format!(
                "unknown peer: {who} presents key {fingerprint}, which is not trusted \
                     here (this end trusts {trusted})"
            ),
            format!(
                "If it is one of the site's agents, add {fingerprint} to trusted_peers in \
                     this end's configuration (moverctl: --agent-fingerprint), or sign its \
                     certificate with the site CA (moverd init --ca), and restart moverd."
            ),
        ),
        Refusal::Missing => (
            cause::UNKNOWN_PEER,
            format!("unknown peer: {who} presented no certificate (this end trusts {trusted})"),
            "Give that agent an identity: moverd init, then restart it.".to_string(),
        ),
        Refusal::Expired {
            fingerprint,
            not_after,
            not_before,
            now,
        } => (
            cause::CERT_EXPIRED,
            if now > not_after {
                format!(
                    "expired certificate: {who} presents key {fingerprint} with a \
                         certificate that expired {} (now {})",
                    show_time(*not_after),
                    show_time(*now)
                )
            } else {
                format!(
                    "certificate not yet valid: {who} presents key {fingerprint} with a \
                         certificate valid from {} (now {})",
                    show_time(*not_before),
                    show_time(*now)
                )
            },
            "Renew that agent's certificate (on its host: move agent.key and agent.crt \
             away, moverd init [--ca <site CA dir>], restart moverd, and update the \
             fingerprint wherever it is pinned); check both hosts' clocks (NTP)."
                .to_string(),
        ),
        Refusal::Misnamed {
            fingerprint,
            claimed,
        } => (
            cause::WRONG_CERTIFICATE,
            format!(
                "wrong certificate: {who} introduces itself as '{}' but presents {} with a \
                 certificate the site CA issued for another agent name (this end trusts {trusted})",
                claimed.escape_debug(),
                fingerprint.map_or("a certificate".to_string(), |f| format!("key {f}"))
            ),
            format!(
                "If that agent is '{0}', issue its certificate for that name (on its host: \
                 move agent.key and agent.crt away, moverd init --name {0} --ca <site CA dir>, \
                 restart moverd); otherwise check the address: another agent answers there.",
                claimed.escape_debug()
            ),
        ),
        Refusal::Wrong { fingerprint, why } => (
            cause::WRONG_CERTIFICATE,
            format!(
                "wrong certificate: {who} presents {}: {why} (this end trusts {trusted})",
                fingerprint.map_or("an unreadable certificate".to_string(), |f| format!(
                    "key {f}"
                ))
            ),
            "Issue that agent's certificate from the site CA (moverd init --ca <site CA dir>), \
             or check that trusted_ca names this site's CA certificate (ca.crt)."
                .to_string(),
        ),
    };
    Emg::new(module, phase::CONNECT, code, message, action)
}

/// The agent's refusal of a client that sent plaintext to its TLS listener.
pub fn plaintext_refused(agent: &str, peer: &str) -> Emg {
    Emg::new(
        Module::Management,
        phase::CONNECT,
        cause::PLAINTEXT_REFUSED,
        format!(
            "plaintext offered to a TLS-only listener: agent {agent} serves its management \
             path over TCP with TLS only, and {peer} spoke in clear"
        ),
        "Connect with TLS: give moverctl the agent's CA or fingerprint (--agent-ca / \
         --agent-fingerprint, or MOVER_AGENT_CA / MOVER_AGENT_FINGERPRINT; moverd identity \
         prints it); an agent calling it needs an identity and trust settings (moverd init, \
         trusted_ca or trusted_peers).",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_has_its_cause_the_key_and_an_action() {
        let fp = Fingerprint([3; 32]);
        let trust = Trust::Pinned(vec![Fingerprint([4; 32])]);
        let cases = [
            (
                Refusal::Unknown { fingerprint: fp },
                cause::UNKNOWN_PEER,
                "unknown peer",
            ),
            (Refusal::Missing, cause::UNKNOWN_PEER, "no certificate"),
            (
                Refusal::Expired {
                    fingerprint: fp,
                    not_before: 0,
                    not_after: 10,
                    now: 20,
                },
                cause::CERT_EXPIRED,
                "expired 1970-01-01 00:00:10 UTC",
            ),
            (
                Refusal::Expired {
                    fingerprint: fp,
                    not_before: 30,
                    not_after: 40,
                    now: 20,
                },
                cause::CERT_EXPIRED,
                "not yet valid",
            ),
            (
                Refusal::Misnamed {
                    fingerprint: Some(fp),
                    claimed: "hostB".into(),
                },
                cause::WRONG_CERTIFICATE,
                "introduces itself as 'hostB'",
            ),
            (
                Refusal::Wrong {
                    fingerprint: Some(fp),
                    why: "it is not signed by the site CA".into(),
                },
                cause::WRONG_CERTIFICATE,
                "site CA",
            ),
        ];
        for (r, code, words) in cases {
            let e = refusal(Module::MoverSource, "the agent at h:1", &r, &trust);
            assert_eq!(e.cause, code, "{e}");
            assert_eq!(e.module, Module::MoverSource);
            assert!(e.message.contains(words), "{e}");
            assert!(!e.action.is_empty());
            if r != Refusal::Missing {
                assert!(e.to_string().contains(&fp.to_string()), "{e}");
            }
        }
        let e = plaintext_refused("hostB", "10.0.0.1:5");
        assert_eq!(e.cause, cause::PLAINTEXT_REFUSED);
        assert!(e.action.contains("--agent-fingerprint"), "{e}");
    }
}
