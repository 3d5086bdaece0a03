//! Finding and connecting to netmond's Unix socket, with errors that tell a
//! user what to do (start the daemon, join the `netmon` group).

use std::io;
use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint};

use crate::v1::netmon_client::NetmonClient;

/// Where netmond listens unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/netmon/netmond.sock";
/// Environment variable that overrides [`DEFAULT_SOCKET`].
pub const SOCKET_ENV: &str = "NETMON_SOCKET";
/// Message size limit used on both ends: a first frame of a busy host must
/// never hit tonic's 4 MiB default.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// Why a client could not reach the daemon.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("netmond is not running: no socket at '{}' (start it with `systemctl start netmond`, or pass --socket)", path.display())]
    NotRunning { path: PathBuf },
    #[error("permission denied on '{}': join the 'netmon' group (`sudo usermod -aG netmon $USER`, then log in again)", path.display())]
    PermissionDenied { path: PathBuf },
    #[error("cannot connect to '{}'", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot set up the gRPC channel to '{}'", path.display())]
    Transport {
        path: PathBuf,
        #[source]
        source: tonic::transport::Error,
    },
}

/// `--socket` beats `NETMON_SOCKET`, which beats [`DEFAULT_SOCKET`].
pub fn resolve_socket(flag: Option<&Path>) -> PathBuf {
    if let Some(p) = flag {
        return p.to_path_buf();
    }
    match std::env::var_os(SOCKET_ENV) {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => PathBuf::from(DEFAULT_SOCKET),
    }
}

fn classify(path: &Path, source: io::Error) -> ConnectError {
    match source.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => ConnectError::NotRunning {
            path: path.to_path_buf(),
        },
        io::ErrorKind::PermissionDenied => ConnectError::PermissionDenied {
            path: path.to_path_buf(),
        },
        _ => ConnectError::Io {
            path: path.to_path_buf(),
            source,
        },
    }
}

/// Connects to netmond on `path`. The socket is probed first so that a
/// missing daemon and a missing group membership are told apart.
pub async fn connect(path: &Path) -> Result<NetmonClient<Channel>, ConnectError> {
    drop(
        tokio::net::UnixStream::connect(path)
            .await
            .map_err(|e| classify(path, e))?,
    );
    let owned = path.to_path_buf();
    // The URI is required by the API but unused: the connector below decides.
    let endpoint = Endpoint::from_static("http://netmond.invalid");
    let channel = endpoint
        .connect_with_connector(tower::service_fn(move |_| {
            let p = owned.clone();
            async move { tokio::net::UnixStream::connect(p).await.map(TokioIo::new) }
        }))
        .await
        .map_err(|source| ConnectError::Transport {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(NetmonClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_beats_default() {
        assert_eq!(
            resolve_socket(Some(Path::new("/tmp/x.sock"))),
            PathBuf::from("/tmp/x.sock")
        );
    }

    #[tokio::test]
    async fn missing_socket_is_not_running() {
        let dir = std::env::temp_dir().join(format!("netmon-proto-test-{}", std::process::id()));
        let err = connect(&dir.join("none.sock")).await.err();
        assert!(
            matches!(err, Some(ConnectError::NotRunning { .. })),
            "{err:?}"
        );
    }
}
