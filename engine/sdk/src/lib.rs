//! The facade every language binding projects: [`Runtime`], [`KvClient`],
//! [`EmbeddedServer`], [`Error`] and the non-generic [`OpFuture`], and the
//! [`CompletionQueue`] through which the Python, Node and Java bindings hand
//! completions from the IO threads to their consumer.
//!
//! Its public signatures carry no generics and no lifetimes, so the C ABI
//! (`ffi/`), Python (`bindings/python`) and the other bindings map them one
//! to one. A [`Runtime`] owns the IO threads; clients and embedded servers run
//! on it. Every operation returns an [`OpFuture`] (wait on it, poll it, give
//! it one callback, or `.await` it) or blocks in its plain form. Errors carry
//! a stable code (see [`error`]), a message, whether a retry is safe, and the
//! leader hint.
//!
//! ```no_run
//! use dongting_sdk::{EmbeddedServer, KvClient, Runtime, local_cluster_configs};
//!
//! # fn main() -> Result<(), dongting_sdk::Error> {
//! let rt = Runtime::new(2)?;
//! let cfg = local_cluster_configs(1, &[0], "/tmp/dongting-example")?;
//! let server = EmbeddedServer::start(&rt, &cfg[0])?;
//! let client = KvClient::new(&rt, &server.service_addr(), 5_000)?;
//! client.mkdir(0, b"app")?;
//! client.put(0, b"app.color", b"blue")?;
//! let r = client.get(0, b"app.color")?;
//! assert_eq!(&r.nodes[0].value[..], b"blue");
//! let f = client.get_async(0, b"app.missing");
//! assert!(f.wait_result()?.nodes.is_empty());
//! client.close()?;
//! server.stop(std::time::Duration::from_secs(1))?;
//! rt.shutdown(std::time::Duration::from_secs(5))?;
//! # Ok(()) }
//! ```

mod args;
mod client;
mod completion;
pub mod error;
mod lock;
mod op;
mod ops;
mod reply;
mod runtime;
mod server;
mod watch;

pub use args::{MAX_PAGE_LIMIT, MAX_TIMEOUT_MS, MAX_TTL_MS};
pub use client::{DEFAULT_TIMEOUT_MS, KvClient, parse_servers};
pub use completion::CompletionQueue;
pub use error::{CodeInfo, CodeSource, Error, code, codes};
pub use lock::Lock;
pub use op::{Callback, OpFuture, OpResult};
pub use ops::kv_op_names;
pub use reply::{Node, NodeKind, Reply, ReplyKind};
pub use runtime::{MAX_WORKER_THREADS, Runtime};
pub use server::{EmbeddedServer, GroupInfo, ServerStatus, local_cluster_configs};
pub use watch::{Watch, WatchEvent, WatchEventKind};

/// The version of this library (`major.minor.patch`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
