//! A mutation fuzzer for the `.kir` parser, the verifier, the printer and the interpreter, on stable Rust.
//!
//! Each round takes an entry of the committed corpus (`tests/fuzz/corpus/*.kir`) or a mutant that parsed, applies a
//! few byte- and token-level mutations and checks, for the result:
//! 1. `parse` does not panic, and an error renders in at most a few kilobytes (errors abbreviate what they echo);
//! 2. a parsed graph passes `verify`;
//! 3. `print` → `parse` → `print` gives the same text (the printer's round-trip guarantee, SPEC §6);
//! 4. interpreting it (when every node is small) does not panic.
//!
//! A failure writes the input to a file, prints its bytes, and fails the test. Time budget: `KILN_FUZZ_SECS`
//! (default 20 s; CI sets more); seed: `KILN_FUZZ_SEED` (default: from the clock; always printed, so a failure can be
//! replayed with the same seed and budget... or, better, from the written file).

use kiln_ir::interp;
use kiln_ir::text::{parse, print};
use kiln_ir::{verify, Graph, Tensor};
use kiln_tests::graph_gen::Rng;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Nodes of at most this many elements (and graphs of at most `MAX_INTERP_TOTAL` in all) are interpreted.
const MAX_INTERP_NODE: usize = 1 << 12;
const MAX_INTERP_TOTAL: usize = 1 << 16;
/// Mutants that parsed are kept as seeds for later rounds, up to this many (oldest replaced).
const POOL: usize = 256;
/// The longest rendered error accepted.
const MAX_ERROR_CHARS: usize = 4000;

/// Tokens the mutator inserts: pieces of the grammar, and numbers and characters parsers get wrong.
const DICTIONARY: &[&str] = &[
    "%",
    "=",
    ",",
    ":",
    "[",
    "]",
    "{",
    "}",
    "\n",
    " ",
    "#",
    "\"",
    "\r\n",
    "%x",
    "%0",
    "%1",
    "input",
    "constant",
    "iota",
    "neg",
    "exp",
    "cast",
    "add",
    "pow",
    "compare",
    "select",
    "reduce_sum",
    "reduce_max",
    "reshape",
    "transpose",
    "broadcast",
    "slice",
    "concat",
    "matmul",
    "output",
    "aliases",
    "graph",
    "role=data",
    "role=param",
    "value=",
    "axis=",
    "axes=",
    "shape=",
    "perm=",
    "start=",
    "end=",
    "keep_dims=true",
    "dir=lt",
    "to=i32",
    "f32",
    "f64",
    "i32",
    "bool",
    "f32[]",
    "f32[0]",
    "f32[2,3]",
    "[]",
    "[0,1]",
    "0",
    "1",
    "-1",
    "2",
    "4294967296",
    "2147483648",
    "-2147483649",
    "1099511627776",
    "1099511627777",
    "9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "1e308",
    "1e-400",
    "-0.0",
    "nan",
    "-inf",
    "inf",
    "true",
    "\u{feff}",
    "é",
    "\u{0}",
    "\\u{41}",
];

/// Numbers a mutation puts in place of a number: limits of the index and value arithmetic.
const EXTREMES: &[&str] = &[
    "0",
    "1",
    "2",
    "8",
    "9",
    "65536",
    "2147483647",
    "2147483648",
    "4294967295",
    "4294967296",
    "1099511627776",
    "1099511627777",
    "9223372036854775807",
    "9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999",
    "-1",
    "1e38",
    "3.5e38",
    "1e309",
];

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus")
}

