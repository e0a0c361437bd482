//! The commands of the management protocol: one argument type per command
//! (in [`request`]), each knowing its name on the wire and the type of its
//! reply (in `control::reply`), and the [`Command`] enum a server
//! decodes a request into.
//!
//! ```text
//! {"id":<u64>,"execute":"<command>","arguments":{…}}     arguments optional
//! ```
//!
//! Both are written from the one list below (`commands!`): a field is
//! declared once and appears in the argument struct and the enum variant
//! alike, so the two cannot drift apart.

use super::reply;
use super::vocabulary::{HostFacts, JournalSummary, MigrationMode};
use crate::partition::{FcPortConfig, LparConfig, MemoryBacking, NicConfig};
use crate::state::UsbAssignment;
use serde::{Deserialize, Serialize, de::DeserializeOwned};

/// A command's argument type: its name on the wire, and the type of its
/// reply. `Client::request` sends one and returns its typed reply; the
/// agent answers each command with a value of its `Reply`.
pub trait Request: Serialize + Into<Command> {
    /// The command's name (`"execute"`).
    const NAME: &'static str;
    /// What the command returns (`"return"`).
    type Reply: DeserializeOwned + Serialize;
}

macro_rules! commands {
    ($(
        $(#[$vmeta:meta])*
        $name:ident $wire:literal => $reply:ident {
            $( $(#[$fmeta:meta])* $field:ident : $fty:ty ),* $(,)?
        }
    ),* $(,)?) => {
        /// One command with its arguments, as a server decodes it. Struct
        /// variants throughout, so that `"arguments"` is always an object
        /// (or absent).
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
        #[serde(
            tag = "execute",
            content = "arguments",
            rename_all = "kebab-case",
            deny_unknown_fields
        )]
        pub enum Command {
            $( $(#[$vmeta])* $name { $( $(#[$fmeta])* $field: $fty ),* } ),*
        }

        /// The argument type of each command, named as its [`Command`]
        /// variant.
        pub mod request {
            use super::*;
            $(
                $(#[$vmeta])*
                #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
                #[serde(deny_unknown_fields)]
                pub struct $name { $( $(#[$fmeta])* pub $field: $fty ),* }

                impl From<$name> for Command {
                    fn from(r: $name) -> Command {
                        let $name { $( $field ),* } = r;
                        Command::$name { $( $field ),* }
                    }
                }

                impl Request for $name {
                    const NAME: &'static str = $wire;
                    type Reply = reply::$reply;
                }
            )*
        }

        /// Names of all commands, for the "unknown command" error.
        pub const COMMANDS: &[&str] = &[$( $wire ),*];

        impl Command {
            /// The command's name as it appears in `"execute"`.
            pub fn name(&self) -> &'static str {
                match self {
                    $( Command::$name { .. } => $wire ),*
                }
            }
        }
    };
}

commands! {
    /// Presents the access token; must come first.
    Authenticate "authenticate" => Empty {
        /// The agent's token (its `token_file`, whitespace trimmed).
        token: String,
    },
    /// Defines an LPAR (deactivated).
    LparCreate "lpar-create" => Lpar {
        /// The LPAR's name.
        name: String,
        /// Its vCPUs (default 2).
        #[serde(default = "default_vcpus")]
        vcpus: u32,
        /// Its guest memory.
        memory_bytes: u64,
        /// The guest program (default `idle`).
        #[serde(default = "default_program")]
        program: String,
        /// Its logical NICs.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        nics: Vec<NicConfig>,
        /// Its logical FC ports.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        fc_ports: Vec<FcPortConfig>,
        /// `kvm` agents only: a multiboot v1 image on the agent's host to
        /// boot instead of the built-in guest, and its command line.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        kernel: Option<String>,
        /// The kernel's command line (default: `program`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cmdline: Option<String>,
        /// The USB device's assigned state (`A`, `#A`, `*`, `R`, `#R`);
        /// default `*` (none).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        usb: Option<UsbAssignment>,
        /// Its service ratio (1 to 999; default 100).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        service_ratio: Option<u16>,
        /// How its guest memory is backed (`reserved`, the default, or
        /// `on-demand`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        memory_backing: Option<MemoryBacking>,
    },
    /// Every LPAR of this host.
    LparList "lpar-list" => LparList {},
    /// One LPAR.
    LparShow "lpar-show" => Lpar {
        /// The LPAR's name.
        name: String,
    },
    /// Activates (starts) a deactivated LPAR.
    LparActivate "lpar-activate" => Lpar {
        /// The LPAR's name.
        name: String,
    },
    /// Deactivates (stops) an LPAR.
    LparDeactivate "lpar-deactivate" => Lpar {
        /// The LPAR's name.
        name: String,
    },
    /// Deletes a deactivated or failed LPAR.
    LparDelete "lpar-delete" => Deleted {
        /// The LPAR's name.
        name: String,
    },
    /// Starts a live migration of `lpar` to the agent at `to`; replies with
    /// the migration id at once, progress follows as events.
    Migrate "migrate" => MigrationStarted {
        /// The LPAR's name.
        lpar: String,
        /// The destination agent: `host:port` or a Unix socket path.
        to: String,
        /// The suspension budget, ms (default 20).
        #[serde(default)]
        max_suspend_ms: Option<u64>,
        /// A cap on the migration path, bytes/s.
        #[serde(default)]
        bandwidth: Option<u64>,
        /// Streams on the migration path (1 to 64; default 4).
        #[serde(default)]
        streams: Option<usize>,
        /// The migration's timeout, s (default 900).
        #[serde(default)]
        timeout_s: Option<u64>,
        /// The migration path to use (by name); default the first.
        #[serde(default)]
        path: Option<String>,
        /// Send guest memory in clear instead of TLS 1.3 (benchmarks; the
        /// destination must allow it). Default false.
        #[serde(default)]
        insecure_plaintext: bool,
    },
    /// One migration (`id`) or all that this agent knows.
    Status "status" => Status {
        /// The migration; all of them when absent.
        #[serde(default)]
        id: Option<u64>,
    },
    /// Moves the timeout of migration `id` later (stage 0x4050 only).
    Extend "extend" => Extended {
        /// The migration's id on this agent.
        id: u64,
        /// How much later.
        seconds: u64,
    },
    /// Cancels migration `id` (stage 0x4050 only); the LPAR keeps running.
    Cancel "cancel" => Cancelling {
        /// The migration's id on this agent.
        id: u64,
    },
    /// Agent to agent: define `config` here as the target of an incoming
    /// live migration and open a migration-path listener for it.
    PrepareIncoming "prepare-incoming" => IncomingPrepared {
        /// The LPAR's configuration.
        config: LparConfig,
        /// Streams on the migration path (1 to 64; default 4).
        streams: usize,
        /// The migration path the source chose; the destination uses its
        /// own path of that name when it has one, else its default.
        #[serde(default)]
        path: Option<String>,
        /// The source agent's name, for logs and status.
        source_agent: String,
        /// The source's migration id.
        source_migration: u64,
        /// The source agent's management address (for `moverctl return`).
        #[serde(default)]
        source_address: Option<String>,
        /// The migration's history key (`HistoryRecord::key`).
        #[serde(default)]
        history_key: Option<String>,
        /// The LPAR's migration history, kept by the destination once the
        /// LPAR is its own (at most `agent::history::MAX_SHIPPED`).
        #[serde(default)]
        history: Vec<crate::control::HistoryRecord>,
    },
    /// Agent to agent: the source of incoming migration `migration` gives
    /// it up before its streams connected, so the destination stops
    /// waiting for them and removes the LPAR it defined.
    AbandonIncoming "abandon-incoming" => Empty {
        /// The migration's id on the destination (`prepare-incoming`'s).
        migration: u64,
        /// The source agent's name (it must be the migration's source).
        source_agent: String,
        /// Why, as the source's EMG says it (for the destination's log).
        reason: String,
    },
    /// Resolves an LPAR that needs recovery from the journals of both
    /// sides; `peer` overrides the other agent's address in the journal.
    Recover "recover" => Recovered {
        /// The LPAR's name.
        lpar: String,
        /// The other agent's management address (default: the journal's).
        #[serde(default)]
        peer: Option<String>,
    },
    /// Agent to agent: this host's latest journal of `lpar` and its copy.
    JournalRead "journal-read" => JournalRead {
        /// The LPAR's name.
        lpar: String,
    },
    /// Agent to agent: keep (resume) or discard this host's copy of `lpar`
    /// as `recover` decided, and close the journal. Served only for a copy
    /// that needs recovery, and only when this host's journal and the
    /// caller's (`journal`) give the same verdict.
    RecoverResolve "recover-resolve" => Resolved {
        /// The LPAR's name.
        lpar: String,
        /// Keep (resume) this host's copy, or discard it.
        keep: bool,
        /// Keep it deactivated (a shutdown-mode migration), not running.
        #[serde(default)]
        leave_deactivated: bool,
        /// The caller's journal of the migration.
        #[serde(default)]
        journal: Option<JournalSummary>,
    },
    /// Starts a shutdown-mode migration of `lpar` to the agent at `to`: an
    /// activated guest is asked to shut down first (waiting at most
    /// `shutdown_timeout_s`, default 300); replies with the migration id.
    MigrateShutdown "migrate-shutdown" => MigrationStarted {
        /// The LPAR's name.
        lpar: String,
        /// The destination agent: `host:port` or a Unix socket path.
        to: String,
        /// Activate the LPAR at the destination.
        #[serde(default)]
        activate_destination: bool,
        /// How long the guest may take to shut down, s (default 300).
        #[serde(default)]
        shutdown_timeout_s: Option<u64>,
    },
    /// Agent to agent: define `config` here from a shutdown-mode migration,
    /// load `device_state` (hex) and activate it if asked.
    ReceiveShutdown "receive-shutdown" => ShutdownReceived {
        /// The LPAR's configuration.
        config: LparConfig,
        /// The device state (the `state` encoding), hex.
        device_state: String,
        /// Activate it once defined.
        activate: bool,
        /// The source agent's name.
        source_agent: String,
        /// The source's migration id.
        source_migration: u64,
        /// As for `prepare-incoming`: the source's management address, the
        /// history key and the LPAR's history, which travels with it.
        #[serde(default)]
        source_address: Option<String>,
        /// The migration's history key (`HistoryRecord::key`).
        #[serde(default)]
        history_key: Option<String>,
        /// The LPAR's migration history.
        #[serde(default)]
        history: Vec<crate::control::HistoryRecord>,
    },
    /// Restores the WWPN assignment of `lpar` after a failed live
    /// migration (state `wwn-rollback-pending`).
    RollbackWwn "rollback-wwn" => WwnRolledBack {
        /// The LPAR's name.
        lpar: String,
    },
    /// The migrations of `lpar` this agent knows (its own and those that
    /// came with the LPAR), oldest first.
    History "history" => History {
        /// The LPAR's name; none: every migration this agent knows.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        lpar: Option<String>,
    },
    /// This host's CPUs and memory, total and free.
    HostResources "host-resources" => HostResources {},
    /// Agent to agent: the source's record of a migration that completed,
    /// sent to the destination so the LPAR's history there is whole.
    HistoryRecord "history-record" => Kept {
        /// The records.
        records: Vec<crate::control::HistoryRecord>,
    },
    /// Runs the validation checklist of a migration of `lpar` to `to`
    /// (both agents' items) without starting it.
    Validate "validate" => ValidationReport {
        /// The LPAR's name.
        lpar: String,
        /// The destination agent: `host:port` or a Unix socket path.
        to: String,
        /// Live (default) or shutdown.
        #[serde(default)]
        mode: MigrationMode,
        /// The migration path by name (default: the first).
        #[serde(default)]
        path: Option<String>,
    },
    /// Measures round trip and bandwidth of the migration path to `to`.
    ConnectivityTest "connectivity-test" => Connectivity {
        /// The destination agent: `host:port` or a Unix socket path.
        to: String,
        /// The migration path by name (default: the first).
        #[serde(default)]
        path: Option<String>,
    },
    /// Validation, a fresh connectivity test and a placeholder LPAR defined
    /// and deleted on `to`; nothing moves.
    Rehearse "rehearse" => Rehearsal {
        /// The LPAR's name.
        lpar: String,
        /// The destination agent: `host:port` or a Unix socket path.
        to: String,
        /// Live (default) or shutdown.
        #[serde(default)]
        mode: MigrationMode,
        /// The migration path by name (default: the first).
        #[serde(default)]
        path: Option<String>,
    },
    /// Agent to agent: the destination's validation items for `config`.
    ValidateIncoming "validate-incoming" => IncomingChecks {
        /// The LPAR's configuration.
        config: LparConfig,
        /// Live (default) or shutdown.
        mode: MigrationMode,
        /// The source agent's facts.
        source: HostFacts,
        /// The migration path by name (default: the first).
        #[serde(default)]
        path: Option<String>,
        /// Bytes of guest memory the LPAR holds now, for an LPAR backed
        /// on demand: what the destination must find room for.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        populated_bytes: Option<u64>,
    },
    /// Agent to agent: listen on the migration path for one connectivity test.
    ConnectivityIncoming "connectivity-incoming" => ProbeListening {
        /// The migration path by name (default: the first).
        #[serde(default)]
        path: Option<String>,
        /// Streams on the migration path (1 to 64; default 4).
        streams: usize,
    },
    /// Agent to agent: define `config` as a placeholder and delete it.
    RehearseIncoming "rehearse-incoming" => Placeholder {
        /// The LPAR's configuration.
        config: LparConfig,
    },
    /// Up to [`CONSOLE_CHUNK`] bytes of an LPAR's serial console from
    /// byte `offset` on.
    LparConsole "lpar-console" => Console {
        /// The LPAR's name.
        name: String,
        /// The console byte to start at (default 0).
        #[serde(default)]
        offset: u64,
    },
    /// The WWN Status List: this host's LPARs with WWNs to roll back.
    WwnStatus "wwn-status" => WwnStatusList {},
    /// Changes a deactivated LPAR's definition: each argument given
    /// replaces what the LPAR has (a list replaces the whole list).
    LparModify "lpar-modify" => Lpar {
        /// The LPAR's name.
        name: String,
        /// Its vCPUs.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        vcpus: Option<u32>,
        /// Its guest memory.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        memory_bytes: Option<u64>,
        /// The guest program.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        program: Option<String>,
        /// Its logical NICs (all of them).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        nics: Option<Vec<NicConfig>>,
        /// Its logical FC ports (all of them).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fc_ports: Option<Vec<FcPortConfig>>,
        /// The USB device's assigned state.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        usb: Option<UsbAssignment>,
        /// Its service ratio (1 to 999).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        service_ratio: Option<u16>,
    },
    /// This host's configuration backup (every LPAR's definition; no guest
    /// memory). Refused while a migration runs.
    Backup "backup" => AgentBackup {},
    /// Restores a `backup` of this host: the inventory becomes the
    /// backup's, every LPAR deactivated. Refused while a migration runs or
    /// a guest is running.
    Restore "restore" => Restored {
        /// The backup, as `backup` returned it.
        backup: reply::AgentBackup,
    },
    /// What this host is and does now, for an operator's console: its
    /// name, build, backend, CPUs, memory used and free, migration paths,
    /// and whether a migration runs (busy).
    HostInfo "host-info" => HostInfo {},
}

fn default_vcpus() -> u32 {
    2
}

fn default_program() -> String {
    "idle".to_string()
}

/// Most console bytes one `lpar-console` reply carries (well under
/// [`MAX_LINE`](super::MAX_LINE) however the text escapes).
pub const CONSOLE_CHUNK: u64 = 64 << 10;
