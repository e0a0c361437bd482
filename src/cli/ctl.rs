//! `moverctl`'s agent commands: a thin client over the management protocol
//! (`control`). Each prints a human summary, or with `--json` the agent's
//! reply as one JSON object.
//!
//! Exit codes: 0 success, 1 refused (the agent answered the request with an
//! error: validation, busy rules, unknown LPAR), 2 failed (the operation
//! started and failed, or the agent could not be reached), 3 usage.

use super::lpar_args::{self, NicSpec, parse_fc_port, parse_nic};
use super::migrate::{MigrateArgs, migrate, monitor};
use super::session::{Failure, Global, ask, connect, print_reply};
use crate::control::{Client, reply, request};
use crate::emg::Emg;
use crate::partition::{FcPortConfig, MemoryBacking};
use crate::state::UsbAssignment;
use crate::units::{format_size, parse_size};
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum CtlCommand {
    /// Define, list, show, activate, deactivate or delete LPARs.
    #[command(subcommand)]
    Lpar(LparCommand),
    /// Migrate an LPAR live to another agent; waits and prints the report.
    Migrate(MigrateArgs),
    /// The state of one migration, or of all this agent knows.
    Status { id: Option<u64> },
    /// Follow a migration: stage, remaining memory and rate, until it ends.
    Monitor { id: u64 },
    /// Extend a migration's timeout (stage 0x4050 only).
    Extend { id: u64, seconds: u64 },
    /// Cancel a migration (stage 0x4050 only); the LPAR keeps running. In
    /// text mode, waits for the migration to end ("Progress : Migration
    /// completed!").
    Cancel {
        id: u64,
        /// Return once the agent accepts the cancel.
        #[arg(long)]
        no_wait: bool,
    },
    /// Resolve an LPAR that needs recovery from both agents' journals: it
    /// ends up running on exactly one host.
    Recover {
        lpar: String,
        /// The other agent's address (default: the one in the journal).
        #[arg(long)]
        peer: Option<String>,
    },
    /// Restore an LPAR's WWPN assignment after a failed live migration;
    /// with --list, the WWN Status List (the LPARs waiting for it).
    RollbackWwn {
        #[arg(required_unless_present = "list", conflicts_with = "list")]
        lpar: Option<String>,
        /// List this host's LPARs with WWNs to roll back.
        #[arg(long)]
        list: bool,
    },
    /// Back up the agent's configuration (its LPARs' definitions; no guest
    /// memory) to a file; refused during a migration.
    Backup { file: PathBuf },
    /// Restore the agent's configuration from a `backup` file of that
    /// agent: every LPAR deactivated and defined as backed up.
    Restore { file: PathBuf },
    /// The migrations of an LPAR: when, from where to where, how they ended.
    History { lpar: Option<String> },
    /// Migrate an LPAR live back to the host it last came from.
    Return(super::moves::ReturnArgs),
    /// Run or stop a policy: ordered migrations from a TOML file.
    #[command(subcommand)]
    Policy(super::policy::PolicyCommand),
    /// Run the validation checklist of a migration (both agents), item by item.
    Validate(super::validate::ValidateArgs),
    /// Measure round trip and bandwidth of the migration path to an agent.
    ConnectivityTest(super::validate::ConnectivityArgs),
    /// Validation, connectivity test and a placeholder LPAR defined and
    /// deleted on the destination; nothing moves.
    Rehearse(super::validate::ValidateArgs),
}

