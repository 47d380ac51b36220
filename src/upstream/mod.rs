//! The client state machine for one container and its body framing.

pub mod failure;

pub use failure::FailureReason;
