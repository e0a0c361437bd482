//! The agent's configuration: a TOML file (`moverd serve --config <file>`)
//! and flags that override it. Unknown keys are an error, so a typo never
//! silently falls back to a default.
//!
//! ```toml
//! name = "hostA"                       # host name, unique among agents
//! listen = "0.0.0.0:7400"              # or a Unix socket path: "/run/moverd.sock"
//! token_file = "/etc/moverd/token"     # access token, shared by the agents of one site
//! state_dir = "/dev/shm/moverd"        # inventory.json and the LPARs' files
//! auth_timeout_s = 30                  # close connections not authenticated by then (1-3600)
//! peers = ["hostB", "hostC"]           # the agents this one sends its token to
//! backend = "sim"                      # where LPARs run: "sim" (default) or "kvm"
//! management_segment = "1a"            # optional: the NIC segment of the management path
//! suspend_limit_ms = 5000              # hard limit of a live suspension (the budget is a target)
//! allow_insecure_plaintext = false     # accept migration streams in clear (benchmarks only)
//! identity_dir = "/etc/moverd"         # agent.key + agent.crt from `moverd init` (default: state_dir)
//! trusted_ca = "/etc/moverd/ca.crt"    # peers whose certificate the site CA signed, or:
//! trusted_peers = ["sha256:9f2c…"]     # peers by key fingerprint (`moverd identity` on each)
//! insecure_plaintext_management = false  # TCP management in clear, no identity (trusted networks only)
//!
//! [resources]
//! cpus = 16
//! memory = "64GiB"
//! fc_ports = [{ name = "fc0", vfc_ids = [1, 2, 3, 4] }]
//! nic_segments = ["1a", "1b@eth2"]   # <segment>[@<interface to announce on>]
//! consoles = 16                        # virtual consoles: LPARs this host can hold
//! max_active_lpars = 30                # optional: LPARs activated at once (the HVM's maximum)
//!
//! [[paths]]                            # migration paths
//! name = "mig0"
//! addr = "192.168.50.1"
//! interface = "eth1"                   # optional
//! vlan = 100                           # optional
//! segment = "1b"                       # optional: the shared NIC segment it runs on
//!
//! [identity]
//! hvm_model = "sim"
//! time_zone = "UTC"
//! ntp_servers = ["192.168.0.254"]
//! ```
//!
//! `peers`: before an agent authenticates to another (a migration's
//! destination, a recovery peer, a connectivity test), it reads that
//! agent's greeting and sends its token only if the greeting names one of
//! these agents; an agent not listed is refused with an EMG and learns
//! nothing. Names, not addresses: the address comes with each request.
//! The token file must be private to its owner (`chmod 600`).
//!
//! Identity: with an identity (`moverd init`), the management path on TCP
//! is TLS only, and this agent calls its peers with mutual TLS instead of
//! the token (`peers` then does not apply: `trusted_ca` / `trusted_peers`
//! decide). Without one, `moverd serve` on TCP refuses to start unless
//! `insecure_plaintext_management` says so; a Unix socket is always plain.

