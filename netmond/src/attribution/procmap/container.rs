//! Which container a process belongs to, read from its cgroup v2 path: the
//! naming conventions of Docker, Podman (libpod), containerd and CRI-O
//! (Kubernetes), LXC and systemd-nspawn machines. Pure string work.

/// `engine:id` (the id cut to 12 characters, as `docker ps` shows it) or
/// `engine:name`; empty when the path names no container.
pub fn container_from_cgroup(path: &str) -> String {
    let short = |id: &str| id.chars().take(12).collect::<String>();
    let is_id = |s: &str| s.len() >= 12 && s.bytes().all(|b| b.is_ascii_hexdigit());
    // The innermost match wins: a nested container is the one the process runs in.
    for part in path.split('/').rev() {
        let scope = part.strip_suffix(".scope").unwrap_or(part);
        for (prefix, engine) in [
            ("docker-", "docker"),
            ("libpod-", "podman"),
            ("cri-containerd-", "containerd"),
            ("crio-", "cri-o"),
        ] {
            if let Some(id) = scope.strip_prefix(prefix) {
                if is_id(id) {
                    return format!("{engine}:{}", short(id));
                }
            }
        }
        if let Some(name) = part
            .strip_prefix("systemd-nspawn@")
            .and_then(|s| s.strip_suffix(".service"))
        {
            return format!("nspawn:{}", unescape_unit(name));
        }
        if let Some(name) = part
            .strip_prefix("machine-")
            .and_then(|s| s.strip_suffix(".scope"))
        {
            return format!("machine:{}", unescape_unit(name));
        }
        if let Some(name) = part.strip_prefix("lxc.payload.") {
            return format!("lxc:{name}");
        }
    }
    // cgroupfs drivers: /docker/<id>, /kubepods/<qos>/pod<uid>/<id>, /lxc/<name>.
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    for w in parts.windows(2).rev() {
        match (w[0], w[1]) {
            ("docker", id) if is_id(id) => return format!("docker:{}", short(id)),
            ("lxc", name) => return format!("lxc:{name}"),
            (pod, id) if pod.starts_with("pod") && is_id(id) => {
                return format!("kubernetes:{}", short(id))
            }
            _ => {}
        }
    }
    String::new()
}

/// systemd escapes '-' in unit names as `\x2d`.
fn unescape_unit(s: &str) -> String {
    s.replace("\\x2d", "-")
}

#[cfg(test)]
mod tests {
    use super::container_from_cgroup as c;

    const ID: &str = "3f2e5d0013876db26d6b3f6abd6d681d3f2e5d0013876db26d6b3f6abd6d681d";

    #[test]
    fn engines_under_systemd() {
        assert_eq!(
            c(&format!("/system.slice/docker-{ID}.scope")),
            "docker:3f2e5d001387"
        );
        assert_eq!(
            c(&format!("/machine.slice/libpod-{ID}.scope/container")),
            "podman:3f2e5d001387"
        );
        assert_eq!(
            c(&format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234_5678.slice/cri-containerd-{ID}.scope")),
            "containerd:3f2e5d001387"
        );
        assert_eq!(
            c(&format!(
                "/kubepods.slice/kubepods-pod9.slice/crio-{ID}.scope"
            )),
            "cri-o:3f2e5d001387"
        );
        assert_eq!(
            c("/machine.slice/systemd-nspawn@web\\x2d1.service/payload"),
            "nspawn:web-1"
        );
        assert_eq!(c("/machine.slice/machine-build.scope"), "machine:build");
        assert_eq!(c("/lxc.payload.db1/init.scope"), "lxc:db1");
    }

    #[test]
    fn engines_with_cgroupfs_drivers() {
        assert_eq!(c(&format!("/docker/{ID}")), "docker:3f2e5d001387");
        assert_eq!(
            c(&format!("/kubepods/burstable/pod1234-5678/{ID}")),
            "kubernetes:3f2e5d001387"
        );
        assert_eq!(c("/lxc/db2"), "lxc:db2");
    }

    #[test]
    fn hosts_and_lookalikes_are_no_container() {
        for p in [
            "/user.slice/user-1000.slice/session-2.scope",
            "/system.slice/nginx.service",
            "/system.slice/docker.service",
            "/system.slice/docker-notanid.scope",
            "/",
            "",
        ] {
            assert_eq!(c(p), "", "{p}");
        }
    }
}
