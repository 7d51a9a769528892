//! Layered recipe loading through figment: the recipe file (TOML), then `RLCD_*` environment
//! variables (`RLCD_PPO__KL_COEF` sets `ppo.kl_coef`), then `key=value` overrides, each later
//! layer winning. Every leaf value remembers where it came from. An `RLCD_*` variable that
//! names no recipe key (another tool's `RLCD_HOME`, say) is ignored with a warning.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use figment::value::{Dict, Map};
use figment::{Figment, Metadata, Profile, Provider};

use super::error::{Located, Problem, RecipeError};
use super::schema::Recipe;
use crate::error::suggest;

/// Prefix of the environment variables that set recipe keys.
pub const ENV_PREFIX: &str = "RLCD_";

/// A loaded recipe with its provenance.
#[derive(Clone, Debug)]
pub struct Resolved {
    /// The typed recipe after defaults, environment variables and overrides.
    pub recipe: Recipe,
    /// The recipe file as given.
    pub file: PathBuf,
    /// Project root: the nearest ancestor of the recipe file holding a `prompt-templates/`
    /// directory, else the working directory; relative paths resolve here.
    pub root: PathBuf,
    /// The resolved recipe as a TOML table (defaults included).
    pub value: toml::Value,
    /// Dotted leaf key → where its value came from: `recipes/x.toml:12`, `env RLCD_SEED`,
    /// `override seed=3` or `default`.
    pub sources: BTreeMap<String, String>,
    /// Problems that did not stop loading, one line each, for the caller to show: the
    /// `RLCD_*` environment variables ignored because they name no recipe key.
    pub warnings: Vec<String>,
}

impl Resolved {
    /// The resolved recipe as a TOML document (what `rlcd show` prints and runs record).
    pub fn to_toml_string(&self) -> String {
        toml::to_string(&self.value)
            .unwrap_or_else(|e| format!("# the resolved recipe cannot be written as TOML: {e}\n"))
    }

    /// A recipe path resolved against the project root (absolute paths are kept).
    pub fn resolve_path(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.root.join(p)
        }
    }

    /// Where `key` (a dotted path, leaf or table) was set, for error messages: `line 12`,
    /// `env RLCD_X`, `override k=v`; `None` for defaults and unknown keys.
    pub fn location(&self, key: &str) -> Option<String> {
        let file_prefix = format!("{}:", self.file.display());
        let describe = |s: &String| -> Option<String> {
            if s == "default" {
                None
            } else if let Some(line) = s.strip_prefix(&file_prefix) {
                Some(format!("line {line}"))
            } else {
                Some(s.clone())
            }
        };
        if let Some(s) = self.sources.get(key) {
            return describe(s);
        }
        // A table: the first-set leaf below it.
        let prefix = format!("{key}.");
        let mut best: Option<(usize, String)> = None;
        for (k, s) in self.sources.range(prefix.clone()..) {
            if !k.starts_with(&prefix) {
                break;
            }
            if let Some(d) = describe(s) {
                let line = d
                    .strip_prefix("line ")
                    .and_then(|l| l.parse().ok())
                    .unwrap_or(usize::MAX);
                if best.as_ref().is_none_or(|(b, _)| line < *b) {
                    best = Some((line, d));
                }
            }
        }
        best.map(|(_, d)| d)
    }
}

/// Loads `file`, applying `RLCD_*` variables from the process environment and `overrides`.
pub fn load(file: &Path, overrides: &[String]) -> Result<Resolved, RecipeError> {
    // `vars_os`: a variable that is not valid Unicode must not abort loading.
    let env: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(k, v)| {
            let k = k.into_string().ok()?;
            k.starts_with(ENV_PREFIX)
                .then(|| (k, v.to_string_lossy().into_owned()))
        })
        .collect();
    load_with_env(file, overrides, &env)
}

