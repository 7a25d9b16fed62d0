//! Run-time choice of the instruction set used by every kernel.
//!
//! The best path the CPU supports is chosen once. The environment variable
//! `TURBOKV_SIMD` (`scalar`, `avx2` or `neon`) forces a path for tests and
//! benchmarks; a request the CPU cannot run falls back to the best path.

use std::sync::atomic::{AtomicU8, Ordering};

/// The instruction set a kernel call runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    Scalar,
    /// x86_64 with AVX2 and FMA.
    Avx2,
    /// aarch64 Advanced SIMD (ARMv8.0 baseline).
    Neon,
}

impl Isa {
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Neon => "neon",
        }
    }

    pub fn from_name(name: &str) -> Option<Isa> {
        match name.trim().to_ascii_lowercase().as_str() {
            "scalar" => Some(Isa::Scalar),
            "avx2" => Some(Isa::Avx2),
            "neon" => Some(Isa::Neon),
            _ => None,
        }
    }

    /// Reports whether this CPU can run `self`.
    pub fn is_supported(self) -> bool {
        match self {
            Isa::Scalar => true,
            Isa::Avx2 => avx2_supported(),
            Isa::Neon => cfg!(target_arch = "aarch64"),
        }
    }

    fn to_u8(self) -> u8 {
        match self {
            Isa::Scalar => 1,
            Isa::Avx2 => 2,
            Isa::Neon => 3,
        }
    }

    fn from_u8(v: u8) -> Option<Isa> {
        match v {
            1 => Some(Isa::Scalar),
            2 => Some(Isa::Avx2),
            3 => Some(Isa::Neon),
            _ => None,
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn avx2_supported() -> bool {
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
}

#[cfg(not(target_arch = "x86_64"))]
fn avx2_supported() -> bool {
    false
}

/// The best instruction set this CPU supports.
pub fn best() -> Isa {
    if Isa::Neon.is_supported() {
        Isa::Neon
    } else if Isa::Avx2.is_supported() {
        Isa::Avx2
    } else {
        Isa::Scalar
    }
}

// 0 means "not chosen yet".
static ACTIVE: AtomicU8 = AtomicU8::new(0);

/// The instruction set kernels use: `TURBOKV_SIMD` if set and supported,
/// otherwise the best one. Chosen on first call, then cached.
pub fn active() -> Isa {
    if let Some(isa) = Isa::from_u8(ACTIVE.load(Ordering::Relaxed)) {
        return isa;
    }
    let isa = match std::env::var("TURBOKV_SIMD") {
        Ok(name) => match Isa::from_name(&name) {
            Some(isa) if isa.is_supported() => isa,
            _ => best(),
        },
        Err(_) => best(),
    };
    ACTIVE.store(isa.to_u8(), Ordering::Relaxed);
    isa
}

/// Forces `isa` for every later kernel call in this process.
///
/// Returns an error message if this CPU cannot run it.
pub fn set_active(isa: Isa) -> Result<(), String> {
    if !isa.is_supported() {
        return Err(format!(
            "the {} instruction set is not available on this CPU (best is {})",
            isa.name(),
            best().name()
        ));
    }
    ACTIVE.store(isa.to_u8(), Ordering::Relaxed);
    Ok(())
}
