//! The netmon.v1 API (generated from `netmon/v1/*.proto`) and the helper that
//! connects a client to netmond's Unix socket. Clients depend on this crate only.

#[allow(clippy::all, clippy::pedantic, reason = "generated code")]
pub mod v1 {
    tonic::include_proto!("netmon.v1");
}

/// The encoded `FileDescriptorSet` of `netmon.v1`, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/netmon_descriptor.bin"));

#[cfg(feature = "cli-assets")]
pub mod cli_assets;
mod client;
pub mod text;
pub mod units;
pub mod zone;

pub use client::{
    connect, resolve_socket, ConnectError, DEFAULT_SOCKET, MAX_MESSAGE_BYTES, SOCKET_ENV,
};
