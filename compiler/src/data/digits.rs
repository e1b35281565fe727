//! scikit-learn's 8×8 handwritten digits (`sklearn.datasets.load_digits`): 1,797 images of 64 pixels in 0..16 with a
//! label 0..9, from the UCI "Optical Recognition of Handwritten Digits" test set (CC BY 4.0; see
//! `data/digits/README.md`).
//!
//! The gzipped CSV is embedded in the binary, so `kiln train` works from any directory. Pixels are scaled to [0, 1]
//! (÷16). The split is fixed: a [`Shuffle`](super::Shuffle) permutation with seed 0 of the 1,797 rows in file order;
//! the first 1,437 rows of it train, the last 360 test.

use super::{DataError, Dataset, Split};
use flate2::read::GzDecoder;
use std::io::Read;

const FILE: &str = "data/digits/digits.csv.gz";
const GZIPPED: &[u8] = include_bytes!("../../../data/digits/digits.csv.gz");

pub const PIXELS: usize = 64;
/// Rows in the train split.
pub const DIGITS_TRAIN: usize = 1437;
/// Rows in the test split.
pub const DIGITS_TEST: usize = 360;
const SPLIT_SEED: u64 = 0;

/// The digits with their fixed split (1,437 train / 360 test).
pub fn digits() -> Result<Dataset, DataError> {
    let all = parse_csv_gz(GZIPPED, FILE)?;
    Ok(Dataset::split("digits", 10, all, DIGITS_TRAIN, SPLIT_SEED))
}

/// Reads `64 pixels,label` rows from gzipped CSV, scaling the pixels by 1/16.
fn parse_csv_gz(gzipped: &[u8], file: &'static str) -> Result<Split, DataError> {
    let mut text = String::new();
    GzDecoder::new(gzipped)
        .read_to_string(&mut text)
        .map_err(|source| DataError::Decompress { file, source })?;
    let mut x = Vec::new();
    let mut y = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let malformed = |message: String| DataError::Malformed {
            file,
            line: i + 1,
            message,
        };
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.len() != PIXELS + 1 {
            return Err(malformed(format!(
                "expected {} comma-separated values, found {}",
                PIXELS + 1,
                fields.len()
            )));
        }
        for field in &fields[..PIXELS] {
            let pixel: u8 =
                field.parse().ok().filter(|&p| p <= 16).ok_or_else(|| {
                    malformed(format!("pixel `{field}` is not an integer in 0..=16"))
                })?;
            x.push(f32::from(pixel) / 16.0);
        }
        let label = fields[PIXELS];
        let label: i32 = label
            .parse()
            .ok()
            .filter(|l| (0..10).contains(l))
            .ok_or_else(|| malformed(format!("label `{label}` is not a digit 0..=9")))?;
        y.push(label);
    }
    Ok(Split {
        x,
        y,
        features: PIXELS,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_digits_have_the_documented_shape() {
        let d = digits().unwrap();
        assert_eq!((d.train.len(), d.test.len(), d.features()), (1437, 360, 64));
        assert!(d.train.x.iter().all(|&p| (0.0..=1.0).contains(&p)));
        // Every digit is in both splits.
        for label in 0..10 {
            assert!(d.test.y.contains(&label) && d.train.y.contains(&label));
        }
    }

    #[test]
    fn malformed_rows_name_the_line() {
        use flate2::{write::GzEncoder, Compression};
        use std::io::Write;
        let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
        gz.write_all(b"1,2,3\n").unwrap();
        let err = parse_csv_gz(&gz.finish().unwrap(), "t.csv.gz").unwrap_err();
        assert_eq!(
            err.to_string(),
            "t.csv.gz: line 1: expected 65 comma-separated values, found 3"
        );
        assert!(matches!(
            parse_csv_gz(b"not gzip", "t.csv.gz"),
            Err(DataError::Decompress { .. })
        ));
    }
}
