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

/// Sliding maximum (`MAX = true`) or minimum of the last `period` values for batch loops,
/// by van Herk / Gil-Werman blocks: bars are grouped in blocks of `period`; a window is a
/// suffix of the previous block plus a prefix of the current one, so each bar costs two
/// max/min instructions plus one for the suffix pass at each block start, whatever the data
/// (no data-dependent branches, no worst case). Ties resolve to the latest value, as in
/// [`MonoMax`]/[`MonoMin`], so both give the same bits.
#[derive(Debug, Clone)]
pub(crate) struct Sliding<const MAX: bool> {
    period: usize,
    /// Offset of the next bar in its block.
    at: usize,
    /// Extreme of the current block so far.
    run: f64,
    /// `suffix[k]` = extreme of the previous block from offset `k` on; `suffix[period]` and
    /// the whole of it before the first block ends are the empty value.
    suffix: Vec<f64>,
}

impl<const MAX: bool> Sliding<MAX> {
    const EMPTY: f64 = if MAX {
        f64::NEG_INFINITY
    } else {
        f64::INFINITY
    };

    pub(crate) fn new(period: usize) -> Self {
        Sliding {
            period,
            at: 0,
            run: Self::EMPTY,
            suffix: vec![Self::EMPTY; period + 1],
        }
    }

    /// The extreme of `later` and `earlier`, `later` on a tie (one maxsd/minsd).
    #[inline(always)]
    fn pick(later: f64, earlier: f64) -> f64 {
        if MAX {
            if earlier > later { earlier } else { later }
        } else if earlier < later {
            earlier
        } else {
            later
        }
    }

    /// The extreme of `x[today+1-period..=today]` (fewer values at the start). Call with
    /// `today` = 0, 1, 2, ... in turn.
    /// A block ended at `today-1`: its suffix extremes serve the next `period` windows.
    #[inline(always)]
    fn next_block(&mut self, x: &[f64], today: usize) {
        let p = self.period;
        let block = &x[today - p..today];
        let (head, tail) = self.suffix.split_at_mut(p);
        let mut acc = tail[0];
        for (s, &v) in head.iter_mut().zip(block).rev() {
            acc = Self::pick(acc, v);
            *s = acc;
        }
        self.at = 0;
        self.run = Self::EMPTY;
    }

    /// Adds value `v` of the current block (which is not full) and returns the extreme.
    #[inline(always)]
    fn step(&mut self, v: f64) -> f64 {
        self.run = Self::pick(v, self.run);
        let out = Self::pick(self.run, self.suffix[self.at + 1]);
        self.at += 1;
        out
    }
}

/// [`Sliding`] maximum of one series and minimum of another with the same period (Donchian's
/// and the stochastic's highest high and lowest low), sharing one block counter so that a bar
/// costs one block-boundary test instead of two.
#[derive(Debug, Clone)]
pub(crate) struct HighLow {
    high: Sliding<true>,
    low: Sliding<false>,
}

impl HighLow {
    pub(crate) fn new(period: usize) -> Self {
        HighLow {
            high: Sliding::new(period),
            low: Sliding::new(period),
        }
    }

    /// The highest of `high[today+1-period..=today]` and the lowest of the same window of
    /// `low` (fewer values at the start). Call with `today` = 0, 1, 2, ... in turn.
    #[inline(always)]
    pub(crate) fn push(&mut self, high: &[f64], low: &[f64], today: usize) -> (f64, f64) {
        if self.high.at == self.high.period {
            self.high.next_block(high, today);
            self.low.next_block(low, today);
        }
        (self.high.step(high[today]), self.low.step(low[today]))
    }
}
