//! Where a live event stream is in the event log. Event ids come from one sequence but
//! become visible in commit order: with several instances writing one PostgreSQL store,
//! id 11 can be committed (and streamed) while id 10's transaction is still open. A
//! cursor that only asks for ids above the highest seen would skip 10 forever. So the
//! cursor remembers the holes below its high-water mark for [`GAP_PATIENCE`] and asks
//! for them again; a hole that never fills is an aborted transaction and is given up.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How long a missing id is waited for. Event transactions last milliseconds; this is
/// generous so a stalled instance's late commit still reaches every stream.
pub const GAP_PATIENCE: Duration = Duration::from_secs(30);

/// Holes kept at most (a burst of aborted transactions must not grow this forever).
const MAX_GAPS: usize = 4096;

#[derive(Debug, Default)]
pub struct EventCursor {
    high: i64,
    gaps: BTreeMap<i64, Instant>,
}

impl EventCursor {
    pub fn new(after: i64) -> Self {
        EventCursor { high: after, gaps: BTreeMap::new() }
    }

    /// The `after` to query with: below the oldest hole still waited for.
    pub fn query_after(&mut self, now: Instant) -> i64 {
        self.gaps.retain(|_, since| now.duration_since(*since) < GAP_PATIENCE);
        self.gaps.keys().next().map_or(self.high, |g| (g - 1).min(self.high))
    }

    /// Takes the ids a query returned (ascending); returns which of them are new to the
    /// stream, in order: filled holes and ids above the high-water mark.
    pub fn accept(&mut self, ids: &[i64], now: Instant) -> Vec<usize> {
        let mut out = Vec::new();
        for (i, &id) in ids.iter().enumerate() {
            if id > self.high {
                for missing in self.high + 1..id {
                    if self.gaps.len() < MAX_GAPS {
                        self.gaps.insert(missing, now);
                    }
                }
                self.high = id;
                out.push(i);
            } else if self.gaps.remove(&id).is_some() {
                out.push(i);
            }
        }
        out
    }

    pub fn high(&self) -> i64 {
        self.high
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_late_commit_below_the_high_water_mark_is_still_streamed_once() {
        let t = Instant::now();
        let mut c = EventCursor::new(9);
        assert_eq!(c.query_after(t), 9);
        // 11 and 12 are visible, 10 is still being committed elsewhere.
        assert_eq!(c.accept(&[11, 12], t), vec![0, 1]);
        assert_eq!(c.query_after(t), 9, "asks again from below the hole");
        // The next query returns 10 (late) and the already streamed 11, 12 again.
        assert_eq!(c.accept(&[10, 11, 12, 13], t), vec![0, 3]);
        assert_eq!(c.query_after(t), 13, "no hole left");
        assert_eq!(c.accept(&[13], t), Vec::<usize>::new(), "never twice");
    }

    #[test]
    fn a_hole_that_never_fills_is_given_up() {
        let t = Instant::now();
        let mut c = EventCursor::new(0);
        c.accept(&[1, 3], t);
        assert_eq!(c.query_after(t), 1);
        assert_eq!(c.query_after(t + GAP_PATIENCE), 3, "an aborted transaction's id is not waited for forever");
    }
}
