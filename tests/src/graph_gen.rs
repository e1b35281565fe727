//! Random well-typed graphs for property tests (text round trip, interpreter, autodiff, passes).
//!
//! A graph is built from a list of `u64` seeds, one per step: each seed drives a small deterministic RNG that picks an
//! op and makes operands and attributes valid for it, so every generated graph is well-typed by construction, covers
//! every op and dtype, and shrinks well (proptest drops steps and simplifies seeds).
//!
//! ```text
//! use kiln_tests::graph_gen::{arb_graph, arb_float_graph};
//! proptest! {
//!     #[test]
//!     fn my_property(g in arb_graph()) { ... }
//! }
//! ```

use kiln_ir::{
    BinaryOp, CmpDir, DType, Graph, Literal, NodeId, Op, Role, Shape, TensorType, UnaryOp,
};
use proptest::prelude::*;

/// What kind of graphs to generate.
#[derive(Clone, Debug)]
pub struct GenConfig {
    /// Most steps; each adds one to three nodes.
    pub max_steps: usize,
    /// Element types of inputs, constants and iotas (others arise through `cast` and `compare`).
    pub dtypes: Vec<DType>,
    /// Only values of a float type reach operands and outputs; no `iota`, casts only between floats. Comparisons
    /// appear only as `select` conditions. Every op used has a gradient.
    pub differentiable: bool,
    /// Allow `inf`, `-inf`, `nan` and `-0.0` in constants.
    pub special_floats: bool,
    /// Rank of fresh inputs and constants is at most this (broadcast and reshape may add one more).
    pub max_rank: usize,
    /// Dimensions are drawn from `1..=max_dim` (1 is common, so broadcasting shows up).
    pub max_dim: usize,
    /// No value gets more elements than this.
    pub max_elements: usize,
    /// Zero-size dims (SPEC §1): `n > 0` makes about one drawn dim in `n` a 0 (fresh shapes, broadcast targets,
    /// matmul's `n`), one slice in `n` empty along an axis, and lets reductions, matmuls, concats and views meet
    /// empty operands. 0: never (and the same graphs as before the option existed).
    pub zero_dims: usize,
}

impl GenConfig {
    /// Every op and dtype, special float values included.
    pub fn all_ops() -> GenConfig {
        GenConfig {
            max_steps: 24,
            dtypes: DType::ALL.to_vec(),
            differentiable: false,
            special_floats: true,
            max_rank: 3,
            max_dim: 3,
            max_elements: 256,
            zero_dims: 0,
        }
    }

    /// [`GenConfig::all_ops`] with about one dim in 6 zero-sized.
    pub fn with_zero_dims() -> GenConfig {
        GenConfig {
            zero_dims: 6,
            ..GenConfig::all_ops()
        }
    }

    /// Float-only differentiable graphs with f32 and f64 inputs and finite constants.
    pub fn differentiable() -> GenConfig {
        GenConfig {
            dtypes: vec![DType::F32, DType::F64],
            differentiable: true,
            special_floats: false,
            ..GenConfig::all_ops()
        }
    }
}

/// Random well-typed graphs using every op and dtype.
pub fn arb_graph() -> impl Strategy<Value = Graph> {
    arb_graph_with(GenConfig::all_ops())
}

/// Random differentiable graphs: f32/f64 values only, every output a float (see [`GenConfig::differentiable`]).
pub fn arb_float_graph() -> impl Strategy<Value = Graph> {
    arb_graph_with(GenConfig::differentiable())
}

pub fn arb_graph_with(config: GenConfig) -> impl Strategy<Value = Graph> {
    prop::collection::vec(any::<u64>(), 1..=config.max_steps.max(1))
        .prop_map(move |seeds| build_graph(&seeds, &config))
}