use crate::control::{DEFAULT_BACKEND, HostFacts, Identity};
use crate::emg::{Emg, Module, phase};
use crate::transport::MigrationPath;
use crate::units::parse_size;
use serde::{Deserialize, Deserializer};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// Where `moverd serve` listens unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7400";

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    pub name: String,
    #[serde(default = "default_listen")]
    pub listen: String,
    pub token_file: PathBuf,
    pub state_dir: PathBuf,
    #[serde(default)]
    pub resources: Resources,
    #[serde(default)]
    pub paths: Vec<MigrationPath>,
    #[serde(default)]
    pub identity: Identity,
    /// Seconds a management connection may stay unauthenticated.
    #[serde(default = "default_auth_timeout")]
    pub auth_timeout_s: u64,
    /// The agents (by the name in their greeting) this agent authenticates to.
    #[serde(default)]
    pub peers: Vec<String>,
    /// The partition backend hosting this agent's LPARs (`sim`, `kvm`); a
    /// migration only goes to an agent with the same one.
    #[serde(default = "default_backend")]
    pub backend: String,
    /// The shared NIC segment the management path (`listen`) is on: a
    /// migration path on it needs a VLAN ID (the manual's MMS Thread
    /// `F00d`).
    #[serde(default)]
    pub management_segment: Option<String>,
    /// The hard limit of a live migration's suspension, ms (1 to
    /// [`MAX_SUSPEND_LIMIT_MS`]): a destination not ready by then fails
    /// the migration ("Transferring device data cannot be completed within
    /// an LPAR suspension period.") and the LPAR resumes here.
    #[serde(default = "default_suspend_limit_ms")]
    pub suspend_limit_ms: u64,
    /// Accept incoming migration streams that carry guest memory in clear
    /// (`moverctl migrate --insecure-plaintext`, for benchmarks). Off: such a
    /// stream is refused and the source keeps its LPAR; streams are TLS 1.3.
    #[serde(default)]
    pub allow_insecure_plaintext: bool,
    /// Where `moverd init` put the agent's key and certificate (default:
    /// `state_dir`).
    #[serde(default)]
    pub identity_dir: Option<PathBuf>,
    /// The site CA's certificate: peers it signed are trusted.
    #[serde(default)]
    pub trusted_ca: Option<PathBuf>,
    /// Peers trusted by their key's fingerprint.
    #[serde(default)]
    pub trusted_peers: Vec<crate::transport::identity::Fingerprint>,
    /// Serve the management path on TCP in clear and call peers without
    /// TLS when there is no identity: trusted networks and tests only.
    #[serde(default)]
    pub insecure_plaintext_management: bool,
}

/// Longest `suspend_limit_ms`: a minute, as the suspension budget.
pub const MAX_SUSPEND_LIMIT_MS: u64 = 60_000;

fn default_suspend_limit_ms() -> u64 {
    crate::engine::source::DEFAULT_SUSPEND_LIMIT.as_millis() as u64
}

fn default_backend() -> String {
    DEFAULT_BACKEND.to_string()
}

/// Longest `auth_timeout_s`: an hour.
pub const MAX_AUTH_TIMEOUT_S: u64 = 3600;

fn default_auth_timeout() -> u64 {
    crate::control::AUTH_TIMEOUT.as_secs()
}

fn default_listen() -> String {
    DEFAULT_LISTEN.to_string()
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    pub cpus: u32,
    #[serde(deserialize_with = "size")]
    pub memory: u64,
    #[serde(default)]
    pub fc_ports: Vec<FcPort>,
    #[serde(default)]
    pub nic_segments: Vec<String>,
    /// Virtual consoles: one per LPAR held (validation's `console` item).
    #[serde(default = "default_consoles")]
    pub consoles: u32,
    /// The most LPARs that may be activated at once (the HVM's maximum;
    /// none when absent): validation's `active-lpars` item, and
    /// `lpar activate`.
    #[serde(default)]
    pub max_active_lpars: Option<u32>,
}

fn default_consoles() -> u32 {
    16
}

