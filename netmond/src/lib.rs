//! netmond: the root daemon of netmon. Capture and attribution on the hot
//! side, aggregation, storage and the gRPC service beside it.

pub mod classify;
pub mod decode;
pub mod flows;
#[cfg(target_os = "linux")]
pub mod netif;
#[cfg(target_os = "linux")]
pub mod procmap;
#[doc(hidden)]
pub mod synth;
