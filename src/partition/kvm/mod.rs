//! The `kvm` backend: each LPAR is a KVM virtual machine.
//!
//! | file | job |
//! |---|---|
//! | `memory` | guest memory: a shared-memory file mapped here and into the VM as one or two slots; the log of the VMM's own writes |
//! | `dirty` | the dirty log: `KVM_MEM_LOG_DIRTY_PAGES` with manual protect and `KVM_CLEAR_DIRTY_LOG`, over every slot |
//! | `boot` | the multiboot v1 loader and the entry machine state |
//! | `vcpu` | vCPU threads, COM1, pause/resume/throttle |
//! | `stall` | the guest-observed stall across the last resume, from the guest's mailbox |
//! | `state` | device state to and from the `state` model, in the kernel's order |
//! | `sys` | the raw ioctls and the kick signal |
//! | `channel` | messages to and from a per-LPAR VMM process, and their decoder |
//! | `vmm`, `remote` | the per-LPAR VMM process (`moverd lpar-vmm`) and the agent's handle on it |
//!
//! An LPAR lives under `<root>/<name>/`: `config.json`, `memory` (guest
//! RAM, reserved at create unless its memory backing is on-demand) and `console.log` (COM1). The VM is built with
//! the in-kernel irqchip and PIT before any vCPU; the BSP enters the
//! kernel in the multiboot machine state, the APs wait for INIT-SIPI-SIPI.
//!
//! Guest memory: the first 3 GiB of the `memory` file are RAM at
//! guest-physical 0, the rest (if any) RAM at 4 GiB, so the 32-bit MMIO
//! hole (I/O APIC, LAPIC) holds none; the multiboot memory map lists both
//! (`kvm/memory.rs` has the layout). The engine numbers pages by file offset,
//! so the page indexes run densely across the hole.
//!
//! A [`KvmLpar`] is the VM in this process; [`KvmBackend::with_vmm_processes`]
//! puts each in a `moverd lpar-vmm` process of its own ([`vmm`]), which
//! outlives the agent, and [`Backend::attach`] reconnects to it.

mod boot;
pub mod channel;
mod dirty;
mod memory;
mod remote;
mod stall;
mod state;
mod sys;
mod vcpu;
pub mod vmm;

use crate::partition::backend::{check_create, lpar_dirs};
use crate::partition::config::check_name;
use crate::partition::guest::mailbox;
use crate::partition::sim::shm;
use crate::partition::{
    Backend, DeviceModel, DirtyLog, GuestMemory, LparConfig, MemoryBacking, MemoryRegion,
    PAGE_SIZE, Page, PageSet, Partition, PartitionError, Vcpus,
};
use crate::state::DeviceState;
use kvm_bindings::{KVM_MAX_CPUID_ENTRIES, kvm_pit_config};
use kvm_ioctls::{Kvm, VmFd};
use memory::GuestRam;
pub use memory::{HIGH_BASE, HOLE_START};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Where the KVM device lives.
pub const DEV_KVM: &str = "/dev/kvm";

/// Why KVM cannot be used here, or `None` when `/dev/kvm` opens.
pub fn unavailable() -> Option<String> {
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(DEV_KVM)
    {
        Ok(_) => None,
        Err(e) => Some(format!("{DEV_KVM}: {e}")),
    }
}

fn kvm_err(call: &'static str, e: impl std::fmt::Display) -> PartitionError {
    PartitionError::BadConfig {
        why: format!("KVM {call} failed: {e}"),
    }
}

fn io_err(path: &Path, e: std::io::Error) -> PartitionError {
    PartitionError::SharedMemory {
        path: path.display().to_string(),
        source: e,
    }
}

/// One KVM virtual machine hosted by this process.
pub struct KvmLpar {
    config: LparConfig,
    dir: PathBuf,
    regions: Vec<MemoryRegion>,
    vcpus: vcpu::VcpuSet,
    vm: Arc<VmFd>,
    ram: Arc<GuestRam>,
    msr_indices: Vec<u32>,
    stall: stall::StallProbe,
    _kvm: Kvm,
}