/// The graph for `seeds` (deterministic: the same seeds always give the same graph).
pub fn build_graph(seeds: &[u64], config: &GenConfig) -> Graph {
    let mut gen = Gen {
        g: Graph::new(
            ["g", "gen", "rand.graph"][(seeds.first().copied().unwrap_or(0) % 3) as usize],
        ),
        config,
        inputs: 0,
    };
    let mut first = Rng(seeds.first().copied().unwrap_or(0) ^ 0x5eed);
    gen.fresh_input(&mut first);
    for &seed in seeds {
        let mut rng = Rng(seed);
        gen.step(&mut rng);
    }
    let mut rng = Rng(seeds.iter().fold(0x0u64, |a, &s| a.rotate_left(7) ^ s));
    gen.outputs(&mut rng);
    gen.g
}

/// `count` graphs from fixed seeds (the same on every run): the fixed cases a suite runs besides its random ones.
pub fn seeded_graphs(config: &GenConfig, count: u64) -> Vec<Graph> {
    (0..count)
        .map(|i| {
            let mut rng = Rng(i);
            let seeds: Vec<u64> = (0..1 + rng.below(config.max_steps))
                .map(|_| rng.next())
                .collect();
            build_graph(&seeds, config)
        })
        .collect()
}

/// SplitMix64: tiny, deterministic, good enough to make choices (the generator's and the parser fuzzer's).
pub struct Rng(pub u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// True with probability `1/n`.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    pub fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len())]
    }
}

struct Gen<'c> {
    g: Graph,
    config: &'c GenConfig,
    inputs: usize,
}

