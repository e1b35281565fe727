//! Which plan a kernel runs under: one invocation per point, one workgroup per point (cooperative reductions), or
//! the tiled matmul — the rule of the parent module doc's "Workgroup kernels" and "Matmuls", within the device limits.

use super::matmul::{tiled_groups, TILE};
use crate::backend::spirv::{
    grid_groups, DeviceLimits, Options, WORKGROUP_REDUCE_WIDE, WORKGROUP_SIZE,
};
use crate::kernel::{BufferId, IndexExpr, Inst, Kernel, Loop, LoopKernel, ScalarOp, Var};

/// The largest power-of-two workgroup size (x) the device allows: at most `maxComputeWorkGroupInvocations` and
/// `maxComputeWorkGroupSize[0]`.
fn max_threads(limits: &DeviceLimits) -> u32 {
    let most = limits
        .max_workgroup_invocations
        .min(limits.max_workgroup_size[0])
        .max(1);
    1 << most.ilog2()
}

/// How a kernel's parallel points map onto invocations (the rule is in the parent module doc).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Plan {
    /// One invocation per parallel point, `threads` ([`WORKGROUP_SIZE`], or fewer where the device allows fewer)
    /// invocations per workgroup.
    PerPoint { threads: u32 },
    /// One workgroup of `threads` invocations per parallel point: top-level reductions and `for` loops are strided
    /// across the workgroup, reductions combined through shared memory (after a subgroup butterfly if
    /// `subgroups`).
    Workgroup { threads: u32, subgroups: bool },
    /// A matmul as `TILE × TILE` output blocks, one workgroup of `TILE²` invocations each (one output element per
    /// invocation), `k` walked in `TILE`-wide steps through shared-memory tiles of A and B.
    Tiled,
}

impl Plan {
    pub(super) fn per_point(limits: &DeviceLimits) -> Plan {
        Plan::PerPoint {
            threads: WORKGROUP_SIZE.min(max_threads(limits)),
        }
    }

    /// A workgroup plan of `threads` invocations (a power of two), with subgroups where they fit.
    pub(super) fn workgroup(threads: u32, options: &Options) -> Plan {
        let subgroups = options
            .subgroup_size
            .is_some_and(|s| s.is_power_of_two() && (2..=threads).contains(&s));
        Plan::Workgroup { threads, subgroups }
    }

    pub(super) fn choose(kernel: &Kernel, options: &Options) -> Plan {
        let limits = &options.limits;
        let per_point = Plan::per_point(limits);
        let k = match kernel {
            Kernel::Loop(k) => k,
            // Refused by `emit::kernel` before a plan is chosen; its copy is a loop.
            Kernel::Collective(c) => &c.copy,
            Kernel::Matmul(m) => {
                let fits = max_threads(limits) >= TILE * TILE;
                return match tiled_groups(m, limits) {
                    Some(_) if options.tiled_matmul && m.k >= TILE as usize && fits => Plan::Tiled,
                    _ => per_point,
                };
            }
        };
        let flat = |loops: &[Loop]| loops.iter().map(|l| l.extent as u64).product::<u64>();
        let longest = k
            .body
            .insts
            .iter()
            .filter_map(|i| match i {
                Inst::Reduce { loops, .. } => Some(flat(loops)),
                Inst::Let { .. } | Inst::For { .. } | Inst::Store { .. } => None,
            })
            .max();
        let Some(longest) = longest else {
            return per_point;
        };
        // A strided counter must not wrap: every top-level loop nest stays below 2^31.
        let fits = k.body.insts.iter().all(|i| match i {
            Inst::Reduce { loops, .. } | Inst::For { loops, .. } => flat(loops) < 1 << 31,
            Inst::Let { .. } | Inst::Store { .. } => true,
        });
        let Some(min) = options.workgroup_reductions else {
            return per_point;
        };
        // A kernel that reads back what it stores would need barriers between the store and the loads of other
        // invocations, and stays per point — unless each element is read by the invocation that stored it (a row
        // materialized by `kernel::materialize`; see [`accessed_by_its_writer`]).
        let writes = kernel.writes();
        if kernel
            .reads()
            .iter()
            .any(|b| writes.contains(b) && !accessed_by_its_writer(k, *b))
        {
            return per_point;
        }
        // A workgroup of fewer than 2 invocations would reduce nothing in parallel.
        if longest < min as u64 || !fits || max_threads(limits) < 2 {
            return per_point;
        }
        let threads = if longest >= WORKGROUP_REDUCE_WIDE as u64 {
            256
        } else {
            64
        };
        Plan::workgroup(threads.min(max_threads(limits)), options)
    }

    pub(super) fn local_size(self) -> u32 {
        match self {
            Plan::PerPoint { threads } => threads,
            Plan::Workgroup { threads, .. } => threads,
            Plan::Tiled => TILE * TILE,
        }
    }

