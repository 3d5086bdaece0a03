//! Storage faults end to end, as README's "When things go wrong" promises: a
//! full disk, a read-only directory (opening retried every 5 s), a file that
//! is not SQLite and a SQLite file whose pages are corrupt (both moved aside).
//! Throughout, monitoring and live data go on, each change of state is
//! logged once, and what was kept meanwhile is written when the fault goes.
//! Ground truth is the generator's byte count. Needs root (mounts).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::harness::*;

/// A file system mounted on a fresh directory for one test, unmounted
/// (lazily, so a daemon still inside it cannot keep it) when dropped.
struct Mount {
    dir: tempfile::TempDir,
}

impl Mount {
    fn tmpfs(size: &str) -> Mount {
        let dir = tempfile::tempdir().expect("tempdir");
        run_ok(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
                &dir.path().to_string_lossy(),
            ],
        );
        Mount { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = command("umount").args(["-l"]).arg(self.dir.path()).status();
    }
}

fn run_ok(cmd: &str, args: &[&str]) {
    let out = command(cmd).args(args).output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Uploads `n` bytes from the lab host to the peer's server on `port` and
/// waits until netmond credits them; returns the uploader's pid.
fn upload_credited(lab: &Lab, d: &Daemon, port: &str, n: u64) -> u32 {
    let pid = upload(lab, port, n);
    let top = wait_top(d, 20, |t| {
        proc_by_pid(t, pid).is_some_and(|p| u(&p, "up_bytes") >= n)
    });
    let p = proc_by_pid(&top, pid).expect("uploader in top");
    assert_between(
        u(&p, "up_bytes"),
        n,
        tcp_credit_hi(n),
        "live bytes while the database is failing",
    );
    pid
}

/// python3's upload in `report --json` (all of history).
fn reported_python3(d: &Daemon) -> u64 {
    report_up(&d.ctl_json(&["report", "--limit", "1000"]), "python3")
}

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

const FAILED_LOG: &str = "database cannot be written; monitoring continues";
const RESUMED_LOG: &str = "database writes resumed";

#[test]
fn a_full_disk_fails_loudly_once_keeps_the_data_and_writes_it_when_space_returns() {
    let lab = Lab::new();
    let fs = Mount::tmpfs("3m");
    let db = fs.path().join("netmon.db");
    let d = lab.daemon(DaemonOpts {
        config_extra: "[store]\nflush_interval_secs = 1\n".into(),
        db: Some(db.clone()),
        ..Default::default()
    });
    let _srv = start_server(&lab.peer, gen::TCP_SERVER, &[&lab.peer_ip, "5611"]);
    wait_storage(&d, "ok", 10);
    // Fill what is left of the file system.
    let filler_path = fs.path().join("filler");
    let mut filler = std::fs::File::create(&filler_path).expect("filler");
    let chunk = vec![0u8; 16 * 1024];
    while filler.write_all(&chunk).is_ok() {}
    let _ = filler.flush();
    drop(filler);

    const N: u64 = 2 * 1024 * 1024;
    upload_credited(&lab, &d, "5611", N);
    let storage = wait_storage(&d, "failed", 15);
    let error = storage["error"].as_str().unwrap_or_default();
    assert!(error.contains("full"), "{storage}");
    // Several flushes later the failure is still logged once.
    std::thread::sleep(Duration::from_millis(3500));
    let storage = wait_storage(&d, "failed", 1);
    assert!(u(&storage, "pending_batches") > 0, "{storage}");
    assert_eq!(count(&d.log_text(), FAILED_LOG), 1, "{}", d.log_text());

    std::fs::remove_file(&filler_path).expect("remove filler");
    wait_storage(&d, "ok", 10);
    assert_eq!(count(&d.log_text(), RESUMED_LOG), 1, "{}", d.log_text());
    assert_between(
        reported_python3(&d),
        N,
        tcp_credit_hi(N),
        "history after the disk had room again",
    );
}

#[test]
fn a_read_only_directory_is_retried_every_five_seconds_and_nothing_is_lost() {
    let lab = Lab::new();
    // An immutable directory refuses new files even to root, in every mount
    // namespace (a read-only mount would not reach the daemon's namespace
    // on a host whose mounts do not propagate). On the target's file
    // system: a tmpfs /tmp has no such attribute.
    let base = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let dir = base.path().join("lib");
    std::fs::create_dir(&dir).expect("mkdir");
    let immutable = Immutable::set(&dir);
    let d = lab.daemon(DaemonOpts {
        config_extra: "[store]\nflush_interval_secs = 1\n".into(),
        db: Some(dir.join("netmon.db")),
        ..Default::default()
    });
    let _srv = start_server(&lab.peer, gen::TCP_SERVER, &[&lab.peer_ip, "5612"]);
    let storage = wait_storage(&d, "failed", 10);
    assert!(
        storage["error"]
            .as_str()
            .unwrap_or_default()
            .contains("cannot open database"),
        "{storage}"
    );
    const N: u64 = 2 * 1024 * 1024;
    upload_credited(&lab, &d, "5612", N);
    assert_eq!(count(&d.log_text(), FAILED_LOG), 1, "{}", d.log_text());

    drop(immutable);
    let start = Instant::now();
    wait_storage(&d, "ok", 15);
    let took = start.elapsed();
    println!("database opened {took:?} after the directory became writable");
    assert!(
        took <= Duration::from_millis(6500),
        "opening is retried every 5 s, yet it took {took:?}"
    );
    assert!(dir.join("netmon.db").exists());
    assert_eq!(count(&d.log_text(), RESUMED_LOG), 1, "{}", d.log_text());
    assert_between(
        reported_python3(&d),
        N,
        tcp_credit_hi(N),
        "history kept while the directory was read-only",
    );
}

/// `chattr +i` on a directory for as long as it lives.
struct Immutable(PathBuf);

impl Immutable {
    fn set(dir: &Path) -> Immutable {
        run_ok("chattr", &["+i", &dir.to_string_lossy()]);
        let probe = dir.join("probe");
        assert!(
            std::fs::write(&probe, b"x").is_err(),
            "root can still create files in an immutable directory"
        );
        Immutable(dir.to_path_buf())
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = command("chattr").arg("-i").arg(&self.0).status();
    }
}

fn moved_aside(db: &Path) -> Vec<PathBuf> {
    let name = db.file_name().expect("file name").to_string_lossy();
    let prefix = format!("{name}.corrupt-");
    std::fs::read_dir(db.parent().expect("parent"))
        .expect("read dir")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect()
}

#[test]
fn a_file_that_is_not_sqlite_is_moved_aside_and_a_new_database_used() {
    let lab = Lab::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("netmon.db");
    let junk = "this is not a database\n".repeat(2000);
    std::fs::write(&db, &junk).expect("write junk");
    let d = lab.daemon(DaemonOpts {
        config_extra: "[store]\nflush_interval_secs = 1\n".into(),
        db: Some(db.clone()),
        ..Default::default()
    });
    let _srv = start_server(&lab.peer, gen::TCP_SERVER, &[&lab.peer_ip, "5613"]);
    wait_storage(&d, "ok", 10);
    let aside = moved_aside(&db);
    assert_eq!(aside.len(), 1, "{aside:?}\n{}", d.log_text());
    assert_eq!(std::fs::read_to_string(&aside[0]).unwrap_or_default(), junk);
    assert!(
        d.log_text().contains("database is corrupt"),
        "{}",
        d.log_text()
    );
    const N: u64 = 1024 * 1024;
    upload_credited(&lab, &d, "5613", N);
    assert_between(
        reported_python3(&d),
        N,
        tcp_credit_hi(N),
        "history in the new database",
    );
}

#[test]
fn a_sqlite_file_with_corrupt_pages_is_moved_aside_when_first_written() {
    let lab = Lab::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("netmon.db");
    let mut d = lab.daemon(DaemonOpts {
        config_extra: "[store]\nflush_interval_secs = 1\n".into(),
        db: Some(db.clone()),
        ..Default::default()
    });
    let _srv = start_server(&lab.peer, gen::TCP_SERVER, &[&lab.peer_ip, "5614"]);
    const N: u64 = 1024 * 1024;
    upload_credited(&lab, &d, "5614", N);
    wait_storage(&d, "ok", 10);
    assert!(d.terminate().success(), "{}", d.log_text());
    // Overwrite the root page of every table and index but keep the schema:
    // SQLite opens the file and finds the damage only when it is used.
    let roots: Vec<i64> = {
        let c = rusqlite::Connection::open(&db).expect("open db");
        let mut st = c
            .prepare("SELECT rootpage FROM sqlite_master WHERE rootpage > 1")
            .expect("schema");
        let roots = st
            .query_map([], |r| r.get(0))
            .expect("root pages")
            .collect::<Result<_, _>>()
            .expect("root pages");
        roots
    };
    let mut bytes = std::fs::read(&db).expect("read db");
    for page in roots {
        let at = (page as usize - 1) * 4096;
        for (i, b) in bytes[at..at + 4096].iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(37) ^ 0x5a;
        }
    }
    std::fs::write(&db, &bytes).expect("corrupt db");

    d.spawn();
    d.wait_ready();
    upload_credited(&lab, &d, "5614", N);
    wait_storage(&d, "ok", 15);
    let aside = moved_aside(&db);
    assert_eq!(aside.len(), 1, "{aside:?}\n{}", d.log_text());
    assert!(
        d.log_text().contains("database is corrupt"),
        "{}",
        d.log_text()
    );
    // The new database holds what came after the restart: the second
    // upload (the first went with the corrupt file).
    assert_between(
        reported_python3(&d),
        N,
        tcp_credit_hi(N),
        "history in the new database",
    );
}
