//! Connection slots: how many connections the server holds, authenticated
//! and not, and from whom.

use crate::control::{cause, protocol_error};
use crate::emg::Emg;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use super::{MAX_CONNECTIONS, MAX_UNAUTHENTICATED, MAX_UNAUTHENTICATED_PER_PEER};

/// Connection slots. Authenticated connections (clients, peer agents) have
/// [`MAX_CONNECTIONS`]; connections not yet authenticated have their own
/// quota ([`MAX_UNAUTHENTICATED`]; once half of it is taken, at most
/// [`MAX_UNAUTHENTICATED_PER_PEER`] from one address), so however many a
/// stranger opens, the authenticated ones keep their room, and a stranger
/// at one address cannot keep another address out.
#[derive(Default)]
pub struct Slots {
    counts: Mutex<Counts>,
}

#[derive(Default)]
struct Counts {
    authenticated: usize,
    unauthenticated: usize,
    per_peer: HashMap<IpAddr, usize>,
    refusing: usize,
}

/// Connections held only to deliver a refusal over TLS: the EMG line can
/// go out only after the handshake, so a refused TLS client is kept that
/// long (bounded by the authentication timeout); beyond these few, one is
/// closed unanswered.
pub const MAX_REFUSING: usize = 4;

/// What a slot counts against.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Unauthenticated,
    Authenticated,
    Refusing,
}

/// One connection's slot, released when dropped.
pub struct Slot {
    slots: Arc<Slots>,
    peer: Option<IpAddr>,
    kind: Kind,
}

fn too_many(message: String) -> Emg {
    protocol_error(
        cause::TOO_MANY_CONNECTIONS,
        message,
        "Close idle connections and retry.",
    )
}

impl Slots {
    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A slot for a new (unauthenticated) connection from `peer`.
    pub fn admit(self: &Arc<Self>, peer: Option<IpAddr>) -> Result<Slot, Emg> {
        let mut c = self.counts();
        if c.unauthenticated >= MAX_UNAUTHENTICATED {
            return Err(too_many(format!(
                "{MAX_UNAUTHENTICATED} connections are waiting to authenticate"
            )));
        }
        let crowded = c.unauthenticated >= MAX_UNAUTHENTICATED / 2;
        if let Some(ip) = peer {
            let n = c.per_peer.entry(ip).or_default();
            if crowded && *n >= MAX_UNAUTHENTICATED_PER_PEER {
                return Err(too_many(format!(
                    "{MAX_UNAUTHENTICATED_PER_PEER} connections from {ip} are waiting to \
                     authenticate"
                )));
            }
            *n += 1;
        }
        c.unauthenticated += 1;
        Ok(Slot {
            slots: self.clone(),
            peer,
            kind: Kind::Unauthenticated,
        })
    }

    /// A slot for a TLS connection [`Slots::admit`] refused, held until
    /// its refusal is sent; `None` when [`MAX_REFUSING`] are held already.
    pub fn admit_to_refuse(self: &Arc<Self>) -> Option<Slot> {
        let mut c = self.counts();
        if c.refusing >= MAX_REFUSING {
            return None;
        }
        c.refusing += 1;
        Some(Slot {
            slots: self.clone(),
            peer: None,
            kind: Kind::Refusing,
        })
    }

    fn release_unauthenticated(c: &mut Counts, peer: Option<IpAddr>) {
        c.unauthenticated -= 1;
        if let Some(ip) = peer
            && let Some(n) = c.per_peer.get_mut(&ip)
        {
            *n -= 1;
            if *n == 0 {
                c.per_peer.remove(&ip);
            }
        }
    }
}

impl Slot {
    /// Moves this connection to the authenticated slots, if one is free.
    pub(super) fn authenticated(&mut self) -> Result<(), Emg> {
        debug_assert!(
            self.kind != Kind::Refusing,
            "a refused connection authenticated"
        );
        let mut c = self.slots.counts();
        if c.authenticated >= MAX_CONNECTIONS {
            return Err(too_many(format!(
                "the agent serves at most {MAX_CONNECTIONS} authenticated connections at once"
            )));
        }
        Slots::release_unauthenticated(&mut c, self.peer);
        c.authenticated += 1;
        self.kind = Kind::Authenticated;
        Ok(())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.slots.counts();
        match self.kind {
            Kind::Authenticated => c.authenticated -= 1,
            Kind::Unauthenticated => Slots::release_unauthenticated(&mut c, self.peer),
            Kind::Refusing => c.refusing -= 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(s: &Slots) -> (usize, usize, usize) {
        let c = s.counts();
        (c.authenticated, c.unauthenticated, c.per_peer.len())
    }

    #[test]
    fn only_a_few_refused_connections_are_held_for_their_refusal() {
        let slots = Arc::new(Slots::default());
        let held: Vec<Slot> = (0..MAX_REFUSING)
            .map(|_| slots.admit_to_refuse().unwrap())
            .collect();
        assert!(
            slots.admit_to_refuse().is_none(),
            "more than the bound held"
        );
        // They take nothing from the other quotas.
        assert_eq!(counts(&slots), (0, 0, 0));
        drop(held);
        assert_eq!(slots.counts().refusing, 0);
        assert!(slots.admit_to_refuse().is_some());
    }

    #[test]
    fn strangers_have_their_own_quota_and_slots_come_back_on_every_exit() {
        let slots = Arc::new(Slots::default());
        let one: IpAddr = [10, 0, 0, 1].into();
        // One address alone may take half the quota, no more.
        let mine: Vec<Slot> = (0..MAX_UNAUTHENTICATED / 2)
            .map(|_| slots.admit(Some(one)).unwrap())
            .collect();
        let e = slots.admit(Some(one)).err().unwrap();
        assert_eq!(e.cause, cause::TOO_MANY_CONNECTIONS);
        assert!(e.message.contains("10.0.0.1"), "{e}");
        // Another address, or a Unix socket, still gets in.
        let other = slots.admit(Some([10, 0, 0, 2].into())).unwrap();
        let unix = slots.admit(None).unwrap();
        drop((mine, other, unix));
        assert_eq!(counts(&slots), (0, 0, 0));

        // Authenticated slots are apart from the strangers' quota.
        let mut held = Vec::new();
        for i in 0..MAX_CONNECTIONS {
            let mut s = slots
                .admit(Some([10, 1, 0, (i % 200) as u8].into()))
                .unwrap();
            s.authenticated().unwrap();
            held.push(s);
        }
        let strangers: Vec<Slot> = (0..MAX_UNAUTHENTICATED)
            .map(|i| slots.admit(Some([10, 2, 0, i as u8].into())).unwrap())
            .collect();
        let mut late = slots.admit(None).err();
        assert!(late.take().is_some(), "the strangers' quota is full");
        let mut s = strangers.into_iter().next().unwrap();
        assert!(s.authenticated().is_err(), "no authenticated slot is free");
        drop(s);

        // A connection thread that panics still gives its slot back.
        let s = held.pop().unwrap();
        let r = std::thread::spawn(move || {
            let _slot = s;
            panic!("a bug in a handler");
        })
        .join();
        assert!(r.is_err());
        assert_eq!(counts(&slots).0, MAX_CONNECTIONS - 1);
        drop(held);
        assert_eq!(counts(&slots).0, 0);
    }
}
