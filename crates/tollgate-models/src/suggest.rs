//! Did-you-mean for unknown model names, cheap enough to run on every miss.
//!
//! Each catalog name keeps a 32-bucket character histogram. Half the L1 distance of two
//! histograms is a lower bound of their edit distance (an edit changes at most two counts by
//! one), so most names are ruled out in a few dozen instructions; the rest get an
//! optimal-string-alignment distance that gives up as soon as it must exceed the limit.

use std::sync::Arc;

/// A name a suggestion may point at.
#[derive(Debug)]
pub(crate) struct Candidate {
    pub(crate) name: Arc<str>,
    histogram: [u8; 32],
}

impl Candidate {
    pub(crate) fn new(name: Arc<str>) -> Self {
        Candidate {
            histogram: histogram(name.as_bytes()),
            name,
        }
    }
}

/// Names longer than this are never suggested for: their distance would cost too much.
const MAX_LEN: usize = 128;

fn histogram(bytes: &[u8]) -> [u8; 32] {
    let mut counts = [0u8; 32];
    for &b in bytes {
        let bucket = &mut counts[usize::from(b & 31)];
        *bucket = bucket.saturating_add(1);
    }
    counts
}

/// The candidate nearest to `requested` within `limit` edits (the first of equals).
pub(crate) fn closest<'a>(
    requested: &str,
    limit: usize,
    candidates: &'a [Candidate],
) -> Option<&'a str> {
    let requested = requested.as_bytes();
    if requested.len() > MAX_LEN {
        return None;
    }
    let wanted = histogram(requested);
    let mut best: Option<(usize, &str)> = None;
    for candidate in candidates {
        let name = candidate.name.as_bytes();
        let bound = best.map_or(limit, |(distance, _)| distance.saturating_sub(1));
        if name.len().abs_diff(requested.len()) > bound || name.len() > MAX_LEN {
            continue;
        }
        let l1: usize = wanted
            .iter()
            .zip(&candidate.histogram)
            .map(|(a, b)| usize::from(a.abs_diff(*b)))
            .sum();
        if l1.div_ceil(2) > bound {
            continue;
        }
        if let Some(distance) = bounded_osa(requested, name, bound) {
            best = Some((distance, &candidate.name));
            if distance == 0 {
                break;
            }
        }
    }
    best.map(|(_, name)| name)
}

/// The optimal-string-alignment distance of `a` and `b` (both at most [`MAX_LEN`] bytes), or
/// `None` once it is sure to exceed `limit`.
pub(crate) fn bounded_osa(a: &[u8], b: &[u8], limit: usize) -> Option<usize> {
    let width = b.len() + 1;
    let mut before_previous = [0usize; MAX_LEN + 1];
    let mut previous = [0usize; MAX_LEN + 1];
    let mut current = [0usize; MAX_LEN + 1];
    for (j, cell) in previous.iter_mut().enumerate().take(width) {
        *cell = j;
    }
    let mut previous_min = 0;
    for i in 1..=a.len() {
        current[0] = i;
        let mut row_min = i;
        for j in 1..width {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut cell = (previous[j] + 1)
                .min(current[j - 1] + 1)
                .min(previous[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                cell = cell.min(before_previous[j - 2] + 1);
            }
            current[j] = cell;
            row_min = row_min.min(cell);
        }
        // Every later cell derives from this row or the one before it.
        if row_min.min(previous_min) > limit {
            return None;
        }
        previous_min = row_min;
        before_previous[..width].copy_from_slice(&previous[..width]);
        previous[..width].copy_from_slice(&current[..width]);
    }
    let distance = previous[width - 1];
    (distance <= limit).then_some(distance)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_osa_agrees_with_strsim_within_the_limit() {
        let words = [
            "",
            "a",
            "ab",
            "ba",
            "abc",
            "acb",
            "gpt-5.4",
            "gtp-5.4",
            "gpt-5.3",
            "GPT-5.4",
            "gpt-54",
            "openai/gpt-5.4",
            "claude-sonnet-4-6",
            "claude-sonet-4-6",
            "mimo-v2-pro",
            "mimo-v2.5-pro",
        ];
        for a in words {
            for b in words {
                let exact = strsim::osa_distance(a, b);
                for limit in 0..5 {
                    let expected = (exact <= limit).then_some(exact);
                    assert_eq!(
                        bounded_osa(a.as_bytes(), b.as_bytes(), limit),
                        expected,
                        "{a:?} {b:?} {limit}"
                    );
                }
            }
        }
    }

    #[test]
    fn closest_prefers_the_smallest_distance() {
        let candidates: Vec<Candidate> = ["gpt-5.4", "gpt-5.3", "gpt-4.1"]
            .into_iter()
            .map(|name| Candidate::new(Arc::from(name)))
            .collect();
        assert_eq!(closest("gpt-5.4x", 2, &candidates), Some("gpt-5.4"));
        assert_eq!(closest("gpt-4.2", 1, &candidates), Some("gpt-4.1"));
        assert_eq!(closest("llama", 2, &candidates), None);
    }
}
