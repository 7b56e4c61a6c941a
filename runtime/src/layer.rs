//! The three layers of a gateway (router, pipe, backend): what each records. Span names, attribute keys,
//! measures and views are named here and only here.

use std::sync::atomic::{AtomicU8, Ordering};

use crate::config::EnabledLayers;

/// One of the three places a gateway request passes through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Layer {
    /// End user <-> gateway: one server span per request.
    Router,
    /// The proxy pipeline of one endpoint: a child of the router span.
    Pipe,
    /// Gateway <-> one upstream service: a client span per upstream call.
    Backend,
}

impl Layer {
    /// All three, in request order.
    pub const ALL: [Layer; 3] = [Layer::Router, Layer::Pipe, Layer::Backend];

    /// The name used in config and in the macro (`router`, `pipe`, `backend`).
    pub fn name(self) -> &'static str {
        match self {
            Layer::Router => "router",
            Layer::Pipe => "pipe",
            Layer::Backend => "backend",
        }
    }

    const fn bit(self) -> u8 {
        match self {
            Layer::Router => 1,
            Layer::Pipe => 2,
            Layer::Backend => 4,
        }
    }

    /// Whether this layer records anything. One relaxed atomic load: this is checked on every annotated
    /// call, and a stale answer for a moment after `init` costs nothing worse than one unrecorded call.
    #[inline]
    pub fn is_enabled(self) -> bool {
        ENABLED.load(Ordering::Relaxed) & self.bit() != 0
    }
}

/// No layer records until `init` says which do.
static ENABLED: AtomicU8 = AtomicU8::new(0);

/// Switches layers on and off; `init` calls it with the config's set, `shutdown` with none.
pub(crate) fn set_enabled(layers: EnabledLayers) {
    let mut bits = 0;
    for (on, layer) in [(layers.router, Layer::Router), (layers.pipe, Layer::Pipe), (layers.backend, Layer::Backend)] {
        if on {
            bits |= layer.bit();
        }
    }
    ENABLED.store(bits, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enabled_set_follows_config() {
        set_enabled(EnabledLayers { router: true, pipe: false, backend: true });
        assert!(Layer::Router.is_enabled());
        assert!(!Layer::Pipe.is_enabled());
        assert!(Layer::Backend.is_enabled());
        set_enabled(EnabledLayers { router: false, pipe: false, backend: false });
        assert!(Layer::ALL.iter().all(|l| !l.is_enabled()));
    }
}
