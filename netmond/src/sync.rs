//! Locks that outlive a panicking holder. A bug that panics in one tick or
//! one request must not take every later tick and request down with it:
//! what the lock guards is plain data, left as the panic left it (the panic
//! itself is reported where it is caught: the tick, the store supervisor).

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `m`, also after a holder panicked.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
