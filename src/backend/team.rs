//! The CPU backend's threads: a team that runs one step's ranges (of neurons, events,
//! active slots) side by side and stays awake between the step's kernels.
//!
//! A step hands its threads work four times (release, pooled decays, cleft, integrate),
//! each a few hundred microseconds at most, between serial parts of similar length. A
//! general-purpose pool (rayon's, before) puts its idle threads to sleep within
//! microseconds, and waking one took about 100 µs on the development machine (a virtual
//! machine; measured on `coba_kinetic`, two threads: the second of the two `cleft` ranges
//! started 100 µs after the first on average, so the pair took 0.98× the time of one
//! thread's single range). The team's helpers spin instead, for 2 ms
//! (`SPIN_BEFORE_SLEEP`) after the last job that needed them, so a step's kernels reach them in
//! about a microsecond (measured: 0.85 µs on average); then they sleep until the next
//! job. A job of n items needs helpers 1 to n - 1 (the calling thread takes items too
//! and returns when every item is done): the others sleep, and are woken only by a job
//! that needs them, so a many-core machine does not spin every core for a step whose
//! kernels split into a few ranges.
//!
//! Items are claimed from one atomic word (job number, item count, next item): a helper
//! that saw an older job can never claim an item of a newer one. Results do not depend on
//! which thread runs which item (each item owns disjoint state).

use std::cell::UnsafeCell;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a helper spins after the last job that needed it before it sleeps.
const SPIN_BEFORE_SLEEP: Duration = Duration::from_millis(2);

/// Busy-wait rounds before a waiting thread also yields its core (to a helper or another
/// process on an oversubscribed machine).
const SPINS_BEFORE_YIELD: u32 = 2000;

/// Bits of the claim word: job number (32), item count (16), next item (16).
const ITEM_BITS: u32 = 16;
const MAX_ITEMS: usize = (1 << ITEM_BITS) - 1;

fn unpack(w: u64) -> (u64, usize, usize) {
    let mask = (1u64 << ITEM_BITS) - 1;
    (
        w >> (2 * ITEM_BITS),
        ((w >> ITEM_BITS) & mask) as usize,
        (w & mask) as usize,
    )
}

fn pack(job: u64, n: usize, next: usize) -> u64 {
    (job << (2 * ITEM_BITS)) | ((n as u64) << ITEM_BITS) | next as u64
}

/// The job being run: runs item `i` of the items `data` points to.
#[derive(Clone, Copy)]
struct Job {
    call: unsafe fn(*const (), usize),
    data: *const (),
}

struct Shared {
    /// (job number, item count, next item to claim).
    claim: AtomicU64,
    /// Items of the current job finished (run or panicked).
    done: AtomicUsize,
    /// Written by the caller before it publishes a job's claim word; read by a helper only
    /// after it claimed an item of that job, while the caller waits for that item.
    job: UnsafeCell<Job>,
    /// The first panic of the current job, resumed on the calling thread.
    panic: Mutex<Option<Box<dyn std::any::Any + Send>>>,
    /// Helpers asleep, bit `k` for helper `k` (bit 63 for every helper from the 63rd on:
    /// beyond 64 threads one of those waking clears it for all, and the others may sleep
    /// through a job that needs them, which then runs without them), set and cleared
    /// under `sleep`'s lock.
    asleep: AtomicU64,
    sleep: Mutex<()>,
    wake: Condvar,
    stop: AtomicBool,
}

// SAFETY: `job` is written only by the thread that owns the team, while no helper can
// read it (every item of the previous job is claimed and done), and read by helpers only
// between a successful claim and their `done` increment, which the owner waits for.
unsafe impl Sync for Shared {}
// SAFETY: the raw pointer in `job` is only dereferenced under the protocol above.
unsafe impl Send for Shared {}

