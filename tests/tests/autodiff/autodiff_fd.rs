//! Every primitive's and every composite's gradient against central finite differences, in f64 on the interpreter,
//! on seeded random shapes that include broadcasting, keep-dims, scalars and 1-sized dims.
//! Tolerance: `kiln_tests::fd::F64_TOLERANCE` (rtol 1e-6, atol 1e-8, h = 1e-6·max(1, |x|)).

use kiln::ir::{
    BinaryOp, Builder, CmpDir, DType, IrError, Role, Tensor, TensorType, UnaryOp, Value,
};
use kiln_tests::fd::{check_gradients, random_tensor, rng, Tolerance, F64_TOLERANCE};
use rand::RngExt;
use rand_chacha::ChaCha8Rng;

/// How a case's input values are drawn.
#[derive(Clone, Copy)]
enum Domain {
    /// N(0, 1).
    Normal,
    /// |N(0, 1)| + 0.5: away from the poles of log, sqrt, recip and pow.
    Positive,
    /// Integer class labels in `[0, k)`.
    Labels(usize),
}

struct Spec {
    name: &'static str,
    role: Role,
    dims: Vec<usize>,
    domain: Domain,
}

fn param(name: &'static str, dims: &[usize], domain: Domain) -> Spec {
    Spec {
        name,
        role: Role::Param,
        dims: dims.to_vec(),
        domain,
    }
}

fn data(name: &'static str, dims: &[usize], domain: Domain) -> Spec {
    Spec {
        name,
        role: Role::Data,
        dims: dims.to_vec(),
        domain,
    }
}

/// Builds the case graph (inputs per `specs`, output `y = body(inputs)`), draws its inputs, and checks it.
fn check(
    name: &str,
    specs: &[Spec],
    seed: u64,
    tol: Tolerance,
    body: impl Fn(&mut Builder, &[Value]) -> Result<Value, IrError>,
) {
    let mut b = Builder::new(name);
    let mut values = Vec::new();
    let mut tensors = Vec::new();
    let mut r = rng(seed);
    for spec in specs {
        let dtype = if matches!(spec.domain, Domain::Labels(_)) {
            DType::I32
        } else {
            DType::F64
        };
        let ty = TensorType::new(dtype, spec.dims.as_slice());
        values.push(b.input(spec.name, spec.role, ty.clone()).unwrap());
        let t = match spec.domain {
            Domain::Normal => random_tensor(&ty, &mut r),
            Domain::Positive => {
                let v: Vec<f64> = random_tensor(&ty, &mut r)
                    .to_f64_vec()
                    .iter()
                    .map(|x| x.abs() + 0.5)
                    .collect();
                Tensor::from_f64_values(ty, &v).unwrap()
            }
            Domain::Labels(k) => {
                let v: Vec<f64> = (0..ty.numel())
                    .map(|_| r.random_range(0..k) as f64)
                    .collect();
                Tensor::from_f64_values(ty, &v).unwrap()
            }
        };
        tensors.push(t);
    }
    let y =
        body(&mut b, &values).unwrap_or_else(|e| panic!("{name}: building the case failed: {e}"));
    b.output("y", y).unwrap();
    let graph = b.finish();
    let report = check_gradients(&graph, &tensors, tol, seed);
    assert!(
        report.checked > 0 || graph.inputs().all(|i| i.ty.numel() == 0),
        "{name}: nothing was checked"
    );
}

/// A random shape of rank 0..=3 with dims in 1..=3 (so 1-sized dims are common).
fn random_shape(r: &mut ChaCha8Rng) -> Vec<usize> {
    let rank = r.random_range(0..=3);
    (0..rank).map(|_| r.random_range(1..=3)).collect()
}

/// A shape that broadcasts to `full`: some leading dims dropped, some dims set to 1.
fn broadcastable_from(full: &[usize], r: &mut ChaCha8Rng) -> Vec<usize> {
    let drop = r.random_range(0..=full.len());
    full[drop..]
        .iter()
        .map(|&d| if r.random_bool(0.3) { 1 } else { d })
        .collect()
}

const SEEDS: std::ops::Range<u64> = 0..6;

