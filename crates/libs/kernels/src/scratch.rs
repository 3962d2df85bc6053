//! Working buffers reused across calls and training steps: each thread keeps the buffers it
//! returned, so a step's im2col tiles and partial sums stop costing fresh pages (the page faults
//! that burn's per-operation allocations cost).

use std::cell::RefCell;

/// The most buffers a thread keeps.
const KEPT: usize = 4;

thread_local! {
    static POOL: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
}

/// A buffer of `len` elements from this thread's pool (its contents are stale, not zeroed: callers
/// write every element they read).
pub(crate) fn take(len: usize) -> Vec<f32> {
    let reused = POOL.with_borrow_mut(|pool| {
        let best = (0..pool.len())
            .filter(|&i| pool[i].capacity() >= len)
            .min_by_key(|&i| pool[i].capacity());
        best.or_else(|| (!pool.is_empty()).then(|| pool.len() - 1))
            .map(|i| pool.swap_remove(i))
    });
    let mut buffer = reused.unwrap_or_default();
    buffer.resize(len, 0.0);
    buffer
}

/// Returns a buffer to this thread's pool.
pub(crate) fn give(buffer: Vec<f32>) {
    POOL.with_borrow_mut(|pool| {
        if pool.len() < KEPT {
            pool.push(buffer);
        } else if let Some(smallest) = (0..pool.len()).min_by_key(|&i| pool[i].capacity())
            && pool[smallest].capacity() < buffer.capacity()
        {
            pool[smallest] = buffer;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_a_returned_buffer() {
        let a = take(1000);
        let pointer = a.as_ptr();
        give(a);
        let b = take(500);
        assert_eq!(b.len(), 500);
        assert_eq!(b.as_ptr(), pointer);
    }
}
