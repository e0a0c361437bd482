//! The console's connections to its agents, for requests.
//!
//! Each agent (an address given with `--agent`) has a [`Link`]: a few idle
//! authenticated connections kept for the next request ([`MAX_IDLE`]), a
//! new one opened when none is idle, so a slow request (a `validate`
//! measures the path for seconds) does not hold up the others. A kept
//! connection that the agent closed meanwhile (it restarted) is detected on
//! use and the request goes once more over a fresh one: the old agent is
//! gone, so it cannot have acted on it. Events that arrive on these
//! connections are dropped: the relay ([`super::relay`]) has its own.

use crate::control::{Address, Client, Greeting, Request, cause};
use crate::emg::{Emg, Module};
use std::sync::Mutex;
use std::time::Duration;

/// Idle connections kept per agent.
pub const MAX_IDLE: usize = 2;

/// One agent as the console reaches it.
pub struct Link {
    /// Its address as given (`--agent`); the API names agents by it.
    pub address: String,
    parsed: Address,
    token: String,
    idle: Mutex<Vec<Client>>,
}

impl Link {
    /// A link to the agent at `address` (checked by the caller).
    pub fn new(address: String, token: String) -> Link {
        let parsed = Address::parse(&address).expect("checked when the console started");
        Link {
            address,
            parsed,
            token,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// A new authenticated connection.
    pub fn open(&self) -> Result<Client, Emg> {
        Client::open(&self.parsed, &self.token, Module::Client)
    }

    /// Sends `request` and returns its typed reply, with the agent's
    /// greeting (its name and build).
    pub fn request<R: Request + Clone>(&self, request: R) -> Result<(R::Reply, Greeting), Emg> {
        let kept = self.idle.lock().unwrap().pop();
        let (mut client, reused) = match kept {
            Some(c) => (c, true),
            None => (self.open()?, false),
        };
        let mut result = client.request(request.clone());
        if reused && matches!(&result, Err(e) if lost(e)) {
            client = self.open()?;
            result = client.request(request);
        }
        let greeting = client.greeting().clone();
        match result {
            Err(e) if lost(&e) => Err(e),
            other => {
                // Events that came with the reply: the relay has them.
                while let Ok(Some(_)) = client.next_event(Duration::ZERO) {}
                let mut idle = self.idle.lock().unwrap();
                if idle.len() < MAX_IDLE {
                    idle.push(client);
                }
                other.map(|r| (r, greeting))
            }
        }
    }
}

/// Whether `e` says the connection itself failed (not the agent refusing).
pub fn lost(e: &Emg) -> bool {
    e.module == Module::Client && e.cause == cause::CONNECTION
}