impl Shared {
    /// Claims and runs items of job `job` until none is left.
    fn work(&self, job: u64) {
        let mut w = self.claim.load(Ordering::Acquire);
        loop {
            let (j, n, next) = unpack(w);
            if j != job || next >= n {
                return;
            }
            match self.claim.compare_exchange_weak(
                w,
                pack(j, n, next + 1),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    // SAFETY: item `next` of this job is claimed and not done, so the
                    // owner is waiting in `run` and `job` and its data stay valid.
                    let Job { call, data } = unsafe { *self.job.get() };
                    // SAFETY: `call` matches `data` (both written by `run` for this job)
                    // and item `next` is run by this thread only.
                    let r = catch_unwind(AssertUnwindSafe(|| unsafe { call(data, next) }));
                    if let Err(p) = r {
                        let mut slot = self.panic.lock().unwrap_or_else(|e| e.into_inner());
                        slot.get_or_insert(p);
                    }
                    self.done.fetch_add(1, Ordering::Release);
                    w = self.claim.load(Ordering::Acquire);
                }
                Err(now) => w = now,
            }
        }
    }

    /// The life of helper `rank` (1, 2, ...): work on each new job, spin while jobs keep
    /// coming that need it (a job of n items needs helpers 1 to n - 1, the caller taking
    /// items too), else sleep until one does. So on a machine with more threads than a
    /// step's ranges the helpers that never get an item sleep instead of spinning.
    fn helper(&self, rank: usize) {
        let mut seen = 0u64;
        let mut last_work = Instant::now();
        let mut spins = 0u32;
        while !self.stop.load(Ordering::Acquire) {
            let (job, n, _) = unpack(self.claim.load(Ordering::Acquire));
            if job != seen {
                seen = job;
                self.work(job);
                if rank < n {
                    last_work = Instant::now();
                }
                spins = 0;
                continue;
            }
            spins += 1;
            if spins < SPINS_BEFORE_YIELD {
                std::hint::spin_loop();
                continue;
            }
            if last_work.elapsed() < SPIN_BEFORE_SLEEP {
                std::thread::yield_now();
                continue;
            }
            // Sleep until a newer job that needs this helper (or stop). The owner
            // notifies under the lock when it sees a needed helper's bit after publishing
            // a job, and a job published before the bit was set is seen by the check
            // below (both sides sequentially consistent).
            let bit = 1u64 << rank.min(63);
            let mut guard = self.sleep.lock().unwrap_or_else(|e| e.into_inner());
            self.asleep.fetch_or(bit, Ordering::SeqCst);
            loop {
                if self.stop.load(Ordering::SeqCst) {
                    break;
                }
                let (job, n, _) = unpack(self.claim.load(Ordering::SeqCst));
                if job != seen && rank < n {
                    break;
                }
                guard = self.wake.wait(guard).unwrap_or_else(|e| e.into_inner());
            }
            self.asleep.fetch_and(!bit, Ordering::SeqCst);
            drop(guard);
            spins = 0;
            last_work = Instant::now();
        }
    }
}

/// The bits of [`Shared::asleep`] of the helpers a job of `n` items needs (1 to n - 1).
fn needed(n: usize) -> u64 {
    if n >= 64 {
        !1
    } else {
        ((1u64 << n) - 1) & !1
    }
}

/// A team of `threads` threads: the caller of [`Team::run`] and `threads - 1` helpers.
/// Not `Sync`: one thread at a time runs jobs (the claim word has one owner).
pub struct Team {
    shared: Arc<Shared>,
    helpers: Vec<JoinHandle<()>>,
    not_sync: std::marker::PhantomData<std::cell::Cell<()>>,
}

