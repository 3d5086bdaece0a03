//! The one error type of netmonctl and its mapping to the exit codes of
//! design.md §3 (0 ok, 1 daemon refused/failed, 2 usage, 3 unreachable),
//! extended with 4: no desktop session bus or notification server (--notify).

use std::io;
use std::path::PathBuf;

use netmon_proto::ConnectError;
use tonic::Code;

#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// A value clap could not check on its own (combinations, kind-specific units).
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// `--notify` without a session bus or notification server.
    #[error(transparent)]
    Notify(#[from] crate::notify::NotifyError),
    /// Not `#[source]`: tonic's Display repeats the message in debug form.
    #[error("{}: {}", code_words(.0.code()), .0.message())]
    Rpc(tonic::Status),
    /// A stream (watch) ended because the daemon stopped or restarted.
    #[error("netmond went away")]
    Gone,
    #[error("cannot write '{}'", path.display())]
    WriteFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error("cannot encode JSON")]
    Json(#[from] serde_json::Error),
}

impl From<tonic::Status> for CtlError {
    fn from(status: tonic::Status) -> Self {
        CtlError::Rpc(status)
    }
}

pub type Result<T, E = CtlError> = std::result::Result<T, E>;

impl CtlError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CtlError::Usage(_) => 2,
            CtlError::Connect(_) => 3,
            CtlError::Notify(_) => 4,
            // The channel was set up but the daemon vanished before answering.
            CtlError::Rpc(s) if s.code() == Code::Unavailable => 3,
            CtlError::Rpc(_)
            | CtlError::Gone
            | CtlError::WriteFile { .. }
            | CtlError::Io(_)
            | CtlError::Json(_) => 1,
        }
    }

    /// Writing to a closed stdout (`netmonctl top | head -1`) is not a failure.
    pub fn is_broken_pipe(&self) -> bool {
        match self {
            CtlError::Io(e) => e.kind() == io::ErrorKind::BrokenPipe,
            CtlError::Json(e) => e.io_error_kind() == Some(io::ErrorKind::BrokenPipe),
            _ => false,
        }
    }
}

fn code_words(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "cancelled",
        Code::Unknown => "unknown error",
        Code::InvalidArgument => "invalid argument",
        Code::DeadlineExceeded => "deadline exceeded",
        Code::NotFound => "not found",
        Code::AlreadyExists => "already exists",
        Code::PermissionDenied => "permission denied",
        Code::ResourceExhausted => "resource exhausted",
        Code::FailedPrecondition => "failed precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out of range",
        Code::Unimplemented => "not implemented by this netmond",
        Code::Internal => "internal error",
        Code::Unavailable => "netmond unavailable",
        Code::DataLoss => "data loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_contract() {
        assert_eq!(CtlError::Usage("x".into()).exit_code(), 2);
        let nr = ConnectError::NotRunning { path: "/x".into() };
        assert_eq!(CtlError::from(nr).exit_code(), 3);
        let denied = tonic::Status::permission_denied("need netmon group");
        let err = CtlError::from(denied);
        assert_eq!(err.exit_code(), 1);
        assert_eq!(err.to_string(), "permission denied: need netmon group");
        assert_eq!(CtlError::Gone.exit_code(), 1);
        assert_eq!(
            CtlError::from(crate::notify::NotifyError::NoAddress).exit_code(),
            4
        );
        assert!(CtlError::from(io::Error::from(io::ErrorKind::BrokenPipe)).is_broken_pipe());
    }
}
