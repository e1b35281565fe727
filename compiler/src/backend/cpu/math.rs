//! placeholder
use cranelift_codegen::isa::TargetIsa;
#[derive(Clone, Copy, Debug)]
pub struct MathEmitter {
    fma: bool,
}
impl MathEmitter {
    pub fn for_isa(isa: &dyn TargetIsa) -> Self {
        MathEmitter {
            fma: isa.has_native_fma(),
        }
    }
}