impl Gen<'_> {
    fn ty(&self, v: NodeId) -> TensorType {
        self.g.ty(v).clone()
    }

    /// Adds a node the generator made valid; a failure is a bug in the generator, so it panics with the op.
    fn add(&mut self, op: Op, operands: &[NodeId]) -> NodeId {
        let shown = format!("{op:?}");
        self.g
            .add(op, operands)
            .unwrap_or_else(|e| panic!("graph_gen made an ill-typed {shown}: {e}"))
    }

    /// Values an op may take as operand: in differentiable graphs only floats.
    fn pool(&self, want: impl Fn(&TensorType) -> bool) -> Vec<NodeId> {
        self.g
            .ids()
            .filter(|&id| {
                let t = self.g.ty(id);
                (!self.config.differentiable || t.dtype.is_float()) && want(t)
            })
            .collect()
    }

    fn pick_value(&self, rng: &mut Rng, want: impl Fn(&TensorType) -> bool) -> Option<NodeId> {
        let pool = self.pool(want);
        (!pool.is_empty()).then(|| rng.pick(&pool))
    }

    fn random_dtype(&self, rng: &mut Rng) -> DType {
        rng.pick(&self.config.dtypes)
    }

    fn random_shape(&self, rng: &mut Rng, min_rank: usize) -> Vec<usize> {
        let max_rank = self.config.max_rank.max(min_rank);
        let rank = min_rank + rng.below(max_rank - min_rank + 1);
        (0..rank).map(|_| self.random_dim(rng)).collect()
    }

    /// A dim in `1..=max_dim`, or (one in `zero_dims`) 0.
    fn random_dim(&self, rng: &mut Rng) -> usize {
        if self.zero_dim(rng) {
            return 0;
        }
        1 + rng.below(self.config.max_dim.max(1))
    }

    /// True one time in `zero_dims` (never when it is 0, drawing nothing then, so graphs stay as they were).
    fn zero_dim(&self, rng: &mut Rng) -> bool {
        self.config.zero_dims > 0 && rng.one_in(self.config.zero_dims)
    }

    fn fresh_input(&mut self, rng: &mut Rng) -> NodeId {
        let ty = TensorType::new(self.random_dtype(rng), self.random_shape(rng, 0));
        self.input_of(rng, ty)
    }

    fn input_of(&mut self, rng: &mut Rng, ty: TensorType) -> NodeId {
        let role = rng.pick(&[Role::Data, Role::Param, Role::Param, Role::State]);
        let prefix = match role {
            Role::Data => "x",
            Role::Param => "w",
            Role::State => "s",
        };
        let name = format!("{prefix}{}", self.inputs);
        self.inputs += 1;
        self.add(Op::Input { name, role, ty }, &[])
    }

    fn element(&self, rng: &mut Rng, dtype: DType) -> f64 {
        match dtype {
            DType::Bool => rng.below(2) as f64,
            DType::I32 => rng.pick(&[0.0, 1.0, -1.0, 2.0, 7.0, -3.0, 2147483647.0, -2147483648.0]),
            DType::F32 | DType::F64 => {
                if self.config.special_floats && rng.one_in(8) {
                    return rng.pick(&[f64::INFINITY, f64::NEG_INFINITY, f64::NAN, -0.0]);
                }
                let v = match rng.below(4) {
                    0 => rng.pick(&[0.0, 0.5, 1.0, -2.0, 1e-5, 3.25, -100.0]),
                    // Any f32: exactly representable in both float types.
                    _ => ((rng.next() as i64 as f64) / 2f64.powi(60)) as f32 as f64,
                };
                if dtype == DType::F32 {
                    v as f32 as f64
                } else {
                    v
                }
            }
        }
    }

    fn constant_of(&mut self, rng: &mut Rng, ty: TensorType) -> NodeId {
        let value = if rng.one_in(3) && ty.numel() <= 16 {
            Literal::Dense(
                (0..ty.numel())
                    .map(|_| self.element(rng, ty.dtype))
                    .collect(),
            )
        } else {
            Literal::Splat(self.element(rng, ty.dtype))
        };
        self.add(Op::Constant { ty, value }, &[])
    }

    /// An existing value of type `ty` (not `avoid` if possible), else a new input or constant of that type.
    fn value_of(&mut self, rng: &mut Rng, ty: &TensorType) -> NodeId {
        if !rng.one_in(3) {
            if let Some(v) = self.pick_value(rng, |t| t == ty) {
                return v;
            }
        }
        if rng.one_in(2) {
            self.input_of(rng, ty.clone())
        } else {
            self.constant_of(rng, ty.clone())
        }
    }

    fn step(&mut self, rng: &mut Rng) {
        let made = match rng.below(16) {
            0 => Some(self.fresh_input(rng)),
            1 => {
                let ty = TensorType::new(self.random_dtype(rng), self.random_shape(rng, 0));
                Some(self.constant_of(rng, ty))
            }
            2 => self.iota(rng),
            3 | 4 => self.unary(rng),
            5 => self.cast(rng),
            6 | 7 => self.binary(rng),
            8 => self.compare(rng),
            9 => self.select(rng),
            10 => self.reduce(rng),
            11 => self.reshape(rng),
            12 => self.transpose(rng),
            13 => self.broadcast(rng),
            14 => match rng.below(3) {
                0 => self.slice(rng),
                1 => self.concat(rng),
                _ => self.gather(rng),
            },
            _ => self.matmul(rng),
        };
        let made = made.unwrap_or_else(|| self.fresh_input(rng));
        let is_input = matches!(self.g.node(made).op, Op::Input { .. });
        if !is_input && self.g.node(made).name.is_none() && rng.one_in(4) {
            let name = if rng.one_in(2) {
                format!("h{}", made.0)
            } else {
                format!("l{}.out", made.0)
            };
            self.g
                .set_name(made, name)
                .unwrap_or_else(|e| panic!("graph_gen made a bad name: {e}"));
        }
    }

    fn iota(&mut self, rng: &mut Rng) -> Option<NodeId> {
        if self.config.differentiable {
            return None;
        }
        let dtypes: Vec<DType> = self
            .config
            .dtypes
            .iter()
            .copied()
            .filter(|d| d.is_numeric())
            .collect();
        if dtypes.is_empty() {
            return None;
        }
        let ty = TensorType::new(rng.pick(&dtypes), self.random_shape(rng, 1));
        let axis = rng.below(ty.rank());
        Some(self.add(Op::Iota { ty, axis }, &[]))
    }

    fn unary(&mut self, rng: &mut Rng) -> Option<NodeId> {
        let x = self.pick_value(rng, |t| t.dtype.is_numeric())?;
        let ops: Vec<UnaryOp> = UnaryOp::ALL
            .into_iter()
            .filter(|u| !u.float_only() || self.g.ty(x).dtype.is_float())
            .collect();
        let op = rng.pick(&ops);
        Some(self.add(Op::Unary(op), &[x]))
    }

    fn cast(&mut self, rng: &mut Rng) -> Option<NodeId> {
        let x = self.pick_value(rng, |_| true)?;
        let to = if self.config.differentiable {
            rng.pick(&[DType::F32, DType::F64])
        } else {
            rng.pick(&DType::ALL)
        };
        Some(self.add(Op::Cast { to }, &[x]))
    }

    fn binary(&mut self, rng: &mut Rng) -> Option<NodeId> {
        let a = self.pick_value(rng, |t| t.dtype.is_numeric())?;
        let ty = self.ty(a);
        let b = self.value_of(rng, &ty);
        let ops: Vec<BinaryOp> = BinaryOp::ALL
            .into_iter()
            .filter(|b| b.defined_on(ty.dtype))
            .collect();
        let op = rng.pick(&ops);
        let (l, r) = if rng.one_in(2) { (a, b) } else { (b, a) };
        Some(self.add(Op::Binary(op), &[l, r]))
    }

    /// `compare(a, b)` of a value and another of its type.
    fn comparison(&mut self, rng: &mut Rng, a: NodeId) -> NodeId {
        let ty = self.ty(a);
        let b = self.value_of(rng, &ty);
        let dirs: Vec<CmpDir> = CmpDir::ALL
            .into_iter()
            .filter(|d| !d.is_ordering() || ty.dtype.is_numeric())
            .collect();
        let dir = rng.pick(&dirs);
        self.add(Op::Compare(dir), &[a, b])
    }

    fn compare(&mut self, rng: &mut Rng) -> Option<NodeId> {
        if self.config.differentiable {
            return self.select(rng);
        }
        let a = self.pick_value(rng, |_| true)?;
        Some(self.comparison(rng, a))
    }

    fn select(&mut self, rng: &mut Rng) -> Option<NodeId> {
        let a = self.pick_value(rng, |_| true)?;
        let ty = self.ty(a);
        let cond_ty = ty.with_dtype(DType::Bool);
        let existing = self
            .g
            .ids()
            .filter(|&id| *self.g.ty(id) == cond_ty)
            .collect::<Vec<_>>();
        let cond = if !existing.is_empty() && rng.one_in(2) {
            rng.pick(&existing)
        } else {
            // Compare values of the branches' own type, so that differentiable graphs stay float inside.
            let base = self.value_of(rng, &ty);
            self.comparison(rng, base)
        };
        let b = self.value_of(rng, &ty);
        Some(self.add(Op::Select, &[cond, a, b]))
    }

    fn reduce(&mut self, rng: &mut Rng) -> Option<NodeId> {
        let x = self.pick_value(rng, |t| t.dtype.is_numeric())?;
        let rank = self.g.ty(x).rank();
        let axes = (0..rank).filter(|_| rng.one_in(2)).collect();
        let keep_dims = rng.one_in(2);
        let op = if rng.one_in(2) {
            Op::ReduceSum { axes, keep_dims }
        } else {
            Op::ReduceMax { axes, keep_dims }
        };
        Some(self.add(op, &[x]))
    }

    fn reshape(&mut self, rng: &mut Rng) -> Option<NodeId> {
        let x = self.pick_value(rng, |_| true)?;
        // Shuffle the dims, merge some neighbours and sprinkle 1s: same element count, different shape.
        let mut dims: Vec<usize> = self.g.ty(x).dims().to_vec();
        for i in (1..dims.len()).rev() {
            dims.swap(i, rng.below(i + 1));
        }
        let mut merged: Vec<usize> = Vec::new();
        for d in dims {
            match merged.last_mut() {
                Some(last) if rng.one_in(2) => *last *= d,
                _ => merged.push(d),
            }
        }
        while merged.len() <= self.config.max_rank && rng.one_in(3) {
            let at = rng.below(merged.len() + 1);
            merged.insert(at, 1);
        }
        Some(self.add(
            Op::Reshape {
                shape: Shape::from(merged),
            },
            &[x],
        ))
    }

    fn transpose(&mut self, rng: &mut Rng) -> Option<NodeId> {
        let x = self.pick_value(rng, |_| true)?;
        let mut perm: Vec<usize> = (0..self.g.ty(x).rank()).collect();
        for i in (1..perm.len()).rev() {
            perm.swap(i, rng.below(i + 1));
        }
        Some(self.add(Op::Transpose { perm }, &[x]))
    }

    fn broadcast(&mut self, rng: &mut Rng) -> Option<NodeId> {
        let x = self.pick_value(rng, |t| t.rank() <= self.config.max_rank)?;
        let ty = self.ty(x);
        let mut dims: Vec<usize> = ty
            .dims()
            .iter()
            .map(|&d| {
                if d == 1 && rng.one_in(2) {
                    self.random_dim(rng)
                } else {
                    d
                }
            })
            .collect();
        if rng.one_in(2) {
            dims.insert(0, self.random_dim(rng));
        }
        if dims.iter().product::<usize>() > self.config.max_elements {
            return None;
        }
        Some(self.add(
            Op::Broadcast {
                shape: Shape::from(dims),
            },
            &[x],
        ))
    }

    /// A `gather` along a random axis, by an i32 index of a random extent there: an input (values in `0..10`) or a
    /// constant (in range, negative or far out: out-of-range indices read 0). Not in differentiable graphs, which hold
    /// only floats.
    fn gather(&mut self, rng: &mut Rng) -> Option<NodeId> {
        // Differentiable graphs hold only float values; the index is i32.
        if self.config.differentiable {
            return None;
        }
        let x = self.pick_value(rng, |t| t.rank() >= 1)?;
        let mut dims = self.g.ty(x).dims().to_vec();
        let axis = rng.below(dims.len());
        dims[axis] = self.random_dim(rng);
        let ty = TensorType::new(DType::I32, dims);
        if ty.numel() > self.config.max_elements {
            return None;
        }
        let idx = if rng.one_in(2) {
            self.constant_of(rng, ty)
        } else {
            self.input_of(rng, ty)
        };
        Some(self.add(Op::Gather { axis }, &[x, idx]))
    }

    fn slice(&mut self, rng: &mut Rng) -> Option<NodeId> {
        let x = self.pick_value(rng, |_| true)?;
        let dims = self.g.ty(x).dims().to_vec();
        // An empty range (anywhere in `0..=d`) one time in `zero_dims`, and always along an empty axis. All starts
        // are drawn before the ends, as before `zero_dims` existed, so that its 0 gives the same graphs.
        let empty: Vec<bool> = dims.iter().map(|&d| d == 0 || self.zero_dim(rng)).collect();
        let start: Vec<usize> = dims
            .iter()
            .zip(&empty)
            .map(|(&d, &e)| if e { rng.below(d + 1) } else { rng.below(d) })
            .collect();
        let end: Vec<usize> = dims
            .iter()
            .zip(&start)
            .zip(&empty)
            .map(|((&d, &s), &e)| if e { s } else { s + 1 + rng.below(d - s) })
            .collect();
        Some(self.add(Op::Slice { start, end }, &[x]))
    }

    fn concat(&mut self, rng: &mut Rng) -> Option<NodeId> {
        let x = self.pick_value(rng, |t| t.rank() >= 1)?;
        let ty = self.ty(x);
        let axis = rng.below(ty.rank());
        let fits = |t: &TensorType| {
            t.dtype == ty.dtype
                && t.rank() == ty.rank()
                && (0..t.rank()).all(|i| i == axis || t.dims()[i] == ty.dims()[i])
        };
        let mut operands = vec![x];
        for _ in 0..rng.below(3) {
            operands.push(self.pick_value(rng, fits).unwrap_or(x));
        }
        let total: usize = operands.iter().map(|&o| self.g.ty(o).numel()).sum();
        if total > self.config.max_elements {
            return None;
        }
        Some(self.add(Op::Concat { axis }, &operands))
    }

    fn matmul(&mut self, rng: &mut Rng) -> Option<NodeId> {
        let a = self.pick_value(rng, |t| t.rank() >= 2 && t.dtype.is_numeric())?;
        let ta = self.ty(a);
        let r = ta.rank();
        let mut dims_b = ta.dims().to_vec();
        dims_b[r - 2] = ta.dims()[r - 1];
        let n = self.random_dim(rng);
        dims_b[r - 1] = n;
        if ta.numel() / ta.dims()[r - 1].max(1) * n > self.config.max_elements {
            return None;
        }
        let b = self.value_of(rng, &ta.with_shape(dims_b));
        Some(self.add(Op::Matmul, &[a, b]))
    }

    /// One to three outputs, the last node always among them; some replace an input of their type.
    fn outputs(&mut self, rng: &mut Rng) {
        let last = NodeId(self.g.len() as u32 - 1);
        let mut values = vec![last];
        for _ in 0..rng.below(3) {
            if let Some(v) = self.pick_value(rng, |_| true) {
                values.push(v);
            }
        }
        if self.config.differentiable {
            values.retain(|&v| self.g.ty(v).dtype.is_float());
        }
        for (k, v) in values.into_iter().enumerate() {
            let ty = self.ty(v);
            let target = self
                .g
                .inputs()
                .filter(|i| i.role != Role::Data && *i.ty == ty)
                .map(|i| i.name.to_string())
                .find(|name| {
                    !self
                        .g
                        .outputs()
                        .iter()
                        .any(|o| o.aliases.as_deref() == Some(name))
                });
            let result = match target {
                Some(input) if rng.one_in(2) => {
                    self.g
                        .add_output_aliasing(format!("{input}.new"), v, Some(input))
                }
                _ => self.g.add_output(format!("out{k}"), v),
            };
            result.unwrap_or_else(|e| panic!("graph_gen made a bad output: {e}"));
        }
    }
}

