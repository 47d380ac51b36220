//! The table of open client connections: slots reused after a close, each
//! entry named by a [`ClientId`] that carries the slot's generation.
//!
//! An id outlives its entry in timers, round waiters and readiness events
//! already queued. Looking up an id whose slot was closed, or closed and
//! given to a newer client, finds nothing: the generation differs. A slot
//! closed during an event batch is reused only after the batch
//! ([`ClientTable::end_of_batch`]), so a later event of the same batch,
//! which names the slot only by its token, cannot reach a new client either.
//!
//! The table knows no socket: the loop stores its connections in it and
//! turns a slot into a `mio::Token` and back.

/// A client for as long as its connection lives; never names another.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClientId {
    slot: u32,
    generation: u32,
}

impl ClientId {
    /// The slot, for the loop's token (`token = base + slot`).
    pub fn slot(self) -> usize {
        self.slot as usize
    }
}

struct Slot<T> {
    /// Bumped at each removal, so ids of the earlier entry stop matching.
    generation: u32,
    entry: Option<T>,
}

/// Open clients, at most `capacity` at once.
pub struct ClientTable<T> {
    slots: Vec<Slot<T>>,
    /// Reusable now.
    free: Vec<u32>,
    /// Closed during this batch, reusable after it.
    closed: Vec<u32>,
    open: usize,
    capacity: usize,
}

impl<T> ClientTable<T> {
    pub fn new(capacity: usize) -> ClientTable<T> {
        ClientTable {
            slots: Vec::new(),
            free: Vec::new(),
            closed: Vec::new(),
            open: 0,
            capacity,
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.open
    }

    pub fn is_full(&self) -> bool {
        self.open >= self.capacity
    }

    /// Stores a new client; `None` when the table is full (the connection
    /// should then wait in the kernel's accept queue).
    pub fn insert(&mut self, entry: T) -> Option<ClientId> {
        if self.is_full() {
            return None;
        }
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    entry: None,
                });
                (self.slots.len() - 1) as u32
            }
        };
        let place = &mut self.slots[slot as usize];
        place.entry = Some(entry);
        self.open += 1;
        Some(ClientId {
            slot,
            generation: place.generation,
        })
    }

    /// The id of the client in `slot` now, if any (from a readiness event's
    /// token).
    pub fn id_at(&self, slot: usize) -> Option<ClientId> {
        let place = self.slots.get(slot)?;
        place.entry.as_ref()?;
        Some(ClientId {
            slot: slot as u32,
            generation: place.generation,
        })
    }

    pub fn get_mut(&mut self, id: ClientId) -> Option<&mut T> {
        let place = self.slots.get_mut(id.slot as usize)?;
        if place.generation != id.generation {
            return None;
        }
        place.entry.as_mut()
    }

    /// Takes the client out; its slot is reused after this batch.
    pub fn remove(&mut self, id: ClientId) -> Option<T> {
        let place = self.slots.get_mut(id.slot as usize)?;
        if place.generation != id.generation {
            return None;
        }
        let entry = place.entry.take()?;
        place.generation = place.generation.wrapping_add(1);
        self.open -= 1;
        self.closed.push(id.slot);
        Some(entry)
    }

    /// The event batch is over: slots closed during it may be reused.
    pub fn end_of_batch(&mut self) {
        self.free.append(&mut self.closed);
    }

    /// The ids of every open client whose entry matches `test`.
    pub fn ids_where(&self, mut test: impl FnMut(&T) -> bool) -> Vec<ClientId> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(slot, place)| {
                let entry = place.entry.as_ref()?;
                test(entry).then_some(ClientId {
                    slot: slot as u32,
                    generation: place.generation,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_of_closed_clients_find_nothing_even_after_reuse() {
        let mut table = ClientTable::new(8);
        let first = table.insert("first").unwrap();
        assert_eq!(table.get_mut(first), Some(&mut "first"));
        assert_eq!(table.remove(first), Some("first"));
        assert_eq!(table.get_mut(first), None);
        assert_eq!(table.remove(first), None, "removed twice");
        // Not reusable within the batch: a new client takes another slot.
        let second = table.insert("second").unwrap();
        assert_ne!(second.slot(), first.slot());
        table.end_of_batch();
        let third = table.insert("third").unwrap();
        assert_eq!(third.slot(), first.slot(), "reused after the batch");
        assert_eq!(
            table.get_mut(first),
            None,
            "an old id never names the new client"
        );
        assert_eq!(table.remove(first), None);
        assert_eq!(table.get_mut(third), Some(&mut "third"));
        assert_eq!(table.id_at(first.slot()), Some(third));
        assert_eq!(table.len(), 2);
    }

    #[test]
    fn a_closed_slot_has_no_id_until_reused() {
        let mut table = ClientTable::new(8);
        let id = table.insert(1).unwrap();
        assert_eq!(table.id_at(id.slot()), Some(id));
        table.remove(id);
        assert_eq!(table.id_at(id.slot()), None);
        assert_eq!(table.id_at(99), None);
    }

    #[test]
    fn capacity_is_a_hard_cap() {
        let mut table = ClientTable::new(2);
        let a = table.insert('a').unwrap();
        table.insert('b').unwrap();
        assert!(table.is_full());
        assert_eq!(table.insert('c'), None);
        table.remove(a);
        assert!(!table.is_full());
        assert!(
            table.insert('c').is_some(),
            "a slot may be added while one waits for the batch end"
        );
        assert_eq!(table.len(), 2);
        assert_eq!(table.insert('d'), None);
    }

    #[test]
    fn ids_where_lists_matching_open_clients() {
        let mut table = ClientTable::new(8);
        let ids: Vec<ClientId> = (0..5).map(|n| table.insert(n).unwrap()).collect();
        table.remove(ids[2]);
        assert_eq!(table.ids_where(|n| n % 2 == 0), vec![ids[0], ids[4]]);
        assert_eq!(table.len(), 4);
    }
}
