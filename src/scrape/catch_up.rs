//! Which containers a client must wait for: those whose body it would be
//! answered from was, or is about to be, fetched with an `Accept` that does
//! not cover what it needs ([`Richness`]: protobuf, OpenMetrics with UTF-8
//! names). A protobuf client would get native histograms converted up from
//! text, as classic buckets (a native-only histogram as a lone
//! `le="+Inf"`); an OpenMetrics or UTF-8 client would get no exemplars and
//! names escaped with underscores. So the request is held while they are
//! scraped with the richer `Accept` (a *catch-up*: see the event loop's
//! `on_demand` room and `rounds`).
//!
//! Containers are asked for text while nobody wants more (a text-only
//! Prometheus costs nothing extra), so this happens to the first request
//! of a new kind after a spell without one: the first one after the start,
//! and the first after [`DEMAND_WINDOW`] without one. From then on every
//! scrape asks for it, and nothing is held.
//!
//! What a container answered the last time it was asked for protobuf, and
//! the last time it was asked for OpenMetrics, is remembered: one that
//! answered text to protobuf (Python's `prometheus_client`, most exporters)
//! is never waited for by a protobuf client, one that answered text to
//! OpenMetrics (an exporter that only speaks text) never by an OpenMetrics
//! or UTF-8 client, so it is not scraped out of cadence for a client it
//! cannot give more. Every scrape that asks for it refreshes it, so a
//! container upgraded to speak it is seen at its next one. A container
//! that answers text 1.0.0 (UTF-8 names, as its `Content-Type` says) but
//! not OpenMetrics counts as one that speaks it: a client of UTF-8 names
//! would get its names escaped from a body asked without them.
//!
//! No socket, no clock: told when a scrape starts and what it left.
//!
//! [`DEMAND_WINDOW`]: crate::exposition::negotiate::DEMAND_WINDOW

use crate::exposition::negotiate::Richness;
use crate::exposition::Format;

/// One container's side of catch-ups.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CatchUp {
    /// What its body was the last time a scrape asked it for protobuf and
    /// left one: `Some(false)` when it answered text. `None` until then.
    speaks_protobuf: Option<bool>,
    /// What its body was the last time a scrape asked it for OpenMetrics
    /// (and not for protobuf, or for both and it answered one of them) and
    /// left one: `Some(false)` when it answered text. `None` until then.
    speaks_openmetrics: Option<bool>,
    /// What the scrape that left the body it holds asked for.
    held_asked: Richness,
    /// What the scrape in flight asked for.
    in_flight: Option<Richness>,
}

impl CatchUp {
    /// A scrape of the container starts.
    pub fn started(&mut self, asked: Richness) {
        self.in_flight = Some(asked);
    }

    /// The scrape in flight ended; `held` is the format of the body the
    /// container holds now (`None`: it failed, or its body was refused),
    /// `utf8_names` whether that body is text that says it may carry UTF-8
    /// names (text 1.0.0: to a client of UTF-8 names it is as good as
    /// OpenMetrics, which is asked for with them).
    pub fn ended(&mut self, held: Option<Format>, utf8_names: bool) {
        if let (Some(asked), Some(format)) = (self.in_flight.take(), held) {
            self.held_asked = asked;
            if asked.protobuf {
                self.speaks_protobuf = Some(format == Format::Protobuf);
            }
            // A protobuf answer to a scrape that asked for both says
            // nothing of OpenMetrics.
            if asked.openmetrics && !(asked.protobuf && format == Format::Protobuf) {
                self.speaks_openmetrics = Some(format != Format::Text || utf8_names);
            }
        }
    }

    /// Whether a client that needs `need` should wait for a scrape of this
    /// container that asks for it, `held` being the format of the body it
    /// holds now. Then, if no scrape of it is in flight, one should start;
    /// if one is, its end tells (`ended`, then ask again).
    ///
    /// - Protobuf: unless the container answered text when last asked for
    ///   protobuf, while the body it holds is text or the scrape in flight
    ///   does not ask for protobuf.
    /// - OpenMetrics: unless the container answered text when last asked
    ///   for OpenMetrics, while the body it holds was asked without it, or
    ///   the scrape in flight asks without it.
    pub fn lacks(&self, need: Richness, held: Option<Format>) -> bool {
        let in_flight_lacks =
            |part: fn(Richness) -> bool| self.in_flight.is_some_and(|asked| !part(asked));
        let protobuf = need.protobuf
            && self.speaks_protobuf != Some(false)
            && (held.is_some_and(|format| format != Format::Protobuf)
                || in_flight_lacks(|asked| asked.protobuf));
        let openmetrics = need.openmetrics
            && self.speaks_openmetrics != Some(false)
            && ((held.is_some() && !self.held_asked.openmetrics)
                || in_flight_lacks(|asked| asked.openmetrics));
        protobuf || openmetrics
    }

