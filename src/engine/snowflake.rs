//! Event ids: snowflakes `ms since 2025-01-01 << 22 | worker << 12 | sequence`.
//!
//! Only the committer owns a generator, so ids are strictly increasing in commit order. The
//! generator never goes backwards: if the clock steps back, or 4096 ids are needed within
//! one millisecond, it borrows from the future millisecond. On open it is seeded with the
//! largest id in the store, so restarts never reuse an id.

/// 2025-01-01T00:00:00Z in Unix milliseconds.
pub const EPOCH_UNIX_MS: u64 = 1_735_689_600_000;
const WORKER_BITS: u32 = 10;
const SEQUENCE_BITS: u32 = 12;
const SEQUENCE_MASK: u64 = (1 << SEQUENCE_BITS) - 1;
const TIMESTAMP_SHIFT: u32 = WORKER_BITS + SEQUENCE_BITS;

/// Generates strictly increasing snowflake ids.
#[derive(Debug)]
pub struct Snowflake {
    worker: u64,
    last_ms: u64,
    last_sequence: u64,
}

impl Snowflake {
    /// A generator for `worker` that will only hand out ids greater than `floor`.
    pub fn new(worker: u16, floor: u64) -> Self {
        Self {
            worker: u64::from(worker) & ((1 << WORKER_BITS) - 1),
            last_ms: floor >> TIMESTAMP_SHIFT,
            last_sequence: floor & SEQUENCE_MASK,
        }
        .with_floor(floor)
    }

    fn with_floor(mut self, floor: u64) -> Self {
        // With a larger worker id in floor's millisecond, the next id of that millisecond
        // could still be below floor: exhaust the millisecond so the next id moves on.
        if self.compose(self.last_ms, self.last_sequence) < floor {
            self.last_sequence = SEQUENCE_MASK;
        }
        self
    }

    fn compose(&self, ms: u64, sequence: u64) -> u64 {
        (ms << TIMESTAMP_SHIFT) | (self.worker << SEQUENCE_BITS) | sequence
    }

    /// The next id, given the wall clock in Unix milliseconds.
    pub fn next_at(&mut self, now_unix_ms: u64) -> u64 {
        let now = now_unix_ms.saturating_sub(EPOCH_UNIX_MS);
        if now > self.last_ms {
            self.last_ms = now;
            self.last_sequence = 0;
        } else if self.last_sequence < SEQUENCE_MASK {
            self.last_sequence += 1;
        } else {
            self.last_ms += 1;
            self.last_sequence = 0;
        }
        self.compose(self.last_ms, self.last_sequence)
    }

    /// The next id by the system clock.
    pub fn next_id(&mut self) -> u64 {
        self.next_at(unix_ms_now())
    }
}

/// Milliseconds since the Unix epoch by the system clock (0 if the clock is before 1970).
pub fn unix_ms_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Microseconds since the Unix epoch by the system clock.
pub fn unix_micros_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_the_spec() {
        let mut gen = Snowflake::new(5, 0);
        let id = gen.next_at(EPOCH_UNIX_MS + 1000);
        assert_eq!(id >> 22, 1000);
        assert_eq!((id >> 12) & 1023, 5);
        assert_eq!(id & 4095, 0);
        assert_eq!(gen.next_at(EPOCH_UNIX_MS + 1000), id + 1);
    }

    #[test]
    fn strictly_increasing_when_the_clock_steps_back() {
        let mut gen = Snowflake::new(1, 0);
        let a = gen.next_at(EPOCH_UNIX_MS + 50_000);
        let b = gen.next_at(EPOCH_UNIX_MS + 10_000);
        let c = gen.next_at(EPOCH_UNIX_MS + 10_001);
        assert!(a < b && b < c);
    }

    #[test]
    fn sequence_overflow_borrows_the_next_millisecond() {
        let mut gen = Snowflake::new(0, 0);
        let mut last = 0;
        for _ in 0..10_000 {
            let id = gen.next_at(EPOCH_UNIX_MS + 7);
            assert!(id > last);
            last = id;
        }
        assert!(last >> 22 > 7);
    }

    #[test]
    fn seeded_floor_is_never_reused_even_from_another_worker() {
        let mut earlier = Snowflake::new(1000, 0);
        let floor = earlier.next_at(EPOCH_UNIX_MS + 99);
        let mut gen = Snowflake::new(3, floor);
        // Same millisecond as the floor, smaller worker id: must still exceed it.
        let id = gen.next_at(EPOCH_UNIX_MS + 99);
        assert!(id > floor, "{id} <= {floor}");
        let mut gen = Snowflake::new(3, floor);
        assert!(gen.next_at(EPOCH_UNIX_MS + 1) > floor);
    }
}