impl Default for Resources {
    fn default() -> Self {
        Resources {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
            memory: 4 << 30,
            fc_ports: Vec::new(),
            nic_segments: Vec::new(),
            consoles: default_consoles(),
            max_active_lpars: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FcPort {
    pub name: String,
    /// The vfcIDs this port can hand out.
    pub vfc_ids: Vec<u32>,
}

fn size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Bytes(u64),
        Text(String),
    }
    match Size::deserialize(d)? {
        Size::Bytes(b) => Ok(b),
        Size::Text(t) => parse_size(&t).map_err(serde::de::Error::custom),
    }
}

/// The flags of `moverd serve`; each overrides the file.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct ServeArgs {
    /// The TOML configuration file.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// This host's name.
    #[arg(long)]
    pub name: Option<String>,
    /// Management address: host:port, or a Unix socket path.
    #[arg(long)]
    pub listen: Option<String>,
    /// Migration path `<name>=<ipv4>[@<interface>][,vlan=<id>][,segment=<segment>]`;
    /// repeatable, replaces the file's paths.
    #[arg(long = "path", value_parser = parse_path)]
    pub paths: Vec<MigrationPath>,
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    #[arg(long)]
    pub cpus: Option<u32>,
    /// Host memory LPARs may use, e.g. 64GiB.
    #[arg(long, value_parser = parse_size)]
    pub memory: Option<u64>,
    /// An agent (by name) this one may authenticate to; repeatable,
    /// replaces the file's `peers`.
    #[arg(long = "peer")]
    pub peers: Vec<String>,
    /// Where LPARs run: `sim` (threads of this agent) or `kvm` (a VM on
    /// /dev/kvm per LPAR, in its own process); default sim.
    #[arg(long)]
    pub backend: Option<String>,
    /// The shared NIC segment the management path is on.
    #[arg(long)]
    pub management_segment: Option<String>,
    /// Hard limit of a live migration's suspension, ms (default 5000).
    #[arg(long)]
    pub suspend_limit_ms: Option<u64>,
    /// Accept incoming migration streams in clear (`migrate
    /// --insecure-plaintext`): for benchmarks on a trusted path only.
    #[arg(long)]
    pub allow_insecure_plaintext: bool,
    /// Where the agent's key and certificate are (default: the state dir).
    #[arg(long)]
    pub identity_dir: Option<PathBuf>,
    /// The site CA's certificate (trust the peers it signed).
    #[arg(long)]
    pub trusted_ca: Option<PathBuf>,
    /// A peer's key fingerprint to trust (sha256:…); repeatable, replaces
    /// the file's `trusted_peers`.
    #[arg(long = "trusted-peer", value_parser = crate::transport::identity::Fingerprint::parse)]
    pub trusted_peers: Vec<crate::transport::identity::Fingerprint>,
    /// Serve the management path on TCP in clear, without an identity:
    /// trusted networks and tests only.
    #[arg(long)]
    pub insecure_plaintext_management: bool,
}

fn config_error(message: String) -> Emg {
    Emg::new(
        Module::Management,
        phase::INFORMATION,
        0x01,
        message,
        "Fix the moverd configuration file or flags (see the example in the agent::config \
         module documentation) and start moverd again.",
    )
}

impl AgentConfig {
    /// What this agent tells another about itself for validation.
    pub fn facts(&self) -> HostFacts {
        HostFacts {
            agent: self.name.clone(),
            build: crate::build_identity::BuildIdentity::current(),
            identity: self.identity.clone(),
            paths: self.paths.clone(),
            management: self.listen.clone(),
            backend: self.backend.clone(),
            management_segment: self.management_segment.clone(),
        }
    }

