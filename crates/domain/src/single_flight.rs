//! One call per key at a time: callers that ask for a key already in flight share its
//! result instead of starting another call. Used for code exchanges, so that a code sent twice
//! at once (a double tap, a client retry) reaches WeChat once, and for the instance's reads of
//! the shared access token.
//!
//! A call lives exactly as long as it runs: it is forgotten when it completes, or when every
//! caller waiting for it has gone (cancelled), never because the caller that started it went.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use futures_util::FutureExt as _;
use futures_util::future::{BoxFuture, Shared};

/// One call in flight: the shared future, which call of its key it is, and how many callers
/// wait for it.
struct Entry<T> {
    id: u64,
    call: Shared<BoxFuture<'static, T>>,
    waiters: usize,
}

struct Calls<T> {
    by_key: HashMap<String, Entry<T>>,
    next_id: u64,
}

type Table<T> = Arc<Mutex<Calls<T>>>;

/// The calls in flight, by key. Clones share them.
pub struct SingleFlight<T> {
    calls: Table<T>,
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
            calls: Arc::new(Mutex::new(Calls {
                by_key: HashMap::new(),
                next_id: 0,
            })),
        }
    }
}

impl<T> fmt::Debug for SingleFlight<T> {
    // The keys are codes: secrets. Only their number is shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SingleFlight")
            .field("in_flight", &lock(&self.calls).by_key.len())
            .finish()
    }
}

// Every update is one insert, removal or count under the lock, so a poisoned table is still
// consistent.
fn lock<T>(calls: &Mutex<Calls<T>>) -> MutexGuard<'_, Calls<T>> {
    calls.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Forgets call `id` of `key`, if it is still the one in the table (a later call of the same
/// key is left alone).
fn forget<T>(calls: &Mutex<Calls<T>>, key: &str, id: u64) {
    let mut calls = lock(calls);
    if calls.by_key.get(key).is_some_and(|e| e.id == id) {
        calls.by_key.remove(key);
    }
}

/// One caller's hold on a call: when the last caller is gone (answered or cancelled) before
/// the call completed, the call is forgotten, and dropped with the last handle on it.
struct Waiter<'a, T> {
    calls: &'a Mutex<Calls<T>>,
    key: &'a str,
    id: u64,
}

impl<T> Drop for Waiter<'_, T> {
    fn drop(&mut self) {
        let mut calls = lock(self.calls);
        if let Some(entry) = calls.by_key.get_mut(self.key)
            && entry.id == self.id
        {
            entry.waiters -= 1;
            if entry.waiters == 0 {
                calls.by_key.remove(self.key);
            }
        }
    }
}