/// Loads `file` with an explicit environment (`(name, value)` pairs; names without the
/// `RLCD_` prefix are ignored, and so are `RLCD_*` names of no recipe key, each with a line in
/// [`Resolved::warnings`]) and `key=value` overrides.
pub fn load_with_env(
    file: &Path,
    overrides: &[String],
    env: &[(String, String)],
) -> Result<Resolved, RecipeError> {
    let bytes = crate::error::read(file).map_err(|source| RecipeError::Read { source })?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let bad = e.utf8_error().valid_up_to();
        let before = &e.as_bytes()[..bad];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        RecipeError::NotUtf8 {
            file: file.to_path_buf(),
            line,
            column: bad - line_start + 1,
            byte: e.as_bytes()[bad],
        }
    })?;
    let file_label = file.display().to_string();

    // Layer 1: the file, with the line of every key.
    let file_table = parse_document(file, &text)?;
    let mut locations: BTreeMap<String, String> = BTreeMap::new();
    let mut sources: BTreeMap<String, String> = BTreeMap::new();
    key_lines(&text, file, &mut |key, line| {
        locations.insert(key.to_string(), format!("line {line}"));
        sources.insert(key.to_string(), format!("{file_label}:{line}"));
    })?;
    let mut layers = vec![Layer {
        name: file_label.clone(),
        table: file_table,
    }];

    // Layer 2: environment variables, in name order.
    let mut env: Vec<&(String, String)> = env
        .iter()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX))
        .collect();
    env.sort();
    let mut warnings = Vec::new();
    let schema_keys = if env.is_empty() {
        Vec::new()
    } else {
        schema_key_paths()
    };
    for (name, raw) in env {
        let origin = format!("environment variable {name}");
        let path = match env_key(name) {
            Some(path) if names_a_key(&path, &schema_keys) => path,
            Some(path) => {
                warnings.push(format!(
                    "ignoring environment variable {name}: it names no recipe key{}",
                    env_suggestion(&path, &schema_keys)
                        .map(|s| format!(" (did you mean {s}?)"))
                        .unwrap_or_default()
                ));
                continue;
            }
            None => {
                warnings.push(format!(
                    "ignoring environment variable {name}: it names no recipe key (recipe keys \
                     are RLCD_<KEY>, with `__` between nesting levels, e.g. RLCD_PPO__KL_COEF)"
                ));
                continue;
            }
        };
        let value = parse_value(raw).map_err(|reason| RecipeError::Argument {
            file: file.to_path_buf(),
            origin: origin.clone(),
            reason,
            fix: format!("quote strings and write TOML values, e.g. {name}='\"text\"' or {name}=3"),
        })?;
        let label = format!("env {name}");
        layers.push(Layer::single(
            &label,
            &path,
            value,
            &mut locations,
            &mut sources,
        ));
    }

    // Layer 3: key=value overrides, in order.
    for arg in overrides {
        let (path, value) = parse_override(arg).map_err(|(reason, fix)| RecipeError::Argument {
            file: file.to_path_buf(),
            origin: format!("override `{arg}`"),
            reason,
            fix,
        })?;
        let label = format!("override {arg}");
        layers.push(Layer::single(
            &label,
            &path,
            value,
            &mut locations,
            &mut sources,
        ));
    }

    // Merge through figment; extract, collecting every schema problem.
    let mut figment = Figment::new();
    for layer in layers {
        figment = figment.merge(layer);
    }
    let merged = merged_table(&figment).map_err(|e| RecipeError::Invalid {
        file: file.to_path_buf(),
        problems: vec![Located {
            problem: Problem::bare("", format!("cannot merge recipe layers: {e}")),
            at: None,
        }],
    })?;
    let recipe = extract(file, merged, &locations)?;

    let value = toml::Value::try_from(&recipe).map_err(|e| RecipeError::Invalid {
        file: file.to_path_buf(),
        problems: vec![Located {
            problem: Problem::new(
                "",
                format!("the resolved recipe cannot be written as TOML: {e}"),
                "keep integers (e.g. `seed`) below 2^63",
            ),
            at: None,
        }],
    })?;
    let mut leaf_sources = BTreeMap::new();
    let mut leaves = Vec::new();
    collect_leaves(&value, String::new(), &mut leaves);
    for key in leaves {
        let source = sources
            .get(&key)
            .cloned()
            .unwrap_or_else(|| "default".to_string());
        leaf_sources.insert(key, source);
    }

    Ok(Resolved {
        recipe,
        file: file.to_path_buf(),
        root: project_root(file),
        value,
        sources: leaf_sources,
        warnings,
    })
}

/// Every key of the recipe schema as its path of names (`<name>` for an entry of a table of
/// named entries, such as `tasks.<name>.prompts`), with whether it is a free-form table.
fn schema_key_paths() -> Vec<(Vec<String>, bool)> {
    super::reference::keys()
        .into_iter()
        .map(|k| {
            let path = k.key.split('.').map(str::to_string).collect();
            (path, k.kind == "table")
        })
        .collect()
}