    /// The workgroup counts of the plan for `points` points, or `None` if the device's counts can't hold them.
    pub(super) fn groups(
        self,
        kernel: &Kernel,
        points: u64,
        limits: &DeviceLimits,
    ) -> Option<[u32; 3]> {
        match self {
            Plan::PerPoint { threads } => {
                grid_groups(points.div_ceil(threads as u64), threads, limits)
            }
            Plan::Workgroup { .. } => grid_groups(points, 1, limits),
            Plan::Tiled => match kernel {
                Kernel::Matmul(m) => tiled_groups(m, limits),
                Kernel::Loop(_) | Kernel::Collective(_) => None,
            },
        }
    }
}

/// Whether, in a [`Plan::Workgroup`] kernel, every load and store of `buffer` is made by the invocation that
/// stores that element, so no barrier is needed between them: every access is directly in the body of a top-level
/// `reduce` or `for`, all these nests have the same extents, and all index `buffer` with the same affine function of
/// the nest's variables (position by position), one-to-one. [`Emitter::strided`] deals the flattened points of each
/// such nest alike (point `c` to invocation `c mod threads`), so the element of point `c` is stored and loaded by
/// that invocation only, in program order.
fn accessed_by_its_writer(kernel: &LoopKernel, buffer: BufferId) -> bool {
    // (extents, offset, strides by loop position and of the other variables)
    type Access = (Vec<usize>, usize, Vec<usize>, Vec<(Var, usize)>);
    let mut accesses: Vec<Access> = Vec::new();
    let mut nested = false;
    for inst in &kernel.body.insts {
        let (loops, body) = match inst {
            Inst::Reduce { loops, body, .. } | Inst::For { loops, body } => (loops, body),
            // Run by every invocation (a let) or by invocation 0 (a store).
            Inst::Let { .. } | Inst::Store { .. } if accesses_buffer(inst, buffer).is_some() => {
                return false
            }
            Inst::Let { .. } | Inst::Store { .. } => continue,
        };
        for i in &body.insts {
            if let Inst::Reduce { body, .. } | Inst::For { body, .. } = i {
                body.visit(&mut |i| nested |= accesses_buffer(i, buffer).is_some());
            }
            let index = match accesses_buffer(i, buffer) {
                None => continue,
                Some(Some(index)) => index,
                // A guarded load of a buffer the kernel stores: not provably its writer's own element.
                Some(None) => return false,
            };
            let position = |v: Var| loops.iter().position(|l| l.var == v);
            let strides = loops.iter().map(|l| index.stride_of(l.var)).collect();
            let outer = index
                .terms
                .iter()
                .filter(|t| position(t.0).is_none())
                .copied()
                .collect();
            let extents = loops.iter().map(|l| l.extent).collect();
            accesses.push((extents, index.offset, strides, outer));
        }
    }
    let Some(first) = accesses.first() else {
        return false;
    };
    // One-to-one: sorted by stride, each stride exceeds the largest offset the smaller ones reach.
    let mut dims: Vec<(usize, usize)> = first
        .2
        .iter()
        .zip(&first.0)
        .filter(|&(_, &extent)| extent > 1)
        .map(|(&stride, &extent)| (stride, extent))
        .collect();
    dims.sort();
    let mut reach = 0usize;
    for (stride, extent) in dims {
        if stride <= reach {
            return false;
        }
        reach = reach.saturating_add(stride.saturating_mul(extent - 1));
    }
    !nested && accesses.iter().all(|a| a == first)
}

/// Whether `inst` loads or stores `buffer`, and at which affine index (`Some(None)`: a guarded load, whose index is
/// not affine). Every scalar op is listed: one that reads a buffer must be counted here, or a workgroup kernel could
/// read an element another invocation stores.
fn accesses_buffer(inst: &Inst, buffer: BufferId) -> Option<Option<&IndexExpr>> {
    match inst {
        Inst::Let { op, .. } => match op {
            ScalarOp::Load { buffer: b, index } => (*b == buffer).then_some(Some(index)),
            ScalarOp::LoadOr { buffer: b, .. } | ScalarOp::LoadAt { buffer: b, .. } => {
                (*b == buffer).then_some(None)
            }
            ScalarOp::Const { .. }
            | ScalarOp::Index(_)
            | ScalarOp::MatmulAcc
            | ScalarOp::Unary(..)
            | ScalarOp::Cast(_)
            | ScalarOp::Binary(..)
            | ScalarOp::Compare(..)
            | ScalarOp::Select(..) => None,
        },
        Inst::Store {
            buffer: b, index, ..
        } => (*b == buffer).then_some(Some(index)),
        Inst::Reduce { .. } | Inst::For { .. } => None,
    }
}
