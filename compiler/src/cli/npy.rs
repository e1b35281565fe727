//! `.npy` files (NumPy's array format) for `--input` and `--out`: f32, f64, i32 and bool arrays in C order.
//! int64 arrays (NumPy's default integer, and what ONNX models declare for token ids and indices) are read too and
//! range-checked into i32, Kiln's integer type: a value outside it is an error naming the file and the element.
//!
//! Reading checks the header against the file's length before touching the data, so a corrupt or truncated file is
//! an error rather than a huge allocation. 0-d and 1-d arrays marked Fortran-order have the same layout as C order
//! and are accepted; higher-rank Fortran arrays are rejected (`np.ascontiguousarray` fixes them).

use super::CliError;
use kiln::nn::report::write_atomic_with;
use kiln_ir::{DType, Tensor, TensorData, TensorType};
use npyz::{NpyFile, NpyHeader, Order, TypeChar, WriterBuilder};
use std::io::Write;
use std::path::Path;

/// Reads a whole `.npy` file as a tensor; every error names the file.
pub fn read(path: &Path) -> Result<Tensor, CliError> {
    let fail = |message: String| CliError::new(format!("`{}`: {message}", path.display()));
    let bytes = std::fs::read(path).map_err(|e| fail(format!("cannot read: {e}")))?;
    let mut rest: &[u8] = &bytes;
    let header = NpyHeader::from_reader(&mut rest)
        .map_err(|e| fail(format!("not a valid .npy file: {e}")))?;

    let (dtype, stored_bytes) = kiln_dtype(&header.dtype()).ok_or_else(|| {
        fail(format!(
            "unsupported dtype {}; kiln reads f32 (<f4), f64 (<f8), i32 (<i4), i64 (<i8, range-checked into i32) \
             and bool (|b1) arrays",
            header.dtype().descr()
        ))
    })?;
    let dims: Vec<usize> = header
        .shape()
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<Result<_, _>>()
        .map_err(|_| fail("the array's shape is too large".into()))?;
    if dims.len() > kiln_ir::types::MAX_RANK {
        return Err(fail(format!(
            "the array has rank {}, more than kiln's maximum of {}",
            dims.len(),
            kiln_ir::types::MAX_RANK
        )));
    }
    if header.order() == Order::Fortran && dims.len() > 1 {
        return Err(fail(
            "the array is in Fortran order; save it in C order (np.ascontiguousarray)".into(),
        ));
    }
    let needed = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .and_then(|numel| numel.checked_mul(stored_bytes));
    let ty = TensorType::new(dtype, dims);
    match needed {
        Some(n) if n <= rest.len() => {}
        Some(n) => {
            return Err(fail(format!(
                "the file is truncated: the header declares {ty} ({n} bytes), but only {} data bytes follow",
                rest.len()
            )))
        }
        None => {
            return Err(fail(format!(
                "the header declares {ty}, which does not fit in memory"
            )))
        }
    }

    let file = NpyFile::with_header(header, rest);
    let corrupt = |e: std::io::Error| fail(format!("corrupt data: {e}"));
    let data = match dtype {
        DType::F32 => TensorData::F32(file.into_vec().map_err(corrupt)?),
        DType::F64 => TensorData::F64(file.into_vec().map_err(corrupt)?),
        DType::I32 if stored_bytes == 8 => {
            let wide: Vec<i64> = file.into_vec().map_err(corrupt)?;
            let narrow = wide
                .iter()
                .enumerate()
                .map(|(k, &v)| {
                    i32::try_from(v).map_err(|_| {
                        fail(format!(
                            "int64 element {k} is {v}, outside i32 (kiln's integer type)"
                        ))
                    })
                })
                .collect::<Result<_, _>>()?;
            TensorData::I32(narrow)
        }
        DType::I32 => TensorData::I32(file.into_vec().map_err(corrupt)?),
        DType::Bool => TensorData::Bool(file.into_vec().map_err(corrupt)?),
    };
    Tensor::new(ty, data).map_err(|e| fail(e.to_string()))
}

/// The kiln dtype of an npy dtype, in either byte order, and the bytes an element takes in the file.
fn kiln_dtype(dtype: &npyz::DType) -> Option<(DType, usize)> {
    let npyz::DType::Plain(ts) = dtype else {
        return None;
    };
    match (ts.type_char(), ts.size_field()) {
        (TypeChar::Float, 4) => Some((DType::F32, 4)),
        (TypeChar::Float, 8) => Some((DType::F64, 8)),
        (TypeChar::Int, 4) => Some((DType::I32, 4)),
        (TypeChar::Int, 8) => Some((DType::I32, 8)),
        (TypeChar::Bool, 1) => Some((DType::Bool, 1)),
        _ => None,
    }
}

/// Writes a tensor as a little-endian C-order `.npy` file, atomically (a failed write leaves any old file intact).
pub fn write(path: &Path, tensor: &Tensor) -> Result<(), CliError> {
    let fail = |e: std::io::Error| CliError::new(format!("cannot write `{}`: {e}", path.display()));
    let shape: Vec<u64> = tensor.dims().iter().map(|&d| d as u64).collect();
    write_atomic_with(path, |sink| match tensor.data() {
        TensorData::F32(v) => write_values(sink, &shape, v),
        TensorData::F64(v) => write_values(sink, &shape, v),
        TensorData::I32(v) => write_values(sink, &shape, v),
        TensorData::Bool(v) => write_values(sink, &shape, v),
    })
    .map_err(fail)
}

fn write_values<T>(sink: &mut dyn Write, shape: &[u64], values: &[T]) -> std::io::Result<()>
where
    T: npyz::AutoSerialize + Copy,
{
    let mut writer = npyz::WriteOptions::new()
        .default_dtype()
        .shape(shape)
        .writer(sink)
        .begin_nd()?;
    writer.extend(values.iter().copied())?;
    writer.finish()
}