#[derive(Subcommand, Debug)]
pub enum LparCommand {
    /// Define an LPAR (deactivated).
    Create {
        name: String,
        #[arg(long, default_value_t = 2)]
        vcpus: u32,
        #[arg(long, default_value = "1GiB", value_parser = parse_size)]
        memory: u64,
        /// The guest program (`idle`, `hot:<size>`, `sweep`, `skewed`, …).
        #[arg(long, default_value = "idle")]
        program: String,
        /// A logical NIC: `SEGMENT[,vlan=ID][,vlan-mode=Tag|Untag|Undef]
        /// [,mac=auto|MAC][,mode=shared|dedicated]` (repeat for more).
        #[arg(long = "nic", value_parser = parse_nic)]
        nics: Vec<NicSpec>,
        /// A logical FC port: `WWPN/MIGRATION-WWPN[,port=N][,vfc-id=N]
        /// [,mode=shared|dedicated]` (repeat for more ports).
        #[arg(long = "fc-port", value_parser = parse_fc_port)]
        fc_ports: Vec<FcPortConfig>,
        /// kvm agents: boot this multiboot v1 image (a file on the agent's
        /// host) instead of the built-in guest.
        #[arg(long)]
        kernel: Option<PathBuf>,
        /// kvm agents: the kernel's command line (default: --program, the
        /// built-in guest's program).
        #[arg(long)]
        cmdline: Option<String>,
        /// The USB device's assigned state: A, #A, * (none, the default),
        /// R or #R (in use: Concurrent Maintenance is refused).
        #[arg(long)]
        usb: Option<UsbAssignment>,
        /// Its share of the host's shared CPUs, relative to the other
        /// activated LPARs' (1 to 999; default 100).
        #[arg(long)]
        service_ratio: Option<u16>,
        /// reserved (the default): all of guest memory is allocated when
        /// the LPAR is created, so a full host is refused then; on-demand:
        /// only what the guest writes, so the host may run out later.
        #[arg(long)]
        memory_backing: Option<MemoryBacking>,
    },
    /// Change a deactivated LPAR: what is given replaces what it has
    /// (`--nic`/`--fc-port` replace all its NICs/FC ports).
    Modify {
        name: String,
        #[arg(long)]
        vcpus: Option<u32>,
        #[arg(long, value_parser = parse_size)]
        memory: Option<u64>,
        #[arg(long)]
        program: Option<String>,
        /// As for create; replaces every NIC.
        #[arg(long = "nic", value_parser = parse_nic, conflicts_with = "no_nics")]
        nics: Vec<NicSpec>,
        /// Remove every NIC.
        #[arg(long)]
        no_nics: bool,
        /// As for create; replaces every FC port.
        #[arg(long = "fc-port", value_parser = parse_fc_port, conflicts_with = "no_fc_ports")]
        fc_ports: Vec<FcPortConfig>,
        /// Remove every FC port.
        #[arg(long)]
        no_fc_ports: bool,
        #[arg(long)]
        usb: Option<UsbAssignment>,
        /// As for create (on the destination of a migration it is a share
        /// among that host's LPARs: recompute it there).
        #[arg(long)]
        service_ratio: Option<u16>,
    },
    /// Print the LPAR's serial console (kvm agents).
    Console {
        name: String,
        /// Keep printing what the guest writes, until interrupted.
        #[arg(long)]
        follow: bool,
    },
    List,
    Show {
        name: String,
    },
    Activate {
        name: String,
    },
    Deactivate {
        name: String,
    },
    Delete {
        name: String,
    },
}

