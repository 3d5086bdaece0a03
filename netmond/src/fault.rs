//! Failures injected on purpose, for the lab tests of a thread that fails:
//! debug builds only, so the packaged daemon has none. The environment
//! variable `NETMOND_FAULT` lists the parts that fail once each, separated
//! by commas: `store` (the history writer) and `capture:IFACE` (that
//! interface's capture thread).

/// True once for `part` (`detail`, if not empty, after a colon) when it is
/// listed in `NETMOND_FAULT`; the caller then fails as a bug would.
#[cfg(debug_assertions)]
pub fn fire(part: &str, detail: &str) -> bool {
    use std::sync::{Mutex, OnceLock};
    static PENDING: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    let pending = PENDING.get_or_init(|| {
        let listed = std::env::var("NETMOND_FAULT").unwrap_or_default();
        Mutex::new(
            listed
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
        )
    });
    let Ok(mut pending) = pending.lock() else {
        return false;
    };
    if pending.is_empty() {
        return false;
    }
    let hit = pending.iter().position(|p| match p.split_once(':') {
        Some((name, what)) => name == part && what == detail,
        None => p == part && detail.is_empty(),
    });
    hit.map(|i| pending.swap_remove(i)).is_some()
}

#[cfg(not(debug_assertions))]
#[inline(always)]
pub fn fire(_part: &str, _detail: &str) -> bool {
    false
}
