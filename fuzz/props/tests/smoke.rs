//! CI smoke run of the fuzz targets' properties, without libFuzzer: each
//! property (`focal_fuzz_props::TARGETS`) runs on the seeds `fuzz/run-all.sh`
//! gives cargo-fuzz (golden fixtures in proto/tests/fixtures, relay configs
//! in deploy/), then on seeded pseudo-random mutations of them (bit flips,
//! byte overwrites, truncations, insertions, erasures, duplications,
//! splices) and on purely random inputs. A panic is a violated property and
//! fails the test; the input is written to a file named in the failure.
//!
//! No coverage feedback: this finds what mutations near real inputs find,
//! the coverage-guided run is `fuzz/run-all.sh SECONDS`. Deterministic: the
//! seed is fixed and printed; `FOCAL_FUZZ_SEED=<n>` tries another,
//! `FOCAL_FUZZ_MUTATIONS=<n>` changes the count (default 10,000 per target).
//! Executions per target: `cargo test -p focal-fuzz-props -- --nocapture`.

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::path::{Path, PathBuf};

use focal_proto::pb;
use prost::Message;

const DEFAULT_SEED: u64 = 0x00f0_ca1f_0221_5eed;
const DEFAULT_MUTATIONS: usize = 10_000;
/// Purely random inputs per target, on top of the mutations.
const RANDOM_INPUTS: usize = 1_000;
/// Longest purely random input.
const RANDOM_MAX_LEN: usize = 512;

/// SplitMix64: small, fast, good enough to pick mutations; fully determined
/// by its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform-ish in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn byte(&mut self) -> u8 {
        self.next() as u8
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.byte()).collect()
    }
}

/// Bytes libFuzzer-style mutators like to plant: boundaries of lengths,
/// varints and signed values, and TOML/text punctuation.
const INTERESTING: &[u8] = &[0, 1, 0x7f, 0x80, 0xff, b'\n', b'"', b'=', b'[', b'.', b' ', 0xc3];

/// One to four random edits of `base`, `other` being a second seed for
/// splices.
fn mutate(rng: &mut Rng, base: &[u8], other: &[u8]) -> Vec<u8> {
    let mut data = base.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = data.len();
        match rng.below(8) {
            // Flip one bit.
            0 if len > 0 => {
                let i = rng.below(len);
                data[i] ^= 1 << rng.below(8);
            }
            // Overwrite a byte, with a random or an interesting value.
            1 if len > 0 => {
                let i = rng.below(len);
                data[i] =
                    if rng.below(2) == 0 { rng.byte() } else { INTERESTING[rng.below(INTERESTING.len())] };
            }
            // Truncate.
            2 => data.truncate(rng.below(len + 1)),
            // Insert 1..=16 random bytes.
            3 => {
                let at = rng.below(len + 1);
                let n = 1 + rng.below(16);
                let ins = rng.bytes(n);
                data.splice(at..at, ins);
            }
            // Erase a range.
            4 if len > 0 => {
                let at = rng.below(len);
                let end = (at + 1 + rng.below(32)).min(len);
                data.drain(at..end);
            }
            // Duplicate a range in place.
            5 if len > 0 => {
                let at = rng.below(len);
                let end = (at + 1 + rng.below(64)).min(len);
                let copy = data[at..end].to_vec();
                data.splice(end..end, copy);
            }
            // Splice: a prefix of this input and a suffix of another seed.
            6 => {
                let cut = rng.below(len + 1);
                let from = rng.below(other.len() + 1);
                data.truncate(cut);
                data.extend_from_slice(&other[from..]);
            }
            // Overwrite a little-endian u32 (lengths, counters).
            _ if len >= 4 => {
                let i = rng.below(len - 3);
                let v = [0u32, 1, 0x7f, 0x80, 0xffff, u32::MAX, rng.next() as u32][rng.below(7)];
                data[i..i + 4].copy_from_slice(&v.to_le_bytes());
            }
            _ => data.push(rng.byte()),
        }
    }
    data
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("seed {}: {e}", path.display()))
}

/// The seeds `fuzz/run-all.sh` puts in `fuzz/corpus/<target>`.
fn run_all_seeds(target: &str) -> Vec<Vec<u8>> {
    let fx = root().join("proto/tests/fixtures");
    match target {
        "checkpoint_note" => {
            vec![read(&fx.join("audit_v1/checkpoint.note")), read(&fx.join("audit_v1/checkpoint_early.note"))]
        }
        "audit_record" => String::from_utf8(read(&fx.join("audit_v1/entries.hex")))
            .expect("entries.hex is text")
            .lines()
            .map(|l| hex::decode(l.trim()).expect("entries.hex line is hex"))
            .collect(),
        "envelope_header" => vec![read(&fx.join("envelope_v1.bin"))],
        "relay_config" => {
            // deploy/*/*.toml and deploy/*.toml, sorted (readdir order varies).
            let deploy = root().join("deploy");
            let mut dirs = vec![deploy.clone()];
            let mut files = Vec::new();
            for entry in std::fs::read_dir(&deploy).expect("deploy/") {
                let path = entry.expect("deploy/ entry").path();
                if path.is_dir() {
                    dirs.push(path);
                }
            }
            for dir in dirs {
                for entry in std::fs::read_dir(&dir).expect("deploy dir") {
                    let path = entry.expect("deploy entry").path();
                    if path.extension().is_some_and(|e| e == "toml") {
                        files.push(path);
                    }
                }
            }
            files.sort();
            files.iter().map(|p| read(p)).collect()
        }
        _ => vec![],
    }
}

