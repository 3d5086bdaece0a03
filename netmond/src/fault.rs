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
    // None when nothing is listed: then the capture thread never takes a lock here.
    static PENDING: OnceLock<Option<Mutex<Vec<String>>>> = OnceLock::new();
    let pending = PENDING.get_or_init(|| {
        let listed = std::env::var("NETMOND_FAULT").unwrap_or_default();
        let parts: Vec<String> = listed
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        (!parts.is_empty()).then(|| Mutex::new(parts))
    });
    let Some(Ok(mut pending)) = pending.as_ref().map(Mutex::lock) else {
        return false;
    };
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
