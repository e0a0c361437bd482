//! The shared-memory files that hold a `sim` LPAR, so it outlives the
//! process that hosts it.
//!
//! ```text
//! <root>/<lpar name>/
//!   config.json   LparConfig, replaced atomically (write + rename)
//!   memory        guest memory, sparse until reserved (LparFiles::reserve)
//!   vcpus         header + one slot per vCPU, all 64-bit words:
//!
//!   header  [magic "LPARVCPU"] [layout version] [vcpu count] [run state] [throttle %] [3 × reserved]
//!   slot i  [active bank 0|1] [bank 0: 16 gpr, rip, rflags] [bank 1: same]
//! ```
//!
//! A vCPU commits its registers by writing the inactive bank and then
//! flipping `active`: a process killed at any instant leaves one whole,
//! consistent register set behind.
//!
//! The files are private to the agent (0600, directories 0700): guest
//! memory is nobody else's to read. A hosted LPAR's files are reserved
//! (every block allocated, [`LparFiles::reserve`]) before a vCPU runs: a
//! write into an unallocated page of a full file system faults with SIGBUS,
//! which would kill the agent and every guest it hosts.

use super::program::Regs;
use crate::partition::{LparConfig, MemoryBacking, PAGE_SIZE, PartitionError};
use memmap2::MmapRaw;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Where LPARs live unless told otherwise.
pub const DEFAULT_ROOT: &str = "/dev/shm/lpar-mover";

const MAGIC: u64 = u64::from_le_bytes(*b"LPARVCPU");
const LAYOUT_VERSION: u64 = 1;
const HEADER_WORDS: usize = 8;
const REG_WORDS: usize = 18;
const SLOT_WORDS: usize = 1 + 2 * REG_WORDS;

/// Persisted run state of the vCPUs (header word 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunState {
    /// Defined but never started, or deactivated.
    Stopped = 0,
    /// The vCPUs run.
    Running = 1,
    /// The vCPUs are paused (during a migration's suspension).
    Paused = 2,
}

impl RunState {
    fn from_word(w: u64) -> RunState {
        match w {
            1 => RunState::Running,
            2 => RunState::Paused,
            _ => RunState::Stopped,
        }
    }
}

/// The shared-memory files of one LPAR (memory, vCPU state, header), mapped.
pub struct LparFiles {
    /// The LPAR's directory.
    pub dir: PathBuf,
    /// Guest memory, mapped shared.
    pub memory: MmapRaw,
    memory_file: File,
    vcpus_file: File,
    vcpus: MmapRaw,
    vcpu_count: usize,
}

/// Creates `path` and its missing parents, each private to this user.
pub fn private_dir_all(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
}

/// Options that create files private to this user.
pub fn private_file() -> OpenOptions {
    use std::os::unix::fs::OpenOptionsExt;
    let mut o = OpenOptions::new();
    o.mode(0o600);
    o
}

fn shm_err(path: &Path, source: std::io::Error) -> PartitionError {
    PartitionError::SharedMemory {
        path: path.display().to_string(),
        source,
    }
}

fn corrupt(path: &Path, what: impl Into<String>) -> PartitionError {
    PartitionError::Corrupt {
        path: path.display().to_string(),
        what: what.into(),
    }
}

impl LparFiles {
    /// Creates the files of a new LPAR. Fails if the LPAR already exists.
    pub fn create(root: &Path, config: &LparConfig) -> Result<Self, PartitionError> {
        config.validate()?;
        let dir = root.join(&config.name);
        private_dir_all(root).map_err(|e| shm_err(root, e))?;
        {
            use std::os::unix::fs::DirBuilderExt;
            fs::DirBuilder::new()
                .mode(0o700)
                .create(&dir)
                .map_err(|e| shm_err(&dir, e))?;
        }
        let memory_path = dir.join("memory");
        let memory_file = private_file()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&memory_path)
            .map_err(|e| shm_err(&memory_path, e))?;
        // set_len makes a hole: no page is allocated until written.
        memory_file
            .set_len(config.memory_bytes)
            .map_err(|e| shm_err(&memory_path, e))?;

