//! The `mio::Poll`, tokens, dispatch of readiness and timer events, signals.
