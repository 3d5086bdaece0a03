// SPDX-License-Identifier: (MIT OR GPL-2.0)
/*
 * netmon socket accounting: who owns each socket, and every byte it moves.
 *
 * Only UAPI context fields (struct bpf_sock, struct __sk_buff) are read: the
 * verifier rewrites those accesses for the running kernel. The one exception
 * is the owner's start time (two task_struct fields, CO-RE relocated by the
 * loader), read only when the loader sets read_task_start: a kernel that
 * refuses task reads to cgroup programs loads the object with it off.
 *
 * Every program returns 1 (allow) on every path: this code observes, it must
 * never drop a packet or refuse a socket, also when a map is full.
 */
#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_core_read.h>

#define AF_INET 2
#define AF_INET6 10
#define LOOPBACK_IFINDEX 1

/* Flags of struct sock_rec (keep in sync with netmond/src/attribution/ebpf). */
#define REC_OWNER_KNOWN 1 /* owner came from the creating (or connecting) task */
#define REC_CLOSED 2      /* the socket was released: read once more, then drop */

/* Set by the loader before load. */
const volatile __u32 include_loopback = 0;
const volatile __u32 read_task_start = 0;

/* The fields read of the creating task, relocated for the running kernel:
 * its thread-group leader's start is the process start /proc/<pid>/stat shows. */
struct task_struct {
	struct task_struct *group_leader;
	__u64 start_boottime;
} __attribute__((preserve_access_index));

/* Recorded synchronously in the task that creates (or connects) the socket. */
struct owner {
	__u32 tgid;
	__u32 uid;
	__u64 cgroup_id;
	/* boot-time ns when recorded: tells a reused pid from the owner */
	__u64 recorded_ns;
	/* boot-time ns the process started (0: not read): with tgid, its identity */
	__u64 start_ns;
	char comm[16];
	__u32 released;
	__u32 _pad;
};

/* One socket's counters, keyed by socket cookie; read by user space each tick. */
struct sock_rec {
	struct owner owner;
	__u64 netns_cookie;
	__u64 tx_bytes;
	__u64 rx_bytes;
	__u64 tx_packets;
	__u64 rx_packets;
	__u32 local_ip[4];
	__u32 remote_ip[4];
	__u16 local_port;  /* host order */
	__u16 remote_port; /* host order */
	__u8 family;
	__u8 protocol;
	__u8 flags;
	__u8 _pad;
};

/* What could not be counted per socket, so that user space can say so. */
struct lost {
	__u64 tx_bytes;
	__u64 rx_bytes;
	__u64 tx_packets;
	__u64 rx_packets;
};

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC | BPF_F_CLONE);
	__type(key, int);
	__type(value, struct owner);
} owners SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 131072);
	__type(key, __u64);
	__type(value, struct sock_rec);
} socks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lost);
} lost SEC(".maps");

static __always_inline void record_owner(struct owner *o)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	o->tgid = pid_tgid >> 32;
	o->uid = (__u32)bpf_get_current_uid_gid();
	o->cgroup_id = bpf_get_current_cgroup_id();
	o->recorded_ns = bpf_ktime_get_boot_ns();
	bpf_get_current_comm(o->comm, sizeof(o->comm));
	o->start_ns = 0;
	if (read_task_start) {
		struct task_struct *t = (struct task_struct *)bpf_get_current_task();
		o->start_ns = BPF_CORE_READ(t, group_leader, start_boottime);
	}
}

static __always_inline int is_inet(__u32 family)
{
	return family == AF_INET || family == AF_INET6;
}

