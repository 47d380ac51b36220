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
//!
//! Its capacity keeps file descriptors back for the scrapes
//! ([`client_cap`]), so idle connections can never leave a scrape without a
//! socket. A full table makes room for a new connection
//! ([`ClientTable::longest_idle`]), by these rules:
//! 1. Only an idle client may be closed for it: one with no request in
//!    progress (nothing being read, answered, held in a round or catch-up,
//!    or written, and not in its lingering close). A flood of new
//!    connections can close idle ones (its own, and kept-alive clients
//!    between two scrapes, which open a new connection for the next), never
//!    a client being answered.
//! 2. The one idle longest goes first: a scraper's new connection, idle
//!    until its request arrives, is the last a flood reaches, and a client
//!    idle for a minute between scrapes has been idle longer than one that
//!    was answered a moment ago.
//! 3. With no idle client, the new connection waits in the kernel's accept
//!    queue, as it always did: the cap, and the descriptors it keeps back,
//!    do not move (one closed for one accepted).
//!
//! Before these rules a full table made no room: clients that each made one
//! request and then sat idle filled the table and a Prometheus scrape waited in the accept queue
//! for the idle timeout (120 s): one misbehaving client took the pod's
//! metrics away.

/// Descriptors the process holds besides clients and scrapes: stdin,
/// stdout, stderr, the poll instance, the listener, the signal pipe's two
/// ends, the file or directory of `/proc` being read for the own metrics,
/// and slack for what a libc may open.
pub const RESERVED_FDS: u64 = 16;
/// Descriptors one container's scrapes may hold at once: its connection,
/// and a new one while a closed keep-alive connection is replaced.
pub const FDS_PER_CONTAINER: u64 = 2;

/// The most clients open at once such that every scrape still gets its
/// descriptors under `open_files_limit` (the soft `RLIMIT_NOFILE`; `None`
/// when unlimited or unknown): `max_clients` unless the limit is lower than
/// that plus the reserve. At least one, so `/healthz` can be answered.
pub fn client_cap(max_clients: usize, open_files_limit: Option<u64>, containers: usize) -> usize {
    let Some(limit) = open_files_limit else {
        return max_clients;
    };
    let reserved = RESERVED_FDS + FDS_PER_CONTAINER * containers as u64;
    let room = usize::try_from(limit.saturating_sub(reserved)).unwrap_or(usize::MAX);
    room.clamp(1, max_clients.max(1))
}

