//! A user's own classification set from NumPy `.npz` files: `kiln train --data train.npz --test test.npz`.
//!
//! Each file holds an array `x`, float32 `[N, features]` or `[N, C, H, W]` in C order, and an array `y`, int32 `[N]`,
//! one class index per sample (0, 1, 2, …). Other arrays in the file are ignored. Files written by `np.savez`
//! (members stored) and `np.savez_compressed` (members deflated) both load:
//!
//! ```python
//! np.savez_compressed("train.npz", x=images.astype(np.float32), y=labels.astype(np.int32))
//! ```
//!
//! The data are used as they are: no scaling, no shuffling (the trainer shuffles its minibatches). Every error names
//! the file, and the array, element or shape at fault.
//!
//! An `.npz` file is a zip archive of `.npy` files, one per array (`x.npy`, `y.npy`). The archive is read with the
//! `zip` crate, built with only the deflate method, and each member parsed by `npyz` as `kiln`'s `.npy` files are.
//! (`npyz`'s own `npz` feature would do the same through `zip` 0.6 with all its default features: AES, bzip2 and zstd,
//! two of them C libraries, none of which numpy ever writes.)

use super::{DataError, Dataset, Split};
use npyz::{NpyFile, NpyHeader, Order, TypeChar};
use std::fs::File;
use std::io::{BufReader, Read, Seek};
use std::path::Path;
use zip::ZipArchive;

/// One file's samples.
#[derive(Clone, Debug, PartialEq)]
pub struct NpzSplit {
    /// The samples flattened to rows: `split.features` is the product of `sample_shape`.
    pub split: Split,
    /// The shape of one sample: `[features]` or `[C, H, W]`.
    pub sample_shape: Vec<usize>,
}

/// Loads a train and a test file as one data set (named `npz`). The two must agree on the sample shape; the number
/// of classes is the largest label in either file plus one.
pub fn load(train: &Path, test: &Path) -> Result<Dataset, DataError> {
    let train_split = load_split(train)?;
    let test_split = load_split(test)?;
    if test_split.sample_shape != train_split.sample_shape {
        return Err(DataError::Npz {
            path: test.to_path_buf(),
            message: format!(
                "`x` has samples of shape {:?}, but those of the training set {} have shape {:?}",
                test_split.sample_shape,
                train.display(),
                train_split.sample_shape
            ),
        });
    }
    // Both splits are non-empty with non-negative labels (`load_split` checks), so the maximum exists and fits.
    let max_label = train_split
        .split
        .y
        .iter()
        .chain(&test_split.split.y)
        .copied()
        .max()
        .unwrap_or(0);
    Ok(Dataset {
        name: "npz",
        classes: max_label as usize + 1,
        train: train_split.split,
        test: test_split.split,
        sample_shape: train_split.sample_shape,
    })
}

/// Reads the arrays `x` and `y` of one `.npz` file and checks them: `x` float32 of rank 2 or 4 with at least one
/// sample, every element finite; `y` int32 of rank 1, one label per sample, none negative.
pub fn load_split(path: &Path) -> Result<NpzSplit, DataError> {
    let fail = |message: String| DataError::Npz {
        path: path.to_path_buf(),
        message,
    };
    let file = File::open(path).map_err(|e| fail(format!("cannot read: {e}")))?;
    let mut archive = ZipArchive::new(BufReader::new(file)).map_err(|e| {
        fail(format!(
            "not an .npz file (a zip archive of .npy arrays, as np.savez writes): {e}"
        ))
    })?;
    let (x_shape, x) = read_array::<f32, _>(&mut archive, "x", Element::F32).map_err(fail)?;
    let (y_shape, y) = read_array::<i32, _>(&mut archive, "y", Element::I32).map_err(fail)?;
    check_split(&x_shape, &x, &y_shape, &y).map_err(fail)?;
    let sample_shape = x_shape[1..].to_vec();
    Ok(NpzSplit {
        split: Split {
            x,
            y,
            features: sample_shape.iter().product(),
        },
        sample_shape,
    })
}