impl KvmLpar {
    /// Creates LPAR `config.name` under `root` booting the built-in guest
    /// with `config.program` as its command line.
    /// `config.kernel` and `config.cmdline`, when set, name another
    /// multiboot image and its command line.
    pub fn create(root: &Path, config: &LparConfig) -> Result<Self, PartitionError> {
        let cmdline = match &config.cmdline {
            Some(c) => c.clone(),
            None => format!("lpar-guest {}", config.program),
        };
        match &config.kernel {
            None => Self::create_with(root, config, crate::partition::guest::IMAGE, &cmdline),
            Some(path) => {
                let image = std::fs::read(path).map_err(|e| io_err(Path::new(path), e))?;
                Self::create_with(root, config, &image, &cmdline)
            }
        }
    }

    /// Creates an LPAR booting `image` (multiboot v1) with `cmdline`.
    pub fn create_with(
        root: &Path,
        config: &LparConfig,
        image: &[u8],
        cmdline: &str,
    ) -> Result<Self, PartitionError> {
        config.validate()?;
        let dir = root.join(&config.name);
        shm::private_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
        shm::write_config(&dir, config)?;
        let path = dir.join("memory");
        let file = shm::private_file()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| io_err(&path, e))?;
        file.set_len(config.memory_bytes)
            .map_err(|e| io_err(&path, e))?;
        match config.memory_backing {
            MemoryBacking::Reserved => shm::allocate(&file, &path)?,
            MemoryBacking::OnDemand => {}
        }
        let ram = Arc::new(GuestRam::map(file, &path)?);
        let console = dir.join("console.log");
        let log = shm::private_file()
            .create(true)
            .append(true)
            .open(&console)
            .map_err(|e| io_err(&console, e))?;
        let entry = boot::load(&ram, image)?;
        boot::write_info(&ram, cmdline)?;
        Self::build(config.clone(), dir, ram, log, entry)
    }

    fn build(
        config: LparConfig,
        dir: PathBuf,
        ram: Arc<GuestRam>,
        log: std::fs::File,
        entry: u32,
    ) -> Result<Self, PartitionError> {
        let kvm = Kvm::new().map_err(|e| kvm_err("open /dev/kvm", e))?;
        let vm = Arc::new(kvm.create_vm().map_err(|e| kvm_err("CREATE_VM", e))?);
        let _ = vm.set_tss_address(0xfffb_d000);
        // The irqchip and the PIT exist before any vCPU.
        vm.create_irq_chip()
            .map_err(|e| kvm_err("CREATE_IRQCHIP", e))?;
        vm.create_pit2(kvm_pit_config::default())
            .map_err(|e| kvm_err("CREATE_PIT2", e))?;
        dirty::set_slots(&vm, &ram, false)?;
        let base_cpuid = kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(|e| kvm_err("GET_SUPPORTED_CPUID", e))?;
        let mut fds = Vec::new();
        for i in 0..config.vcpus {
            let fd = vm
                .create_vcpu(u64::from(i))
                .map_err(|e| kvm_err("CREATE_VCPU", e))?;
            let mut cpuid = base_cpuid.clone();
            for e in cpuid.as_mut_slice() {
                match e.function {
                    1 => e.ebx = (e.ebx & 0x00ff_ffff) | (i << 24),
                    0xb | 0x1f => e.edx = i,
                    _ => {}
                }
            }
            fd.set_cpuid2(&cpuid)
                .map_err(|e| kvm_err("SET_CPUID2", e))?;
            if i == 0 {
                let sregs = fd.get_sregs().map_err(|e| kvm_err("GET_SREGS", e))?;
                let (regs, sregs) = boot::entry_state(entry, sregs);
                fd.set_sregs(&sregs).map_err(|e| kvm_err("SET_SREGS", e))?;
                fd.set_regs(&regs).map_err(|e| kvm_err("SET_REGS", e))?;
            }
            fds.push(fd);
        }
        let listed = kvm
            .get_msr_index_list()
            .map_err(|e| kvm_err("GET_MSR_INDEX_LIST", e))?;
        let msr_indices = state::readable_msrs(&fds[0], listed.as_slice());
        let serial = Arc::new(Mutex::new(vcpu::Serial::new(log)));
        let vcpus = vcpu::VcpuSet::start(fds, serial);
        Ok(KvmLpar {
            regions: memory::regions(config.memory_bytes),
            config,
            dir,
            vcpus,
            vm,
            ram,
            msr_indices,
            stall: stall::StallProbe::default(),
            _kvm: kvm,
        })
    }

    /// The LPAR's directory under the backend root (its `memory` file,
    /// `console.log` and, when served by `lpar-vmm`, its socket).
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The COM1 output so far.
    pub fn console(&self) -> String {
        std::fs::read_to_string(self.dir.join("console.log")).unwrap_or_default()
    }

    /// The guest's mailbox page, decoded (`None` before the guest set it up).
    pub fn mailbox(&self) -> Option<mailbox::Mailbox> {
        let mut page = [0u8; PAGE_SIZE];
        self.ram.read_bytes(mailbox::ADDR, &mut page).ok()?;
        mailbox::Mailbox::decode(&page)
    }

    /// A vCPU stopped on an exit it cannot handle.
    pub fn failed(&self) -> bool {
        self.vcpus.failed()
    }
}

