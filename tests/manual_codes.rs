//! The manual's codes and texts, as an operator sees them from `moverctl`
//! (issue 13: an operator looks an error up by its code and text).

mod agent_common;

use agent_common::{Agent, Scratch, define_running, stderr};

#[test]
fn a_migration_to_the_same_host_gets_the_manuals_one_code() {
    let scratch = Scratch::new("codes-same");
    let a = Agent::start(&scratch, "hostA", &[]);
    define_running(&a, "s1", "32MiB", "idle");
    for mode in ["live", "shutdown"] {
        let out = a.ctl(&["migrate", "s1", "--to", &a.addr, "--mode", mode]);
        assert_ne!(out.status.code(), Some(0), "{mode}: {}", stderr(&out));
        let e = stderr(&out);
        // The checklist's item, or the refusal itself: the same words, and
        // the same code, MMS `0x00 00000003 0020 02`.
        assert!(
            e.contains("Source and destination are the same host (hostA)."),
            "{mode}: {e}"
        );
        if mode == "shutdown" {
            assert!(e.contains("EMG0000000003002002:"), "{mode}: {e}");
        }
    }
    assert_eq!(a.lpar("s1")["state"], "Act");
}