/// Seeds for one target: its `run-all.sh` seeds, plus (all targets) the
/// parts of the golden envelope a relay handles separately (header, context,
/// payload) and every other target's seeds, so the targets run-all.sh gives
/// no corpus still start from real bytes. Also returns how many of them
/// (listed first) are the target's own.
fn seeds(target: &str) -> (Vec<Vec<u8>>, usize) {
    let mut seeds = vec![Vec::new()];
    seeds.extend(run_all_seeds(target));
    let envelope = pb::Envelope::decode(&read(&root().join("proto/tests/fixtures/envelope_v1.bin"))[..])
        .expect("golden envelope decodes");
    let header = envelope.header.expect("golden envelope has a header");
    seeds.push(header.context.clone());
    seeds.push(header.encode_to_vec());
    // The opener's first byte is the piece size; keep the payload intact after it.
    seeds.push([&[4u8][..], &envelope.payload].concat());
    let own = seeds.len();
    for (other, _) in focal_fuzz_props::TARGETS {
        if *other != target {
            seeds.extend(run_all_seeds(other));
        }
    }
    (seeds, own)
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v.parse().unwrap_or_else(|_| panic!("{name}={v} is not a number")),
        Err(_) => default,
    }
}

/// Runs `property` on `data`; on a panic, saves the input and fails naming it.
fn check(target: &str, property: focal_fuzz_props::Property, data: &[u8], what: &str) {
    if let Err(panic) = catch_unwind(AssertUnwindSafe(|| property(data))) {
        let path = std::env::temp_dir().join(format!("focal-fuzz-crash-{target}-{}", std::process::id()));
        let saved = match std::fs::write(&path, data) {
            Ok(()) => format!("input saved to {}", path.display()),
            Err(e) => format!("input not saved ({e})"),
        };
        eprintln!(
            "{target}: property violated on {what} ({} bytes), {saved}; \
             replay with `cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run {target} <file>`",
            data.len()
        );
        resume_unwind(panic);
    }
}

fn smoke(target: &str) {
    let property = focal_fuzz_props::TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .map(|(_, f)| *f)
        .expect("known target");
    let seed: u64 = env_or("FOCAL_FUZZ_SEED", DEFAULT_SEED);
    let mutations: usize = env_or("FOCAL_FUZZ_MUTATIONS", DEFAULT_MUTATIONS);
    // Same seed for every target, mixed with the name so targets differ.
    let mut rng = Rng(seed ^ target.bytes().fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b))));

    let (seeds, own) = seeds(target);
    for (i, s) in seeds.iter().enumerate() {
        check(target, property, s, &format!("seed {i}"));
    }
    for i in 0..mutations {
        // Half the mutations start from the target's own seeds.
        let base = &seeds[if i % 2 == 0 { rng.below(own) } else { rng.below(seeds.len()) }];
        let other = &seeds[rng.below(seeds.len())];
        let data = mutate(&mut rng, base, other);
        check(target, property, &data, &format!("mutation {i}"));
    }
    for i in 0..RANDOM_INPUTS {
        let len = rng.below(RANDOM_MAX_LEN + 1);
        let data = rng.bytes(len);
        check(target, property, &data, &format!("random input {i}"));
    }
    println!(
        "{target:<16} {:>6} executions ({} seeds, {mutations} mutations, {RANDOM_INPUTS} random), seed {seed:#x}",
        seeds.len() + mutations + RANDOM_INPUTS,
        seeds.len(),
    );
}

#[test]
fn frame_decoder() {
    smoke("frame_decoder");
}

#[test]
fn context_parser() {
    smoke("context_parser");
}

#[test]
fn envelope_header() {
    smoke("envelope_header");
}

#[test]
fn stream_opener() {
    smoke("stream_opener");
}

#[test]
fn checkpoint_note() {
    smoke("checkpoint_note");
}

#[test]
fn audit_record() {
    smoke("audit_record");
}

#[test]
fn directory_entry() {
    smoke("directory_entry");
}

#[test]
fn relay_config() {
    smoke("relay_config");
}

/// Every target in `focal_fuzz_props::TARGETS` has a test above and a
/// cargo-fuzz binary in fuzz/Cargo.toml.
#[test]
fn every_target_is_covered() {
    let this = include_str!("smoke.rs");
    let fuzz_manifest = std::fs::read_to_string(root().join("fuzz/Cargo.toml")).expect("fuzz/Cargo.toml");
    for (name, _) in focal_fuzz_props::TARGETS {
        assert!(this.contains(&format!("fn {name}()")), "no smoke test for {name}");
        assert!(fuzz_manifest.contains(&format!("name = \"{name}\"")), "no cargo-fuzz bin for {name}");
    }
}
