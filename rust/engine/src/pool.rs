//! A persistent worker pool for the many short parallel steps of a forward
//! pass.
//!
//! A decode step of a small model makes a few hundred dispatches of a few
//! microseconds of work each. So the pool keeps its workers spinning for a
//! while after each dispatch, and back-to-back dispatches find them awake.
//! An idle model parks them instead of burning cores.
//!
//! One dispatch: the caller stores the job (a pointer to the task function
//! and the task count), then publishes it by storing a new `state` word with
//! a fresh generation and the open bit. Workers join by incrementing the
//! active count inside `state` with a compare-and-swap that only succeeds
//! while that generation is open, then claim task indices. Each thread
//! (the caller is thread 0) owns a contiguous range of tasks with its own
//! counter, and after its range it claims from the other threads' counters,
//! so threads contend for a counter only near the end of a dispatch and
//! each streams through neighbouring weight rows. When no task is left, the
//! caller clears the open bit,
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

/// Row-wise steps over fewer rows than this (a decode step's) run on the
/// calling thread, because a dispatch costs more than a few rows.
pub const MIN_ROWS_TO_SPLIT: usize = 16;

/// How long an idle worker spins after its last dispatch before it parks.
/// Dispatches inside a decode step come microseconds apart, and decode
/// steps driven from Python some tens of microseconds apart, so workers
/// stay awake through a decode loop, while an idle model parks them within
/// a millisecond.
// NOTE: an estimate, not tuned: the shared 2-core machine it was written on
// never stayed idle long enough to compare values.
const SPIN_BEFORE_PARK: Duration = Duration::from_micros(500);

/// Spin iterations (about a microsecond) between two yields of a waiting
/// thread. Yielding lets another runnable thread on the same core go
/// first: on a machine with more runnable threads than cores, a worker
/// that spun without yielding would take half the caller's core while the
/// caller does the work. On an idle core a yield returns at once.
const SPINS_PER_YIELD: u32 = 64;

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
    backoff: Backoff,
    stats: Counters,
}

/// Counters of the time the pool's dispatches cost the calling thread,
/// summed since the pool started or since the last [`WorkerPool::take_stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Dispatches that used the workers.
    pub dispatches: u64,
    /// Time the caller spent running its own share of their tasks.
    pub own: Duration,
    /// Time the caller then waited for workers to finish theirs.
    pub wait: Duration,
}

#[derive(Default)]
struct Counters {
    dispatches: AtomicU64,
    own_ns: AtomicU64,
    wait_ns: AtomicU64,
}

/// Inline runs after stalls. When the OS preempts a worker in the middle of
/// a task (the machine has more runnable threads than cores), the caller
/// waits a whole scheduler time slice for it, which costs more than the
/// dispatch saves. After such a stall the pool runs the next `length`
/// dispatches on the caller alone, and doubles `length` on each further
/// stall, so a crowded machine gets close to one-thread speed instead of
/// far below it. Only the caller that owns `busy` updates the fields (hence
/// relaxed atomics), except `inline_left`, which any caller decrements or
/// clears by compare-and-swap (see `take_inline`).
struct Backoff {
    /// Dispatches still to run inline.
    inline_left: AtomicUsize,
    /// When the current inline spell ends at the latest, in nanoseconds
    /// since `epoch` (see [`INLINE_TIME_PER_DISPATCH`]).
    inline_until_ns: AtomicU64,
    epoch: Instant,
    /// Inline dispatches after the next stall.
    length: AtomicUsize,
    /// Dispatches without a stall since the last one.
    clean_streak: AtomicUsize,
}