/// The soft limit of `Max open files` in the text of `/proc/self/limits`
/// (proc(5)); `None` for `unlimited` or text that does not say.
pub fn parse_open_files_limit(limits: &str) -> Option<u64> {
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))?;
    let soft = line["Max open files".len()..].split_whitespace().next()?;
    soft.parse().ok()
}

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

    pub fn capacity(&self) -> usize {
        self.capacity
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

    /// The client to close so that a new one can have its room, when the
    /// table is full: of the entries that `idle_since` calls idle (`Some`:
    /// no request in progress), the one idle longest, by the key it returns
    /// (when it became idle; ties are broken by the key's order too).
    /// `None` when no entry is idle: the new connection then waits in the
    /// kernel's accept queue, as it would with no room to make.
    pub fn longest_idle<K: Ord>(
        &self,
        mut idle_since: impl FnMut(&T) -> Option<K>,
    ) -> Option<ClientId> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(slot, place)| {
                let since = idle_since(place.entry.as_ref()?)?;
                Some((since, slot))
            })
            .min_by(|a, b| a.0.cmp(&b.0))
            .map(|(_, slot)| ClientId {
                slot: slot as u32,
                generation: self.slots[slot].generation,
            })
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
    use std::time::{Duration, Instant};

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
    fn the_cap_keeps_descriptors_back_for_the_scrapes() {
        // (limit, containers, cap) with 512 clients at most.
        let cases: &[(Option<u64>, usize, usize)] = &[
            (None, 3, 512),
            (Some(1_048_576), 3, 512),
            (Some(1024), 3, 512),
            (Some(1024), 300, 512 - 104),
            (Some(64), 1, 64 - 16 - 2),
            (Some(64), 3, 64 - 16 - 6),
            (Some(20), 3, 1),
            (Some(0), 0, 1),
        ];
        for &(limit, containers, cap) in cases {
            assert_eq!(
                client_cap(512, limit, containers),
                cap,
                "{limit:?} {containers}"
            );
        }
    }

    #[test]
    fn the_soft_open_files_limit_is_read_from_proc_limits() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max processes             63471                63471                processes \n\
                      Max open files            1024                 524288               files     \n\
                      Max locked memory         8388608              8388608              bytes     \n";
        assert_eq!(parse_open_files_limit(limits), Some(1024));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(parse_open_files_limit(unlimited), None);
        assert_eq!(parse_open_files_limit(""), None);
        assert_eq!(parse_open_files_limit("Max open files\n"), None);
    }

    #[test]
    fn ids_where_lists_matching_open_clients() {
        let mut table = ClientTable::new(8);
        let ids: Vec<ClientId> = (0..5).map(|n| table.insert(n).unwrap()).collect();
        table.remove(ids[2]);
        assert_eq!(table.ids_where(|n| n % 2 == 0), vec![ids[0], ids[4]]);
        assert_eq!(table.len(), 4);
    }

    /// A client as the loop sees it when making room: idle since a time
    /// (and an order among those of the same instant), or busy.
    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Seen {
        IdleSince(u64, u64),
        Busy,
    }

    fn idle_since(base: Instant) -> impl Fn(&Seen) -> Option<(Instant, u64)> {
        move |seen| match *seen {
            Seen::IdleSince(seconds, order) => Some((base + Duration::from_secs(seconds), order)),
            Seen::Busy => None,
        }
    }

    #[test]
    fn room_is_made_by_closing_the_longest_idle_client() {
        let base = Instant::now();
        let mut table = ClientTable::new(4);
        let a = table.insert(Seen::IdleSince(30, 0)).unwrap();
        let b = table.insert(Seen::IdleSince(10, 1)).unwrap();
        let c = table.insert(Seen::Busy).unwrap();
        let d = table.insert(Seen::IdleSince(10, 2)).unwrap();
        assert!(table.is_full());
        // Idle since 10 s: b and d; b became idle first.
        assert_eq!(table.longest_idle(idle_since(base)), Some(b));
        table.remove(b);
        assert_eq!(table.longest_idle(idle_since(base)), Some(d));
        table.remove(d);
        assert_eq!(table.longest_idle(idle_since(base)), Some(a));
        // A client with a request in progress is never chosen.
        table.remove(a);
        assert_eq!(table.longest_idle(idle_since(base)), None);
        assert_eq!(table.get_mut(c), Some(&mut Seen::Busy));
    }

    #[test]
    fn a_flood_of_new_connections_never_closes_a_busy_client() {
        // Every new connection is idle from its accept (it has sent
        // nothing yet); each takes the room of the longest-idle one, so
        // the flood closes its own older connections and the idle ones,
        // never the clients being answered.
        let base = Instant::now();
        let mut table = ClientTable::new(8);
        let busy: Vec<ClientId> = (0..3).map(|_| table.insert(Seen::Busy).unwrap()).collect();
        let mut order = 0;
        for second in 0..5 {
            table.insert(Seen::IdleSince(second, order)).unwrap();
            order += 1;
        }
        for second in 5..1000 {
            let oldest = table.longest_idle(idle_since(base)).unwrap();
            assert!(!busy.contains(&oldest));
            let Some(Seen::IdleSince(closed_at, _)) = table.remove(oldest) else {
                panic!("a busy client was chosen");
            };
            assert_eq!(closed_at, second - 5, "not the longest idle");
            table.insert(Seen::IdleSince(second, order)).unwrap();
            order += 1;
            table.end_of_batch();
        }
        for id in busy {
            assert_eq!(table.get_mut(id), Some(&mut Seen::Busy));
        }
        // Once all the flood's connections are busy too, nothing is closed.
        for id in table.ids_where(|seen| *seen != Seen::Busy) {
            *table.get_mut(id).unwrap() = Seen::Busy;
        }
        assert_eq!(table.longest_idle(idle_since(base)), None);
    }
}
