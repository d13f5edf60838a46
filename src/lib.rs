//! EventDBX: a single-node, event-sourced database.
//!
//! The library owns everything but the command line: the storage [`engine`] (the one write
//! authority over RocksDB), the JSON Merge Patch used to materialize aggregate state, and
//! the payload type both the SQL layer and the engine hand appends in (`payload`).
//! See `docs/ARCHITECTURE.md` for the code map and the invariants each module keeps.

#![deny(clippy::unwrap_used, clippy::expect_used)]

pub mod auth;
pub mod config;
pub mod engine;
pub mod merge_patch;
pub mod payload;
pub mod schema;
pub mod server;
pub mod sql;
