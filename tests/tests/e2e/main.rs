//! gridwatch's end-to-end tests: one test binary (as ripgrep's `tests/tests.rs`), one module
//! per area. One binary links FFmpeg, ONNX Runtime and tract once instead of once per area,
//! and its tests share one pool of threads (`cargo test` runs test binaries one after the
//! other, so each area's slowest test used to leave the other core idle).
//!
//! Run one area with a filter on its module: `cargo test -p gridwatch-e2e --test e2e mqtt::`.
//! The cross-build comparison is `#[ignore]`d; `cross/test.sh` runs it with `--ignored`.

mod actions;
mod assets;
mod bad_input;
mod cross_target;
mod detect_replay;
mod evidence_web;
mod mqtt;
mod package;
mod parity;
mod rtsp;
mod scenarios;
mod setup_checks;
