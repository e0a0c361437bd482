//! The conformance suite: every contract written in [`crate::partition`]
//! and `super::backend`, as checks generic over a [`Backend`] (in the
//! spirit of vm-memory's `test_bitmap<B>`). `tests/conformance.rs` runs it
//! on `sim` and `kvm`; an integrator runs it on theirs:
//!
//! ```ignore
//! let backend = MyBackend::new(tempdir.path());
//! let profile = Profile { config: my_writing_guest(), run_for: Duration::from_millis(300) };
//! lpar_mover::partition::conformance::run_all(&backend, &profile);
//! ```
//!
//! Each check panics with the contract it found broken. They need a guest
//! that writes memory steadily and publishes its write count
//! ([`Partition::guest_writes`]); `profile.config` names it (its `name` is
//! replaced per check). No check has an upper time bound: a slow machine
//! makes them slower, never red.

use super::{Backend, LparConfig, PAGE_SIZE, Page, PageSet, Partition};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the suite needs to know about the backend's guest.
#[derive(Clone, Debug)]
pub struct Profile {
    /// A guest that writes memory steadily; at least 2 vCPUs is best.
    pub config: LparConfig,
    /// How long to let it run between observations.
    pub run_for: Duration,
}

/// How long a guest may take to make its first write (a KVM guest boots
/// by instruction emulation on machines without VMX/SVM).
const FIRST_WRITE_PATIENCE: Duration = Duration::from_secs(120);

/// Runs every check, each on LPARs of its own.
pub fn run_all<B: Backend>(backend: &B, profile: &Profile) {
    backend_lifecycle(backend, profile);
    dirty_log_never_misses_a_write(backend, profile);
    vmm_writes_are_logged(backend, profile);
    pause_is_quiescent(backend, profile);
    save_restore_continues_on_a_second_partition(backend, profile);
    populated_never_under_reports(backend, profile);
    throttle_takes_effect(backend, profile);
    memory_backing_decides_what_the_host_holds(backend, profile);
}

fn config(profile: &Profile, name: &str) -> LparConfig {
    LparConfig {
        name: name.into(),
        ..profile.config.clone()
    }
}

fn create<B: Backend>(backend: &B, profile: &Profile, name: &str) -> Arc<dyn Partition> {
    backend
        .create(name, &config(profile, name))
        .unwrap_or_else(|e| panic!("{}: create '{name}': {e}", backend.kind()))
}

fn writes(lpar: &dyn Partition) -> u64 {
    lpar.guest_writes()
        .expect("the conformance guest publishes its write count")
}