        let vcpus_path = dir.join("vcpus");
        let vcpus_file = private_file()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&vcpus_path)
            .map_err(|e| shm_err(&vcpus_path, e))?;
        let words = HEADER_WORDS + SLOT_WORDS * config.vcpus as usize;
        vcpus_file
            .set_len((words * 8) as u64)
            .map_err(|e| shm_err(&vcpus_path, e))?;
        // The vCPU file is written through its mapping below: allocated
        // now, so that a full file system is an error here, not a SIGBUS.
        allocate(&vcpus_file, &vcpus_path)?;
        write_config(&dir, config)?;
        let files = Self::map(dir, memory_file, vcpus_file, config.vcpus as usize)?;
        let h = files.header();
        h[1].store(LAYOUT_VERSION, Ordering::Relaxed);
        h[2].store(u64::from(config.vcpus), Ordering::Relaxed);
        h[3].store(RunState::Stopped as u64, Ordering::Relaxed);
        h[0].store(MAGIC, Ordering::Release);
        Ok(files)
    }

    /// Re-attaches the files of an existing LPAR (after an agent restart).
    pub fn attach(dir: &Path) -> Result<(Self, LparConfig), PartitionError> {
        let config = read_config(dir)?;
        let memory_path = dir.join("memory");
        let memory_file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&memory_path)
            .map_err(|e| shm_err(&memory_path, e))?;
        let len = memory_file
            .metadata()
            .map_err(|e| shm_err(&memory_path, e))?
            .len();
        if len != config.memory_bytes {
            return Err(corrupt(
                &memory_path,
                format!(
                    "memory file is {len} bytes, configuration says {}",
                    config.memory_bytes
                ),
            ));
        }
        let vcpus_path = dir.join("vcpus");
        let vcpus_file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&vcpus_path)
            .map_err(|e| shm_err(&vcpus_path, e))?;
        let want = ((HEADER_WORDS + SLOT_WORDS * config.vcpus as usize) * 8) as u64;
        let have = vcpus_file
            .metadata()
            .map_err(|e| shm_err(&vcpus_path, e))?
            .len();
        if have != want {
            return Err(corrupt(
                &vcpus_path,
                format!("vCPU file is {have} bytes, expected {want}"),
            ));
        }
        let files = Self::map(
            dir.to_path_buf(),
            memory_file,
            vcpus_file,
            config.vcpus as usize,
        )?;
        let h = files.header();
        if h[0].load(Ordering::Acquire) != MAGIC || h[1].load(Ordering::Relaxed) != LAYOUT_VERSION {
            return Err(corrupt(
                &vcpus_path,
                "vCPU file has a wrong magic or layout version",
            ));
        }
        // Its guest may be running: no vCPU starts before the room is sure.
        if config.memory_backing == MemoryBacking::Reserved {
            files.reserve()?;
        }
        Ok((files, config))
    }

    fn map(
        dir: PathBuf,
        memory_file: File,
        vcpus_file: File,
        vcpu_count: usize,
    ) -> Result<Self, PartitionError> {
        let memory = MmapRaw::map_raw(&memory_file).map_err(|e| shm_err(&dir, e))?;
        let vcpus = MmapRaw::map_raw(&vcpus_file).map_err(|e| shm_err(&dir, e))?;
        Ok(LparFiles {
            dir,
            memory,
            memory_file,
            vcpus_file,
            vcpus,
            vcpu_count,
        })
    }

    /// Allocates and maps guest pages `pages` for writing (see
    /// [`populate_for_write`]).
    pub fn populate_for_write(
        &self,
        backing: MemoryBacking,
        pages: &mut dyn Iterator<Item = u64>,
    ) -> Result<(), PartitionError> {
        populate_for_write(&self.memory, &self.dir.join("memory"), backing, pages)
    }

    /// The guest memory file.
    pub fn memory_file(&self) -> &File {
        &self.memory_file
    }

    /// Allocates every block of guest memory and the vCPU file (blocks
    /// already allocated cost nothing, and their data stays): after this no
    /// write into them can fault for want of room. Fails with
    /// [`PartitionError::NoRoom`] when the file system cannot hold them.
    pub fn reserve(&self) -> Result<(), PartitionError> {
        allocate(&self.vcpus_file, &self.dir.join("vcpus"))?;
        allocate(&self.memory_file, &self.dir.join("memory"))
    }

    fn words(&self) -> &[AtomicU64] {
        let len = HEADER_WORDS + SLOT_WORDS * self.vcpu_count;
        // SAFETY: the mapping is at least `len` words (checked or set at
        // creation), page aligned, lives as long as self, and is only ever
        // accessed through atomics, by this and other processes.
        unsafe { std::slice::from_raw_parts(self.vcpus.as_ptr() as *const AtomicU64, len) }
    }

    fn header(&self) -> &[AtomicU64] {
        &self.words()[..HEADER_WORDS]
    }

    fn slot(&self, vcpu: usize) -> &[AtomicU64] {
        let start = HEADER_WORDS + SLOT_WORDS * vcpu;
        &self.words()[start..start + SLOT_WORDS]
    }

    /// The persisted run state.
    pub fn run_state(&self) -> RunState {
        RunState::from_word(self.header()[3].load(Ordering::Acquire))
    }

    /// Persists the run state.
    pub fn set_run_state(&self, state: RunState) {
        self.header()[3].store(state as u64, Ordering::Release);
    }

    /// The vCPU throttle, percent.
    pub fn throttle(&self) -> u8 {
        self.header()[4].load(Ordering::Relaxed) as u8
    }

    /// Sets the vCPU throttle, percent.
    pub fn set_throttle(&self, percent: u8) {
        self.header()[4].store(u64::from(percent), Ordering::Relaxed);
    }

    /// The committed registers of `vcpu`.
    pub fn load_regs(&self, vcpu: usize) -> Regs {
        let slot = self.slot(vcpu);
        let bank = slot[0].load(Ordering::Acquire) as usize & 1;
        let words = &slot[1 + bank * REG_WORDS..1 + (bank + 1) * REG_WORDS];
        let mut regs = Regs::default();
        for (r, w) in regs.gpr.iter_mut().zip(words) {
            *r = w.load(Ordering::Relaxed);
        }
        regs.rip = words[16].load(Ordering::Relaxed);
        regs.rflags = words[17].load(Ordering::Relaxed);
        regs
    }

    /// Commits `regs` as the registers of `vcpu`, all or nothing.
    pub fn store_regs(&self, vcpu: usize, regs: &Regs) {
        let slot = self.slot(vcpu);
        let inactive = (slot[0].load(Ordering::Relaxed) as usize & 1) ^ 1;
        let words = &slot[1 + inactive * REG_WORDS..1 + (inactive + 1) * REG_WORDS];
        for (w, r) in words.iter().zip(regs.gpr.iter()) {
            w.store(*r, Ordering::Relaxed);
        }
        words[16].store(regs.rip, Ordering::Relaxed);
        words[17].store(regs.rflags, Ordering::Relaxed);
        // Release: the bank's words are visible before it becomes active.
        slot[0].store(inactive as u64, Ordering::Release);
    }

    /// Guest memory in pages.
    pub fn memory_pages(&self) -> u64 {
        (self.memory.len() / PAGE_SIZE) as u64
    }
}

