//! netmon's capture hot path as a pure library: frame bytes in, values out.
//! No I/O, no threads, no OS clock, no logging: callers pass the time and
//! log what the returned values tell them.

pub mod classify;
pub mod decode;
pub mod dns;
pub mod flows;
pub mod sniff;
