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
