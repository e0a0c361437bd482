//! The agents a console talks to: one link per `--agent`, and the hub their
//! relayed events go to. What the routes' handlers and the policy runner
//! share.

use super::error::{ApiError, console_error};
use super::links::Link;
use super::relay::Hub;
use std::sync::Arc;

/// The console's agents and their events.
pub struct Agents {
    /// One link per `--agent`, in the order given.
    pub links: Vec<Arc<Link>>,
    /// The relayed events.
    pub hub: Arc<Hub>,
}

impl Agents {
    /// Links to `agents` (address, checked, and its token).
    pub fn new(agents: &[(String, String)]) -> Agents {
        Agents {
            links: agents
                .iter()
                .map(|(a, token)| Arc::new(Link::new(a.clone(), token.clone())))
                .collect(),
            hub: Arc::new(Hub::default()),
        }
    }

    /// Starts one event relay thread per agent.
    pub fn start_relays(&self) {
        for link in &self.links {
            let (link, hub) = (link.clone(), self.hub.clone());
            std::thread::Builder::new()
                .name(format!("relay {}", link.address))
                .spawn(move || super::relay::relay(link, hub))
                .expect("a thread for the relay");
        }
    }

    /// The link to the agent `address` names; only `--agent` ones.
    pub fn link(&self, address: &str) -> Result<&Arc<Link>, ApiError> {
        self.links
            .iter()
            .find(|l| l.address == address)
            .ok_or_else(|| {
                ApiError(
                    404,
                    console_error(
                        format!("'{address}' is not an agent of this console"),
                        "Choose one of the agents the console was started with (moverctl console --agent).",
                    ),
                )
            })
    }
}