    /// Reads the file (if any), applies the flags, checks the result.
    pub fn load(args: &ServeArgs) -> Result<AgentConfig, Emg> {
        let mut table = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| config_error(format!("cannot read {}: {e}", path.display())))?;
                text.parse::<toml::Table>()
                    .map_err(|e| config_error(format!("{}: {e}", path.display())))?
            }
            None => toml::Table::new(),
        };
        let mut set = |k: &str, v: toml::Value| {
            table.insert(k.to_string(), v);
        };
        if let Some(n) = &args.name {
            set("name", n.clone().into());
        }
        if let Some(l) = &args.listen {
            set("listen", l.clone().into());
        }
        if let Some(d) = &args.state_dir {
            set("state_dir", d.display().to_string().into());
        }
        if let Some(t) = &args.token_file {
            set("token_file", t.display().to_string().into());
        }
        if let Some(b) = &args.backend {
            set("backend", b.clone().into());
        }
        if let Some(m) = &args.management_segment {
            set("management_segment", m.clone().into());
        }
        if let Some(l) = args.suspend_limit_ms {
            set("suspend_limit_ms", (l.min(i64::MAX as u64) as i64).into());
        }
        let file = args
            .config
            .as_deref()
            .map_or("flags".to_string(), |p| p.display().to_string());
        let mut config: AgentConfig = table
            .try_into()
            .map_err(|e: toml::de::Error| config_error(format!("{file}: {e}")))?;
        if let Some(c) = args.cpus {
            config.resources.cpus = c;
        }
        if let Some(m) = args.memory {
            config.resources.memory = m;
        }
        if !args.paths.is_empty() {
            config.paths = args.paths.clone();
        }
        if !args.peers.is_empty() {
            config.peers = args.peers.clone();
        }
        if args.allow_insecure_plaintext {
            config.allow_insecure_plaintext = true;
        }
        if let Some(d) = &args.identity_dir {
            config.identity_dir = Some(d.clone());
        }
        if let Some(c) = &args.trusted_ca {
            config.trusted_ca = Some(c.clone());
        }
        if !args.trusted_peers.is_empty() {
            config.trusted_peers = args.trusted_peers.clone();
        }
        if args.insecure_plaintext_management {
            config.insecure_plaintext_management = true;
        }
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), Emg> {
        if self.name.is_empty() {
            return Err(config_error("the host name is empty".into()));
        }
        crate::control::Address::parse(&self.listen).map_err(config_error)?;
        if !(1..=MAX_SUSPEND_LIMIT_MS).contains(&self.suspend_limit_ms) {
            return Err(config_error(format!(
                "suspend_limit_ms {} is outside 1..={MAX_SUSPEND_LIMIT_MS}",
                self.suspend_limit_ms
            )));
        }
        if !(1..=MAX_AUTH_TIMEOUT_S).contains(&self.auth_timeout_s) {
            return Err(config_error(format!(
                "auth_timeout_s = {} is out of range: 1 to {MAX_AUTH_TIMEOUT_S} seconds",
                self.auth_timeout_s
            )));
        }
        if !crate::partition::host::BACKENDS.contains(&self.backend.as_str()) {
            return Err(config_error(format!(
                "backend = \"{}\": the backends are {:?}",
                self.backend.escape_debug(),
                crate::partition::host::BACKENDS
            )));
        }
        for p in &self.paths {
            p.validate()
                .map_err(|e| config_error(format!("migration path '{}': {e}", p.name)))?;
        }
        Ok(())
    }

    /// Where the agent's key and certificate are.
    pub fn identity_dir(&self) -> PathBuf {
        self.identity_dir
            .clone()
            .unwrap_or_else(|| self.state_dir.clone())
    }

    /// Where the LPARs' shared-memory files live.
    pub fn lpar_root(&self) -> PathBuf {
        self.state_dir.join("lpars")
    }

    /// The migration path migrations use (the first configured), or
    /// loopback when none is configured.
    pub fn migration_path(&self) -> MigrationPath {
        self.paths
            .first()
            .cloned()
            .unwrap_or_else(|| MigrationPath::new("loopback", Ipv4Addr::LOCALHOST))
    }

    /// The migration path named `name`, or the default one for `None`.
    pub fn path_named(&self, name: Option<&str>) -> Result<MigrationPath, Emg> {
        let Some(name) = name else {
            return Ok(self.migration_path());
        };
        self.paths
            .iter()
            .find(|p| p.name == name)
            .cloned()
            .ok_or_else(|| {
                let known: Vec<&str> = self.paths.iter().map(|p| p.name.as_str()).collect();
                Emg::new(
                    crate::emg::Module::MoverSource,
                    crate::emg::phase::SOURCE_PATH,
                    0x01,
                    format!(
                        "Specified NIC was not found (Src-Blade): host {} has no migration path \
                     '{name}' (it has {known:?}).",
                        self.name
                    ),
                    "Give one of this host's migration paths with --path, or configure it.",
                )
            })
    }

    /// Reads the access token (whitespace around it ignored).
    pub fn read_token(&self) -> Result<String, Emg> {
        read_token(&self.token_file)
    }
}

