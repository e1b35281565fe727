//! What a training run leaves behind besides the checkpoint: the metrics as CSV and a loss/accuracy plot as SVG;
//! and [`write_atomic`], the one way every output file of Kiln (checkpoints, CSV, SVG, `kiln run`'s `.npy` files)
//! is written.

use super::{EpochMetrics, Error};
use plotters::prelude::*;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Writes `bytes` to `path` atomically: see [`write_atomic_with`].
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_with(path, |w| w.write_all(bytes))
}

/// Writes a file atomically: `write` fills a temporary file in `path`'s directory, which is flushed to the disk
/// (`fsync`) and then renamed over `path` (and, on Unix, the directory is synced so that the rename itself lasts).
/// A reader, or a crash, sees either the old file or the complete new one, never a truncated mix: a full disk or a
/// file-size limit halfway through a checkpoint leaves the previous checkpoint intact. On any failure the temporary
/// file is removed and `path` is untouched.
pub fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> io::Result<()> {
    let temp = temp_path(path)?;
    let result = (|| {
        let file = File::options().write(true).create_new(true).open(&temp)?;
        let mut sink = BufWriter::new(file);
        write(&mut sink)?;
        let file = sink.into_inner().map_err(io::IntoInnerError::into_error)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&temp, path)
    })();
    if let Err(e) = result {
        // The temp file may not exist (create failed); either way there is nothing more to undo.
        let _ = std::fs::remove_file(&temp);
        return Err(e);
    }
    sync_dir(path);
    Ok(())
}

/// `DIR/.NAME.tmp-PID-N` next to `DIR/NAME`: the same file system (so the rename is atomic), hidden, and unique to
/// this process and call so that two writers never share one.
fn temp_path(path: &Path) -> io::Result<PathBuf> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "the path names a directory, not a file",
        )
    })?;
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut temp = std::ffi::OsString::from(".");
    temp.push(name);
    temp.push(format!(".tmp-{}-{n}", std::process::id()));
    Ok(path.with_file_name(temp))
}

