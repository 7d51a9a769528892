//! The one collect step every table stage shares: read each input's rows, build the frame,
//! write `<stem>.parquet` into the stage's artifact (the runner renders it as CSV, Markdown and
//! Parquet under the run's `tables/`).

use polars::prelude::DataFrame;
use serde::{Deserialize, Serialize};

use super::stage::{Ctx, StageError};
use crate::store::Artifact;
use crate::tables::{TableError, render_parquet};

/// The configuration of a table that merges the rows of its inputs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableConfig {
    /// The stages whose rows make the table, in row order.
    pub inputs: Vec<String>,
}

/// Collects the rows of every input (`rows_of(id, artifact)`), builds the table with `frame`
/// and writes `<stem>.parquet`; returns the manifest metadata.
pub fn collect<R>(
    ctx: &Ctx<'_>,
    stem: &str,
    inputs: &[String],
    mut rows_of: impl FnMut(&str, &Artifact) -> Result<Vec<R>, StageError>,
    frame: impl FnOnce(&[R]) -> Result<DataFrame, TableError>,
) -> Result<serde_json::Value, StageError> {
    let mut rows = Vec::new();
    for id in inputs {
        let artifact = ctx.input(id)?;
        rows.extend(rows_of(id, &artifact)?);
    }
    let frame = frame(&rows)?;
    ctx.write(&format!("{stem}.parquet"), &render_parquet(&frame)?)?;
    Ok(serde_json::json!({ "rows": rows.len() }))
}
