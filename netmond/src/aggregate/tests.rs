//! Tests of the per-tick rollup: owner answers, host rows, rates and
//! totals, the tables' bounds and the folding of exited processes.

use super::*;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

fn key(port: u16) -> FlowKey {
    FlowKey {
        proto: 6,
        local: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
        local_port: port,
        remote: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
        remote_port: 443,
    }
}

fn delta(port: u16, up: u64, down: u64, ended: bool) -> FlowDelta {
    FlowDelta {
        key: key(port),
        placement: Placement::Local,
        up_bytes: up,
        down_bytes: down,
        up_packets: 1,
        down_packets: 1,
        first_seen_ms: 1_000,
        last_seen_ms: 2_000,
        tcp_state: TcpState::Established,
        app: AppProto::Tls,
        is_new: true,
        ended,
        half_open: false,
    }
}

fn info(pid: u32) -> Arc<ProcessInfo> {
    Arc::new(ProcessInfo {
        pid,
        start_time: 77,
        name: format!("p{pid}"),
        uid: 1000,
        user: "u".into(),
        ..ProcessInfo::default()
    })
}

fn answer(port: u16, owner: Result<Arc<ProcessInfo>, Unattributed>) -> Resolution {
    let k = key(port);
    Resolution {
        query: SocketQuery {
            proto: 6,
            local: SocketAddr::new(k.local, k.local_port),
            remote: SocketAddr::new(k.remote, k.remote_port),
        },
        owner,
        inode: 1,
        uid: Some(1000),
        latency: Duration::from_micros(300),
        attempts: 1,
    }
}

fn row(r: &Rollup, pid: u32) -> v1::ProcessRow {
    r.processes
        .iter()
        .find(|p| p.process.as_ref().is_some_and(|i| i.pid == pid))
        .cloned()
        .expect("row")
}

fn proc_hosts(r: &Rollup) -> Vec<(u32, String, u64, u64)> {
    let mut v: Vec<_> = r
        .proc_hosts
        .iter()
        .map(|h| (h.process.0, h.address.clone(), h.up_bytes, h.down_bytes))
        .collect();
    v.sort();
    v
}

#[test]
fn host_rows_of_a_process_include_bytes_from_before_its_owner_was_known() {
    let mut a = Aggregator::new();
    a.apply_deltas(0, &[delta(1, 100, 1000, false)], &[]);
    let r = a.roll(1000, |_, _| true);
    assert!(r.proc_hosts.is_empty(), "no owner yet");
    a.apply_resolution(answer(1, Ok(info(42))), 0);
    a.apply_deltas(0, &[delta(1, 10, 10, true)], &[]);
    let r = a.roll(1000, |_, _| true);
    assert_eq!(proc_hosts(&r), vec![(42, "10.0.0.2".into(), 110, 1010)]);
    // Each byte once: nothing new, nothing handed out again.
    let r = a.roll(1000, |_, _| true);
    assert!(r.proc_hosts.is_empty());
}

#[test]
fn a_process_with_many_hosts_in_a_tick_keeps_the_busiest_and_sums_the_rest() {
    let mut by_proc = HashMap::new();
    let hosts: HashMap<IpAddr, Counts> = (0..(PROC_HOSTS_PER_TICK as u64 + 10))
        .map(|n| {
            let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n as u32));
            let c = Counts {
                up_bytes: n + 1,
                down_bytes: 1,
                ..Counts::default()
            };
            (ip, c)
        })
        .collect();
    by_proc.insert((7, 1), hosts);
    let rows = proc_host_rows(by_proc);
    assert_eq!(rows.len(), PROC_HOSTS_PER_TICK + 1);
    let other = rows
        .iter()
        .find(|r| r.address.is_empty())
        .expect("other row");
    // The ten smallest: up 1..=10.
    assert_eq!((other.up_bytes, other.down_bytes), (55, 10));
    let up: u64 = rows.iter().map(|r| r.up_bytes).sum();
    let n = PROC_HOSTS_PER_TICK as u64 + 10;
    assert_eq!(up, n * (n + 1) / 2, "totals stay exact");
    assert!(rows.iter().any(|r| r.address == "10.0.0.73"));
}

#[test]
fn bytes_seen_before_the_owner_is_known_move_to_it() {
    let mut a = Aggregator::new();
    a.apply_deltas(0, &[delta(1, 100, 1000, false)], &[]);
    let r = a.roll(1000, |_, _| true);
    assert_eq!(r.unattributed.reasons[0].reason, "pending");
    a.apply_resolution(answer(1, Ok(info(42))), 0);
    a.apply_deltas(0, &[delta(1, 10, 10, false)], &[]);
    let r = a.roll(1000, |_, _| true);
    let t = row(&r, 42).traffic.unwrap();
    assert_eq!((t.up_bytes, t.down_bytes), (110, 1010));
    assert_eq!(r.bytes_attributed, r.bytes_captured);
    assert_eq!(r.unattributed.traffic.unwrap().down_bytes, 0);
}

