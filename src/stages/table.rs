//! The one collect step every table stage shares: read each input's rows, build the frame,
//! write `<stem>.parquet` into the stage's artifact (the runner renders it as CSV, Markdown and
//! Parquet under the run's `tables/`). A table whose rows are its inputs' rows, read one
//! artifact at a time, is a [`Table`]; one that needs more (the oracle of `pair_labels`)
//! implements `Stage` itself and calls [`collect`].

use polars::prelude::DataFrame;
use serde::{Deserialize, Serialize};

use super::planning::{PlanError, Planned};
use super::stage::{Ctx, Stage, StageError, StageKind};
use crate::store::Artifact;
use crate::tables::{TableError, render_parquet};

/// The configuration of a table that merges the rows of its inputs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableConfig {
    /// The stages whose rows make the table, in row order.
    pub inputs: Vec<String>,
}

/// A table stage whose rows come from its inputs' artifacts.
pub trait Table {
    /// Its kind.
    const KIND: StageKind;
    /// Version of its rows and columns.
    const VERSION: u32 = 1;
    /// The table's file stem.
    const STEM: &'static str;
    /// The stage id.
    const ID: &'static str;
    /// One row.
    type Row;
    /// The rows of one input's artifact.
    fn rows(input: &Artifact) -> Result<Vec<Self::Row>, StageError>;
    /// The frame of all rows, columns in their fixed order.
    fn frame(rows: &[Self::Row]) -> Result<DataFrame, TableError>;
}

impl<T: Table> Stage for T {
    const KIND: StageKind = T::KIND;
    const VERSION: u32 = T::VERSION;
    const TABLE: Option<&'static str> = Some(T::STEM);
    type Config = TableConfig;

    fn inputs(config: &TableConfig) -> Vec<String> {
        config.inputs.clone()
    }

    fn run(ctx: &Ctx<'_>, config: &TableConfig) -> Result<serde_json::Value, StageError> {
        collect(ctx, T::STEM, &config.inputs, |_, a| T::rows(a), T::frame)
    }
}

/// The table `T` merging the rows of `inputs`.
pub fn plan<T: Table>(inputs: Vec<String>) -> Result<Planned, PlanError> {
    Planned::new::<T>(T::ID, &TableConfig { inputs })
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
    if rows.is_empty() {
        return Err(StageError::Degenerate {
            what: format!("the {stem} table has no rows ({} inputs)", inputs.len()),
            fix: "check that the recipe's tasks and methods produce what this table reports".into(),
        });
    }
    let frame = frame(&rows)?;
    ctx.write(&format!("{stem}.parquet"), &render_parquet(&frame)?)?;
    Ok(serde_json::json!({ "rows": rows.len() }))
}