/// Allocates the whole of `file` (`fallocate`, keeping its size and data).
/// A file system without `fallocate` cannot promise the room: that is
/// logged, and the file stays as it is.
pub(crate) fn allocate(file: &File, path: &Path) -> Result<(), PartitionError> {
    let len = file.metadata().map_err(|e| shm_err(path, e))?.len();
    if len == 0 {
        return Ok(());
    }
    let flags = nix::fcntl::FallocateFlags::empty();
    match nix::fcntl::fallocate(file, flags, 0, len as libc::off_t) {
        Ok(()) => Ok(()),
        Err(nix::Error::ENOSPC) => Err(PartitionError::NoRoom {
            path: path.display().to_string(),
            bytes: len,
        }),
        Err(nix::Error::EOPNOTSUPP) => {
            log::warn!(
                "{}: the file system cannot reserve guest memory (no fallocate); a full file \
                 system would stop the guest",
                path.display()
            );
            Ok(())
        }
        Err(e) => Err(shm_err(path, e.into())),
    }
}

/// Maps guest pages `pages` of `map` (the memory file at `path`) for
/// writing, allocating the blocks its file does not hold yet. A plain write
/// into an unallocated page of a full file system raises SIGBUS, which
/// kills the agent and every guest it runs; populating first turns that
/// into [`PartitionError::NoRoom`], and the migration fails as any other
/// would. Reserved memory was allocated whole at create or attach and
/// cannot fault for want of room: nothing to do for it (`pages` is not
/// even walked). Otherwise one system call per run of consecutive pages.
pub(crate) fn populate_for_write(
    map: &MmapRaw,
    path: &Path,
    backing: MemoryBacking,
    pages: &mut dyn Iterator<Item = u64>,
) -> Result<(), PartitionError> {
    if backing == MemoryBacking::Reserved {
        return Ok(());
    }
    let mut run: Option<std::ops::Range<u64>> = None;
    for page in pages {
        run = match run {
            Some(r) if r.end == page => Some(r.start..page + 1),
            Some(r) => {
                populate_run(map, path, r)?;
                Some(page..page + 1)
            }
            None => Some(page..page + 1),
        };
    }
    run.map_or(Ok(()), |r| populate_run(map, path, r))
}

