//! A spin lock for a sampled span's recording.
//!
//! A span's recording is touched by one thread at a time in practice (the task running the handler), so
//! its lock is almost never contended, and each critical section is a few dozen nanoseconds (one `Vec`
//! push). For that case a spin lock costs one atomic compare-exchange and a plain store, against two
//! locked instructions for `std::sync::Mutex` on Linux: on the sampled request path, which takes the lock
//! once per attribute, that is a third of the budget. Under contention it spins briefly, then yields.
//!
//! Never call code that could take the same lock while holding it: it would spin forever. The span
//! methods convert and collect their arguments before locking for that reason.

use std::cell::UnsafeCell;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering};

pub(crate) struct SpinLock<T> {
    locked: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: the lock hands out access to `value` to one thread at a time (acquire on lock, release on
// unlock), like a mutex, so sharing it needs only `T: Send`.
unsafe impl<T: Send> Sync for SpinLock<T> {}

impl<T> SpinLock<T> {
    pub(crate) const fn new(value: T) -> SpinLock<T> {
        SpinLock { locked: AtomicBool::new(false), value: UnsafeCell::new(value) }
    }

    #[inline]
    pub(crate) fn lock(&self) -> SpinGuard<'_, T> {
        if self.locked.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
            self.lock_contended();
        }
        SpinGuard { lock: self, locked: true }
    }

    /// The value, locked unless `exclusive`, in which case the lock is not touched at all: no atomic
    /// read-modify-write and no store on release.
    ///
    /// # Safety
    /// With `exclusive` true, nothing else may access the value (locked or not) while the guard lives, as
    /// for [`SpinLock::get_exclusive`].
    #[inline]
    pub(crate) unsafe fn lock_unless_exclusive(&self, exclusive: bool) -> SpinGuard<'_, T> {
        if exclusive { SpinGuard { lock: self, locked: false } } else { self.lock() }
    }

    #[cold]
    fn lock_contended(&self) {
        let mut spins = 0u32;
        loop {
            // Wait with plain loads, so the waiting core does not keep stealing the cache line.
            while self.locked.load(Ordering::Relaxed) {
                if spins < 100 {
                    spins += 1;
                    std::hint::spin_loop();
                } else {
                    // The holder was probably preempted: let it run.
                    std::thread::yield_now();
                }
            }
            if self.locked.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed).is_ok() {
                return;
            }
        }
    }

    /// Exclusive access without locking: `&mut self` proves nobody else holds it.
    pub(crate) fn get_mut(&mut self) -> &mut T {
        self.value.get_mut()
    }

    /// Exclusive access without locking, through a shared reference.
    ///
    /// # Safety
    /// Nothing else may access the value (locked or not) while the returned reference lives: e.g. the lock
    /// is inside an allocation the caller alone can reach.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn get_exclusive(&self) -> &mut T {
        // SAFETY: exclusive by the caller's contract.
        unsafe { &mut *self.value.get() }
    }
}

pub(crate) struct SpinGuard<'a, T> {
    lock: &'a SpinLock<T>,
    /// False when the holder has exclusive access without the lock ([`SpinLock::lock_unless_exclusive`]).
    locked: bool,
}

impl<T> Deref for SpinGuard<'_, T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: the guard exists only while this thread holds the lock, or has the value to itself.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for SpinGuard<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard exists only while this thread holds the lock (or has the value to itself),
        // and `&mut self` makes this the only reference made through it.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        if self.locked {
            self.lock.locked.store(false, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn excludes_concurrent_writers() {
        let counter = Arc::new(SpinLock::new(0u64));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let counter = Arc::clone(&counter);
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        // A read-modify-write that loses updates unless the lock excludes the others.
                        let mut value = counter.lock();
                        let read = *value;
                        std::hint::black_box(&mut *value);
                        *value = read + 1;
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("thread panicked");
        }
        assert_eq!(*counter.lock(), 40_000);
    }

    #[test]
    fn a_panic_while_locked_releases_the_lock() {
        let lock = SpinLock::new(1);
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _guard = lock.lock();
            panic!("inside");
        }));
        assert!(outcome.is_err());
        assert_eq!(*lock.lock(), 1);
    }
}
