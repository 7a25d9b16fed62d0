//! Enables the VNNI kernels (`cfg(turbokv_vnni)`) when the compiler has
//! stable AVX-VNNI and AVX-512 VNNI intrinsics, which came with Rust 1.89.
//! Older compilers, down to the crate's minimum of 1.63, build without them.

use std::env;
use std::process::Command;

/// The first Rust release with the intrinsics, as (major, minor).
const VNNI_SINCE: (u32, u32) = (1, 89);

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let version = rustc_version();
    if version.map_or(false, |v| v >= (1, 80)) {
        println!("cargo:rustc-check-cfg=cfg(turbokv_vnni)");
    }
    if version.map_or(false, |v| v >= VNNI_SINCE) {
        println!("cargo:rustc-cfg=turbokv_vnni");
    }
}

/// Returns the (major, minor) version of the compiler Cargo runs, or None
/// when `rustc --version` fails or prints something unexpected. A nightly
/// or beta counts as the release before it, because a feature stabilized in
/// release N may be missing from early N nightlies.
fn rustc_version() -> Option<(u32, u32)> {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let output = Command::new(rustc).arg("--version").output().ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    // "rustc 1.95.0 (59807616e 2026-04-14)" or "rustc 1.96.0-nightly (...)"
    let version = text.split_whitespace().nth(1)?;
    let mut numbers = version.split(|c| c == '.' || c == '-');
    let major = numbers.next()?.parse().ok()?;
    let minor: u32 = numbers.next()?.parse().ok()?;
    let minor = if version.contains('-') { minor.checked_sub(1)? } else { minor };
    Some((major, minor))
}
