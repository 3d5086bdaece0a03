//! netmond: the root daemon of netmon. Capture and attribution on the hot
//! side, aggregation, storage and the gRPC service beside it.

#[cfg(not(target_os = "linux"))]
compile_error!("netmond runs on Linux only: it needs pcap, netlink and /proc");

pub mod aggregate;
pub mod alerts;
pub mod attribution;
pub mod capture;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod engine;
pub mod fault;
pub mod hostnames;
pub mod latency;
pub mod memory;
pub mod metrics;
pub mod netif;
pub mod netlink;
pub mod netns;
pub mod privacy;
pub mod reload;
pub mod service;
pub mod store;
pub mod sync;