/// [`populate_for_write`] for one run of consecutive pages.
fn populate_run(
    map: &MmapRaw,
    path: &Path,
    pages: std::ops::Range<u64>,
) -> Result<(), PartitionError> {
    let total = (map.len() / PAGE_SIZE) as u64;
    if pages.end > total || pages.start > pages.end {
        return Err(PartitionError::PageOutOfRange {
            page: pages.end.saturating_sub(1).max(pages.start),
            pages: total,
        });
    }
    if pages.is_empty() {
        return Ok(());
    }
    let bytes = (pages.end - pages.start) as usize * PAGE_SIZE;
    // SAFETY: the range lies inside the live mapping (checked above);
    // populating only allocates and maps pages, it changes no byte.
    let done = unsafe {
        libc::madvise(
            map.as_mut_ptr()
                .add(pages.start as usize * PAGE_SIZE)
                .cast(),
            bytes,
            libc::MADV_POPULATE_WRITE,
        )
    };
    if done == 0 {
        return Ok(());
    }
    let error = std::io::Error::last_os_error();
    match error.raw_os_error() {
        // EFAULT: a write would have raised SIGBUS (the file system is
        // full); ENOMEM: the host has no memory left for the pages.
        Some(libc::EFAULT) | Some(libc::ENOMEM) => Err(PartitionError::NoRoom {
            path: path.display().to_string(),
            bytes: bytes as u64,
        }),
        _ => Err(shm_err(path, error)),
    }
}

/// Writes the LPAR's configuration file into `dir`, atomically.
pub fn write_config(dir: &Path, config: &LparConfig) -> Result<(), PartitionError> {
    let text = serde_json::to_vec_pretty(config).expect("LparConfig serialises");
    write_atomically(&dir.join("config.json"), &text)
}

/// Replaces `path` with `bytes` so that a crash leaves the old or the new
/// content, never a mix (write a temporary, fsync, rename).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), PartitionError> {
    let (mut file, tmp) = open_temporary(path, true)?;
    file.write_all(bytes).map_err(|e| shm_err(&tmp, e))?;
    file.sync_all().map_err(|e| shm_err(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| shm_err(path, e))
}

/// `path` with `.tmp` appended, opened for writing (emptied when
/// `truncate`, else its pages kept) and set to 0600: a temporary left by a
/// crash keeps its old mode.
fn open_temporary(path: &Path, truncate: bool) -> Result<(File, PathBuf), PartitionError> {
    use std::os::unix::fs::PermissionsExt;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let file = private_file()
        .write(true)
        .create(true)
        .truncate(truncate)
        .open(&tmp)
        .map_err(|e| shm_err(&tmp, e))?;
    file.set_permissions(fs::Permissions::from_mode(0o600))
        .map_err(|e| shm_err(&tmp, e))?;
    Ok((file, tmp))
}

