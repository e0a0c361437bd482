//! The `sim` backend: a real userspace LPAR.
//!
//! Guest memory is a sparse shared-memory file mapped into the hosting
//! process; each vCPU is a thread running a guest program whose registers
//! live in shared memory beside it (see [`shm`]); dirty pages are tracked by
//! the kernel (see [`dirty`]). Because everything lives in files under
//! `/dev/shm/lpar-mover/<name>/`, an LPAR survives the death of the process
//! hosting it: [`SimLpar::attach`] maps the files again and the vCPUs carry
//! on from their last committed registers.

pub mod dirty;
pub mod program;
pub mod shm;
mod vcpu;

use crate::partition::{
    DeviceModel, DirtyLog, GuestMemory, LparConfig, MemoryRegion, PAGE_SIZE, Page, PageSet,
    Partition, PartitionError, Vcpus,
};
use crate::state::DeviceState;
use dirty::{TrackedRange, TrackerKind};
use program::{ProgramSpec, Regs};
use shm::{LparFiles, RunState};
use std::path::Path;
use std::sync::Arc;
use vcpu::VcpuSet;

/// A userspace LPAR hosted by this process.
pub struct SimLpar {
    config: LparConfig,
    regions: [MemoryRegion; 1],
    files: Arc<LparFiles>,
    vcpus: VcpuSet,
    tracker: TrackerKind,
    /// The devices file, kept in memory: reading and decoding it cost a
    /// third of a millisecond inside the suspension. Only this process
    /// writes the file (on restore, which empties the copy: the next read
    /// fills it again), so the copy cannot go stale.
    devices: std::sync::Mutex<Option<DeviceState>>,
    /// The last encoding of the devices file: the next one is written into
    /// this memory, already faulted in.
    encoded_devices: std::sync::Mutex<Vec<u8>>,
}

/// The device state beside the vCPU file (registers live in the vCPU file).
const DEVICES_FILE: &str = "devices.bin";

impl SimLpar {
    /// Defines a new LPAR under `root` with its program's initial registers.
    /// Its vCPUs stay stopped until [`Vcpus::resume`].
    pub fn create(root: &Path, config: &LparConfig) -> Result<Self, PartitionError> {
        let initial = power_on_registers(config)?;
        let files = LparFiles::create(root, config)?;
        for (i, regs) in initial.iter().enumerate() {
            files.store_regs(i, regs);
        }
        let encoded = write_devices(&files.dir, &devices_for(config))?;
        let lpar = Self::host(files, config.clone());
        *lpar.encoded_devices.lock().unwrap() = encoded;
        Ok(lpar)
    }

    /// Re-attaches an LPAR whose files exist under `root` (after the hosting
    /// process died): running vCPUs carry on, paused ones stay paused. Its
    /// memory is reserved first ([`SimLpar::reserve_memory`]) unless it is
    /// backed on demand.
    pub fn attach(root: &Path, name: &str) -> Result<Self, PartitionError> {
        let (files, config) = LparFiles::attach(&root.join(name))?;
        Ok(Self::host(files, config))
    }

    fn host(files: LparFiles, config: LparConfig) -> Self {
        let files = Arc::new(files);
        let vcpus = VcpuSet::start(files.clone(), config.vcpus as usize);
        let regions = [MemoryRegion {
            guest_base: 0,
            len: config.memory_bytes,
        }];
        // Unreadable now: save_state reads it again and reports why.
        let devices = read_devices(&files.dir).ok();
        SimLpar {
            config,
            regions,
            files,
            vcpus,
            tracker: TrackerKind::Auto,
            devices: std::sync::Mutex::new(devices),
            encoded_devices: std::sync::Mutex::default(),
        }
    }

    /// Allocates all of guest memory now (see [`shm::LparFiles::reserve`]):
    /// a hosting agent does so before a vCPU runs or a page arrives, so a
    /// full file system is an error then, never a SIGBUS later. A new
    /// LPAR's memory stays sparse until this is called, and an
    /// [`MemoryBacking::OnDemand`](crate::partition::MemoryBacking) LPAR's
    /// always does.
    pub fn reserve_memory(&self) -> Result<(), PartitionError> {
        self.files.reserve()
    }

    /// Stops the vCPU threads and deletes the LPAR's files.
    pub fn destroy(self) -> Result<(), PartitionError> {
        let dir = self.files.dir.clone();
        drop(self);
        std::fs::remove_dir_all(&dir).map_err(|e| PartitionError::SharedMemory {
            path: dir.display().to_string(),
            source: e,
        })
    }

    /// The directory holding the LPAR's shared-memory files.
    pub fn dir(&self) -> &Path {
        &self.files.dir
    }

