//! Lloyd-Max codebooks for the standard Gaussian, derived at first use.
//!
//! Lloyd's iteration alternates the two optimality conditions of a scalar
//! quantizer for the density N(0, 1): each decision boundary is the midpoint
//! of its neighbouring centroids, and each centroid is the conditional mean
//! of its cell, `E[X | a < X < b] = (phi(a) - phi(b)) / (Phi(b) - Phi(a))`.
//! The density is symmetric, so only the positive half is iterated and then
//! mirrored, which makes the middle boundary exactly 0. The derivation runs
//! in f64; the kernels use the centroids rounded to f32 and boundaries that
//! are the f32 midpoints of those.

use std::cell::UnsafeCell;
use std::mem::MaybeUninit;
use std::sync::Once;

use super::TurboBits;

/// The largest number of levels (5 bits).
pub const MAX_LEVELS: usize = 32;

/// A Lloyd-Max codebook for the unit-variance Gaussian.
#[derive(Clone, Debug)]
pub struct Codebook {
    /// Number of levels, `2^bits`.
    pub levels: usize,
    /// Centroids in ascending order (first `levels` entries; the rest are 0).
    /// A code is the index into this array.
    pub centroids: [f32; MAX_LEVELS],
    /// Decision boundaries: `boundaries[j]` separates codes `j` and `j + 1`
    /// (first `levels - 1` entries).
    pub boundaries: [f32; MAX_LEVELS - 1],
    /// The same centroids before rounding to f32.
    pub centroids_f64: [f64; MAX_LEVELS],
    /// Mean squared error per coordinate for N(0, 1) input, from the f64
    /// centroids and their midpoint boundaries.
    pub distortion: f64,
}

struct Tables {
    init: Once,
    books: UnsafeCell<MaybeUninit<[Codebook; 3]>>,
}

// The cell is written once inside `init.call_once` and only read after it.
unsafe impl Sync for Tables {}

static TABLES: Tables = Tables {
    init: Once::new(),
    books: UnsafeCell::new(MaybeUninit::uninit()),
};

/// Returns the codebook for `bits`, deriving all three on first use.
pub fn codebook(bits: TurboBits) -> &'static Codebook {
    TABLES.init.call_once(|| {
        let books = [derive(3), derive(4), derive(5)];
        unsafe { (*TABLES.books.get()).as_mut_ptr().write(books) };
    });
    let books = unsafe { &*(*TABLES.books.get()).as_ptr() };
    match bits {
        TurboBits::B3 => &books[0],
        TurboBits::B4 => &books[1],
        TurboBits::B5 => &books[2],
    }
}

/// Derives the `2^bits`-level codebook.
pub(crate) fn derive(bits: u32) -> Codebook {
    let levels = 1usize << bits;
    let positive = lloyd_max_positive_half(levels / 2);

    let mut centroids_f64 = [0f64; MAX_LEVELS];
    for (j, &c) in positive.iter().enumerate() {
        centroids_f64[levels / 2 + j] = c;
        centroids_f64[levels / 2 - 1 - j] = -c;
    }
    let mut centroids = [0f32; MAX_LEVELS];
    for j in 0..levels {
        centroids[j] = centroids_f64[j] as f32;
    }
    let mut boundaries = [0f32; MAX_LEVELS - 1];
    for j in 0..levels - 1 {
        boundaries[j] = 0.5 * (centroids[j] + centroids[j + 1]);
    }
    Codebook {
        levels,
        centroids,
        boundaries,
        centroids_f64,
        distortion: 2.0 * half_distortion(&positive),
    }
}

/// Runs Lloyd's iteration for the `half` positive centroids of a symmetric
/// quantizer until no centroid moves by more than 1e-13, far below the 1e-8
/// that f32 centroids need. 5 bits take about 2700 iterations.
fn lloyd_max_positive_half(half: usize) -> Vec<f64> {
    // Start from evenly spaced centroids over [0, 3].
    let mut c: Vec<f64> = (0..half)
        .map(|j| 3.0 * (j as f64 + 0.5) / half as f64)
        .collect();
    let mut t = vec![0f64; half + 1];
    for _ in 0..100_000 {
        cell_edges(&c, &mut t);
        let mut moved = 0f64;
        for j in 0..half {
            let next = conditional_mean(t[j], t[j + 1]);
            moved = moved.max((next - c[j]).abs());
            c[j] = next;
        }
        if moved < 1e-13 {
            break;
        }
    }
    c
}

/// Fills `t` with the positive cell edges: 0, the midpoints, then infinity.
fn cell_edges(c: &[f64], t: &mut [f64]) {
    t[0] = 0.0;
    for j in 1..c.len() {
        t[j] = 0.5 * (c[j - 1] + c[j]);
    }
    t[c.len()] = f64::INFINITY;
}

/// `E[X | a < X < b]` for X ~ N(0, 1).
pub(crate) fn conditional_mean(a: f64, b: f64) -> f64 {
    (pdf(a) - pdf(b)) / (cdf(b) - cdf(a))
}

/// Distortion contributed by the positive half: the sum over cells of
/// `E[(X - c)^2; a < X < b]`, using `E[X^2; a < X < b] = P + a phi(a) - b phi(b)`.
fn half_distortion(c: &[f64]) -> f64 {
    let mut t = vec![0f64; c.len() + 1];
    cell_edges(c, &mut t);
    let mut sum = 0.0;
    for j in 0..c.len() {
        let (a, b) = (t[j], t[j + 1]);
        let p = cdf(b) - cdf(a);
        let first = pdf(a) - pdf(b);
        let second = p + a * pdf(a) - if b.is_finite() { b * pdf(b) } else { 0.0 };
        sum += second - 2.0 * c[j] * first + c[j] * c[j] * p;
    }
    sum
}

/// Standard normal density (0 at infinity).
pub(crate) fn pdf(x: f64) -> f64 {
    if x.is_infinite() {
        return 0.0;
    }
    (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt()
}

/// Standard normal distribution function.
pub(crate) fn cdf(x: f64) -> f64 {
    0.5 * (1.0 + erf(x / std::f64::consts::SQRT_2))
}

/// The error function, from the series
/// `erf(x) = 2/sqrt(pi) exp(-x^2) sum_n 2^n x^(2n+1) / (1 3 5 ... (2n+1))`,
/// whose terms are all positive, so it has no cancellation. Beyond |x| = 6
/// erf differs from ±1 by less than 3e-17 and ±1 is returned. The absolute
/// error is about 1e-15 (checked by `erf_known_values`).
pub(crate) fn erf(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    if x.abs() > 6.0 {
        return x.signum();
    }
    let x2 = x * x;
    let mut term = x;
    let mut sum = x;
    let mut n = 0f64;
    loop {
        n += 1.0;
        term *= 2.0 * x2 / (2.0 * n + 1.0);
        sum += term;
        if term.abs() <= 1e-17 * sum.abs() {
            break;
        }
    }
    2.0 / std::f64::consts::PI.sqrt() * (-x2).exp() * sum
}
