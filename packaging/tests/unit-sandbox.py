#!/usr/bin/python3
"""Runs a command inside the sandbox a systemd unit file describes, without
systemd as PID 1, so that a system call, capability or path the shipped unit
forbids fails a test instead of a user.

    unit-sandbox.py UNIT -- COMMAND [ARG...]

Applied from the unit's [Service] section, in the order systemd applies them:
mount namespace (ProtectSystem=strict, ProtectHome, PrivateTmp,
PrivateDevices, ProtectProc, ProtectKernelTunables/Logs, ProtectControlGroups; the
RuntimeDirectory and StateDirectory stay writable), Group=, UMask=,
CapabilityBoundingSet=, NoNewPrivileges=, then one seccomp filter for
SystemCallFilter= (groups expanded by `systemd-analyze syscall-filter`),
SystemCallErrorNumber=, RestrictAddressFamilies=, RestrictNamespaces=,
MemoryDenyWriteExecute= and LockPersonality=, and exec. Options not listed
(cgroup limits, KeyringMode, RemoveIPC, ProtectClock's device rule,
ProtectHostname's UTS namespace) are not emulated. Needs root and the
python3-seccomp package (Debian's libseccomp bindings).
"""

import ctypes
import errno
import grp
import os
import subprocess
import sys

try:
    import seccomp
except ImportError:
    sys.exit("unit-sandbox: python module 'seccomp' missing (package python3-seccomp)")

CAPS = [
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL",
    "SETGID", "SETUID", "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE",
    "NET_BROADCAST", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER",
    "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
    "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME",
    "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL",
    "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM",
    "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
]
FAMILIES = {"AF_UNIX": 1, "AF_INET": 2, "AF_INET6": 10, "AF_NETLINK": 16, "AF_PACKET": 17}
NAMESPACES = {
    "mnt": 0x00020000, "cgroup": 0x02000000, "uts": 0x04000000, "ipc": 0x08000000,
    "user": 0x10000000, "pid": 0x20000000, "net": 0x40000000,
}
PR_SET_NO_NEW_PRIVS, PR_CAPBSET_DROP, PR_CAPBSET_READ = 38, 24, 23
CLONE_NEWNS = 0x00020000
PROT_WRITE, PROT_EXEC = 0x2, 0x4

libc = ctypes.CDLL(None, use_errno=True)


def die(msg):
    sys.exit(f"unit-sandbox: {msg}")


def check(rc, what):
    if rc != 0:
        die(f"{what}: {os.strerror(ctypes.get_errno())}")


def service_section(path):
    """Key -> list of values; an empty assignment resets, as in systemd."""
    opts, section = {}, None
    with open(path, encoding="utf-8") as f:
        for raw in f:
            line = raw.strip()
            if not line or line[0] in "#;":
                continue
            if line.startswith("["):
                section = line
                continue
            if section != "[Service]" or "=" not in line:
                continue
            key, value = (s.strip() for s in line.split("=", 1))
            if value == "":
                opts[key] = []
            else:
                opts.setdefault(key, []).append(value)
    return opts


def yes(opts, key):
    return opts.get(key, ["no"])[-1] in ("yes", "true", "1", "on", "strict")


def run(*argv):
    subprocess.run(argv, check=True)


# --- mounts ---------------------------------------------------------------

def mount_points():
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        return [line.split()[4].encode().decode("unicode_escape") for line in f]


