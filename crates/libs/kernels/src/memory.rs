//! Keeps freed memory in the process for the next training step instead of handing it back to the
//! kernel, on glibc: the second place this crate calls `unsafe` code (`mallopt`).
//!
//! A U-Net step allocates and frees the same few hundred megabytes of activations, gradients and
//! working buffers every time. glibc's defaults return large freed blocks to the kernel (`munmap`
//! above the mmap threshold, `brk` trims above the trim threshold), so every step faults the same
//! pages back in, zeroed by the kernel: tens of thousands of minor page faults per step and about a
//! seventh of the step's time (docs/benchmarks.md). Raising both thresholds makes the allocator the
//! pool: freed blocks stay mapped and the next step reuses them.

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
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune() {}