fn load_corpus() -> Vec<Vec<u8>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .expect("tests/fuzz/corpus exists")
        .map(|e| e.expect("readable corpus entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "kir"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| std::fs::read(p).expect("readable corpus file"))
        .collect()
}

/// A byte range `start..end` of `len` bytes, at most `max` long.
fn range(rng: &mut Rng, len: usize, max: usize) -> (usize, usize) {
    let start = rng.below(len + 1);
    let end = start + rng.below((len - start).min(max) + 1);
    (start, end)
}

/// One mutation of `input` in place; `others` supplies splices.
fn mutate(rng: &mut Rng, input: &mut Vec<u8>, others: &[Vec<u8>]) {
    let len = input.len();
    // Weights out of 10: numbers are where the typing rules' arithmetic is, so extremes get three.
    match rng.below(10) {
        // Flip one bit (may break UTF-8: the text is then read lossily, as a tool reading a file would not be
        // asked to, but the lossy text is still worth parsing).
        0 if len > 0 => {
            let i = rng.below(len);
            input[i] ^= 1 << rng.below(8);
        }
        // Insert a dictionary token.
        1 | 2 => {
            let at = rng.below(len + 1);
            let token = rng.pick(DICTIONARY).as_bytes();
            input.splice(at..at, token.iter().copied());
        }
        // Delete a range.
        3 => {
            let (start, end) = range(rng, len, 16);
            input.drain(start..end);
        }
        // Replace a range with a range of another entry (or this one).
        4 => {
            let other = others[rng.below(others.len())].clone();
            let (start, end) = range(rng, len, 64);
            let (from, to) = range(rng, other.len(), 64);
            input.splice(start..end, other[from..to].iter().copied());
        }
        // Replace a run of digits with an extreme number.
        5..=7 => {
            let digits: Vec<usize> = (0..len)
                .filter(|&i| {
                    input[i].is_ascii_digit() && (i == 0 || !input[i - 1].is_ascii_digit())
                })
                .collect();
            if !digits.is_empty() {
                let start = rng.pick(&digits);
                let end = (start..len)
                    .find(|&i| !input[i].is_ascii_digit())
                    .unwrap_or(len);
                input.splice(start..end, rng.pick(EXTREMES).bytes());
            }
        }
        // Duplicate a line (duplicate labels and outputs, uses before definitions once lines move).
        // (An input mutated down to nothing has no line to duplicate.)
        8 if len > 0 => {
            let lines: Vec<&[u8]> = input.split_inclusive(|&b| b == b'\n').collect();
            let line = rng.pick(&lines).to_vec();
            let at = rng.below(lines.len() + 1);
            let offset: usize = lines[..at].iter().map(|l| l.len()).sum();
            input.splice(offset..offset, line);
        }
        // Repeat a short range many times (long lines, long lists, huge shapes).
        _ => {
            let (start, end) = range(rng, len, 8);
            let copies = 1 + rng.below(2000);
            let piece = input[start..end].to_vec();
            input.splice(
                end..end,
                piece.iter().copied().cycle().take(piece.len() * copies),
            );
        }
    }
}

/// An input tensor for each graph input: small values cycling through signs and magnitudes, as the dtype holds them.
fn inputs_for(graph: &Graph) -> Vec<Tensor> {
    const VALUES: [f64; 6] = [0.5, -1.0, 2.0, 0.0, 3.0, -0.25];
    graph
        .inputs()
        .map(|i| {
            let values: Vec<f64> = (0..i.ty.numel())
                .map(|k| VALUES[k % VALUES.len()])
                .collect();
            Tensor::from_f64_values(i.ty.clone(), &values).expect("values fit the input type")
        })
        .collect()
}

fn small_enough_to_interpret(graph: &Graph) -> bool {
    let sizes = graph.nodes().iter().map(|n| n.ty.numel());
    graph
        .nodes()
        .iter()
        .all(|n| n.ty.numel() <= MAX_INTERP_NODE)
        && sizes.sum::<usize>() <= MAX_INTERP_TOTAL
}

/// Checks properties 1-4 for one input; `Err` describes the first that fails.
fn check(text: &str) -> Result<Option<Graph>, String> {
    let parsed = catch_unwind(|| parse(text)).map_err(|_| "parse panicked".to_string())?;
    let graph = match parsed {
        Ok(graph) => graph,
        Err(e) => {
            let shown = catch_unwind(AssertUnwindSafe(|| e.to_string()))
                .map_err(|_| "rendering the parse error panicked".to_string())?;
            if shown.chars().count() > MAX_ERROR_CHARS {
                return Err(format!(
                    "a parse error renders in {} characters:\n{}…",
                    shown.chars().count(),
                    shown.chars().take(500).collect::<String>()
                ));
            }
            return Ok(None);
        }
    };
    verify(&graph).map_err(|e| format!("a parsed graph fails verify: {e}"))?;
    let printed = catch_unwind(AssertUnwindSafe(|| print(&graph)))
        .map_err(|_| "print panicked".to_string())?;
    let reparsed = catch_unwind(|| parse(&printed))
        .map_err(|_| "parse of the printed graph panicked".to_string())?
        .map_err(|e| format!("the printed graph does not parse:\n{e}\n{printed}"))?;
    if print(&reparsed) != printed {
        return Err(format!(
            "print does not round-trip:\n{printed}\nreprinted:\n{}",
            print(&reparsed)
        ));
    }
    if small_enough_to_interpret(&graph) {
        let inputs = inputs_for(&graph);
        // An `Err` is a fine answer (e.g. a node the interpreter refuses); a panic is not.
        catch_unwind(AssertUnwindSafe(|| interp::run_all(&graph, &inputs)))
            .map_err(|_| "the interpreter panicked".to_string())?
            .ok();
    }
    Ok(Some(graph))
}

/// Writes the failing input where it can be picked up (and committed to the corpus once fixed), and fails.
fn fail(seed: u64, round: u64, input: &[u8], why: &str) -> ! {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("fuzz-{seed}-{round}.kir"));
    let written = std::fs::write(&path, input).map_or_else(
        |e| format!("(could not write it to {}: {e})", path.display()),
        |()| format!("written to {}", path.display()),
    );
    panic!("fuzz seed {seed}, round {round}: {why}\ninput {written}; its bytes:\n{input:?}");
}