#[test]
fn an_answer_that_arrives_before_the_flow_is_kept_for_it() {
    let mut a = Aggregator::new();
    a.apply_resolution(answer(2, Ok(info(7))), 0);
    a.apply_deltas(0, &[delta(2, 5, 50, true)], &[]);
    let r = a.roll(1000, |_, _| true);
    assert_eq!(row(&r, 7).traffic.unwrap().down_bytes, 50);
    assert_eq!(row(&r, 7).protocols, vec!["tls".to_owned()]);
}

#[test]
fn failure_goes_to_its_reason_and_a_later_owner_takes_the_bytes_back() {
    let mut a = Aggregator::new();
    a.apply_deltas(0, &[delta(3, 0, 300, false)], &[]);
    a.apply_resolution(answer(3, Err(Unattributed::NoSocket)), 0);
    let r = a.roll(1000, |_, _| true);
    let b = r
        .unattributed
        .reasons
        .iter()
        .find(|x| x.reason == "no_socket")
        .unwrap();
    assert_eq!(b.traffic.unwrap().down_bytes, 300);
    a.apply_resolution(answer(3, Ok(info(9))), 0);
    let r = a.roll(1000, |_, _| true);
    assert_eq!(row(&r, 9).traffic.unwrap().down_bytes, 300);
    let b = r
        .unattributed
        .reasons
        .iter()
        .find(|x| x.reason == "no_socket")
        .unwrap();
    assert_eq!(b.traffic.unwrap().down_bytes, 0);
}

#[test]
fn rates_are_per_tick_and_totals_outlive_the_process() {
    let mut a = Aggregator::new();
    a.apply_resolution(answer(4, Ok(info(11))), 0);
    a.apply_deltas(0, &[delta(4, 0, 2000, false)], &[]);
    let r = a.roll(500, |_, _| true);
    assert_eq!(
        row(&r, 11).traffic.unwrap().down_bps,
        4000,
        "2000 bytes in a 500 ms tick"
    );
    a.apply_deltas(0, &[delta(4, 0, 0, true)], &[]);
    // Liveness is checked every few ticks, not every tick.
    for _ in 0..5 {
        a.roll(500, |_, _| false);
    }
    let r = a.roll(500, |_, _| false);
    let p = row(&r, 11);
    assert_eq!(p.traffic.unwrap().down_bytes, 2000);
    assert_eq!(p.traffic.unwrap().down_bps, 0);
    assert!(!p.alive, "an exited process keeps its row with alive=false");
    assert_eq!(p.connections, 0);
}

#[test]
fn reset_zeroes_totals_but_keeps_owners() {
    let mut a = Aggregator::new();
    a.apply_resolution(answer(5, Ok(info(12))), 0);
    a.apply_deltas(0, &[delta(5, 10, 10, false)], &[]);
    a.roll(1000, |_, _| true);
    a.reset();
    a.apply_deltas(0, &[delta(5, 1, 2, false)], &[]);
    let r = a.roll(1000, |_, _| true);
    let t = row(&r, 12).traffic.unwrap();
    assert_eq!((t.up_bytes, t.down_bytes), (1, 2));
    assert_eq!(r.totals.down_bytes, 2);
}

#[test]
fn a_flood_of_new_flows_is_counted_but_not_tracked_past_the_bound() {
    let mut a = Aggregator::with_max_flows(100);
    let deltas: Vec<FlowDelta> = (0..1000).map(|p| delta(p, 0, 10, false)).collect();
    a.apply_deltas(0, &deltas, &[]);
    assert_eq!(a.flows.len(), 100);
    assert_eq!(a.untracked(), 900);
    let r = a.roll(1000, |_, _| true);
    assert_eq!(r.totals.down_bytes, 10_000, "every byte is still counted");
    let b = r
        .unattributed
        .reasons
        .iter()
        .find(|x| x.reason == "flow_table_full")
        .unwrap();
    assert_eq!(b.traffic.unwrap().down_bytes, 9_000);
}

