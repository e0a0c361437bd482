//! Validation, connectivity test and rehearsal between `moverd serve`
//! processes started from crafted TOML configurations, driven through
//! `moverctl` and the protocol: every checklist item fails on a
//! configuration made to break it (and only that item), a sound pair
//! passes, the connectivity test measures the real migration path, a
//! rehearsal leaves nothing behind, and `migrate` is refused (exit 1) by a
//! failing item before anything moves.

mod agent_common;

use agent_common::{Agent, Scratch, next_path_octet, stderr};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicU32, Ordering};

/// One host's configuration file, field by field.
#[derive(Clone)]
struct Host {
    name: String,
    listen: String,
    cpus: u32,
    memory: &'static str,
    fc_pool: Vec<u32>,
    segments: Vec<&'static str>,
    consoles: u32,
    /// The migration path's address and VLAN; `None`: no path.
    path: Option<(String, Option<u16>)>,
    hvm: &'static str,
    tz: &'static str,
    ntp: Vec<&'static str>,
    /// Where its state lives (default: a directory of the scratch).
    state_dir: Option<std::path::PathBuf>,
    /// Run it in this network namespace (a test host).
    netns: Option<String>,
}

impl Host {
    fn new(name: &str) -> Host {
        Host {
            name: name.into(),
            listen: "127.0.0.1:0".into(),
            cpus: 4,
            memory: "1GiB",
            fc_pool: (1..=10).collect(),
            segments: vec!["seg-a", "seg-b"],
            consoles: 16,
            path: Some((format!("127.0.0.{}", next_path_octet()), None)),
            hvm: "Advanced",
            tz: "UTC",
            ntp: vec!["10.0.0.1"],
            state_dir: None,
            netns: None,
        }
    }

    fn toml(&self, scratch: &Scratch, state_dir: &std::path::Path) -> String {
        let mut t = format!(
            "name = {:?}\nlisten = {:?}\ntoken_file = {:?}\nstate_dir = {:?}\npeers = {:?}\n\
             insecure_plaintext_management = true\n\
             [resources]\ncpus = {}\nmemory = {:?}\nfc_ports = [{{ name = \"fc0\", vfc_ids = {:?} }}]\n\
             nic_segments = {:?}\nconsoles = {}\n",
            self.name,
            self.listen,
            scratch.token_file(),
            state_dir,
            agent_common::PEERS,
            self.cpus,
            self.memory,
            self.fc_pool,
            self.segments,
            self.consoles,
        );
        if let Some((addr, vlan)) = &self.path {
            t += &format!("[[paths]]\nname = \"mig\"\naddr = {addr:?}\n");
            if let Some(v) = vlan {
                t += &format!("vlan = {v}\n");
            }
        }
        t += &format!(
            "[identity]\nhvm_model = {:?}\ntime_zone = {:?}\nntp_servers = {:?}\n",
            self.hvm, self.tz, self.ntp
        );
        t
    }

    /// Writes the file and starts `moverd serve --config <file>`.
    fn start(&self, scratch: &Scratch) -> Agent {
        static N: AtomicU32 = AtomicU32::new(0);
        let label = format!("{}-{}", self.name, N.fetch_add(1, Ordering::Relaxed));
        let state_dir = self
            .state_dir
            .clone()
            .unwrap_or_else(|| scratch.0.join(&label));
        let file = scratch.0.join(format!("{label}.toml"));
        std::fs::write(&file, self.toml(scratch, &state_dir)).unwrap();
        let args = vec![
            "serve".into(),
            "--config".into(),
            file.display().to_string(),
        ];
        let program = match &self.netns {
            Some(ns) => {
                let mut c = std::process::Command::new("ip");
                c.args(["netns", "exec", ns, env!("CARGO_BIN_EXE_moverd")]);
                c
            }
            None => std::process::Command::new(env!("CARGO_BIN_EXE_moverd")),
        };
        Agent::spawn_via(&label, program, args, state_dir, scratch.token_file())
    }
}

/// The LPAR of the cases: one shared NIC on seg-a, one shared FC port on
/// physical port 0, running.
fn lpar(name: &str) -> Value {
    json!({
        "name": name, "vcpus": 2, "memory_bytes": 64u64 << 20, "program": "idle",
        "nics": [{"segment": "seg-a", "mode": "shared", "mac": "02:00:00:00:00:01"}],
        "fc_ports": [fc(1)],
    })
}

