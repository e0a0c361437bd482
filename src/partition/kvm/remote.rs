//! An LPAR whose VM lives in its own `lpar-vmm` process ([`super::vmm`]),
//! driven over `<dir>/vmm.sock` with guest memory mapped from
//! `<dir>/memory` here too: page reads and writes never cross the socket.
//! Writes made here are logged here and ORed into every harvest, so the
//! dirty log still reports every write the VMM side makes.

use super::channel::{Reply, Request, Status};
use super::memory::GuestRam;
use super::vmm::{SOCKET, read_frame};
use crate::partition::guest::mailbox;
use crate::partition::{
    DeviceModel, DirtyLog, GuestMemory, LparConfig, MemoryRegion, PAGE_SIZE, Page, PageSet,
    Partition, PartitionError, Vcpus,
};
use crate::state::DeviceState;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

struct Link {
    conn: Mutex<UnixStream>,
    ram: GuestRam,
}

fn channel_err(why: impl std::fmt::Display) -> PartitionError {
    PartitionError::BadConfig {
        why: format!("LPAR process: {why}"),
    }
}

impl Link {
    fn call(&self, req: &Request) -> Result<Reply, PartitionError> {
        let mut s = self.conn.lock().unwrap();
        s.write_all(&req.encode()).map_err(channel_err)?;
        let frame = read_frame(&mut s).ok_or_else(|| channel_err("the connection closed"))?;
        match Reply::decode(&frame).map_err(channel_err)? {
            Reply::Error(t) => Err(channel_err(t)),
            r => Ok(r),
        }
    }

    fn ok(&self, req: &Request) -> Result<(), PartitionError> {
        match self.call(req)? {
            Reply::Ok => Ok(()),
            r => Err(channel_err(format!("unexpected reply {r:?}"))),
        }
    }

    fn status(&self) -> Result<Status, PartitionError> {
        match self.call(&Request::Status)? {
            Reply::Status(s) => Ok(s),
            r => Err(channel_err(format!("unexpected reply {r:?}"))),
        }
    }
}

pub(crate) struct RemoteLpar {
    config: LparConfig,
    regions: Vec<MemoryRegion>,
    link: Arc<Link>,
    running: AtomicBool,
    /// The LPAR's directory (its `console.log`).
    dir: std::path::PathBuf,
}

impl RemoteLpar {
    /// Connects to the LPAR process serving `dir`.
    pub fn connect(dir: &Path, config: LparConfig) -> Result<Self, PartitionError> {
        let sock = dir.join(SOCKET);
        let conn = UnixStream::connect(&sock).map_err(|e| PartitionError::SharedMemory {
            path: sock.display().to_string(),
            source: e,
        })?;
        let path = dir.join("memory");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| PartitionError::SharedMemory {
                path: path.display().to_string(),
                source: e,
            })?;
        let link = Arc::new(Link {
            conn: Mutex::new(conn),
            ram: GuestRam::map(file, &path)?,
        });
        let running = link.status()?.running;
        Ok(RemoteLpar {
            regions: super::memory::regions(config.memory_bytes),
            config,
            link,
            running: AtomicBool::new(running),
            dir: dir.to_path_buf(),
        })
    }

    /// Ends the LPAR process (the VM with it).
    pub fn terminate(&self) -> Result<(), PartitionError> {
        self.link.ok(&Request::Stop)
    }

    fn mailbox(&self) -> Option<mailbox::Mailbox> {
        let mut page = [0u8; PAGE_SIZE];
        self.link.ram.read_bytes(mailbox::ADDR, &mut page).ok()?;
        mailbox::Mailbox::decode(&page)
    }
}

impl GuestMemory for RemoteLpar {
    fn regions(&self) -> &[MemoryRegion] {
        &self.regions
    }
    fn read_page(&self, page: u64, out: &mut Page) -> Result<(), PartitionError> {
        self.link.ram.read(page, out)
    }
    fn write_page(&self, page: u64, data: &Page) -> Result<(), PartitionError> {
        self.link.ram.write(page, data)
    }
    fn update_page(&self, page: u64, f: &mut dyn FnMut(&mut Page)) -> Result<(), PartitionError> {
        if self.is_running() {
            return Err(PartitionError::NotPaused {
                operation: "writing guest memory in place",
            });
        }
        self.link.ram.update(page, f)
    }
    fn populate_for_write(
        &self,
        pages: &mut dyn Iterator<Item = u64>,
    ) -> Result<(), PartitionError> {
        self.link
            .ram
            .populate_for_write(self.config.memory_backing, pages)
    }
    fn populated(&self) -> Result<PageSet, PartitionError> {
        crate::partition::sim::populated_extents(&self.link.ram.file, self.config.memory_bytes)
    }
    fn digest(&self) -> Result<[u8; 32], PartitionError> {
        if self.is_running() {
            return Err(PartitionError::NotPaused {
                operation: "the memory digest",
            });
        }
        // SAFETY: the vCPUs are paused and this process writes only on request.
        Ok(*blake3::hash(unsafe { self.link.ram.as_slice() }).as_bytes())
    }
}

