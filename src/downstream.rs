//! The server state machine for one Prometheus connection.