/// Whether segment `name` of a variable fits segment `schema` of a schema key.
fn segment_fits(name: &str, schema: &str) -> bool {
    schema == "<name>" || schema == name
}

/// Whether `path` names a schema key or a table of them (or lies inside a free-form table).
fn names_a_key(path: &[String], keys: &[(Vec<String>, bool)]) -> bool {
    keys.iter().any(|(key, free_form)| {
        let shared = path.len().min(key.len());
        let fits = path[..shared]
            .iter()
            .zip(&key[..shared])
            .all(|(p, k)| segment_fits(p, k));
        fits && (path.len() <= key.len() || *free_form)
    })
}

/// The variable of the recipe key closest to `path` (`RLCD_SEED` for `["seeds"]`): the longest
/// prefix of `path` that names a table, then the closest name in that table.
fn env_suggestion(path: &[String], keys: &[(Vec<String>, bool)]) -> Option<String> {
    let depth = (0..path.len())
        .rev()
        .find(|&d| names_a_key(&path[..d], keys))?;
    let names: std::collections::BTreeSet<&str> = keys
        .iter()
        .filter(|(key, _)| {
            key.len() > depth
                && key[..depth]
                    .iter()
                    .zip(&path[..depth])
                    .all(|(k, p)| segment_fits(p, k))
        })
        .map(|(key, _)| key[depth].as_str())
        .filter(|name| *name != "<name>")
        .collect();
    let best = suggest(&path[depth], names)?;
    let mut fixed = path[..depth].to_vec();
    fixed.push(best);
    Some(format!(
        "{ENV_PREFIX}{}",
        fixed.join("__").to_ascii_uppercase()
    ))
}

/// The nearest ancestor of `file` holding `prompt-templates/`, else the working directory.
fn project_root(file: &Path) -> PathBuf {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let abs = if file.is_absolute() {
        file.to_path_buf()
    } else {
        cwd.join(file)
    };
    abs.ancestors()
        .skip(1)
        .find(|dir| dir.join("prompt-templates").is_dir())
        .map(Path::to_path_buf)
        .unwrap_or(cwd)
}

/// One figment layer: a TOML table under a name (file, env var, override).
struct Layer {
    name: String,
    table: toml::Table,
}

impl Layer {
    /// A layer setting one dotted `path` to `value`, recording its source for every leaf.
    fn single(
        label: &str,
        path: &[String],
        value: toml::Value,
        locations: &mut BTreeMap<String, String>,
        sources: &mut BTreeMap<String, String>,
    ) -> Self {
        let key = path.join(".");
        // A later layer replaces whatever was below (or at) this key.
        let below = format!("{key}.");
        sources.retain(|k, _| k != &key && !k.starts_with(&below));
        for i in 1..path.len() {
            sources.remove(&path[..i].join("."));
        }
        let mut leaves = Vec::new();
        collect_leaves(&value, key.clone(), &mut leaves);
        for leaf in leaves {
            sources.insert(leaf, label.to_string());
        }
        for i in 1..=path.len() {
            locations.insert(path[..i].join("."), label.to_string());
        }
        let mut table = toml::Table::new();
        insert_path(&mut table, path, value);
        Self {
            name: label.to_string(),
            table,
        }
    }
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        Metadata::named(self.name.clone())
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        figment::providers::Serialized::defaults(&self.table).data()
    }
}

