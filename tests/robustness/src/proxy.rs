//! In-process TCP proxies for the links between nodes.
//!
//! One [`LinkProxy`] stands on each directed link i→j: node i dials it (its
//! `[dial]` setting names the proxy's port) and it forwards to node j's
//! replicate port. A link can pass bytes, delay them, blackhole them (the
//! connection stays open but nothing arrives: a partition as TCP sees it), or
//! drop every connection it carries. A connection that lost bytes to a
//! blackhole is closed when the link passes again, so no peer ever decodes a
//! stream with a hole in it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What a link does with the bytes it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkMode {
    /// Forward at once.
    Pass,
    /// Forward after this many milliseconds.
    Delay(u64),
    /// Accept connections, read and discard everything.
    Blackhole,
}

struct Shared {
    mode: watch::Sender<LinkMode>,
    /// Raised to close every open connection.
    generation: AtomicU64,
    stopped: AtomicBool,
}

/// A proxy on one directed link. Dropping it stops accepting; open
/// connections end with the runtime.
pub struct LinkProxy {
    /// The address the dialing node connects to.
    pub listen: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for LinkProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkProxy")
            .field("listen", &self.listen)
            .field("mode", &*self.shared.mode.borrow())
            .finish()
    }
}

impl LinkProxy {
    /// Listens on `listen` and forwards to `target`.
    pub async fn start(listen: SocketAddr, target: SocketAddr) -> std::io::Result<LinkProxy> {
        let listener = TcpListener::bind(listen).await?;
        let (mode, _) = watch::channel(LinkMode::Pass);
        let shared = Arc::new(Shared {
            mode,
            generation: AtomicU64::new(0),
            stopped: AtomicBool::new(false),
        });
        let s = shared.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    continue;
                };
                if s.stopped.load(Ordering::Relaxed) {
                    break;
                }
                let _ = inbound.set_nodelay(true);
                tokio::spawn(carry(s.clone(), inbound, target));
            }
        });
        Ok(LinkProxy {
            listen,
            shared,
            task,
        })
    }

    /// Sets what the link does from now on.
    pub fn set(&self, mode: LinkMode) {
        self.shared.mode.send_replace(mode);
    }

    /// The current mode.
    pub fn mode(&self) -> LinkMode {
        *self.shared.mode.borrow()
    }

    /// Closes every connection open on the link now; new ones are accepted.
    pub fn drop_connections(&self) {
        self.shared.generation.fetch_add(1, Ordering::SeqCst);
        // Wake the pumps so they notice.
        let m = *self.shared.mode.borrow();
        self.shared.mode.send_replace(m);
    }
}

impl Drop for LinkProxy {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::Relaxed);
        self.shared.generation.fetch_add(1, Ordering::SeqCst);
        let m = *self.shared.mode.borrow();
        self.shared.mode.send_replace(m);
        self.task.abort();
    }
}

async fn carry(s: Arc<Shared>, inbound: TcpStream, target: SocketAddr) {
    let generation = s.generation.load(Ordering::SeqCst);
    // While blackholed, hold the client side without connecting onwards.
    let mut rx = s.mode.subscribe();
    let tainted = Arc::new(AtomicBool::new(false));
    loop {
        if *rx.borrow_and_update() != LinkMode::Blackhole {
            break;
        }
        tainted.store(true, Ordering::Relaxed);
        if rx.changed().await.is_err() || s.generation.load(Ordering::SeqCst) != generation {
            return;
        }
    }
    if tainted.load(Ordering::Relaxed) {
        // The dialer may have written into the hole: start afresh.
        return;
    }
    let Ok(Ok(outbound)) =
        tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(target)).await
    else {
        return;
    };
    let _ = outbound.set_nodelay(true);
    let (ir, iw) = inbound.into_split();
    let (or, ow) = outbound.into_split();
    let a = tokio::spawn(pump(s.clone(), generation, tainted.clone(), ir, ow));
    let b = tokio::spawn(pump(s.clone(), generation, tainted.clone(), or, iw));
    // Either direction ending ends the connection.
    let (a_abort, b_abort) = (a.abort_handle(), b.abort_handle());
    tokio::select! {
        _ = a => b_abort.abort(),
        _ = b => a_abort.abort(),
    }
}

async fn pump(
    s: Arc<Shared>,
    generation: u64,
    tainted: Arc<AtomicBool>,
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
) {
    let mut rx = s.mode.subscribe();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = tokio::select! {
            r = from.read(&mut buf) => match r {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            c = rx.changed() => {
                if c.is_err() {
                    return;
                }
                if s.generation.load(Ordering::SeqCst) != generation {
                    return;
                }
                if tainted.load(Ordering::Relaxed) && *rx.borrow() != LinkMode::Blackhole {
                    return;
                }
                continue;
            }
        };
        if s.generation.load(Ordering::SeqCst) != generation {
            return;
        }
        let mode = *rx.borrow();
        match mode {
            LinkMode::Blackhole => {
                tainted.store(true, Ordering::Relaxed);
                continue;
            }
            LinkMode::Delay(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
            LinkMode::Pass => {}
        }
        if tainted.load(Ordering::Relaxed) {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn echo_server() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut c, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut b = [0u8; 1024];
                    while let Ok(n) = c.read(&mut b).await {
                        if n == 0 || c.write_all(&b[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    async fn round_trip(c: &mut TcpStream, msg: &[u8], wait: Duration) -> Option<Vec<u8>> {
        c.write_all(msg).await.ok()?;
        let mut b = vec![0u8; msg.len()];
        match tokio::time::timeout(wait, c.read_exact(&mut b)).await {
            Ok(Ok(_)) => Some(b),
            _ => None,
        }
    }

    #[tokio::test]
    async fn passes_delays_blackholes_and_drops() {
        let target = echo_server().await;
        let port = dongting_server::loopback::free_loopback_ports(1).expect("port")[0];
        let p = LinkProxy::start(SocketAddr::from(([127, 0, 0, 1], port)), target)
            .await
            .expect("proxy");
        let mut c = TcpStream::connect(p.listen).await.expect("connect");
        let w = Duration::from_secs(2);
        assert_eq!(
            round_trip(&mut c, b"one", w).await.as_deref(),
            Some(&b"one"[..])
        );

        p.set(LinkMode::Delay(200));
        let t = std::time::Instant::now();
        assert_eq!(
            round_trip(&mut c, b"two", w).await.as_deref(),
            Some(&b"two"[..])
        );
        assert!(
            t.elapsed() >= Duration::from_millis(400),
            "{:?}",
            t.elapsed()
        );

        // A blackhole swallows bytes; the connection is closed once it heals.
        p.set(LinkMode::Blackhole);
        assert_eq!(
            round_trip(&mut c, b"lost", Duration::from_millis(300)).await,
            None
        );
        p.set(LinkMode::Pass);
        let mut b = [0u8; 8];
        let r = tokio::time::timeout(w, c.read(&mut b))
            .await
            .expect("closed in time");
        assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");

        // A fresh connection passes; dropping closes it.
        let mut c = TcpStream::connect(p.listen).await.expect("connect");
        assert_eq!(
            round_trip(&mut c, b"three", w).await.as_deref(),
            Some(&b"three"[..])
        );
        p.drop_connections();
        let r = tokio::time::timeout(w, c.read(&mut b))
            .await
            .expect("closed in time");
        assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
    }
}