    /// Opens a dirty log over all of guest memory.
    pub fn dirty_log_with(&self, kind: TrackerKind) -> Result<Box<dyn DirtyLog>, PartitionError> {
        self.map_populated()?;
        let range = TrackedRange {
            base: self.files.memory.as_mut_ptr(),
            len: self.files.memory.len(),
            first_page: 0,
        };
        dirty::open(kind, range)
    }

    /// Maps every populated page into this process's page tables (read
    /// only; a no-op for pages mapped already). The uffd-wp log protects
    /// only what is mapped when it starts and reports each entry that
    /// appears later as written, so the pages this process never mapped
    /// (all of them after an agent restart re-attached the LPAR, except the
    /// ones the guest wrote since) would come back dirty in round 1 as soon
    /// as round 0 read them, and cross twice.
    fn map_populated(&self) -> Result<(), PartitionError> {
        for run in self.populated()?.ranges() {
            // SAFETY: the run lies inside the live mapping (populated pages
            // are below its length); populating for read only maps pages
            // of the shared file, it changes no byte.
            let done = unsafe {
                libc::madvise(
                    self.files
                        .memory
                        .as_mut_ptr()
                        .add(run.start as usize * PAGE_SIZE)
                        .cast(),
                    (run.end - run.start) as usize * PAGE_SIZE,
                    libc::MADV_POPULATE_READ,
                )
            };
            if done != 0 {
                // Only the bytes sent twice are at stake, not correctness.
                log::warn!(
                    "mapping populated pages {}..{}: {}",
                    run.start,
                    run.end,
                    std::io::Error::last_os_error()
                );
                break;
            }
        }
        Ok(())
    }

    /// The committed registers of every vCPU.
    pub fn registers(&self) -> Vec<Regs> {
        (0..self.vcpus.count())
            .map(|i| self.files.load_regs(i))
            .collect()
    }

    /// Replaces the registers of every vCPU; needs the vCPUs paused or stopped.
    pub fn set_registers(&self, regs: &[Regs]) -> Result<(), PartitionError> {
        if self.vcpus.is_running() {
            return Err(PartitionError::NotPaused {
                operation: "restoring vCPU registers",
            });
        }
        if regs.len() != self.vcpus.count() {
            return Err(PartitionError::BadConfig {
                why: format!(
                    "{} vCPU register sets for an LPAR with {} vCPUs",
                    regs.len(),
                    self.vcpus.count()
                ),
            });
        }
        for (i, r) in regs.iter().enumerate() {
            self.files.store_regs(i, r);
        }
        Ok(())
    }

    /// Asks the guest program to shut down (the ACPI power button): a
    /// program that honours it stops all its vCPUs.
    pub fn request_shutdown(&self) {
        self.vcpus.request_shutdown();
    }

    /// Parks the vCPUs and records the LPAR as stopped (it is being
    /// removed), so an attach by a later process leaves them parked.
    pub fn stop(&self) {
        self.vcpus.pause();
        self.files.set_run_state(RunState::Stopped);
    }

    /// The guest shut down after [`SimLpar::request_shutdown`].
    pub fn is_shut_down(&self) -> bool {
        self.vcpus.is_shut_down()
    }

    /// The stall the guest saw across its most recent pause (on a
    /// destination: across the switchover), in nanoseconds; see
    /// [`vcpu::VcpuSet::resume_stall_ns`].
    pub fn resume_stall_ns(&self) -> u64 {
        self.vcpus.resume_stall_ns()
    }

    /// The longest gap between consecutive writes that any vCPU's guest
    /// program has observed (the guest-observed stall), in nanoseconds.
    pub fn max_stall_ns(&self) -> u64 {
        vcpu::max_stall_ns(&self.files, self.vcpus.count())
    }

    /// Total writes made by the guest program on all vCPUs.
    pub fn writes(&self) -> u64 {
        self.registers()
            .iter()
            .map(|r| r.gpr[program::GPR_WRITES])
            .sum()
    }

    /// The persisted run state of the vCPUs.
    pub fn run_state(&self) -> RunState {
        self.files.run_state()
    }

    fn page_ptr(&self, page: u64) -> Result<*mut u8, PartitionError> {
        let pages = self.files.memory_pages();
        if page >= pages {
            return Err(PartitionError::PageOutOfRange { page, pages });
        }
        // SAFETY: page < pages, so the offset is inside the mapping.
        Ok(unsafe {
            self.files
                .memory
                .as_mut_ptr()
                .add(page as usize * PAGE_SIZE)
        })
    }
}

impl GuestMemory for SimLpar {
    fn regions(&self) -> &[MemoryRegion] {
        &self.regions
    }

