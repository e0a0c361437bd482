//! vfcIDs are accounted per host: the vfcID a switchover gives a logical
//! FC port is recorded in the destination's inventory, so the next LPAR
//! moved onto that host (live or in Shutdown mode, before or after an
//! agent restart) gets another one (the manual's "the smallest available
//! number is assigned").

mod agent_common;

use agent_common::{Agent, Scratch};

/// An agent with one shared FC port whose vfcIDs 1–8 are free.
fn fc_agent(scratch: &Scratch, name: &str) -> Agent {
    fc_agent_with(scratch, name, "1, 2, 3, 4, 5, 6, 7, 8")
}

/// An agent with one shared FC port whose pool is `ids`.
fn fc_agent_with(scratch: &Scratch, name: &str, ids: &str) -> Agent {
    let file = scratch.0.join(format!("{name}-fc.toml"));
    std::fs::write(
        &file,
        format!(
            "[resources]\ncpus = 8\nmemory = \"2GiB\"\n\
             fc_ports = [{{ name = \"fc0\", vfc_ids = [{ids}] }}]\n"
        ),
    )
    .unwrap();
    let config = file.display().to_string();
    Agent::start(scratch, name, &["--config", &config])
}

/// A running LPAR with one unpinned logical FC port on physical port 0.
fn fc_lpar(a: &Agent, name: &str, n: u8) {
    let fc = format!("50:06:0e:80:12:34:56:{n:02x}/50:06:0e:80:12:34:57:{n:02x}");
    a.ctl_json(&[
        "lpar",
        "create",
        name,
        "--memory",
        "32MiB",
        "--program",
        "idle",
        "--fc-port",
        &fc,
    ]);
    a.ctl_json(&["lpar", "activate", name]);
}

/// The vfcID of each logical FC HBA in the device state `agent` holds for
/// `lpar` (the sim backend's `devices.bin`): what the port logs in with.
fn device_vfc_ids(agent: &Agent, lpar: &str) -> Vec<u16> {
    let path = agent.state_dir.join("lpars").join(lpar).join("devices.bin");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let state = lpar_mover::state::DeviceState::decode(&bytes).expect("a device state");
    state.fc_hbas.iter().map(|h| h.vfc_id).collect()
}

#[test]
fn lpars_moved_onto_one_host_get_distinct_vfc_ids_live_shutdown_and_after_restart() {
    let scratch = Scratch::new("vfc-ids");
    let a = fc_agent(&scratch, "hostA");
    let c = fc_agent(&scratch, "hostC");
    let mut b = fc_agent(&scratch, "hostB");
    fc_lpar(&a, "f1", 1);
    fc_lpar(&c, "f2", 2);
    fc_lpar(&a, "f3", 3);
    // Each holds the smallest vfcID free where it was defined: f3 comes
    // after f1 on hostA (locally created LPARs are accounted too).
    assert_eq!(device_vfc_ids(&a, "f1"), vec![1]);
    assert_eq!(device_vfc_ids(&c, "f2"), vec![1]);
    assert_eq!(device_vfc_ids(&a, "f3"), vec![2]);
    assert_eq!(a.lpar("f3")["vfc_ids"], serde_json::json!([2]));

    a.ctl_json(&["migrate", "f1", "--to", &b.addr]);
    assert_eq!(device_vfc_ids(&b, "f1"), vec![1]);
    assert_eq!(b.lpar("f1")["vfc_ids"], serde_json::json!([1]));

    // Shutdown mode counts what the live move assigned.
    c.ctl_json(&["migrate", "f2", "--to", &b.addr, "--mode", "shutdown"]);
    assert_eq!(device_vfc_ids(&b, "f2"), vec![2]);
    assert_eq!(b.lpar("f2")["vfc_ids"], serde_json::json!([2]));

    // The record survives the agent.
    b.restart();
    a.ctl_json(&["migrate", "f3", "--to", &b.addr]);
    assert_eq!(device_vfc_ids(&b, "f3"), vec![3]);

    // A vfcID comes free with its LPAR: moved away, f1's 1 is the smallest
    // free one again, and moving it back takes it.
    b.ctl_json(&["migrate", "f1", "--to", &a.addr]);
    a.ctl_json(&["migrate", "f1", "--to", &b.addr]);
    assert_eq!(device_vfc_ids(&b, "f1"), vec![1]);
}

#[test]
fn a_locally_created_lpar_takes_its_vfc_id_from_the_pool_and_is_refused_when_none_is_free() {
    let scratch = Scratch::new("vfc-local");
    let mut a = fc_agent_with(&scratch, "hostA", "7");
    fc_lpar(&a, "g1", 1);
    assert_eq!(device_vfc_ids(&a, "g1"), vec![7]);
    assert_eq!(a.lpar("g1")["vfc_ids"], serde_json::json!([7]));
    let out = a.ctl(&[
        "lpar",
        "create",
        "g2",
        "--memory",
        "32MiB",
        "--fc-port",
        "50:06:0e:80:12:34:56:02/50:06:0e:80:12:34:57:02",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let e = agent_common::stderr(&out);
    assert!(e.contains("There is not enough vfcID"), "{e}");
    assert_eq!(a.lpar_names(), vec!["g1".to_string()]);
    // The record survives the agent; deleting g1 frees 7 for the next.
    a.restart();
    assert_eq!(a.lpar("g1")["vfc_ids"], serde_json::json!([7]));
    a.ctl_json(&["lpar", "deactivate", "g1"]);
    a.ctl_json(&["lpar", "delete", "g1"]);
    fc_lpar(&a, "g2", 2);
    assert_eq!(device_vfc_ids(&a, "g2"), vec![7]);
}