impl GuestMemory for KvmLpar {
    fn regions(&self) -> &[MemoryRegion] {
        &self.regions
    }

    fn read_page(&self, page: u64, out: &mut Page) -> Result<(), PartitionError> {
        self.ram.read(page, out)
    }

    fn write_page(&self, page: u64, data: &Page) -> Result<(), PartitionError> {
        self.ram.write(page, data)
    }

    fn update_page(&self, page: u64, f: &mut dyn FnMut(&mut Page)) -> Result<(), PartitionError> {
        if self.vcpus.is_running() {
            return Err(PartitionError::NotPaused {
                operation: "writing guest memory in place",
            });
        }
        self.ram.update(page, f)
    }

    fn populate_for_write(
        &self,
        pages: &mut dyn Iterator<Item = u64>,
    ) -> Result<(), PartitionError> {
        self.ram
            .populate_for_write(self.config.memory_backing, pages)
    }

    fn populated(&self) -> Result<PageSet, PartitionError> {
        crate::partition::sim::populated_extents(&self.ram.file, self.ram.map.len() as u64)
    }

    fn digest(&self) -> Result<[u8; 32], PartitionError> {
        if self.vcpus.is_running() {
            return Err(PartitionError::NotPaused {
                operation: "the memory digest",
            });
        }
        // SAFETY: no vCPU runs, and the VMM writes only on request.
        Ok(*blake3::hash(unsafe { self.ram.as_slice() }).as_bytes())
    }
}

impl Vcpus for KvmLpar {
    fn count(&self) -> usize {
        self.vcpus.count()
    }

    fn pause(&self) -> Result<(), PartitionError> {
        self.vcpus.pause();
        self.stall.disarm();
        Ok(())
    }

