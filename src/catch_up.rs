//! Which containers a protobuf client must wait for: those whose body it
//! would be answered from is, or is about to be, text fetched with the text
//! `Accept` while they may speak protobuf. Their native histograms would
//! arrive converted up from text, as classic buckets (a native-only
//! histogram as a lone `le="+Inf"`), so the request is held while they are
//! scraped with the protobuf `Accept` (a *catch-up*: see the event loop's
//! `on_demand` room and `rounds`).
//!
//! Containers are asked for text while no client wants protobuf (a
//! text-only Prometheus costs nothing extra), so this happens to the first
//! protobuf request after a text-only spell: the first one after the start,
//! and the first after [`PROTOBUF_DEMAND_WINDOW`] without one. From then on
//! every scrape asks for protobuf, and nothing is held.
//!
//! What a container answered the last time it was asked for protobuf is
//! remembered: one that answered text (Python's `prometheus_client`, most
//! exporters) is never waited for, so it is not scraped out of cadence for
//! each protobuf client. Every scrape that asks for protobuf refreshes it,
//! so a container upgraded to speak protobuf is seen at its next one.
//!
//! No socket, no clock: told when a scrape starts and what it left.
//!
//! [`PROTOBUF_DEMAND_WINDOW`]: crate::exposition::negotiate::PROTOBUF_DEMAND_WINDOW

use crate::exposition::Format;

/// What a scrape asked the container for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Asked {
    /// `negotiate::ACCEPT_TEXT`.
    Text,
    /// `negotiate::ACCEPT_PROTOBUF` (text and OpenMetrics as fallbacks).
    Protobuf,
}

/// One container's side of catch-ups.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CatchUp {
    /// What its body was the last time a scrape asked it for protobuf and
    /// left one: `Some(false)` when it answered text. `None` until then.
    speaks_protobuf: Option<bool>,
    /// What the scrape in flight asked for.
    in_flight: Option<Asked>,
}

impl CatchUp {
    /// A scrape of the container starts.
    pub fn started(&mut self, asked: Asked) {
        self.in_flight = Some(asked);
    }

    /// The scrape in flight ended; `held` is the format of the body the
    /// container holds now (`None`: it failed, or its body was refused).
    pub fn ended(&mut self, held: Option<Format>) {
        if let (Some(Asked::Protobuf), Some(format)) = (self.in_flight.take(), held) {
            self.speaks_protobuf = Some(format == Format::Protobuf);
        }
    }

    /// Whether a protobuf client should wait for a scrape of this container
    /// that asks for protobuf, `held` being the format of the body it holds
    /// now. Then, if no scrape of it is in flight, one should start; if one
    /// is, its end tells (`ended`, then ask again).
    pub fn lacks_protobuf(&self, held: Option<Format>) -> bool {
        self.speaks_protobuf != Some(false)
            && (held.is_some_and(|format| format != Format::Protobuf)
                || self.in_flight == Some(Asked::Text))
    }

    /// What it answered when last asked for protobuf (`None`: never asked,
    /// or no body came back).
    pub fn speaks_protobuf(&self) -> Option<bool> {
        self.speaks_protobuf
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Format::{Protobuf, Text};

    /// A client_golang container (answers as asked) from the sidecar's
    /// start: the first scrape asks for text, as nobody wants protobuf yet.
    #[test]
    fn a_container_that_speaks_protobuf_is_waited_for_until_a_scrape_asked_for_it() {
        let mut container = CatchUp::default();
        // Nothing held, nothing in flight: nothing to wait for (a text
        // client would get nothing of it either).
        assert!(!container.lacks_protobuf(None));
        container.started(Asked::Text);
        // Its first body will be text: wait, then ask again.
        assert!(container.lacks_protobuf(None));
        container.ended(Some(Text));
        assert!(container.lacks_protobuf(Some(Text)));
        assert_eq!(container.speaks_protobuf(), None);
        container.started(Asked::Protobuf);
        // Still text held: wait for the scrape in flight.
        assert!(container.lacks_protobuf(Some(Text)));
        container.ended(Some(Protobuf));
        assert!(!container.lacks_protobuf(Some(Protobuf)));
        assert_eq!(container.speaks_protobuf(), Some(true));
        // While a protobuf scrape is in flight over a protobuf body.
        container.started(Asked::Protobuf);
        assert!(!container.lacks_protobuf(Some(Protobuf)));
        container.ended(Some(Protobuf));
    }

    #[test]
    fn after_a_text_only_spell_it_is_waited_for_again() {
        let mut container = CatchUp::default();
        container.started(Asked::Protobuf);
        container.ended(Some(Protobuf));
        // Nobody wanted protobuf for a while: its scrapes ask for text.
        container.started(Asked::Text);
        // A text scrape in flight would replace the protobuf body.
        assert!(container.lacks_protobuf(Some(Protobuf)));
        container.ended(Some(Text));
        assert!(container.lacks_protobuf(Some(Text)));
        assert_eq!(container.speaks_protobuf(), Some(true));
    }

    /// Python's prometheus_client: text whatever it is asked.
    #[test]
    fn a_container_that_answered_text_to_protobuf_is_not_waited_for() {
        let mut container = CatchUp::default();
        container.started(Asked::Text);
        container.ended(Some(Text));
        assert!(container.lacks_protobuf(Some(Text)));
        container.started(Asked::Protobuf);
        container.ended(Some(Text));
        assert_eq!(container.speaks_protobuf(), Some(false));
        assert!(!container.lacks_protobuf(Some(Text)));
        // Not even while a text scrape is in flight after a text spell.
        container.started(Asked::Text);
        assert!(!container.lacks_protobuf(Some(Text)));
        container.ended(Some(Text));
        assert!(!container.lacks_protobuf(Some(Text)));
        // Upgraded: the next scrape that asks for protobuf sees it.
        container.started(Asked::Protobuf);
        container.ended(Some(Protobuf));
        assert_eq!(container.speaks_protobuf(), Some(true));
    }

    #[test]
    fn a_failed_scrape_teaches_nothing_and_leaves_nothing_to_wait_for() {
        let mut container = CatchUp::default();
        container.started(Asked::Protobuf);
        container.ended(None);
        assert_eq!(container.speaks_protobuf(), None);
        assert!(!container.lacks_protobuf(None));
        // A text body from before a failed protobuf scrape cannot be held
        // (a failure clears it), but the rule does not depend on it.
        container.started(Asked::Protobuf);
        container.ended(Some(Text));
        container.started(Asked::Protobuf);
        container.ended(None);
        assert_eq!(container.speaks_protobuf(), Some(false));
    }

    /// A text body from a text scrape never teaches that a container does
    /// not speak protobuf: it was not asked.
    #[test]
    fn only_scrapes_that_asked_for_protobuf_teach() {
        let mut container = CatchUp::default();
        for _ in 0..3 {
            container.started(Asked::Text);
            container.ended(Some(Text));
        }
        assert_eq!(container.speaks_protobuf(), None);
        assert!(container.lacks_protobuf(Some(Text)));
        // Ending with no scrape in flight (a late end) changes nothing.
        container.ended(Some(Protobuf));
        assert_eq!(container.speaks_protobuf(), None);
    }
}
