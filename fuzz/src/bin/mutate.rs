//! A plain mutation loop for when AFL++ is not at hand: for SECONDS per
//! target, takes corpus inputs, mutates them (bit flips, byte inserts and
//! deletes, splices of two inputs, interesting bytes) and runs the target,
//! catching panics; prints executions, time and every panicking input
//! (written to fuzz/out/mutate/<target>/). No coverage feedback: AFL++
//! (docs/fuzzing.md) finds more; this finds the shallow ones anywhere.
//! `cargo run --release --bin mutate -- SECONDS [TARGET]`

use std::time::{Duration, Instant};

use kpi_engine_fuzz::{TARGETS, repo};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const INTERESTING: &[&[u8]] = &[
    b"\"",
    b",",
    b"\n",
    b"\r\n",
    b"{",
    b"}",
    b"[",
    b"]",
    b"..",
    b"-",
    b"Q",
    b"\xef\xbb\xbf",
    b"\xff",
    b"0",
    b"-1",
    b"1e309",
    b"NaN",
    b"9999",
    b"=",
    b"'''",
    b"\\",
    b"\x00",
    b"\t",
];

fn mutate(rng: &mut Rng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..=rng.below(4) {
        match rng.below(6) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 => {
                let i = rng.below(v.len() + 1);
                v.insert(i, rng.next() as u8);
            }
            2 if !v.is_empty() => {
                let i = rng.below(v.len());
                let n = rng.below(16).min(v.len() - i);
                v.drain(i..i + n);
            }
            3 => {
                let i = rng.below(v.len() + 1);
                let s = INTERESTING[rng.below(INTERESTING.len())];
                v.splice(i..i, s.iter().copied());
            }
            4 if !other.is_empty() => {
                let i = rng.below(v.len() + 1);
                let j = rng.below(other.len());
                let n = rng.below(64).min(other.len() - j);
                v.splice(i..i, other[j..j + n].iter().copied());
            }
            _ if !v.is_empty() => {
                let i = rng.below(v.len());
                let n = rng.below(32).min(v.len() - i);
                let chunk: Vec<u8> = v[i..i + n].to_vec();
                let at = rng.below(v.len() + 1);
                v.splice(at..at, chunk);
            }
            _ => {}
        }
    }
    v
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let secs: u64 = args.first().and_then(|s| s.parse().ok()).unwrap_or(60);
    let only = args.get(1).cloned();
    std::panic::set_hook(Box::new(|_| {}));
    for (name, target) in TARGETS {
        if only.as_deref().is_some_and(|o| o != *name) {
            continue;
        }
        let dir = repo().join("fuzz/corpus").join(name);
        let corpus: Vec<Vec<u8>> = std::fs::read_dir(&dir)
            .map(|d| {
                d.flatten()
                    .filter_map(|e| std::fs::read(e.path()).ok())
                    .collect()
            })
            .unwrap_or_default();
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ name.len() as u64);
        let started = Instant::now();
        let (mut execs, mut crashes, mut slowest) = (0u64, 0u64, Duration::ZERO);
        while started.elapsed() < Duration::from_secs(secs) {
            let a = &corpus[rng.below(corpus.len())];
            let b = &corpus[rng.below(corpus.len())];
            let input = mutate(&mut rng, a, b);
            let t = Instant::now();
            let outcome = std::panic::catch_unwind(|| target(&input));
            slowest = slowest.max(t.elapsed());
            execs += 1;
            if outcome.is_err() {
                crashes += 1;
                let out = repo().join("fuzz/out/mutate").join(name);
                let _ = std::fs::create_dir_all(&out);
                let _ = std::fs::write(out.join(format!("crash-{execs}")), &input);
            }
        }
        println!(
            "{name}: {execs} executions in {:?}, {crashes} panics, slowest input {slowest:?}",
            started.elapsed()
        );
    }
}