impl Team {
    /// A team of `threads` threads (at least 2; the helpers are named `quantal-cpu-K`),
    /// or None when the system refuses a thread.
    pub fn new(threads: usize) -> Option<Team> {
        let shared = Arc::new(Shared {
            claim: AtomicU64::new(0),
            done: AtomicUsize::new(0),
            job: UnsafeCell::new(Job {
                call: nothing,
                data: std::ptr::null(),
            }),
            panic: Mutex::new(None),
            asleep: AtomicU64::new(0),
            sleep: Mutex::new(()),
            wake: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let mut team = Team {
            shared,
            helpers: Vec::new(),
            not_sync: std::marker::PhantomData,
        };
        for k in 1..threads.max(2) {
            let shared = Arc::clone(&team.shared);
            let h = std::thread::Builder::new()
                .name(format!("quantal-cpu-{k}"))
                .spawn(move || shared.helper(k))
                .ok()?;
            team.helpers.push(h);
        }
        Some(team)
    }

    /// Runs `f` on every item, on the team's threads (the caller's included), and returns
    /// when all are done. A panic in `f` is resumed here after every item has finished.
    pub fn run<T: Send, F: Fn(&mut T) + Sync>(&self, items: &mut [T], f: F) {
        if items.len() <= 1 || items.len() > MAX_ITEMS {
            items.iter_mut().for_each(f);
            return;
        }
        struct Data<'a, T, F> {
            items: *mut T,
            f: &'a F,
        }
        /// # Safety
        /// `data` points to a live `Data<T, F>` and item `i` is in bounds and run once.
        unsafe fn call<T, F: Fn(&mut T)>(data: *const (), i: usize) {
            // SAFETY: by the caller's contract.
            unsafe {
                let d = &*(data as *const Data<'_, T, F>);
                (d.f)(&mut *d.items.add(i));
            }
        }
        let data = Data {
            items: items.as_mut_ptr(),
            f: &f,
        };
        let sh = &*self.shared;
        // SAFETY: no helper reads `job` now: every item of the previous job was claimed
        // and is done (the previous `run` waited for it), so no claim can succeed until
        // the new claim word below is published.
        unsafe {
            *sh.job.get() = Job {
                call: call::<T, F>,
                data: &data as *const Data<'_, T, F> as *const (),
            };
        }
        sh.done.store(0, Ordering::Relaxed);
        // Job numbers 1, 2, ... (only this thread writes the claim word; 0 is never used).
        let job = match (unpack(sh.claim.load(Ordering::Relaxed)).0 + 1) & 0xFFFF_FFFF {
            0 => 1,
            j => j,
        };
        let n = items.len();
        sh.claim.store(pack(job, n, 0), Ordering::SeqCst);
        if sh.asleep.load(Ordering::SeqCst) & needed(n) != 0 {
            let _guard = sh.sleep.lock().unwrap_or_else(|e| e.into_inner());
            sh.wake.notify_all();
        }
        sh.work(job);
        let mut spins = 0u32;
        while sh.done.load(Ordering::Acquire) < n {
            spins += 1;
            if spins < SPINS_BEFORE_YIELD {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        let panic = sh.panic.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(p) = panic {
            resume_unwind(p);
        }
    }
}

/// The job before the first: never called (no claim of job 0 can succeed).
unsafe fn nothing(_: *const (), _: usize) {}

impl Drop for Team {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        {
            let _guard = self.shared.sleep.lock().unwrap_or_else(|e| e.into_inner());
            self.shared.wake.notify_all();
        }
        for h in self.helpers.drain(..) {
            let _ = h.join();
        }
    }
}

impl std::fmt::Debug for Team {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Team")
            .field("threads", &(self.helpers.len() + 1))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_item_runs_once_on_any_team() {
        for threads in [2, 3, 8] {
            let team = Team::new(threads).expect("threads");
            for n in [0usize, 1, 2, 5, 64] {
                for round in 0..50u64 {
                    let mut items: Vec<(usize, u64)> = (0..n).map(|i| (i, 0)).collect();
                    team.run(&mut items, |it| it.1 += it.0 as u64 * 3 + round + 1);
                    for (i, &(k, v)) in items.iter().enumerate() {
                        assert_eq!(k, i);
                        assert_eq!(
                            v,
                            i as u64 * 3 + round + 1,
                            "item {i} of {n}, {threads} threads"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn a_sleeping_team_wakes_for_the_next_job() {
        let team = Team::new(2).expect("threads");
        let mut items = vec![0u32; 4];
        team.run(&mut items, |x| *x += 1);
        std::thread::sleep(SPIN_BEFORE_SLEEP * 5);
        team.run(&mut items, |x| *x += 1);
        assert_eq!(items, vec![2; 4]);
    }

    /// Jobs of two items need one helper: the others of a team of eight go to sleep
    /// while such jobs keep coming; then jobs of eight items run every item.
    #[test]
    fn helpers_a_job_does_not_need_sleep() {
        let team = Team::new(8).expect("threads");
        let sh = &*team.shared;
        let others = needed(8) & !needed(2);
        let start = Instant::now();
        let mut two = vec![0u64; 2];
        while sh.asleep.load(Ordering::SeqCst) & others != others {
            team.run(&mut two, |x| *x += 1);
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "helpers 2-7 still awake: {:b}",
                sh.asleep.load(Ordering::SeqCst)
            );
        }
        assert!(two.iter().all(|&x| x == two[0] && x > 0));
        let mut eight = vec![0u32; 8];
        for _ in 0..100 {
            team.run(&mut eight, |x| *x += 1);
        }
        assert_eq!(eight, vec![100; 8]);
    }

    #[test]
    fn a_panic_in_an_item_reaches_the_caller_after_the_others_finished() {
        let team = Team::new(4).expect("threads");
        let finished = AtomicUsize::new(0);
        let mut items: Vec<usize> = (0..8).collect();
        let r = catch_unwind(AssertUnwindSafe(|| {
            team.run(&mut items, |&mut i| {
                if i == 5 {
                    panic!("item five");
                }
                std::thread::sleep(Duration::from_millis(1));
                finished.fetch_add(1, Ordering::SeqCst);
            })
        }));
        assert!(r.is_err());
        assert_eq!(finished.load(Ordering::SeqCst), 7);
        // The team still works after a panic.
        let mut more = vec![1u8; 3];
        team.run(&mut more, |x| *x *= 2);
        assert_eq!(more, vec![2; 3]);
    }
}
