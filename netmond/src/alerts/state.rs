//! Where thresholds set over the API (and the seen-executables set) survive a
//! restart: `ThresholdStore`, a JSON file next to the database, written
//! atomically.

use std::io::Write;
use std::path::{Path, PathBuf};

use netmon_proto::v1;
use serde::{Deserialize, Serialize};
use tracing::warn;

use super::{kind_name, Persisted};

/// File name of the state file, in the database's directory.
pub const STATE_FILE: &str = "thresholds.json";

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read '{}'", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write '{}'", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot parse '{}'", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// Load and save of the persisted alert state.
pub trait ThresholdStore: Send {
    /// `Ok(None)` when nothing was saved yet.
    fn load(&self) -> Result<Option<Persisted>, StateError>;
    fn save(&self, state: &Persisted) -> Result<(), StateError>;
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileThreshold {
    id: u64,
    /// "rate", "host", "quota", "new-process".
    kind: String,
    /// "up", "down", "total" or "" (new-process).
    #[serde(default)]
    direction: String,
    #[serde(default)]
    value: u64,
    #[serde(default)]
    process_name: String,
    #[serde(default)]
    pid: u32,
    /// The pid's process start time; 0 in files written before it was kept.
    #[serde(default)]
    pid_start_time: u64,
    #[serde(default)]
    created_ms: i64,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileState {
    version: u32,
    next_id: u64,
    thresholds: Vec<FileThreshold>,
    #[serde(default)]
    seen_exes: Vec<String>,
}

fn kind_from(s: &str) -> Option<v1::ThresholdKind> {
    Some(match s {
        "rate" => v1::ThresholdKind::ProcessRate,
        "host" => v1::ThresholdKind::HostRate,
        "quota" => v1::ThresholdKind::DailyQuota,
        "new-process" => v1::ThresholdKind::NewProcess,
        _ => return None,
    })
}

fn direction_from(s: &str) -> Option<v1::Direction> {
    Some(match s {
        "up" => v1::Direction::Up,
        "down" => v1::Direction::Down,
        "total" => v1::Direction::Total,
        "" => v1::Direction::Unspecified,
        _ => return None,
    })
}

/// Text of the state file for `state`.
pub fn to_text(state: &Persisted) -> String {
    let doc = FileState {
        version: 1,
        next_id: state.next_id,
        thresholds: state
            .thresholds
            .iter()
            .map(|t| FileThreshold {
                id: t.id,
                kind: kind_name(v1::ThresholdKind::try_from(t.kind).unwrap_or_default()).to_owned(),
                direction: super::direction_name(
                    v1::Direction::try_from(t.direction).unwrap_or_default(),
                )
                .to_owned(),
                value: t.value,
                process_name: t.process_name.clone(),
                pid: t.pid,
                pid_start_time: t.pid_start_time,
                created_ms: t.created_ms,
            })
            .collect(),
        seen_exes: state.seen_exes.clone(),
    };
    let mut s = serde_json::to_string_pretty(&doc).unwrap_or_else(|_| "{}".to_owned());
    s.push('\n');
    s
}

/// Parses a state file; unknown kinds or directions are parse errors.
pub fn from_text(text: &str) -> Result<Persisted, serde_json::Error> {
    use serde::de::Error;
    let doc: FileState = serde_json::from_str(text)?;
    let mut thresholds = Vec::with_capacity(doc.thresholds.len());
    for t in doc.thresholds {
        let kind = kind_from(&t.kind)
            .ok_or_else(|| serde_json::Error::custom(format!("unknown kind '{}'", t.kind)))?;
        let direction = direction_from(&t.direction).ok_or_else(|| {
            serde_json::Error::custom(format!("unknown direction '{}'", t.direction))
        })?;
        thresholds.push(v1::Threshold {
            id: t.id,
            kind: kind as i32,
            direction: direction as i32,
            value: t.value,
            process_name: t.process_name,
            pid: t.pid,
            source: "api".into(),
            created_ms: t.created_ms,
            pid_start_time: t.pid_start_time,
        });
    }
    Ok(Persisted {
        thresholds,
        next_id: doc.next_id,
        seen_exes: doc.seen_exes,
    })
}

/// `<db dir>/thresholds.json`.
pub struct JsonFile {
    path: PathBuf,
}

impl JsonFile {
    pub fn new(path: PathBuf) -> JsonFile {
        JsonFile { path }
    }

    /// The state file that belongs with database `db`.
    pub fn beside_db(db: &Path) -> JsonFile {
        let dir = db
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        JsonFile::new(dir.join(STATE_FILE))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Loads the state; a file that does not parse is logged and moved aside
    /// (`thresholds.json.bad-<ms>`) so the daemon starts with the config only.
    pub fn load_or_quarantine(&self, now_ms: i64) -> Option<Persisted> {
        match self.load() {
            Ok(p) => p,
            Err(StateError::Parse { path, source }) => {
                let aside = path.with_extension(format!("json.bad-{now_ms}"));
                let moved = std::fs::rename(&path, &aside);
                warn!(
                    error = %source,
                    path = %path.display(),
                    moved_to = %aside.display(),
                    moved = moved.is_ok(),
                    "threshold state file is unreadable: moved aside, starting from the config only"
                );
                None
            }
            Err(e) => {
                warn!(error = %e, source = ?std::error::Error::source(&e), "cannot load thresholds; starting from the config only");
                None
            }
        }
    }
}

impl ThresholdStore for JsonFile {
    fn load(&self) -> Result<Option<Persisted>, StateError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(StateError::Read {
                    path: self.path.clone(),
                    source,
                })
            }
        };
        from_text(&text)
            .map(Some)
            .map_err(|source| StateError::Parse {
                path: self.path.clone(),
                source,
            })
    }

