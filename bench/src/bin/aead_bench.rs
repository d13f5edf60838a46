//! What opening one sealed value costs, by plaintext and associated-data length: ring's
//! AES-256-GCM `open_in_place` with a ready key, as `engine/seal.rs` calls it, including the
//! copy of `ciphertext ‖ tag` into a reused buffer that the in-place API needs.
//!
//! `cargo run -p eventdbx-bench --bin aead_bench -- [--rounds N] [--opens N]`
//!
//! An encrypted outbox page opens 1,000 values, so each nanosecond here is a microsecond of
//! a page. The lengths measured by default are an event of the benchmark's history
//! (~260 bytes of plaintext) as stored, the same padded to whole 16-byte blocks, and the
//! associated data `events ‖ 0x00 ‖ id` (15 bytes) against none: what a future sealed format
//! could change (docs/BENCHMARKS.md, "Sixth pass").

use std::time::Instant;

use eventdbx_bench::{median, parse_flag};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};

/// Plaintext lengths: a 256-byte value, the benchmark's ~260-byte event, and that event
/// padded to the next multiple of 16.
const PLAINTEXT_LENGTHS: [usize; 3] = [256, 260, 272];

/// Associated data lengths: none, and the 15 bytes of an event's (`events`, 0x00, 8-byte id).
const AAD_LENGTHS: [usize; 2] = [0, 15];

fn main() {
    if let Err(err) = run() {
        eprintln!("aead_bench: {err}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let mut rounds = 7usize;
    let mut opens = 1_000_000usize;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        let parsed: usize = parse_flag(&flag, &value)?;
        match flag.as_str() {
            "--rounds" => rounds = parsed.max(1),
            "--opens" => opens = parsed.max(1),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    println!("| plaintext bytes | associated data bytes | ns per open (median of {rounds} rounds of {opens}) | fastest round |");
    println!("| --- | --- | --- | --- |");
    for plaintext in PLAINTEXT_LENGTHS {
        for aad in AAD_LENGTHS {
            let mut per_open = (0..rounds)
                .map(|_| time_opens(plaintext, aad, opens))
                .collect::<Result<Vec<f64>, String>>()?;
            let median = median(&mut per_open);
            // `median` left the rounds sorted.
            let fastest = per_open.first().copied().unwrap_or(f64::NAN);
            println!("| {plaintext} | {aad} | {median:.1} | {fastest:.1} |");
        }
    }
    Ok(())
}

/// Nanoseconds per open of a `plaintext`-byte value sealed with `aad` bytes of associated
/// data, over `opens` opens.
fn time_opens(plaintext: usize, aad: usize, opens: usize) -> Result<f64, String> {
    let key = UnboundKey::new(&AES_256_GCM, &[0x42; 32]).map_err(|_| "AES-256-GCM key")?;
    let key = LessSafeKey::new(key);
    let associated = vec![0x07u8; aad];
    let nonce = || Nonce::assume_unique_for_key([0x01; 12]);
    let mut sealed = vec![0x5au8; plaintext];
    let tag = key
        .seal_in_place_separate_tag(nonce(), Aad::from(&associated[..]), &mut sealed)
        .map_err(|_| "sealing failed")?;
    sealed.extend_from_slice(tag.as_ref());

    let mut buffer = Vec::with_capacity(sealed.len());
    let started = Instant::now();
    for _ in 0..opens {
        buffer.clear();
        buffer.extend_from_slice(&sealed);
        let opened = key
            .open_in_place(nonce(), Aad::from(&associated[..]), &mut buffer)
            .map_err(|_| "a value did not open")?;
        std::hint::black_box(opened);
    }
    Ok(started.elapsed().as_nanos() as f64 / opens as f64)
}
