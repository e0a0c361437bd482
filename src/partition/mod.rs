//! The integration boundary with the hypervisor.
//!
//! An HVM integrator implements this trait family for their hypervisor; the
//! rest of the crate (engine, agent) works only against it. The `sim`
//! backend is a real userspace LPAR that implements it with kernel dirty
//! tracking; a `kvm` backend can follow the same shape.
//!
//! The contracts below are what the engine relies on for its invariants
//! ("nothing lost", "exactly one owner"); an implementation that weakens one
//! of them breaks live migration silently, so each states what must hold
//! when the method returns.

mod backend;
pub(crate) mod config;
pub mod conformance;
pub mod guest;
pub mod host;
pub mod kvm;
mod pages;
pub mod sim;
mod volatile;

mod error;

pub use backend::{Backend, SimBackend};
pub use config::{
    ConfigError, DEFAULT_SERVICE_RATIO, DeviceMode, FcPortConfig, LparConfig, MemoryBacking,
    NicConfig, SERVICE_RATIOS,
};
pub use error::PartitionError;
pub use kvm::KvmBackend;
pub use pages::PageSet;

use crate::state::DeviceState;

/// Tracking and transfer granularity: one guest page.
pub const PAGE_SIZE: usize = 4096;

/// One page of guest memory.
pub type Page = [u8; PAGE_SIZE];

/// A contiguous range of guest-physical memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryRegion {
    /// Guest-physical address of the first byte; page aligned.
    pub guest_base: u64,
    /// Length in bytes; a multiple of [`PAGE_SIZE`].
    pub len: u64,
}

/// Guest memory as the engine sees it: pages addressed by page index, the
/// byte offset in the regions laid end to end in order / [`PAGE_SIZE`]
/// (dense: `0..size_bytes() / PAGE_SIZE`). With one region at 0 that is
/// the guest-physical page number; a KVM guest over 3 GiB has a second
/// region at 4 GiB whose first page follows the first region's last.
pub trait GuestMemory: Send + Sync {
    /// The regions, sorted by `guest_base`, non-overlapping.
    fn regions(&self) -> &[MemoryRegion];

    /// Total guest memory in bytes.
    fn size_bytes(&self) -> u64 {
        self.regions().iter().map(|r| r.len).sum()
    }

    /// Copies page `page` into `out`. May run while vCPUs write: the copy is
    /// then some mix of old and new bytes, and the dirty log reports the page
    /// again, so the engine resends it. Errors only for a page outside every
    /// region.
    fn read_page(&self, page: u64, out: &mut Page) -> Result<(), PartitionError>;

    /// Overwrites page `page` with `data`. Used on the destination while its
    /// vCPUs are not running; on return the bytes are in guest memory.
    fn write_page(&self, page: u64, data: &Page) -> Result<(), PartitionError>;

    /// Applies `f` to page `page` in place (decode straight into guest
    /// memory). Same rule as [`GuestMemory::write_page`]: only while vCPUs
    /// are not running.
    fn update_page(&self, page: u64, f: &mut dyn FnMut(&mut Page)) -> Result<(), PartitionError>;

    /// Allocates and maps `pages` (ascending runs make fewer calls) for
    /// writing, before [`GuestMemory::update_page`] writes them: on a host
    /// without room (an on-demand LPAR on a full file system) this fails
    /// with [`PartitionError::NoRoom`], where the write itself would raise
    /// SIGBUS and take the agent down. Reserved memory returns at once.
    fn populate_for_write(
        &self,
        pages: &mut dyn Iterator<Item = u64>,
    ) -> Result<(), PartitionError>;

    /// Pages that hold data (have ever been written). Never-touched memory is
    /// zero and need not be scanned or sent. May over-report, never under.
    fn populated(&self) -> Result<PageSet, PartitionError>;

    /// A digest of the whole memory (BLAKE3), for proving that source and
    /// destination hold the same image. Only meaningful while vCPUs are paused.
    fn digest(&self) -> Result<[u8; 32], PartitionError>;
}

/// The dirty log of one partition's guest memory.
pub trait DirtyLog: Send {
    /// The mechanism, for logs and reports (`uffd-wp`, `mprotect`, `kvm`).
    fn mechanism(&self) -> &'static str;

    /// Starts tracking. On return every write made from then on is reported
    /// by a later [`DirtyLog::harvest`].
    fn start(&mut self) -> Result<(), PartitionError>;