    /// What it answered when last asked for protobuf (`None`: never asked,
    /// or no body came back).
    pub fn speaks_protobuf(&self) -> Option<bool> {
        self.speaks_protobuf
    }

    /// What it answered when last asked for OpenMetrics (see
    /// [`CatchUp::ended`]; `None`: never asked, or no answer told).
    pub fn speaks_openmetrics(&self) -> Option<bool> {
        self.speaks_openmetrics
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Format::{Protobuf, Text};

    mod asked {
        use super::Richness;
        pub const TEXT: Richness = Richness::TEXT;
        pub const PROTOBUF: Richness = Richness {
            protobuf: true,
            openmetrics: false,
        };
        pub const OPENMETRICS: Richness = Richness {
            protobuf: false,
            openmetrics: true,
        };
        pub const BOTH: Richness = Richness {
            protobuf: true,
            openmetrics: true,
        };
    }

    /// A client_golang container (answers as asked) from the sidecar's
    /// start: the first scrape asks for text, as nobody wants protobuf yet.
    #[test]
    fn a_container_that_speaks_protobuf_is_waited_for_until_a_scrape_asked_for_it() {
        let mut container = CatchUp::default();
        // Nothing held, nothing in flight: nothing to wait for (a text
        // client would get nothing of it either).
        assert!(!container.lacks(asked::PROTOBUF, None));
        container.started(asked::TEXT);
        // Its first body will be text: wait, then ask again.
        assert!(container.lacks(asked::PROTOBUF, None));
        container.ended(Some(Text), false);
        assert!(container.lacks(asked::PROTOBUF, Some(Text)));
        assert_eq!(container.speaks_protobuf(), None);
        container.started(asked::PROTOBUF);
        // Still text held: wait for the scrape in flight.
        assert!(container.lacks(asked::PROTOBUF, Some(Text)));
        container.ended(Some(Protobuf), false);
        assert!(!container.lacks(asked::PROTOBUF, Some(Protobuf)));
        assert_eq!(container.speaks_protobuf(), Some(true));
        // While a protobuf scrape is in flight over a protobuf body.
        container.started(asked::PROTOBUF);
        assert!(!container.lacks(asked::PROTOBUF, Some(Protobuf)));
        container.ended(Some(Protobuf), false);
    }

    #[test]
    fn after_a_text_only_spell_it_is_waited_for_again() {
        let mut container = CatchUp::default();
        container.started(asked::PROTOBUF);
        container.ended(Some(Protobuf), false);
        // Nobody wanted protobuf for a while: its scrapes ask for text.
        container.started(asked::TEXT);
        // A text scrape in flight would replace the protobuf body.
        assert!(container.lacks(asked::PROTOBUF, Some(Protobuf)));
        container.ended(Some(Text), false);
        assert!(container.lacks(asked::PROTOBUF, Some(Text)));
        assert_eq!(container.speaks_protobuf(), Some(true));
    }

    /// Python's prometheus_client: text whatever it is asked.
    #[test]
    fn a_container_that_answered_text_to_protobuf_is_not_waited_for() {
        let mut container = CatchUp::default();
        container.started(asked::TEXT);
        container.ended(Some(Text), false);
        assert!(container.lacks(asked::PROTOBUF, Some(Text)));
        container.started(asked::PROTOBUF);
        container.ended(Some(Text), false);
        assert_eq!(container.speaks_protobuf(), Some(false));
        assert!(!container.lacks(asked::PROTOBUF, Some(Text)));
        // Not even while a text scrape is in flight after a text spell.
        container.started(asked::TEXT);
        assert!(!container.lacks(asked::PROTOBUF, Some(Text)));
        container.ended(Some(Text), false);
        assert!(!container.lacks(asked::PROTOBUF, Some(Text)));
        // Upgraded: the next scrape that asks for protobuf sees it.
        container.started(asked::PROTOBUF);
        container.ended(Some(Protobuf), false);
        assert_eq!(container.speaks_protobuf(), Some(true));
    }

    #[test]
    fn a_failed_scrape_teaches_nothing_and_leaves_nothing_to_wait_for() {
        let mut container = CatchUp::default();
        container.started(asked::PROTOBUF);
        container.ended(None, false);
        assert_eq!(container.speaks_protobuf(), None);
        assert!(!container.lacks(asked::PROTOBUF, None));
        // A text body from before a failed protobuf scrape cannot be held
        // (a failure clears it), but the rule does not depend on it.
        container.started(asked::PROTOBUF);
        container.ended(Some(Text), false);
        container.started(asked::PROTOBUF);
        container.ended(None, false);
        assert_eq!(container.speaks_protobuf(), Some(false));
    }

    /// A Python container (text, or OpenMetrics when asked): an
    /// OpenMetrics client waits for a scrape that asks for OpenMetrics,
    /// once; a protobuf client does not wait for it once it answered
    /// OpenMetrics to protobuf, whatever else it is asked.
    #[test]
    fn an_openmetrics_client_waits_once_for_an_openmetrics_scrape() {
        use Format::OpenMetrics;
        // (step, what a client needs, held, expected)
        let mut container = CatchUp::default();
        container.started(asked::TEXT);
        container.ended(Some(Text), false);
        type Step<'a> = &'a dyn Fn(&mut CatchUp);
        let table: &[(Step, Richness, Option<Format>, bool)] = &[
            (&|_| {}, asked::OPENMETRICS, Some(Text), true),
            (&|_| {}, asked::TEXT, Some(Text), false),
            (
                &|c| c.started(asked::OPENMETRICS),
                asked::OPENMETRICS,
                Some(Text),
                true,
            ),
            (
                &|c| c.ended(Some(OpenMetrics), false),
                asked::OPENMETRICS,
                Some(OpenMetrics),
                false,
            ),
            (&|_| {}, asked::BOTH, Some(OpenMetrics), true),
            (
                &|c| c.started(asked::BOTH),
                asked::BOTH,
                Some(OpenMetrics),
                true,
            ),
            (
                &|c| c.ended(Some(OpenMetrics), false),
                asked::BOTH,
                Some(OpenMetrics),
                false,
            ),
            (&|_| {}, asked::PROTOBUF, Some(OpenMetrics), false),
            // The OpenMetrics client went away: a scrape in flight that
            // does not ask for it would bring a body without OpenMetrics.
            (
                &|c| c.started(asked::PROTOBUF),
                asked::OPENMETRICS,
                Some(OpenMetrics),
                true,
            ),
            (&|_| {}, asked::PROTOBUF, Some(OpenMetrics), false),
            (
                &|c| c.ended(Some(Text), false),
                asked::OPENMETRICS,
                Some(Text),
                true,
            ),
            // A failed scrape leaves no body: nothing to wait for.
            (
                &|c| c.started(asked::OPENMETRICS),
                asked::OPENMETRICS,
                None,
                false,
            ),
            (&|c| c.ended(None, false), asked::OPENMETRICS, None, false),
        ];
        for (row, (step, need, held, lacks)) in table.iter().enumerate() {
            step(&mut container);
            assert_eq!(container.lacks(*need, *held), *lacks, "row {row}");
        }
        assert_eq!(container.speaks_openmetrics(), Some(true));
        assert_eq!(container.speaks_protobuf(), Some(false));
    }

    /// An exporter that speaks only text (node_exporter built without
    /// OpenMetrics, a shell script): once it answered text to OpenMetrics,
    /// a new OpenMetrics or UTF-8 client after a spell of text-only
    /// clients is answered at once, as it cannot give more; an upgrade is
    /// seen at the next scrape that asks for OpenMetrics. (Before the
    /// sidecar remembered it, each such client waited for a scrape out of
    /// cadence that brought the same text.)
    #[test]
    fn a_container_that_answered_text_to_openmetrics_is_not_waited_for() {
        use Format::OpenMetrics;
        let mut container = CatchUp::default();
        container.started(asked::TEXT);
        container.ended(Some(Text), false);
        assert!(container.lacks(asked::OPENMETRICS, Some(Text)));
        container.started(asked::OPENMETRICS);
        container.ended(Some(Text), false);
        assert_eq!(container.speaks_openmetrics(), Some(false));
        assert!(!container.lacks(asked::OPENMETRICS, Some(Text)));
        // The OpenMetrics clients went away; its scrapes ask for text.
        container.started(asked::TEXT);
        assert!(!container.lacks(asked::OPENMETRICS, Some(Text)));
        container.ended(Some(Text), false);
        assert!(!container.lacks(asked::OPENMETRICS, Some(Text)));
        // Text to a scrape that asked for both: neither is spoken.
        container.started(asked::BOTH);
        container.ended(Some(Text), false);
        assert_eq!(container.speaks_protobuf(), Some(false));
        assert!(!container.lacks(asked::BOTH, Some(Text)));
        // Upgraded: the next scrape that asks for OpenMetrics sees it.
        container.started(asked::OPENMETRICS);
        container.ended(Some(OpenMetrics), false);
        assert_eq!(container.speaks_openmetrics(), Some(true));
        container.started(asked::TEXT);
        container.ended(Some(Text), false);
        assert!(container.lacks(asked::OPENMETRICS, Some(Text)));
    }

    /// A protobuf answer to a scrape that asked for both tells nothing of
    /// OpenMetrics; an OpenMetrics answer to it, that protobuf is not
    /// spoken.
    #[test]
    fn a_protobuf_answer_to_both_teaches_nothing_of_openmetrics() {
        use Format::OpenMetrics;
        let mut container = CatchUp::default();
        container.started(asked::BOTH);
        container.ended(Some(Protobuf), false);
        assert_eq!(container.speaks_openmetrics(), None);
        assert_eq!(container.speaks_protobuf(), Some(true));
        container.started(asked::BOTH);
        container.ended(Some(OpenMetrics), false);
        assert_eq!(container.speaks_openmetrics(), Some(true));
        assert_eq!(container.speaks_protobuf(), Some(false));
    }

    /// client_golang, asked for both: its protobuf body covers both needs
    /// (its names are legacy names, as a direct Prometheus 3 gets them).
    #[test]
    fn a_scrape_asked_for_both_covers_both() {
        let mut container = CatchUp::default();
        container.started(asked::BOTH);
        container.ended(Some(Protobuf), false);
        for need in [
            asked::TEXT,
            asked::PROTOBUF,
            asked::OPENMETRICS,
            asked::BOTH,
        ] {
            assert!(!container.lacks(need, Some(Protobuf)), "{need:?}");
        }
        container.started(asked::OPENMETRICS);
        assert!(container.lacks(asked::PROTOBUF, Some(Protobuf)));
        assert!(!container.lacks(asked::OPENMETRICS, Some(Protobuf)));
    }

    /// A text body from a text scrape never teaches that a container does
    /// not speak protobuf: it was not asked.
    #[test]
    fn only_scrapes_that_asked_for_protobuf_teach() {
        let mut container = CatchUp::default();
        for _ in 0..3 {
            container.started(asked::TEXT);
            container.ended(Some(Text), false);
        }
        assert_eq!(container.speaks_protobuf(), None);
        assert!(container.lacks(asked::PROTOBUF, Some(Text)));
        // Ending with no scrape in flight (a late end) changes nothing.
        container.ended(Some(Protobuf), false);
        assert_eq!(container.speaks_protobuf(), None);
    }

    /// A container answering text 1.0.0 with UTF-8 names to an OpenMetrics
    /// request (client_golang without OpenMetrics) is waited for by a
    /// client of UTF-8 names after a spell of text, as one answering
    /// OpenMetrics is; one answering text 0.0.4 is not.
    #[test]
    fn a_container_that_answers_utf8_names_in_text_is_waited_for() {
        for (utf8_names, waited) in [(true, true), (false, false)] {
            let mut container = CatchUp::default();
            container.started(asked::OPENMETRICS);
            container.ended(Some(Text), utf8_names);
            assert_eq!(container.speaks_openmetrics(), Some(utf8_names));
            // A spell without such clients: asked for text again.
            container.started(asked::TEXT);
            container.ended(Some(Text), false);
            assert_eq!(container.lacks(asked::OPENMETRICS, Some(Text)), waited);
        }
    }
}
