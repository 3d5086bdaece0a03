//! Which hosts a program talked to, afterwards: two renamed programs upload
//! to two peer addresses, then `report --by host|category --process NAME`.

use std::time::{Duration, Instant};

use crate::harness::*;

/// Renames the process (comm) to its first argument, then runs the client.
fn renamed_client() -> String {
    format!(
        "import sys\nwith open('/proc/self/comm', 'w') as f: f.write(sys.argv.pop(1))\n{}",
        gen::TCP_CLIENT
    )
}

/// (key, up + down) of each row of a `report --json`.
fn rows(rep: &serde_json::Value) -> Vec<(String, u64)> {
    rep["rows"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| {
                    (
                        r["key"].as_str().unwrap_or("").to_owned(),
                        u(r, "total_bytes"),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn report_by_host_of_one_program_lists_its_hosts_only() {
    let lab = Lab::new();
    let d = lab.daemon(DaemonOpts {
        config_extra: "[store]\nflush_interval_secs = 1\n".into(),
        ..Default::default()
    });
    // A second peer address for the second program (inside the lab /24).
    let prefix = lab
        .peer_ip
        .rsplit_once('.')
        .map(|(p, _)| format!("{p}."))
        .expect("v4 lab address");
    let other_ip = format!("{prefix}50");
    let out = lab
        .peer
        .exec(&format!("ip addr add {other_ip}/32 dev {}", lab.peer_if));
    assert!(out.status.success(), "{}", stderr(&out));
    let _a_srv = start_server(&lab.peer, gen::TCP_SERVER, &[&lab.peer_ip, "5461"]);
    let _b_srv = start_server(&lab.peer, gen::TCP_SERVER, &[&other_ip, "5462"]);
    let tag = std::process::id() % 100_000;
    let (a, b) = (format!("nmhA{tag}"), format!("nmhB{tag}"));
    const N: u64 = 2 * 1024 * 1024;
    const M: u64 = 3 * 1024 * 1024;
    let client = renamed_client();
    let run = |name: &str, ip: &str, port: &str, n: u64| {
        let c = Lab::spawn_in(
            &lab.host,
            "python3",
            &["-c", &client, name, ip, port, "up", &n.to_string()],
        );
        let out = wait_output(c, 60);
        assert!(out.status.success(), "{name}: {}", stderr(&out));
    };
    run(&a, &lab.peer_ip, "5461", N);
    run(&b, &other_ip, "5462", M);

    let report = |by: &str, name: &str| {
        d.ctl_json(&[
            "report",
            "--since",
            "1h",
            "--by",
            by,
            "--process",
            name,
            "--limit",
            "100",
        ])
    };
    let host_bytes = |name: &str, ip: &str| {
        rows(&report("host", name))
            .into_iter()
            .find(|(k, _)| k == ip)
            .map_or(0, |(_, b)| b)
    };
    let got_a = settle(30, N, || host_bytes(&a, &lab.peer_ip));
    assert_between(
        got_a,
        N,
        tcp_credit_hi(N),
        &format!("{a} to {}", lab.peer_ip),
    );
    let got_b = settle(30, M, || host_bytes(&b, &other_ip));
    assert_between(got_b, M, tcp_credit_hi(M), &format!("{b} to {other_ip}"));

    let rep_a = report("host", &a);
    assert_eq!(rep_a["process"], a.as_str(), "{rep_a}");
    let keys: Vec<String> = rows(&rep_a).into_iter().map(|(k, _)| k).collect();
    assert!(
        !keys.contains(&other_ip),
        "{a} never talked to {other_ip}: {rep_a}"
    );
    let rep_b = report("host", &b);
    assert!(
        !rows(&rep_b).iter().any(|(k, _)| *k == lab.peer_ip),
        "{b} never talked to {}: {rep_b}",
        lab.peer_ip
    );
    // By category: the same bytes (the lab addresses have no category).
    let cats = report("category", &a);
    let cat_total: u64 = rows(&cats).iter().map(|(_, b)| b).sum();
    let host_total: u64 = rows(&rep_a).iter().map(|(_, b)| b).sum();
    assert_eq!(cat_total, host_total, "{cats}");
    assert!(
        rows(&cats).iter().any(|(k, _)| k == "uncategorized"),
        "{cats}"
    );
    // Text: the host's line; a grouping other than host or category is a usage error.
    let deadline = Instant::now() + Duration::from_secs(5);
    let text = loop {
        let o = d.ctl(&["report", "--since", "1h", "--by", "host", "--process", &a]);
        let t = stdout(&o);
        if t.contains(&lab.peer_ip) || Instant::now() > deadline {
            break t;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(text.contains(&lab.peer_ip) && text.contains(&a), "{text}");
    assert!(!text.contains(&other_ip), "{text}");
    let o = d.ctl(&["report", "--by", "process", "--process", &a]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}