#[test]
fn unary_primitives() {
    for op in UnaryOp::ALL {
        let domain = match op {
            UnaryOp::Log | UnaryOp::Sqrt | UnaryOp::Recip => Domain::Positive,
            _ => Domain::Normal,
        };
        for seed in SEEDS {
            let dims = random_shape(&mut rng(seed));
            check(
                op.name(),
                &[param("x", &dims, domain)],
                seed,
                F64_TOLERANCE,
                |b, v| b.unary(op, v[0]),
            );
        }
    }
}

/// Gradients of gradients of the ops whose VJP is written with another transcendental op (`sin` ↔ `cos`): `y = ∂/∂x
/// Σ op(x)`, the first gradient graph, is differentiated again and checked against finite differences of it.
#[test]
fn grad_of_grad_of_sin_and_cos() {
    for op in [UnaryOp::Sin, UnaryOp::Cos] {
        for seed in SEEDS {
            let ty = TensorType::new(DType::F64, random_shape(&mut rng(seed)).as_slice());
            let mut b = Builder::new(op.name());
            let x = b.input("x", Role::Param, ty.clone()).unwrap();
            let y = b.unary(op, x).unwrap();
            // Not `loss`: the check adds an output of that name.
            let f = b.sum_all(y).unwrap();
            b.output("f", f).unwrap();
            // Its own prefix: the check's gradient outputs are `grad.*`.
            let first = kiln::autodiff::grad_with_prefix(&b.finish(), "f", &["x"], "first")
                .unwrap()
                .graph;
            let mut b = Builder::from_graph(first.clone());
            b.output("y", first.output("first.x").unwrap().value)
                .unwrap();
            let graph = b.finish();
            let mut r = rng(seed);
            let inputs: Vec<Tensor> = graph
                .inputs()
                .map(|i| random_tensor(i.ty, &mut r))
                .collect();
            let report = check_gradients(&graph, &inputs, F64_TOLERANCE, seed);
            assert!(
                report.checked > 0 || ty.numel() == 0,
                "{}: nothing checked",
                op.name()
            );
        }
    }
}

#[test]
fn binary_primitives_with_broadcasting() {
    // The int-only (bitwise) ops have no float operands to differentiate.
    for op in BinaryOp::ALL.into_iter().filter(|op| !op.int_only()) {
        for seed in SEEDS {
            let mut r = rng(100 + seed);
            let full = random_shape(&mut r);
            let part = broadcastable_from(&full, &mut r);
            // Swap sides on odd seeds so both operands get broadcast.
            let (da, db) = if seed % 2 == 0 {
                (full.clone(), part)
            } else {
                (part, full.clone())
            };
            let domain_a = if matches!(op, BinaryOp::Pow) {
                Domain::Positive
            } else {
                Domain::Normal
            };
            let domain_b = if matches!(op, BinaryOp::Div) {
                Domain::Positive
            } else {
                Domain::Normal
            };
            check(
                op.name(),
                &[param("a", &da, domain_a), param("b", &db, domain_b)],
                seed,
                F64_TOLERANCE,
                |b, v| b.binary(op, v[0], v[1]),
            );
        }
    }
}

#[test]
fn max_min_ties_split_the_gradient() {
    // max(x, x) = x: each side gets half, and the two halves accumulate to 1.
    check(
        "max_tie",
        &[param("x", &[3], Domain::Normal)],
        1,
        F64_TOLERANCE,
        |b, v| b.max(v[0], v[0]),
    );
    check(
        "min_tie",
        &[param("x", &[3], Domain::Normal)],
        2,
        F64_TOLERANCE,
        |b, v| b.min(v[0], v[0]),
    );
}

#[test]
fn float_cast_round_trip() {
    // f64 -> f32 -> f64 is the identity up to f32 rounding, so the step and tolerance are those of f32.
    let tol = Tolerance {
        atol: 1e-3,
        rtol: 1e-3,
        step: 1e-2,
    };
    check(
        "cast",
        &[param("x", &[2, 3], Domain::Normal)],
        3,
        tol,
        |b, v| {
            let narrow = b.cast(v[0], DType::F32)?;
            b.cast(narrow, DType::F64)
        },
    );
}

