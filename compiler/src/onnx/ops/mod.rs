//! ONNX op → Kiln builder calls, one module per family. [`translate`] dispatches on the op type; each op's
//! opset-dependent forms (an attribute that became an input, a changed default) are handled in its function.

mod elementwise;
mod loss;
mod nn;
mod reduce;
mod resize;
pub mod shape;

use super::convert::{Ctx, NodeCx, OpResult, Out};

/// Every ONNX op type (default domain) the importer translates.
#[rustfmt::skip]
pub const SUPPORTED_OPS: &[&str] = &[
    "Abs", "Acosh", "Add", "And", "ArgMax", "ArgMin", "Asinh", "Atanh", "AveragePool", "BatchNormalization",
    "BitShift", "BitwiseAnd", "BitwiseOr", "BitwiseXor", "Cast", "CastLike", "Ceil", "Celu", "Clip", "Concat",
    "Constant", "ConstantOfShape", "Conv", "ConvTranspose", "Cos", "Cosh", "CumSum", "DepthToSpace", "Div",
    "Dropout", "Elu", "Equal", "Erf", "Exp", "Expand", "EyeLike", "Flatten", "Floor", "Gather", "GatherElements",
    "Gelu", "Gemm", "GlobalAveragePool", "GlobalMaxPool", "Greater", "GreaterOrEqual", "GroupNormalization",
    "Hardmax", "HardSigmoid", "HardSwish", "Identity", "InstanceNormalization", "IsInf", "IsNaN",
    "LayerNormalization", "LeakyRelu", "Less", "LessOrEqual", "Log", "LogSoftmax", "LRN", "MatMul", "Max",
    "MaxPool", "Mean", "MeanVarianceNormalization", "Min", "Mish", "Mod", "Mul", "Neg", "NegativeLogLikelihoodLoss",
    "Not", "OneHot", "Or", "Pad", "Pow", "PRelu", "Range", "Reciprocal", "ReduceL1", "ReduceL2", "ReduceLogSum",
    "ReduceLogSumExp", "ReduceMax", "ReduceMean", "ReduceMin", "ReduceProd", "ReduceSum", "ReduceSumSquare", "Relu",
    "Reshape", "Resize", "Round", "Selu", "Shape", "Shrink", "Sigmoid", "Sign", "Sin", "Sinh", "Size", "Slice",
    "Softmax", "SoftmaxCrossEntropyLoss", "Softplus", "Softsign", "SpaceToDepth", "Split", "Sqrt", "Squeeze", "Sub",
    "Sum", "Tan", "Tanh", "ThresholdedRelu", "Tile", "Transpose", "Trilu", "Unsqueeze", "Where", "Xor",
];

