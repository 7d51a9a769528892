//! Result tables: polars frames written as `<stem>.parquet`, `<stem>.csv` and `<stem>.md`.
//!
//! Each table stage owns its row type and the frame builder that fixes its column order (see
//! ARCHITECTURE.md, "Tables"); this module holds the column helpers they share and the
//! renderers. Every rate, accuracy and share is in percent (0–100), with its standard error and
//! interval in the same unit, in columns whose names end in `_pct`; probabilities (`mean_prob`)
//! stay in 0–1. CSV and Markdown print every float with [`FLOAT_DECIMALS`] decimals (rates,
//! standard errors and intervals alike), Parquet keeps full precision. The Markdown renderer is
//! our own so its layout is stable across polars versions.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use polars::prelude::*;

use crate::error::IoError;
use crate::eval::winrate::{Estimate, Rate};

/// Decimals of every float in CSV and Markdown output.
pub const FLOAT_DECIMALS: usize = 4;

/// Errors building, writing or reading a table.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// polars rejected the frame (mismatched column lengths, schemas that do not stack, …).
    #[error("table `{table}`: {source}")]
    Frame {
        /// The table being built.
        table: String,
        /// The polars error.
        #[source]
        source: PolarsError,
    },
    /// A file could not be written or read.
    #[error("{0}; check that the directory exists and is writable")]
    Io(#[source] IoError),
    /// A Parquet file could not be parsed.
    #[error(
        "{path}: not a readable Parquet table ({source}); delete it and rebuild it with `rlcd report`"
    )]
    Parquet {
        /// The file.
        path: PathBuf,
        /// The polars error.
        #[source]
        source: PolarsError,
    },
    /// A column has a type the renderers do not print.
    #[error(
        "column `{column}` has type {dtype}, which tables cannot render; use strings, integers or floats"
    )]
    Unsupported {
        /// The column.
        column: String,
        /// Its polars type.
        dtype: String,
    },
}

/// Names the table in a polars error.
pub fn frame_err(table: &str) -> impl FnOnce(PolarsError) -> TableError + '_ {
    move |source| TableError::Frame {
        table: table.to_string(),
        source,
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TableError + '_ {
    move |source| TableError::Io(IoError::new(path, source))
}

/// A string column.
pub fn str_col(name: &str, v: Vec<String>) -> Column {
    Column::new(name.into(), v)
}
/// A string column with nulls.
pub fn opt_str_col(name: &str, v: Vec<Option<String>>) -> Column {
    Column::new(name.into(), v)
}
/// An unsigned integer column.
pub fn u64_col(name: &str, v: Vec<u64>) -> Column {
    Column::new(name.into(), v)
}
/// A float column.
pub fn f64_col(name: &str, v: Vec<f64>) -> Column {
    Column::new(name.into(), v)
}
/// A float column with nulls.
pub fn opt_col(name: &str, v: Vec<Option<f64>>) -> Column {
    Column::new(name.into(), v)
}
/// An unsigned integer column with nulls.
pub fn opt_u64_col(name: &str, v: Vec<Option<u64>>) -> Column {
    Column::new(name.into(), v)
}

/// Estimate columns (value, stderr, low, high) of a rate; nulls when it has no observations.
pub fn estimate_cols(
    prefix: &str,
    stderr_name: &str,
    low: &str,
    high: &str,
    e: &[Option<Estimate>],
) -> Vec<Column> {
    vec![
        opt_col(prefix, e.iter().map(|x| x.map(|x| x.value)).collect()),
        opt_col(stderr_name, e.iter().map(|x| x.map(|x| x.stderr)).collect()),
        opt_col(low, e.iter().map(|x| x.map(|x| x.ci_low)).collect()),
        opt_col(high, e.iter().map(|x| x.map(|x| x.ci_high)).collect()),
    ]
}

