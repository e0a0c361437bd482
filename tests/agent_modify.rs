//! `moverctl lpar modify` and the device arguments of `lpar create`: an
//! LPAR's CPUs, memory and devices change only while it is deactivated, so
//! the manual's workaround works (Shutdown migration without activation,
//! change it at the destination, activate it); NICs (segment, VLAN, MAC
//! mode) and FC ports with pinned vfcIDs come from the command line.

mod agent_common;

use agent_common::{Agent, Scratch, stderr};
use lpar_mover::state::DeviceState;
use serde_json::Value;

const FC: &str = "50:06:0e:80:12:34:56:01/50:06:0e:80:12:34:56:81";

fn devices(agent: &Agent, lpar: &str) -> DeviceState {
    let bytes =
        std::fs::read(agent.state_dir.join("lpars").join(lpar).join("devices.bin")).unwrap();
    DeviceState::decode(&bytes).unwrap()
}

fn shape(l: &Value) -> (u64, u64, String) {
    (
        l["vcpus"].as_u64().unwrap(),
        l["memory_bytes"].as_u64().unwrap(),
        l["state"].as_str().unwrap().to_string(),
    )
}

#[test]
fn an_lpar_changes_only_deactivated_so_the_manuals_workaround_works() {
    let scratch = Scratch::new("modify");
    let a = Agent::start(&scratch, "hostA", &["--memory", "256MiB"]);
    let b = Agent::start(&scratch, "hostB", &["--memory", "256MiB"]);
    a.ctl_json(&[
        "lpar",
        "create",
        "web1",
        "--vcpus",
        "2",
        "--memory",
        "64MiB",
        "--program",
        "idle",
    ]);
    a.ctl_json(&["lpar", "activate", "web1"]);

    // Activated: refused, and the refusal names the manual's way.
    let out = a.ctl(&["lpar", "modify", "web1", "--vcpus", "1"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let e = stderr(&out);
    assert!(e.contains("The specified LPAR is activated."), "{e}");
    assert!(e.contains("--mode shutdown"), "{e}");
    assert_eq!(shape(&a.lpar("web1")), (2, 64 << 20, "Act".into()));

    // The workaround: Shutdown mode without activation, change, activate.
    a.ctl_json(&["migrate", "web1", "--to", &b.addr, "--mode", "shutdown"]);
    // An identity of its own (the sim's default UUID is the same for
    // every LPAR), read by the agent after a restart.
    let mut b = b;
    let path = b.state_dir.join("lpars/web1/devices.bin");
    let mut d = devices(&b, "web1");
    d.firmware.uuid = *b"modify-uuid-0001";
    d.firmware.nvram[0] = 0x5a;
    std::fs::write(&path, d.encode().unwrap()).unwrap();
    b.restart();
    let identity = devices(&b, "web1").firmware;
    let l = b.ctl_json(&[
        "lpar",
        "modify",
        "web1",
        "--vcpus",
        "1",
        "--memory",
        "96MiB",
        "--program",
        "hot:1MiB",
    ]);
    assert_eq!(shape(&l), (1, 96 << 20, "Dea".into()), "{l}");
    assert_eq!(l["program"], "hot:1MiB");
    // Its identities (UUID, NVRAM) stay with it.
    assert_eq!(devices(&b, "web1").firmware, identity);
    // More memory than the host has beside its other LPARs: the manual's
    // "not enough memory", and nothing changes.
    let out = b.ctl(&["lpar", "modify", "web1", "--memory", "512MiB"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not enough memory"),
        "{}",
        stderr(&out)
    );
    let out = b.ctl(&["lpar", "modify", "web1", "--vcpus", "999"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(shape(&b.lpar("web1")), (1, 96 << 20, "Dea".into()));
    b.ctl_json(&["lpar", "activate", "web1"]);
    let l = b.lpar("web1");
    assert_eq!(shape(&l), (1, 96 << 20, "Act".into()));
    assert_eq!(l["running"], true);
    // As persisted.
    b.restart();
    assert_eq!(shape(&b.lpar("web1")).0, 1);
}

#[test]
fn lpar_create_and_modify_take_nics_and_fc_ports_with_pinned_vfc_ids() {
    let scratch = Scratch::new("modify-dev");
    let a = Agent::start(&scratch, "hostA", &[]);
    let l = a.ctl_json(&[
        "lpar",
        "create",
        "db1",
        "--memory",
        "16MiB",
        "--nic",
        "seg-a,vlan=10",
        "--nic",
        "seg-b,vlan-mode=untag,vlan=20,mac=02:00:00:00:10:01",
        "--fc-port",
        &format!("{FC},port=1,vfc-id=7"),
    ]);
    let nics = l["nics"].as_array().unwrap();
    assert_eq!(nics.len(), 2, "{l}");
    assert_eq!(
        (
            &nics[0]["segment"],
            &nics[0]["vlan_mode"],
            &nics[0]["vlan_id"]
        ),
        (&"seg-a".into(), &"Tag".into(), &10.into())
    );
    // MAC mode auto: from the MAC seed, not marked manual; by hand: marked.
    assert_eq!(nics[0]["mac_set_manually"], false);
    assert_ne!(nics[0]["mac"], nics[1]["mac"]);
    assert_eq!(
        (
            &nics[1]["mac"],
            &nics[1]["mac_set_manually"],
            &nics[1]["vlan_mode"]
        ),
        (&"02:00:00:00:10:01".into(), &true.into(), &"Untag".into())
    );
    assert_eq!(
        (&l["fc_ports"][0]["port"], &l["fc_ports"][0]["vfc_id"]),
        (&1.into(), &7.into()),
        "{l}"
    );
    // The device state the LPAR runs with carries them.
    let d = devices(&a, "db1");
    assert_eq!(d.nics.len(), 2);
    assert_eq!(d.fc_hbas[0].wwpn.to_string(), "50:06:0e:80:12:34:56:01");

    // Validation's checks apply at creation: two NICs with one MAC.
    let out = a.ctl(&[
        "lpar",
        "create",
        "bad1",
        "--memory",
        "16MiB",
        "--nic",
        "seg-a,mac=02:00:00:00:10:01",
        "--nic",
        "seg-a,mac=02:00:00:00:10:01",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));

    // Modify replaces the lists; --no-fc-ports removes them.
    let l = a.ctl_json(&["lpar", "modify", "db1", "--nic", "seg-c", "--no-fc-ports"]);
    assert_eq!(l["nics"].as_array().map(Vec::len), Some(1), "{l}");
    assert_eq!(l["nics"][0]["segment"], "seg-c");
    assert_eq!(l["fc_ports"], serde_json::json!([]));
    assert_eq!(devices(&a, "db1").nics.len(), 1);
    assert!(devices(&a, "db1").fc_hbas.is_empty());
}

/// The service ratio migrates as it is, but means a share among the
/// destination's activated LPARs (the manual's "Service ratio after
/// migration"): `lpar show` gives that share, and `lpar modify`
/// recomputes it there; ratios outside 1..=999 are refused.
#[test]
fn the_service_ratio_moves_as_it_is_and_is_a_share_among_the_destinations_lpars() {
    let scratch = Scratch::new("ratio");
    let a = Agent::start(&scratch, "hostA", &["--memory", "256MiB"]);
    let b = Agent::start(&scratch, "hostB", &["--memory", "256MiB"]);
    let share = |l: &Value| l["service_share_percent"].as_f64().unwrap().round() as u64;
    let create = |agent: &Agent, name: &str, ratio: &str| {
        agent.ctl_json(&[
            "lpar",
            "create",
            name,
            "--memory",
            "16MiB",
            "--program",
            "idle",
            "--service-ratio",
            ratio,
        ])
    };
    // On B, an activated LPAR with ratio 300 holds the shared CPUs.
    create(&b, "busy", "300");
    b.ctl_json(&["lpar", "activate", "busy"]);
    assert_eq!(share(&b.lpar("busy")), 100);

    // On A, web1 with ratio 100 alone: all of A's shared CPUs.
    let l = create(&a, "web1", "100");
    assert_eq!(
        (l["service_ratio"].as_u64(), share(&l)),
        (Some(100), 100),
        "{l}"
    );
    a.ctl_json(&["lpar", "activate", "web1"]);
    a.ctl_json(&["migrate", "web1", "--to", &b.addr, "--mode", "shutdown"]);

    // On B the same ratio is a quarter: 100 / (100 + 300).
    let l = b.lpar("web1");
    assert_eq!(
        (l["service_ratio"].as_u64(), share(&l)),
        (Some(100), 25),
        "{l}"
    );
    // Recomputed at the destination (deactivated, as the workaround).
    let l = b.ctl_json(&["lpar", "modify", "web1", "--service-ratio", "300"]);
    assert_eq!(
        (l["service_ratio"].as_u64(), share(&l)),
        (Some(300), 50),
        "{l}"
    );
    b.ctl_json(&["lpar", "activate", "web1"]);
    assert_eq!(share(&b.lpar("busy")), 50);

    // Out of range: refused, nothing changes.
    create(&b, "spare", "5");
    for (args, what) in [
        (
            vec![
                "lpar",
                "create",
                "x",
                "--memory",
                "16MiB",
                "--service-ratio",
                "0",
            ],
            "create 0",
        ),
        (
            vec!["lpar", "modify", "spare", "--service-ratio", "1000"],
            "modify 1000",
        ),
    ] {
        let out = b.ctl(&args);
        assert_ne!(out.status.code(), Some(0), "{what}");
        assert!(
            stderr(&out).contains("service ratio"),
            "{what}: {}",
            stderr(&out)
        );
    }
    assert_eq!(b.lpar("spare")["service_ratio"].as_u64(), Some(5));
}