/// Syncs `path`'s directory so that a rename into it survives a crash. Best effort: the file is complete and in
/// place already, and some file systems refuse to sync a directory.
fn sync_dir(path: &Path) {
    #[cfg(unix)]
    {
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        if let Ok(dir) = File::open(dir) {
            let _ = dir.sync_all();
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// The CSV's header; one row per epoch follows.
pub const CSV_HEADER: &str = "epoch,train_loss,train_acc,test_loss,test_acc,seconds";

/// The metrics as CSV text.
pub fn metrics_csv(history: &[EpochMetrics]) -> String {
    let mut csv = format!("{CSV_HEADER}\n");
    for m in history {
        // Writing to a String cannot fail.
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{:.3}",
            m.epoch, m.train_loss, m.train_acc, m.test_loss, m.test_acc, m.seconds
        );
    }
    csv
}

/// Writes [`metrics_csv`] to `path`.
pub fn write_metrics_csv(path: &Path, history: &[EpochMetrics]) -> Result<(), Error> {
    write_atomic(path, metrics_csv(history).as_bytes()).map_err(|source| Error::Io {
        action: "write",
        path: path.to_path_buf(),
        source,
    })
}

/// Plots the losses (top) and accuracies (bottom) per epoch to an SVG file at `path`.
pub fn plot_metrics(path: &Path, title: &str, history: &[EpochMetrics]) -> Result<(), Error> {
    let svg = plot_svg(title, history).map_err(|message| Error::Io {
        action: "plot",
        path: path.to_path_buf(),
        source: std::io::Error::other(message),
    })?;
    write_atomic(path, svg.as_bytes()).map_err(|source| Error::Io {
        action: "write",
        path: path.to_path_buf(),
        source,
    })
}

/// The SVG text of the plot.
pub fn plot_svg(title: &str, history: &[EpochMetrics]) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (800, 600)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let root = root
            .titled(title, ("sans-serif", 22))
            .map_err(|e| e.to_string())?;
        let (top, bottom) = root.split_vertically(280);
        let last = history.last().map_or(1, |m| m.epoch).max(2) as f64;
        let finite_max = |f: fn(&EpochMetrics) -> f64| {
            history
                .iter()
                .map(f)
                .filter(|v| v.is_finite())
                .fold(0.0f64, f64::max)
        };
        let loss_max = finite_max(|m| m.train_loss).max(finite_max(|m| m.test_loss)) * 1.05;
        panel(
            &top,
            "loss",
            (1.0, last),
            (0.0, loss_max.max(1e-6)),
            [
                ("train loss", |m: &EpochMetrics| m.train_loss),
                ("test loss", |m| m.test_loss),
            ],
            history,
        )?;
        let acc_min = history
            .iter()
            .flat_map(|m| [m.train_acc, m.test_acc])
            .fold(1.0f64, f64::min);
        panel(
            &bottom,
            "accuracy",
            (1.0, last),
            ((acc_min - 0.02).clamp(0.0, 0.98), 1.0),
            [
                ("train accuracy", |m: &EpochMetrics| m.train_acc),
                ("test accuracy", |m| m.test_acc),
            ],
            history,
        )?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

type Series = (&'static str, fn(&EpochMetrics) -> f64);

/// One chart: two series (blue, red) against the epoch.
fn panel(
    area: &DrawingArea<SVGBackend, plotters::coord::Shift>,
    y_label: &str,
    x: (f64, f64),
    y: (f64, f64),
    series: [Series; 2],
    history: &[EpochMetrics],
) -> Result<(), String> {
    let err = |e: DrawingAreaErrorKind<_>| e.to_string();
    let mut chart = ChartBuilder::on(area)
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(x.0..x.1, y.0..y.1)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_desc(y_label)
        .draw()
        .map_err(err)?;
    for ((name, value), color) in series.into_iter().zip([BLUE, RED]) {
        let points = history.iter().map(|m| (m.epoch as f64, value(m)));
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(err)?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::MiddleRight)
        .draw()
        .map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history() -> Vec<EpochMetrics> {
        (1..=3)
            .map(|epoch| EpochMetrics {
                epoch,
                train_loss: 1.0 / epoch as f64,
                train_acc: 0.5 + 0.1 * epoch as f64,
                test_loss: 1.2 / epoch as f64,
                test_acc: 0.4 + 0.1 * epoch as f64,
                seconds: 0.5 * epoch as f64,
            })
            .collect()
    }

    #[test]
    fn csv_has_a_row_per_epoch() {
        let csv = metrics_csv(&history());
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], CSV_HEADER);
        assert_eq!(lines[1], "1,1,0.6,1.2,0.5,0.500");
        assert_eq!(lines.len(), 4);
    }

    /// A scratch directory for one test, removed when dropped (by a failed assert too).
    fn scratch(test: &str) -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix(&format!("kiln-report-{test}-"))
            .tempdir()
            .unwrap()
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn write_atomic_replaces_the_file_and_leaves_no_temp() {
        let dir = scratch("replace");
        let path = dir.path().join("out.csv");
        write_atomic(&path, b"old").unwrap();
        write_atomic(&path, b"new contents").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new contents");
        assert_eq!(names(dir.path()), ["out.csv"]);
    }

    #[test]
    fn a_failed_write_keeps_the_old_file_and_removes_the_temp() {
        let dir = scratch("fail");
        let path = dir.path().join("model.safetensors");
        write_atomic(&path, b"the good checkpoint").unwrap();
        let err = write_atomic_with(&path, |w| {
            w.write_all(b"half a checkp")?;
            Err(io::Error::other("disk full"))
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "disk full");
        assert_eq!(std::fs::read(&path).unwrap(), b"the good checkpoint");
        assert_eq!(names(dir.path()), ["model.safetensors"]);
        // A path without a file name is an error, not a panic.
        assert!(write_atomic(Path::new("/"), b"x").is_err());
    }

    #[test]
    fn plot_is_an_svg_with_both_panels() {
        let svg = plot_svg("run", &history()).unwrap();
        assert!(svg.starts_with("<svg"));
        for label in ["train loss", "test accuracy", "epoch"] {
            assert!(svg.contains(label), "{label}");
        }
    }
}
