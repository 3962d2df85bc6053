//! Keeps freed memory in the process for the next training step instead of handing it back to the
//! kernel, on glibc: the second place this crate calls `unsafe` code (`mallopt`).
//!
//! A U-Net step allocates and frees the same few hundred megabytes of activations, gradients and
//! working buffers every time. glibc's defaults return large freed blocks to the kernel (`munmap`
//! above the mmap threshold, `brk` trims above the trim threshold), so every step faults the same
//! pages back in, zeroed by the kernel: tens of thousands of minor page faults per step and about a
//! seventh of the step's time (docs/benchmarks.md). Raising both thresholds makes the allocator the
//! pool: freed blocks stay mapped and the next step reuses them.
//!
//! Predictions run on rayon's workers ([`crate::on_pool`]), and every kernel allocates there too.
//! glibc gives each thread that allocates an arena of its own, whose heaps are unmapped when they
//! empty, so with per-thread arenas the pages are faulted in again (with training steps on the
//! workers: 3.4k → 13k minor faults per step) and each worker keeps its own copy of the memory
//! (peak 170 → 300 MiB on two threads). One arena for the whole process
//! keeps the pool in one place; a thread takes its arena at its first allocation, so the setting
//! must come before the thread pool starts: binaries call [`crate::tune_allocator`] first thing.

// `mallopt` is a C function; it takes two integers and touches only the allocator's settings.
#![allow(unsafe_code, reason = "libc::mallopt is a foreign function; it takes plain integers")]

use std::sync::Once;

/// Allocations up to this size come from the heap, not from their own mapping (glibc's largest
/// accepted value on 64-bit targets: half of a 64 MiB arena heap).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 32 << 20;

/// Free memory at the top of a heap is handed back only above this much (1 GiB).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_THRESHOLD: libc::c_int = 1 << 30;

/// Arenas: every thread shares the main one.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const ARENAS: libc::c_int = 1;

/// Tunes the allocator once per process; later calls do nothing. Elsewhere than glibc it does
/// nothing at all (other allocators keep their own policies).
pub(crate) fn keep_freed_memory() {
    static ONCE: Once = Once::new();
    ONCE.call_once(tune);
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune() {
    // SAFETY: mallopt only changes the allocator's thresholds; any value is accepted or refused
    // (return value 0) without side effects, and glibc allows it at any time.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
        libc::mallopt(libc::M_ARENA_MAX, ARENAS);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune() {}