/// The method, simulator and task columns of preference tables.
pub fn method_cols<'r>(
    rows: impl Iterator<Item = (&'r String, &'r String, &'r String)>,
) -> Vec<Column> {
    let (mut m, mut s, mut t) = (Vec::new(), Vec::new(), Vec::new());
    for (method, simulator, task) in rows {
        m.push(method.clone());
        s.push(simulator.clone());
        t.push(task.clone());
    }
    vec![
        str_col("method", m),
        str_col("simulator", s),
        str_col("task", t),
    ]
}

/// Columns of optional rates: trials, successes, then the rate, its stderr and Wilson CI in
/// percent (`names` in that order); nulls where a rate is absent or has no trials.
pub fn rate_cols(names: [&str; 6], rates: &[Option<Rate>]) -> Vec<Column> {
    let est: Vec<Option<Estimate>> = rates
        .iter()
        .map(|r| {
            r.as_ref()
                .and_then(|r| r.estimate().ok())
                .map(Estimate::percent)
        })
        .collect();
    let mut cols = vec![
        opt_u64_col(names[0], rates.iter().map(|r| r.map(|r| r.n)).collect()),
        opt_u64_col(
            names[1],
            rates.iter().map(|r| r.map(|r| r.successes)).collect(),
        ),
    ];
    cols.extend(estimate_cols(names[2], names[3], names[4], names[5], &est));
    cols
}

/// A cell's printable text, `None` for null.
fn cell_text(col: &Column, i: usize) -> Result<Option<String>, TableError> {
    let unsupported = || TableError::Unsupported {
        column: col.name().to_string(),
        dtype: col.dtype().to_string(),
    };
    let v = col.get(i).map_err(|_| unsupported())?;
    Ok(match v {
        AnyValue::Null => None,
        AnyValue::String(s) => Some(s.to_string()),
        AnyValue::StringOwned(s) => Some(s.to_string()),
        AnyValue::Boolean(b) => Some(b.to_string()),
        AnyValue::Int8(x) => Some(x.to_string()),
        AnyValue::Int16(x) => Some(x.to_string()),
        AnyValue::Int32(x) => Some(x.to_string()),
        AnyValue::Int64(x) => Some(x.to_string()),
        AnyValue::UInt8(x) => Some(x.to_string()),
        AnyValue::UInt16(x) => Some(x.to_string()),
        AnyValue::UInt32(x) => Some(x.to_string()),
        AnyValue::UInt64(x) => Some(x.to_string()),
        AnyValue::Float32(x) => Some(format!("{:.*}", FLOAT_DECIMALS, x)),
        AnyValue::Float64(x) => Some(format!("{:.*}", FLOAT_DECIMALS, x)),
        _ => return Err(unsupported()),
    })
}

fn is_numeric(col: &Column) -> bool {
    col.dtype().is_primitive_numeric()
}

/// Renders a frame as a GitHub Markdown table: header, alignment row (numbers right-aligned),
/// one line per row, cells padded to the column width, nulls empty, floats with
/// [`FLOAT_DECIMALS`] decimals, `|` escaped.
pub fn render_markdown(df: &DataFrame) -> Result<String, TableError> {
    let cols = df.columns();
    let mut cells: Vec<Vec<String>> = Vec::with_capacity(cols.len());
    for col in cols {
        let mut c = vec![escape_md(col.name())];
        for i in 0..df.height() {
            c.push(escape_md(&cell_text(col, i)?.unwrap_or_default()));
        }
        cells.push(c);
    }
    let widths: Vec<usize> = cells
        .iter()
        .map(|c| {
            c.iter()
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
                .max(3)
        })
        .collect();
    let mut out = String::new();
    let line = |out: &mut String, row: usize| {
        out.push('|');
        for (j, c) in cells.iter().enumerate() {
            let s = &c[row];
            let pad = widths[j] - s.chars().count();
            out.push(' ');
            if is_numeric(&cols[j]) {
                out.push_str(&" ".repeat(pad));
                out.push_str(s);
            } else {
                out.push_str(s);
                out.push_str(&" ".repeat(pad));
            }
            out.push_str(" |");
        }
        out.push('\n');
    };
    line(&mut out, 0);
    out.push('|');
    for (j, w) in widths.iter().enumerate() {
        if is_numeric(&cols[j]) {
            out.push_str(&format!(" {}: |", "-".repeat(w - 1)));
        } else {
            out.push_str(&format!(" {} |", "-".repeat(*w)));
        }
    }
    out.push('\n');
    for row in 1..=df.height() {
        line(&mut out, row);
    }
    Ok(out)
}