    fn read_page(&self, page: u64, out: &mut Page) -> Result<(), PartitionError> {
        let src = self.page_ptr(page)?;
        // SAFETY: src points at 4 KiB inside the live mapping. vCPUs may
        // write it meanwhile (hence volatile); a torn copy is resent because
        // the dirty log reports the page again.
        unsafe { crate::partition::volatile::copy_from_guest(src, out) };
        Ok(())
    }

    fn write_page(&self, page: u64, data: &Page) -> Result<(), PartitionError> {
        let dst = self.page_ptr(page)?;
        // SAFETY: dst points at 4 KiB inside the live mapping.
        unsafe { crate::partition::volatile::copy_to_guest(dst, data) };
        Ok(())
    }

    fn update_page(&self, page: u64, f: &mut dyn FnMut(&mut Page)) -> Result<(), PartitionError> {
        if self.vcpus.is_running() {
            return Err(PartitionError::NotPaused {
                operation: "writing guest memory in place",
            });
        }
        let dst = self.page_ptr(page)?;
        // SAFETY: dst is a page-aligned 4 KiB inside the mapping, and no vCPU
        // of this LPAR runs, so nothing else writes it during `f`.
        f(unsafe { &mut *(dst as *mut Page) });
        Ok(())
    }

    fn populate_for_write(
        &self,
        pages: &mut dyn Iterator<Item = u64>,
    ) -> Result<(), PartitionError> {
        self.files
            .populate_for_write(self.config.memory_backing, pages)
    }

    fn populated(&self) -> Result<PageSet, PartitionError> {
        populated_extents(self.files.memory_file(), self.files.memory.len() as u64)
    }

    fn digest(&self) -> Result<[u8; 32], PartitionError> {
        if self.vcpus.is_running() {
            return Err(PartitionError::NotPaused {
                operation: "the memory digest",
            });
        }
        // SAFETY: the mapping is live and no vCPU runs, so the bytes are
        // stable for the duration of the hash.
        let bytes = unsafe {
            std::slice::from_raw_parts(self.files.memory.as_ptr(), self.files.memory.len())
        };
        Ok(*blake3::hash(bytes).as_bytes())
    }
}

impl Vcpus for SimLpar {
    fn count(&self) -> usize {
        self.vcpus.count()
    }

    fn pause(&self) -> Result<(), PartitionError> {
        self.vcpus.pause();
        Ok(())
    }

    fn resume(&self) -> Result<(), PartitionError> {
        self.vcpus.resume();
        Ok(())
    }

    fn throttle(&self, percent: u8) -> Result<(), PartitionError> {
        self.vcpus.throttle(percent);
        Ok(())
    }

    fn is_running(&self) -> bool {
        self.vcpus.is_running()
    }
}

impl SimLpar {
    /// The devices as last saved or restored, with the registers as they
    /// read now.
    fn devices_now(&self) -> Result<DeviceState, PartitionError> {
        let mut cached = self.devices.lock().unwrap();
        let mut state = match &*cached {
            Some(devices) => devices.clone(),
            None => cached.insert(read_devices(&self.files.dir)?).clone(),
        };
        state
            .vcpus
            .resize_with(self.vcpus.count(), Default::default);
        for (vcpu, regs) in state.vcpus.iter_mut().zip(self.registers()) {
            vcpu.regs = regs;
        }
        Ok(state)
    }
}

impl DeviceModel for SimLpar {
    fn save_state(&self) -> Result<DeviceState, PartitionError> {
        if self.vcpus.is_running() {
            return Err(PartitionError::NotPaused {
                operation: "saving device state",
            });
        }
        self.devices_now()
    }

    /// The devices (which only the agent changes here: the guest program
    /// never touches VRAM or NVRAM) with the registers as they read now.
    fn preview_state(&self) -> Result<Option<DeviceState>, PartitionError> {
        self.devices_now().map(Some)
    }

    fn restore_state(&self, state: &DeviceState) -> Result<(), PartitionError> {
        let registers: Vec<Regs> = if state.vcpus.is_empty() {
            power_on_registers(&self.config)?
        } else {
            state.vcpus.iter().map(|v| v.regs).collect()
        };
        self.set_registers(&registers)?;
        {
            // Encoded into memory kept from the last write, and written
            // into file pages kept too: restored inside the suspension.
            let mut buf = self.encoded_devices.lock().unwrap();
            state.encode_into(&mut buf)?;
            shm::write_in_place_atomically(&self.files.dir.join(DEVICES_FILE), &buf)?;
        }
        // Not cloned into the cache here (a few hundred KB of fresh memory
        // inside the suspension): the next read takes the file, and a
        // migration's preview, before its pause, is that read.
        *self.devices.lock().unwrap() = None;
        Ok(())
    }
}

