//! Strip-mined kernels (`Options::wide_math`: transcendentals in the runtime's wide routines) against the same
//! graphs compiled without, bit for bit, on lengths that leave every kind of remainder after the strips and with
//! several threads (whose chunks cut strips anywhere). On a host without FMA or AVX2 both runs take the CLIF path,
//! and the test checks nothing more than that.

use kiln::ir::GeluApprox;
use kiln::{Builder, Graph, Options, Tensor, TensorType};

/// `relu(x·0.7 + 0.1)·logistic(x) + tanh(x)·0.5` (W1), exact GELU (W9's erf), `exp(-x²)·sin(x) + log(|x| + 1)·cos(x)`
/// (four transcendentals of one input), `exp(tanh(x))` (a transcendental of another: the outer one stays inline), and
/// `exp(x·0.5 - 1)` (the routine writes the output itself: no third pass).
fn graphs(len: usize) -> Vec<Graph> {
    let build = |name: &str, f: &dyn Fn(&mut Builder, kiln::ir::Value) -> kiln::ir::Value| {
        let mut b = Builder::new(name);
        let x = b.data("x", TensorType::f32(&[len])).unwrap();
        let y = f(&mut b, x);
        b.output("y", y).unwrap();
        b.finish()
    };
    vec![
        build("w1", &|b, x| {
            let affine = b.mul_scalar(x, 0.7).unwrap();
            let affine = b.add_scalar(affine, 0.1).unwrap();
            let gate = b.relu(affine).unwrap();
            let s = b.sigmoid(x).unwrap();
            let left = b.mul(gate, s).unwrap();
            let t = b.tanh(x).unwrap();
            let right = b.mul_scalar(t, 0.5).unwrap();
            b.add(left, right).unwrap()
        }),
        build("gelu", &|b, x| b.gelu(x, GeluApprox::None).unwrap()),
        build("four", &|b, x| {
            let sq = b.mul(x, x).unwrap();
            let minus_sq = b.mul_scalar(sq, -1.0).unwrap();
            let gauss = b.exp(minus_sq).unwrap();
            let s = b.sin(x).unwrap();
            let left = b.mul(gauss, s).unwrap();
            let a = b.abs(x).unwrap();
            let a1 = b.add_scalar(a, 1.0).unwrap();
            let l = b.log(a1).unwrap();
            let c = b.cos(x).unwrap();
            let right = b.mul(l, c).unwrap();
            b.add(left, right).unwrap()
        }),
        build("nested", &|b, x| {
            let t = b.tanh(x).unwrap();
            b.exp(t).unwrap()
        }),
        build("direct", &|b, x| {
            let half = b.mul_scalar(x, 0.5).unwrap();
            let shifted = b.add_scalar(half, -1.0).unwrap();
            b.exp(shifted).unwrap()
        }),
    ]
}

/// Inputs over every function's interesting range, with a few out of exp's short path, infinities and a NaN.
fn input(len: usize) -> Tensor {
    let values = (0..len)
        .map(|i| match i % 97 {
            0 => f32::INFINITY,
            1 => f32::NAN,
            2 => -200.0,
            3 => 95.0,
            _ => ((i as f32 * 0.618_034).fract() - 0.5) * 24.0,
        })
        .collect();
    Tensor::from_f32(&[len], values).unwrap()
}

/// The bits of `graph`'s first output on `x`.
fn run(graph: &Graph, x: &Tensor, wide_math: bool, threads: usize) -> Vec<u32> {
    let options = Options {
        wide_math,
        threads,
        ..Options::default()
    };
    let exe = kiln::compile(graph, &options).unwrap();
    let out = exe.run(std::slice::from_ref(x)).unwrap();
    out[0]
        .as_f32()
        .unwrap()
        .iter()
        .map(|y| y.to_bits())
        .collect()
}

#[test]
fn strip_mined_kernels_give_the_bits_of_the_clif_kernels() {
    // Under a strip, one strip and a remainder of each loop (16, 4, 1 points), many strips.
    for len in [100, 512, 512 + 16 + 4 + 3, 3 * 512 + 7, 20_000] {
        let x = input(len);
        for graph in graphs(len) {
            let want = run(&graph, &x, false, 1);
            for threads in [1, 3] {
                let got = run(&graph, &x, true, threads);
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    let (g, w) = (f32::from_bits(*g), f32::from_bits(*w));
                    assert!(
                        g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()),
                        "{} (len {len}, {threads} threads) at {i}: x = {:e}: strips {g:e}, CLIF {w:e}",
                        graph.name,
                        x.as_f32().unwrap()[i]
                    );
                }
            }
        }
    }
}

