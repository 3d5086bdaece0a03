//! Test-only helpers shared by netmon's tests and benchmarks: synthetic
//! captures, DNS and TLS ClientHello builders, a strict OpenMetrics reader,
//! fuzz corpus replay and input mutations, and the end-to-end test lab.
//! Never shipped: crates take it as a dev-dependency only.

pub mod dns;
pub mod fuzz;
#[cfg(target_os = "linux")]
pub mod lab;
pub mod openmetrics;
pub mod synth;
pub mod tls;
