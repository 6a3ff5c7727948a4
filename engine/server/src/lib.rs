//! The Dongting node runtime.
//!
//! A node process hosts many raft groups; each group is a raft core, its log store
//! and a DtKV state machine, driven by one task. Peers and admin tools reach the
//! node on its replicate port, clients on its service port.

pub mod config;
