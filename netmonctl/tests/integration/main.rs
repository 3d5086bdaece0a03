//! Runs the built netmonctl binary for the behaviour that needs no daemon:
//! exit codes and messages for an unreachable daemon and for usage errors.

use std::path::PathBuf;
use std::process::{Command, Output};

fn missing_socket() -> PathBuf {
    std::env::temp_dir()
        .join(format!("netmonctl-it-{}", std::process::id()))
        .join("none.sock")
}

fn netmonctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_netmonctl"))
        .args(args)
        .env("NETMON_SOCKET", missing_socket())
        .output()
        .expect("runs netmonctl")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn missing_socket_exits_3_saying_not_running() {
    let sock = missing_socket();
    for args in [
        vec!["status"],
        vec!["top", "--json"],
        vec!["threshold", "set", "1MiB/s"],
    ] {
        let mut all = vec!["--socket", sock.to_str().expect("utf8 path")];
        all.extend(args.iter().copied());
        let o = netmonctl(&all);
        assert_eq!(o.status.code(), Some(3), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("not running"), "{}", stderr(&o));
        assert!(o.stdout.is_empty());
    }
}

#[test]
fn env_socket_is_used_without_the_flag() {
    let o = netmonctl(&["status"]);
    assert_eq!(o.status.code(), Some(3));
    assert!(
        stderr(&o).contains(&missing_socket().display().to_string()),
        "{}",
        stderr(&o)
    );
}

#[test]
fn bad_rate_exits_2_naming_the_accepted_forms() {
    let o = netmonctl(&["threshold", "set", "12 parsecs", "--process", "curl"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    for form in ["500KB/s", "1MiB/s", "20Mbit/s", "12 parsecs"] {
        assert!(err.contains(form), "stderr lacks {form}: {err}");
    }
}

#[test]
fn unknown_flag_exits_2() {
    let o = netmonctl(&["top", "--no-such-flag"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

#[test]
fn bad_when_exits_2() {
    let o = netmonctl(&["alerts", "--since", "yesterday"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("accepted forms"), "{}", stderr(&o));
}

#[test]
fn help_exits_0() {
    let o = netmonctl(&["--help"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stdout).contains("threshold"));
}
