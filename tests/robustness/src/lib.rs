//! Robustness checks for Dongting.
//!
//! [`lincheck`] decides whether a history of DtKV operations, as clients saw
//! them, is linearizable. The fault runner that produces such histories from
//! real clusters builds on it.

pub mod lincheck;
