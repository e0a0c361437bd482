//! The guest-observed stall across the most recent resume, read from the
//! built-in guest's own clock: for each vCPU that was writing, the TSC of
//! its first write after the resume minus the TSC of its last write
//! before it (both from its mailbox record, which a migration carries),
//! converted with the guest's `tsc_hz`. The largest over the vCPUs is
//! [`crate::partition::Partition::resume_stall_ns`], as `sim` reports it.
//!
//! The mailbox only holds each vCPU's *latest* write, so a watcher thread
//! started at the resume polls it every [`POLL`] until each vCPU has moved
//! on (or [`PATIENCE`] passes, or the LPAR pauses again). If a vCPU made
//! more than one write between two polls, the latest write's TSC is used:
//! the figure is then an upper bound, by at most one write interval (an
//! emulated guest here writes every ~0.3 ms or slower).
//!
//! A guest without the mailbox (another kernel) or that does not write has
//! no figure (`None`).

use super::memory::GuestRam;
use crate::partition::PAGE_SIZE;
use crate::partition::guest::mailbox::{self, Mailbox};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often the watcher reads the mailbox.
pub const POLL: Duration = Duration::from_micros(50);
/// How long it waits for every writing vCPU's first write.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// `run_state` of a vCPU that is writing.
const WRITING: u32 = 1;

#[derive(Default)]
pub struct StallProbe {
    /// Bumped by every arm and disarm: an older watcher stops.
    generation: Arc<AtomicU64>,
    /// The stall in ns; `None` until a vCPU wrote after a resume.
    result: Arc<Mutex<Option<u64>>>,
}

fn read(ram: &GuestRam) -> Option<Mailbox> {
    let mut page = [0u8; PAGE_SIZE];
    ram.read_bytes(mailbox::ADDR, &mut page).ok()?;
    Mailbox::decode(&page)
}

/// The gap in TSC ticks of each vCPU of `before` that was writing and has
/// written since, in `now`; `None` for the others.
pub fn gaps(before: &Mailbox, now: &Mailbox) -> Vec<Option<u64>> {
    before
        .cpus
        .iter()
        .zip(&now.cpus)
        .map(|(b, n)| {
            // The guest counts the write, then stores its TSC: a count
            // that moved with the TSC not yet stored is not a result.
            let moved = n.writes > b.writes && n.last_write_tsc != b.last_write_tsc;
            (b.run_state == WRITING && b.writes > 0 && moved)
                .then(|| n.last_write_tsc.saturating_sub(b.last_write_tsc))
        })
        .collect()
}

impl StallProbe {
    /// Called just before the vCPUs resume: notes each vCPU's last write
    /// and starts the watcher.
    pub fn arm(&self, ram: &Arc<GuestRam>) {
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        *self.result.lock().unwrap() = None;
        let Some(before) = read(ram).filter(|m| m.tsc_hz != 0) else {
            return;
        };
        if !before.cpus.iter().any(|c| c.run_state == WRITING) {
            return;
        }
        let (gen_now, result, ram) = (self.generation.clone(), self.result.clone(), ram.clone());
        let spawned = std::thread::Builder::new()
            .name("kvm-stall".into())
            .spawn(move || {
                let t0 = Instant::now();
                let mut worst: Vec<Option<u64>> = vec![None; before.cpus.len()];
                // A vCPU is waited for while it was and still is writing
                // and has no figure yet.
                let mut waiting: Vec<bool> =
                    before.cpus.iter().map(|c| c.run_state == WRITING).collect();
                while waiting.iter().any(|&w| w)
                    && t0.elapsed() < PATIENCE
                    && gen_now.load(Ordering::SeqCst) == generation
                {
                    std::thread::sleep(POLL);
                    let Some(now) = read(&ram) else { continue };
                    for (i, g) in gaps(&before, &now).into_iter().enumerate() {
                        if worst[i].is_none() {
                            worst[i] = g;
                        }
                        let writing = now.cpus.get(i).is_some_and(|c| c.run_state == WRITING);
                        waiting[i] &= worst[i].is_none() && writing;
                    }
                    if let Some(ticks) = worst.iter().flatten().max() {
                        let ns = u128::from(*ticks) * 1_000_000_000 / u128::from(before.tsc_hz);
                        *result.lock().unwrap() = Some(ns as u64);
                    }
                }
            });
        if let Err(e) = spawned {
            log::warn!("no guest stall figure for this resume: {e}");
        }
    }

    /// Called at pause: a watcher still waiting stops (the figure it has
    /// stays).
    pub fn disarm(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    pub fn stall_ns(&self) -> Option<u64> {
        *self.result.lock().unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::partition::guest::mailbox::CpuState;

    fn cpu(writes: u64, tsc: u64, run_state: u32) -> CpuState {
        CpuState {
            writes,
            last_write_tsc: tsc,
            run_state,
            ..Default::default()
        }
    }

    #[test]
    fn a_gap_is_first_write_after_minus_last_before_for_writing_vcpus() {
        let before = Mailbox {
            cpus: vec![
                cpu(10, 1000, 1),
                cpu(5, 900, 1),
                cpu(7, 800, 2),
                cpu(0, 0, 1),
            ],
            ..Default::default()
        };
        let now = Mailbox {
            cpus: vec![
                cpu(11, 5000, 1),
                cpu(6, 900, 1),
                cpu(7, 800, 2),
                cpu(3, 99, 1),
            ],
            ..Default::default()
        };
        // vCPU 1 counted its write but has not stored the TSC yet; vCPU 2
        // is done writing; vCPU 3 had never written.
        assert_eq!(gaps(&before, &now), vec![Some(4000), None, None, None]);
    }
}
