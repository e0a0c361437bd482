//! A property over the whole management protocol: typed requests of every
//! command, with hostile field values (huge and zero numbers, odd names,
//! path traversal, bad addresses, nonsense configurations), sent to live
//! `moverd serve` agents. Each request must get a reply (a result or an
//! EMG), the agents must keep answering and stay alive, and afterwards a
//! fresh live migration between them must still succeed.
//!
//! `HOSTILE_CASES` sets the number of requests (default 160).

mod agent_common;

use agent_common::{Agent, Conn, Scratch, TOKEN, define_running, wait_for};
use lpar_mover::agent::config::{AgentConfig, ServeArgs};
use lpar_mover::control::{COMMANDS, Command, RequestLine};
use lpar_mover::control::{
    HistoryOutcome as Outcome, HistoryRecord as Record, HostFacts, MigrationMode as Mode, Side,
};
use lpar_mover::partition::{DeviceMode, FcPortConfig, LparConfig, NicConfig};
use lpar_mover::state::{MacAddress, VlanMode, Wwpn};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};
use std::time::Duration;

fn names() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec!["base", "fuzz1", "fuzz2"]).prop_map(String::from),
        6 => prop::sample::select(vec![
            "", ".", "..", "../x", "../../journal", "../../../../tmp/evil", "a/b", "/etc",
            "NO_NAME", "x\u{0}y", "ℓpar", "-", "base\n", " base",
        ])
        .prop_map(String::from),
        1 => (1usize..6000).prop_map(|n| "y".repeat(n)),
        1 => "\\PC{0,40}",
    ]
}

fn numbers() -> impl Strategy<Value = u64> {
    prop_oneof![
        3 => prop::sample::select(vec![
            0,
            1,
            2,
            3,
            60,
            4096,
            4097,
            16 << 20,
            u64::from(u32::MAX),
            1 << 40,
            u64::MAX - 1,
            u64::MAX,
        ]),
        1 => any::<u64>(),
    ]
}

fn maybe<T: std::fmt::Debug + Clone>(
    s: impl Strategy<Value = T>,
) -> impl Strategy<Value = Option<T>> {
    prop::option::of(s)
}

fn configs() -> impl Strategy<Value = LparConfig> {
    (
        names(),
        prop::sample::select(vec![0u32, 1, 2, 65, u32::MAX]),
        prop::sample::select(vec![0u64, 4096, 4097, 16 << 20, 1 << 40, u64::MAX]),
        prop::sample::select(vec!["idle", "hot:1MiB", "sweep", "bogus:", "hot:99999GiB"]),
        maybe((
            names(),
            any::<[u8; 6]>(),
            prop::sample::select(vec![0u16, 4094, 4095, u16::MAX]),
        )),
        maybe((
            any::<u16>(),
            maybe(any::<u16>()),
            any::<u64>(),
            any::<u64>(),
        )),
    )
        .prop_map(|(name, vcpus, memory_bytes, program, nic, fc)| LparConfig {
            name,
            number: 0,
            vcpus,
            memory_bytes,
            program: program.to_string(),
            nics: nic
                .map(|(segment, mac, vlan_id)| NicConfig {
                    segment,
                    mode: DeviceMode::Shared,
                    mac: MacAddress(mac),
                    mac_set_manually: false,
                    vlan_mode: VlanMode::Undef,
                    vlan_id,
                })
                .into_iter()
                .collect(),
            fc_ports: fc
                .map(|(port, vfc_id, w, m)| FcPortConfig {
                    port,
                    mode: DeviceMode::Shared,
                    vfc_id,
                    wwpn: Wwpn::from_u64(w),
                    migration_wwpn: Wwpn::from_u64(m),
                })
                .into_iter()
                .collect(),
            kernel: None,
            cmdline: None,
            usb: lpar_mover::state::UsbAssignment::Unassigned,
            // 0 and over 999 too: out-of-range ratios must be refused.
            service_ratio: (vcpus as u16).wrapping_mul(37),
            memory_backing: match vcpus % 2 {
                0 => lpar_mover::partition::MemoryBacking::Reserved,
                _ => lpar_mover::partition::MemoryBacking::OnDemand,
            },
        })
}

