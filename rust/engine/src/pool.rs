//! A persistent worker pool for the many short parallel steps of a forward
//! pass.
//!
//! A decode step of a small model makes a few hundred dispatches of a few
//! microseconds of work each, so the pool keeps its workers spinning for a
//! while after each dispatch: back-to-back dispatches find them awake, and an
//! idle model parks them instead of burning cores.
//!
//! One dispatch: the caller stores the job (a pointer to the task function
//! and the task count), then publishes it by storing a new `state` word with
//! a fresh generation and the open bit. Workers join by incrementing the
//! active count inside `state` with a compare-and-swap that only succeeds
//! while that generation is open, then claim task indices from `next_task`.
//! The caller claims tasks too. When no task is left it clears the open bit,
//! so no late worker can join, and waits until the active count drops to
//! zero: every claimed task has then finished, and no worker still holds a
//! reference to the job.

use std::any::Any;
use std::cell::UnsafeCell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How long an idle worker spins after its last dispatch before it parks.
/// Measured on a 2-core AMD EPYC (see the dispatch cost notes in
/// BENCHMARKS.md): the gaps between dispatches inside a decode step are a few
/// microseconds, and the gap between decode steps through Python is about
/// 100-300 microseconds, so 500 microseconds keeps a decode loop awake while
/// an idle model parks within a millisecond.
const SPIN_BEFORE_PARK: Duration = Duration::from_micros(500);

/// How long the caller spins on workers still running tasks before it
/// starts yielding its core (to a worker the OS may have descheduled).
const SPIN_BEFORE_YIELD: Duration = Duration::from_micros(50);

/// Spin iterations between two reads of the clock.
const SPINS_PER_CLOCK_READ: u32 = 64;

// Layout of `Shared::state`: generation in the high 32 bits, the open bit,
// then the count of workers inside the current job.
const GENERATION_SHIFT: u32 = 32;
const OPEN: u64 = 1 << 31;
const ACTIVE_MASK: u64 = OPEN - 1;

fn generation(state: u64) -> u64 {
    state >> GENERATION_SHIFT
}

/// A pool of `n_threads - 1` worker threads that run tasks together with
/// the calling thread.
pub struct WorkerPool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    n_threads: usize,
    /// Set while a dispatch uses the workers. A `run` that finds it set
    /// (a nested `run` from inside a task, or a second thread calling the
    /// same pool) runs its tasks inline on its own thread.
    busy: AtomicBool,
}

/// The task function and task count of the current dispatch.
#[derive(Clone, Copy)]
struct Job {
    /// Points to the caller's `f`, valid until the caller has seen the
    /// active count drop to zero after closing the job.
    f: *const (dyn Fn(usize) + Sync),
    n_tasks: usize,
}

struct Shared {
    /// Generation, open bit and active worker count (see the constants).
    state: AtomicU64,
    /// Written only by the caller that holds `busy`, while the job is
    /// closed and no worker is active; read by workers that joined.
    job: UnsafeCell<Job>,
    next_task: AtomicUsize,
    /// Set by the first task that panics; stops handing out tasks.
    panicked: AtomicBool,
    panic_payload: Mutex<Option<Box<dyn Any + Send>>>,
    shutdown: AtomicBool,
    /// Workers blocked (or about to block) on `wake`.
    n_sleeping: AtomicUsize,
    sleep_lock: Mutex<()>,
    wake: Condvar,
}

// SAFETY: `job` is written only while no worker can read it (see the field),
// and the function it points to is `Sync`.
unsafe impl Sync for Shared {}
unsafe impl Send for Shared {}

fn noop(_: usize) {}

impl WorkerPool {
    /// Starts `n_threads - 1` workers; `n_threads` 0 or 1 starts none and
    /// runs every task on the caller.
    pub fn new(n_threads: usize) -> std::io::Result<WorkerPool> {
        let n_threads = n_threads.max(1);
        let idle: &'static (dyn Fn(usize) + Sync) = &noop;
        let shared = Arc::new(Shared {
            state: AtomicU64::new(0),
            job: UnsafeCell::new(Job { f: idle, n_tasks: 0 }),
            next_task: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            panic_payload: Mutex::new(None),
            shutdown: AtomicBool::new(false),
            n_sleeping: AtomicUsize::new(0),
            sleep_lock: Mutex::new(()),
            wake: Condvar::new(),
        });
        let mut pool = WorkerPool { shared, workers: Vec::with_capacity(n_threads - 1), n_threads, busy: AtomicBool::new(false) };
        for i in 1..n_threads {
            let shared = Arc::clone(&pool.shared);
            let handle = thread::Builder::new().name(format!("turbokv-worker-{i}")).spawn(move || worker_loop(&shared))?;
            // On an error above, dropping `pool` stops the workers started so far.
            pool.workers.push(handle);
        }
        Ok(pool)
    }