/// Inserts `value` at `path`, creating tables on the way.
fn insert_path(table: &mut toml::Table, path: &[String], value: toml::Value) {
    match path {
        [] => {}
        [last] => {
            table.insert(last.clone(), value);
        }
        [first, rest @ ..] => {
            let entry = table
                .entry(first.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if !entry.is_table() {
                *entry = toml::Value::Table(toml::Table::new());
            }
            if let toml::Value::Table(t) = entry {
                insert_path(t, rest, value);
            }
        }
    }
}

/// Removes the value at `path`; returns whether something was removed.
fn remove_path(table: &mut toml::Table, path: &[String]) -> bool {
    match path {
        [] => false,
        [last] => table.remove(last).is_some(),
        [first, rest @ ..] => match table.get_mut(first) {
            Some(toml::Value::Table(t)) => remove_path(t, rest),
            _ => false,
        },
    }
}

/// Dotted paths of every non-table value below `value` (arrays are leaves).
fn collect_leaves(value: &toml::Value, prefix: String, out: &mut Vec<String>) {
    match value {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                collect_leaves(v, key, out);
            }
        }
        _ => out.push(prefix),
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Parses the recipe text into a table, or a syntax error naming the line.
fn parse_document(file: &Path, text: &str) -> Result<toml::Table, RecipeError> {
    text.parse::<toml::Table>()
        .map_err(|e| RecipeError::Syntax {
            file: file.to_path_buf(),
            line: e.span().map(|s| line_of(text, s.start)),
            message: e.message().trim().to_string(),
            detail: e
                .to_string()
                .lines()
                .map(|l| format!("  {l}"))
                .collect::<Vec<_>>()
                .join("\n"),
        })
}

/// Calls `f(dotted key, line)` for every key of the document, tables included.
fn key_lines(text: &str, file: &Path, f: &mut dyn FnMut(&str, usize)) -> Result<(), RecipeError> {
    let doc = toml::de::DeTable::parse(text).map_err(|e| RecipeError::Syntax {
        file: file.to_path_buf(),
        line: e.span().map(|s| line_of(text, s.start)),
        message: e.message().trim().to_string(),
        detail: String::new(),
    })?;
    fn walk(
        table: &toml::de::DeTable<'_>,
        prefix: &str,
        text: &str,
        f: &mut dyn FnMut(&str, usize),
    ) {
        for (k, v) in table.iter() {
            let key = if prefix.is_empty() {
                k.get_ref().to_string()
            } else {
                format!("{prefix}.{}", k.get_ref())
            };
            f(&key, line_of(text, k.span().start));
            if let toml::de::DeValue::Table(t) = v.get_ref() {
                walk(t, &key, text, f);
            }
        }
    }
    walk(doc.get_ref(), "", text, f);
    Ok(())
}

/// Whether a key segment is a plain name: letters, digits, `_`, `-`.
fn valid_segment(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// `RLCD_PPO__KL_COEF` → `["ppo", "kl_coef"]`; `None` when a part between `__` is empty or
/// not a plain name.
fn env_key(name: &str) -> Option<Vec<String>> {
    let rest = name.strip_prefix(ENV_PREFIX).unwrap_or(name);
    let path: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
    path.iter().all(|s| valid_segment(s)).then_some(path)
}

/// Parses `key=value` into a key path and a TOML value.
fn parse_override(arg: &str) -> Result<(Vec<String>, toml::Value), (String, String)> {
    let Some((key, raw)) = arg.split_once('=') else {
        return Err((
            format!("`{arg}` has no `=`"),
            format!("write overrides as key=value, e.g. `{arg}=…` (`seed=3`, `ppo.kl_coef=0.004`)"),
        ));
    };
    let key = key.trim();
    if key.is_empty() {
        return Err((
            format!("`{arg}` has no key before `=`"),
            format!("name the key, e.g. `seed={raw}` or `eval.n_prompts={raw}`"),
        ));
    }
    let path: Vec<String> = key.split('.').map(str::to_string).collect();
    if let Some(bad) = path.iter().find(|s| !valid_segment(s)) {
        let reason = if bad.is_empty() {
            format!("key `{key}` has an empty part between dots")
        } else {
            format!("key `{key}` has an invalid part `{bad}` (use letters, digits, `_`, `-`)")
        };
        return Err((
            reason,
            "write dotted keys with one dot between names, e.g. `ppo.kl_coef=0.004`".to_string(),
        ));
    }
    let value = parse_value(raw).map_err(|reason| {
        (
            reason,
            format!("write the value as TOML, e.g. `{key}=[1, 2]` or `{key}='\"text\"'`"),
        )
    })?;
    Ok((path, value))
}

/// A TOML value (`3`, `0.5`, `true`, `[1,2]`, `"x"`, `{a=1}`), or the text itself as a
/// string when it is a bare word (`cuda`, `my-run`, `path/to.jsonl`).
fn parse_value(raw: &str) -> Result<toml::Value, String> {
    let raw = raw.trim();
    let doc = format!("v = {raw}");
    match doc.parse::<toml::Table>() {
        Ok(mut t) if t.len() == 1 => match t.remove("v") {
            Some(v) => Ok(v),
            None => Err(format!("value `{raw}` is not a single TOML value")),
        },
        Ok(_) => Err(format!("value `{raw}` is not a single TOML value")),
        Err(e) => {
            let structured = raw.starts_with(['[', '{', '"', '\'']);
            if structured || raw.contains('\n') {
                Err(format!(
                    "value `{raw}` is not valid TOML: {}",
                    e.message().trim()
                ))
            } else {
                Ok(toml::Value::String(raw.to_string()))
            }
        }
    }
}

/// The figment's merged default-profile table.
fn merged_table(figment: &Figment) -> Result<toml::Table, String> {
    let data = figment.data().map_err(|e| e.to_string())?;
    let dict = data.get(&Profile::Default).cloned().unwrap_or_default();
    toml::Table::try_from(dict).map_err(|e| e.to_string())
}

/// Extracts the typed recipe; on errors, drops the offending key and retries so that every
/// independent problem is reported at once.
fn extract(
    file: &Path,
    mut table: toml::Table,
    locations: &BTreeMap<String, String>,
) -> Result<Recipe, RecipeError> {
    let mut problems: Vec<Located> = Vec::new();
    for _ in 0..64 {
        let figment = Figment::from(Layer {
            name: file.display().to_string(),
            table: table.clone(),
        });
        let err = match figment.extract::<Recipe>() {
            Ok(recipe) if problems.is_empty() => return Ok(recipe),
            Ok(_) => break,
            Err(e) => e,
        };
        let mut progressed = false;
        for e in err {
            let (problem, path) = describe(&e);
            if problems.iter().any(|p| p.problem.key == problem.key) {
                continue;
            }
            // A missing key already suggested for a misspelt one is the same problem.
            if matches!(e.kind, figment::error::Kind::MissingField(_))
                && problems
                    .iter()
                    .any(|p| misspelling_of(&p.problem, &problem.key))
            {
                continue;
            }
            let at = locate(locations, &problem.key);
            problems.push(Located { problem, at });
            if let Some(path) = path {
                progressed |= remove_path(&mut table, &path);
            }
        }
        if !progressed {
            break;
        }
    }
    Err(RecipeError::Invalid {
        file: file.to_path_buf(),
        problems,
    })
}

/// Whether `p` is an unknown key in the table of `key` whose suggestion is `key`'s name.
fn misspelling_of(p: &Problem, key: &str) -> bool {
    let parent = |k: &str| {
        k.rsplit_once('.')
            .map(|(a, _)| a.to_string())
            .unwrap_or_default()
    };
    let name = key.rsplit('.').next().unwrap_or(key);
    parent(&p.key) == parent(key)
        && p.fix
            .as_deref()
            .is_some_and(|f| f.starts_with(&format!("did you mean `{name}`?")))
}

/// The location of `key` or of its nearest located ancestor.
fn locate(locations: &BTreeMap<String, String>, key: &str) -> Option<String> {
    let mut k = key;
    loop {
        if let Some(at) = locations.get(k) {
            return Some(at.clone());
        }
        match k.rfind('.') {
            Some(i) => k = &k[..i],
            None => return None,
        }
    }
}

fn backticked(items: &[&str]) -> String {
    items
        .iter()
        .map(|s| format!("`{s}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A figment error as a problem, and the key path to drop before retrying.
fn describe(e: &figment::Error) -> (Problem, Option<Vec<String>>) {
    use figment::error::Kind;
    let path = e.path.clone();
    let key = path.join(".");
    let table = if path.is_empty() {
        "the top level".to_string()
    } else {
        format!("[{key}]")
    };
    match &e.kind {
        Kind::UnknownField(field, expected) => {
            // The path ends with the unknown field itself.
            let mut drop = path.clone();
            if drop.last() != Some(field) {
                drop.push(field.clone());
            }
            let full = drop.join(".");
            let parent = &drop[..drop.len() - 1];
            let table = if parent.is_empty() {
                "the top level".to_string()
            } else {
                format!("[{}]", parent.join("."))
            };
            let valid = format!("valid keys of {table}: {}", backticked(expected));
            let fix = match suggest(field, expected.iter().copied()) {
                Some(s) => format!("did you mean `{s}`? ({valid})"),
                None => format!("remove it ({valid})"),
            };
            (
                Problem::new(&full, format!("unknown key `{full}`"), fix),
                Some(drop),
            )
        }
        Kind::MissingField(field) => {
            let full = if key.is_empty() {
                field.to_string()
            } else {
                format!("{key}.{field}")
            };
            (
                Problem::new(
                    &full,
                    format!("missing required key `{full}`"),
                    format!("add `{field} = …` to {table}"),
                ),
                None,
            )
        }
        Kind::InvalidType(actual, expected) => (
            Problem::new(
                &key,
                format!("wrong type for `{key}`: expected {expected}, found {actual}"),
                format!("write `{key}` as {expected}"),
            ),
            Some(path),
        ),
        Kind::InvalidValue(actual, expected) => (
            Problem::new(
                &key,
                format!("invalid value for `{key}`: expected {expected}, found {actual}"),
                format!("write `{key}` as {expected}"),
            ),
            Some(path),
        ),
        Kind::InvalidLength(len, expected) => (
            Problem::new(
                &key,
                format!("wrong length for `{key}`: expected {expected}, found {len} items"),
                format!("write `{key}` with {expected}"),
            ),
            Some(path),
        ),
        Kind::UnknownVariant(name, expected) => {
            let valid = format!("expected one of {}", backticked(expected));
            let fix = match suggest(name, expected.iter().copied()) {
                Some(s) => format!("did you mean `{s}`? ({valid})"),
                None => valid,
            };
            (
                Problem::new(&key, format!("unknown value \"{name}\" for `{key}`"), fix),
                Some(path),
            )
        }
        Kind::DuplicateField(field) => (
            Problem::new(
                &key,
                format!("duplicate key `{field}` in {table}"),
                "keep one of them",
            ),
            None,
        ),
        other => (
            Problem::new(
                &key,
                format!("bad value for `{key}`: {other}"),
                "see the recipe schema (src/recipe/schema.rs) for the expected form",
            ),
            Some(path),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_parse_as_toml_or_bare_words() {
        assert_eq!(parse_value("3").unwrap(), toml::Value::Integer(3));
        assert_eq!(parse_value("0.5").unwrap(), toml::Value::Float(0.5));
        assert_eq!(
            parse_value("cuda").unwrap(),
            toml::Value::String("cuda".into())
        );
        assert_eq!(
            parse_value("out/dir.jsonl").unwrap(),
            toml::Value::String("out/dir.jsonl".into())
        );
        assert!(parse_value("[1,2").is_err());
        assert_eq!(
            parse_value("[1,2]").unwrap(),
            toml::Value::Array(vec![toml::Value::Integer(1), toml::Value::Integer(2)])
        );
    }

    #[test]
    fn env_variables_are_checked_against_the_schema() {
        let keys = schema_key_paths();
        let path = |name: &str| env_key(name).expect("well-formed name");
        for name in [
            "RLCD_SEED",
            "RLCD_PPO__KL_COEF",
            "RLCD_THEORY",
            "RLCD_TASKS__HARMLESS__PROMPTS",
            "RLCD_MODELS__SMALL__PRESET",
        ] {
            assert!(names_a_key(&path(name), &keys), "{name}");
        }
        for name in [
            "RLCD_HOME",
            "RLCD_SEEDS",
            "RLCD_SEED__X",
            "RLCD_PPO__KL_COEFF",
        ] {
            assert!(!names_a_key(&path(name), &keys), "{name}");
        }
        assert_eq!(
            env_suggestion(&path("RLCD_SEEDS"), &keys).as_deref(),
            Some("RLCD_SEED")
        );
        assert_eq!(
            env_suggestion(&path("RLCD_PPO__KL_COEFF"), &keys).as_deref(),
            Some("RLCD_PPO__KL_COEF")
        );
        assert_eq!(env_suggestion(&path("RLCD_HOME"), &keys), None);
    }

    #[test]
    fn env_names_map_to_dotted_keys() {
        assert_eq!(env_key("RLCD_PPO__KL_COEF").unwrap(), ["ppo", "kl_coef"]);
        assert_eq!(env_key("RLCD_SEED").unwrap(), ["seed"]);
        assert!(env_key("RLCD_PPO____X").is_none());
        assert!(env_key("RLCD_").is_none());
    }

    #[test]
    fn override_syntax_is_checked() {
        assert!(parse_override("seed").is_err());
        assert!(parse_override("=3").is_err());
        assert!(parse_override("a..b=1").is_err());
        let (path, value) = parse_override("eval.comparisons=[[\"a\",\"b\"]]").unwrap();
        assert_eq!(path, ["eval", "comparisons"]);
        assert!(value.is_array());
    }
}
