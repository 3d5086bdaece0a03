//! netmon-tui end-to-end tests: the real binary in tmux, as a non-root member
//! of the daemon's group, against a real netmond with real lab traffic.

mod tui;