SEC("cgroup/sock_create")
int sock_create(struct bpf_sock *sk)
{
	if (!is_inet(sk->family))
		return 1;
	struct owner *o = bpf_sk_storage_get(&owners, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (o)
		record_owner(o);
	return 1;
}

SEC("cgroup/sock_release")
int sock_release(struct bpf_sock *sk)
{
	if (!is_inet(sk->family))
		return 1;
	/* Late packets (FIN, retransmits) re-create a record: it is born closed. */
	struct owner *o = bpf_sk_storage_get(&owners, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (o)
		o->released = 1;
	__u64 cookie = bpf_get_socket_cookie(sk);
	struct sock_rec *r = bpf_map_lookup_elem(&socks, &cookie);
	if (r)
		r->flags |= REC_CLOSED;
	return 1;
}

/* A socket handed to another process is credited to whoever connects or sends. */
static __always_inline int adopt(struct bpf_sock_addr *ctx)
{
	struct bpf_sock *sk = ctx->sk;
	if (!sk)
		return 1;
	struct owner *o = bpf_sk_storage_get(&owners, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!o)
		return 1;
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	if (o->tgid != tgid)
		record_owner(o);
	return 1;
}

SEC("cgroup/connect4")
int connect4(struct bpf_sock_addr *ctx) { return adopt(ctx); }
SEC("cgroup/connect6")
int connect6(struct bpf_sock_addr *ctx) { return adopt(ctx); }
SEC("cgroup/sendmsg4")
int sendmsg4(struct bpf_sock_addr *ctx) { return adopt(ctx); }
SEC("cgroup/sendmsg6")
int sendmsg6(struct bpf_sock_addr *ctx) { return adopt(ctx); }

/* Reads only the sock_common fields, valid for full, request and time-wait sockets. */
static __always_inline void fill_tuple(struct sock_rec *r, struct bpf_sock *sk, __u8 protocol)
{
	r->family = sk->family;
	r->protocol = protocol;
	r->local_port = sk->src_port;
	r->remote_port = bpf_ntohs(sk->dst_port);
	if (sk->family == AF_INET) {
		r->local_ip[0] = sk->src_ip4;
		r->remote_ip[0] = sk->dst_ip4;
	} else {
		r->local_ip[0] = sk->src_ip6[0];
		r->local_ip[1] = sk->src_ip6[1];
		r->local_ip[2] = sk->src_ip6[2];
		r->local_ip[3] = sk->src_ip6[3];
		r->remote_ip[0] = sk->dst_ip6[0];
		r->remote_ip[1] = sk->dst_ip6[1];
		r->remote_ip[2] = sk->dst_ip6[2];
		r->remote_ip[3] = sk->dst_ip6[3];
	}
}

/*
 * An unconnected socket (UDP sendto, raw) has no local address of its own:
 * take the one its packet carries, so capture can match the flow.
 */
static __always_inline void local_from_packet(struct sock_rec *r, struct __sk_buff *skb, int egress)
{
	if (r->family == AF_INET) {
		if (r->local_ip[0] != 0 || skb->protocol != bpf_htons(0x0800))
			return;
		bpf_skb_load_bytes(skb, egress ? 12 : 16, &r->local_ip[0], 4);
	} else {
		if ((r->local_ip[0] | r->local_ip[1] | r->local_ip[2] | r->local_ip[3]) != 0 ||
		    skb->protocol != bpf_htons(0x86DD))
			return;
		bpf_skb_load_bytes(skb, egress ? 8 : 24, &r->local_ip[0], 16);
	}
}

static __always_inline void count_lost(__u64 len, __u64 segs, int egress)
{
	__u32 zero = 0;
	struct lost *l = bpf_map_lookup_elem(&lost, &zero);
	if (!l)
		return;
	if (egress) {
		l->tx_bytes += len;
		l->tx_packets += segs;
	} else {
		l->rx_bytes += len;
		l->rx_packets += segs;
	}
}

static __always_inline int account(struct __sk_buff *skb, int egress)
{
	if (!include_loopback && skb->ifindex == LOOPBACK_IFINDEX)
		return 1;
	struct bpf_sock *sk = skb->sk;
	if (!sk)
		return 1;
	if (!is_inet(sk->family))
		return 1;
	/*
	 * A time-wait or request socket is not a full socket, but it keeps the
	 * cookie of the socket it came from: its last ACKs and FINs count there.
	 */
	struct bpf_sock *full = bpf_sk_fullsock(sk);
	struct owner *o = full ? bpf_sk_storage_get(&owners, full, 0, 0) : 0;
	/* skb->len here is the layer-3 length (IP header + payload), as capture counts. */
	__u64 len = skb->len;
	__u64 segs = skb->gso_segs ? skb->gso_segs : 1;
	__u64 cookie = bpf_get_socket_cookie(skb);
	struct sock_rec *r = bpf_map_lookup_elem(&socks, &cookie);
	if (!r) {
		struct sock_rec init = {};
		if (o) {
			init.owner = *o;
			init.flags = REC_OWNER_KNOWN | (o->released ? REC_CLOSED : 0);
		} else if (!full) {
			/* The owning socket is gone or not made yet: a transient record. */
			init.flags = REC_CLOSED;
		}
		init.netns_cookie = bpf_get_netns_cookie(skb);
		fill_tuple(&init, sk, full ? full->protocol : IPPROTO_TCP);
		local_from_packet(&init, skb, egress);
		if (bpf_map_update_elem(&socks, &cookie, &init, BPF_NOEXIST) != 0 &&
		    bpf_map_lookup_elem(&socks, &cookie) == 0) {
			count_lost(len, segs, egress);
			return 1;
		}
		r = bpf_map_lookup_elem(&socks, &cookie);
		if (!r) {
			count_lost(len, segs, egress);
			return 1;
		}
	} else if (full) {
		if (o && o->tgid != r->owner.tgid) {
			r->owner = *o;
			r->flags |= REC_OWNER_KNOWN;
		}
		/* A UDP socket may connect after its first datagram. */
		if (r->remote_port == 0 && full->dst_port != 0)
			fill_tuple(r, full, full->protocol);
	}
	if (egress) {
		__sync_fetch_and_add(&r->tx_bytes, len);
		__sync_fetch_and_add(&r->tx_packets, segs);
	} else {
		__sync_fetch_and_add(&r->rx_bytes, len);
		__sync_fetch_and_add(&r->rx_packets, segs);
	}
	return 1;
}

SEC("cgroup_skb/egress")
int skb_egress(struct __sk_buff *skb) { return account(skb, 1); }

SEC("cgroup_skb/ingress")
int skb_ingress(struct __sk_buff *skb) { return account(skb, 0); }

char LICENSE[] SEC("license") = "Dual MIT/GPL";
