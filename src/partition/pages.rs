//! Sets of guest page numbers, kept as sorted, merged ranges.
//!
//! Dirty logs report what the kernel reports (ranges of written pages), and a
//! whole-memory round is one range, so ranges beat a bitmap for every
//! harvest that is not pathologically scattered.

use std::ops::Range;

/// Sorted, non-overlapping, non-adjacent ranges of guest page numbers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PageSet {
    ranges: Vec<Range<u64>>,
    pages: u64,
}

impl PageSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Empties the set, keeping its allocation.
    pub fn clear(&mut self) {
        self.ranges.clear();
        self.pages = 0;
    }

    /// Number of pages in the set.
    pub fn len(&self) -> u64 {
        self.pages
    }

    /// Whether the set holds no page.
    pub fn is_empty(&self) -> bool {
        self.pages == 0
    }

    /// The pages as sorted, disjoint, non-adjacent ranges.
    pub fn ranges(&self) -> &[Range<u64>] {
        &self.ranges
    }

    /// Adds `range`. Ranges arriving in ascending order (as every tracker
    /// produces them) append or merge in O(1); others are inserted in place.
    pub fn insert_range(&mut self, range: Range<u64>) {
        if range.is_empty() {
            return;
        }
        match self.ranges.last_mut() {
            None => self.push_new(range),
            Some(last) if range.start > last.end => self.push_new(range),
            Some(last) if range.start >= last.start => {
                if range.end > last.end {
                    self.pages += range.end - last.end;
                    last.end = range.end;
                }
            }
            Some(_) => self.insert_out_of_order(range),
        }
    }

    /// Adds one page.
    pub fn insert(&mut self, page: u64) {
        self.insert_range(page..page + 1);
    }

    /// Whether `page` is in the set.
    pub fn contains(&self, page: u64) -> bool {
        let idx = self.ranges.partition_point(|r| r.end <= page);
        self.ranges.get(idx).is_some_and(|r| r.start <= page)
    }

    /// Every page, ascending.
    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.ranges.iter().flat_map(|r| r.clone())
    }

    /// Adds every page of `other`, in one linear merge of the two range
    /// lists (a mid-round harvest joins the round's set this way).
    pub fn union(&mut self, other: &PageSet) {
        if other.is_empty() {
            return;
        }
        if self
            .ranges
            .last()
            .is_none_or(|l| other.ranges[0].start > l.end)
        {
            self.ranges.extend(other.ranges.iter().cloned());
            self.pages += other.pages;
            return;
        }
        let mine = std::mem::take(&mut self.ranges);
        let (mut a, mut b) = (mine.into_iter().peekable(), other.ranges.iter().peekable());
        let mut merged = PageSet::new();
        loop {
            let next = match (a.peek(), b.peek()) {
                (Some(x), Some(y)) if x.start <= y.start => a.next(),
                (Some(_), Some(_)) | (None, Some(_)) => b.next().cloned(),
                (Some(_), None) => a.next(),
                (None, None) => break,
            };
            // Ascending starts: insert_range appends or merges in O(1).
            merged.insert_range(next.expect("peeked"));
        }
        *self = merged;
    }

    fn push_new(&mut self, range: Range<u64>) {
        self.pages += range.end - range.start;
        self.ranges.push(range);
    }

    fn insert_out_of_order(&mut self, range: Range<u64>) {
        // First range that ends at or after range.start (touching counts).
        let first = self.ranges.partition_point(|r| r.end < range.start);
        // One past the last range that starts at or before range.end.
        let last = self.ranges.partition_point(|r| r.start <= range.end);
        let mut merged = range;
        for r in &self.ranges[first..last] {
            merged.start = merged.start.min(r.start);
            merged.end = merged.end.max(r.end);
            self.pages -= r.end - r.start;
        }
        self.pages += merged.end - merged.start;
        self.ranges.splice(first..last, std::iter::once(merged));
    }
}

impl FromIterator<u64> for PageSet {
    fn from_iter<I: IntoIterator<Item = u64>>(iter: I) -> Self {
        let mut set = PageSet::new();
        for page in iter {
            set.insert(page);
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[test]
    fn ascending_ranges_merge_when_adjacent() {
        let mut s = PageSet::new();
        s.insert_range(0..4);
        s.insert_range(4..8);
        s.insert_range(10..12);
        assert_eq!(s.ranges(), &[0..8, 10..12]);
        assert_eq!(s.len(), 10);
    }

    proptest! {
        #[test]
        fn behaves_like_a_set_of_pages(pages in proptest::collection::vec(0u64..500, 0..300)) {
            let set: PageSet = pages.iter().copied().collect();
            let reference: BTreeSet<u64> = pages.iter().copied().collect();
            prop_assert_eq!(set.len(), reference.len() as u64);
            prop_assert_eq!(set.iter().collect::<Vec<_>>(), reference.iter().copied().collect::<Vec<_>>());
            for w in set.ranges().windows(2) {
                prop_assert!(w[0].end < w[1].start, "ranges must be merged and sorted");
            }
            for p in 0..500 {
                prop_assert_eq!(set.contains(p), reference.contains(&p));
            }
        }

        #[test]
        fn union_is_the_set_union(
            a in proptest::collection::vec(0u64..500, 0..200),
            b in proptest::collection::vec(0u64..500, 0..200),
        ) {
            let mut set: PageSet = a.iter().copied().collect();
            set.union(&b.iter().copied().collect());
            let reference: BTreeSet<u64> = a.iter().chain(&b).copied().collect();
            let expected: PageSet = reference.iter().copied().collect();
            prop_assert_eq!(set, expected);
        }
    }
}