    pub fn n_threads(&self) -> usize {
        self.n_threads
    }

    /// Runs `f(task)` for every task in `0..n_tasks` on the workers and the
    /// calling thread; returns when all finished.
    ///
    /// Tasks run in no set order. If a task panics, tasks not yet started
    /// are skipped and the panic resumes on the caller once every running
    /// task has finished.
    pub fn run(&self, n_tasks: usize, f: &(dyn Fn(usize) + Sync)) {
        if n_tasks == 0 {
            return;
        }
        if n_tasks == 1 || self.workers.is_empty() || !self.try_acquire() {
            (0..n_tasks).for_each(f);
            return;
        }
        let _release = Release(&self.busy);
        self.dispatch(n_tasks, f);
    }

    /// Calls `f(i, chunk)` for each `chunk_len`-element chunk of `data`
    /// (the last may be shorter), one task per chunk.
    pub fn for_each_chunk_mut<T: Send>(&self, data: &mut [T], chunk_len: usize, f: impl Fn(usize, &mut [T]) + Sync) {
        assert!(chunk_len > 0, "chunk_len must be at least 1");
        let len = data.len();
        let base = SendPtr(data.as_mut_ptr());
        self.run((len + chunk_len - 1) / chunk_len, &|i| {
            let base = base;
            let start = i * chunk_len;
            let n = chunk_len.min(len - start);
            // SAFETY: each task index is run once, so chunks are disjoint,
            // and `data` is borrowed mutably until `run` returns.
            let chunk = unsafe { std::slice::from_raw_parts_mut(base.0.add(start), n) };
            f(i, chunk);
        });
    }

    fn try_acquire(&self) -> bool {
        self.busy.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).is_ok()
    }

    fn dispatch(&self, n_tasks: usize, f: &(dyn Fn(usize) + Sync)) {
        let shared = &*self.shared;

        // SAFETY: the previous job is closed with no active worker, so no
        // thread reads `job`. Erasing the lifetime of `f` is sound because
        // this function does not return before every worker left the job.
        unsafe {
            let f: *const (dyn Fn(usize) + Sync + '_) = f;
            *shared.job.get() = Job { f: std::mem::transmute(f), n_tasks };
        }
        shared.next_task.store(0, Ordering::Relaxed);
        let state = shared.state.load(Ordering::Relaxed);
        let next_generation = ((generation(state) + 1) & 0xffff_ffff) << GENERATION_SHIFT;
        shared.state.store(next_generation | OPEN, Ordering::SeqCst);
        if shared.n_sleeping.load(Ordering::SeqCst) > 0 {
            let _guard = shared.sleep_lock.lock().unwrap_or_else(|e| e.into_inner());
            shared.wake.notify_all();
        }

        run_tasks(shared, f, n_tasks);
        shared.state.fetch_and(!OPEN, Ordering::SeqCst);
        wait_for_workers(shared);

        if shared.panicked.load(Ordering::Relaxed) {
            shared.panicked.store(false, Ordering::Relaxed);
            let payload = shared.panic_payload.lock().unwrap_or_else(|e| e.into_inner()).take();
            panic::resume_unwind(payload.unwrap_or_else(|| Box::new("a worker pool task panicked")));
        }
    }
}

impl Drop for WorkerPool {
    fn drop(&mut self) {
        let shared = &*self.shared;
        shared.shutdown.store(true, Ordering::SeqCst);
        {
            let _guard = shared.sleep_lock.lock().unwrap_or_else(|e| e.into_inner());
            shared.wake.notify_all();
        }
        for handle in self.workers.drain(..) {
            // Tasks run under catch_unwind, so a worker only fails to join
            // if the pool's own code panicked; there is nothing to recover.
            if handle.join().is_err() {
                log::error!("a turbokv worker thread panicked outside a task");
            }
        }
    }
}

/// Clears the `busy` flag when the dispatch ends, also by a panic.
struct Release<'a>(&'a AtomicBool);

impl Drop for Release<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

struct SendPtr<T>(*mut T);

impl<T> Clone for SendPtr<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for SendPtr<T> {}
// SAFETY: used only to hand disjoint chunks of one slice to tasks.
unsafe impl<T: Send> Send for SendPtr<T> {}
unsafe impl<T: Send> Sync for SendPtr<T> {}

