//! Test-only helpers shared by netmon's tests and benchmarks: synthetic
//! captures, DNS and TLS ClientHello builders, a strict OpenMetrics reader,
//! fuzz corpus replay and input mutations.
//! Never shipped: crates take it as a dev-dependency only.

pub mod dns;
pub mod fuzz;
pub mod openmetrics;
pub mod synth;
pub mod tls;