fn fc(n: u8) -> Value {
    json!({"port": 0, "mode": "shared",
           "wwpn": format!("50:06:0e:80:00:00:00:{n:02x}"),
           "migration_wwpn": format!("50:06:0e:80:00:01:00:{n:02x}")})
}

fn create(agent: &Agent, config: &Value, activate: bool) {
    let mut c = agent.connect();
    let r = c.request(json!({"id": 1, "execute": "lpar-create", "arguments": config}));
    assert!(r.get("return").is_some(), "{r}");
    if activate {
        let r = c.request(json!({"id": 2, "execute": "lpar-activate",
                                 "arguments": {"name": config["name"]}}));
        assert!(r.get("return").is_some(), "{r}");
    }
}

/// `moverctl --json validate`: exit code and report.
fn validate(src: &Agent, dst: &Agent, lpar: &str, mode: &str) -> (Option<i32>, Value) {
    let out = src.ctl(&[
        "--json", "validate", lpar, "--to", &dst.addr, "--mode", mode,
    ]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "validate printed no JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            stderr(&out)
        )
    });
    (out.status.code(), v)
}

fn failing(report: &Value) -> Vec<(String, String)> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["outcome"] == "fail")
        .map(|c| {
            (
                c["item"].as_str().unwrap().to_string(),
                c["side"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn item<'a>(report: &'a Value, item: &str, side: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["item"] == item && c["side"] == side)
        .unwrap_or_else(|| panic!("no item {item} ({side}) in {report}"))
}

/// One crafted configuration: what is changed, and the one item (and
/// side) that must fail, with a word its message must carry.
struct Case {
    item: &'static str,
    side: &'static str,
    mode: &'static str,
    expect: &'static str,
    craft: fn(&mut Host, &mut Host, &mut Value),
    activate: bool,
    /// Run once both agents are up and the LPAR is defined.
    then: fn(&Scratch, &mut Agent, &mut Agent),
}

fn none(_: &mut Host, _: &mut Host, _: &mut Value) {}
fn nothing(_: &Scratch, _: &mut Agent, _: &mut Agent) {}

fn cases() -> Vec<Case> {
    let c = |item, side, expect, craft| Case {
        item,
        side,
        mode: "live",
        expect,
        craft,
        activate: true,
        then: nothing,
    };
    vec![
        c("lpar-name", "source", "'NO_NAME'", |_, _, l| {
            l["name"] = json!("NO_NAME")
        }),
        Case {
            activate: false,
            ..c("lpar-state", "source", "is Dea, the mode needs Act", none)
        },
        Case {
            mode: "shutdown",
            then: |_, src, _| {
                // The LPAR's files vanish while its agent is down: Fai.
                src.kill9();
                std::fs::remove_dir_all(src.state_dir.join("lpars/web1")).unwrap();
                src.restart();
            },
            ..c("lpar-state", "source", "corrupted LPAR", none)
        },
        c("nic-mode", "source", "dedicated devices", |_, _, l| {
            l["nics"][0]["mode"] = json!("dedicated")
        }),
        c("nic-mac", "source", "changed manually", |_, _, l| {
            l["nics"][0]["mac_set_manually"] = json!(true)
        }),
        c("fc-mode", "source", "dedicated devices", |_, _, l| {
            l["fc_ports"][0]["mode"] = json!("dedicated")
        }),
        c("fc-count", "source", "8 FC ports", |_, _, l| {
            l["fc_ports"] = (1..=8).map(fc).collect();
        }),
        c("migration-path", "source", "Src-Blade", |s, _, _| {
            s.path = None
        }),
        c("migration-path", "destination", "Dst-Blade", |_, d, _| {
            d.path = None
        }),
        c(
            "migration-path",
            "source",
            "collides with the Management Path Settings",
            |s, _, _| {
                let (addr, _) = s.path.clone().unwrap();
                s.listen = format!("{addr}:0");
            },
        ),
        c("path-addresses", "destination", "same IP", |s, d, _| {
            d.path = s.path.clone()
        }),
        Case {
            then: |_, _, dst| create(dst, &lpar("web1"), false),
            ..c("lpar-name-unique", "destination", "same LPAR name", none)
        },
        c("different-hosts", "destination", "same host", |s, d, _| {
            d.name = s.name.clone()
        }),
        // Models need not be equal (H:l.2318): an Essential destination
        // alone refuses Concurrent Maintenance.
        c(
            "hvm-model",
            "destination",
            "Essential on hostB does not support live migration",
            |_, d, _| d.hvm = "Essential",
        ),
        c("cpus", "destination", "not free processors", |_, d, _| {
            d.cpus = 1
        }),
        c("memory", "destination", "not enough memory", |_, d, _| {
            d.memory = "32MiB"
        }),
        c("nic-segments", "destination", "VNIC device#0", |_, d, _| {
            d.segments = vec!["seg-b"]
        }),
        c("vfc-ids", "destination", "not enough vfcID", |_, d, _| {
            d.fc_pool = vec![]
        }),
        c("time-zone", "destination", "Asia/Tokyo", |_, d, _| {
            d.tz = "Asia/Tokyo"
        }),
        c("ntp-servers", "destination", "10.0.0.2", |_, d, _| {
            d.ntp = vec!["10.0.0.2"]
        }),
    ]
}

#[test]
fn every_checklist_item_fails_on_a_configuration_crafted_to_break_it() {
    let scratch = Scratch::new("val-cases");
    for case in cases() {
        let what = format!("{} ({}, {} mode)", case.item, case.side, case.mode);
        let mut s = Host::new("hostA");
        let mut d = Host::new("hostB");
        let mut l = lpar("web1");
        (case.craft)(&mut s, &mut d, &mut l);
        let mut src = s.start(&scratch);
        let mut dst = d.start(&scratch);
        create(&src, &l, case.activate);
        (case.then)(&scratch, &mut src, &mut dst);
        let name = l["name"].as_str().unwrap();
        let (code, report) = validate(&src, &dst, name, case.mode);
        assert_eq!(code, Some(1), "{what}: {report}");
        assert_eq!(report["passed"], false, "{what}");
        assert_eq!(
            failing(&report),
            vec![(case.item.to_string(), case.side.to_string())],
            "{what}: exactly this item fails: {report}"
        );
        let c = item(&report, case.item, case.side);
        let e = &c["error"];
        let message = e["message"].as_str().unwrap();
        assert!(message.contains(case.expect), "{what}: {message}");
        assert!(!e["action"].as_str().unwrap().is_empty(), "{what}");
        // The summary names the item and carries the EMG text.
        let emg = report["emg"].as_str().unwrap();
        assert!(emg.starts_with("EMG"), "{emg}");
        assert!(
            emg.contains(&format!("{} ({})", case.item, case.side)),
            "{emg}"
        );
        eprintln!("{what}: {message}");
    }
}

#[test]
fn the_destination_refuses_an_incompatible_build_over_the_protocol() {
    let scratch = Scratch::new("val-build");
    let dst = Host::new("hostB").start(&scratch);
    let mut c = dst.connect();
    let build = lpar_mover::build_identity::BuildIdentity::current();
    let mut source = json!({
        "agent": "hostA", "build": build,
        "identity": {"hvm_model": "Advanced", "time_zone": "UTC", "ntp_servers": ["10.0.0.1"]},
        "paths": [{"name": "mig", "addr": "127.0.0.250"}],
        "management": "127.0.0.1:1",
    });
    let mut config = lpar("web1");
    config["number"] = json!(1);
    let ask = |c: &mut agent_common::Conn, source: &Value| {
        let r = c.request(
            json!({"id": 3, "execute": "validate-incoming", "arguments": {
            "config": config, "mode": "live", "source": source}}),
        );
        r["return"]["checks"].as_array().unwrap().clone()
    };
    let checks = ask(&mut c, &source);
    assert!(checks.iter().all(|c| c["outcome"] != "fail"), "{checks:?}");
    source["build"]["wire_protocol"] = json!(build.wire_protocol + 1);
    let checks = ask(&mut c, &source);
    let failed: Vec<&Value> = checks.iter().filter(|c| c["outcome"] == "fail").collect();
    assert_eq!(failed.len(), 1, "{checks:?}");
    assert_eq!(failed[0]["item"], "build-identity");
    assert!(
        failed[0]["detail"]
            .as_str()
            .unwrap()
            .contains("Incompatible builds"),
        "{failed:?}"
    );
}

#[test]
fn the_destination_refuses_a_source_of_another_backend_with_its_own_emg() {
    let scratch = Scratch::new("val-backend");
    let dst = Host::new("hostB").start(&scratch);
    let mut c = dst.connect();
    let mut source = json!({
        "agent": "hostA", "build": lpar_mover::build_identity::BuildIdentity::current(),
        "identity": {"hvm_model": "Advanced", "time_zone": "UTC", "ntp_servers": ["10.0.0.1"]},
        "paths": [{"name": "mig", "addr": "127.0.0.250"}],
        "management": "127.0.0.1:1",
        "backend": "sim",
    });
    let mut config = lpar("web1");
    config["number"] = json!(1);
    let mut ask = |source: &Value| {
        let r = c.request(
            json!({"id": 3, "execute": "validate-incoming", "arguments": {
            "config": config, "mode": "live", "source": source}}),
        );
        r["return"]["checks"].as_array().unwrap().clone()
    };
    let checks = ask(&source);
    let backend = checks.iter().find(|c| c["item"] == "backend").unwrap();
    assert_eq!(backend["outcome"], "pass", "{checks:?}");
    assert_eq!(backend["detail"], "sim on both", "{checks:?}");
    // The crafted mismatch: a source that hosts its LPARs on KVM.
    source["backend"] = json!("kvm");
    let checks = ask(&source);
    let failed: Vec<&Value> = checks.iter().filter(|c| c["outcome"] == "fail").collect();
    assert_eq!(failed.len(), 1, "{checks:?}");
    assert_eq!(failed[0]["item"], "backend");
    assert_eq!(failed[0]["side"], "destination");
    let e = &failed[0]["error"];
    assert_eq!(e["cause"], 0x1019, "{e}");
    let message = e["message"].as_str().unwrap();
    assert!(message.contains("hostA hosts LPARs on 'kvm'"), "{message}");
    assert!(message.contains("hostB on 'sim'"), "{message}");
    assert!(e["action"].as_str().unwrap().contains("--backend"), "{e}");
    // An older source that does not say runs sim.
    source.as_object_mut().unwrap().remove("backend");
    assert!(ask(&source).iter().all(|c| c["outcome"] != "fail"));
}

#[test]
fn a_sound_pair_passes_in_both_modes_and_a_vlan_lets_the_path_share_the_management_address() {
    let scratch = Scratch::new("val-pass");
    let s = Host::new("hostA");
    let src = s.start(&scratch);
    let dst = Host::new("hostB").start(&scratch);
    create(&src, &lpar("web1"), true);
    let (code, report) = validate(&src, &dst, "web1", "live");
    let checks = report["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 32, "{report}");
    // Every item but the bandwidth and the pre-flight warnings passes; the
    // bandwidth item follows what was measured (how fast a loopback path
    // is on a loaded test machine is the transport_throughput bench's to
    // check, not a test's), the host load what the machine is doing, and
    // the paths name no segment.
    assert!(
        checks
            .iter()
            .filter(|c| !matches!(
                c["item"].as_str(),
                Some("bandwidth" | "host-load" | "path-segment")
            ))
            .all(|c| c["outcome"] == "pass"),
        "{report}"
    );
    assert!(
        checks.iter().all(|c| match c["item"].as_str() {
            Some("host-load") => c["outcome"] == "pass" || c["outcome"] == "warn",
            Some("path-segment") => c["outcome"] == "skip",
            _ => true,
        }),
        "{report}"
    );
    let bits = report["connectivity"]["bits_per_s"].as_f64().unwrap();
    let fast = bits >= lpar_mover::control::MIN_GOODPUT_BITS;
    let bandwidth = item(&report, "bandwidth", "source");
    assert_eq!(
        bandwidth["outcome"],
        if fast { "pass" } else { "fail" },
        "{report}"
    );
    if fast {
        assert_eq!(
            bandwidth["detail"],
            format!("{:.2} Gbit/s measured", bits / 1e9),
            "{report}"
        );
    }
    assert_eq!(code, Some(if fast { 0 } else { 1 }), "{report}");
    assert_eq!(report["passed"], fast, "{report}");
    assert!(
        item(&report, "vfc-ids", "destination")["detail"]
            .as_str()
            .unwrap()
            .contains("[1]"),
        "{report}"
    );

    // Text output: one line per item.
    let out = src.ctl(&["validate", "web1", "--to", &dst.addr]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("pass  destination  time-zone"), "{text}");
    assert!(text.contains("passed: 32 items checked"), "{text}");

    // Shutdown mode: a deactivated LPAR is fine, the live-only items skip.
    create(&src, &lpar("db1"), false);
    let (code, report) = validate(&src, &dst, "db1", "shutdown");
    assert_eq!(code, Some(0), "{report}");
    for (i, side) in [("fc-count", "source"), ("bandwidth", "source")] {
        assert_eq!(item(&report, i, side)["outcome"], "skip", "{report}");
    }

    // The management address may carry the path when the path has a VLAN.
    let mut v = Host::new("hostC");
    let addr = v.path.clone().unwrap().0;
    v.listen = format!("{addr}:0");
    v.path = Some((addr, Some(100)));
    let vsrc = v.start(&scratch);
    create(&vsrc, &lpar("web2"), true);
    let (code, report) = validate(&vsrc, &dst, "web2", "live");
    assert_eq!(code, Some(0), "{report}");
    assert!(
        item(&report, "migration-path", "source")["detail"]
            .as_str()
            .unwrap()
            .contains("vlan 100"),
        "{report}"
    );
}

#[test]
fn the_connectivity_test_measures_the_migration_path() {
    let scratch = Scratch::new("val-conn");
    let src = Host::new("hostA").start(&scratch);
    let d = Host::new("hostB");
    let dst_addr = d.path.clone().unwrap().0;
    let dst = d.start(&scratch);
    let asked = std::time::Instant::now();
    let m = src.ctl_json(&["connectivity-test", "--to", &dst.addr]);
    let wall = asked.elapsed().as_secs_f64();
    eprintln!("connectivity test: {m}");
    assert_eq!(m["destination_agent"], "hostB");
    assert_eq!(m["destination_path"], "mig");
    assert_eq!(m["destination_addr"], dst_addr.as_str());
    let (bytes, seconds) = (m["bytes"].as_u64().unwrap(), m["seconds"].as_f64().unwrap());
    assert!(bytes >= 64 << 20, "{m}");
    // The transfer was timed within the request: it took no longer than
    // the request did, so the rate is at least what the wall clock allows.
    assert!(seconds > 0.0 && seconds <= wall, "{m} within {wall} s");
    let bits = m["bits_per_s"].as_f64().unwrap();
    assert!(bits >= bytes as f64 * 8.0 / wall, "{m} within {wall} s");
    let (min, avg) = (
        m["rtt_min_ms"].as_f64().unwrap(),
        m["rtt_avg_ms"].as_f64().unwrap(),
    );
    assert!(min > 0.0 && min <= avg, "{m}");

    let out = src.ctl(&["connectivity-test", "--to", &dst.addr]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("round trip") && text.contains("Gbit/s"),
        "{text}"
    );

    // A path the source does not have.
    let out = src.ctl(&["connectivity-test", "--to", &dst.addr, "--path", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("Specified NIC was not found (Src-Blade)"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_rehearsal_reserves_and_releases_on_the_destination_and_moves_nothing() {
    let scratch = Scratch::new("val-rehearse");
    let src = Host::new("hostA").start(&scratch);
    let dst = Host::new("hostB").start(&scratch);
    create(&src, &lpar("web1"), true);
    let r = src.ctl_json(&["rehearse", "web1", "--to", &dst.addr]);
    assert_eq!(r["passed"], true, "{r}");
    assert_eq!(r["placeholder"]["released"], true, "{r}");
    assert_eq!(r["placeholder"]["host"], "hostB", "{r}");
    assert_eq!(r["placeholder"]["memory_bytes"], 64u64 << 20, "{r}");
    assert!(r["validation"]["connectivity"]["bytes"].as_u64().unwrap() > 0);
    assert!(dst.lpar_names().is_empty(), "{:?}", dst.lpar_names());
    assert!(!dst.state_dir.join("lpars/web1").exists());
    let l = src.lpar("web1");
    assert_eq!(
        (l["state"].as_str(), l["running"].as_bool()),
        (Some("Act"), Some(true))
    );

    // Text output names the placeholder step.
    let out = src.ctl(&["rehearse", "web1", "--to", &dst.addr]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("rehearsal passed"));
    assert!(dst.lpar_names().is_empty());

    // A failing item: exit 1, no placeholder, nothing left.
    let mut d = Host::new("hostC");
    d.tz = "Asia/Tokyo";
    let bad = d.start(&scratch);
    let out = src.ctl(&["--json", "rehearse", "web1", "--to", &bad.addr]);
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["placeholder"].is_null(), "{v}");
    assert!(v["emg"].as_str().unwrap().contains("time-zone"), "{v}");
    assert!(bad.lpar_names().is_empty());
}

#[test]
fn migrate_is_refused_by_validation_before_anything_moves() {
    let scratch = Scratch::new("val-migrate");
    let src = Host::new("hostA").start(&scratch);
    let mut d = Host::new("hostB");
    d.ntp = vec!["10.9.9.9"];
    let dst = d.start(&scratch);
    create(&src, &lpar("web1"), true);
    let out = src.ctl(&["migrate", "web1", "--to", &dst.addr]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("Validation refused the migration of 'web1'"),
        "{err}"
    );
    assert!(err.contains("ntp-servers (destination)"), "{err}");
    assert!(err.contains("10.9.9.9"), "{err}");
    let l = src.lpar("web1");
    assert_eq!(
        (l["state"].as_str(), l["running"].as_bool()),
        (Some("Act"), Some(true))
    );
    assert!(dst.lpar_names().is_empty());
    // No migration was started.
    let s = src.ctl_json(&["status"]);
    assert!(s["migrations"].as_array().unwrap().is_empty(), "{s}");

    // Fixed, it migrates, and the destination assigned a vfcID from its pool.
    let dst2 = Host::new("hostC").start(&scratch);
    let r = src.ctl_json(&["migrate", "web1", "--to", &dst2.addr]);
    assert_eq!(r["report"]["source"]["verified"], true, "{r}");
    assert_eq!(dst2.lpar("web1")["state"], "Act");
}

/// Unmounts the small tmpfs when dropped.
struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn memory_without_room_for_one_mapping_fails_memory_contiguous() {
    let scratch = Scratch::new("val-contig");
    let dir = scratch.0.join("small-tmpfs");
    std::fs::create_dir_all(&dir).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=48m", "tmpfs"])
        .arg(&dir)
        .output();
    match mounted {
        Ok(o) if o.status.success() => {}
        Ok(o) => lpar_mover::skip!(format!(
            "cannot mount a small tmpfs (needs root): {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => lpar_mover::skip!(format!("no mount command: {e}")),
    }
    let _mount = Mount(dir.clone());
    let src = Host::new("hostA").start(&scratch);
    let mut d = Host::new("hostB");
    // The host memory is ample; the file system that holds LPAR memory is not.
    d.state_dir = Some(dir.join("state"));
    let dst = d.start(&scratch);
    create(&src, &lpar("web1"), true);
    let (code, report) = validate(&src, &dst, "web1", "live");
    assert_eq!(code, Some(1), "{report}");
    assert_eq!(
        failing(&report),
        vec![("memory-contiguous".to_string(), "destination".to_string())],
        "{report}"
    );
    assert_eq!(item(&report, "memory", "destination")["outcome"], "pass");
    let m = item(&report, "memory-contiguous", "destination")["detail"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(m.contains("one mapping of 64 MiB"), "{m}");
    drop(dst);
}

/// `moverctl --json <args>` run inside test host `ns`: exit code, output.
fn ctl_in(ns: &str, agent: &Agent, args: &[&str]) -> (Option<i32>, Value) {
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", ns, env!("CARGO_BIN_EXE_moverctl")])
        .args(["--json", "--agent", &agent.addr, "--token-file"])
        .arg(&agent.token_file)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "moverctl {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            stderr(&out)
        )
    });
    (out.status.code(), v)
}

#[test]
fn live_mode_needs_a_gigabit_path_as_the_connectivity_test_measures_it() {
    use lpar_mover::testbed::{Testbed, skip_reason};
    if let Some(reason) = skip_reason() {
        lpar_mover::skip!(reason);
    }
    let scratch = Scratch::new("val-bandwidth");
    let bed = Testbed::new(2).unwrap();
    let hosts = bed.hosts();
    let spec = |i: usize, name: &str| {
        let mut h = Host::new(name);
        h.listen = format!("{}:7400", hosts[i].mgmt_ip);
        h.path = Some((hosts[i].path_ip.to_string(), None));
        h.netns = Some(hosts[i].netns.clone());
        h
    };
    let src = spec(0, "hostA").start(&scratch);
    let dst = spec(1, "hostB").start(&scratch);
    let ns = hosts[0].netns.clone();
    let (code, v) = ctl_in(&ns, &src, &["lpar", "create", "web1", "--memory", "64MiB"]);
    assert_eq!(code, Some(0), "{v}");
    let (code, v) = ctl_in(&ns, &src, &["lpar", "activate", "web1"]);
    assert_eq!(code, Some(0), "{v}");

    // 200 Mbit/s: refused for live mode, with the figure measured.
    bed.shape_path(200_000_000).unwrap();
    let (code, report) = ctl_in(&ns, &src, &["validate", "web1", "--to", &dst.addr]);
    assert_eq!(code, Some(1), "{report}");
    assert_eq!(
        failing(&report),
        vec![("bandwidth".to_string(), "source".to_string())],
        "{report}"
    );
    let slow = report["connectivity"]["bits_per_s"].as_f64().unwrap();
    eprintln!(
        "path shaped to 200 Mbit/s: measured {:.3} Gbit/s",
        slow / 1e9
    );
    assert!(slow < 0.25e9, "{report}");
    // Shutdown mode has no minimum.
    let (code, report) = ctl_in(
        &ns,
        &src,
        &["validate", "web1", "--to", &dst.addr, "--mode", "shutdown"],
    );
    assert_eq!(code, Some(0), "{report}");

    // 1 Gbit/s passes (the minimum is the line rate less framing).
    bed.shape_path(1_000_000_000).unwrap();
    let (code, m) = ctl_in(&ns, &src, &["connectivity-test", "--to", &dst.addr]);
    assert_eq!(code, Some(0), "{m}");
    eprintln!(
        "path shaped to 1 Gbit/s: measured {:.3} Gbit/s, round trip {:.3} ms",
        m["bits_per_s"].as_f64().unwrap() / 1e9,
        m["rtt_avg_ms"].as_f64().unwrap()
    );
    let (code, report) = ctl_in(&ns, &src, &["validate", "web1", "--to", &dst.addr]);
    assert_eq!(code, Some(0), "{report}");
}

#[test]
fn shutdown_mode_runs_the_checklist_with_no_migration_path_requirement() {
    let scratch = Scratch::new("val-shutdown");
    let src = Host {
        path: None,
        ..Host::new("hostA")
    }
    .start(&scratch);
    let no_vfc = Host {
        path: None,
        fc_pool: vec![],
        ..Host::new("hostB")
    }
    .start(&scratch);
    let roomy = Host {
        path: None,
        ..Host::new("hostC")
    }
    .start(&scratch);
    create(&src, &lpar("sd1"), false);

    // No path on either side: a Shutdown-mode item, skipped with why.
    let (code, report) = validate(&src, &roomy, "sd1", "shutdown");
    assert_eq!(code, Some(0), "{report}");
    for side in ["source", "destination"] {
        let c = item(&report, "migration-path", side);
        assert_eq!(c["outcome"], "skip", "{c}");
        assert!(
            c["detail"]
                .as_str()
                .unwrap()
                .contains("Shutdown mode needs no migration path")
        );
    }
    // Live mode still needs one.
    let (_, live) = validate(&src, &roomy, "sd1", "live");
    assert_eq!(item(&live, "migration-path", "source")["outcome"], "fail");

    // `migrate --mode shutdown` runs the checklist: no free vfcID on hostB
    // refuses it before anything moves (it used to move with vfcID 1).
    let out = src.ctl(&["migrate", "sd1", "--to", &no_vfc.addr, "--mode", "shutdown"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let e = stderr(&out);
    assert!(e.contains("vfc-ids (destination)"), "{e}");
    assert!(!e.contains("migration-path"), "{e}");
    assert_eq!(src.lpar("sd1")["state"], "Dea");
    assert!(no_vfc.lpar_names().is_empty());

    // And with room it moves, without a migration path.
    src.ctl_json(&["migrate", "sd1", "--to", &roomy.addr, "--mode", "shutdown"]);
    assert_eq!(roomy.lpar("sd1")["state"], "Dea");
    assert!(src.lpar_names().is_empty());
}

#[test]
fn with_every_virtual_console_taken_the_lpar_migrates_without_one() {
    let scratch = Scratch::new("val-vc");
    let src = Host::new("hostA").start(&scratch);
    let dst = Host {
        consoles: 1,
        ..Host::new("hostB")
    }
    .start(&scratch);
    let mut other = lpar("other");
    other["nics"] = json!([]);
    other["fc_ports"] = json!([]);
    create(&dst, &other, false);
    create(&src, &lpar("web1"), true);
    // The manual: "when an LPAR migrates onto an HVM which VC consoles are
    // already allocated to 16 LPARs, a VC console isn't allocated to the
    // LPAR" — it migrates, and the item says so.
    let (_, report) = validate(&src, &dst, "web1", "live");
    let c = item(&report, "console", "destination");
    assert_eq!(c["outcome"], "pass", "{c}");
    assert!(
        c["detail"]
            .as_str()
            .unwrap()
            .contains("migrates without a virtual console"),
        "{c}"
    );
    src.ctl_json(&["migrate", "web1", "--to", &dst.addr]);
    assert_eq!(dst.lpar("web1")["state"], "Act");
}

/// The manual's caution about duplicated MACs and WWNs (a reused VNIC
/// System No., or one host restored alone): an LPAR whose MAC or WWPN an
/// LPAR of the destination already holds is refused there, naming both.
#[test]
fn an_lpar_whose_mac_or_wwpn_the_destination_holds_is_refused() {
    let scratch = Scratch::new("val-dup");
    let src = Host::new("hostA").start(&scratch);
    let dst = Host::new("hostB").start(&scratch);
    create(&src, &lpar("web1"), true);

    // The destination's LPAR has web1's MAC, and a WWPN of its own.
    let mut other = lpar("other");
    other["fc_ports"] = json!([fc(9)]);
    create(&dst, &other, false);
    let (code, report) = validate(&src, &dst, "web1", "live");
    assert_ne!(code, Some(0), "{report}");
    let c = item(&report, "identities-unique", "destination");
    assert_eq!(c["outcome"], "fail", "{c}");
    let e = c["error"]["message"].as_str().unwrap().to_string();
    assert!(e.contains("MAC 02:00:00:00:00:01 (held by 'other')"), "{e}");
    assert!(!e.contains("WWPN"), "{e}");

    // Its migration WWPN is web1's WWPN: refused for that too, in shutdown
    // mode as well (the NIC no longer clashes).
    dst.ctl_json(&["lpar", "delete", "other"]);
    let mut other = lpar("other");
    other["nics"] = json!([]);
    other["fc_ports"] = json!([{"port": 0, "mode": "shared",
        "wwpn": "50:06:0e:80:00:00:00:09", "migration_wwpn": "50:06:0e:80:00:00:00:01"}]);
    create(&dst, &other, false);
    let (_, report) = validate(&src, &dst, "web1", "shutdown");
    let c = item(&report, "identities-unique", "destination");
    assert_eq!(c["outcome"], "fail", "{c}");
    let e = c["error"]["message"].as_str().unwrap().to_string();
    assert!(
        e.contains("WWPN 50:06:0e:80:00:00:00:01 (held by 'other')"),
        "{e}"
    );

    // Distinct identities pass.
    dst.ctl_json(&["lpar", "delete", "other"]);
    let mut other = lpar("other");
    other["nics"] = json!([{"segment": "seg-a", "mode": "shared", "mac": "02:00:00:00:00:02"}]);
    other["fc_ports"] = json!([fc(9)]);
    create(&dst, &other, false);
    let (_, report) = validate(&src, &dst, "web1", "live");
    assert_eq!(
        item(&report, "identities-unique", "destination")["outcome"],
        "pass"
    );
}