impl Vcpus for RemoteLpar {
    fn count(&self) -> usize {
        self.config.vcpus as usize
    }
    fn pause(&self) -> Result<(), PartitionError> {
        self.link.ok(&Request::Pause)?;
        self.running.store(false, Ordering::SeqCst);
        Ok(())
    }
    fn resume(&self) -> Result<(), PartitionError> {
        self.running.store(true, Ordering::SeqCst);
        self.link.ok(&Request::Resume)
    }
    fn throttle(&self, percent: u8) -> Result<(), PartitionError> {
        self.link.ok(&Request::Throttle(percent.min(99)))
    }
    fn is_running(&self) -> bool {
        self.running.load(Ordering::SeqCst)
    }
}

impl DeviceModel for RemoteLpar {
    fn save_state(&self) -> Result<DeviceState, PartitionError> {
        match self.link.call(&Request::Save)? {
            Reply::State(b) => Ok(DeviceState::decode(&b)?),
            r => Err(channel_err(format!("unexpected reply {r:?}"))),
        }
    }
    fn restore_state(&self, state: &DeviceState) -> Result<(), PartitionError> {
        self.link.ok(&Request::Restore(state.encode()?))
    }
}

struct RemoteLog {
    link: Arc<Link>,
}

impl DirtyLog for RemoteLog {
    fn mechanism(&self) -> &'static str {
        "kvm"
    }
    fn start(&mut self) -> Result<(), PartitionError> {
        self.link.ok(&Request::StartLog)?;
        let mut scratch = vec![0u64; (self.link.ram.pages() as usize).div_ceil(64)];
        self.link.ram.take_vmm_dirty(&mut scratch);
        Ok(())
    }
    fn harvest(&mut self, out: &mut PageSet) -> Result<(), PartitionError> {
        // This side's writes first: one racing with the call is reported now or next time.
        let mut own = vec![0u64; (self.link.ram.pages() as usize).div_ceil(64)];
        self.link.ram.take_vmm_dirty(&mut own);
        super::dirty::bitmap_to_pages(&own, out);
        match self.link.call(&Request::Harvest)? {
            Reply::Pages(ranges) => {
                for r in ranges {
                    out.insert_range(r);
                }
                Ok(())
            }
            r => Err(channel_err(format!("unexpected reply {r:?}"))),
        }
    }
    fn stop(&mut self) -> Result<(), PartitionError> {
        self.link.ok(&Request::StopLog)
    }
}

impl Partition for RemoteLpar {
    fn config(&self) -> &LparConfig {
        &self.config
    }
    fn dirty_log(&self) -> Result<Box<dyn DirtyLog>, PartitionError> {
        Ok(Box::new(RemoteLog {
            link: self.link.clone(),
        }))
    }
    fn request_shutdown(&self) -> Result<(), PartitionError> {
        self.link.ok(&Request::Shutdown)
    }
    fn is_shut_down(&self) -> bool {
        self.link.status().is_ok_and(|s| s.shut_down)
    }
    fn stop(&self) -> Result<(), PartitionError> {
        self.pause()
    }
    fn guest_writes(&self) -> Option<u64> {
        Some(self.mailbox().map_or(0, |m| m.total_writes))
    }
    fn console_log(&self) -> Option<std::path::PathBuf> {
        Some(self.dir.join("console.log"))
    }

    fn max_stall_ns(&self) -> Option<u64> {
        let m = self.mailbox()?;
        (m.tsc_hz != 0)
            .then(|| (u128::from(m.max_gap) * 1_000_000_000 / u128::from(m.tsc_hz)) as u64)
    }

    fn resume_stall_ns(&self) -> Option<u64> {
        let s = self.link.status().ok()?;
        (s.resume_stall_ns != 0).then_some(s.resume_stall_ns)
    }
}
