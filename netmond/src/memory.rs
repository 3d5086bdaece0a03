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
