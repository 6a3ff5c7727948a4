//! Robustness checks for Dongting.
//!
//! [`lincheck`] decides whether a history of DtKV operations, as clients saw
//! them, is linearizable. The fault runner (the `robust` binary, driven by
//! [`run`]) produces such histories from real clusters: [`cluster`] starts
//! `dongting server` processes whose peer links pass through [`proxy`],
//! [`workload`] records what the clients saw, [`watchlock`] adds watchers
//! and lock clients, [`ttl`] a client of temporary keys and their expiries,
//! [`faults`] derives the fault schedule from a seed,
//! [`membership`] demotes and promotes members through `dongting admin`, and
//! [`history`] holds the records and the checks.

pub mod cluster;
pub mod faults;
pub mod history;
pub mod lincheck;
pub mod membership;
pub mod proxy;
pub mod run;
pub mod ttl;
pub mod watchlock;
pub mod workload;