/// proptest's settings for a property test: `cases` cases (`ProptestConfig::with_cases`), with failures persisted
/// beside the test's source file, in `<file>.proptest-regressions`. proptest's default (`SourceParallel`) would put
/// them in a `proptest-regressions/` folder next to the nearest folder holding a `main.rs` — since every test is a
/// module of one binary, `tests/tests/main.rs`'s, away from the test.
pub fn proptest_config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::WithSource("proptest-regressions"),
        )),
        ..ProptestConfig::with_cases(cases)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn graphs(config: &GenConfig, count: u64) -> Vec<Graph> {
        seeded_graphs(config, count)
    }

    #[test]
    fn covers_every_op_and_dtype() {
        let mut ops = HashSet::new();
        let mut dtypes = HashSet::new();
        let mut ranks = HashSet::new();
        let mut aliased = 0;
        for g in graphs(&GenConfig::all_ops(), 300) {
            kiln_ir::verify(&g).expect("generated graphs verify");
            for n in g.nodes() {
                ops.insert(n.op.mnemonic());
                dtypes.insert(n.ty.dtype);
                ranks.insert(n.ty.rank());
            }
            aliased += g.outputs().iter().filter(|o| o.aliases.is_some()).count();
        }
        let all = [
            "input",
            "constant",
            "iota",
            "neg",
            "exp",
            "log",
            "sqrt",
            "recip",
            "tanh",
            "logistic",
            "abs",
            "cast",
            "add",
            "sub",
            "mul",
            "div",
            "max",
            "min",
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
        ];
        for m in all {
            assert!(ops.contains(m), "no {m} in 300 graphs");
        }
        assert_eq!(dtypes.len(), 4);
        assert!(ranks.contains(&0) && ranks.contains(&3));
        assert!(aliased > 0);
    }

    /// `zero_dims` makes every kind of zero-size case the backends must handle; without it no value is empty.
    #[test]
    fn zero_dims_reach_every_kind_of_empty_case() {
        let empty = |g: &Graph, id: NodeId| g.ty(id).numel() == 0;
        let mut seen = HashSet::new();
        for g in graphs(&GenConfig::with_zero_dims(), 300) {
            kiln_ir::verify(&g).expect("generated graphs verify");
            for id in g.ids() {
                let n = g.node(id);
                let operand_empty = n.operands.iter().any(|&o| empty(&g, o));
                let kind = match &n.op {
                    Op::Input { .. } if empty(&g, id) => "empty input",
                    Op::Constant { .. } if empty(&g, id) => "empty constant",
                    Op::ReduceSum { axes, .. } | Op::ReduceMax { axes, .. }
                        if axes.iter().any(|&a| g.ty(n.operands[0]).dims()[a] == 0)
                            && !empty(&g, id) =>
                    {
                        "reduction over an empty axis to a non-empty result"
                    }
                    Op::Slice { .. } if empty(&g, id) && !operand_empty => "empty slice of a value",
                    Op::Matmul if operand_empty && !empty(&g, id) => "matmul with k = 0",
                    Op::Matmul if empty(&g, id) => "empty matmul",
                    Op::Concat { .. } if operand_empty && !empty(&g, id) => {
                        "concat with an empty operand"
                    }
                    Op::Broadcast { .. } if empty(&g, id) && !operand_empty => "broadcast to 0",
                    Op::Reshape { .. } | Op::Transpose { .. } if operand_empty => {
                        "view of an empty value"
                    }
                    Op::Unary(_) | Op::Binary(_) if operand_empty => "elementwise on empties",
                    _ => continue,
                };
                seen.insert(kind);
            }
        }
        for kind in [
            "empty input",
            "empty constant",
            "reduction over an empty axis to a non-empty result",
            "empty slice of a value",
            "matmul with k = 0",
            "empty matmul",
            "concat with an empty operand",
            "broadcast to 0",
            "view of an empty value",
            "elementwise on empties",
        ] {
            assert!(seen.contains(kind), "no {kind} in 300 graphs: {seen:?}");
        }
        for g in graphs(&GenConfig::all_ops(), 300) {
            assert!(
                g.ids().all(|id| g.ty(id).numel() > 0),
                "{}",
                kiln_ir::text::print(&g)
            );
        }
    }

    #[test]
    fn differentiable_graphs_stay_float() {
        for g in graphs(&GenConfig::differentiable(), 300) {
            kiln_ir::verify(&g).expect("generated graphs verify");
            assert!(!g.outputs().is_empty());
            for n in g.nodes() {
                assert!(!matches!(n.op, Op::Iota { .. }));
                if let Op::Input { ty, .. } | Op::Constant { ty, .. } = &n.op {
                    assert!(ty.dtype.is_float());
                }
                // Only comparisons make bools, and only selects use them.
                if n.ty.dtype == DType::Bool {
                    assert!(matches!(n.op, Op::Compare(_)));
                }
                assert!(n.ty.dtype == DType::Bool || n.ty.dtype.is_float());
            }
            for o in g.outputs() {
                assert!(g.ty(o.value).dtype.is_float());
            }
        }
    }
}