    /// Temp file in the same directory, fsync, rename: a crash leaves the old
    /// file or the new one, never half of one.
    fn save(&self, state: &Persisted) -> Result<(), StateError> {
        let err = |source| StateError::Write {
            path: self.path.clone(),
            source,
        };
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let tmp = self
            .path
            .with_extension(format!("json.tmp-{}", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(to_text(state).as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            err(e)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Persisted {
        Persisted {
            thresholds: vec![
                v1::Threshold {
                    id: 100,
                    kind: v1::ThresholdKind::ProcessRate as i32,
                    direction: v1::Direction::Down as i32,
                    value: 1 << 20,
                    process_name: "firefox".into(),
                    pid: 0,
                    source: "api".into(),
                    created_ms: 5,
                    pid_start_time: 0,
                },
                v1::Threshold {
                    id: 101,
                    kind: v1::ThresholdKind::ProcessRate as i32,
                    direction: v1::Direction::Up as i32,
                    value: 1 << 10,
                    process_name: String::new(),
                    pid: 42,
                    source: "api".into(),
                    created_ms: 6,
                    pid_start_time: 4242,
                },
            ],
            next_id: 102,
            seen_exes: vec!["/usr/bin/curl".into()],
        }
    }

    #[test]
    fn state_round_trips_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = JsonFile::beside_db(&dir.path().join("sub/netmon.db"));
        assert_eq!(f.path(), dir.path().join("sub/thresholds.json"));
        assert!(f.load().unwrap().is_none());
        f.save(&sample()).unwrap();
        assert_eq!(f.load().unwrap(), Some(sample()));
        // No temp file is left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path().join("sub")).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn unparsable_file_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let f = JsonFile::new(dir.path().join("thresholds.json"));
        std::fs::write(f.path(), "{ not json").unwrap();
        assert!(f.load_or_quarantine(42).is_none());
        assert!(!f.path().exists());
        assert!(dir.path().join("thresholds.json.bad-42").exists());
    }

    #[test]
    fn unknown_kind_is_a_parse_error() {
        let text = to_text(&sample()).replace("\"rate\"", "\"warp\"");
        assert!(from_text(&text).is_err());
    }
}