/// Claims and runs tasks until none is left. A panic is stored for the
/// caller and stops the hand-out of further tasks.
fn run_tasks(shared: &Shared, f: &(dyn Fn(usize) + Sync), n_tasks: usize) {
    let result = panic::catch_unwind(AssertUnwindSafe(|| loop {
        let task = shared.next_task.fetch_add(1, Ordering::Relaxed);
        if task >= n_tasks {
            break;
        }
        f(task);
    }));
    if let Err(payload) = result {
        shared.next_task.store(n_tasks, Ordering::Relaxed);
        let mut slot = shared.panic_payload.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            *slot = Some(payload);
        }
        shared.panicked.store(true, Ordering::Relaxed);
    }
}

/// Waits until no worker is inside the closed job. Spins first, because
/// the remaining tasks are usually microseconds long.
fn wait_for_workers(shared: &Shared) {
    let start = Instant::now();
    let mut spins = 0u32;
    while shared.state.load(Ordering::Acquire) & ACTIVE_MASK != 0 {
        spins += 1;
        if spins % SPINS_PER_CLOCK_READ != 0 {
            std::hint::spin_loop();
        } else if start.elapsed() > SPIN_BEFORE_YIELD {
            thread::yield_now();
        }
    }
}

fn worker_loop(shared: &Shared) {
    let mut seen = 0u64;
    while let Some(state) = wait_for_job(shared, seen) {
        seen = generation(state);
        if try_join(shared, state) {
            // SAFETY: the job stays valid and unchanged while this worker
            // is counted as active.
            let job = unsafe { *shared.job.get() };
            run_tasks(shared, unsafe { &*job.f }, job.n_tasks);
            shared.state.fetch_sub(1, Ordering::Release);
        }
    }
}

/// Counts this worker into the job of `state`'s generation if that job is
/// still open; returns whether it joined.
fn try_join(shared: &Shared, mut state: u64) -> bool {
    let job_generation = generation(state);
    while generation(state) == job_generation && state & OPEN != 0 {
        match shared.state.compare_exchange_weak(state, state + 1, Ordering::Acquire, Ordering::Relaxed) {
            Ok(_) => return true,
            Err(current) => state = current,
        }
    }
    false
}

/// Returns the first state whose generation differs from `seen`, spinning
/// for [`SPIN_BEFORE_PARK`] and then blocking; `None` on shutdown.
fn wait_for_job(shared: &Shared, seen: u64) -> Option<u64> {
    let start = Instant::now();
    let mut spins = 0u32;
    loop {
        let state = shared.state.load(Ordering::Acquire);
        if generation(state) != seen {
            return Some(state);
        }
        if shared.shutdown.load(Ordering::Relaxed) {
            return None;
        }
        spins += 1;
        if spins % SPINS_PER_CLOCK_READ != 0 {
            std::hint::spin_loop();
        } else if start.elapsed() > SPIN_BEFORE_PARK {
            return park_until_job(shared, seen);
        }
    }
}

