//! The external commands the lab runs: which Debian 12 package provides each,
//! and a failure that names that package when one is missing instead of a
//! bare assertion. The table agrees with COMMAND_PACKAGES in packaging/dev/deps.sh, which
//! installs them; a test below keeps the two from drifting.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

/// Every external command these tests run (directly, through `sh -c`, in a
/// namespace, or in hook and tmux scripts) and its Debian 12 package.
pub const COMMAND_PACKAGES: &[(&str, &str)] = &[
    ("sh", "dash"),
    ("ip", "iproute2"),
    ("ss", "iproute2"),
    ("ping", "iputils-ping"),
    ("curl", "curl"),
    ("python3", "python3"),
    ("setpriv", "util-linux"),
    ("mount", "mount"),
    ("umount", "mount"),
    ("chattr", "e2fsprogs"),
    ("useradd", "passwd"),
    ("userdel", "passwd"),
    ("groupadd", "passwd"),
    ("groupdel", "passwd"),
    ("xargs", "findutils"),
    ("grep", "grep"),
    ("kill", "procps"),
    ("pgrep", "procps"),
    ("tmux", "tmux"),
    ("dbus-daemon", "dbus"),
    ("id", "coreutils"),
    ("env", "coreutils"),
    ("seq", "coreutils"),
    ("sleep", "coreutils"),
    ("sort", "coreutils"),
];

/// The package that provides `command`, as the panic message shows it.
pub fn package_of(command: &str) -> &'static str {
    COMMAND_PACKAGES.iter().find(|(c, _)| *c == command).map_or(
        "unknown: add it to COMMAND_PACKAGES here and in packaging/dev/deps.sh",
        |(_, p)| p,
    )
}

fn not_found(command: &str) -> String {
    format!(
        "command not found: {command} (package {})",
        package_of(command)
    )
}

fn is_executable(path: &Path) -> bool {
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Panics with "command not found: X (package Y)" unless `command` resolves
/// through PATH (or is a path to an executable).
#[track_caller]
pub fn require_command(command: &str) {
    let found = if command.contains('/') {
        is_executable(Path::new(command))
    } else {
        std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| is_executable(&d.join(command))))
    };
    assert!(found, "{}", not_found(command));
}

/// `Command::new(program)` once `program` is known to resolve.
#[track_caller]
pub fn command(program: &str) -> Command {
    require_command(program);
    Command::new(program)
}

/// The command a shell (dash, bash) or `ip netns exec` could not find, from
/// its exit code and stderr; `None` when the failure was something else.
pub fn missing_command(out: &Output) -> Option<String> {
    if out.status.success() {
        return None;
    }
    let shell_not_found = out.status.code() == Some(127);
    let stderr = String::from_utf8_lossy(&out.stderr);
    for line in stderr.lines() {
        // dash: "sh: 1: ping: not found"; bash: "bash: line 1: ping: command not found"
        let head = line
            .strip_suffix(": command not found")
            .or_else(|| line.strip_suffix(": not found"))
            .filter(|_| shell_not_found);
        if let Some(head) = head {
            let name = head.rsplit(": ").next().unwrap_or(head).trim();
            if !name.is_empty() {
                return Some(name.to_owned());
            }
        }
        // `ip netns exec NS prog` (exit 1 or 255, by iproute2 version):
        // `exec of "prog" failed: No such file or directory`
        if let Some(rest) = line.strip_prefix("exec of \"") {
            if let Some((name, why)) = rest.split_once("\" failed: ") {
                if why.starts_with("No such file") {
                    return Some(name.to_owned());
                }
            }
        }
    }
    None
}

/// Panics with "command not found: X (package Y)" when `out` is the output
/// of a shell or `ip netns exec` that could not find X.
#[track_caller]
pub fn check_found(out: &Output) {
    if let Some(name) = missing_command(out) {
        panic!("{}", not_found(&name));
    }
}

/// `sh -c cmd`; panics naming the package when a command in it is missing.
#[track_caller]
pub fn sh(cmd: &str) -> Output {
    let out = sh_unchecked(cmd);
    if out.status.code() == Some(127) && missing_command(&out).is_none() {
        // A shell whose message we do not know: its first word is the best guess.
        panic!(
            "{}",
            not_found(cmd.split_whitespace().next().unwrap_or(cmd))
        );
    }
    check_found(&out);
    out
}