/// The checks between and within the two arrays once each has the right dtype.
fn check_split(x_shape: &[usize], x: &[f32], y_shape: &[usize], y: &[i32]) -> Result<(), String> {
    if x_shape.len() != 2 && x_shape.len() != 4 {
        return Err(format!(
            "`x` has shape {x_shape:?} (rank {}); expected [N, features] or [N, C, H, W]",
            x_shape.len()
        ));
    }
    if y_shape.len() != 1 {
        return Err(format!(
            "`y` has shape {y_shape:?} (rank {}); expected [N], one label per sample",
            y_shape.len()
        ));
    }
    if x_shape[0] == 0 {
        return Err(format!("`x` has no samples (shape {x_shape:?})"));
    }
    if x_shape[1..].contains(&0) {
        return Err(format!("`x` has empty samples (shape {x_shape:?})"));
    }
    if y_shape[0] != x_shape[0] {
        return Err(format!(
            "`x` has {} samples but `y` has {} labels",
            x_shape[0], y_shape[0]
        ));
    }
    if let Some(i) = y.iter().position(|&label| label < 0) {
        return Err(format!(
            "`y[{i}]` is {}; labels are class indices 0, 1, 2, …",
            y[i]
        ));
    }
    if let Some(i) = x.iter().position(|v| !v.is_finite()) {
        return Err(format!(
            "`x` holds {} at {:?}; every feature must be finite",
            x[i],
            unravel(i, x_shape)
        ));
    }
    Ok(())
}

/// The element types the two arrays must have.
#[derive(Clone, Copy)]
enum Element {
    F32,
    I32,
}

impl Element {
    fn matches(self, type_char: TypeChar, size: u64) -> bool {
        match self {
            Element::F32 => type_char == TypeChar::Float && size == 4,
            Element::I32 => type_char == TypeChar::Int && size == 4,
        }
    }

    fn numpy_name(self) -> &'static str {
        match self {
            Element::F32 => "float32",
            Element::I32 => "int32",
        }
    }
}

/// Reads the member `{name}.npy` as a C-order array of `T` (either byte order); returns its shape and elements.
fn read_array<T: npyz::Deserialize, R: Read + Seek>(
    archive: &mut ZipArchive<R>,
    name: &str,
    want: Element,
) -> Result<(Vec<usize>, Vec<T>), String> {
    let member = format!("{name}.npy");
    let Some(index) = archive.index_for_name(&member) else {
        return Err(missing(archive, name));
    };
    let mut entry = archive
        .by_index(index)
        .map_err(|e| format!("cannot read `{member}`: {e}"))?;
    // `try_reserve` rather than `with_capacity`: the size comes from the file, and a corrupt one must be an error, not
    // an abort. The read itself stops where the member's data end, whatever was declared.
    let mut bytes = Vec::new();
    usize::try_from(entry.size())
        .ok()
        .and_then(|size| bytes.try_reserve_exact(size).ok())
        .ok_or_else(|| {
            format!(
                "`{member}` declares {} bytes, which do not fit in memory",
                entry.size()
            )
        })?;
    entry
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot decompress `{member}`: {e}"))?;

    let mut rest: &[u8] = &bytes;
    let header = NpyHeader::from_reader(&mut rest)
        .map_err(|e| format!("`{member}` is not a valid .npy array: {e}"))?;
    let element_size = match header.dtype() {
        npyz::DType::Plain(ts) if want.matches(ts.type_char(), ts.size_field()) => ts.size_field(),
        other => {
            return Err(format!(
                "`{name}` is {}; kiln needs {wanted} (convert with `{name}.astype(np.{wanted})`)",
                describe(&other),
                wanted = want.numpy_name()
            ))
        }
    };
    let shape: Vec<usize> = header
        .shape()
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<Result<_, _>>()
        .map_err(|_| format!("`{name}` has a shape too large for this machine"))?;
    // 0-d and 1-d arrays lay out the same in either order; higher ranks would need a transpose.
    if header.order() == Order::Fortran && shape.len() > 1 {
        return Err(format!(
            "`{name}` is in Fortran order; save it in C order (np.ascontiguousarray)"
        ));
    }
    let needed = shape
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
        .and_then(|numel| numel.checked_mul(element_size));
    match needed {
        Some(n) if n <= rest.len() as u64 => {}
        _ => {
            return Err(format!(
                "`{member}` is truncated: its header declares shape {shape:?}, but only {} data bytes follow",
                rest.len()
            ))
        }
    }
    let values = NpyFile::with_header(header, rest)
        .into_vec()
        .map_err(|e| format!("`{member}` holds corrupt data: {e}"))?;
    Ok((shape, values))
}