#[test]
fn select_routes_the_gradient() {
    for seed in SEEDS {
        let dims = random_shape(&mut rng(200 + seed));
        let specs = [
            param("a", &dims, Domain::Normal),
            param("b", &dims, Domain::Normal),
            data("c", &dims, Domain::Normal),
        ];
        check("select", &specs, seed, F64_TOLERANCE, |b, v| {
            let cond = b.compare_scalar(CmpDir::Gt, v[2], 0.0)?;
            b.select(cond, v[0], v[1])
        });
    }
}

#[test]
fn reductions_over_axes_with_and_without_keep_dims() {
    for seed in SEEDS {
        let mut r = rng(300 + seed);
        let dims: Vec<usize> = (0..r.random_range(1..=3))
            .map(|_| r.random_range(1..=4))
            .collect();
        let axes: Vec<isize> = (0..dims.len() as isize)
            .filter(|_| r.random_bool(0.5))
            .collect();
        for keep in [false, true] {
            let a = axes.clone();
            check(
                "reduce_sum",
                &[param("x", &dims, Domain::Normal)],
                seed,
                F64_TOLERANCE,
                move |b, v| b.reduce_sum(v[0], &a, keep),
            );
            let a = axes.clone();
            check(
                "reduce_max",
                &[param("x", &dims, Domain::Normal)],
                seed,
                F64_TOLERANCE,
                move |b, v| b.reduce_max(v[0], &a, keep),
            );
        }
    }
}

#[test]
fn reduce_max_ties_share_the_gradient() {
    // Each row holds its maximum twice: the cotangent is split between the two copies.
    check(
        "reduce_max_tie",
        &[param("x", &[2, 3], Domain::Normal)],
        4,
        F64_TOLERANCE,
        |b, v| {
            let doubled = b.concat(&[v[0], v[0]], 1)?;
            b.reduce_max(doubled, &[1], false)
        },
    );
}

#[test]
fn movement_primitives() {
    let t = F64_TOLERANCE;
    check(
        "reshape",
        &[param("x", &[2, 3, 2], Domain::Normal)],
        1,
        t,
        |b, v| b.reshape(v[0], &[3, 4]),
    );
    check(
        "reshape_scalar",
        &[param("x", &[1, 1], Domain::Normal)],
        2,
        t,
        |b, v| b.reshape(v[0], &[]),
    );
    check(
        "transpose",
        &[param("x", &[2, 3, 4], Domain::Normal)],
        3,
        t,
        |b, v| b.transpose(v[0], &[2, 0, 1]),
    );
    check(
        "broadcast",
        &[param("x", &[3, 1], Domain::Normal)],
        4,
        t,
        |b, v| b.broadcast(v[0], &[2, 3, 4]),
    );
    check(
        "broadcast_scalar",
        &[param("x", &[], Domain::Normal)],
        5,
        t,
        |b, v| b.broadcast(v[0], &[2, 2]),
    );
    check(
        "slice",
        &[param("x", &[4, 5], Domain::Normal)],
        6,
        t,
        |b, v| b.slice(v[0], &[1, 0], &[3, 4]),
    );
    check(
        "slice_3d",
        &[param("x", &[3, 3, 3], Domain::Normal)],
        7,
        t,
        |b, v| b.slice(v[0], &[1, 1, 0], &[2, 3, 2]),
    );
    let specs = [
        param("a", &[2, 3], Domain::Normal),
        param("b", &[2, 1], Domain::Normal),
        param("c", &[2, 2], Domain::Normal),
    ];
    check("concat", &specs, 8, t, |b, v| {
        b.concat(&[v[0], v[1], v[2]], 1)
    });
}

#[test]
fn matmul_plain_and_batched() {
    let t = F64_TOLERANCE;
    check(
        "matmul",
        &[
            param("a", &[3, 4], Domain::Normal),
            param("b", &[4, 2], Domain::Normal),
        ],
        1,
        t,
        |b, v| b.matmul(v[0], v[1]),
    );
    let specs = [
        param("a", &[2, 3, 4], Domain::Normal),
        param("b", &[2, 4, 1], Domain::Normal),
    ];
    check("matmul_batched", &specs, 2, t, |b, v| b.matmul(v[0], v[1]));
    // Batch dims broadcast in the builder: the gradient of the broadcast operand is summed over the batch.
    let specs = [
        param("a", &[2, 3, 4], Domain::Normal),
        param("b", &[4, 2], Domain::Normal),
    ];
    check("matmul_broadcast_batch", &specs, 3, t, |b, v| {
        b.matmul(v[0], v[1])
    });
}

