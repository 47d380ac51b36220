//! Builds the output served for the endpoint: each up container's latest
//! body indexed, the sidecar's own metrics rendered, everything merged once,
//! in pieces, into an [`Encoded`] edition (the text kept when small, gzip
//! compressed as it is merged when a gzip client asked or the text is
//! large), published ([`Published`]) until some data changes.
//!
//! Own metrics include `multiplexer_family_conflicts_total`, which counts the
//! conflicts of this very build, and only the merge finds them. They are a
//! function of the families' names and types, which change far more rarely
//! than the values: the build counts the previous build's conflicts, merges,
//! and in the rare build where they differ counts again and merges once more
//! (the own metrics' families are the same every time, so the second merge
//! finds the same conflicts as the first).
//!
//! Each (container, family) that lost a conflict is logged once.
//!
//! No socket, no clock: the loop hands over `now` and the process' numbers
//! (read from `/proc` only when a build is due).

use std::collections::HashSet;
use std::rc::Rc;
use std::time::Instant;

use log::{error, warn};

use crate::exposition::negotiate::OutputKind;
use crate::exposition::{Merger, Snapshot, Source};
use crate::scrape::container::ContainerState;
use crate::scrape::container::ContainerStats;
use crate::serve::downstream::Coding;
use crate::serve::encoded::{Body, Encoded, EncodedBuilder, PIECE_BYTES};
use crate::serve::published::Published;
use crate::serve::self_metrics::{self, ProcessStats};

/// Bytes of earlier outputs that slow clients may keep alive, of both
/// formats together (texts of at most 512 KiB, or gzip members, a seventh
/// to a fourteenth of their text); the newest is kept whatever its size.
pub const MAX_RETIRED_BODY_BYTES: usize = 1 << 20;
/// Type conflicts are logged once per container and family; past this many
/// remembered, new ones are counted but not logged.
const MAX_LOGGED_CONFLICTS: usize = 1024;

pub struct Output {
    label: String,
    merger: Merger,
    /// The piece the merge writes into before the builder takes it.
    piece: Vec<u8>,
    own_metrics: Snapshot,
    own_metrics_text: Vec<u8>,
    /// An edition per output format (text 0.0.4, protobuf), each built
    /// only when a client asks for that format.
    published: Published,
    /// Conflicts each container lost in the last build: what the next build
    /// counts before it merges.
    last_conflicts: Vec<u64>,
    /// Scratch: the same for the build under way.
    conflicts: Vec<u64>,
    logged_conflicts: HashSet<(usize, Vec<u8>)>,
}

impl Output {
    pub fn new(label: &str) -> Output {
        Output {
            label: label.to_string(),
            merger: Merger::new(label),
            piece: Vec::new(),
            own_metrics: Snapshot::new(),
            own_metrics_text: Vec::new(),
            published: Published::new(MAX_RETIRED_BODY_BYTES),
            last_conflicts: Vec::new(),
            conflicts: Vec::new(),
            logged_conflicts: HashSet::new(),
        }
    }

    /// The body to serve for `kind`, gzip if `gzip` (its member built now
    /// if this is the first gzip request of the edition), if no data
    /// changed since that kind's edition was built.
    pub fn current(&mut self, kind: impl Into<OutputKind>, gzip: bool) -> Option<(Body, Coding)> {
        let edition = self.published.current_mut(kind)?;
        if gzip {
            edition.ensure_gzip(Vec::new());
        }
        let (body, is_gzip) = edition.body(gzip);
        Some((
            body,
            if is_gzip {
                Coding::Gzip
            } else {
                Coding::Identity
            },
        ))
    }

    /// Bytes of the current editions (text and member, every format).
    pub fn held_bytes(&self) -> usize {
        self.published.held_bytes()
    }

    /// Some data changed: the next request builds a new body.
    pub fn invalidate(&mut self) {
        self.published.invalidate();
    }

