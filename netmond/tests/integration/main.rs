//! End-to-end tests: a real netmond (the built binary) on a temporary socket
//! and database, driven by the real netmonctl. Most need root (CI is root).

use netmon_testkit::lab as harness;

mod alerts;
mod api_limits;
mod attribution;
mod backbone;
mod basic;
mod ebpf;
mod faults;
mod flood;
mod grpc_clients;
mod history;
mod hostile;
mod load;
mod localtime;
mod metrics;
mod names;
mod process_hosts;
mod reload;
mod retention;
mod soak;
mod store_lock;