/// The error for a missing array, naming the arrays the file does hold.
fn missing<R: Read + Seek>(archive: &ZipArchive<R>, name: &str) -> String {
    let present: Vec<String> = archive
        .file_names()
        .filter_map(Result::ok)
        .map(|member| {
            let array = member.strip_suffix(".npy").unwrap_or(&member);
            format!("`{array}`")
        })
        .collect();
    if present.is_empty() {
        format!("no array `{name}`: the file holds no arrays")
    } else {
        format!(
            "no array `{name}`; the file holds {} (save the features as `x` and the labels as `y`)",
            present.join(", ")
        )
    }
}

/// An npy dtype as numpy names it (`float64`), with its type string (`<f8`); other dtypes by their `descr`.
fn describe(dtype: &npyz::DType) -> String {
    let descr = dtype.descr();
    let npyz::DType::Plain(ts) = dtype else {
        return format!("of dtype {descr}");
    };
    let bits = ts.size_field() * 8;
    let name = match ts.type_char() {
        TypeChar::Float => format!("float{bits}"),
        TypeChar::Int => format!("int{bits}"),
        TypeChar::Uint => format!("uint{bits}"),
        TypeChar::Complex => format!("complex{bits}"),
        TypeChar::Bool => "bool".to_string(),
        _ => return format!("of dtype {descr}"),
    };
    format!("{name} ({ts})")
}

/// The index in an array of `shape` of the element at C-order position `flat`.
fn unravel(mut flat: usize, shape: &[usize]) -> Vec<usize> {
    let mut index = vec![0; shape.len()];
    for (i, &d) in shape.iter().enumerate().rev() {
        index[i] = flat % d;
        flat /= d;
    }
    index
}

#[cfg(test)]
mod tests {
    use super::*;
    use npyz::WriterBuilder;
    use std::io::{Cursor, Write};
    use zip::write::SimpleFileOptions;
    use zip::{CompressionMethod, ZipWriter};

