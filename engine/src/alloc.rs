//! Tuning of the global allocator.
//!
//! Every Sluice binary runs on `mimalloc`. By default mimalloc returns freed memory to the
//! operating system with `MADV_DONTNEED` shortly after a free; the next allocation that reuses
//! those pages faults them in again, and the kernel zeroes each one first. Stateful operators
//! free and allocate large blocks all the time (a hash table that doubles, a state vector that
//! grows, the batches of every exchange), so on a 1 M-key aggregation a quarter of the run went
//! to zeroing re-faulted pages (`clear_page_erms` under `reserve_rehash`). With purges done by
//! `MADV_FREE` instead, freed pages stay mapped and are reused without a fault while the
//! kernel may still reclaim them under memory pressure. Until it does, they count in the
//! process's resident memory; `MIMALLOC_PURGE_DECOMMITS=1` in the environment keeps
//! mimalloc's default (resident memory then follows what is in use), and wins over this
//! tuning.

use std::sync::Once;

/// mimalloc's `mi_option_purge_decommits` (position 5 of `mi_option_e` in `mimalloc.h`):
/// 1 purges with `MADV_DONTNEED` (decommit), 0 with `MADV_FREE` (reset).
const MI_OPTION_PURGE_DECOMMITS: libmimalloc_sys::mi_option_t = 5;

/// Applies Sluice's allocator settings once per process. Harmless when mimalloc is linked
/// but not the global allocator: it only changes mimalloc's own behaviour.
pub fn tune() {
    static TUNED: Once = Once::new();
    TUNED.call_once(|| {
        if std::env::var_os("MIMALLOC_PURGE_DECOMMITS").is_some() {
            return;
        }
        // SAFETY: `mi_option_set` only stores an integer in mimalloc's option table; any
        // thread may call it at any time.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DECOMMITS, 0) };
    });
}

/// mimalloc's `mi_option_purge_delay` (position 15 of `mi_option_e` in `mimalloc.h`); -1
/// never purges.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Tells mimalloc not to purge its arenas any more, for a process about to exit. At exit
/// mimalloc collects every heap and returns freed memory with `MADV_FREE`, which splits each
/// transparent huge page first: 8 % of a `sluice sql` `SELECT 1` and 2 % of a 90 ms TPC-H
/// query, for memory the exit releases anyway.
pub fn skip_purges_at_exit() {
    // SAFETY: as in `tune`, an integer stored in mimalloc's option table.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
}