/// Inline dispatches after a first stall: a few decode steps of a small model.
const MIN_BACKOFF: usize = 1 << 10;
/// Cap of the doubling: about a second of decode for a small model.
const MAX_BACKOFF: usize = 1 << 16;
/// An inline spell of `length` dispatches also ends after `length` times
/// this. 1024 decode dispatches of a small model take about 20 ms, but
/// 1024 dispatches of a 512-token prefill take seconds, and a single stall
/// (a page fault, a host hiccup) should not cost seconds on one thread.
const INLINE_TIME_PER_DISPATCH: Duration = Duration::from_micros(100);
/// Dispatches without a stall after which a stall counts as a first one.
const CLEAN_STREAK_RESET: usize = 1 << 14;
/// A wait for workers counts as a stall when it exceeds twice the caller's
/// own time in the dispatch plus this margin, because in a balanced
/// dispatch the wait is at most one task, which the caller's time covers.
/// The margin is about a scheduler time slice: with 100 us, hiccups of the
/// shared VM on an otherwise idle machine triggered inline runs, and
/// Gemma 3 270M's 512-token prefill fell from a median of 812-816 to
/// 717-787 tok/s.
const STALL_MARGIN: Duration = Duration::from_millis(2);

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
    /// Written only by the caller that owns `busy`, while the job is closed
    /// and no worker is active. Read by workers that joined.
    job: UnsafeCell<Job>,
    /// Next task of each thread's range (see [`task_range`]), each on its
    /// own cache line because every claim writes it.
    next_task: Box<[CachePadded<AtomicUsize>]>,
    /// Set by the first task that panics; stops handing out tasks.
    panicked: AtomicBool,
    panic_payload: Mutex<Option<Box<dyn Any + Send>>>,
    shutdown: AtomicBool,
    /// Workers blocked (or about to block) on `wake`.
    n_sleeping: AtomicUsize,
    sleep_lock: Mutex<()>,
    wake: Condvar,
}

/// A value aligned to 128 bytes: two 64-byte cache lines, because x86
/// cores prefetch lines in adjacent pairs.
#[repr(align(128))]
struct CachePadded<T>(T);

