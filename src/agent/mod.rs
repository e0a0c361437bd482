//! The host: the LPAR inventory, the busy rules, migrations in both
//! directions and the management server that exposes them.
//!
//! ```text
//! server (one mio loop; a thread per request) ── Command ──▶ Agent::handle
//!                                                 ├ lpar-*  : inventory (+ busy rules), under one lock; lpar-modify: modify.rs
//!                                                 ├ backup / restore: backup.rs; wwn-status / rollback-wwn: wwn.rs
//!                                                 ├ migrate : migration::start_source  ─ thread ─▶ destination agent
//!                                                 ├ prepare-incoming: migration::prepare_incoming ─ thread
//!                                                 ├ status / extend / cancel: the migration table
//!                                                 └ history / history-record / host-resources / host-info: history.rs
//! migration threads ── Event ──▶ EventBus ──▶ every authenticated connection
//! ```

pub mod backup;
pub mod busy;
pub mod config;
pub mod connectivity;
pub mod console;
#[cfg(feature = "fault-injection")]
mod faults;
pub mod history;
pub mod inventory;
pub mod journal;
pub mod migration;
pub mod modify;
pub mod panics;
pub mod recovery;
pub mod server;
pub mod shutdown;
pub mod tls;
pub mod validation;
pub mod wwn;

use crate::build_identity::BuildIdentity;
use crate::control::{
    Address, Client, Command, Event, Greeting, LparState, PROTOCOL_VERSION, Request, cause,
    protocol_error, reply, request,
};
use crate::emg::{Emg, Module, phase};
use crate::partition::LparConfig;
use crate::state::UsbAssignment;
use busy::Operation;
use config::{AgentConfig, ServeArgs};
use crossbeam::channel::{Sender, TrySendError};
use inventory::Inventory;
use migration::Migration;
use serde_json::Value;

/// Finished migrations an agent keeps for `status`; older ones are dropped.
pub const FINISHED_KEPT: usize = 64;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// One running agent.
pub struct Agent {
    pub config: AgentConfig,
    token: String,
    pub inventory: Mutex<Inventory>,
    migrations: Mutex<BTreeMap<u64, Arc<Migration>>>,
    pub events: EventBus,
    /// Its identity, trust and TLS settings, when it has an identity.
    pub tls: Option<tls::AgentTls>,
    next_id: AtomicU64,
    /// The management address this agent listens on, once bound (sent to
    /// destinations so that `moverctl return` can find the way back).
    pub advertised: std::sync::OnceLock<String>,
}

/// Starts the agent from `args` and serves until the process ends.
pub fn run(args: &ServeArgs) -> Result<(), Emg> {
    let config = AgentConfig::load(args)?;
    let token = config.read_token()?;
    let tls = tls::AgentTls::load(&config)?;
    let backend = crate::partition::host::open_backend(&config.backend, &config.lpar_root())
        .map_err(|e| e.emg())?;
    log::info!(
        "backend {}: LPARs under {}",
        backend.kind(),
        backend.root().display()
    );
    let (mut inventory, notes) = Inventory::open(&config.name, &config.state_dir, backend)?;
    for n in notes {
        log::info!("{n}");
    }
    recovery::mark_unfinished(&config.state_dir, &mut inventory);
    let agent = Arc::new(Agent {
        config,
        token,
        inventory: Mutex::new(inventory),
        migrations: Mutex::new(BTreeMap::new()),
        events: EventBus::default(),
        tls,
        next_id: AtomicU64::new(1),
        advertised: std::sync::OnceLock::new(),
    });
    server::serve(agent)
}

/// A command's reply as the server sends it; the type parameter makes the
/// compiler check that a handler returns the command's reply type.
pub(crate) fn answer<R: Request>(reply: Result<R::Reply, Emg>) -> Result<Value, Emg> {
    reply.map(|r| serde_json::to_value(r).expect("replies serialise"))
}

impl Agent {
    pub fn greeting(&self) -> Greeting {
        Greeting {
            agent: self.config.name.clone(),
            build: BuildIdentity::current(),
            protocol: PROTOCOL_VERSION,
        }
    }