def sandbox_mounts(opts):
    check(libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    run("mount", "--make-rprivate", "/")
    writable = []
    for key, base in (("RuntimeDirectory", "/run"), ("StateDirectory", "/var/lib")):
        for names in opts.get(key, []):
            for name in names.split():
                writable.append(os.path.join(base, name))
    for d in writable:
        os.makedirs(d, mode=0o750, exist_ok=True)  # systemd creates them too
    if yes(opts, "PrivateDevices"):
        # A fresh /dev with the pseudo devices only, built aside on a
        # directory that is gone again once it is moved over /dev.
        staging = f"/run/netmon-sandbox-dev.{os.getpid()}"
        os.mkdir(staging, 0o755)
        run("mount", "-t", "tmpfs", "-o", "mode=0755,nosuid", "tmpfs", staging)
        for name in ("null", "zero", "full", "random", "urandom", "tty"):
            open(f"{staging}/{name}", "w", encoding="utf-8").close()
            run("mount", "--bind", f"/dev/{name}", f"{staging}/{name}")
        os.symlink("/proc/self/fd", f"{staging}/fd")
        run("mount", "--move", staging, "/dev")
        os.rmdir(staging)
    hidepid = opts.get("ProtectProc", ["default"])[-1]
    if hidepid in ("invisible", "noaccess", "ptraceable"):
        # A proc instance of its own, as systemd mounts for the service.
        run("mount", "-t", "proc", "-o", f"hidepid={hidepid},nosuid,nodev,noexec", "proc", "/proc")
    special = ("/proc", "/dev", "/sys")
    if opts.get("ProtectSystem", ["no"])[-1] == "strict":
        # Every mount read-only, as strict does, but the API file systems,
        # which the Protect* options below handle.
        for mp in mount_points():
            if mp.startswith(special):
                continue
            subprocess.run(["mount", "-o", "remount,bind,ro", mp],
                           stderr=subprocess.DEVNULL, check=False)
    if yes(opts, "ProtectKernelTunables"):
        for mp in ("/proc/sys", "/sys", "/proc/sysrq-trigger"):
            if os.path.exists(mp):
                # rbind keeps the file systems below (cgroup, bpf) visible.
                run("mount", "--rbind", mp, mp)
                run("mount", "-o", "remount,bind,ro", mp)
    if yes(opts, "ProtectControlGroups"):
        # Recursively, as systemd does: hybrid hosts mount cgroup2 below a
        # tmpfs at /sys/fs/cgroup/unified.
        run("mount", "--rbind", "/sys/fs/cgroup", "/sys/fs/cgroup")
        for mp in mount_points():
            if mp == "/sys/fs/cgroup" or mp.startswith("/sys/fs/cgroup/"):
                subprocess.run(["mount", "-o", "remount,bind,ro", mp],
                               stderr=subprocess.DEVNULL, check=False)
    if yes(opts, "ProtectKernelLogs") and os.path.exists("/dev/kmsg"):
        run("mount", "--bind", "/dev/null", "/dev/kmsg")
    if yes(opts, "ProtectHome"):
        for d in ("/home", "/root", "/run/user"):
            if os.path.isdir(d):
                run("mount", "-t", "tmpfs", "-o", "ro,mode=0755", "tmpfs", d)
    if yes(opts, "PrivateTmp"):
        for d in ("/tmp", "/var/tmp"):
            run("mount", "-t", "tmpfs", "-o", "mode=1777", "tmpfs", d)
    for d in writable:
        run("mount", "--bind", d, d)
        run("mount", "-o", "remount,bind,rw", d)


# --- credentials and capabilities -----------------------------------------

def credentials(opts):
    if "Group" in opts:
        gid = grp.getgrnam(opts["Group"][-1]).gr_gid
        os.setgroups([])
        os.setgid(gid)
    if "UMask" in opts:
        os.umask(int(opts["UMask"][-1], 8))
    if "CapabilityBoundingSet" in opts:
        keep = set()
        for value in opts["CapabilityBoundingSet"]:
            for name in value.split():
                keep.add(name.removeprefix("CAP_"))
        unknown = keep - set(CAPS)
        if unknown:
            die(f"unknown capability in the unit: {sorted(unknown)}")
        for number, name in enumerate(CAPS):
            if name not in keep and libc.prctl(PR_CAPBSET_READ, number, 0, 0, 0) == 1:
                check(libc.prctl(PR_CAPBSET_DROP, number, 0, 0, 0), f"drop CAP_{name}")
    if yes(opts, "NoNewPrivileges"):
        check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")


# --- seccomp ---------------------------------------------------------------

def expand(item, seen=None):
    """A system call name or @group, as the set of names it stands for."""
    if not item.startswith("@"):
        return {item}
    seen = seen if seen is not None else set()
    if item in seen:
        return set()
    seen.add(item)
    out = subprocess.run(["systemd-analyze", "syscall-filter", item],
                         capture_output=True, text=True, check=True).stdout
    names = set()
    for line in out.splitlines()[1:]:
        word = line.strip()
        if not word or word.startswith("#"):
            continue
        names |= expand(word, seen)
    return names


def syscall_filter(opts):
    allow, deny, allow_list = set(), set(), None
    for value in opts.get("SystemCallFilter", []):
        negate = value.startswith("~")
        items = set()
        for item in value.lstrip("~").split():
            items |= expand(item)
        if negate:
            deny |= items
            if allow_list is None:
                allow_list = False
        else:
            allow |= items
            if allow_list is None:
                allow_list = True
    if allow_list is not True:
        die("only unit files whose first SystemCallFilter= is an allow list are emulated")
    allowed = allow - deny
    error = getattr(errno, opts.get("SystemCallErrorNumber", ["EPERM"])[-1])
    f = seccomp.SyscallFilter(defaction=seccomp.ERRNO(error))

    conditional = {}  # name -> list of argument conditions, any of which allows

    families = [v for value in opts.get("RestrictAddressFamilies", []) for v in value.split()]
    if families:
        if families[0].startswith("~"):
            die("deny-list RestrictAddressFamilies= is not emulated")
        conditional["socket"] = [[seccomp.Arg(0, seccomp.EQ, FAMILIES[name])] for name in families]

    spaces = opts.get("RestrictNamespaces", [])
    if spaces and spaces[-1] not in ("no", "false"):
        allowed_ns = 0
        for name in spaces[-1].split():
            allowed_ns |= NAMESPACES[name]
        forbidden = sum(NAMESPACES.values()) & ~allowed_ns
        conditional["unshare"] = [[seccomp.Arg(0, seccomp.MASKED_EQ, forbidden, 0)]]
        conditional["clone"] = [[seccomp.Arg(0, seccomp.MASKED_EQ, forbidden, 0)]]
        conditional["setns"] = [[seccomp.Arg(1, seccomp.EQ, ns)]
                                for name, ns in NAMESPACES.items() if ns & allowed_ns]
        # clone3 passes its flags in memory, out of seccomp's reach: systemd
        # answers ENOSYS so that libc falls back to clone.
        allowed.discard("clone3")
        f.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")

    if yes(opts, "MemoryDenyWriteExecute"):
        wx = PROT_WRITE | PROT_EXEC
        conditional["mmap"] = [[seccomp.Arg(2, seccomp.MASKED_EQ, wx, v)]
                               for v in (0, PROT_WRITE, PROT_EXEC)]
        for name in ("mprotect", "pkey_mprotect"):
            conditional[name] = [[seccomp.Arg(2, seccomp.MASKED_EQ, PROT_EXEC, 0)]]

    if yes(opts, "LockPersonality"):
        current = libc.personality(0xFFFFFFFF)
        conditional["personality"] = [[seccomp.Arg(0, seccomp.EQ, current)],
                                      [seccomp.Arg(0, seccomp.EQ, 0xFFFFFFFF)]]

    for name in sorted(allowed):
        try:
            if name in conditional:
                for args in conditional[name]:
                    f.add_rule(seccomp.ALLOW, name, *args)
            else:
                f.add_rule(seccomp.ALLOW, name)
        except (RuntimeError, ValueError):
            pass  # not a system call on this architecture
    return f


def main():
    if "--" not in sys.argv or sys.argv.index("--") != 2 or len(sys.argv) < 4:
        die("usage: unit-sandbox.py UNIT -- COMMAND [ARG...]")
    if os.geteuid() != 0:
        die("needs root")
    opts = service_section(sys.argv[1])
    command = sys.argv[3:]
    f = syscall_filter(opts)  # before the mounts: it runs systemd-analyze
    sandbox_mounts(opts)
    credentials(opts)
    f.load()
    os.execv(command[0], command)


if __name__ == "__main__":
    main()
