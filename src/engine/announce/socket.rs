//! The `AF_PACKET` raw socket announcements are sent on: protocol 0 (it
//! never receives), bound to one interface's index, frames sent exactly as
//! built (the NIC appends the FCS). Opening it needs `CAP_NET_RAW`.

use super::AnnounceError;
use nix::errno::Errno;
use nix::net::if_::if_nametoindex;
use nix::sys::socket::{
    AddressFamily, LinkAddr, MsgFlags, SockFlag, SockType, SockaddrLike, bind, send, socket,
};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

/// Longest interface name Linux accepts (IFNAMSIZ is 16 with the NUL).
const MAX_INTERFACE_NAME: usize = libc::IFNAMSIZ - 1;

/// An `AF_PACKET` raw socket bound to one interface, for sending only.
pub(super) struct PacketSocket {
    fd: OwnedFd,
    pub(super) interface: String,
    pub(super) ifindex: u32,
}

impl PacketSocket {
    pub(super) fn open(interface: &str) -> Result<Self, AnnounceError> {
        let not_found = || AnnounceError::InterfaceNotFound {
            interface: interface.to_owned(),
        };
        let socket_error = |errno: Errno| AnnounceError::Socket {
            interface: interface.to_owned(),
            source: io::Error::from(errno),
        };
        if interface.is_empty() || interface.len() > MAX_INTERFACE_NAME {
            return Err(not_found());
        }
        // A name with a NUL cannot be converted, and cannot exist either.
        let ifindex = if_nametoindex(interface).map_err(|_| not_found())?;
        let fd = socket(
            AddressFamily::Packet,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(|errno| match errno {
            Errno::EPERM | Errno::EACCES => AnnounceError::NoPermission {
                interface: interface.to_owned(),
            },
            other => socket_error(other),
        })?;
        bind(fd.as_raw_fd(), &link_addr(ifindex)).map_err(|errno| match errno {
            // The interface vanished between the lookup and the bind.
            Errno::ENODEV => not_found(),
            other => socket_error(other),
        })?;
        Ok(PacketSocket {
            fd,
            interface: interface.to_owned(),
            ifindex,
        })
    }

    pub(super) fn send(&self, frame: &[u8]) -> io::Result<()> {
        let n = send(self.fd.as_raw_fd(), frame, MsgFlags::empty())?;
        if n != frame.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("sent {n} of {} bytes", frame.len()),
            ));
        }
        Ok(())
    }
}

/// The `sockaddr_ll` that binds a packet socket to interface `ifindex`:
/// only the family and the index matter for sending (packet(7)).
fn link_addr(ifindex: u32) -> LinkAddr {
    let raw = libc::sockaddr_ll {
        sll_family: libc::AF_PACKET as u16,
        sll_protocol: 0,
        sll_ifindex: ifindex as i32,
        sll_hatype: 0,
        sll_pkttype: 0,
        sll_halen: 0,
        sll_addr: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: `raw` is a fully initialised sockaddr_ll that lives across the
    // call, and `len` is exactly its size; from_raw copies it and checks the
    // family.
    unsafe { LinkAddr::from_raw((&raw as *const libc::sockaddr_ll).cast(), Some(len)) }
        .expect("a sockaddr_ll with family AF_PACKET is a LinkAddr")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bind_address_names_the_interface_and_nothing_else() {
        let addr = link_addr(7);
        assert_eq!(addr.ifindex(), 7);
        assert_eq!(addr.family(), Some(AddressFamily::Packet));
        assert_eq!(addr.halen(), 0);
    }
}