    /// Compares `presented` with the token in constant time.
    pub fn token_matches(&self, presented: &str) -> bool {
        constant_time_eq::constant_time_eq(presented.as_bytes(), self.token.as_bytes())
    }

    /// An authenticated connection to the agent at `address`, acting as
    /// `module`. Over TCP with an identity: mutual TLS, each end checking
    /// the other's certificate against its trust, and no token. Otherwise
    /// (a Unix socket, or `insecure_plaintext_management` without an
    /// identity) its greeting is read first: the token goes only to an
    /// agent named in the configuration's `peers`; any other is refused
    /// before it learns anything.
    pub(crate) fn open_peer(&self, address: &Address, module: Module) -> Result<Client, Emg> {
        let tls = match (&self.tls, address) {
            (Some(t), Address::Tcp(_)) => Some(&t.client),
            (None, Address::Tcp(_)) if !self.config.insecure_plaintext_management => {
                return Err(Emg::new(
                    module,
                    phase::CONNECT,
                    cause::UNKNOWN_PEER,
                    format!(
                        "host {} has no identity to present to the agent at {address}",
                        self.config.name
                    ),
                    "Create this agent's identity (moverd init, and trusted_ca or \
                     trusted_peers) and restart moverd; or, on a trusted network only, set \
                     insecure_plaintext_management to call peers in clear with the token.",
                ));
            }
            _ => None,
        };
        let mut client = Client::connect_with(address, module, tls)?;
        if client.peer_key().is_some() {
            // Both certificates checked: the destination knows who we are.
            return Ok(client);
        }
        let name = client.greeting().agent.clone();
        if !self.config.peers.contains(&name) {
            return Err(Emg::new(
                module,
                phase::CONNECT,
                cause::UNKNOWN_PEER,
                format!(
                    "the agent at {address} introduces itself as '{}', which is not a peer of \
                     host {} (peers: {:?}): its token was not sent",
                    name.escape_debug(),
                    self.config.name,
                    self.config.peers
                ),
                format!(
                    "Check the address; if '{}' is one of this site's agents, add it to `peers` \
                     in this agent's configuration (or moverd --peer) and restart moverd.",
                    name.escape_debug()
                ),
            ));
        }
        client.authenticate(&self.token)?;
        Ok(client)
    }

    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Serves one authenticated request: each command's handler returns
    /// its reply type (`Request::Reply`), which [`answer`] checks.
    pub fn handle(self: &Arc<Self>, command: Command) -> Result<Value, Emg> {
        command.check_bounds()?;
        match command {
            Command::Authenticate { .. } => answer::<request::Authenticate>(Ok(reply::Empty {})),
            Command::LparCreate {
                name,
                vcpus,
                memory_bytes,
                program,
                nics,
                fc_ports,
                kernel,
                cmdline,
                usb,
                service_ratio,
                memory_backing,
            } => answer::<request::LparCreate>(self.lpar_create(LparConfig {
                name,
                number: 0,
                vcpus,
                memory_bytes,
                program,
                nics,
                fc_ports,
                kernel,
                cmdline,
                usb: usb.unwrap_or(UsbAssignment::Unassigned),
                service_ratio: service_ratio.unwrap_or(crate::partition::DEFAULT_SERVICE_RATIO),
                memory_backing: memory_backing.unwrap_or_default(),
            })),
            Command::LparConsole { name, offset } => {
                let inv = self.inventory.lock().unwrap();
                answer::<request::LparConsole>(console::read(
                    &inv,
                    &self.config.name,
                    &name,
                    offset,
                ))
            }
            Command::LparList {} => {
                let inv = self.inventory.lock().unwrap();
                let lpars: Result<Vec<_>, Emg> =
                    inv.names().iter().map(|n| inv.describe(n)).collect();
                answer::<request::LparList>(lpars.map(|lpars| reply::LparList {
                    host: self.config.name.clone(),
                    lpars,
                }))
            }
            Command::LparShow { name } => {
                answer::<request::LparShow>(self.inventory.lock().unwrap().describe(&name))
            }
            Command::LparActivate { name } => {
                answer::<request::LparActivate>(self.lpar_op(&name, Operation::Activate))
            }
            Command::LparDeactivate { name } => {
                answer::<request::LparDeactivate>(self.lpar_op(&name, Operation::Deactivate))
            }
            Command::LparDelete { name } => answer::<request::LparDelete>(self.lpar_delete(name)),
            Command::Migrate {
                lpar,
                to,
                max_suspend_ms,
                bandwidth,
                streams,
                timeout_s,
                path,
                insecure_plaintext,
            } => answer::<request::Migrate>(migration::start_source(
                self,
                migration::SourceRequest {
                    lpar,
                    to,
                    max_suspend_ms,
                    bandwidth,
                    streams,
                    timeout_s,
                    path,
                    insecure_plaintext,
                },
            )),
            Command::Status { id } => answer::<request::Status>(match id {
                Some(id) => Ok(reply::Status::One(Box::new(self.migration(id)?.status()))),
                None => {
                    let migrations = self
                        .migrations
                        .lock()
                        .unwrap()
                        .values()
                        .map(|m| reply::MigrationStatus {
                            // Summaries only: reports are per migration,
                            // and a long list must stay under MAX_LINE.
                            report: None,
                            ..m.status()
                        })
                        .collect();
                    Ok(reply::Status::All { migrations })
                }
            }),
            Command::Extend { id, seconds } => {
                answer::<request::Extend>(self.migration(id)?.extend(seconds))
            }
            Command::Cancel { id } => answer::<request::Cancel>(self.migration(id)?.cancel()),
            Command::PrepareIncoming {
                config,
                streams,
                path,
                source_agent,
                source_migration,
                source_address,
                history_key,
                history,
            } => {
                let reply = migration::prepare_incoming(
                    self,
                    config,
                    streams,
                    path.as_deref(),
                    &source_agent,
                    source_migration,
                )?;
                self.note_incoming(
                    &reply,
                    history::Incoming {
                        source_agent,
                        source_migration,
                        source_address,
                        key: history_key,
                        imported: history,
                    },
                );
                answer::<request::PrepareIncoming>(Ok(reply))
            }
            Command::AbandonIncoming {
                migration,
                source_agent,
                reason,
            } => answer::<request::AbandonIncoming>(migration::abandon_incoming(
                self,
                migration,
                &source_agent,
                &reason,
            )),
            Command::Recover { lpar, peer } => {
                answer::<request::Recover>(recovery::recover(self, &lpar, peer.as_deref()))
            }
            Command::JournalRead { lpar } => {
                answer::<request::JournalRead>(recovery::journal_read(self, &lpar))
            }
            Command::RecoverResolve {
                lpar,
                keep,
                leave_deactivated,
                journal,
            } => answer::<request::RecoverResolve>(recovery::resolve_request(
                self,
                &lpar,
                keep,
                leave_deactivated,
                journal,
            )),
            Command::RollbackWwn { lpar } => {
                answer::<request::RollbackWwn>(wwn::rollback(self, &lpar))
            }
            Command::LparModify {
                name,
                vcpus,
                memory_bytes,
                program,
                nics,
                fc_ports,
                usb,
                service_ratio,
            } => answer::<request::LparModify>(modify::modify(
                self,
                &name,
                modify::Changes {
                    vcpus,
                    memory_bytes,
                    program,
                    nics,
                    fc_ports,
                    usb,
                    service_ratio,
                },
            )),
            Command::WwnStatus {} => answer::<request::WwnStatus>(wwn::status_list(self)),
            Command::Backup {} => answer::<request::Backup>(backup::backup(self)),
            Command::Restore { backup } => {
                answer::<request::Restore>(backup::restore(self, backup))
            }
            Command::MigrateShutdown {
                lpar,
                to,
                activate_destination,
                shutdown_timeout_s,
            } => answer::<request::MigrateShutdown>(shutdown::start(
                self,
                &lpar,
                &to,
                activate_destination,
                shutdown_timeout_s,
            )),
            Command::ReceiveShutdown {
                config,
                device_state,
                activate,
                source_agent,
                source_migration,
                source_address,
                history_key,
                history,
            } => answer::<request::ReceiveShutdown>(shutdown::receive(
                self,
                config,
                &device_state,
                activate,
                history::Incoming {
                    source_agent,
                    source_migration,
                    source_address,
                    key: history_key,
                    imported: history,
                },
            )),
            Command::History { lpar } => {
                answer::<request::History>(self.history_of(lpar.as_deref()))
            }
            Command::HostResources {} => {
                answer::<request::HostResources>(Ok(self.host_resources()))
            }
            Command::HostInfo {} => answer::<request::HostInfo>(Ok(self.host_info())),
            Command::HistoryRecord { records } => {
                answer::<request::HistoryRecord>(self.keep_records(records))
            }
            c @ (Command::Validate { .. }
            | Command::ConnectivityTest { .. }
            | Command::Rehearse { .. }
            | Command::ValidateIncoming { .. }
            | Command::ConnectivityIncoming { .. }
            | Command::RehearseIncoming { .. }) => validation::handle(self, c),
        }
    }