/// Reads an access token file; an empty token, or a file that others
/// than its owner may read or write, is refused.
pub fn read_token(path: &Path) -> Result<String, Emg> {
    let error = |message: String, action: String| {
        Emg::new(
            Module::Management,
            phase::INFORMATION,
            0x01,
            message,
            action,
        )
    };
    let unreadable = |e: std::io::Error| {
        error(
            format!("cannot read token file {}: {e}", path.display()),
            "Give a readable file holding the access token (--token-file).".into(),
        )
    };
    let file = std::fs::File::open(path).map_err(unreadable)?;
    crate::transport::identity::check_private(path, &file, "token file")?;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::io::Read::take(file, 4096), &mut text)
        .map_err(unreadable)?;
    let token = text.trim().to_string();
    if token.is_empty() {
        return Err(error(
            format!("token file {} is empty", path.display()),
            "Write the site's access token into it (one line).".into(),
        ));
    }
    Ok(token)
}

/// Parses `<name>=<ipv4>[@<interface>][,vlan=<id>][,segment=<segment>]`.
pub fn parse_path(text: &str) -> Result<MigrationPath, String> {
    let usage = || {
        format!("'{text}': expected <name>=<ipv4>[@<interface>][,vlan=<id>][,segment=<segment>]")
    };
    let (name, rest) = text.split_once('=').ok_or_else(usage)?;
    let mut parts = rest.split(',');
    let addr_iface = parts.next().unwrap_or_default();
    let (mut vlan, mut segment) = (None, None);
    for part in parts {
        if let Some(id) = part.strip_prefix("vlan=") {
            let id: u16 = id
                .parse()
                .map_err(|_| format!("'{text}': VLAN id '{id}' is not a number"))?;
            vlan = Some(id);
        } else if let Some(s) = part.strip_prefix("segment=").filter(|s| !s.is_empty()) {
            segment = Some(s.to_string());
        } else {
            return Err(usage());
        }
    }
    let (addr, iface) = match addr_iface.split_once('@') {
        Some((a, i)) => (a, Some(i.to_string())),
        None => (addr_iface, None),
    };
    let addr: Ipv4Addr = addr
        .parse()
        .map_err(|_| format!("'{text}': '{addr}' is not an IPv4 address"))?;
    let path = MigrationPath {
        name: name.to_string(),
        addr,
        interface: iface,
        vlan,
        segment,
    };
    path.validate().map_err(|e| format!("'{text}': {e}"))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_flags_parse_every_part() {
        let p = parse_path("mig0=10.0.0.1@eth1,vlan=100").unwrap();
        assert_eq!(p.name, "mig0");
        assert_eq!(p.addr, Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(p.interface.as_deref(), Some("eth1"));
        assert_eq!(p.vlan, Some(100));
        let p = parse_path("mig1=10.0.0.2,segment=1a,vlan=7").unwrap();
        assert_eq!((p.segment.as_deref(), p.vlan), (Some("1a"), Some(7)));
        assert!(parse_path("m=10.0.0.1,speed=1").is_err());
        let p = parse_path("m=127.0.0.1").unwrap();
        assert_eq!((p.interface, p.vlan), (None, None));
        assert!(parse_path("m=10.0.0.300").unwrap_err().contains("IPv4"));
        assert!(parse_path("10.0.0.1").unwrap_err().contains("expected"));
        assert!(parse_path("m=10.0.0.1,vlan=x").is_err());
    }

    fn write(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
        f
    }

    const FULL: &str = r#"
name = "hostA"
listen = "/tmp/a.sock"
token_file = "/etc/token"
state_dir = "/dev/shm/a"
[resources]
cpus = 8
memory = "16GiB"
fc_ports = [{ name = "fc0", vfc_ids = [1, 2] }]
nic_segments = ["1a"]
[[paths]]
name = "mig0"
addr = "192.168.50.1"
vlan = 7
[identity]
hvm_model = "sim"
time_zone = "Asia/Tokyo"
ntp_servers = ["10.0.0.1"]
"#;

    #[test]
    fn the_file_is_read_and_flags_override_it() {
        let f = write(FULL);
        let args = ServeArgs {
            config: Some(f.path().into()),
            name: Some("hostB".into()),
            memory: Some(1 << 30),
            ..ServeArgs::default()
        };
        let c = AgentConfig::load(&args).unwrap();
        assert_eq!(c.name, "hostB");
        assert_eq!(c.listen, "/tmp/a.sock");
        assert_eq!(c.resources.cpus, 8);
        assert_eq!(c.resources.memory, 1 << 30);
        assert_eq!(c.resources.fc_ports[0].vfc_ids, vec![1, 2]);
        assert_eq!(c.paths[0].vlan, Some(7));
        assert_eq!(c.identity.time_zone, "Asia/Tokyo");
    }

    #[test]
    fn unknown_keys_are_errors_that_name_the_key() {
        let f = write(&FULL.replace("cpus = 8", "cpus = 8\ncpu_count = 3"));
        let args = ServeArgs {
            config: Some(f.path().into()),
            ..ServeArgs::default()
        };
        let e = AgentConfig::load(&args).unwrap_err();
        assert!(e.message.contains("cpu_count"), "{e}");
    }

    #[test]
    fn flags_alone_suffice() {
        let args = ServeArgs {
            name: Some("h".into()),
            state_dir: Some("/tmp/s".into()),
            token_file: Some("/tmp/t".into()),
            paths: vec![parse_path("m=127.0.0.1").unwrap()],
            ..ServeArgs::default()
        };
        let c = AgentConfig::load(&args).unwrap();
        assert_eq!(c.listen, DEFAULT_LISTEN);
        assert_eq!(c.migration_path().addr, Ipv4Addr::LOCALHOST);
        assert_eq!(c.backend, "sim");
    }

    #[test]
    fn the_backend_comes_from_the_file_or_the_flag_and_must_exist() {
        let f = write(&FULL.replace("listen =", "backend = \"kvm\"\nlisten ="));
        let mut args = ServeArgs {
            config: Some(f.path().into()),
            ..ServeArgs::default()
        };
        assert_eq!(AgentConfig::load(&args).unwrap().backend, "kvm");
        args.backend = Some("sim".into());
        assert_eq!(AgentConfig::load(&args).unwrap().backend, "sim");
        args.backend = Some("xen".into());
        let e = AgentConfig::load(&args).unwrap_err();
        assert!(e.message.contains("backend = \"xen\""), "{e}");
    }

    #[test]
    fn auth_timeouts_out_of_range_are_refused_and_peer_flags_replace_the_file() {
        for t in ["0", "3601", "18446744073709551615"] {
            let f = write(&FULL.replace(
                "state_dir = \"/dev/shm/a\"\n",
                &format!("state_dir = \"/dev/shm/a\"\nauth_timeout_s = {t}\n"),
            ));
            let args = ServeArgs {
                config: Some(f.path().into()),
                ..ServeArgs::default()
            };
            let e = AgentConfig::load(&args).unwrap_err();
            assert!(e.message.contains("auth_timeout_s"), "{t}: {e}");
        }
        let f = write(&FULL.replace(
            "state_dir = \"/dev/shm/a\"\n",
            "state_dir = \"/dev/shm/a\"\npeers = [\"hostB\"]\n",
        ));
        let mut args = ServeArgs {
            config: Some(f.path().into()),
            ..ServeArgs::default()
        };
        assert_eq!(AgentConfig::load(&args).unwrap().peers, ["hostB"]);
        args.peers = vec!["hostC".into(), "hostD".into()];
        assert_eq!(AgentConfig::load(&args).unwrap().peers, ["hostC", "hostD"]);
    }

    #[test]
    fn a_token_file_open_to_others_is_refused_with_the_fix() {
        use std::os::unix::fs::PermissionsExt;
        let f = write("s3cret\n");
        for mode in [0o644, 0o660, 0o602, 0o640] {
            std::fs::set_permissions(f.path(), std::fs::Permissions::from_mode(mode)).unwrap();
            let e = read_token(f.path()).unwrap_err();
            assert!(
                e.action
                    .contains(&format!("chmod 600 {}", f.path().display())),
                "{mode:o}: {e}"
            );
        }
        std::fs::set_permissions(f.path(), std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_token(f.path()).unwrap(), "s3cret");
    }
}