#[test]
fn activation_composites() {
    for seed in SEEDS {
        let dims = random_shape(&mut rng(400 + seed));
        let x = || [param("x", &dims, Domain::Normal)];
        let t = F64_TOLERANCE;
        check("relu", &x(), seed, t, |b, v| b.relu(v[0]));
        check("leaky_relu", &x(), seed, t, |b, v| b.leaky_relu(v[0], 0.01));
        check("softplus", &x(), seed, t, |b, v| b.softplus(v[0]));
        check("heaviside", &x(), seed, t, |b, v| b.heaviside(v[0]));
        check("sigmoid", &x(), seed, t, |b, v| b.sigmoid(v[0]));
        check("tanh", &x(), seed, t, |b, v| b.tanh(v[0]));
    }
}

#[test]
fn softmax_family() {
    for seed in SEEDS {
        let mut r = rng(500 + seed);
        let dims: Vec<usize> = (0..r.random_range(1..=3))
            .map(|_| r.random_range(1..=4))
            .collect();
        let axis = -(r.random_range(1..=dims.len()) as isize);
        let t = F64_TOLERANCE;
        let x = || [param("x", &dims, Domain::Normal)];
        check("softmax", &x(), seed, t, move |b, v| b.softmax(v[0], axis));
        check("log_softmax", &x(), seed, t, move |b, v| {
            b.log_softmax(v[0], axis)
        });
        check("logsumexp", &x(), seed, t, move |b, v| {
            b.logsumexp(v[0], axis, false)
        });
        check("logsumexp_keep", &x(), seed, t, move |b, v| {
            b.logsumexp(v[0], axis, true)
        });
    }
}

#[test]
fn layers_and_losses() {
    let t = F64_TOLERANCE;
    let specs = [
        param("x", &[5, 3], Domain::Normal),
        param("w", &[4, 3], Domain::Normal),
        param("b", &[4], Domain::Normal),
    ];
    check("linear", &specs, 1, t, |b, v| {
        b.linear(v[0], v[1], Some(v[2]))
    });
    let specs = [
        param("x", &[2, 5, 3], Domain::Normal),
        param("w", &[1, 3], Domain::Normal),
    ];
    check("linear_3d_no_bias", &specs, 2, t, |b, v| {
        b.linear(v[0], v[1], None)
    });
    check(
        "mean",
        &[param("x", &[3, 4], Domain::Normal)],
        3,
        t,
        |b, v| b.mean(v[0], &[0], true),
    );
    let pair = || {
        [
            param("p", &[4, 2], Domain::Normal),
            param("q", &[4, 2], Domain::Normal),
        ]
    };
    check("mse", &pair(), 4, t, |b, v| b.mse_loss(v[0], v[1]));
    check("bce_with_logits", &pair(), 5, t, |b, v| {
        b.bce_with_logits(v[0], v[1])
    });
    check("bce", &pair(), 6, t, |b, v| {
        let p = b.sigmoid(v[0])?;
        let y = b.sigmoid(v[1])?;
        b.bce_loss(p, y)
    });
    let specs = [
        param("logits", &[6, 4], Domain::Normal),
        data("labels", &[6], Domain::Labels(4)),
    ];
    check("cross_entropy", &specs, 7, t, |b, v| {
        b.cross_entropy(v[0], v[1])
    });
}

#[test]
fn unused_and_shared_inputs() {
    // `u` does not reach the output: its gradient is zeros of its shape. `x` is used on three paths.
    let specs = [
        param("x", &[3], Domain::Normal),
        param("u", &[2, 2], Domain::Normal),
    ];
    check("paths", &specs, 1, F64_TOLERANCE, |b, v| {
        let sq = b.mul(v[0], v[0])?;
        let e = b.exp(v[0])?;
        b.add(sq, e)
    });
}
