//! Where a row's instant falls among a pass's few period bounds: how many of them are at or
//! before it, found by one table load and one comparison instead of a binary search.
//!
//! A pass asks this for every row (tens of millions at scale), and the binary search over a
//! dozen quarter bounds was half of a simple count's time: four dependent loads and compares a
//! row. The bounds are split into buckets of a width no larger than the smallest gap between two
//! of them, so a bucket holds at most one bound: the bucket's first rank, plus one if the row is
//! at or past the bound that may lie inside it.

/// At most this many buckets (a cut period of one millisecond beside years would need more):
/// beyond, the binary search.
const MAX_BUCKETS: usize = 1 << 16;

/// Sorted bounds, ready to rank values against.
#[derive(Debug, PartialEq, Clone)]
pub(super) struct Rank {
    /// The bounds, sorted (repeats kept).
    bounds: Vec<i64>,
    table: Option<Table>,
}

#[derive(Debug, PartialEq, Clone)]
struct Table {
    /// The smallest bound, and log2 of the bucket width.
    lo: i64,
    shift: u32,
    buckets: Vec<Bucket>,
}

/// One bucket: how many bounds lie at or before its start (`rank`), the bound after those
/// (`next`, [`i64::MAX`] past the last: the one that may lie inside the bucket), and how many
/// lie at or before that one (`past`, its repeats counted).
#[derive(Debug, PartialEq, Clone, Copy)]
struct Bucket {
    rank: u32,
    past: u32,
    next: i64,
}

impl Rank {
    /// Ranks against `bounds` (sorted ascending).
    pub(super) fn new(bounds: Vec<i64>) -> Rank {
        debug_assert!(bounds.is_sorted());
        let table = Table::new(&bounds);
        Rank { bounds, table }
    }

    /// How many bounds are at or before `v` (`bounds.partition_point(|b| *b <= v)`).
    #[inline(always)]
    pub(super) fn of(&self, v: i64) -> usize {
        match &self.table {
            Some(t) => t.rank(v, self.bounds.len()),
            None => self.bounds.partition_point(|b| *b <= v),
        }
    }
}

impl Table {
    fn new(bounds: &[i64]) -> Option<Table> {
        let mut distinct = bounds.to_vec();
        distinct.dedup();
        let (&lo, &hi) = (distinct.first()?, distinct.last()?);
        let gap = distinct.windows(2).map(|w| w[1].abs_diff(w[0])).min();
        // The widest power of two no wider than the smallest gap (one bound: any width).
        let shift = gap.map_or(0, |g| g.ilog2());
        let buckets = usize::try_from((hi.abs_diff(lo) >> shift) + 1).ok()?;
        if buckets > MAX_BUCKETS {
            return None;
        }
        let through = |v: i64| bounds.partition_point(|b| *b <= v) as u32;
        let buckets = (0..buckets as u64)
            .map(|b| {
                let start = lo.saturating_add_unsigned(b << shift);
                let next = distinct.iter().copied().find(|d| *d > start);
                Bucket {
                    rank: through(start),
                    past: next.map_or(bounds.len() as u32, through),
                    next: next.unwrap_or(i64::MAX),
                }
            })
            .collect();
        Some(Table { lo, shift, buckets })
    }

    #[inline(always)]
    fn rank(&self, v: i64, all: usize) -> usize {
        if v < self.lo {
            return 0;
        }
        let bucket = (v.abs_diff(self.lo) >> self.shift) as usize;
        match self.buckets.get(bucket) {
            Some(b) if v >= b.next => b.past as usize,
            Some(b) => b.rank as usize,
            None => all,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Rank::of` against the binary search for every value near every bound.
    fn agree(bounds: &[i64]) {
        let r = Rank::new(bounds.to_vec());
        let mut probes = vec![i64::MIN, i64::MIN + 1, -1, 0, 1, i64::MAX - 1, i64::MAX];
        for b in bounds {
            probes.extend([-2i64, -1, 0, 1, 2].map(|d| b.saturating_add(d)));
        }
        for v in probes {
            let slow = bounds.partition_point(|b| *b <= v);
            assert_eq!(r.of(v), slow, "bounds {bounds:?}, value {v}");
        }
    }

    #[test]
    fn ranks_agree_with_the_binary_search() {
        // Quarters in milliseconds, a cut of one day among them, repeats, one bound, none.
        let q = 7_776_000_000i64;
        let quarters: Vec<i64> = (0..14).map(|i| 1_735_660_800_000 + i * q).collect();
        agree(&quarters);
        let mut cut = quarters.clone();
        cut.push(quarters[3] + 86_400_000);
        cut.sort_unstable();
        agree(&cut);
        agree(&[5, 5, 5, 9, 9, 12]);
        agree(&[42]);
        agree(&[]);
        agree(&[-30, -20, -10, 0, 10]);
        let t = Rank::new(quarters).table.expect("a table for quarters");
        assert!(t.buckets.len() < 64, "{} buckets", t.buckets.len());
    }

    #[test]
    fn bounds_too_close_for_their_range_fall_back_to_the_binary_search() {
        let bounds = vec![0, 1, i64::MAX / 2];
        assert!(Rank::new(bounds.clone()).table.is_none());
        agree(&bounds);
        agree(&[i64::MIN + 1, 0, i64::MAX]);
    }
}