fn records() -> impl Strategy<Value = Vec<Record>> {
    prop::collection::vec(
        (names(), names(), numbers(), numbers(), maybe(names())),
        0..3,
    )
    .prop_map(|rs| {
        rs.into_iter()
            .map(|(key, lpar, started_ns, ended_ns, address)| Record {
                key,
                lpar,
                mode: Mode::Live,
                side: Side::Source,
                recorded_by: "hostX".into(),
                source_agent: "hostX".into(),
                source_address: address.clone(),
                destination_agent: "hostA".into(),
                destination_address: address,
                started_ns,
                ended_ns,
                outcome: Outcome::Failed,
                error: None,
                suspension_ms: Some(f64::MAX),
                source_number: Some(u32::MAX),
                destination_number: None,
            })
            .collect()
    })
}

/// Every field a command may need, drawn at once.
#[derive(Clone, Debug)]
struct Bag {
    names: (String, String),
    numbers: (u64, u64, u64),
    options: (Option<u64>, Option<u64>, Option<u64>),
    flags: (bool, bool),
    to: String,
    path: Option<String>,
    streams: usize,
    config: LparConfig,
    text: String,
    records: Vec<Record>,
    mode: Mode,
}

fn bags(addresses: Vec<String>) -> impl Strategy<Value = Bag> {
    let to = prop_oneof![
        3 => prop::sample::select(addresses),
        2 => prop::sample::select(vec![
            "127.0.0.1:1", "/nonexistent/moverd.sock", "", "hostonly", "127.0.0.1:99999", ":",
        ])
        .prop_map(String::from),
    ];
    let text = prop_oneof![
        prop::sample::select(vec!["", "zz", "00", TOKEN, "x"]).prop_map(String::from),
        prop::collection::vec(any::<u8>(), 0..64)
            .prop_map(|b| b.iter().map(|x| format!("{x:02x}")).collect()),
    ];
    (
        (names(), names()),
        (numbers(), numbers(), numbers()),
        (maybe(numbers()), maybe(numbers()), maybe(numbers())),
        (any::<bool>(), any::<bool>()),
        to,
        maybe(prop_oneof![Just("mig".to_string()), names()]),
        prop::sample::select(vec![0usize, 1, 4, 64, 65, usize::MAX]),
        configs(),
        text,
        records(),
        prop_oneof![Just(Mode::Live), Just(Mode::Shutdown)],
    )
        .prop_map(
            |(names, numbers, options, flags, to, path, streams, config, text, records, mode)| {
                Bag {
                    names,
                    numbers,
                    options,
                    flags,
                    to,
                    path,
                    streams,
                    config,
                    text,
                    records,
                    mode,
                }
            },
        )
}

/// The facts of a host, with a hostile agent name.
fn facts(name: &str) -> HostFacts {
    let config = AgentConfig::load(&ServeArgs {
        name: Some("hostX".into()),
        state_dir: Some("/nonexistent".into()),
        token_file: Some("/nonexistent".into()),
        ..ServeArgs::default()
    })
    .unwrap();
    let mut f = config.facts();
    f.agent = name.to_string();
    f
}