/// `sh -c cmd` for clean-up in `Drop`, which must not panic.
pub fn sh_unchecked(cmd: &str) -> Output {
    command("sh").arg("-c").arg(cmd).output().expect("run sh")
}

/// `sh -c cmd`, which must succeed.
#[track_caller]
pub fn sh_ok(cmd: &str) {
    let out = sh(cmd);
    assert!(
        out.status.success(),
        "`{cmd}` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    fn output(code: i32, stderr: &str) -> Output {
        Output {
            status: std::process::ExitStatus::from_raw(code << 8),
            stdout: Vec::new(),
            stderr: stderr.as_bytes().to_vec(),
        }
    }

    /// The whitespace-separated words of a bash array `NAME=( ... )` in
    /// deps.sh, comments dropped.
    fn bash_array(text: &str, name: &str) -> Vec<String> {
        let start = format!("{name}=(");
        let mut lines = text.lines().skip_while(|l| l.trim() != start).skip(1);
        let mut words = Vec::new();
        for line in lines.by_ref() {
            if line.trim() == ")" {
                return words;
            }
            let code = line.split('#').next().unwrap_or("");
            words.extend(code.split_whitespace().map(str::to_owned));
        }
        panic!("no {name}=( ... ) array in deps.sh");
    }

    #[test]
    fn command_table_agrees_with_deps_sh() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../packaging/dev/deps.sh");
        let text = std::fs::read_to_string(path).expect("read packaging/dev/deps.sh");
        let table = bash_array(&text, "COMMAND_PACKAGES");
        assert_eq!(
            table.len() % 2,
            0,
            "COMMAND_PACKAGES is not command/package pairs"
        );
        let pairs: Vec<(&str, &str)> = table
            .chunks(2)
            .map(|p| (p[0].as_str(), p[1].as_str()))
            .collect();
        for (cmd, pkg) in COMMAND_PACKAGES {
            let theirs = pairs.iter().find(|(c, _)| c == cmd).map(|(_, p)| *p);
            assert_eq!(
                theirs,
                Some(*pkg),
                "the tests run '{cmd}' ({pkg}): COMMAND_PACKAGES in deps.sh must name it with the same package"
            );
        }
        // Each package of the table is installed by deps.sh, unless every
        // Debian system has it (essential) or it is the user's own sudo.
        let apt = bash_array(&text, "APT_PACKAGES");
        let given = [
            "dash",
            "bash",
            "coreutils",
            "grep",
            "sed",
            "tar",
            "findutils",
            "libc-bin",
            "dpkg",
            "sudo",
        ];
        for (cmd, pkg) in &pairs {
            assert!(
                apt.iter().any(|a| a == pkg) || given.contains(pkg),
                "'{cmd}' comes from '{pkg}', which is not in APT_PACKAGES"
            );
        }
    }

    #[test]
    fn shells_and_ip_netns_exec_name_the_missing_command() {
        let dash = output(127, "sh: 1: ping: not found\n");
        assert_eq!(missing_command(&dash).as_deref(), Some("ping"));
        let bash = output(127, "bash: line 1: tmux: command not found\n");
        assert_eq!(missing_command(&bash).as_deref(), Some("tmux"));
        let ip = output(
            255,
            "exec of \"python3\" failed: No such file or directory\n",
        );
        assert_eq!(missing_command(&ip).as_deref(), Some("python3"));
        let other = output(1, "ping: connect: Network is unreachable\n");
        assert_eq!(missing_command(&other), None);
        check_found(&other);
        // "not found" from the program itself, not the shell, is its own failure.
        let own = output(6, "userdel: user x: not found\n");
        assert_eq!(missing_command(&own), None);
    }

    #[test]
    #[should_panic(expected = "command not found: ping (package iputils-ping)")]
    fn a_missing_command_names_its_package() {
        check_found(&output(127, "sh: 1: ping: not found\n"));
    }

    #[test]
    #[should_panic(expected = "command not found: netmon-no-such-command (package unknown")]
    fn sh_fails_on_a_command_that_is_not_there() {
        sh("netmon-no-such-command --version");
    }

    #[test]
    #[should_panic(expected = "command not found: netmon-no-such-command (package unknown")]
    fn command_fails_on_a_program_that_is_not_there() {
        command("netmon-no-such-command");
    }
}
