//! The few KVM calls and signals `kvm-ioctls` does not wrap (or wraps
//! with an allocation per call): manual dirty-log protection
//! (`KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2`), `KVM_GET_DIRTY_LOG` into a
//! caller's buffer, `KVM_CLEAR_DIRTY_LOG`, and the signal that kicks a vCPU thread out of
//! `KVM_RUN`. Every `unsafe` of the KVM backend outside memory mapping
//! lives here.

use kvm_bindings::{
    KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE, kvm_clear_dirty_log,
    kvm_dirty_log, kvm_enable_cap,
};
use kvm_ioctls::VmFd;
use std::os::fd::AsRawFd;

/// `_IOWR(KVMIO, 0xc0, struct kvm_clear_dirty_log)`.
const KVM_CLEAR_DIRTY_LOG: libc::c_ulong = 0xC018_AEC0;

/// `_IOW(KVMIO, 0x42, struct kvm_dirty_log)`.
const KVM_GET_DIRTY_LOG: libc::c_ulong = 0x4010_AE42;

/// Signal that interrupts `KVM_RUN` (the handler does nothing; the ioctl
/// returns `EINTR`).
pub fn kick_signal() -> libc::c_int {
    libc::SIGRTMIN() + 3
}

extern "C" fn on_kick(_: libc::c_int) {}

/// Installs the no-op handler for [`kick_signal`] (without `SA_RESTART`,
/// so `KVM_RUN` returns). Idempotent.
pub fn install_kick_handler() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: a zeroed sigaction is valid; the handler is async-signal
        // safe (it does nothing) and lives for the whole program.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_kick as *const () as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            sa.sa_flags = 0;
            libc::sigaction(kick_signal(), &sa, std::ptr::null_mut());
        }
    });
}

/// Sends [`kick_signal`] to a thread of this process.
pub fn kick(thread: libc::pthread_t) {
    // SAFETY: `thread` is a live thread of this process (the vCPU threads
    // are joined only after the last kick); the signal has a handler.
    unsafe {
        libc::pthread_kill(thread, kick_signal());
    }
}

/// Enables manual dirty-log protection on `vm`: `KVM_GET_DIRTY_LOG` no
/// longer re-protects pages, `KVM_CLEAR_DIRTY_LOG` does, for the pages
/// named only.
pub fn enable_manual_protect(vm: &VmFd) -> std::io::Result<()> {
    let cap = kvm_enable_cap {
        cap: KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2,
        args: [u64::from(KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE), 0, 0, 0],
        ..Default::default()
    };
    vm.enable_cap(&cap).map_err(std::io::Error::from)
}

/// Re-protects the pages whose bits are set in `bitmap`, which covers
/// `num_pages` pages of `slot` from `first_page` (a multiple of 64; so is
/// `num_pages` unless it reaches the slot's end).
pub fn clear_dirty_log(
    vm: &VmFd,
    slot: u32,
    first_page: u64,
    num_pages: u32,
    bitmap: &mut [u64],
) -> std::io::Result<()> {
    assert!(bitmap.len() * 64 >= num_pages as usize);
    let mut arg = kvm_clear_dirty_log {
        slot,
        num_pages,
        first_page,
        ..Default::default()
    };
    arg.__bindgen_anon_1.dirty_bitmap = bitmap.as_mut_ptr().cast();
    // SAFETY: `arg` is a valid kvm_clear_dirty_log whose bitmap points at
    // `bitmap`, long enough for `num_pages` bits and alive for the call.
    let rc = unsafe { libc::ioctl(vm.as_raw_fd(), KVM_CLEAR_DIRTY_LOG, &arg) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Copies `slot`'s dirty bitmap (bit `i` = page `i` of the slot) into
/// `bitmap`, which must hold at least the slot's pages rounded up to 64.
pub fn get_dirty_log(vm: &VmFd, slot: u32, pages: u64, bitmap: &mut [u64]) -> std::io::Result<()> {
    assert!(bitmap.len() as u64 * 64 >= pages);
    let mut arg = kvm_dirty_log {
        slot,
        ..Default::default()
    };
    arg.__bindgen_anon_1.dirty_bitmap = bitmap.as_mut_ptr().cast();
    // SAFETY: `arg` is a valid kvm_dirty_log whose bitmap points at
    // `bitmap`, which is long enough for the slot's bits (the kernel
    // writes ALIGN(pages, 64) / 8 bytes) and alive for the call.
    let rc = unsafe { libc::ioctl(vm.as_raw_fd(), KVM_GET_DIRTY_LOG, &arg) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