/// Command number `i` (in [`COMMANDS`] order) filled from `b`.
fn command(i: usize, b: Bag) -> Command {
    let (n1, n2) = b.names;
    let (u1, u2, _u3) = b.numbers;
    let (o1, o2, o3) = b.options;
    let (f1, f2) = b.flags;
    match i {
        0 => Command::Authenticate { token: b.text },
        1 => Command::LparCreate {
            name: n1,
            vcpus: b.config.vcpus,
            memory_bytes: b.config.memory_bytes,
            program: b.config.program,
            nics: b.config.nics,
            fc_ports: b.config.fc_ports,
            kernel: f1.then(|| b.text.clone()),
            cmdline: f2.then(|| b.text.clone()),
            usb: f1.then_some(lpar_mover::state::UsbAssignment::Running),
            service_ratio: f2.then_some(b.config.service_ratio),
            memory_backing: f1.then_some(b.config.memory_backing),
        },
        2 => Command::LparList {},
        3 => Command::LparShow { name: n1 },
        4 => Command::LparActivate { name: n1 },
        5 => Command::LparDeactivate { name: n1 },
        6 => Command::LparDelete { name: n1 },
        7 => Command::Migrate {
            lpar: n1,
            to: b.to,
            max_suspend_ms: o1,
            bandwidth: o2,
            streams: Some(b.streams),
            timeout_s: o3,
            path: b.path,
            insecure_plaintext: false,
        },
        8 => Command::Status { id: o1 },
        9 => Command::Extend {
            id: u1 % 8,
            seconds: u2,
        },
        10 => Command::Cancel { id: u1 % 8 },
        11 => Command::PrepareIncoming {
            config: b.config,
            streams: b.streams,
            path: b.path,
            source_agent: n2,
            source_migration: u1,
            source_address: Some(b.to),
            history_key: Some(b.text),
            history: b.records,
        },
        12 => Command::AbandonIncoming {
            migration: u1 % 8,
            source_agent: n2,
            reason: b.text.clone(),
        },
        13 => Command::Recover {
            lpar: n1,
            peer: Some(b.to),
        },
        14 => Command::JournalRead { lpar: n1 },
        15 => Command::RecoverResolve {
            lpar: n1,
            keep: f1,
            leave_deactivated: f2,
            journal: None,
        },
        16 => Command::MigrateShutdown {
            lpar: n1,
            to: b.to,
            activate_destination: f1,
            shutdown_timeout_s: o1,
        },
        17 => Command::ReceiveShutdown {
            config: b.config,
            device_state: b.text,
            activate: f1,
            source_agent: n2,
            source_migration: u1,
            source_address: f2.then_some(b.to),
            history_key: None,
            history: Vec::new(),
        },
        18 => Command::RollbackWwn { lpar: n1 },
        19 => Command::History {
            lpar: f1.then_some(n1),
        },
        20 => Command::HostResources {},
        21 => Command::HistoryRecord { records: b.records },
        22 => Command::Validate {
            lpar: n1,
            to: b.to,
            mode: b.mode,
            path: b.path,
        },
        23 => Command::ConnectivityTest {
            to: b.to,
            path: b.path,
        },
        24 => Command::Rehearse {
            lpar: n1,
            to: b.to,
            mode: b.mode,
            path: b.path,
        },
        25 => Command::ValidateIncoming {
            config: b.config,
            mode: b.mode,
            source: facts(&n2),
            path: b.path,
            populated_bytes: Some(u2),
        },
        26 => Command::ConnectivityIncoming {
            path: b.path,
            streams: b.streams,
        },
        27 => Command::RehearseIncoming { config: b.config },
        28 => Command::LparConsole {
            name: n1,
            offset: u2,
        },
        29 => Command::WwnStatus {},
        30 => Command::LparModify {
            name: n1,
            vcpus: f1.then_some(b.config.vcpus),
            memory_bytes: f2.then_some(b.config.memory_bytes),
            program: f1.then(|| b.config.program.clone()),
            nics: f2.then(|| b.config.nics.clone()),
            fc_ports: f1.then(|| b.config.fc_ports.clone()),
            usb: f2.then_some(lpar_mover::state::UsbAssignment::Assigned),
            service_ratio: f1.then_some(b.config.service_ratio),
        },
        31 => Command::Backup {},
        32 => Command::Restore {
            backup: lpar_mover::control::reply::AgentBackup {
                format: (u1 % 2) as u32,
                host: n2,
                taken_unix_s: u2,
                lpars: vec![lpar_mover::control::reply::BackupLpar {
                    name: n1,
                    state: lpar_mover::control::LparState::Dea,
                    config: b.config,
                    vfc_ids: Vec::new(),
                }],
            },
        },
        33 => Command::HostInfo {},
        _ => unreachable!("{} commands", COMMANDS.len()),
    }
}

fn alive(agent: &mut Agent) {
    assert!(
        agent.child.try_wait().unwrap().is_none(),
        "agent {} died; its log:\n{}",
        agent.name,
        agent.log()
    );
}

