//! Tuning of the global allocator.
//!
//! Every Sluice binary runs on `mimalloc`. By default mimalloc returns freed memory to the
//! operating system shortly after a free (10 ms); the next allocation that reuses those pages
//! faults them in again, and the kernel zeroes each one first — with transparent huge pages,
//! 2 MiB at a time. Operators free and allocate large blocks all the time (a hash table that
//! doubles, a state vector that grows, the batches of every exchange), so this churn cost a
//! quarter of a 1 M-key aggregation, and half of TPC-H Q21 at SF 1 (`clear_page_erms` under
//! huge-page faults: about 5,700 faults per run, against 1,300 without purging).
//!
//! So Sluice keeps freed memory for reuse: purging is off, and where it happens anyway it uses
//! `MADV_FREE` (the kernel may still reclaim such pages under memory pressure). A process's
//! resident memory then stays near its peak after a large job; freed memory serves the next
//! job. `MIMALLOC_PURGE_DELAY` or `MIMALLOC_PURGE_DECOMMITS` in the environment keep
//! mimalloc's defaults (resident memory then follows what is in use) and win over this tuning.

use std::sync::Once;

/// mimalloc's `mi_option_purge_decommits` (position 5 of `mi_option_e` in `mimalloc.h`):
/// 1 purges with `MADV_DONTNEED` (decommit), 0 with `MADV_FREE` (reset).
const MI_OPTION_PURGE_DECOMMITS: libmimalloc_sys::mi_option_t = 5;

/// mimalloc's `mi_option_purge_delay` (position 15 of `mi_option_e`): milliseconds before
/// freed memory is purged; -1 never purges.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Applies Sluice's allocator settings once per process. Harmless when mimalloc is linked
/// but not the global allocator: it only changes mimalloc's own behaviour.
pub fn tune() {
    static TUNED: Once = Once::new();
    TUNED.call_once(|| {
        if std::env::var_os("MIMALLOC_PURGE_DECOMMITS").is_some()
            || std::env::var_os("MIMALLOC_PURGE_DELAY").is_some()
        {
            return;
        }
        // SAFETY: `mi_option_set` only stores an integer in mimalloc's option table; any
        // thread may call it at any time.
        unsafe {
            libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DECOMMITS, 0);
            libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1);
        }
    });
}
