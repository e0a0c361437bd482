//! The LPAR configuration a destination receives on the wire (the
//! `LparConfig` frame's JSON) and its check (`check_config`: sizes match,
//! `LparConfig::check` passes): never a panic; an accepted configuration
//! passes `check` on its own, keeps the destination's memory and vCPUs,
//! and survives a re-encoding unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lpar_mover::engine::destination::check_config;
use lpar_mover::partition::LparConfig;

fuzz_target!(|data: &[u8]| {
    let ours = LparConfig::default_lpar();
    let Ok(theirs) = check_config(&ours, data) else {
        return;
    };
    assert!(theirs.check().is_ok());
    assert_eq!(
        (theirs.memory_bytes, theirs.vcpus),
        (ours.memory_bytes, ours.vcpus)
    );
    let again = check_config(&ours, &serde_json::to_vec(&theirs).unwrap())
        .expect("a re-encoded accepted configuration is accepted");
    assert_eq!(again, theirs);
});