    fn migration(&self, id: u64) -> Result<Arc<Migration>, Emg> {
        self.migrations
            .lock()
            .unwrap()
            .get(&id)
            .cloned()
            .ok_or_else(|| {
                protocol_error(
                    cause::NO_SUCH_MIGRATION,
                    format!("no migration {id} on host {}", self.config.name),
                    "List the migrations with moverctl status.",
                )
            })
    }

    /// Records a new migration, forgetting the oldest finished ones beyond
    /// [`FINISHED_KEPT`]: an agent that migrates for months must not grow
    /// (the history keeps the record).
    fn register(&self, m: Arc<Migration>) {
        let mut all = self.migrations.lock().unwrap();
        all.insert(m.id, m);
        let finished: Vec<u64> = all
            .values()
            .filter(|m| m.is_finished())
            .map(|m| m.id)
            .collect();
        for id in finished
            .iter()
            .take(finished.len().saturating_sub(FINISHED_KEPT))
        {
            all.remove(id);
        }
    }

    /// Checks that the host has room for `config` beside what it holds.
    fn check_resources(
        &self,
        inv: &Inventory,
        config: &LparConfig,
        module: Module,
    ) -> Result<(), Emg> {
        let r = &self.config.resources;
        let free = r.memory.saturating_sub(inv.memory_in_use());
        if config.memory_bytes > free {
            // The manual's MMS Thread `0x00 ******** F00b 03`, op3 0x01.
            return Err(Emg::new(
                Module::Executor,
                0xF00B,
                0x01,
                format!(
                    "There is not enough memory to activate the specified LPAR. \
                     '{}' needs {}, host {} has {} free of {}.",
                    config.name,
                    crate::units::format_size(config.memory_bytes),
                    self.config.name,
                    crate::units::format_size(free),
                    crate::units::format_size(r.memory),
                ),
                "Free memory on that host (deactivate and delete LPARs there) or choose \
                 another host.",
            )
            .reason(0x01));
        }
        if config.vcpus > r.cpus {
            return Err(Emg::new(
                module,
                phase::ACTIVATE,
                0x8000_0001,
                format!(
                    "Could not activate: not enough CPU. '{}' has {} vCPUs, host {} has {} CPUs.",
                    config.name, config.vcpus, self.config.name, r.cpus
                ),
                "Give the LPAR fewer vCPUs or choose a host with more CPUs.",
            ));
        }
        Ok(())
    }