fn park_until_job(shared: &Shared, seen: u64) -> Option<u64> {
    let mut guard = shared.sleep_lock.lock().unwrap_or_else(|e| e.into_inner());
    shared.n_sleeping.fetch_add(1, Ordering::SeqCst);
    // The caller stores the new state before it reads `n_sleeping`, and
    // this thread counts itself before it reads the state (both SeqCst), so
    // either this read sees the new job or the caller sees a sleeper and
    // notifies under `sleep_lock`, which this thread holds until it waits.
    let result = loop {
        let state = shared.state.load(Ordering::SeqCst);
        if generation(state) != seen {
            break Some(state);
        }
        if shared.shutdown.load(Ordering::SeqCst) {
            break None;
        }
        guard = shared.wake.wait(guard).unwrap_or_else(|e| e.into_inner());
    };
    shared.n_sleeping.fetch_sub(1, Ordering::SeqCst);
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    fn counts_after_run(pool: &WorkerPool, n_tasks: usize) -> Vec<u32> {
        let counts: Vec<AtomicU32> = (0..n_tasks).map(|_| AtomicU32::new(0)).collect();
        pool.run(n_tasks, &|i| {
            counts[i].fetch_add(1, Ordering::Relaxed);
        });
        counts.into_iter().map(|c| c.into_inner()).collect()
    }

    /// Waits until every worker of `pool` is blocked on the condition
    /// variable; a busy machine may take a while to schedule them.
    fn wait_until_parked(pool: &WorkerPool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while pool.shared.n_sleeping.load(Ordering::SeqCst) < pool.workers.len() {
            assert!(Instant::now() < deadline, "workers did not park within 10 s");
            thread::sleep(SPIN_BEFORE_PARK);
        }
    }

    #[test]
    fn run_calls_each_task_once() {
        for n_threads in [1, 2, 4] {
            let pool = WorkerPool::new(n_threads).unwrap();
            for n_tasks in [0, 1, 2, 7, 64, 1000] {
                for _ in 0..20 {
                    let counts = counts_after_run(&pool, n_tasks);
                    assert!(counts.iter().all(|&c| c == 1), "{n_threads} threads, {n_tasks} tasks: {counts:?}");
                }
            }
        }
    }

    #[test]
    fn run_after_workers_park() {
        let pool = WorkerPool::new(3).unwrap();
        for _ in 0..3 {
            wait_until_parked(&pool);
            let counts = counts_after_run(&pool, 100);
            assert!(counts.iter().all(|&c| c == 1));
        }
    }

    #[test]
    fn for_each_chunk_mut_covers_slice() {
        let pool = WorkerPool::new(2).unwrap();
        let mut data = vec![0usize; 1001];
        pool.for_each_chunk_mut(&mut data, 64, |i, chunk| {
            for (j, x) in chunk.iter_mut().enumerate() {
                *x = i * 64 + j;
            }
        });
        assert!(data.iter().enumerate().all(|(i, &x)| i == x));
    }

    #[test]
    fn nested_run_runs_inline() {
        let pool = WorkerPool::new(2).unwrap();
        let total = AtomicUsize::new(0);
        pool.run(8, &|_| {
            pool.run(8, &|_| {
                total.fetch_add(1, Ordering::Relaxed);
            });
        });
        assert_eq!(total.into_inner(), 64);
    }

    #[test]
    fn concurrent_callers_share_pool() {
        let pool = WorkerPool::new(2).unwrap();
        thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for n_tasks in 1..300 {
                        let counts = counts_after_run(&pool, n_tasks);
                        assert!(counts.iter().all(|&c| c == 1), "{n_tasks} tasks: {counts:?}");
                    }
                });
            }
        });
    }

    #[test]
    fn task_panic_reaches_caller() {
        let pool = WorkerPool::new(2).unwrap();
        for _ in 0..50 {
            let result = panic::catch_unwind(AssertUnwindSafe(|| {
                pool.run(16, &|i| {
                    if i == 5 {
                        panic!("task 5 failed");
                    }
                })
            }));
            let payload = result.expect_err("the panic of task 5 must reach the caller");
            assert_eq!(payload.downcast_ref::<&str>(), Some(&"task 5 failed"));
        }
        // The workers survive and the pool still runs every task.
        let counts = counts_after_run(&pool, 100);
        assert!(counts.iter().all(|&c| c == 1));
    }

    #[test]
    fn drop_joins_parked_and_spinning_workers() {
        let spinning = WorkerPool::new(4).unwrap();
        counts_after_run(&spinning, 10);
        drop(spinning);

        let parked = WorkerPool::new(4).unwrap();
        wait_until_parked(&parked);
        drop(parked);
    }

    /// Spins for about `micros` microseconds, standing in for a task's work.
    fn busy_work(micros: f64) {
        let start = Instant::now();
        while start.elapsed().as_secs_f64() * 1e6 < micros {
            std::hint::spin_loop();
        }
    }

    /// Returns the median and 90th percentile of `n` timings of `step`, in
    /// microseconds.
    fn median_and_p90(n: usize, mut step: impl FnMut()) -> (f64, f64) {
        let mut times: Vec<f64> = (0..n)
            .map(|_| {
                let start = Instant::now();
                step();
                start.elapsed().as_secs_f64() * 1e6
            })
            .collect();
        times.sort_by(f64::total_cmp);
        (times[n / 2], times[n * 9 / 10])
    }

    /// Prints the cost of one dispatch with 1 to 4 threads: the time of an
    /// empty 8-task `run`, and the time of 8 tasks of 2 microseconds each
    /// minus their ideal time (16 us over the threads). Run it with
    /// `cargo test --release -p turbokv-engine --lib dispatch_cost -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn dispatch_cost() {
        const N_DISPATCHES: usize = 20_000;
        const TASK_MICROS: f64 = 2.0;
        for n_threads in 1..=4 {
            let pool = WorkerPool::new(n_threads).unwrap();
            let (empty, empty_p90) = median_and_p90(N_DISPATCHES, || pool.run(8, &|_| {}));
            let (busy, busy_p90) = median_and_p90(N_DISPATCHES, || pool.run(8, &|_| busy_work(TASK_MICROS)));
            let ideal = 8.0 * TASK_MICROS / n_threads as f64;
            println!(
                "{n_threads} threads: empty 8-task run median {empty:.2} us (p90 {empty_p90:.2}); \
                 8 x {TASK_MICROS} us tasks median {busy:.2} us (p90 {busy_p90:.2}), {:.2} us over the ideal {ideal:.1} us",
                busy - ideal
            );
        }
    }
}
