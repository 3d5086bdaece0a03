//! Socket -> process attribution: the eBPF socket accounting (`ebpf`, the
//! primary path) and the sock_diag + /proc resolver (`procmap`) beside it,
//! which answers for sockets older than netmond and for capture without eBPF.

pub mod ebpf;
pub mod procmap;