/// Like [`write_atomically`], for a file rewritten often inside the
/// suspension (the device state): the bytes go into the pages of a
/// temporary kept from the last write, which then trades places with
/// `path` (`renameat2(RENAME_EXCHANGE)`), so the old contents become the
/// next temporary. A new file's pages, allocated and zeroed by the kernel
/// one fault at a time, cost a millisecond for a few hundred KB; pages
/// that are already there cost a copy. Either name holds a whole version
/// at every instant.
pub fn write_in_place_atomically(path: &Path, bytes: &[u8]) -> Result<(), PartitionError> {
    use std::os::unix::fs::FileExt;
    let (file, tmp) = open_temporary(path, false)?;
    file.write_all_at(bytes, 0).map_err(|e| shm_err(&tmp, e))?;
    file.set_len(bytes.len() as u64)
        .map_err(|e| shm_err(&tmp, e))?;
    file.sync_all().map_err(|e| shm_err(&tmp, e))?;
    let cwd = nix::fcntl::AT_FDCWD;
    match nix::fcntl::renameat2(
        cwd,
        &tmp,
        cwd,
        path,
        nix::fcntl::RenameFlags::RENAME_EXCHANGE,
    ) {
        Ok(()) => Ok(()),
        // The first write (nothing to trade with yet), or a file system
        // without the exchange: a plain rename.
        Err(_) => fs::rename(&tmp, path).map_err(|e| shm_err(path, e)),
    }
}

pub(crate) fn read_config(dir: &Path) -> Result<LparConfig, PartitionError> {
    let path = dir.join("config.json");
    let text = fs::read(&path).map_err(|e| shm_err(&path, e))?;
    let config: LparConfig = serde_json::from_slice(&text)
        .map_err(|e| corrupt(&path, format!("configuration does not parse: {e}")))?;
    config.validate()?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_in_place_write_trades_places_and_leaves_a_whole_version_under_both_names() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("devices.bin");
        let tmp = dir.path().join("devices.bin.tmp");
        write_in_place_atomically(&path, b"first version").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"first version");
        write_in_place_atomically(&path, b"second").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second");
        // The old file became the next temporary (its pages kept).
        assert_eq!(fs::read(&tmp).unwrap(), b"first version");
        write_in_place_atomically(&path, b"a third, longer version").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"a third, longer version");
        assert_eq!(fs::read(&tmp).unwrap(), b"second");
        use std::os::unix::fs::PermissionsExt;
        for p in [&path, &tmp] {
            assert_eq!(fs::metadata(p).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }

    #[test]
    fn populating_for_write_allocates_exactly_the_pages_asked_and_only_on_demand() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir_in("/dev/shm").unwrap();
        let path = dir.path().join("memory");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        file.set_len(64 * PAGE_SIZE as u64).unwrap();
        let map = MmapRaw::map_raw(&file).unwrap();
        let held = || fs::metadata(&path).unwrap().blocks() * 512;

        // Reserved memory was allocated whole already: nothing to do.
        populate_for_write(&map, &path, MemoryBacking::Reserved, &mut (0..64)).unwrap();
        assert_eq!(held(), 0);
        populate_for_write(&map, &path, MemoryBacking::OnDemand, &mut (8..12)).unwrap();
        assert_eq!(held(), 4 * PAGE_SIZE as u64);
        // Populating changes no byte, and again is free.
        populate_for_write(&map, &path, MemoryBacking::OnDemand, &mut (8..12)).unwrap();
        assert_eq!(held(), 4 * PAGE_SIZE as u64);
        assert!(fs::read(&path).unwrap().iter().all(|&b| b == 0));

        let beyond = populate_for_write(&map, &path, MemoryBacking::OnDemand, &mut (60..65));
        assert!(
            matches!(
                beyond,
                Err(PartitionError::PageOutOfRange { pages: 64, .. })
            ),
            "{beyond:?}"
        );
        assert_eq!(held(), 4 * PAGE_SIZE as u64, "nothing of a refused range");
        // Scattered pages: each run, and nothing between them.
        populate_for_write(
            &map,
            &path,
            MemoryBacking::OnDemand,
            &mut [20, 21, 30, 40, 41, 42].into_iter(),
        )
        .unwrap();
        assert_eq!(held(), 10 * PAGE_SIZE as u64);
    }
}