    /// Builds and publishes a new edition of `kind` from `containers` (in
    /// output order) and the sidecar's own metrics, written in pieces and
    /// compressed as it is merged if `gzip`. Returns the retired buffers evicted past the budget: the
    /// loop closes the clients that hold them.
    pub fn build(
        &mut self,
        now: Instant,
        kind: impl Into<OutputKind>,
        containers: &mut [ContainerState],
        process: &ProcessStats,
        gzip: bool,
    ) -> Vec<Rc<Vec<u8>>> {
        for container in containers.iter_mut() {
            container.prepare_for_merge(now);
        }
        self.last_conflicts.resize(containers.len(), 0);
        for (container, &guess) in containers.iter_mut().zip(&self.last_conflicts) {
            container.count_conflicts(0, guess);
        }
        let kind = kind.into();
        let (mut text_buffer, mut gzip_buffer, evicted) = self.published.start_build(kind);
        let mut edition = Encoded::default();
        for attempt in 0..2 {
            self.render_own_metrics(containers, process);
            let mut sources: Vec<Source<'_>> = containers
                .iter()
                .map(|container| Source {
                    container: Some(container.name()),
                    snapshot: container.snapshot(),
                })
                .collect();
            // Every container is a source, so a source's position is its
            // container's; the last source, own metrics, has no container.
            sources.push(Source {
                container: None,
                snapshot: &self.own_metrics,
            });
            let mut builder = EncodedBuilder::new(
                std::mem::take(&mut text_buffer),
                std::mem::take(&mut gzip_buffer),
                gzip,
            );
            self.merger.merge_in_pieces(
                &sources,
                kind,
                &mut self.piece,
                PIECE_BYTES,
                &mut |piece| builder.write(piece),
            );
            edition = builder.finish();
            drop(sources);

            self.conflicts.clear();
            self.conflicts.resize(containers.len(), 0);
            for (index, _) in self.merger.conflicts() {
                if let Some(count) = self.conflicts.get_mut(index) {
                    *count += 1;
                }
            }
            if self.conflicts == self.last_conflicts || attempt == 1 {
                break;
            }
            for (container, (&guess, &lost)) in containers
                .iter_mut()
                .zip(self.last_conflicts.iter().zip(&self.conflicts))
            {
                container.count_conflicts(guess, lost);
            }
            self.last_conflicts.clone_from(&self.conflicts);
        }
        std::mem::swap(&mut self.last_conflicts, &mut self.conflicts);
        self.log_conflicts(containers);
        // The piece is a fixed 64 KiB; nothing else of the merge's output
        // outlives the build but the edition.
        self.published.publish(kind, edition);
        evicted
    }

    fn render_own_metrics(&mut self, containers: &[ContainerState], process: &ProcessStats) {
        let stats: Vec<(&str, &ContainerStats)> = containers
            .iter()
            .map(|container| (container.name(), container.stats()))
            .collect();
        self.own_metrics_text.clear();
        self_metrics::render(&self.label, &stats, process, &mut self.own_metrics_text);
        self.own_metrics.replace(&mut self.own_metrics_text);
        if let Err(parse_error) = self.own_metrics.index() {
            // A bug of ours, not input: serve the containers without it.
            error!("own metrics do not parse: {parse_error}");
        }
    }