/// GELU fused into a matmul's epilogue (a transformer's MLP), which runs tile by tile: rows of 600 points, one strip
/// and a remainder each.
#[test]
fn strip_mined_matmul_epilogues_give_the_bits_of_the_clif_epilogues() {
    let (m, k, n) = (40, 96, 600);
    let mut b = Builder::new("mlp");
    let x = b.data("x", TensorType::f32(&[m, k])).unwrap();
    let w = b.data("w", TensorType::f32(&[k, n])).unwrap();
    let h = b.matmul(x, w).unwrap();
    let y = b.gelu(h, GeluApprox::None).unwrap();
    b.output("y", y).unwrap();
    let graph = b.finish();
    let values = |count: usize, scale: f32| {
        (0..count)
            .map(|i| ((i as f32 * 0.618_034).fract() - 0.5) * scale)
            .collect::<Vec<f32>>()
    };
    let inputs = [
        Tensor::from_f32(&[m, k], values(m * k, 2.0)).unwrap(),
        Tensor::from_f32(&[k, n], values(k * n, 0.5)).unwrap(),
    ];
    let run = |wide_math: bool, threads: usize| {
        let options = Options {
            wide_math,
            threads,
            ..Options::default()
        };
        let exe = kiln::compile(&graph, &options).unwrap();
        let out = exe.run(&inputs).unwrap();
        let bits: Vec<u32> = out[0]
            .as_f32()
            .unwrap()
            .iter()
            .map(|y| y.to_bits())
            .collect();
        bits
    };
    let want = run(false, 1);
    for threads in [1, 3] {
        assert!(run(true, threads) == want, "{threads} threads");
    }
}

/// Row softmax: its `exp` is in a `for` nest of a row kernel (one strip per up to 512 points of a row, then the
/// nest's own loops), with -inf scores (a causal mask's) and rows of every remainder.
#[test]
fn strip_mined_softmax_gives_the_bits_of_the_clif_softmax() {
    for (rows, cols) in [(7, 1000), (3, 1024), (5, 600), (4, 100)] {
        let mut b = Builder::new("softmax");
        let x = b.data("x", TensorType::f32(&[rows, cols])).unwrap();
        let y = b.softmax(x, -1).unwrap();
        b.output("y", y).unwrap();
        let graph = b.finish();
        let values = (0..rows * cols)
            .map(|i| match i % 13 {
                0 => f32::NEG_INFINITY,
                _ => ((i as f32 * 0.618_034).fract() - 0.5) * 30.0,
            })
            .collect();
        let x = Tensor::from_f32(&[rows, cols], values).unwrap();
        let want = run(&graph, &x, false, 1);
        for threads in [1, 3] {
            assert!(
                run(&graph, &x, true, threads) == want,
                "[{rows}, {cols}], {threads} threads"
            );
        }
    }
}

/// The CLIF of `graph`'s kernels and the arguments of every call to a wide routine in it, or `None` where the host
/// runs no strips (no FMA, or no AVX2 or AVX-512: then there is nothing to look at).
fn wide_calls(graph: &Graph) -> Option<(String, Vec<Vec<String>>)> {
    let program = kiln::kernel_program(graph, &Options::default()).unwrap();
    let clif: String = (0..program.kernels.len())
        .map(|k| kiln::backend::cpu::codegen::clif_text(&program, k).unwrap())
        .collect();
    let calls: Vec<Vec<String>> = clif
        .lines()
        .filter_map(|line| line.split_once("call fn").map(|(_, call)| call))
        .map(|call| {
            // `call fn0(v1, v2, v3, v4)  ; v3 = 512, ..`
            let (_, args) = call.split_once('(').unwrap();
            let (args, _) = args.split_once(')').unwrap();
            args.split(", ").map(str::to_string).collect()
        })
        .collect();
    (!calls.is_empty()).then_some((clif, calls))
}

/// Where each routine reads and writes (the bits are checked by the tests above):
/// - a row softmax's `exp(x - m)` reads its input row itself, shifted by the row's maximum, and writes the output
///   (the body does nothing but store it): its kernel has no slot at all;
/// - `exp(x·0.5 - 1)` has its argument computed into a slot (pass 1) and writes the output: `src ≠ dst`;
/// - W1's `logistic(x)` and `tanh(x)` read `x` themselves and write their slots, which the body then reads;
/// - of the four transcendentals of `exp(-x²)·sin(x) + log(|x| + 1)·cos(x)`, `sin` and `cos` read `x` and the other
///   two work in place in their slots (`src == dst`).
#[test]
fn routines_read_and_write_the_tensors_themselves_where_they_can() {
    let mut b = Builder::new("softmax");
    let x = b.data("x", TensorType::f32(&[4, 1024])).unwrap();
    let y = b.softmax(x, -1).unwrap();
    b.output("y", y).unwrap();
    let softmax = b.finish();
    let [w1, _, four, _, direct] = &graphs(4096)[..] else {
        unreachable!("five graphs")
    };
    // (graph, uses slots, how many calls work in place)
    for (graph, slots, in_place) in [
        (&softmax, false, 0),
        (direct, true, 0),
        (w1, true, 0),
        (four, true, 2),
    ] {
        let Some((clif, calls)) = wide_calls(graph) else {
            return; // no strips on this host
        };
        assert_eq!(
            clif.contains("stack_addr"),
            slots,
            "{}:\n{clif}",
            graph.name
        );
        assert!(
            calls.iter().all(|args| args.len() == 4),
            "{}: {calls:?}",
            graph.name
        );
        let same = calls.iter().filter(|args| args[0] == args[1]).count();
        assert_eq!(same, in_place, "{}: {calls:?}", graph.name);
    }
}