/// Every corpus entry satisfies the properties unmutated (and parses: the corpus is of valid graphs).
#[test]
fn corpus_entries_parse_and_round_trip() {
    let corpus = load_corpus();
    assert!(corpus.len() >= 8, "the corpus has {} entries", corpus.len());
    for (k, entry) in corpus.iter().enumerate() {
        let text = std::str::from_utf8(entry).expect("corpus files are UTF-8");
        match check(text) {
            Ok(Some(_)) => {}
            Ok(None) => panic!(
                "corpus entry {k} does not parse:\n{}",
                parse(text).unwrap_err()
            ),
            Err(why) => fail(0, k as u64, entry, &why),
        }
    }
}

#[test]
fn mutants_never_panic_and_round_trip() {
    let secs: u64 = std::env::var("KILN_FUZZ_SECS")
        .ok()
        .map(|s| s.parse().expect("KILN_FUZZ_SECS is a number of seconds"))
        .unwrap_or(20);
    let seed: u64 = std::env::var("KILN_FUZZ_SEED")
        .ok()
        .map(|s| s.parse().expect("KILN_FUZZ_SEED is an integer"))
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        });
    println!("fuzz: seed {seed} (KILN_FUZZ_SEED), {secs} s (KILN_FUZZ_SECS)");
    let corpus = load_corpus();
    let mut pool: Vec<Vec<u8>> = corpus.clone();
    let mut rng = Rng(seed);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let (mut rounds, mut parsed) = (0u64, 0u64);
    // Panics are caught and reported with the input; the default hook's message still shows which one.
    while Instant::now() < deadline {
        let mut input = pool[rng.below(pool.len())].clone();
        for _ in 0..1 + rng.below(3) {
            mutate(&mut rng, &mut input, &corpus);
        }
        let text = String::from_utf8_lossy(&input);
        match check(&text) {
            Ok(Some(_)) => {
                parsed += 1;
                if pool.len() < POOL {
                    pool.push(input);
                } else {
                    let slot = corpus.len() + rng.below(POOL - corpus.len());
                    pool[slot] = input;
                }
            }
            Ok(None) => {}
            Err(why) => fail(seed, rounds, &input, &why),
        }
        rounds += 1;
    }
    println!("fuzz: {rounds} inputs, {parsed} parsed");
    assert!(rounds > 0, "no input was tried in {secs} s");
}