impl<T> std::ops::Deref for CachePadded<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
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
            next_task: (0..n_threads).map(|_| CachePadded(AtomicUsize::new(0))).collect(),
            panicked: AtomicBool::new(false),
            panic_payload: Mutex::new(None),
            shutdown: AtomicBool::new(false),
            n_sleeping: AtomicUsize::new(0),
            sleep_lock: Mutex::new(()),
            wake: Condvar::new(),
        });
        let mut pool = WorkerPool { shared, workers: Vec::with_capacity(n_threads - 1), n_threads, busy: AtomicBool::new(false), backoff: Backoff::new(), stats: Counters::default() };
        for i in 1..n_threads {
            let shared = Arc::clone(&pool.shared);
            let handle = thread::Builder::new().name(format!("turbokv-worker-{i}")).spawn(move || worker_loop(&shared, i))?;
            // On an error above, dropping `pool` stops the workers started so far.
            pool.workers.push(handle);
        }
        Ok(pool)
    }

    pub fn n_threads(&self) -> usize {
        self.n_threads
    }

    /// Returns the dispatch counters and sets them to zero.
    pub fn take_stats(&self) -> PoolStats {
        let c = &self.stats;
        PoolStats {
            dispatches: c.dispatches.swap(0, Ordering::Relaxed),
            own: Duration::from_nanos(c.own_ns.swap(0, Ordering::Relaxed)),
            wait: Duration::from_nanos(c.wait_ns.swap(0, Ordering::Relaxed)),
        }
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
        if n_tasks == 1 || self.workers.is_empty() || self.backoff.take_inline() || !self.try_acquire() {
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

    /// Calls `f(first_row, rows)` on chunks of whole `row_len`-element rows
    /// of `data`, a few chunks per thread. Fewer than
    /// [`MIN_ROWS_TO_SPLIT`] rows go to one call on the calling thread.
    pub fn for_row_chunks<T: Send>(&self, data: &mut [T], row_len: usize, f: impl Fn(usize, &mut [T]) + Sync) {
        let n_rows = data.len() / row_len;
        if n_rows < MIN_ROWS_TO_SPLIT || self.n_threads == 1 {
            f(0, data);
            return;
        }
        let n_tasks = 4 * self.n_threads;
        let rows_per_task = (n_rows + n_tasks - 1) / n_tasks;
        self.for_each_chunk_mut(data, rows_per_task * row_len, |task, chunk| f(task * rows_per_task, chunk));
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
        for (thread, next) in shared.next_task.iter().enumerate() {
            next.store(task_range(thread, self.n_threads, n_tasks).start, Ordering::Relaxed);
        }
        let state = shared.state.load(Ordering::Relaxed);
        let next_generation = ((generation(state) + 1) & 0xffff_ffff) << GENERATION_SHIFT;
        shared.state.store(next_generation | OPEN, Ordering::SeqCst);
        if shared.n_sleeping.load(Ordering::SeqCst) > 0 {
            let _guard = shared.sleep_lock.lock().unwrap_or_else(|e| e.into_inner());
            shared.wake.notify_all();
        }

        let start = Instant::now();
        run_tasks(shared, 0, f, n_tasks);
        shared.state.fetch_and(!OPEN, Ordering::SeqCst);
        let own_time = start.elapsed();
        let waited = wait_for_workers(shared);
        self.backoff.record(waited > own_time * 2 + STALL_MARGIN);
        self.stats.dispatches.fetch_add(1, Ordering::Relaxed);
        self.stats.own_ns.fetch_add(own_time.as_nanos() as u64, Ordering::Relaxed);
        self.stats.wait_ns.fetch_add(waited.as_nanos() as u64, Ordering::Relaxed);

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

/// Tasks owned by `thread` when `n_tasks` are split over `n_threads`.
fn task_range(thread: usize, n_threads: usize, n_tasks: usize) -> std::ops::Range<usize> {
    thread * n_tasks / n_threads..(thread + 1) * n_tasks / n_threads
}

/// Claims and runs tasks until none is left: first from `thread`'s range,
/// then from the ranges after it. A panic is stored for the caller and
/// stops the hand-out of further tasks.
fn run_tasks(shared: &Shared, thread: usize, f: &(dyn Fn(usize) + Sync), n_tasks: usize) {
    let n_threads = shared.next_task.len();
    let result = panic::catch_unwind(AssertUnwindSafe(|| {
        for owner in (thread..n_threads).chain(0..thread) {
            let end = task_range(owner, n_threads, n_tasks).end;
            let next = &shared.next_task[owner];
            while !shared.panicked.load(Ordering::Relaxed) {
                let task = next.fetch_add(1, Ordering::Relaxed);
                if task >= end {
                    break;
                }
                f(task);
            }
        }
    }));
    if let Err(payload) = result {
        shared.panicked.store(true, Ordering::Relaxed);
        let mut slot = shared.panic_payload.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            *slot = Some(payload);
        }
    }
}

/// Waits until no worker is inside the closed job and returns how long
/// that took. Spins, because the remaining tasks are usually microseconds
/// long.
fn wait_for_workers(shared: &Shared) -> Duration {
    if shared.state.load(Ordering::Acquire) & ACTIVE_MASK == 0 {
        return Duration::ZERO;
    }
    let start = Instant::now();
    let mut spins = 0u32;
    while shared.state.load(Ordering::Acquire) & ACTIVE_MASK != 0 {
        spins += 1;
        if spins % SPINS_PER_YIELD != 0 {
            std::hint::spin_loop();
        } else {
            thread::yield_now();
        }
    }
    start.elapsed()
}

impl Backoff {
    fn new() -> Backoff {
        Backoff {
            inline_left: AtomicUsize::new(0),
            inline_until_ns: AtomicU64::new(0),
            epoch: Instant::now(),
            length: AtomicUsize::new(MIN_BACKOFF),
            clean_streak: AtomicUsize::new(0),
        }
    }

    /// Returns whether this dispatch should run inline, counting it. A
    /// spell past its time limit ends here.
    fn take_inline(&self) -> bool {
        let mut left = self.inline_left.load(Ordering::Acquire);
        loop {
            if left == 0 {
                return false;
            }
            let expired = self.now_ns() >= self.inline_until_ns.load(Ordering::Relaxed);
            let next = if expired { 0 } else { left - 1 };
            match self.inline_left.compare_exchange_weak(left, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return !expired,
                Err(current) => left = current,
            }
        }
    }

    fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    fn record(&self, stalled: bool) {
        if !stalled {
            self.clean_streak.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let mut length = self.length.load(Ordering::Relaxed);
        if self.clean_streak.swap(0, Ordering::Relaxed) >= CLEAN_STREAK_RESET {
            length = MIN_BACKOFF;
        }
        let spell = INLINE_TIME_PER_DISPATCH * length as u32;
        log::debug!("a worker stalled a dispatch; running the next {length} dispatches (at most {spell:?}) on the caller alone");
        // Release pairs with the Acquire loads in `take_inline`, so a caller
        // that reads the new count also reads the new time limit.
        self.inline_until_ns.store(self.now_ns() + spell.as_nanos() as u64, Ordering::Relaxed);
        self.inline_left.store(length, Ordering::Release);
        self.length.store((length * 2).min(MAX_BACKOFF), Ordering::Relaxed);
    }
}

fn worker_loop(shared: &Shared, thread: usize) {
    let mut seen = 0u64;
    while let Some(state) = wait_for_job(shared, seen) {
        seen = generation(state);
        if try_join(shared, state) {
            // SAFETY: the job stays valid and unchanged while this worker
            // is counted as active.
            let job = unsafe { *shared.job.get() };
            run_tasks(shared, thread, unsafe { &*job.f }, job.n_tasks);
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
        if spins % SPINS_PER_YIELD != 0 {
            std::hint::spin_loop();
        } else if start.elapsed() > SPIN_BEFORE_PARK {
            return park_until_job(shared, seen);
        } else {
            thread::yield_now();
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
    fn for_row_chunks_pass_whole_rows() {
        let pool = WorkerPool::new(2).unwrap();
        for n_rows in [1, MIN_ROWS_TO_SPLIT - 1, MIN_ROWS_TO_SPLIT, 101] {
            let row_len = 3;
            let mut data = vec![0usize; n_rows * row_len];
            pool.for_row_chunks(&mut data, row_len, |first, rows| {
                assert_eq!(rows.len() % row_len, 0, "{n_rows} rows");
                for (i, x) in rows.iter_mut().enumerate() {
                    *x = first * row_len + i;
                }
            });
            assert!(data.iter().enumerate().all(|(i, &x)| i == x), "{n_rows} rows: {data:?}");
        }
    }

    #[test]
    fn stats_count_dispatches() {
        let pool = WorkerPool::new(2).unwrap();
        pool.take_stats();
        for _ in 0..3 {
            pool.run(4, &|_| thread::sleep(Duration::from_micros(200)));
        }
        pool.run(1, &|_| {});

        let stats = pool.take_stats();
        // The one-task run stays on the caller, so at most the three 4-task
        // runs count. After a stall the pool runs later ones inline, so fewer may.
        assert!((1..=3).contains(&stats.dispatches), "{stats:?}");
        assert!(stats.own + stats.wait >= Duration::from_micros(200) * stats.dispatches as u32, "{stats:?}");
        assert_eq!(pool.take_stats(), PoolStats::default());
    }

    #[test]
    fn stall_runs_inline_for_bounded_time() {
        let backoff = Backoff::new();
        assert!(!backoff.take_inline());

        backoff.record(true);
        assert!(backoff.take_inline());
        assert_eq!(backoff.inline_left.load(Ordering::Relaxed), MIN_BACKOFF - 1);

        thread::sleep(INLINE_TIME_PER_DISPATCH * MIN_BACKOFF as u32 + Duration::from_millis(5));
        assert!(!backoff.take_inline());
        assert_eq!(backoff.inline_left.load(Ordering::Relaxed), 0);
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

    /// Prints the cost of one dispatch with 1 to 4 threads. It times an
    /// empty 8-task `run`, and 8 tasks of 2 microseconds each against their
    /// ideal time (16 us over the threads), with the share of tasks that
    /// workers ran. Run it with
    /// `cargo test --release -p turbokv-engine --lib dispatch_cost -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn dispatch_cost() {
        const N_DISPATCHES: usize = 20_000;
        const TASK_MICROS: f64 = 2.0;
        let caller = thread::current().id();
        for n_threads in 1..=4 {
            let pool = WorkerPool::new(n_threads).unwrap();
            let (empty, empty_p90) = median_and_p90(N_DISPATCHES, || pool.run(8, &|_| {}));
            let on_workers = AtomicUsize::new(0);
            let (busy, busy_p90) = median_and_p90(N_DISPATCHES, || {
                pool.run(8, &|_| {
                    busy_work(TASK_MICROS);
                    if thread::current().id() != caller {
                        on_workers.fetch_add(1, Ordering::Relaxed);
                    }
                })
            });
            let ideal = 8.0 * TASK_MICROS / n_threads as f64;
            let worker_share = on_workers.into_inner() as f64 / (8 * N_DISPATCHES) as f64;
            println!(
                "{n_threads} threads: empty 8-task run median {empty:.2} us (p90 {empty_p90:.2}); \
                 8 x {TASK_MICROS} us tasks median {busy:.2} us (p90 {busy_p90:.2}), {:.2} us over the ideal {ideal:.1} us, \
                 {:.0}% of tasks on workers",
                busy - ideal,
                worker_share * 100.0
            );
        }
    }
}