    fn lpar_create(&self, mut config: LparConfig) -> Result<reply::Lpar, Emg> {
        let mut inv = self.inventory.lock().unwrap();
        config.number = inv.free_number();
        console::check_image(&config, inv.backend().kind(), &self.config.name)?;
        self.check_resources(&inv, &config, Module::Management)?;
        let vfc_ids = validation::local_vfc_ids(&self.config, &inv, &config)?;
        inv.define_holding(&config, LparState::Dea, vfc_ids)?;
        log::info!("defined LPAR '{}'", config.name);
        inv.describe(&config.name)
    }

    fn lpar_delete(&self, name: String) -> Result<reply::Deleted, Emg> {
        let mut inv = self.inventory.lock().unwrap();
        busy::check(&name, inv.get(&name)?.state, Operation::Delete)?;
        inv.remove(&name)?;
        log::info!("deleted LPAR '{name}'");
        Ok(reply::Deleted {
            name,
            deleted: true,
        })
    }

    fn lpar_op(&self, name: &str, op: Operation) -> Result<reply::Lpar, Emg> {
        let cancelled = match op {
            Operation::Activate | Operation::Deactivate => self.cancel_migration_of(name)?,
            _ => None,
        };
        let mut inv = self.inventory.lock().unwrap();
        if let (Some(_), Operation::Activate, Ok(e)) = (cancelled, op, inv.get(name))
            && e.state == LparState::Act
        {
            // Reactivated: it runs on here, its migration cancelled.
            return inv.describe(name);
        }
        let state = inv.get(name)?.state;
        busy::check(name, state, op)?;
        // The guest changes only with the inventory: a failed save undoes it.
        match op {
            Operation::Activate => {
                if let Some(max) = self.config.resources.max_active_lpars
                    && state != LparState::Act
                    && inv.active_count() >= max as usize
                {
                    return Err(validation::too_many_active(
                        &self.config.name,
                        inv.active_count(),
                        max,
                    ));
                }
                // Its memory was reserved when the backend created it.
                let l = inv.lpar(name)?;
                l.resume().map_err(|e| e.emg())?;
                if let Err(e) = inv.set_state(name, LparState::Act) {
                    let _ = l.pause();
                    return Err(e);
                }
            }
            Operation::Deactivate => {
                let l = inv.lpar(name).ok();
                let was_running = l.as_ref().is_some_and(|l| l.is_running());
                if let Some(l) = &l {
                    l.pause().map_err(|e| e.emg())?;
                }
                if state == LparState::Act
                    && let Err(e) = inv.set_state(name, LparState::Dea)
                {
                    if let Some(l) = l.filter(|_| was_running) {
                        let _ = l.resume();
                    }
                    return Err(e);
                }
            }
            Operation::Delete
            | Operation::Migrate
            | Operation::MigrateShutdown
            | Operation::Modify => {
                unreachable!("deletions and migrations have their own functions")
            }
        }
        inv.describe(name)
    }

