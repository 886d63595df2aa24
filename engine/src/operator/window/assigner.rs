//! Slice assignment for tumbling, hopping and cumulating windows ("stream slicing").
//!
//! A record is not copied into every window it belongs to. The time axis is cut into
//! non-overlapping *slices* such that every window is a contiguous run of whole slices:
//! the window itself for tumbling windows, `gcd(size, slide)` for hopping windows and the step
//! for cumulating windows. A record updates exactly one slice; a window's result is the merge
//! of its slices when it fires. Slices and windows are named by their (exclusive) end in epoch
//! milliseconds. All arithmetic is on `i64` milliseconds with euclidean remainders, so times
//! before the epoch align the same way as after it.

use crate::graph::WindowKind;
use crate::{Error, Result};

/// Maps times to slices and slices to windows. Pure arithmetic; no state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SliceAssigner {
    Tumbling {
        size: i64,
        offset: i64,
    },
    Hopping {
        size: i64,
        slide: i64,
        /// `gcd(size, slide)`.
        slice: i64,
        offset: i64,
    },
    Cumulating {
        max_size: i64,
        step: i64,
        offset: i64,
    },
}

fn gcd(mut a: i64, mut b: i64) -> i64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// The largest `x' <= x` with `x' ≡ offset (mod unit)`.
fn align_down(x: i64, unit: i64, offset: i64) -> i64 {
    x - x.wrapping_sub(offset).rem_euclid(unit)
}

/// The smallest `x' >= x` with `x' ≡ offset (mod unit)`.
fn align_up(x: i64, unit: i64, offset: i64) -> i64 {
    x + offset.wrapping_sub(x).rem_euclid(unit)
}

impl SliceAssigner {
    /// The assigner for a sliced window kind; `None` for session windows, which merge.
    pub(crate) fn try_new(kind: &WindowKind) -> Result<Option<Self>> {
        kind.validate()?;
        Ok(match *kind {
            WindowKind::Tumbling { size_ms, offset_ms } => Some(SliceAssigner::Tumbling {
                size: size_ms,
                offset: offset_ms,
            }),
            WindowKind::Hopping {
                size_ms,
                slide_ms,
                offset_ms,
            } => Some(SliceAssigner::Hopping {
                size: size_ms,
                slide: slide_ms,
                slice: gcd(size_ms, slide_ms),
                offset: offset_ms,
            }),
            WindowKind::Cumulating {
                max_size_ms,
                step_ms,
                offset_ms,
            } => {
                if max_size_ms % step_ms != 0 {
                    return Err(Error::expr(
                        "cumulating max size must be a multiple of step",
                    ));
                }
                Some(SliceAssigner::Cumulating {
                    max_size: max_size_ms,
                    step: step_ms,
                    offset: offset_ms,
                })
            }
            WindowKind::Session { .. } => None,
        })
    }

    /// The slice length and alignment offset.
    fn unit(&self) -> (i64, i64) {
        match *self {
            SliceAssigner::Tumbling { size, offset } => (size, offset),
            SliceAssigner::Hopping { slice, offset, .. } => (slice, offset),
            SliceAssigner::Cumulating { step, offset, .. } => (step, offset),
        }
    }

    /// The longest window, in milliseconds.
    pub(crate) fn max_window_size(&self) -> i64 {
        match *self {
            SliceAssigner::Tumbling { size, .. } | SliceAssigner::Hopping { size, .. } => size,
            SliceAssigner::Cumulating { max_size, .. } => max_size,
        }
    }

    /// The end of the slice that contains time `t`.
    #[inline]
    pub(crate) fn slice_end(&self, t: i64) -> i64 {
        let (unit, offset) = self.unit();
        align_down(t, unit, offset).saturating_add(unit)
    }

    /// The end of the earliest window that contains the slice ending at `slice_end`.
    #[inline]
    pub(crate) fn first_window_end(&self, slice_end: i64) -> i64 {
        match *self {
            SliceAssigner::Tumbling { .. } | SliceAssigner::Cumulating { .. } => slice_end,
            SliceAssigner::Hopping { slide, offset, .. } => align_up(slice_end, slide, offset),
        }
    }

    /// The end of the latest window that contains the slice ending at `slice_end`: once that
    /// window is past its lateness, the slice is no longer needed.
    #[inline]
    pub(crate) fn last_window_end(&self, slice_end: i64) -> i64 {
        match *self {
            SliceAssigner::Tumbling { .. } => slice_end,
            SliceAssigner::Hopping {
                size,
                slide,
                slice,
                offset,
            } => align_down(slice_end - slice + size, slide, offset),
            SliceAssigner::Cumulating {
                max_size,
                step,
                offset,
            } => align_down(slice_end - step, max_size, offset) + max_size,
        }
    }

    /// The distance between consecutive window ends that share a slice.
    fn window_stride(&self) -> i64 {
        match *self {
            SliceAssigner::Tumbling { size, .. } => size,
            SliceAssigner::Hopping { slide, .. } => slide,
            SliceAssigner::Cumulating { step, .. } => step,
        }
    }