/// Runs one agent command.
pub fn run(g: &Global, command: CtlCommand) -> Result<(), Failure> {
    // A policy's entries name their own agents.
    let command = match command {
        CtlCommand::Policy(p) => return super::policy::run(g, p),
        c => c,
    };
    let mut client = connect(g)?;
    let agent_name = client.greeting().agent.clone();
    match command {
        CtlCommand::Lpar(l) => {
            let reply = match l {
                LparCommand::Create {
                    name,
                    vcpus,
                    memory,
                    program,
                    nics,
                    fc_ports,
                    kernel,
                    cmdline,
                    usb,
                    service_ratio,
                    memory_backing,
                } => ask(
                    &mut client,
                    request::LparCreate {
                        nics: lpar_args::nics(&agent_name, &name, &nics),
                        name,
                        vcpus,
                        memory_bytes: memory,
                        program,
                        fc_ports,
                        // Absolute: the agent's working directory is not ours.
                        kernel: kernel
                            .map(|k| std::path::absolute(&k).unwrap_or(k).display().to_string()),
                        cmdline,
                        usb,
                        service_ratio,
                        memory_backing,
                    },
                )?,
                LparCommand::Modify {
                    name,
                    vcpus,
                    memory,
                    program,
                    nics,
                    no_nics,
                    fc_ports,
                    no_fc_ports,
                    usb,
                    service_ratio,
                } => ask(
                    &mut client,
                    request::LparModify {
                        nics: (no_nics || !nics.is_empty())
                            .then(|| lpar_args::nics(&agent_name, &name, &nics)),
                        name,
                        vcpus,
                        memory_bytes: memory,
                        program,
                        fc_ports: (no_fc_ports || !fc_ports.is_empty()).then_some(fc_ports),
                        usb,
                        service_ratio,
                    },
                )?,
                LparCommand::Console { name, follow } => {
                    return console(&mut client, &name, follow).map_err(Failure::Refused);
                }
                LparCommand::List => {
                    let reply = ask(&mut client, request::LparList {})?;
                    if !g.json {
                        print_lpars(&reply);
                        return Ok(());
                    }
                    return print_reply(g, &reply);
                }
                LparCommand::Show { name } => ask(&mut client, request::LparShow { name })?,
                LparCommand::Activate { name } => ask(&mut client, request::LparActivate { name })?,
                LparCommand::Deactivate { name } => {
                    ask(&mut client, request::LparDeactivate { name })?
                }
                LparCommand::Delete { name } => {
                    return print_reply(g, &ask(&mut client, request::LparDelete { name })?);
                }
            };
            print_reply(g, &reply)
        }
        CtlCommand::Migrate(a) => migrate(g, &mut client, a),
        CtlCommand::Status { id } => {
            let reply = ask(&mut client, request::Status { id })?;
            if g.json {
                return print_reply(g, &reply);
            }
            match reply {
                reply::Status::One(s) => print_status(&s),
                reply::Status::All { migrations } => migrations.iter().for_each(print_status),
            }
            Ok(())
        }
        CtlCommand::Monitor { id } => monitor(g, &mut client, id),
        CtlCommand::Extend { id, seconds } => {
            print_reply(g, &ask(&mut client, request::Extend { id, seconds })?)
        }
        CtlCommand::Cancel { id, no_wait } => super::progress::cancel(g, &mut client, id, no_wait),
        CtlCommand::RollbackWwn {
            lpar: Some(lpar), ..
        } => print_reply(g, &ask(&mut client, request::RollbackWwn { lpar })?),
        CtlCommand::RollbackWwn { lpar: None, .. } => {
            let list = ask(&mut client, request::WwnStatus {})?;
            if g.json {
                return print_reply(g, &list);
            }
            println!(
                "WWN Status List of {}: {} LPAR(s)",
                list.host,
                list.lpars.len()
            );
            for l in &list.lpars {
                let ports: Vec<String> = l
                    .fc_ports
                    .iter()
                    .map(|p| format!("{}/{}", p.wwpn, p.migration_wwpn))
                    .collect();
                println!("  {:<20} {}", l.lpar, ports.join(" "));
            }
            Ok(())
        }
        CtlCommand::Recover { lpar, peer } => super::progress::recover(g, &mut client, lpar, peer),
        CtlCommand::Backup { file } => super::backup::backup(g, &mut client, &file),
        CtlCommand::Restore { file } => super::backup::restore(g, &mut client, &file),
        CtlCommand::History { lpar } => super::moves::history(g, &mut client, lpar),
        CtlCommand::Return(a) => super::moves::return_lpar(g, &mut client, a),
        CtlCommand::Policy(_) => unreachable!("handled before connecting"),
        CtlCommand::Validate(a) => super::validate::validate(g, &mut client, a),
        CtlCommand::ConnectivityTest(a) => super::validate::connectivity_test(g, &mut client, a),
        CtlCommand::Rehearse(a) => super::validate::rehearse(g, &mut client, a),
    }
}

fn print_lpars(reply: &reply::LparList) {
    println!(
        "{:<20} {:<16} {:>5} {:>10} {:>13}  program",
        "LPAR", "state", "vCPUs", "memory", "service ratio"
    );
    for l in &reply.lpars {
        println!(
            "{:<20} {:<16} {:>5} {:>10} {:>5} ({:>3.0}%)  {}",
            l.name,
            l.state.label(),
            l.vcpus,
            format_size(l.memory_bytes),
            l.service_ratio,
            l.service_share_percent,
            l.program
        );
    }
    if let Some(line) = super::progress::requiring_recovery_line(&reply.lpars) {
        println!("{line}");
    }
}

fn print_status(s: &reply::MigrationStatus) {
    println!(
        "migration {} {} ({}, peer {}): Stage = 0x{:04x}: {}; remaining {} of {}, {}/s",
        s.migration,
        s.lpar,
        s.side,
        s.peer,
        s.stage,
        s.stage_text,
        format_size(s.remaining_bytes),
        format_size(s.memory_bytes),
        format_size(s.rate_bytes_per_s as u64),
    );
    if let Some(e) = &s.error {
        println!("  {e}");
    }
}

/// `lpar console`: the console from its start; with `follow`, then what
/// the guest prints next, polled.
fn console(client: &mut Client, name: &str, follow: bool) -> Result<(), Emg> {
    use std::io::Write;
    let mut offset = 0;
    loop {
        let reply = client.request(request::LparConsole {
            name: name.to_string(),
            offset,
        })?;
        let next = reply.next_offset;
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(reply.text.as_bytes());
        let _ = out.flush();
        let caught_up = next >= reply.size;
        offset = next;
        if caught_up {
            if !follow {
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }
}
