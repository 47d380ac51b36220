//! The buffer one scrape reads into, and the rule that makes reading cheap:
//! bytes once written stay initialised.
//!
//! A safe `read` needs an initialised slice, so a buffer cleared before each
//! scrape would be zeroed again before the kernel writes every byte of every
//! body: on a pod of 1 MB bodies, that zeroing was a fifth of the sidecar's
//! CPU. Here the vector's length is what is initialised and `filled` what
//! was received; clearing only resets `filled`. A buffer handed back (the
//! previous body, swapped out of its snapshot, or one from the pool) comes
//! with its stale bytes, which are room to read into at no cost.

use std::ops::{Deref, DerefMut, Range};

use super::response::Received;

#[derive(Debug, Default)]
pub struct ReceiveBuffer {
    /// Initialised bytes: `..filled` received, the rest stale room.
    bytes: Vec<u8>,
    filled: usize,
}

impl ReceiveBuffer {
    /// A buffer whose bytes are stale: all of them are room.
    pub fn from_stale(bytes: Vec<u8>) -> ReceiveBuffer {
        ReceiveBuffer { bytes, filled: 0 }
    }

    /// The allocation, stale bytes and all (for the pool).
    pub fn take(&mut self) -> Vec<u8> {
        self.filled = 0;
        std::mem::take(&mut self.bytes)
    }

    /// Forgets what was received; the room stays initialised.
    pub fn clear(&mut self) {
        self.filled = 0;
    }

    pub fn capacity(&self) -> usize {
        self.bytes.capacity()
    }

    /// Makes the capacity at least what was received and `additional`.
    pub fn reserve_exact(&mut self, additional: usize) {
        let wanted = self.filled + additional;
        if wanted > self.bytes.capacity() {
            self.bytes.reserve_exact(wanted - self.bytes.len());
        }
    }

    /// Moves what was received into `larger` (a pooled buffer of more
    /// capacity), which becomes this buffer.
    pub fn adopt(&mut self, mut larger: Vec<u8>) {
        if larger.len() < self.filled {
            larger.resize(self.filled, 0);
        }
        larger[..self.filled].copy_from_slice(&self.bytes[..self.filled]);
        self.bytes = larger;
    }

    /// `want` bytes to read into after those received; only bytes never
    /// written before are zeroed.
    pub fn room(&mut self, want: usize) -> &mut [u8] {
        let end = self.filled + want;
        if self.bytes.len() < end {
            self.bytes.resize(end, 0);
        }
        &mut self.bytes[self.filled..end]
    }

    /// `read` bytes of the room were written by a read.
    pub fn commit(&mut self, read: usize) {
        self.filled = (self.filled + read).min(self.bytes.len());
    }

    /// Hands over what was received as a vector of exactly that length (a
    /// body, to be swapped into its snapshot); this buffer is then empty,
    /// and whatever vector comes back in its place is stale room.
    pub fn hand_over(&mut self) -> &mut Vec<u8> {
        self.bytes.truncate(self.filled);
        self.filled = 0;
        &mut self.bytes
    }

    /// Gives memory back above `keep` bytes of capacity.
    pub fn shrink_to(&mut self, keep: usize) {
        self.bytes.truncate(keep.max(self.filled));
        self.bytes.shrink_to(keep);
    }
}

impl Deref for ReceiveBuffer {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.bytes[..self.filled]
    }
}

impl DerefMut for ReceiveBuffer {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.bytes[..self.filled]
    }
}

impl Received for ReceiveBuffer {
    fn remove(&mut self, range: Range<usize>) {
        self.bytes.copy_within(range.end..self.filled, range.start);
        self.filled -= range.len();
    }

    fn truncate(&mut self, len: usize) {
        self.filled = self.filled.min(len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn received_bytes_survive_growth_removal_and_adoption() {
        let mut buffer = ReceiveBuffer::default();
        buffer.reserve_exact(8);
        buffer.room(8)[..5].copy_from_slice(b"HEADa");
        buffer.commit(5);
        assert_eq!(&buffer[..], b"HEADa");
        buffer.remove(0..4);
        assert_eq!(&buffer[..], b"a");
        buffer.room(1)[0] = b'b';
        buffer.commit(1);
        buffer.adopt(Vec::with_capacity(64));
        assert!(buffer.capacity() >= 64);
        assert_eq!(&buffer[..], b"ab");
        buffer.truncate(1);
        assert_eq!(&buffer[..], b"a");
    }

    /// The point of the type: a buffer handed back with stale bytes is room
    /// that is not zeroed again, and the stale bytes never show as received.
    #[test]
    fn stale_bytes_are_room_never_content() {
        let mut buffer = ReceiveBuffer::from_stale(b"previous body".to_vec());
        assert!(buffer.is_empty());
        let room = buffer.room(4);
        assert_eq!(room, b"prev", "stale bytes are reused as they are");
        room.copy_from_slice(b"next");
        buffer.commit(4);
        assert_eq!(&buffer[..], b"next");
        let body = buffer.hand_over();
        assert_eq!(body, b"next");
        *body = b"older stale".to_vec();
        assert!(buffer.is_empty(), "after a hand-over the buffer is empty");
        assert_eq!(buffer.room(3), b"old");
    }

    #[test]
    fn commit_never_passes_the_room() {
        let mut buffer = ReceiveBuffer::default();
        buffer.room(2);
        buffer.commit(5);
        assert_eq!(buffer.len(), 2);
        buffer.clear();
        assert!(buffer.is_empty());
        assert_eq!(
            buffer.take().len(),
            2,
            "the allocation keeps its initialised bytes"
        );
    }

    #[test]
    fn shrinking_keeps_what_was_received() {
        let mut buffer = ReceiveBuffer::from_stale(vec![7; 4096]);
        buffer.room(10).copy_from_slice(b"0123456789");
        buffer.commit(10);
        buffer.shrink_to(16);
        assert!(buffer.capacity() < 4096);
        assert_eq!(&buffer[..], b"0123456789");
    }
}