    /// The ends of every window that contains the slice ending at `slice_end`, ascending.
    pub(crate) fn window_ends(&self, slice_end: i64) -> impl Iterator<Item = i64> + use<> {
        let first = self.first_window_end(slice_end);
        let last = self.last_window_end(slice_end);
        let stride = self.window_stride();
        (0..)
            .map(move |i: i64| first + i * stride)
            .take_while(move |&e| e <= last)
    }

    /// The start of the window ending at `window_end`.
    pub(crate) fn window_start(&self, window_end: i64) -> i64 {
        match *self {
            SliceAssigner::Tumbling { size, .. } | SliceAssigner::Hopping { size, .. } => {
                window_end - size
            }
            SliceAssigner::Cumulating {
                max_size,
                step,
                offset,
            } => align_down(window_end - step, max_size, offset),
        }
    }

    /// The ends of the slices that make up the window ending at `window_end`, ascending.
    pub(crate) fn slices_of(&self, window_end: i64) -> impl Iterator<Item = i64> + use<> {
        let (unit, _) = self.unit();
        let first = self.window_start(window_end) + unit;
        (0..)
            .map(move |i: i64| first + i * unit)
            .take_while(move |&e| e <= window_end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assigner(kind: WindowKind) -> SliceAssigner {
        SliceAssigner::try_new(&kind).unwrap().unwrap()
    }

    /// Every window end `e` (aligned to the kind) whose `[start, e)` contains `t`, by brute force.
    fn naive_windows(kind: &WindowKind, t: i64) -> Vec<(i64, i64)> {
        let mut out = Vec::new();
        for e in (t - 200)..=(t + 200) {
            let window = match *kind {
                WindowKind::Tumbling { size_ms, offset_ms } => {
                    ((e - offset_ms).rem_euclid(size_ms) == 0).then_some((e - size_ms, e))
                }
                WindowKind::Hopping {
                    size_ms,
                    slide_ms,
                    offset_ms,
                } => ((e - offset_ms).rem_euclid(slide_ms) == 0).then_some((e - size_ms, e)),
                WindowKind::Cumulating {
                    max_size_ms,
                    step_ms,
                    offset_ms,
                } => ((e - offset_ms).rem_euclid(step_ms) == 0).then(|| {
                    let start = e - step_ms - (e - step_ms - offset_ms).rem_euclid(max_size_ms);
                    (start, e)
                }),
                WindowKind::Session { .. } => None,
            };
            if let Some((s, e)) = window
                && s <= t
                && t < e
            {
                out.push((s, e));
            }
        }
        out
    }

    #[test]
    fn slices_tile_every_window_a_time_belongs_to() {
        let kinds = [
            WindowKind::tumbling(10),
            WindowKind::Tumbling {
                size_ms: 10,
                offset_ms: 3,
            },
            WindowKind::hopping(10, 4),
            WindowKind::hopping(12, 8),
            WindowKind::hopping(6, 10),
            WindowKind::Hopping {
                size_ms: 10,
                slide_ms: 5,
                offset_ms: 2,
            },
            WindowKind::cumulating(12, 4),
            WindowKind::Cumulating {
                max_size_ms: 9,
                step_ms: 3,
                offset_ms: 1,
            },
        ];
        for kind in &kinds {
            let a = assigner(kind.clone());
            for t in -50..50 {
                let slice = a.slice_end(t);
                let windows: Vec<(i64, i64)> = a
                    .window_ends(slice)
                    .map(|e| (a.window_start(e), e))
                    .collect();
                assert_eq!(windows, naive_windows(kind, t), "{kind:?} at t = {t}");
                for &(_, e) in &windows {
                    assert!(
                        a.slices_of(e).any(|s| s == slice),
                        "{kind:?} t = {t} e = {e}"
                    );
                }
            }
        }
    }

    #[test]
    fn hopping_slices_are_the_gcd_and_windows_cover_whole_slices() {
        let a = assigner(WindowKind::hopping(10_000, 4_000));
        assert_eq!(a.slice_end(0), 2_000);
        assert_eq!(a.slice_end(-1), 0);
        assert_eq!(
            a.slices_of(12_000).collect::<Vec<_>>(),
            [4_000, 6_000, 8_000, 10_000, 12_000]
        );
        assert_eq!(a.first_window_end(2_000), 4_000);
        assert_eq!(a.last_window_end(2_000), 8_000);
    }

    #[test]
    fn cumulating_windows_grow_from_the_same_start() {
        let a = assigner(WindowKind::cumulating(12, 4));
        assert_eq!(a.window_ends(a.slice_end(5)).collect::<Vec<_>>(), [8, 12]);
        assert_eq!(a.window_start(8), 0);
        assert_eq!(a.slices_of(12).collect::<Vec<_>>(), [4, 8, 12]);
    }

    #[test]
    fn sessions_have_no_slices_and_bad_sizes_are_rejected() {
        assert_eq!(
            SliceAssigner::try_new(&WindowKind::session(5)).unwrap(),
            None
        );
        assert!(SliceAssigner::try_new(&WindowKind::hopping(10, 0)).is_err());
        assert!(SliceAssigner::try_new(&WindowKind::cumulating(10, 4)).is_err());
    }
}
