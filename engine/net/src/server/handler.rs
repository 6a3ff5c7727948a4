//! What a port executes: the [`Handler`] trait and the [`CommandSet`] of one port.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use super::request::{Request, Responder};

/// Executes one command. Called on the connection's reader task, so it must
/// be cheap and never block: answer at once, or move the [`Responder`] to
/// another task and answer there later.
pub trait Handler: Send + Sync + 'static {
    /// Handles `req`; answer through `responder` exactly once (dropping it
    /// answers SYS_ERROR).
    fn handle(&self, req: Request, responder: Responder);
}

impl<F> Handler for F
where
    F: Fn(Request, Responder) + Send + Sync + 'static,
{
    fn handle(&self, req: Request, responder: Responder) {
        self(req, responder)
    }
}

/// The commands one port accepts and their handlers.
#[derive(Clone, Default)]
pub struct CommandSet {
    pub(super) handlers: HashMap<u16, Arc<dyn Handler>>,
}

impl fmt::Debug for CommandSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut commands: Vec<_> = self.handlers.keys().collect();
        commands.sort();
        f.debug_struct("CommandSet")
            .field("commands", &commands)
            .finish()
    }
}

impl CommandSet {
    /// An empty set. HANDSHAKE and PING are always served and need no entry.
    pub fn new() -> CommandSet {
        CommandSet::default()
    }

    /// Registers `handler` for `command`, replacing an earlier registration.
    pub fn register(&mut self, command: u16, handler: impl Handler) -> &mut CommandSet {
        self.handlers.insert(command, Arc::new(handler));
        self
    }

    /// Registers an already shared handler for `command`.
    pub fn register_arc(&mut self, command: u16, handler: Arc<dyn Handler>) -> &mut CommandSet {
        self.handlers.insert(command, handler);
        self
    }

    /// True when `command` has a handler.
    pub fn contains(&self, command: u16) -> bool {
        self.handlers.contains_key(&command)
    }
}