    /// A scratch directory for one test, empty at the start and removed when dropped.
    fn scratch(test: &str) -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix(&format!("kiln-npz-{test}-"))
            .tempdir()
            .unwrap()
    }

    /// One `.npy` member: its bytes as `np.save` writes them.
    fn npy<T: npyz::AutoSerialize + Copy>(shape: &[u64], values: &[T]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut writer = npyz::WriteOptions::new()
            .default_dtype()
            .shape(shape)
            .writer(&mut out)
            .begin_nd()
            .unwrap();
        writer.extend(values.iter().copied()).unwrap();
        writer.finish().unwrap();
        out
    }

    /// Writes an npz file of `(member name, .npy bytes)` as `np.savez` (stored) or `np.savez_compressed` (deflate).
    fn write_npz(path: &Path, members: &[(&str, Vec<u8>)], method: CompressionMethod) {
        let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
        for (name, bytes) in members {
            let options = SimpleFileOptions::default().compression_method(method);
            zip.start_file(*name, options).unwrap();
            zip.write_all(bytes).unwrap();
        }
        std::fs::write(path, zip.finish().unwrap().into_inner()).unwrap();
    }

    /// A well-formed split's two members.
    fn members(x_shape: &[u64], x: &[f32], y: &[i32]) -> Vec<(&'static str, Vec<u8>)> {
        vec![
            ("x.npy", npy(x_shape, x)),
            ("y.npy", npy(&[y.len() as u64], y)),
        ]
    }

    /// The message of loading one file holding `members`.
    fn error_of(test: &str, members: &[(&str, Vec<u8>)]) -> String {
        let dir = scratch(test);
        let path = dir.path().join("bad.npz");
        write_npz(&path, members, CompressionMethod::Stored);
        let err = load_split(&path).unwrap_err();
        assert!(matches!(&err, DataError::Npz { path: p, .. } if *p == path));
        let text = err.to_string();
        let prefix = format!("{}: ", path.display());
        text.strip_prefix(&prefix)
            .unwrap_or_else(|| panic!("`{text}` does not start with the path"))
            .to_string()
    }

    #[test]
    fn features_round_trip_stored_and_deflated() {
        let dir = scratch("features");
        let x: Vec<f32> = (0..12).map(|i| i as f32 * 0.5 - 1.0).collect();
        let (train, test) = (dir.path().join("train.npz"), dir.path().join("test.npz"));
        write_npz(
            &train,
            &members(&[4, 3], &x, &[0, 2, 1, 2]),
            CompressionMethod::Stored,
        );
        write_npz(
            &test,
            &members(&[2, 3], &x[..6], &[1, 0]),
            CompressionMethod::Deflated,
        );

        let split = load_split(&train).unwrap();
        assert_eq!(split.sample_shape, vec![3]);
        assert_eq!(split.split.features, 3);
        assert_eq!(split.split.x, x);
        assert_eq!(split.split.y, vec![0, 2, 1, 2]);

        let data = load(&train, &test).unwrap();
        assert_eq!((data.name, data.classes, data.features()), ("npz", 3, 3));
        assert_eq!(data.sample_shape, vec![3]);
        assert_eq!(data.test.x, &x[..6]);
        assert_eq!(data.test.y, vec![1, 0]);
    }

    #[test]
    fn images_round_trip_with_their_shape() {
        let dir = scratch("images");
        // 3 samples of [2, 2, 3]: element (n, c, h, w) is 100n + 10c + 3h + w, so a layout mix-up changes values.
        let x: Vec<f32> = (0..3 * 2 * 2 * 3)
            .map(|i| {
                let (n, c, h, w) = (i / 12, i / 6 % 2, i / 3 % 2, i % 3);
                (100 * n + 10 * c + 3 * h + w) as f32
            })
            .collect();
        let (train, test) = (dir.path().join("train.npz"), dir.path().join("test.npz"));
        write_npz(
            &train,
            &members(&[3, 2, 2, 3], &x, &[0, 1, 0]),
            CompressionMethod::Deflated,
        );
        // The test set alone has class 4: classes counts both files.
        write_npz(
            &test,
            &members(&[1, 2, 2, 3], &x[12..24], &[4]),
            CompressionMethod::Stored,
        );
        let data = load(&train, &test).unwrap();
        assert_eq!(data.sample_shape, vec![2, 2, 3]);
        assert_eq!((data.features(), data.classes), (12, 5));
        assert_eq!(data.train.x[12 + 6 + 3 + 2], 100.0 + 10.0 + 3.0 + 2.0);
        assert_eq!(data.train.x, x);
        assert_eq!(data.test.x, &x[12..24]);
    }

    #[test]
    fn other_arrays_are_ignored_and_big_endian_reads() {
        let dir = scratch("extra");
        let path = dir.path().join("a.npz");
        // A big-endian `>f4` x, as a file from another machine may hold, must read as the same numbers.
        let mut x_be = Vec::new();
        let mut writer = npyz::WriteOptions::new()
            .dtype(npyz::DType::Plain(">f4".parse().unwrap()))
            .shape(&[2, 1])
            .writer(&mut x_be)
            .begin_nd()
            .unwrap();
        writer.extend([1.5f32, -2.0]).unwrap();
        writer.finish().unwrap();
        write_npz(
            &path,
            &[
                ("mean.npy", npy(&[1], &[0.5f64])),
                ("y.npy", npy(&[2], &[1i32, 0])),
                ("x.npy", x_be),
            ],
            CompressionMethod::Deflated,
        );
        let split = load_split(&path).unwrap();
        assert_eq!(split.split.x, vec![1.5, -2.0]);
        assert_eq!(split.split.y, vec![1, 0]);
    }

    #[test]
    fn a_missing_array_names_those_present() {
        let message = error_of(
            "missing",
            &[
                ("images.npy", npy(&[1, 2], &[0f32, 1.0])),
                ("y.npy", npy(&[1], &[0i32])),
            ],
        );
        assert_eq!(
            message,
            "no array `x`; the file holds `images`, `y` (save the features as `x` and the labels as `y`)"
        );
        assert_eq!(
            error_of("empty-archive", &[]),
            "no array `x`: the file holds no arrays"
        );
    }

    #[test]
    fn wrong_dtypes_name_the_dtype_found() {
        let message = error_of(
            "x-f64",
            &[
                ("x.npy", npy(&[1, 2], &[0f64, 1.0])),
                ("y.npy", npy(&[1], &[0i32])),
            ],
        );
        assert_eq!(
            message,
            "`x` is float64 (<f8); kiln needs float32 (convert with `x.astype(np.float32)`)"
        );
        // numpy's default integer is int64, the likeliest mistake for labels.
        let message = error_of(
            "y-i64",
            &[
                ("x.npy", npy(&[1, 2], &[0f32, 1.0])),
                ("y.npy", npy(&[1], &[0i64])),
            ],
        );
        assert_eq!(
            message,
            "`y` is int64 (<i8); kiln needs int32 (convert with `y.astype(np.int32)`)"
        );
        let message = error_of(
            "x-u8",
            &[
                ("x.npy", npy(&[1, 2], &[0u8, 255])),
                ("y.npy", npy(&[1], &[0i32])),
            ],
        );
        assert!(
            message.starts_with("`x` is uint8 (|u1); kiln needs float32"),
            "{message}"
        );
    }

    #[test]
    fn wrong_ranks_are_rejected() {
        let x3 = members(&[1, 2, 2], &[0.0; 4], &[0]);
        assert_eq!(
            error_of("x-rank3", &x3),
            "`x` has shape [1, 2, 2] (rank 3); expected [N, features] or [N, C, H, W]"
        );
        let x1 = members(&[4], &[0.0; 4], &[0, 0, 0, 0]);
        assert_eq!(
            error_of("x-rank1", &x1),
            "`x` has shape [4] (rank 1); expected [N, features] or [N, C, H, W]"
        );
        let y2 = vec![
            ("x.npy", npy(&[2, 1], &[0f32, 1.0])),
            ("y.npy", npy(&[2, 1], &[0i32, 1])),
        ];
        assert_eq!(
            error_of("y-rank2", &y2),
            "`y` has shape [2, 1] (rank 2); expected [N], one label per sample"
        );
    }

    #[test]
    fn counts_must_agree_and_be_positive() {
        assert_eq!(
            error_of("n-zero", &members(&[0, 3], &[], &[])),
            "`x` has no samples (shape [0, 3])"
        );
        assert_eq!(
            error_of("f-zero", &members(&[2, 0], &[], &[0, 1])),
            "`x` has empty samples (shape [2, 0])"
        );
        assert_eq!(
            error_of("n-mismatch", &members(&[3, 1], &[0.0; 3], &[0, 1])),
            "`x` has 3 samples but `y` has 2 labels"
        );
    }

    #[test]
    fn negative_labels_are_rejected() {
        assert_eq!(
            error_of("negative", &members(&[3, 1], &[0.0; 3], &[0, -1, 2])),
            "`y[1]` is -1; labels are class indices 0, 1, 2, …"
        );
    }

    #[test]
    fn non_finite_features_name_the_first_index() {
        let mut x = vec![0.0f32; 8]; // shape [2, 1, 2, 2]
        x[6] = f32::INFINITY; // [1, 0, 1, 0]
        x[7] = f32::NAN;
        assert_eq!(
            error_of("inf", &members(&[2, 1, 2, 2], &x, &[0, 1])),
            "`x` holds inf at [1, 0, 1, 0]; every feature must be finite"
        );
        let mut x = vec![0.0f32; 6];
        x[4] = f32::NAN;
        assert_eq!(
            error_of("nan", &members(&[3, 2], &x, &[0, 1, 0])),
            "`x` holds NaN at [2, 0]; every feature must be finite"
        );
    }

    #[test]
    fn train_and_test_must_agree_on_the_sample_shape() {
        let dir = scratch("shapes");
        let (train, test) = (dir.path().join("train.npz"), dir.path().join("test.npz"));
        write_npz(
            &train,
            &members(&[1, 4], &[0.0; 4], &[0]),
            CompressionMethod::Stored,
        );
        write_npz(
            &test,
            &members(&[1, 1, 2, 2], &[0.0; 4], &[0]),
            CompressionMethod::Stored,
        );
        let err = load(&train, &test).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{}: `x` has samples of shape [1, 2, 2], but those of the training set {} have shape [4]",
                test.display(),
                train.display()
            )
        );
    }

    #[test]
    fn unreadable_and_foreign_files_are_named() {
        let dir = scratch("foreign");
        let not_zip = dir.path().join("x.npy");
        std::fs::write(&not_zip, npy(&[2], &[1f32, 2.0])).unwrap();
        let err = load_split(&not_zip).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "{}: not an .npz file (a zip archive of .npy arrays, as np.savez writes): ",
                not_zip.display()
            )),
            "{err}"
        );

        let absent = dir.path().join("absent.npz");
        let err = load_split(&absent).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("{}: cannot read: ", absent.display())),
            "{err}"
        );

        // A member that is not an npy array, and one cut short after its header.
        let garbage = vec![("x.npy", b"hello".to_vec()), ("y.npy", npy(&[1], &[0i32]))];
        assert!(error_of("garbage", &garbage).starts_with("`x.npy` is not a valid .npy array: "));
        let mut short = npy(&[2, 2], &[0f32; 4]);
        short.truncate(short.len() - 3);
        let truncated = vec![("x.npy", short), ("y.npy", npy(&[2], &[0i32, 1]))];
        assert_eq!(
            error_of("truncated", &truncated),
            "`x.npy` is truncated: its header declares shape [2, 2], but only 13 data bytes follow"
        );
    }
}