    /// Adds to `out` every page written since the previous harvest (or since
    /// `start`), and re-arms tracking atomically: a write racing with the
    /// harvest is reported by this harvest or the next one, never lost.
    /// May report a few pages that were not written; must never miss one.
    fn harvest(&mut self, out: &mut PageSet) -> Result<(), PartitionError>;

    /// Stops tracking; writes are no longer observed (and cost nothing).
    fn stop(&mut self) -> Result<(), PartitionError>;
}

/// The virtual CPUs of a partition.
pub trait Vcpus: Send + Sync {
    /// Number of vCPUs.
    fn count(&self) -> usize;

    /// Stops every vCPU. On return no vCPU can write guest memory or change
    /// its registers until [`Vcpus::resume`].
    fn pause(&self) -> Result<(), PartitionError>;

    /// Lets every vCPU run again. On return at least the request is
    /// delivered; vCPUs run shortly after.
    fn resume(&self) -> Result<(), PartitionError>;

    /// Makes every vCPU sleep `percent`% of its time (0 = full speed,
    /// at most 99). Takes effect within a millisecond.
    fn throttle(&self, percent: u8) -> Result<(), PartitionError>;

    /// True while the vCPUs run (not paused, not stopped).
    fn is_running(&self) -> bool;
}

/// Device state: everything besides memory that moves with the LPAR.
pub trait DeviceModel: Send + Sync {
    /// Captures the whole device state, vCPU registers included. Needs the
    /// vCPUs paused; the result is the state at the instant they stopped.
    fn save_state(&self) -> Result<DeviceState, PartitionError>;

    /// Loads `state` into a partition whose vCPUs are not running. On return,
    /// [`Vcpus::resume`] continues the guest exactly where the saved one
    /// stopped. A state without vCPUs (Shutdown mode) resets them to power-on.
    fn restore_state(&self, state: &DeviceState) -> Result<(), PartitionError>;

    /// The device state as far as it can be read while the vCPUs run, for
    /// pre-copy: every part only the hypervisor changes (VRAM and NVRAM
    /// contents, MMIO snapshots) as [`DeviceModel::save_state`] would give
    /// it now; what the running vCPUs change (registers) may be stale. The
    /// engine sends it before the pause and, in the pause, only what the
    /// final [`DeviceModel::save_state`] changed. `None` (the default):
    /// nothing to gain, the whole state is sent in the pause.
    fn preview_state(&self) -> Result<Option<DeviceState>, PartitionError> {
        Ok(None)
    }
}

/// One LPAR as the engine drives it.
pub trait Partition: GuestMemory + Vcpus + DeviceModel {
    /// The LPAR's configuration.
    fn config(&self) -> &LparConfig;

    /// A dirty log over all of guest memory, not yet started.
    fn dirty_log(&self) -> Result<Box<dyn DirtyLog>, PartitionError>;

    /// Asks the guest to shut down (the ACPI power button); a guest that
    /// honours it stops every vCPU, and [`Partition::is_shut_down`] turns
    /// true. A guest may ignore it.
    fn request_shutdown(&self) -> Result<(), PartitionError>;

    /// The guest shut down after [`Partition::request_shutdown`].
    fn is_shut_down(&self) -> bool;

    /// Stops the vCPUs for good (the LPAR is being removed): like
    /// [`Vcpus::pause`], and the persisted run state says stopped, so a
    /// later attach does not start them.
    fn stop(&self) -> Result<(), PartitionError>;

    /// The guest's own count of the writes it made (all vCPUs), read from
    /// the guest (the `sim` registers, the built-in KVM guest's mailbox).
    /// `None` when the guest does not publish one. Carries over a move:
    /// a destination continues the source's count exactly.
    fn guest_writes(&self) -> Option<u64>;

    /// The longest gap between consecutive guest writes the guest itself
    /// observed, in nanoseconds of guest time (the guest-observed stall);
    /// `None` when the guest does not publish one.
    fn max_stall_ns(&self) -> Option<u64>;

    /// The longest gap between consecutive guest writes that spans the most
    /// recent resume (on a destination: the stall across the switchover),
    /// in nanoseconds of guest time, as the guest saw it; `None` when the
    /// guest does not publish one or has not written since.
    fn resume_stall_ns(&self) -> Option<u64> {
        None
    }

    /// The file the guest's serial console (COM1) is appended to, if the
    /// backend emulates one; `None` for a backend without a console.
    fn console_log(&self) -> Option<std::path::PathBuf> {
        None
    }
}
