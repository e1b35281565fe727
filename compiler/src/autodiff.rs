//! Reverse-mode automatic differentiation as a graph transformation.
//!
//! [`grad`] returns a new graph that computes the original outputs **and** `grad.<input>` outputs, by appending the
//! backward pass (built from the per-op rules in `kiln_ir::vjp`) after the forward nodes, which it reuses: nothing is
//! recomputed and nothing is taped at run time. The result is ordinary IR, so every later pass handles it, and `grad`
//! can be applied to it again (Hessian-vector products).
//!
//! Preserves: every node and output of the input graph, unchanged and at the same index (the forward part is a prefix
//! of the result). Requires: a verified graph.

use kiln_ir::vjp::vjp;
use kiln_ir::{verify, Builder, Graph, IrError, NodeId, Role, Value};

/// Result of [`grad`]: the new graph and where its backward part begins (nodes before it are the forward pass).
#[derive(Clone, Debug)]
pub struct GradGraph {
    pub graph: Graph,
    pub backward_start: usize,
}

impl GradGraph {
    /// Group index per node, 0 = forward and 1 = backward, for `kiln_ir::dot::DotOptions`.
    pub fn dot_groups(&self) -> Vec<usize> {
        (0..self.graph.len())
            .map(|i| usize::from(i >= self.backward_start))
            .collect()
    }
}

/// Differentiates output `of` (a float scalar) with respect to the inputs named in `wrt` (float inputs).
///
/// Adds one output `grad.<name>` per `wrt` input, of that input's type. Inputs that `of` does not depend on get zeros;
/// inputs reached along several paths get the sum of the contributions.
pub fn grad(graph: &Graph, of: &str, wrt: &[&str]) -> Result<GradGraph, IrError> {
    grad_with_prefix(graph, of, wrt, "grad")
}

/// [`grad`], naming the gradient outputs `<prefix>.<name>`: differentiating a graph that already has `grad.*` outputs
/// (a Hessian-vector product, say) needs another prefix.
pub fn grad_with_prefix(
    graph: &Graph,
    of: &str,
    wrt: &[&str],
    prefix: &str,
) -> Result<GradGraph, IrError> {
    verify(graph)?;
    let out = graph
        .output(of)
        .ok_or_else(|| IrError::Invalid(format!("grad: the graph has no output `{of}`")))?;
    let root = out.value;
    let root_ty = graph.ty(root);
    if root_ty.rank() != 0 || !root_ty.dtype.is_float() {
        return Err(IrError::Invalid(format!(
            "grad: output `{of}` must be a float scalar, but it is {root_ty}"
        )));
    }
    let mut targets = Vec::with_capacity(wrt.len());
    for name in wrt {
        let input = graph
            .input(name)
            .ok_or_else(|| IrError::Invalid(format!("grad: the graph has no input `{name}`")))?;
        if !input.ty.dtype.is_float() {
            return Err(IrError::Invalid(format!(
                "grad: input `{name}` is {}; gradients are taken only with respect to float inputs",
                input.ty
            )));
        }
        if graph.output(&format!("{prefix}.{name}")).is_some() {
            return Err(IrError::Invalid(format!(
                "grad: the graph already has an output `{prefix}.{name}` (use another prefix)"
            )));
        }
        targets.push(input.id);
    }

    // Only nodes that depend on some `wrt` input through float values, and that `of` depends on, carry gradients.
    let n = graph.len();
    let mut from_wrt = vec![false; n];
    for &t in &targets {
        from_wrt[t.index()] = true;
    }
    for (i, node) in graph.nodes().iter().enumerate() {
        if node.ty.dtype.is_float() && node.operands.iter().any(|o| from_wrt[o.index()]) {
            from_wrt[i] = true;
        }
    }
    let mut to_root = vec![false; n];
    to_root[root.index()] = true;
    for i in (0..n).rev() {
        if to_root[i] {
            for o in &graph.nodes()[i].operands {
                to_root[o.index()] = true;
            }
        }
    }
    let active: Vec<bool> = (0..n).map(|i| from_wrt[i] && to_root[i]).collect();

    let mut b = Builder::from_graph(graph.clone());
    let mut cotangent: Vec<Option<Value>> = vec![None; n];
    if active[root.index()] {
        cotangent[root.index()] = Some(b.full_like(root, 1.0)?);
    }
    for i in (0..=root.index()).rev() {
        let Some(g) = cotangent[i] else { continue };
        let node = &graph.nodes()[i];
        let needs: Vec<bool> = node.operands.iter().map(|o| active[o.index()]).collect();
        if !needs.iter().any(|&x| x) {
            continue;
        }
        let grads = vjp(&mut b, NodeId(i as u32), g, &needs)?;
        for (operand, contribution) in node.operands.iter().zip(grads) {
            let Some(contribution) = contribution else {
                continue;
            };
            if !active[operand.index()] {
                continue;
            }
            let slot = &mut cotangent[operand.index()];
            *slot = Some(match *slot {
                None => contribution,
                // Inputs reached along several paths accumulate.
                Some(previous) => b.add(previous, contribution)?,
            });
        }
    }

    for (name, &id) in wrt.iter().zip(&targets) {
        let g = match cotangent[id.index()] {
            Some(g) => g,
            None => b.zeros_like(id)?,
        };
        b.output(&format!("{prefix}.{name}"), g)?;
    }
    let graph = b.finish();
    verify(&graph)?;
    Ok(GradGraph {
        graph,
        backward_start: n,
    })
}

/// The names of every `param` input, in input order: the default `wrt` of `kiln dump --stage grad`.
pub fn param_names(graph: &Graph) -> Vec<String> {
    graph
        .inputs()
        .filter(|i| i.role == Role::Param)
        .map(|i| i.name.to_string())
        .collect()
}

/// The graph's only float scalar output: the default `of` of `kiln dump --stage grad`.
pub fn sole_scalar_output(graph: &Graph) -> Result<String, IrError> {
    let scalars: Vec<&str> = graph
        .outputs()
        .iter()
        .filter(|o| {
            let t = graph.ty(o.value);
            t.rank() == 0 && t.dtype.is_float()
        })
        .map(|o| o.name.as_str())
        .collect();
    match scalars.as_slice() {
        [one] => Ok(one.to_string()),
        [] => Err(IrError::Invalid(
            "the graph has no float scalar output to differentiate".into(),
        )),
        many => Err(IrError::Invalid(format!(
            "the graph has several scalar outputs ({}); choose one with --of",
            many.join(", ")
        ))),
    }
}