    /// Sends `event` to every subscribed connection.
    pub fn publish(&self, event: &Event) {
        self.events.publish(event);
    }
}

/// Fan-out of events to the connections. Each subscriber has a bounded
/// queue; one that falls that far behind is dropped from the events (it
/// still gets its replies), so a stuck client never blocks a migration.
#[derive(Default)]
pub struct EventBus {
    subscribers: Mutex<Vec<Subscriber>>,
    next: AtomicU64,
}

/// Called after a line is queued for a subscriber: the management server's
/// event loop sleeps in `poll` and must be woken to write it.
pub type Notify = Arc<dyn Fn() + Send + Sync>;

struct Subscriber {
    id: u64,
    tx: Sender<String>,
    notify: Notify,
}

impl EventBus {
    pub fn subscribe(&self, tx: Sender<String>, notify: Notify) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.subscribers
            .lock()
            .unwrap()
            .push(Subscriber { id, tx, notify });
        id
    }

    pub fn unsubscribe(&self, id: u64) {
        self.subscribers.lock().unwrap().retain(|s| s.id != id);
    }

    pub fn publish(&self, event: &Event) {
        let line = event.encode();
        self.subscribers
            .lock()
            .unwrap()
            .retain(|s| match s.tx.try_send(line.clone()) {
                Ok(()) => {
                    (s.notify)();
                    true
                }
                Err(TrySendError::Full(_)) => {
                    log::warn!("connection {} fell behind: no more events for it", s.id);
                    false
                }
                Err(TrySendError::Disconnected(_)) => false,
            });
    }
}