#[test]
fn hostile_typed_requests_get_answers_and_leave_the_agents_able_to_migrate() {
    let scratch = Scratch::new("hostile");
    let mut a = Agent::start(&scratch, "hostA", &["--memory", "256MiB"]);
    let mut b = Agent::start(&scratch, "hostB", &["--memory", "256MiB"]);
    define_running(&a, "base", "16MiB", "hot:1MiB");
    let cases = std::env::var("HOSTILE_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(160);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let seen: Vec<std::sync::atomic::AtomicBool> =
        COMMANDS.iter().map(|_| Default::default()).collect();
    let addresses = vec![a.addr.clone(), b.addr.clone()];
    let strategy = (0..COMMANDS.len(), any::<bool>(), bags(addresses.clone()));
    let (a_addr, b_addr) = (a.addr.clone(), b.addr.clone());
    let check = |i: usize, to_b: bool, bag: Bag| -> Result<(), TestCaseError> {
        let command = command(i, bag);
        seen[i].store(true, std::sync::atomic::Ordering::Relaxed);
        let request = RequestLine { id: 7, command };
        let line = request.encode();
        // Every command is the one its number says (and all are covered).
        let v: Value = serde_json::from_str(&line).unwrap();
        prop_assert_eq!(v["execute"].as_str(), Some(COMMANDS[i]));
        let mut c = Conn::open(if to_b { &b_addr } else { &a_addr });
        c.greeting();
        let r = c.request(json!({"id": 0, "execute": "authenticate",
            "arguments": {"token": TOKEN}}));
        prop_assert!(r.get("return").is_some(), "{}", r);
        let r = c.request(v);
        prop_assert!(
            r.get("return").is_some() || r["error"]["message"].is_string(),
            "{} → {}",
            line,
            r
        );
        if r["error"]["cause"] == 0x1A {
            return Err(TestCaseError::fail(format!("internal error: {line} → {r}")));
        }
        // The agent still answers a plain request (a fresh connection: a
        // wrong token closes this one).
        let mut c = Conn::open(if to_b { &b_addr } else { &a_addr });
        c.greeting();
        c.request(json!({"id": 0, "execute": "authenticate", "arguments": {"token": TOKEN}}));
        let r = c.request(json!({"id": 1, "execute": "lpar-list"}));
        prop_assert!(r["return"]["lpars"].is_array(), "after {}: {}", line, r);
        Ok(())
    };
    let mut result = runner
        .run(&strategy, |(i, to_b, bag)| check(i, to_b, bag))
        .map_err(|e| e.to_string());
    // Every command is tried: one the random draw missed (likely enough
    // with 32 commands in 160 cases) gets a random case of its own.
    for i in 0..COMMANDS.len() {
        if result.is_err() {
            break;
        }
        if !seen[i].load(std::sync::atomic::Ordering::Relaxed) {
            let bag = bags(addresses.clone())
                .new_tree(&mut runner)
                .expect("a bag")
                .current();
            result = check(i, i % 2 == 1, bag).map_err(|e| format!("{}: {e}", COMMANDS[i]));
        }
    }
    alive(&mut a);
    alive(&mut b);
    if let Err(e) = result {
        panic!("{e}\nhostA log:\n{}\nhostB log:\n{}", a.log(), b.log());
    }
    let never: Vec<&str> = COMMANDS
        .iter()
        .zip(&seen)
        .filter(|(_, s)| !s.load(std::sync::atomic::Ordering::Relaxed))
        .map(|(c, _)| *c)
        .collect();
    assert!(never.is_empty(), "commands never drawn: {never:?}");

    // Whatever the requests started ends: no LPAR stays migrating.
    for agent in [&a, &b] {
        wait_for(
            "the hostile migrations to end",
            Duration::from_secs(120),
            || {
                agent.ctl_json(&["lpar", "list"])["lpars"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|l| l["state"] != "migrating")
            },
        );
    }
    assert!(!a.log().contains("panicked") && !b.log().contains("panicked"));

    // A fresh migration still succeeds.
    for l in b.lpar_names() {
        b.ctl(&["lpar", "deactivate", &l]);
        b.ctl(&["lpar", "delete", &l]);
    }
    a.ctl(&["lpar", "deactivate", "fresh1"]);
    a.ctl(&["lpar", "delete", "fresh1"]);
    define_running(&a, "fresh1", "16MiB", "hot:1MiB");
    let r = a.ctl_json(&["migrate", "fresh1", "--to", &b.addr]);
    assert_eq!(r["report"]["source"]["verified"], true, "{r}");
    assert_eq!(b.lpar("fresh1")["state"], "Act");
    alive(&mut a);
    alive(&mut b);
}