    fn log_conflicts(&mut self, containers: &[ContainerState]) {
        for (index, family) in self.merger.conflicts() {
            let Some(container) = containers.get(index) else {
                continue;
            };
            if self.logged_conflicts.len() < MAX_LOGGED_CONFLICTS
                && self.logged_conflicts.insert((index, family.to_vec()))
            {
                warn!(
                    "container {}: metric family {} has a different type than in another container, \
                     or a name reserved for the sidecar's own metrics; its samples were resolved \
                     by the conflict rule (see README)",
                    container.name(),
                    String::from_utf8_lossy(family)
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exposition::negotiate::OutputFormat;
    use crate::scrape::{Finished, Outcome};
    use std::time::Duration;

    fn scraped(state: &mut ContainerState, now: Instant, body: &str) {
        let mut body = body.as_bytes().to_vec();
        state.record(
            now,
            Finished {
                outcome: Outcome::Success,
                duration: Duration::from_millis(1),
                detail: "",
                body: &mut body,
                content_type: None,
                answered_on: None,
            },
        );
    }

    /// The value of `multiplexer_family_conflicts_total` for `container`.
    fn conflicts_total(body: &[u8], container: &str) -> String {
        let text = String::from_utf8_lossy(body);
        let prefix = format!("multiplexer_family_conflicts_total{{container=\"{container}\"}} ");
        text.lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no {prefix} in {text}"))
            .to_string()
    }

    /// Each row: the bodies of a and b for one build, and the conflict
    /// totals the build itself shows (a never loses: it comes first).
    #[test]
    fn a_build_shows_its_own_conflicts() {
        let gauge = "# TYPE x gauge\nx 1\n";
        let counter = "# TYPE x counter\nx 1\n";
        let histogram = "# TYPE x histogram\nx_bucket{le=\"+Inf\"} 1\nx_sum 1\nx_count 1\n";
        let cases: &[(&str, &str, &str)] = &[
            (gauge, gauge, "0"),
            (gauge, counter, "1"),     // written untyped, b counted
            (gauge, counter, "2"),     // the same conflict, the next build
            (gauge, gauge, "2"),       // gone
            (histogram, counter, "3"), // b's samples dropped
            (gauge, "y 1\n", "3"),
        ];
        let t0 = Instant::now();
        let mut containers = vec![
            ContainerState::new("a", 4 << 20),
            ContainerState::new("b", 4 << 20),
        ];
        let mut output = Output::new("container");
        for (n, (a, b, b_total)) in cases.iter().enumerate() {
            let now = t0 + Duration::from_secs(n as u64);
            scraped(&mut containers[0], now, a);
            scraped(&mut containers[1], now, b);
            output.invalidate();
            output.build(
                now,
                OutputFormat::Text,
                &mut containers,
                &ProcessStats::default(),
                false,
            );
            let body = text_of(&mut output, OutputFormat::Text);
            assert_eq!(conflicts_total(&body, "a"), "0", "build {n}");
            assert_eq!(conflicts_total(&body, "b"), *b_total, "build {n}");
            assert_eq!(
                containers[1].stats().family_conflicts_total.to_string(),
                *b_total
            );
        }
    }

    /// The identity text of the current edition.
    fn text_of(output: &mut Output, format: OutputFormat) -> Vec<u8> {
        match output.current(format, false) {
            Some((Body::Shared(bytes), Coding::Identity)) => bytes.to_vec(),
            _ => panic!("no current text"),
        }
    }

    #[test]
    fn the_body_is_shared_until_invalidated() {
        let t0 = Instant::now();
        let mut containers = vec![ContainerState::new("a", 4 << 20)];
        scraped(&mut containers[0], t0, "x 1\n");
        let mut output = Output::new("container");
        assert!(output.current(OutputFormat::Text, false).is_none());
        output.build(
            t0,
            OutputFormat::Text,
            &mut containers,
            &ProcessStats::default(),
            false,
        );
        let body = text_of(&mut output, OutputFormat::Text);
        assert!(String::from_utf8_lossy(&body).contains("x{container=\"a\"} 1\n"));
        let shared = |output: &mut Output| match output.current(OutputFormat::Text, false) {
            Some((Body::Shared(bytes), _)) => bytes,
            _ => panic!("not shared"),
        };
        assert!(Rc::ptr_eq(&shared(&mut output), &shared(&mut output)));
        let Some((Body::Shared(member), Coding::Gzip)) = output.current(OutputFormat::Text, true)
        else {
            panic!("no gzip");
        };
        let Some((Body::Shared(again), Coding::Gzip)) = output.current(OutputFormat::Text, true)
        else {
            panic!("no gzip");
        };
        assert!(Rc::ptr_eq(&member, &again), "compressed once");
        // The other format has no edition until a client of it asks.
        assert!(output.current(OutputFormat::Protobuf, false).is_none());
        output.build(
            t0,
            OutputFormat::Protobuf,
            &mut containers,
            &ProcessStats::default(),
            true,
        );
        let Some((Body::Shared(protobuf), Coding::Gzip)) =
            output.current(OutputFormat::Protobuf, true)
        else {
            panic!("no protobuf gzip");
        };
        assert!(!Rc::ptr_eq(&protobuf, &member));
        assert_ne!(
            text_of(&mut output, OutputFormat::Protobuf),
            text_of(&mut output, OutputFormat::Text)
        );
        assert!(Rc::ptr_eq(&member, &shared_gzip(&mut output)), "text kept");
        output.invalidate();
        for format in [OutputFormat::Text, OutputFormat::Protobuf] {
            assert!(output.current(format, false).is_none());
            assert!(output.current(format, true).is_none());
        }
    }

    fn shared_gzip(output: &mut Output) -> Rc<Vec<u8>> {
        match output.current(OutputFormat::Text, true) {
            Some((Body::Shared(bytes), Coding::Gzip)) => bytes,
            _ => panic!("no gzip"),
        }
    }
}
