//! gridwatch: an edge video-analytics agent for grid-management (网格化管理) platforms.
//!
//! Data flows one way through stages, each in its own module:
//!
//! ```text
//! source (decode) -> detect -> track -> zones/rules -> incidents -> [store -> publish/web]
//! ```
//!
//! Stages exchange the plain types of [`frame`]; [`pipeline`] wires them into threads and
//! bounded queues. ARCHITECTURE.md at the repository root draws the whole picture.

pub mod actions;
pub mod analytics;
pub mod annotate;
pub mod assets;
pub mod bench;
pub mod cmds;
pub mod config;
pub mod config_file;
pub mod daemon;
pub mod detect;
pub mod evidence;
pub mod exit;
pub mod frame;
pub mod incidents;
pub mod kind;
pub mod live;
pub mod metrics;
pub mod model;
pub mod motion;
pub mod output;
pub mod pipeline;
pub mod publish;
pub mod regions;
pub mod replay;
pub mod rules;
pub mod schedule;
pub mod services;
pub mod source;
pub mod stats;
pub mod store;
pub mod time;
pub mod track;
pub mod watchdog;
pub mod web;
pub mod zones;

#[cfg(test)]
mod architecture_tests;
#[cfg(test)]
mod hostile_input_tests;
