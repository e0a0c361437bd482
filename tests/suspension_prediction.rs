//! The suspension the source predicts includes the destination's device
//! state load: the destination loads the state's base once before the
//! pause, as a rehearsal, and reports how long that took (the Rehearsal
//! frame). A destination whose load is slow (the engine's fault hook adds
//! 30 ms to every load there) is predicted so, and the prediction holds
//! (within 20 % or 0.5 ms of the suspension measured), and the report
//! names the part. Its own test binary: the hook is global.

mod common;

use common::{Root, sim_lpar, try_migrate_between};
use lpar_mover::partition::Vcpus;
use std::time::Duration;

const SLOW_LOAD: Duration = Duration::from_millis(30);

#[test]
fn a_slow_destination_load_is_in_the_predicted_suspension_and_the_prediction_holds() {
    let root = Root::new("slow-load");
    let program = "hot:4MiB,content=random,rate=20000";
    let source = sim_lpar(&root, "source", 64 << 20, program);
    let destination = sim_lpar(&root, "destination", 64 << 20, program);
    source.resume().unwrap();
    common::wait_for("the guest to write", Duration::from_secs(30), || {
        source.writes() >= 2_000
    });
    lpar_mover::engine::faults::slow_down_state_loads(SLOW_LOAD);
    let (sent, received) = try_migrate_between(&source, &destination, 2, Duration::from_secs(60));
    let report = sent.unwrap_or_else(|e| panic!("{e}"));
    let received = received.unwrap_or_else(|e| panic!("{e}"));
    assert!(report.verified);

    // The rehearsal ran before the pause, and the final load paid the same.
    let slow_ms = SLOW_LOAD.as_secs_f64() * 1e3;
    assert!(received.state_rehearsal_ms >= slow_ms, "{received:?}");
    let s = &report.suspension;
    assert!(s.total_ms >= slow_ms, "{s:?}");
    assert!(
        s.predicted_ms >= slow_ms,
        "the prediction leaves out the destination's load: {s:?}"
    );
    // The report says where the prediction came from, part by part.
    let p = &s.predicted_parts;
    assert!(p.destination_load_ms >= slow_ms, "{p:?}");
    assert!(
        (p.total_ms() - s.predicted_ms).abs() < 1e-6,
        "{p:?} against {s:?}"
    );
    assert!(p.round_trips_ms > 0.0 && p.harvest_ms > 0.0, "{p:?}");
    let tolerance = (0.2 * s.total_ms).max(0.5);
    assert!(
        (s.total_ms - s.predicted_ms).abs() <= tolerance,
        "predicted {:.3} ms, measured {:.3} ms: {s:?}",
        s.predicted_ms,
        s.total_ms
    );
}
