//! The client state machine for one container and its body framing.