fn escape_md(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

/// Renders a frame as CSV (header line, comma separated, floats with [`FLOAT_DECIMALS`]
/// decimals, nulls empty).
pub fn render_csv(df: &DataFrame) -> Result<Vec<u8>, TableError> {
    for col in df.columns() {
        let dt = col.dtype();
        if !(dt.is_primitive_numeric()
            || matches!(dt, DataType::String | DataType::Boolean | DataType::Null))
        {
            return Err(TableError::Unsupported {
                column: col.name().to_string(),
                dtype: dt.to_string(),
            });
        }
    }
    let mut buf = Vec::new();
    let mut df = df.clone();
    CsvWriter::new(&mut buf)
        .with_float_scientific(Some(false))
        .with_float_precision(Some(FLOAT_DECIMALS))
        .n_threads(1)
        .finish(&mut df)
        .map_err(frame_err("csv"))?;
    Ok(buf)
}

/// Serialises a frame as Parquet bytes (zstd, one row group; deterministic for equal frames).
pub fn render_parquet(df: &DataFrame) -> Result<Vec<u8>, TableError> {
    let mut buf = Vec::new();
    let mut df = df.clone();
    ParquetWriter::new(&mut buf)
        .set_parallel(false)
        .finish(&mut df)
        .map_err(frame_err("parquet"))?;
    Ok(buf)
}

/// Writes `bytes` to `path` through a temporary file (named for this host, process and nonce,
/// so writers on hosts sharing the directory never collide) and a rename.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), TableError> {
    let tmp = path.with_extension(format!(
        "{}.tmp-{}",
        path.extension().and_then(|e| e.to_str()).unwrap_or(""),
        crate::store::Owner::current().tag()
    ));
    let mut f = fs::File::create(&tmp).map_err(io_err(&tmp))?;
    f.write_all(bytes).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    drop(f);
    fs::rename(&tmp, path).map_err(io_err(path))
}

/// The three files of a written table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableFiles {
    /// `<stem>.parquet`.
    pub parquet: PathBuf,
    /// `<stem>.csv`.
    pub csv: PathBuf,
    /// `<stem>.md`.
    pub markdown: PathBuf,
}

/// Writes `df` into `dir` as `<stem>.parquet`, `<stem>.csv` and `<stem>.md`, creating `dir`.
pub fn write_table(dir: &Path, stem: &str, df: &DataFrame) -> Result<TableFiles, TableError> {
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let files = TableFiles {
        parquet: dir.join(format!("{stem}.parquet")),
        csv: dir.join(format!("{stem}.csv")),
        markdown: dir.join(format!("{stem}.md")),
    };
    write_atomic(&files.parquet, &render_parquet(df)?)?;
    write_atomic(&files.csv, &render_csv(df)?)?;
    write_atomic(&files.markdown, render_markdown(df)?.as_bytes())?;
    Ok(files)
}

/// Reads a Parquet table back.
pub fn read_parquet(path: &Path) -> Result<DataFrame, TableError> {
    let f = fs::File::open(path).map_err(io_err(path))?;
    ParquetReader::new(f)
        .finish()
        .map_err(|source| TableError::Parquet {
            path: path.to_path_buf(),
            source,
        })
}