/// Resumes `lpar` and waits until its guest has written at least once more.
fn run_until_writing(lpar: &dyn Partition) -> u64 {
    let before = writes(lpar);
    lpar.resume().expect("resume");
    let t0 = Instant::now();
    loop {
        let now = writes(lpar);
        if now > before {
            return now;
        }
        assert!(
            t0.elapsed() < FIRST_WRITE_PATIENCE,
            "the guest made no write in {FIRST_WRITE_PATIENCE:?} after resume"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn pages(lpar: &dyn Partition) -> u64 {
    lpar.size_bytes() / PAGE_SIZE as u64
}

fn read(lpar: &dyn Partition, page: u64) -> Box<Page> {
    let mut p = Box::new([0u8; PAGE_SIZE]);
    lpar.read_page(page, &mut p).expect("read_page");
    p
}

/// Backend contracts: a new LPAR is stopped; list names it; attach finds
/// it as it was; remove deletes it.
pub fn backend_lifecycle<B: Backend>(backend: &B, profile: &Profile) {
    let lpar = create(backend, profile, "conf-life");
    assert!(!lpar.is_running(), "a created LPAR's vCPUs are stopped");
    assert!(
        backend.list().unwrap().contains(&"conf-life".to_string()),
        "list names a created LPAR"
    );
    let page = pages(&*lpar) - 1;
    let mut data = [0u8; PAGE_SIZE];
    data[..8].copy_from_slice(b"conform!");
    lpar.write_page(page, &data).unwrap();
    let again = backend.attach("conf-life").expect("attach a created LPAR");
    assert_eq!(
        again.config(),
        lpar.config(),
        "attach keeps the configuration"
    );
    assert_eq!(
        &read(&*again, page)[..8],
        b"conform!",
        "attach keeps memory"
    );
    drop((lpar, again));
    backend.remove("conf-life").expect("remove");
    assert!(
        !backend.list().unwrap().contains(&"conf-life".to_string()),
        "remove deletes the LPAR"
    );
    assert!(
        backend.attach("conf-life").is_err(),
        "a removed LPAR is gone"
    );
}

/// The bytes of `name`'s guest memory file the host holds.
fn held_bytes<B: Backend>(backend: &B, name: &str) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let path = backend.root().join(name).join("memory");
    let meta = std::fs::metadata(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    meta.blocks() * 512
}

/// LparConfig::memory_backing: a reserved LPAR's memory is all held once it
/// is created; an on-demand one's is not, then or when attached again.
pub fn memory_backing_decides_what_the_host_holds<B: Backend>(backend: &B, profile: &Profile) {
    let size = profile.config.memory_bytes;
    let reserved = create(backend, profile, "conf-reserved");
    assert!(
        held_bytes(backend, "conf-reserved") >= size,
        "{}: a reserved LPAR holds all its memory at create",
        backend.kind()
    );
    drop(reserved);
    backend.remove("conf-reserved").expect("remove");
    let on_demand = LparConfig {
        memory_backing: crate::partition::MemoryBacking::OnDemand,
        ..config(profile, "conf-on-demand")
    };
    let lpar = backend
        .create("conf-on-demand", &on_demand)
        .unwrap_or_else(|e| panic!("{}: create on demand: {e}", backend.kind()));
    let again = backend.attach("conf-on-demand").expect("attach");
    assert_eq!(again.config().memory_backing, on_demand.memory_backing);
    let held = held_bytes(backend, "conf-on-demand");
    assert!(
        held < size / 2,
        "{}: an on-demand LPAR of {size} bytes holds {held} before it runs",
        backend.kind()
    );
    drop((lpar, again));
    backend.remove("conf-on-demand").expect("remove");
}

/// DirtyLog::harvest: a pre-copy that resends what each harvest reports,
/// racing with running vCPUs, ends with an exact copy of memory. A missed
/// write leaves a stale page in the copy.
pub fn dirty_log_never_misses_a_write<B: Backend>(backend: &B, profile: &Profile) {
    let lpar = create(backend, profile, "conf-dirty");
    let mut log = lpar.dirty_log().expect("dirty_log");
    log.start().expect("start");
    run_until_writing(&*lpar);
    // Round 0 copies everything while the guest writes.
    let mut shadow: HashMap<u64, Box<Page>> =
        (0..pages(&*lpar)).map(|p| (p, read(&*lpar, p))).collect();
    let deadline = Instant::now() + profile.run_for;
    let mut rounds = 0;
    let mut reported = 0;
    while Instant::now() < deadline || rounds < 3 {
        let mut set = PageSet::new();
        log.harvest(&mut set).expect("harvest");
        reported += set.len();
        for p in set.iter() {
            shadow.insert(p, read(&*lpar, p));
        }
        rounds += 1;
    }
    lpar.pause().expect("pause");
    let mut last = PageSet::new();
    log.harvest(&mut last).expect("final harvest");
    reported += last.len();
    for p in last.iter() {
        shadow.insert(p, read(&*lpar, p));
    }
    log.stop().expect("stop");
    assert!(reported > 0, "the log reported no page of a writing guest");
    for p in 0..pages(&*lpar) {
        assert!(
            shadow[&p][..] == read(&*lpar, p)[..],
            "{}: page {p} was written but no harvest reported it ({rounds} rounds)",
            lpar.dirty_log().map(|l| l.mechanism()).unwrap_or("?")
        );
    }
    drop(lpar);
    backend.remove("conf-dirty").unwrap();
}

/// The dirty log reports the writes the backend itself makes to guest
/// memory (write_page, update_page), not only the guest's.
pub fn vmm_writes_are_logged<B: Backend>(backend: &B, profile: &Profile) {
    let lpar = create(backend, profile, "conf-vmmw");
    let mut log = lpar.dirty_log().expect("dirty_log");
    log.start().expect("start");
    let mut drain = PageSet::new();
    log.harvest(&mut drain).unwrap();
    let last = pages(&*lpar) - 1;
    lpar.write_page(last, &[0x5a; PAGE_SIZE]).unwrap();
    lpar.update_page(last - 1, &mut |p| p[7] = 1).unwrap();
    let mut set = PageSet::new();
    log.harvest(&mut set).unwrap();
    assert!(set.contains(last), "write_page was not reported");
    assert!(set.contains(last - 1), "update_page was not reported");
    log.stop().unwrap();
    drop(lpar);
    backend.remove("conf-vmmw").unwrap();
}

/// Vcpus::pause: on return nothing changes memory, the write count or the
/// device state until resume.
pub fn pause_is_quiescent<B: Backend>(backend: &B, profile: &Profile) {
    let lpar = create(backend, profile, "conf-pause");
    let mut log = lpar.dirty_log().expect("dirty_log");
    log.start().unwrap();
    run_until_writing(&*lpar);
    std::thread::sleep(profile.run_for / 2);
    lpar.pause().expect("pause");
    assert!(!lpar.is_running(), "is_running after pause");
    let (w0, d0) = (writes(&*lpar), lpar.digest().unwrap());
    let s0 = lpar.save_state().expect("save_state while paused");
    // Drained after the digest: reading never-touched memory may make a
    // log over-report those pages once (allowed), never again.
    let mut drain = PageSet::new();
    log.harvest(&mut drain).unwrap();
    std::thread::sleep(profile.run_for);
    let mut after = PageSet::new();
    log.harvest(&mut after).unwrap();
    assert!(
        after.is_empty(),
        "{} pages written while paused",
        after.len()
    );
    assert_eq!(writes(&*lpar), w0, "the guest wrote while paused");
    assert_eq!(lpar.digest().unwrap(), d0, "memory changed while paused");
    let s1 = lpar.save_state().unwrap();
    for (a, b) in s0.vcpus.iter().zip(&s1.vcpus) {
        assert_eq!(a.regs, b.regs, "registers changed while paused");
    }
    log.stop().unwrap();
    drop(lpar);
    backend.remove("conf-pause").unwrap();
}

/// DeviceModel::restore_state: memory and state saved from one paused
/// partition, loaded into a second, continue the guest exactly there: same
/// memory digest and registers, the write count carries on from the
/// source's without a gap.
pub fn save_restore_continues_on_a_second_partition<B: Backend>(backend: &B, profile: &Profile) {
    let src = create(backend, profile, "conf-src");
    let dst = create(backend, profile, "conf-dst");
    run_until_writing(&*src);
    std::thread::sleep(profile.run_for);
    src.pause().unwrap();
    let state = src.save_state().expect("save_state");
    for p in 0..pages(&*src) {
        let page = read(&*src, p);
        dst.write_page(p, &page).unwrap();
    }
    dst.restore_state(&state).expect("restore_state");
    assert_eq!(
        dst.digest().unwrap(),
        src.digest().unwrap(),
        "memory differs after the copy"
    );
    let at_save = writes(&*src);
    assert_eq!(writes(&*dst), at_save, "the write count did not move");
    let restored = dst.save_state().expect("save_state after restore");
    assert_eq!(restored.vcpus.len(), state.vcpus.len());
    for (i, (a, b)) in state.vcpus.iter().zip(&restored.vcpus).enumerate() {
        assert_eq!(a.regs, b.regs, "vCPU {i}: registers differ after restore");
        assert_eq!(a.sregs, b.sregs, "vCPU {i}: special registers differ");
    }
    drop(src);
    backend.remove("conf-src").unwrap();
    let now = run_until_writing(&*dst);
    assert!(now > at_save, "the destination continues the count");
    dst.pause().unwrap();
    drop(dst);
    backend.remove("conf-dst").unwrap();
}

/// GuestMemory::populated: every page that holds a non-zero byte is in it.
pub fn populated_never_under_reports<B: Backend>(backend: &B, profile: &Profile) {
    let lpar = create(backend, profile, "conf-pop");
    run_until_writing(&*lpar);
    std::thread::sleep(profile.run_for / 2);
    lpar.pause().unwrap();
    let last = pages(&*lpar) - 1;
    lpar.write_page(last, &[1; PAGE_SIZE]).unwrap();
    let populated = lpar.populated().expect("populated");
    let mut nonzero = 0;
    for p in 0..pages(&*lpar) {
        if read(&*lpar, p).iter().any(|&b| b != 0) {
            nonzero += 1;
            assert!(populated.contains(p), "page {p} holds data, not populated");
        }
    }
    assert!(nonzero > 1, "the guest wrote nothing");
    drop(lpar);
    backend.remove("conf-pop").unwrap();
}

/// Vcpus::throttle: at 90% the guest writes clearly slower than at 0%.
pub fn throttle_takes_effect<B: Backend>(backend: &B, profile: &Profile) {
    let lpar = create(backend, profile, "conf-thr");
    run_until_writing(&*lpar);
    let rate = |lpar: &dyn Partition| {
        let (w0, t0) = (writes(lpar), Instant::now());
        std::thread::sleep(profile.run_for.max(Duration::from_millis(200)));
        (writes(lpar) - w0) as f64 / t0.elapsed().as_secs_f64()
    };
    let full = rate(&*lpar);
    lpar.throttle(90).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let slow = rate(&*lpar);
    lpar.throttle(0).unwrap();
    lpar.pause().unwrap();
    assert!(full > 0.0, "the guest did not write");
    assert!(
        slow < full * 0.6,
        "throttle(90) left the guest at {slow:.0} writes/s against {full:.0} unthrottled"
    );
    drop(lpar);
    backend.remove("conf-thr").unwrap();
}