impl Partition for SimLpar {
    fn config(&self) -> &LparConfig {
        &self.config
    }

    fn dirty_log(&self) -> Result<Box<dyn DirtyLog>, PartitionError> {
        self.dirty_log_with(self.tracker)
    }

    fn request_shutdown(&self) -> Result<(), PartitionError> {
        SimLpar::request_shutdown(self);
        Ok(())
    }

    fn is_shut_down(&self) -> bool {
        SimLpar::is_shut_down(self)
    }

    fn stop(&self) -> Result<(), PartitionError> {
        SimLpar::stop(self);
        Ok(())
    }

    fn guest_writes(&self) -> Option<u64> {
        Some(self.writes())
    }

    fn max_stall_ns(&self) -> Option<u64> {
        Some(SimLpar::max_stall_ns(self))
    }

    fn resume_stall_ns(&self) -> Option<u64> {
        Some(SimLpar::resume_stall_ns(self))
    }
}

/// The registers every vCPU starts its guest program with.
fn power_on_registers(config: &LparConfig) -> Result<Vec<Regs>, PartitionError> {
    let program = ProgramSpec::parse(&config.program)?;
    (0..config.vcpus)
        .map(|i| program.initial_regs(i, config.vcpus, config.pages()))
        .collect()
}

/// The device state of a new LPAR: the sample's chipset, with the NICs
/// and FC HBAs the configuration declares. An unpinned FC port takes vfcID
/// `1 + index` here (a destination reassigns it at switchover).
pub(crate) fn devices_for(config: &LparConfig) -> DeviceState {
    use crate::state::{LogicalFcHba, LogicalNic, PciAddress};
    let mut state = DeviceState::sample(config.vcpus as usize);
    state.usb = config.usb;
    let nic_template = state.nics.first().cloned();
    let hba_template = state.fc_hbas.first().cloned();
    state.nics = match nic_template {
        Some(t) => config
            .nics
            .iter()
            .enumerate()
            .map(|(i, n)| LogicalNic {
                vnic_number: i as u8,
                mac: n.mac,
                mac_set_manually: n.mac_set_manually,
                vlan_mode: n.vlan_mode,
                vlan_id: n.vlan_id,
                ..t.clone()
            })
            .collect(),
        None => Vec::new(),
    };
    state.fc_hbas = match hba_template {
        Some(t) => config
            .fc_ports
            .iter()
            .enumerate()
            .map(|(i, p)| LogicalFcHba {
                vfc_id: p.vfc_id.unwrap_or(1 + i as u16),
                wwpn: p.wwpn,
                migration_wwpn: p.migration_wwpn,
                pci_address: PciAddress {
                    bus: 0,
                    device: 5 + i as u8,
                    function: 0,
                },
                ..t.clone()
            })
            .collect(),
        None => Vec::new(),
    };
    state
}

/// Writes a new LPAR's devices file, twice: the second write leaves the
/// first version as the temporary that the next write (a restore, inside
/// the suspension) fills in place. Returns the encoding.
fn write_devices(dir: &Path, state: &DeviceState) -> Result<Vec<u8>, PartitionError> {
    let bytes = state.encode()?;
    for _ in 0..2 {
        shm::write_in_place_atomically(&dir.join(DEVICES_FILE), &bytes)?;
    }
    Ok(bytes)
}

fn read_devices(dir: &Path) -> Result<DeviceState, PartitionError> {
    let path = dir.join(DEVICES_FILE);
    let bytes = std::fs::read(&path).map_err(|e| PartitionError::SharedMemory {
        path: path.display().to_string(),
        source: e,
    })?;
    Ok(DeviceState::decode(&bytes)?)
}

/// Allocated extents of a sparse file, as pages (`SEEK_DATA`/`SEEK_HOLE`).
pub(crate) fn populated_extents(file: &std::fs::File, len: u64) -> Result<PageSet, PartitionError> {
    let fd = file;
    let err = |e: nix::Error| PartitionError::SharedMemory {
        path: "guest memory".into(),
        source: e.into(),
    };
    let mut set = PageSet::new();
    let mut offset: i64 = 0;
    while (offset as u64) < len {
        let data = match nix::unistd::lseek(fd, offset, nix::unistd::Whence::SeekData) {
            Ok(d) => d,
            Err(nix::Error::ENXIO) => break, // no data after offset
            Err(e) => return Err(err(e)),
        };
        let hole = nix::unistd::lseek(fd, data, nix::unistd::Whence::SeekHole).map_err(err)?;
        let page = PAGE_SIZE as i64;
        set.insert_range((data / page) as u64..((hole + page - 1) / page) as u64);
        offset = hole;
    }
    Ok(set)
}
