//! Sliding-window maximum and minimum in O(1) amortised per bar (monotonic deques on a ring).

/// Keeps the candidates for the maximum of the last `period` pushed values.
#[derive(Debug, Clone)]
pub(crate) struct MonoMax(Mono);

/// Keeps the candidates for the minimum of the last `period` pushed values.
#[derive(Debug, Clone)]
pub(crate) struct MonoMin(Mono);

impl MonoMax {
    pub(crate) fn new(period: usize) -> Self {
        MonoMax(Mono::new(period))
    }

    /// Adds value number `seq` (consecutive from 0) and returns the window maximum.
    #[inline]
    pub(crate) fn push(&mut self, seq: usize, v: f64) -> f64 {
        self.0.push(seq, v, |back, v| back <= v)
    }
}

impl MonoMin {
    pub(crate) fn new(period: usize) -> Self {
        MonoMin(Mono::new(period))
    }

    /// Adds value number `seq` (consecutive from 0) and returns the window minimum.
    #[inline]
    pub(crate) fn push(&mut self, seq: usize, v: f64) -> f64 {
        self.0.push(seq, v, |back, v| back >= v)
    }
}

#[derive(Debug, Clone)]
struct Mono {
    seqs: Vec<usize>,
    vals: Vec<f64>,
    mask: usize,
    head: usize,
    len: usize,
    period: usize,
}

impl Mono {
    fn new(period: usize) -> Self {
        // Before the expired front is dropped the deque can hold period + 1 entries.
        let cap = (period + 1).next_power_of_two();
        Mono {
            seqs: vec![0; cap],
            vals: vec![0.0; cap],
            mask: cap - 1,
            head: 0,
            len: 0,
            period,
        }
    }

    #[inline(always)]
    fn push(&mut self, seq: usize, v: f64, dominated: impl Fn(f64, f64) -> bool) -> f64 {
        let m = self.mask;
        while self.len > 0 && dominated(self.vals[(self.head + self.len - 1) & m], v) {
            self.len -= 1;
        }
        let at = (self.head + self.len) & m;
        self.seqs[at] = seq;
        self.vals[at] = v;
        self.len += 1;
        while self.seqs[self.head & m] + self.period <= seq {
            self.head = (self.head + 1) & m;
            self.len -= 1;
        }
        self.vals[self.head & m]
    }
}
