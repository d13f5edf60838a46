//! Link settings for the `dbx` binary.
//!
//! mimalloc is built with its `override` feature, so the executable defines `malloc`, `free`
//! and the rest of the C allocation API. Exporting those definitions in the dynamic symbol
//! table makes them the ones every shared library resolves too (libstdc++'s `operator
//! new`/`delete`, glibc's own `strdup` and friends): the whole process, RocksDB's C++
//! included, then uses one allocator, and nothing allocated by one allocator is ever freed
//! by the other. This is glibc's documented way of replacing malloc, the same mechanism as
//! `LD_PRELOAD` of a malloc library.

/// The C allocation API as glibc lets a program replace it ("Replacing malloc" in the glibc
/// manual), plus the GNU extensions mimalloc also defines.
const ALLOCATION_SYMBOLS: &[&str] = &[
    "malloc",
    "free",
    "calloc",
    "realloc",
    "reallocarray",
    "aligned_alloc",
    "memalign",
    "posix_memalign",
    "valloc",
    "pvalloc",
    "malloc_usable_size",
    "cfree",
];

fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        for symbol in ALLOCATION_SYMBOLS {
            println!("cargo:rustc-link-arg-bins=-Wl,--export-dynamic-symbol={symbol}");
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}
