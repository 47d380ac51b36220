//! The metrics body, the loop's side of it: answered from the published
//! edition when nothing changed, otherwise built within the memory budget
//! (each container's index counted against what the bodies held leave, one
//! that would not fit refused for that build), indexes freed after the
//! build, and the clients still holding an evicted edition closed.

use std::time::Instant;

use log::debug;

use crate::exposition::negotiate::OutputKind;
use crate::scrape::FailureReason;
use crate::serve::downstream::Coding;
use crate::serve::encoded::Body;
use crate::serve::self_metrics::ProcessStats;

use super::Sidecar;

/// The bodies held and the indexes of one build (with the merge's own
/// records, about [`MERGE_BYTES_PER_FAMILY`] a family) may hold this many
/// times `--max_body_bytes` together (22 MiB): indexes get what the bodies
/// leave. A body whose index would not fit is refused for that build
/// (`over_budget`). Indexes are freed after the build.
const BODIES_AND_INDEXES_PER_MAX_BODY: f64 = 5.5;
/// What the merge keeps per family of each source: its 12-byte
/// contribution record and 4-byte destination, and, for a name no other
/// source has, its table slot (16 to 32 bytes) and 16-byte merged record
/// (and, for OpenMetrics, one byte of what the family holds). Measured
/// (bench `exposition_throughput 1 families`): 48 bytes a family in text,
/// 49 in OpenMetrics, for one container of 65,536 one-sample families;
/// 26.7 and 27.0 for three containers sharing those names; counted as if
/// no name were shared.
const MERGE_BYTES_PER_FAMILY: usize = 49;

impl Sidecar {
    /// The body served for the endpoint as `kind`, gzip if `gzip`: built
    /// when some data changed since that kind's last build, otherwise the
    /// same shared bytes.
    pub(super) fn metrics_body(
        &mut self,
        now: Instant,
        kind: OutputKind,
        gzip: bool,
    ) -> (Body, Coding) {
        if let Some(answer) = self.output.current(kind, gzip) {
            return answer;
        }
        self.budget.release_pool();
        self.hold_indexes_within_budget(now);
        let process = ProcessStats::read();
        let evicted = self
            .output
            .build(now, kind, &mut self.containers, &process, gzip);
        debug!(
            "built the {kind:?} output (resident before: {} KiB, receive peak {} KiB): bodies held {} KiB, receive buffers {} KiB, indexes {} KiB, output {} KiB",
            process.resident_bytes >> 10,
            self.budget.peak_receiving() >> 10,
            self.budget.held_total() >> 10,
            self.budget.receiving_total() >> 10,
            self.containers
                .iter()
                .map(|container| container.snapshot().index_bytes())
                .sum::<usize>()
                >> 10,
            self.output.held_bytes() >> 10
        );
        // Nothing needs the indexes until the next build, which will follow
        // new data: receive buffers can use their memory meanwhile.
        for container in &mut self.containers {
            container.release_index();
        }
        for evicted in &evicted {
            for id in self
                .clients
                .ids_where(|connection| connection.client.holds(evicted))
            {
                debug!("closing a client too slow to take its response");
                self.close_client(id);
            }
        }
        self.output
            .current(kind, gzip)
            .unwrap_or((Body::empty(), Coding::Identity))
    }

    /// Indexes every up container's body before a build, counting each
    /// index and its merge records against the index budget; a container
    /// whose index would not fit is refused for this build (`over_budget`),
    /// in command-line order, so the first containers are the ones served.
    /// The edition of the other output format, when clients of both are
    /// served, is counted with the bodies: a second format costs indexes,
    /// never memory past the model.
    fn hold_indexes_within_budget(&mut self, now: Instant) {
        let limit = ((self.config.max_body_bytes as f64 * BODIES_AND_INDEXES_PER_MAX_BODY)
            as usize)
            .saturating_sub(self.budget.held_total())
            .saturating_sub(self.output.held_bytes());
        let mut total = 0;
        for (index, container) in self.containers.iter_mut().enumerate() {
            container.prepare_for_merge(now);
            let snapshot = container.snapshot();
            if !snapshot.is_indexed() || snapshot.body_len() == 0 {
                continue;
            }
            let cost = snapshot.index_bytes() + snapshot.family_count() * MERGE_BYTES_PER_FAMILY;
            if total + cost > limit {
                let detail = format!(
                    "its index ({} KiB) would take the indexes of one build past the {} KiB \
                     that the bodies held leave of {BODIES_AND_INDEXES_PER_MAX_BODY} x \
                     --max_body_bytes",
                    cost >> 10,
                    limit >> 10
                );
                container.refuse(now, FailureReason::OverBudget, &detail);
                self.budget.set_held(index, 0);
            } else {
                total += cost;
            }
        }
    }
}
