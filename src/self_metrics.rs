//! The sidecar's own metrics, merged like any other source.
