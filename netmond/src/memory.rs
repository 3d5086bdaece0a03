//! Giving freed heap memory back to the system. glibc keeps what threads
//! freed in their arenas; after thousands of exited processes' rows, caches
//! and frames are freed, a daemon that runs for months should not hold it.

/// Returns free heap pages of every arena to the system (glibc); a no-op
/// elsewhere. Costs a walk of the free lists: call it now and then, not per tick.
pub fn give_back() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only reads and updates the allocator's own state
    // under its locks; it takes no pointers from us.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Gives back the room a table grew to for a burst once it is mostly empty:
/// a map keeps its largest capacity otherwise, and after 20,000 short
/// connections that is megabytes holding nothing. Keeps room for twice the
/// entries, so a table that stays busy is not resized back and forth.
pub fn shrink_map<K: Eq + std::hash::Hash, V, S: std::hash::BuildHasher>(
    m: &mut std::collections::HashMap<K, V, S>,
) {
    if m.capacity() > 4 * m.len().max(256) {
        m.shrink_to(2 * m.len());
    }
}

/// Folded process rows after which freed memory is handed back to the system.
const TRIM_AFTER_FOLDED: usize = 1000;
/// Ticks between trims while processes fold, and without any.
const TRIM_EVERY_TICKS: u32 = 60;
const TRIM_IDLE_TICKS: u32 = 600;
/// Ticks after the last fold when what exited processes left in caches with
/// their own expiry is gone (with room for the 8-tick expiry sweep):
/// folded identities are remembered 120 ticks
/// (`aggregate::programs`), closed sockets' owners 75 (`attribution::ebpf`).
pub(crate) const SETTLED_TICKS: u32 = 150;

/// When a monitoring run shrinks its tables and gives memory back: after a
/// burst of folds, once a minute after any, and once more when the caches
/// the last folds left have expired (without it, that memory would wait
/// for the idle trim, ten minutes later).
#[derive(Debug, Default)]
pub struct TrimClock {
    folded: usize,
    ticks: u32,
    /// Ticks since the last tick that folded anything, while counting.
    since_fold: Option<u32>,
}

impl TrimClock {
    /// Called once a tick with the rows folded in it; true when it is time.
    pub fn due(&mut self, folded: usize) -> bool {
        self.folded += folded;
        self.ticks += 1;
        self.since_fold = if folded > 0 {
            Some(0)
        } else {
            self.since_fold.map(|t| t + 1)
        };
        let settled = self.since_fold == Some(SETTLED_TICKS);
        let due = settled
            || self.folded >= TRIM_AFTER_FOLDED
            || (self.folded > 0 && self.ticks >= TRIM_EVERY_TICKS)
            || self.ticks >= TRIM_IDLE_TICKS;
        if due {
            self.folded = 0;
            self.ticks = 0;
        }
        if settled {
            self.since_fold = None;
        }
        due
    }
}

/// Caps glibc's heap arenas at two: by default each thread that allocates
/// may get its own (up to eight per core), and what one thread frees cannot
/// serve another's next allocation, so short bursts on many threads leave
/// RSS that no trim returns. netmond's hot path does not allocate, so the
/// shared arenas' locks cost nothing measurable.
///
/// Also fixes the mmap threshold at 256 KiB. glibc raises it, by default,
/// to the size of each large block freed (up to 32 MiB), so after the first
/// burst the big tables sized by it (a flood's flow table, 20,000 exited
/// processes' rows) are carved from the heap, where what is left around
/// them after they shrink cannot be returned. Blocks this large are
/// allocated rarely (tables grow by doubling), so their system calls cost
/// nothing measurable. Call before any thread starts.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before other
    // threads exist, it races with nothing.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn a_table_left_mostly_empty_after_a_burst_gives_its_room_back() {
        let mut m: HashMap<u64, [u8; 64]> = (0..100_000).map(|i| (i, [0; 64])).collect();
        let grown = m.capacity();
        m.retain(|k, _| *k < 1_000);
        assert!(m.capacity() > grown / 2, "retain keeps the room");
        shrink_map(&mut m);
        assert!(m.capacity() < grown / 16, "{} of {grown}", m.capacity());
        assert!(m.capacity() >= 2_000, "room for twice the entries");
        // A table still busy keeps its room.
        let busy_cap = {
            let mut b: HashMap<u64, u8> = (0..10_000).map(|i| (i, 0)).collect();
            let c = b.capacity();
            shrink_map(&mut b);
            assert_eq!(b.capacity(), c);
            c
        };
        assert!(busy_cap >= 10_000);
    }

    #[test]
    fn memory_is_given_back_after_a_burst_and_again_when_its_caches_expire() {
        let mut c = TrimClock::default();
        let ticks = |c: &mut TrimClock, n: u32, folded: usize| -> Vec<u32> {
            (1..=n).filter(|_| c.due(folded)).collect()
        };
        // A burst: 1,000 folds at once trim at once.
        assert_eq!(ticks(&mut c, 1, 1000), vec![1]);
        // A few folds: the minute's trim.
        assert_eq!(ticks(&mut c, 1, 3), Vec::<u32>::new());
        let quiet = ticks(&mut c, 750, 0);
        // 59 ticks after the fold (the minute since the last trim), then
        // when the caches have expired, then the idle trim.
        assert_eq!(
            quiet,
            vec![59, SETTLED_TICKS, SETTLED_TICKS + TRIM_IDLE_TICKS]
        );
        // Folding every tick never waits for the settled trim.
        let busy = ticks(&mut c, 200, 1);
        assert_eq!(busy.len(), 3, "{busy:?}");
    }
}
