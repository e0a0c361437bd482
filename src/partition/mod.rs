//! The integration boundary with the hypervisor.
