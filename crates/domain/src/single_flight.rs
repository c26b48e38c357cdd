//! One call per key at a time: callers that ask for a key already in flight share its
//! result instead of starting another call. Used for code exchanges, so that a code sent twice
//! at once (a double tap, a client retry) reaches WeChat once.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use futures_util::FutureExt as _;
use futures_util::future::{BoxFuture, Shared};

type Calls<T> = Arc<Mutex<HashMap<String, Shared<BoxFuture<'static, T>>>>>;

/// The calls in flight, by key. Clones share them.
pub struct SingleFlight<T> {
    calls: Calls<T>,
}

impl<T> Clone for SingleFlight<T> {
    fn clone(&self) -> Self {
        Self {
            calls: Arc::clone(&self.calls),
        }
    }
}

impl<T> Default for SingleFlight<T> {
    fn default() -> Self {
        Self {
            calls: Arc::default(),
        }
    }
}

impl<T> fmt::Debug for SingleFlight<T> {
    // The keys are codes: secrets. Only their number is shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SingleFlight")
            .field("in_flight", &lock(&self.calls).len())
            .finish()
    }
}

// Every update is one insert or remove, so a poisoned map is still consistent.
fn lock<T>(calls: &Calls<T>) -> MutexGuard<'_, HashMap<String, Shared<BoxFuture<'static, T>>>> {
    calls.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Forgets the key when the caller that started its call is done with it (or gone): a later
/// call of the same key is a new call.
struct Forget<'a, T> {
    calls: &'a Calls<T>,
    key: &'a str,
}

impl<T> Drop for Forget<'_, T> {
    fn drop(&mut self) {
        lock(self.calls).remove(self.key);
    }
}

impl<T: Clone + Send + Sync + 'static> SingleFlight<T> {
    /// The result of `start()` for `key`, or of the call for `key` already in flight. The call
    /// runs to its end as long as any caller still waits for it.
    pub async fn run<F>(&self, key: &str, start: impl FnOnce() -> F) -> T
    where
        F: Future<Output = T> + Send + 'static,
    {
        let (call, started_here) = {
            let mut calls = lock(&self.calls);
            match calls.get(key) {
                Some(call) => (call.clone(), false),
                None => {
                    let call = start().boxed().shared();
                    calls.insert(key.to_owned(), call.clone());
                    (call, true)
                }
            }
        };
        let _forget = started_here.then_some(Forget {
            calls: &self.calls,
            key,
        });
        call.await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[test]
    fn concurrent_callers_share_one_call_and_later_ones_start_anew() {
        let flight = SingleFlight::<u32>::default();
        let started = Arc::new(AtomicU32::new(0));
        let (release, gate) = futures_channel_free_gate();
        let call = |flight: SingleFlight<u32>,
                    started: Arc<AtomicU32>,
                    gate: Shared<BoxFuture<'static, ()>>| async move {
            flight
                .run("code", move || async move {
                    let n = started.fetch_add(1, Ordering::SeqCst) + 1;
                    gate.await;
                    n
                })
                .await
        };
        let a = call(flight.clone(), Arc::clone(&started), gate.clone());
        let b = call(flight.clone(), Arc::clone(&started), gate.clone());
        let both = futures_util::future::join(a, b);
        let mut both = std::pin::pin!(both);
        let waker = futures_util::task::noop_waker();
        let mut cx = std::task::Context::from_waker(&waker);
        assert!(both.as_mut().poll(&mut cx).is_pending());
        release();
        let std::task::Poll::Ready((a, b)) = both.as_mut().poll(&mut cx) else {
            panic!("both callers are answered once the call ends");
        };
        assert_eq!((a, b), (1, 1), "one call, one result for both");
        assert_eq!(format!("{flight:?}"), "SingleFlight { in_flight: 0 }");

        let later = call(flight.clone(), Arc::clone(&started), gate);
        let mut later = std::pin::pin!(later);
        assert_eq!(later.as_mut().poll(&mut cx), std::task::Poll::Ready(2));
    }

    /// A gate the test opens by hand: a shared future that is ready once `release` ran.
    fn futures_channel_free_gate() -> (impl FnOnce(), Shared<BoxFuture<'static, ()>>) {
        let open = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = Arc::clone(&open);
        let gate = futures_util::future::poll_fn(move |_| {
            if flag.load(Ordering::SeqCst) {
                std::task::Poll::Ready(())
            } else {
                std::task::Poll::Pending
            }
        })
        .boxed()
        .shared();
        (move || open.store(true, Ordering::SeqCst), gate)
    }
}