    fn resume(&self) -> Result<(), PartitionError> {
        if !self.vcpus.is_running() {
            self.stall.arm(&self.ram);
        }
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

impl DeviceModel for KvmLpar {
    fn save_state(&self) -> Result<DeviceState, PartitionError> {
        if self.vcpus.is_running() {
            return Err(PartitionError::NotPaused {
                operation: "saving device state",
            });
        }
        let mut out = crate::partition::sim::devices_for(&self.config);
        // Devices this VM does not have: no HPET, PM timer, RTC, ACPI, VGA
        // (the sample's 256 KiB of VRAM was 3/4 of the saved bytes) or EFI
        // variable store (64 KiB).
        (out.hpet, out.pm_timer, out.rtc, out.acpi) = (None, None, None, None);
        out.vga = crate::state::Vga {
            assigned: crate::state::VgaAssignment::Unassigned,
            snapshot: None,
        };
        out.firmware.nvram = Vec::new();
        out.vcpus = self
            .vcpus
            .fds
            .iter()
            .map(|fd| state::save_vcpu(&fd.lock().unwrap(), &self.msr_indices))
            .collect::<Result<_, _>>()?;
        let tsc_khz = self.vcpus.fds[0].lock().unwrap().get_tsc_khz();
        out.tsc_khz = tsc_khz.unwrap_or(0);
        state::save_platform(&self.vm, &mut out)?;
        Ok(out)
    }

    fn restore_state(&self, state: &DeviceState) -> Result<(), PartitionError> {
        if self.vcpus.is_running() {
            return Err(PartitionError::NotPaused {
                operation: "restoring device state",
            });
        }
        if state.vcpus.is_empty() {
            return Ok(()); // Shutdown mode: the guest boots afresh.
        }
        if state.vcpus.len() != self.vcpus.count() {
            return Err(PartitionError::BadConfig {
                why: format!(
                    "{} vCPU states for an LPAR with {} vCPUs",
                    state.vcpus.len(),
                    self.vcpus.count()
                ),
            });
        }
        state::restore_platform(&self.vm, state)?;
        for (fd, v) in self.vcpus.fds.iter().zip(&state.vcpus) {
            state::restore_vcpu(&fd.lock().unwrap(), v)?;
        }
        Ok(())
    }
}

impl Partition for KvmLpar {
    fn config(&self) -> &LparConfig {
        &self.config
    }

    fn dirty_log(&self) -> Result<Box<dyn DirtyLog>, PartitionError> {
        Ok(Box::new(dirty::KvmDirtyLog::new(
            self.vm.clone(),
            self.ram.clone(),
        )))
    }

    fn request_shutdown(&self) -> Result<(), PartitionError> {
        let at = mailbox::ADDR + mailbox::OFF_POWER_BUTTON as u64;
        self.ram.write_bytes(at, &1u32.to_le_bytes())
    }

    fn is_shut_down(&self) -> bool {
        self.mailbox()
            .is_some_and(|m| m.flags & mailbox::FLAG_HALTED != 0)
    }

    fn stop(&self) -> Result<(), PartitionError> {
        self.vcpus.pause();
        Ok(())
    }

    fn guest_writes(&self) -> Option<u64> {
        Some(self.mailbox().map_or(0, |m| m.total_writes))
    }

    fn console_log(&self) -> Option<PathBuf> {
        Some(self.dir.join("console.log"))
    }

    fn max_stall_ns(&self) -> Option<u64> {
        let m = self.mailbox()?;
        (m.tsc_hz != 0)
            .then(|| (u128::from(m.max_gap) * 1_000_000_000 / u128::from(m.tsc_hz)) as u64)
    }

    fn resume_stall_ns(&self) -> Option<u64> {
        self.stall.stall_ns()
    }
}

/// The `kvm` backend.
pub struct KvmBackend {
    root: PathBuf,
    hosted: Mutex<HashMap<String, Arc<KvmLpar>>>,
    /// The program whose `lpar-vmm` subcommand hosts each VM in a process
    /// of its own; `None`: VMs live in this process.
    vmm_program: Option<PathBuf>,
    remote: Mutex<HashMap<String, Arc<remote::RemoteLpar>>>,
}

/// How long a new LPAR process may take to open its socket.
const VMM_START_PATIENCE: std::time::Duration = std::time::Duration::from_secs(60);

impl KvmBackend {
    /// VMs hosted in this process (they die with it).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        KvmBackend {
            root: root.into(),
            hosted: Mutex::new(HashMap::new()),
            vmm_program: None,
            remote: Mutex::new(HashMap::new()),
        }
    }

    /// Each VM in its own `program lpar-vmm` process, in a session of its
    /// own (`setsid`), so it outlives this one; [`Backend::attach`]
    /// reconnects to it after a restart.
    pub fn with_vmm_processes(root: impl Into<PathBuf>, program: impl Into<PathBuf>) -> Self {
        KvmBackend {
            vmm_program: Some(program.into()),
            ..KvmBackend::new(root)
        }
    }

