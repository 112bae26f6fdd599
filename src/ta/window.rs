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

/// Writes the maximum of every `period`-long window of `x` into `out[period-1..x.len()]`
/// (van Herk / Gil-Werman blocks: branch-free, three comparisons per value whatever the data).
/// Ties resolve to the latest value, as in [`MonoMax`], so both give the same bits.
pub(crate) fn rolling_max(x: &[f64], period: usize, out: &mut [f64]) {
    rolling(x, period, out, f64::NEG_INFINITY, |later, earlier| {
        later >= earlier
    })
}

/// Minimum counterpart of [`rolling_max`].
pub(crate) fn rolling_min(x: &[f64], period: usize, out: &mut [f64]) {
    rolling(x, period, out, f64::INFINITY, |later, earlier| {
        later <= earlier
    })
}

#[inline(always)]
fn rolling(
    x: &[f64],
    p: usize,
    out: &mut [f64],
    empty: f64,
    keep_later: impl Fn(f64, f64) -> bool,
) {
    let n = x.len().min(out.len());
    if p == 0 || n < p {
        return;
    }
    let pick = |later: f64, earlier: f64| {
        if keep_later(later, earlier) {
            later
        } else {
            earlier
        }
    };
    // suffix[j] = extreme of the previous block from offset j to its end; suffix[p] = empty.
    let mut suffix = vec![empty; p + 1];
    for (blk, dst) in x[..n].chunks(p).zip(out[..n].chunks_mut(p)) {
        let mut run = empty;
        for ((&v, &sfx), o) in blk.iter().zip(&suffix[1..]).zip(dst.iter_mut()) {
            run = pick(v, run);
            *o = pick(run, sfx);
        }
        if blk.len() == p {
            for j in (0..p).rev() {
                // Strict comparison: on a tie keep the later value (suffix[j+1]).
                suffix[j] = if keep_later(suffix[j + 1], blk[j]) {
                    suffix[j + 1]
                } else {
                    blk[j]
                };
            }
        }
    }
    // The first block's partial windows were written too; they are warm-up.
    out[..p - 1].iter_mut().for_each(|o| *o = f64::NAN);
}
