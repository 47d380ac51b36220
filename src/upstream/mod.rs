//! The client state machine for one container and its body framing.

pub mod failure;
pub mod response;

pub use failure::FailureReason;