#[test]
fn a_full_table_drops_half_open_flows_for_real_ones() {
    let mut a = Aggregator::with_max_flows(2);
    let syn = |port| FlowDelta {
        up_packets: 0,
        tcp_state: TcpState::SynSent,
        half_open: true,
        ..delta(port, 0, 40, false)
    };
    a.apply_deltas(0, &[syn(1), syn(2)], &[]);
    // Another half-open flow finds no room; a real one takes the oldest's.
    a.apply_deltas(0, &[syn(3), delta(4, 500, 5_000, false)], &[]);
    assert_eq!(a.untracked(), 1);
    assert_eq!(a.evicted_half_open(), 1);
    a.apply_resolution(answer(4, Ok(info(7))), 1_000);
    // Half-open flows are asked about again behind the others.
    let again = a.maintenance(1_000 + RESUBMIT_AFTER_MS + 1);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].1, Priority::Low);
    let r = a.roll(1000, |_, _| true);
    assert_eq!(r.processes[0].traffic.unwrap().down_bytes, 5_000);
    assert_eq!(r.totals.down_bytes, 5_120, "every byte is still counted");
    let full = r
        .unattributed
        .reasons
        .iter()
        .find(|x| x.reason == "flow_table_full")
        .unwrap();
    assert_eq!(full.traffic.unwrap().down_bytes, 80);
}

fn named(pid: u32, name: &str) -> Arc<ProcessInfo> {
    let mut i = (*info(pid)).clone();
    i.name = name.to_owned();
    i.exe = format!("/usr/bin/{name}");
    i.start_time = u64::from(pid) * 3;
    Arc::new(i)
}

/// Each of `who` sends `100 * pid` bytes down on its own flow and exits.
fn run_and_exit(a: &mut Aggregator, who: &[(u32, &str)]) {
    for (pid, name) in who {
        let port = u16::try_from(*pid).unwrap();
        a.apply_resolution(answer(port, Ok(named(*pid, name))), 0);
        a.apply_deltas(0, &[delta(port, 1, 100 * u64::from(*pid), true)], &[]);
    }
}

fn program<'a>(r: &'a Rollup, name: &str) -> Option<&'a v1::ProcessRow> {
    r.processes
        .iter()
        .find(|p| p.folded_processes > 0 && p.process.as_ref().unwrap().name == name)
}

#[test]
fn exited_processes_fold_into_their_program_after_the_keep_time() {
    let mut a = Aggregator::new();
    a.set_exited_retention(ExitedRetention {
        keep_ms: 2_000,
        keep_max: 100,
    });
    run_and_exit(&mut a, &[(11, "curl"), (12, "curl"), (13, "wget")]);
    let r = a.roll(500, |_, _| false);
    assert_eq!(r.table.exited_processes, 3, "exited rows are kept a while");
    assert!(program(&r, "curl").is_none());
    let attributed = r.bytes_attributed;
    let mut r = r;
    for _ in 0..5 {
        r = a.roll(500, |_, _| false);
    }
    let curl = program(&r, "curl").expect("curl's program row");
    let id = curl.process.as_ref().unwrap();
    assert_eq!((id.pid, id.exe.as_str()), (0, "/usr/bin/curl"));
    assert!(!curl.alive);
    assert_eq!(curl.folded_processes, 2);
    let t = curl.traffic.unwrap();
    assert_eq!((t.up_bytes, t.down_bytes), (2, 2_300), "exact totals");
    assert_eq!(program(&r, "wget").unwrap().folded_processes, 1);
    assert_eq!(r.processes.len(), 2, "no per-pid rows left");
    assert_eq!(r.bytes_attributed, attributed, "nothing lost");
    assert_eq!(
        r.table,
        TableCounts {
            live_processes: 0,
            exited_processes: 0,
            folded_programs: 2,
            folded_processes: 3,
        }
    );
    // More processes of the program add to the same row.
    run_and_exit(&mut a, &[(14, "curl")]);
    for _ in 0..10 {
        r = a.roll(500, |_, _| false);
    }
    let curl = program(&r, "curl").unwrap();
    assert_eq!(curl.folded_processes, 3);
    assert_eq!(curl.traffic.unwrap().down_bytes, 3_700);
}

#[test]
fn beyond_the_keep_count_the_longest_gone_fold_first() {
    let mut a = Aggregator::new();
    a.set_exited_retention(ExitedRetention {
        keep_ms: 3_600_000,
        keep_max: 2,
    });
    run_and_exit(&mut a, &[(21, "job")]);
    a.roll(1000, |_, _| false);
    for _ in 0..4 {
        a.roll(1000, |_, _| false);
    }
    run_and_exit(&mut a, &[(22, "job"), (23, "job")]);
    let r = a.roll(1000, |_, _| false);
    assert_eq!(r.table.exited_processes, 3);
    let r = a.roll(1000, |_, _| false);
    assert_eq!(r.table.exited_processes, 2);
    assert_eq!(program(&r, "job").unwrap().folded_processes, 1);
    assert_eq!(
        program(&r, "job").unwrap().traffic.unwrap().down_bytes,
        2_100
    );
    assert!(r
        .processes
        .iter()
        .any(|p| p.process.as_ref().unwrap().pid == 22));
}

