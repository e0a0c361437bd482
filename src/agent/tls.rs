//! The agent's TLS: its identity and trust as its configuration gives them
//! ([`AgentTls::load`]), the server configuration of its TCP management
//! listener, and the client settings it calls its peers with.
//!
//! Secure by default: an agent listening on TCP needs an identity (`moverd
//! init`); without one it refuses to start, unless the configuration says
//! `insecure_plaintext_management` (trusted networks, tests). A Unix socket
//! is served plain either way (its file mode protects it).

use super::config::AgentConfig;
use crate::control::Address;
use crate::control::secure::ClientTls;
use crate::emg::{Emg, Module, phase};
use crate::transport::identity::{self, AgentIdentity, Trust, show_time};
use crate::transport::peer_tls;
use rustls::ServerConfig;
use std::sync::Arc;

/// A certificate this close to its end is logged as a warning at start.
const EXPIRY_WARNING_S: i64 = 30 * 86_400;

/// What an agent with an identity uses.
pub struct AgentTls {
    pub identity: AgentIdentity,
    pub trust: Trust,
    /// The management listener's configuration (TCP only).
    pub server: Arc<ServerConfig>,
    /// How it calls its peers: presenting its certificate.
    pub client: ClientTls,
}

fn no_identity(config: &AgentConfig) -> Emg {
    let dir = config.identity_dir();
    Emg::new(
        Module::Management,
        phase::INFORMATION,
        0x01,
        format!(
            "agent {} has no identity in {} ({} missing): its management path on TCP ({}) is \
             TLS only",
            config.name,
            dir.display(),
            identity::KEY_FILE,
            config.listen
        ),
        format!(
            "Create one: moverd init --dir {} --name {} (prints the fingerprint to give the \
             peers), and set trusted_ca or trusted_peers; or listen on a Unix socket; or, on a \
             trusted network only, set insecure_plaintext_management.",
            dir.display(),
            config.name
        ),
    )
}

impl AgentTls {
    /// The identity and trust `config` names; `None` for an agent without
    /// an identity that may run so (see the module doc).
    pub fn load(config: &AgentConfig) -> Result<Option<AgentTls>, Emg> {
        let dir = config.identity_dir();
        let tcp = matches!(Address::parse(&config.listen), Ok(Address::Tcp(_)));
        if !identity::exists(&dir) {
            if tcp && !config.insecure_plaintext_management {
                return Err(no_identity(config));
            }
            return Ok(None);
        }
        let identity = AgentIdentity::load(&dir)?;
        let now = identity::now();
        if identity.validity.not_after < now {
            log::warn!(
                "this agent's certificate expired {}: peers will refuse it (renew: moverd init)",
                show_time(identity.validity.not_after)
            );
        } else if identity.validity.not_after - now < EXPIRY_WARNING_S {
            log::warn!(
                "this agent's certificate expires {} (renew: moverd init)",
                show_time(identity.validity.not_after)
            );
        }
        let trust = Trust::configure(config.trusted_ca.as_deref(), &config.trusted_peers)?
            .unwrap_or_else(|| {
                log::warn!(
                    "no trusted_ca and no trusted_peers: no agent can call this one, nor \
                         this one another"
                );
                Trust::Pinned(Vec::new())
            });
        let server = peer_tls::server_config(&identity).map_err(|e| {
            Emg::new(
                Module::Management,
                phase::INFORMATION,
                0x01,
                format!(
                    "cannot serve TLS with the identity in {}: {e}",
                    dir.display()
                ),
                "Make a new identity (remove agent.key and agent.crt, moverd init).",
            )
        })?;
        let client = ClientTls::agent(&identity, trust.clone())?;
        log::info!(
            "identity {} ({}), valid until {}; trusting {trust:?}",
            identity.fingerprint,
            dir.display(),
            show_time(identity.validity.not_after)
        );
        Ok(Some(AgentTls {
            identity,
            trust,
            server,
            client,
        }))
    }
}