    fn spawn(
        &self,
        program: &Path,
        config: &LparConfig,
    ) -> Result<Arc<remote::RemoteLpar>, PartitionError> {
        use std::os::unix::process::CommandExt;
        let dir = self.root.join(&config.name);
        shm::private_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
        let log_path = dir.join("vmm.log");
        let log = shm::private_file()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| io_err(&log_path, e))?;
        let json = serde_json::to_string(config)
            .map_err(|e| PartitionError::BadConfig { why: e.to_string() })?;
        let mut cmd = std::process::Command::new(program);
        cmd.arg("lpar-vmm")
            .arg("--root")
            .arg(&self.root)
            .arg("--config")
            .arg(json)
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().map_err(|e| io_err(&log_path, e))?)
            .stderr(log);
        // SAFETY: setsid is async-signal-safe and touches no memory of
        // this process; it only detaches the child from our session.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|e| io_err(program, e))?;
        let sock = dir.join(vmm::SOCKET);
        let t0 = std::time::Instant::now();
        while !sock.exists() {
            if let Ok(Some(status)) = child.try_wait() {
                let why = std::fs::read_to_string(&log_path).unwrap_or_default();
                return Err(PartitionError::BadConfig {
                    why: format!("the LPAR process exited ({status}): {}", why.trim()),
                });
            }
            if t0.elapsed() > VMM_START_PATIENCE {
                let _ = child.kill();
                return Err(PartitionError::BadConfig {
                    why: format!(
                        "the LPAR process did not open {} in {VMM_START_PATIENCE:?}",
                        sock.display()
                    ),
                });
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        // Reaped by nobody on purpose: it outlives us (init adopts it).
        std::mem::forget(child);
        Ok(Arc::new(remote::RemoteLpar::connect(&dir, config.clone())?))
    }
}

impl Backend for KvmBackend {
    fn kind(&self) -> &'static str {
        "kvm"
    }

    fn root(&self) -> &Path {
        &self.root
    }

    fn create(
        &self,
        name: &str,
        config: &LparConfig,
    ) -> Result<Arc<dyn Partition>, PartitionError> {
        check_create(name, config)?;
        if let Some(program) = &self.vmm_program {
            let lpar = self.spawn(program, config).inspect_err(|_| {
                let _ = std::fs::remove_dir_all(self.root.join(name));
            })?;
            self.remote
                .lock()
                .unwrap()
                .insert(name.to_string(), lpar.clone());
            return Ok(lpar);
        }
        let lpar = match KvmLpar::create(&self.root, config) {
            Ok(l) => Arc::new(l),
            Err(e) => {
                let _ = std::fs::remove_dir_all(self.root.join(name));
                return Err(e);
            }
        };
        self.hosted
            .lock()
            .unwrap()
            .insert(name.to_string(), lpar.clone());
        Ok(lpar)
    }

    fn attach(&self, name: &str) -> Result<Arc<dyn Partition>, PartitionError> {
        check_name(name)?;
        if let Some(l) = self.remote.lock().unwrap().get(name) {
            return Ok(l.clone());
        }
        let dir = self.root.join(name);
        if dir.join(vmm::SOCKET).exists() {
            let config = shm::read_config(&dir)?;
            let l = Arc::new(remote::RemoteLpar::connect(&dir, config)?);
            self.remote
                .lock()
                .unwrap()
                .insert(name.to_string(), l.clone());
            return Ok(l);
        }
        match self.hosted.lock().unwrap().get(name) {
            Some(l) => Ok(l.clone()),
            None => Err(PartitionError::BadConfig {
                why: format!(
                    "KVM LPAR '{name}' is not hosted by this process (its VM died with the \
                     process that created it)"
                ),
            }),
        }
    }

    fn list(&self) -> Result<Vec<String>, PartitionError> {
        lpar_dirs(&self.root)
    }

    fn remove(&self, name: &str) -> Result<(), PartitionError> {
        check_name(name)?;
        if let Some(l) = self.hosted.lock().unwrap().remove(name) {
            l.vcpus.pause();
        }
        let remote = self.remote.lock().unwrap().remove(name);
        if let Some(l) = remote {
            l.terminate()?;
        } else if self.root.join(name).join(vmm::SOCKET).exists() {
            let config = shm::read_config(&self.root.join(name))?;
            remote::RemoteLpar::connect(&self.root.join(name), config)?.terminate()?;
        }
        let dir = self.root.join(name);
        std::fs::remove_dir_all(&dir).map_err(|e| io_err(&dir, e))
    }
}