#[test]
fn processes_known_by_name_only_join_their_programs_row() {
    let mut a = Aggregator::new();
    a.set_exited_retention(ExitedRetention {
        keep_ms: 0,
        keep_max: 0,
    });
    // Gone before /proc was read: the kernel's record names it, no exe.
    let gone = |pid: u32| {
        let mut i = (*named(pid, "job")).clone();
        i.exe.clear();
        i.start_time = 0;
        Arc::new(i)
    };
    a.apply_resolution(answer(41, Ok(gone(41))), 0);
    a.apply_deltas(0, &[delta(41, 0, 10, true)], &[]);
    a.roll(1000, |_, _| false);
    run_and_exit(&mut a, &[(42, "job")]);
    for _ in 0..5 {
        a.roll(1000, |_, _| false);
    }
    a.apply_resolution(answer(43, Ok(gone(43))), 0);
    a.apply_deltas(0, &[delta(43, 0, 20, true)], &[]);
    for _ in 0..5 {
        a.roll(1000, |_, _| false);
    }
    let r = a.roll(1000, |_, _| false);
    assert_eq!(r.processes.len(), 1, "{:?}", r.processes);
    let job = &r.processes[0];
    assert_eq!(job.folded_processes, 3);
    assert_eq!(job.process.as_ref().unwrap().exe, "/usr/bin/job");
    assert_eq!(job.traffic.unwrap().down_bytes, 10 + 4_200 + 20);
}

#[test]
fn late_bytes_of_a_folded_process_add_bytes_not_a_process() {
    let mut a = Aggregator::new();
    a.set_exited_retention(ExitedRetention {
        keep_ms: 0,
        keep_max: 0,
    });
    let settle = |a: &mut Aggregator| {
        for _ in 0..=MIN_QUIET_TICKS {
            a.roll(1000, |_, _| false);
        }
        a.roll(1000, |_, _| false)
    };
    run_and_exit(&mut a, &[(51, "late")]);
    assert_eq!(
        program(&settle(&mut a), "late").unwrap().folded_processes,
        1
    );
    // Its socket's last packets, after the fold: same pid, same start.
    a.apply_resolution(answer(52, Ok(named(51, "late"))), 0);
    a.apply_deltas(0, &[delta(52, 1, 60, true)], &[]);
    let r = settle(&mut a);
    let row = program(&r, "late").unwrap();
    assert_eq!(row.folded_processes, 1, "{row:?}");
    assert_eq!(row.traffic.unwrap().down_bytes, 5_100 + 60);
    // The pid reused by another process of that program: one more.
    let mut reused = (*named(51, "late")).clone();
    reused.start_time += 1_000;
    a.apply_resolution(answer(53, Ok(Arc::new(reused))), 0);
    a.apply_deltas(0, &[delta(53, 1, 7, true)], &[]);
    let r = settle(&mut a);
    assert_eq!(program(&r, "late").unwrap().folded_processes, 2);
}

#[test]
fn reset_forgets_program_rows() {
    let mut a = Aggregator::new();
    a.set_exited_retention(ExitedRetention {
        keep_ms: 0,
        keep_max: 0,
    });
    run_and_exit(&mut a, &[(31, "x")]);
    let r = a.roll(1000, |_, _| false);
    assert_eq!(
        r.table.exited_processes, 1,
        "a process that just moved bytes is not folded yet"
    );
    for _ in 0..MIN_QUIET_TICKS {
        a.roll(1000, |_, _| false);
    }
    assert_eq!(a.roll(1000, |_, _| false).table.folded_programs, 1);
    assert!(r.bytes_attributed > 0);
    a.reset();
    let r = a.roll(1000, |_, _| false);
    assert!(r.processes.is_empty());
    assert_eq!(r.bytes_attributed, 0);
}

#[test]
fn flows_never_answered_are_given_up_on() {
    let mut a = Aggregator::new();
    a.apply_deltas(0, &[delta(6, 0, 64, false)], &[]);
    assert_eq!(
        a.maintenance(1_000 + RESUBMIT_AFTER_MS + 1).len(),
        1,
        "asked again once"
    );
    assert!(a.maintenance(1_000 + RESUBMIT_AFTER_MS + 2).is_empty());
    a.maintenance(1_000 + GIVE_UP_AFTER_MS + 1);
    let r = a.roll(1000, |_, _| true);
    let b = r
        .unattributed
        .reasons
        .iter()
        .find(|x| x.reason == "no_socket")
        .unwrap();
    assert_eq!(b.traffic.unwrap().down_bytes, 64);
}