/// Translates one node of the default domain; the outputs are in the node's output order.
pub fn translate(cx: &mut Ctx, n: &NodeCx) -> OpResult<Vec<Out>> {
    let one = |v| Ok(vec![Out::Node(v)]);
    match n.op_type() {
        "Add" | "Sub" | "Mul" | "Div" | "Pow" | "BitShift" | "BitwiseAnd" | "BitwiseOr"
        | "BitwiseXor" => one(elementwise::binary(cx, n)?),
        "Max" | "Min" | "Sum" | "Mean" => one(elementwise::variadic(cx, n)?),
        "Abs" | "Neg" | "Exp" | "Log" | "Sqrt" | "Reciprocal" | "Tanh" | "Sigmoid" | "Erf"
        | "Sin" | "Cos" | "Floor" | "Ceil" | "Round" | "Relu" | "Softplus" | "Softsign"
        | "Sign" => one(elementwise::unary(cx, n)?),
        "LeakyRelu" | "Elu" | "Selu" | "HardSigmoid" | "HardSwish" | "Gelu" | "Mish" | "PRelu"
        | "ThresholdedRelu" => one(elementwise::activation(cx, n)?),
        "Clip" => one(elementwise::clip(cx, n)?),
        "Mod" => one(elementwise::modulo(cx, n)?),
        "Sinh" | "Cosh" | "Tan" | "Asinh" | "Acosh" | "Atanh" => one(elementwise::math(cx, n)?),
        "Shrink" | "Celu" => one(elementwise::shrink_celu(cx, n)?),
        "DepthToSpace" | "SpaceToDepth" => one(shape::depth_space(cx, n)?),
        "CumSum" => one(shape::cumsum(cx, n)?),
        "IsNaN" | "IsInf" => one(elementwise::is_special(cx, n)?),
        "Equal" | "Less" | "Greater" | "LessOrEqual" | "GreaterOrEqual" => {
            one(elementwise::compare(cx, n)?)
        }
        "Not" | "And" | "Or" | "Xor" => one(elementwise::logical(cx, n)?),
        "Where" => one(elementwise::where_(cx, n)?),
        "Cast" | "CastLike" => one(elementwise::cast(cx, n)?),
        "Identity" => one(cx.input(n, 0)?),
        "Dropout" => elementwise::dropout(cx, n),
        "Resize" => one(resize::resize(cx, n)?),
        "Softmax" | "LogSoftmax" => one(elementwise::softmax(cx, n)?),
        "Constant" => Ok(vec![Out::Const(shape::constant(n)?)]),
        "Reshape" | "Flatten" | "Squeeze" | "Unsqueeze" => one(shape::reshape_family(cx, n)?),
        "Transpose" => one(shape::transpose(cx, n)?),
        "Concat" => one(shape::concat(cx, n)?),
        "Split" => shape::split(cx, n),
        "Slice" => one(shape::slice(cx, n)?),
        "Expand" => one(shape::expand(cx, n)?),
        "Tile" => one(shape::tile(cx, n)?),
        "Pad" => one(shape::pad(cx, n)?),
        "Gather" | "GatherElements" => one(shape::gather(cx, n)?),
        "Trilu" => one(shape::trilu(cx, n)?),
        "ConstantOfShape" => one(shape::constant_of_shape(cx, n)?),
        "ReduceSum" | "ReduceMean" | "ReduceMax" | "ReduceMin" | "ReduceProd" | "ReduceL1"
        | "ReduceL2" | "ReduceSumSquare" | "ReduceLogSum" | "ReduceLogSumExp" => {
            one(reduce::reduce(cx, n)?)
        }
        "ArgMax" | "ArgMin" => one(reduce::arg(cx, n)?),
        "Hardmax" => one(reduce::hardmax(cx, n)?),
        "OneHot" => one(shape::one_hot(cx, n)?),
        "EyeLike" => one(shape::eye_like(cx, n)?),
        "NegativeLogLikelihoodLoss" | "SoftmaxCrossEntropyLoss" => loss::loss(cx, n),
        "MatMul" => one(nn::matmul(cx, n)?),
        "Gemm" => one(nn::gemm(cx, n)?),
        "Conv" => one(nn::conv(cx, n)?),
        "ConvTranspose" => one(nn::conv_transpose(cx, n)?),
        "MaxPool" | "AveragePool" => nn::pool(cx, n),
        "GlobalAveragePool" | "GlobalMaxPool" => one(nn::global_pool(cx, n)?),
        "BatchNormalization" => nn::batch_norm(cx, n),
        "LayerNormalization" => nn::layer_norm(cx, n),
        "InstanceNormalization" => one(nn::instance_norm(cx, n)?),
        "GroupNormalization" => one(nn::group_norm(cx, n)?),
        "MeanVarianceNormalization" => one(nn::mvn(cx, n)?),
        "LRN" => one(nn::lrn(cx, n)?),
        // Shape and Size are always folded (shapes are static) before dispatch, Range when its operands are known.
        "Shape" | "Size" | "Range" => Err(n.error("its operands must be known at import")),
        _ => Err(n.unsupported("")),
    }
}
