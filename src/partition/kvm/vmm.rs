//! The per-LPAR VMM process (`moverd lpar-vmm`): it owns one KVM VM (KVM
//! ties a VM to the process that created it) and serves the
//! [`channel`](super::channel) on `<dir>/vmm.sock`, one agent connection
//! at a time, so an agent that dies (even `kill -9`) leaves the guest
//! running and a restarted agent reconnects (`kvm/remote.rs`). Guest
//! memory is not carried: both map `<dir>/memory`.

use super::KvmLpar;
use super::channel::{MAX_FRAME, Reply, Request, Status};
use crate::partition::{
    DeviceModel, DirtyLog, LparConfig, PageSet, Partition, PartitionError, Vcpus,
};
use crate::state::DeviceState;
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

/// The socket's file name in the LPAR's directory.
pub const SOCKET: &str = "vmm.sock";

/// Reads one whole frame (length prefix included); `None` at end of
/// stream or on a frame over [`MAX_FRAME`].
pub fn read_frame(s: &mut UnixStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).ok()?;
    let n = u32::from_le_bytes(len) as usize;
    if n == 0 || n > MAX_FRAME {
        return None;
    }
    let mut frame = vec![0u8; 4 + n];
    frame[..4].copy_from_slice(&len);
    s.read_exact(&mut frame[4..]).ok()?;
    Some(frame)
}

/// Creates the LPAR and serves it until a `Stop` request.
pub fn serve(root: &Path, config: &LparConfig) -> Result<(), PartitionError> {
    let lpar = KvmLpar::create(root, config)?;
    let path = lpar.dir().join(SOCKET);
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).map_err(|e| PartitionError::SharedMemory {
        path: path.display().to_string(),
        source: e,
    })?;
    let mut log: Option<Box<dyn DirtyLog>> = None;
    for conn in listener.incoming() {
        let Ok(mut s) = conn else { continue };
        while let Some(frame) = read_frame(&mut s) {
            let (reply, stop) = match Request::decode(&frame) {
                Err(e) => (Reply::Error(e.to_string()), false),
                Ok(req) => {
                    let stop = req == Request::Stop;
                    let reply = handle(&lpar, &mut log, req)
                        .unwrap_or_else(|e| Reply::Error(e.to_string()));
                    (reply, stop)
                }
            };
            if s.write_all(&reply.encode()).is_err() {
                break;
            }
            if stop {
                let _ = std::fs::remove_file(&path);
                return Ok(());
            }
        }
    }
    Ok(())
}

fn handle(
    lpar: &KvmLpar,
    log: &mut Option<Box<dyn DirtyLog>>,
    req: Request,
) -> Result<Reply, PartitionError> {
    Ok(match req {
        Request::Pause | Request::Stop => {
            lpar.pause()?;
            Reply::Ok
        }
        Request::Resume => {
            lpar.resume()?;
            Reply::Ok
        }
        Request::Throttle(p) => {
            lpar.throttle(p)?;
            Reply::Ok
        }
        Request::StartLog => {
            let mut l = lpar.dirty_log()?;
            l.start()?;
            *log = Some(l);
            Reply::Ok
        }
        Request::Harvest => {
            let mut set = PageSet::new();
            if let Some(l) = log {
                l.harvest(&mut set)?;
            }
            Reply::pages(&set)
        }
        Request::StopLog => {
            if let Some(mut l) = log.take() {
                l.stop()?;
            }
            Reply::Ok
        }
        Request::Save => Reply::State(lpar.save_state()?.encode()?),
        Request::Restore(bytes) => {
            lpar.restore_state(&DeviceState::decode(&bytes)?)?;
            Reply::Ok
        }
        Request::Status => Reply::Status(Status {
            running: lpar.is_running(),
            failed: lpar.failed(),
            shut_down: lpar.is_shut_down(),
            writes: lpar.guest_writes().unwrap_or(0),
            max_stall_ns: lpar.max_stall_ns().unwrap_or(0),
            resume_stall_ns: lpar.resume_stall_ns().unwrap_or(0),
        }),
        Request::Shutdown => {
            lpar.request_shutdown()?;
            Reply::Ok
        }
    })
}