impl<T: Clone + Send + Sync + 'static> SingleFlight<T> {
    /// The result of `start()` for `key`, or of the call for `key` already in flight. The call
    /// is in flight from its start until it completes, whichever of its callers started it
    /// and whichever of them are cancelled meanwhile, as long as one still waits for it; a
    /// caller after that starts a new call.
    pub async fn run<F>(&self, key: &str, start: impl FnOnce() -> F) -> T
    where
        F: Future<Output = T> + Send + 'static,
    {
        let (call, id) = {
            let mut calls = lock(&self.calls);
            match calls.by_key.get_mut(key) {
                Some(entry) => {
                    entry.waiters += 1;
                    (entry.call.clone(), entry.id)
                }
                None => {
                    let id = calls.next_id;
                    calls.next_id += 1;
                    let call =
                        Self::forgotten_when_done(start(), Arc::downgrade(&self.calls), key, id);
                    calls.by_key.insert(
                        key.to_owned(),
                        Entry {
                            id,
                            call: call.clone(),
                            waiters: 1,
                        },
                    );
                    (call, id)
                }
            }
        };
        let _waiter = Waiter {
            calls: &self.calls,
            key,
            id,
        };
        call.await
    }

    /// `call`, shared, which takes itself out of the table the moment it completes (before
    /// any caller sees its result). The table is held weakly: the entry holds the call.
    fn forgotten_when_done<F>(
        call: F,
        calls: Weak<Mutex<Calls<T>>>,
        key: &str,
        id: u64,
    ) -> Shared<BoxFuture<'static, T>>
    where
        F: Future<Output = T> + Send + 'static,
    {
        let key = key.to_owned();
        async move {
            let out = call.await;
            if let Some(calls) = calls.upgrade() {
                forget(&calls, &key, id);
            }
            out
        }
        .boxed()
        .shared()
    }
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
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

    /// A caller of `flight` for "code" whose call counts itself in `started` and ends when
    /// `gate` opens, answering its number.
    fn caller(
        flight: &SingleFlight<u32>,
        started: &Arc<AtomicU32>,
        gate: &Shared<BoxFuture<'static, ()>>,
    ) -> Pin<Box<dyn Future<Output = u32> + Send>> {
        let (flight, started, gate) = (flight.clone(), Arc::clone(started), gate.clone());
        Box::pin(async move {
            flight
                .run("code", move || async move {
                    let n = started.fetch_add(1, Ordering::SeqCst) + 1;
                    gate.await;
                    n
                })
                .await
        })
    }

    fn poll(f: &mut Pin<Box<dyn Future<Output = u32> + Send>>) -> std::task::Poll<u32> {
        let waker = futures_util::task::noop_waker();
        f.as_mut().poll(&mut std::task::Context::from_waker(&waker))
    }

    #[test]
    fn a_cancelled_starter_leaves_the_call_to_those_still_waiting() {
        let flight = SingleFlight::<u32>::default();
        let started = Arc::new(AtomicU32::new(0));
        let (release, gate) = futures_channel_free_gate();
        let mut starter = caller(&flight, &started, &gate);
        let mut waiter = caller(&flight, &started, &gate);
        assert!(poll(&mut starter).is_pending());
        assert!(poll(&mut waiter).is_pending());
        drop(starter);
        assert_eq!(format!("{flight:?}"), "SingleFlight { in_flight: 1 }");

        // Joins the call still in flight instead of starting a second one.
        let mut late = caller(&flight, &started, &gate);
        assert!(poll(&mut late).is_pending());
        release();
        assert_eq!(poll(&mut waiter), std::task::Poll::Ready(1));
        assert_eq!(poll(&mut late), std::task::Poll::Ready(1));
        assert_eq!(started.load(Ordering::SeqCst), 1, "one call for all");
        assert_eq!(format!("{flight:?}"), "SingleFlight { in_flight: 0 }");
    }

    #[test]
    fn the_call_ends_when_it_completes_or_its_last_waiter_goes() {
        let flight = SingleFlight::<u32>::default();
        let started = Arc::new(AtomicU32::new(0));
        let (release, gate) = futures_channel_free_gate();

        // Completed: forgotten at once, though the starter has not seen the result yet.
        let mut starter = caller(&flight, &started, &gate);
        let mut waiter = caller(&flight, &started, &gate);
        assert!(poll(&mut starter).is_pending());
        release();
        assert_eq!(poll(&mut waiter), std::task::Poll::Ready(1));
        assert_eq!(format!("{flight:?}"), "SingleFlight { in_flight: 0 }");
        let mut after = caller(&flight, &started, &gate);
        assert_eq!(poll(&mut after), std::task::Poll::Ready(2), "a new call");
        assert_eq!(poll(&mut starter), std::task::Poll::Ready(1));

        // Abandoned by everyone: forgotten, and the next caller starts anew.
        let (_never, closed) = futures_channel_free_gate();
        let mut alone = caller(&flight, &started, &closed);
        assert!(poll(&mut alone).is_pending());
        drop(alone);
        assert_eq!(format!("{flight:?}"), "SingleFlight { in_flight: 0 }");
        let mut next = caller(&flight, &started, &gate);
        assert_eq!(poll(&mut next), std::task::Poll::Ready(4));
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
