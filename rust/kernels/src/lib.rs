//! Compute kernels for turbokv.
//!
//! Every hot operation has a scalar reference and, where the target has one,
//! a NEON (`std::arch::aarch64`) and an AVX2+FMA (`std::arch::x86_64`)
//! version. The public functions dispatch on [`simd::active`]. Tests compare
//! every SIMD path with the scalar reference.
//!
//! The crate has no dependencies and builds on rustc 1.63, so that it can be
//! compiled for aarch64 with Debian's rustc and tested under qemu.

pub mod f16;
pub mod ops;
pub mod quants;
pub mod simd;
pub mod turbo;
