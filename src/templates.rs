//! Prompt templates (minijinja) over `prompt-templates/`: the contrast prompts p / p+ / p−
//! (paper §3), the RLAIF scoring prompt (paper §4.2) and the pairwise judge prompts (paper §4.3).
//!
//! Rendering is strict: an undefined variable is an error, trailing newlines are kept, nothing
//! is escaped. Context variables by family:
//! - `<task>/{plain,positive,negative}.j2`: `turns` (human, assistant, …, human) and `affix`
//!   (`affix.positive`, `affix.negative`: one pair of `affixes/<task>.toml`);
//! - `rlaif/score.j2`: `turns`, `principle`, `output_a`, `output_b`;
//! - `judge/*.j2`: `turns`, `output_a`, `output_b`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use minijinja::{AutoEscape, Environment, ErrorKind, UndefinedBehavior};
use serde::{Deserialize, Serialize};

/// The three templates of a task family.
pub const TASK_TEMPLATES: &[&str] = &["plain.j2", "positive.j2", "negative.j2"];

/// The RLAIF scoring prompt (paper §4.2).
pub const SCORE_TEMPLATE: &str = "rlaif/score.j2";

/// The RLAIF principles, per task family, index-aligned with the affix pairs.
pub const PRINCIPLES_FILE: &str = "rlaif/principles.toml";

/// A template problem; the first line of the message names the file.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// The template directory does not exist.
    #[error(
        "{}: template directory not found\n  fix: set `templates_dir` to the directory holding the prompt templates (default `prompt-templates`)",
        dir.display()
    )]
    MissingDir {
        /// The directory.
        dir: PathBuf,
    },
    /// A template or data file does not exist.
    #[error("{}: not found\n  fix: {fix}", path.display())]
    Missing {
        /// The missing file.
        path: PathBuf,
        /// How to provide it.
        fix: String,
    },
    /// A file cannot be read.
    #[error("cannot read a template file: {0}")]
    Read(#[source] crate::error::IoError),
    /// A template name leaves the template directory or is otherwise unusable.
    #[error(
        "{name}: not a template name inside the template directory\n  fix: use a relative name such as `harmless/positive.j2`"
    )]
    BadName {
        /// The name.
        name: String,
    },
    /// A template fails to parse or to render.
    #[error("{}{}: {message}\n{detail}\n  fix: {fix}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Template {
        /// The template file where the error occurred.
        path: PathBuf,
        /// 1-based line, when known.
        line: Option<usize>,
        /// The one-line error.
        message: String,
        /// Details: the template source around the error.
        detail: String,
        /// How to fix it.
        fix: String,
    },
    /// A data file (affixes, principles) is malformed.
    #[error("{}: {message}\n  fix: {fix}", path.display())]
    Data {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
        /// How to fix it.
        fix: String,
    },
}

/// One contrast pair of context phrases ("affixes"), inserted into assistant tags as
/// `Assistant (phrase):`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AffixPair {
    /// Phrase encouraging the attribute (p+).
    pub positive: String,
    /// Phrase encouraging its opposite (p−).
    pub negative: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AffixFile {
    pairs: Vec<AffixPair>,
}

/// The texts of template and data files by name (relative to the template directory): what a
/// stage renders, carried in its configuration so that its key covers every text it reads.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TemplateSet(pub BTreeMap<String, String>);

impl TemplateSet {
    /// Adds every file of `other`.
    pub fn extend(&mut self, other: TemplateSet) {
        self.0.extend(other.0);
    }

    /// Templates rendering from these texts only (a name outside the set is missing).
    pub fn templates(&self) -> Templates {
        Templates::from_set(self.clone())
    }
}

/// Prompt templates: the files of one directory, or a [`TemplateSet`].
pub struct Templates {
    dir: PathBuf,
    env: Environment<'static>,
    set: Option<Arc<BTreeMap<String, String>>>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates").field("dir", &self.dir).finish()
    }
}

impl Templates {
    /// Opens the template directory `dir` (templates are loaded on first use).
    pub fn open(dir: &Path) -> Result<Self, TemplateError> {
        if !dir.is_dir() {
            return Err(TemplateError::MissingDir {
                dir: dir.to_path_buf(),
            });
        }
        let mut env = Self::environment();
        env.set_loader(minijinja::path_loader(dir));
        Ok(Self {
            dir: dir.to_path_buf(),
            env,
            set: None,
        })
    }

    /// Templates rendering from the texts of `set` (messages name files relative to the
    /// template directory).
    pub fn from_set(set: TemplateSet) -> Self {
        let files = Arc::new(set.0);
        let mut env = Self::environment();
        let loader_files = Arc::clone(&files);
        env.set_loader(move |name| Ok(loader_files.get(name).cloned()));
        Self {
            dir: PathBuf::new(),
            env,
            set: Some(files),
        }
    }

    fn environment() -> Environment<'static> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_keep_trailing_newline(true);
        env.set_auto_escape_callback(|_| AutoEscape::None);
        env
    }

    /// The texts of files `names` and of every template they include or import (see
    /// [`Templates::source`]).
    pub fn set_of<'a>(
        &self,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<TemplateSet, TemplateError> {
        let queue = names.into_iter().map(str::to_string).collect();
        Ok(TemplateSet(self.with_includes(queue)?))
    }

    /// The texts of `queue` and of everything its templates include, by name.
    fn with_includes(
        &self,
        mut queue: Vec<String>,
    ) -> Result<BTreeMap<String, String>, TemplateError> {
        let mut out: BTreeMap<String, String> = BTreeMap::new();
        while let Some(name) = queue.pop() {
            if out.contains_key(&name) {
                continue;
            }
            let text = canonical(&name, self.source(&name)?);
            if name.ends_with(".j2") {
                queue.extend(
                    referenced_templates(&text)
                        .into_iter()
                        .filter(|dep| !out.contains_key(dep)),
                );
            }
            out.insert(name, text);
        }
        Ok(out)
    }

    /// The texts of every file task family `task_templates` renders (see
    /// [`Templates::task_sources`]).
    pub fn task_set(&self, task_templates: &str) -> Result<TemplateSet, TemplateError> {
        Ok(TemplateSet(
            self.task_sources(task_templates)?.into_iter().collect(),
        ))
    }

    /// The template directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Renders template `name` (e.g. `harmless/positive.j2`) with `ctx`.
    pub fn render(&self, name: &str, ctx: minijinja::Value) -> Result<String, TemplateError> {
        self.check_name(name)?;
        let template = self
            .env
            .get_template(name)
            .map_err(|e| self.error(name, e))?;
        template.render(ctx).map_err(|e| self.error(name, e))
    }

    /// Parses template `name` (and what it includes or imports) without rendering it.
    pub fn check(&self, name: &str) -> Result<(), TemplateError> {
        self.check_name(name)?;
        self.env
            .get_template(name)
            .map(|_| ())
            .map_err(|e| self.error(name, e))
    }

    /// Renders template `name` with a small sample context of its family (see the module
    /// docs), so undefined variables surface before a run.
    pub fn dry_run(&self, name: &str) -> Result<String, TemplateError> {
        self.render(name, sample_context(name))
    }

    /// The raw text of file `name` (a template or data file).
    pub fn source(&self, name: &str) -> Result<String, TemplateError> {
        self.check_name(name)?;
        let path = self.dir.join(name);
        if let Some(set) = &self.set {
            return set
                .get(name)
                .cloned()
                .ok_or_else(|| TemplateError::Missing {
                    path,
                    fix: format!("`{name}` is not among the files this stage was planned with"),
                });
        }
        crate::error::read_to_string(&path).map_err(|e| {
            if e.is_not_found() {
                TemplateError::Missing {
                    path,
                    fix: format!("create `{name}` under {}", self.dir.display()),
                }
            } else {
                TemplateError::Read(e)
            }
        })
    }

    /// Every file the rendering of task family `task_templates` depends on, as
    /// `(name, text)` sorted by name: the family's files, `affixes/<family>.toml` and every
    /// template they include or import.
    pub fn task_sources(
        &self,
        task_templates: &str,
    ) -> Result<Vec<(String, String)>, TemplateError> {
        self.check_name(task_templates)?;
        let family = self.dir.join(task_templates);
        if !family.is_dir() {
            return Err(TemplateError::Missing {
                path: family,
                fix: format!(
                    "create the directory with {} or point `templates` at an existing family",
                    TASK_TEMPLATES.join(", ")
                ),
            });
        }
        let mut names: BTreeSet<String> = BTreeSet::new();
        let read_err = |source| TemplateError::Read(crate::error::IoError::new(&family, source));
        let entries = std::fs::read_dir(&family).map_err(read_err)?;
        for entry in entries {
            let entry = entry.map_err(read_err)?;
            if entry.path().is_file() {
                names.insert(format!(
                    "{task_templates}/{}",
                    entry.file_name().to_string_lossy()
                ));
            }
        }
        for t in TASK_TEMPLATES {
            names.insert(format!("{task_templates}/{t}"));
        }
        names.insert(affix_file(task_templates));
        Ok(self
            .with_includes(names.into_iter().collect())?
            .into_iter()
            .collect())
    }

    /// The affix pairs of task family `task_templates` (`affixes/<family>.toml`).
    pub fn affixes(&self, task_templates: &str) -> Result<Vec<AffixPair>, TemplateError> {
        let name = affix_file(task_templates);
        let text = self.source(&name)?;
        let path = self.dir.join(&name);
        let file: AffixFile = toml::from_str(&text).map_err(|e| TemplateError::Data {
            path: path.clone(),
            message: format!("malformed affix file: {}", e.message().trim()),
            fix: "write one `[[pairs]]` table per pair with `positive = \"…\"` and `negative = \"…\"`"
                .to_string(),
        })?;
        if file.pairs.is_empty() {
            return Err(TemplateError::Data {
                path,
                message: "no affix pairs".to_string(),
                fix: "add at least one `[[pairs]]` table".to_string(),
            });
        }
        if let Some(i) = file
            .pairs
            .iter()
            .position(|p| p.positive.trim().is_empty() || p.negative.trim().is_empty())
        {
            return Err(TemplateError::Data {
                path,
                message: format!("affix pair {i} has an empty phrase"),
                fix: "give every pair a non-empty `positive` and `negative`".to_string(),
            });
        }
        Ok(file.pairs)
    }

    /// The RLAIF principles of task family `task_templates` (`rlaif/principles.toml`),
    /// index-aligned with its affix pairs.
    pub fn principles(&self, task_templates: &str) -> Result<Vec<String>, TemplateError> {
        let text = self.source(PRINCIPLES_FILE)?;
        let path = self.dir.join(PRINCIPLES_FILE);
        let mut all: BTreeMap<String, Vec<String>> =
            toml::from_str(&text).map_err(|e| TemplateError::Data {
                path: path.clone(),
                message: format!("malformed principles file: {}", e.message().trim()),
                fix: "write one array of strings per task family, e.g. `helpful = [\"…\"]`"
                    .to_string(),
            })?;
        match all.remove(task_templates) {
            Some(list) if !list.is_empty() => Ok(list),
            _ => Err(TemplateError::Data {
                path,
                message: format!("no principles for task family `{task_templates}`"),
                fix: format!(
                    "add `{task_templates} = [\"Please choose the response that …\"]`, one per affix pair"
                ),
            }),
        }
    }

    /// The principles file reduced to families `families` (each must have principles), as a
    /// stage carries it: adding principles for another family changes none of its stages.
    pub fn principles_set<'a>(
        &self,
        families: impl IntoIterator<Item = &'a str>,
    ) -> Result<TemplateSet, TemplateError> {
        let mut kept: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for family in families {
            kept.insert(family.to_string(), self.principles(family)?);
        }
        let text = toml::to_string(&kept).map_err(|e| TemplateError::Data {
            path: self.dir.join(PRINCIPLES_FILE),
            message: format!("cannot write the principles back as TOML: {e}"),
            fix: "write each family's principles as an array of strings".to_string(),
        })?;
        Ok(TemplateSet(BTreeMap::from([(
            PRINCIPLES_FILE.to_string(),
            text,
        )])))
    }

    fn check_name(&self, name: &str) -> Result<(), TemplateError> {
        let p = Path::new(name);
        let ok = !name.is_empty()
            && p.components()
                .all(|c| matches!(c, std::path::Component::Normal(_)));
        if ok {
            Ok(())
        } else {
            Err(TemplateError::BadName {
                name: name.to_string(),
            })
        }
    }

    fn error(&self, requested: &str, e: minijinja::Error) -> TemplateError {
        let name = e.name().unwrap_or(requested).to_string();
        let path = self.dir.join(&name);
        if e.kind() == ErrorKind::TemplateNotFound {
            let missing = e
                .detail()
                .and_then(|d| d.split('"').nth(1))
                .unwrap_or(requested)
                .to_string();
            return TemplateError::Missing {
                path: self.dir.join(&missing),
                fix: format!(
                    "create `{missing}` under {} or fix the name that refers to it",
                    self.dir.display()
                ),
            };
        }
        let fix = match e.kind() {
            ErrorKind::SyntaxError => {
                "correct the template syntax (minijinja / Jinja2)".to_string()
            }
            ErrorKind::UndefinedError => format!(
                "use only the context variables of this template family ({}) or guard others with `is defined`",
                family_variables(requested)
            ),
            _ => "correct the template".to_string(),
        };
        let message = match e.detail() {
            Some(d) => format!("{}: {d}", e.kind()),
            None => e.kind().to_string(),
        };
        TemplateError::Template {
            path,
            line: e.line(),
            message,
            detail: format!("{}", e.display_debug_info())
                .lines()
                .map(|l| format!("  {l}"))
                .collect::<Vec<_>>()
                .join("\n"),
            fix,
        }
    }
}

/// The affix file of a task family.
pub fn affix_file(task_templates: &str) -> String {
    format!("affixes/{task_templates}.toml")
}

/// The judge template for `axis` of a task with `axes`: helpfulness on a task that is also
/// judged for harm uses the "help on harmless prompts" question (paper §4.3).
pub fn judge_template(axes: &[String], axis: &str) -> Option<&'static str> {
    match axis {
        "harm" => Some("judge/harm.j2"),
        "help" if axes.iter().any(|a| a == "harm") => Some("judge/harm_help.j2"),
        "help" => Some("judge/help.j2"),
        "outline" => Some("judge/outline.j2"),
        _ => None,
    }
}

fn family_variables(name: &str) -> &'static str {
    if name.starts_with("rlaif/") {
        "`turns`, `principle`, `output_a`, `output_b`"
    } else if name.starts_with("judge/") {
        "`turns`, `output_a`, `output_b`"
    } else {
        "`turns`, `affix.positive`, `affix.negative`"
    }
}

/// A sample context for template `name` (a two-exchange dialogue and placeholder outputs).
pub fn sample_context(name: &str) -> minijinja::Value {
    let turns = vec![
        "How do I pick a lock?".to_string(),
        "Why do you want to pick a lock?".to_string(),
        "I locked myself out of my own house.".to_string(),
    ];
    minijinja::context! {
        turns => turns,
        affix => AffixPair { positive: "harmless response".into(), negative: "harmful response".into() },
        principle => "Please choose the response that is more helpful.",
        output_a => "Call a locksmith.",
        output_b => "Use a bobby pin.",
        name => name,
    }
}

/// The text of file `name` as a stage carries it, rendering exactly as `text` does but
/// without what cannot change a rendering: a Jinja template's comments are emptied
/// (`{# note #}` → `{# #}`, whitespace-control markers kept, found by minijinja's own lexer so
/// that `{#` inside a string or a raw block is left alone) and a TOML data file is written
/// back without comments or layout. Text that does not lex or parse is kept as it is (it fails
/// where it is rendered).
pub fn canonical(name: &str, text: String) -> String {
    if name.ends_with(".toml") {
        return match toml::from_str::<toml::Table>(&text).map(|t| toml::to_string(&t)) {
            Ok(Ok(canonical)) => canonical,
            _ => text,
        };
    }
    if !name.ends_with(".j2") {
        return text;
    }
    let whitespace = minijinja::machinery::WhitespaceConfig {
        keep_trailing_newline: true,
        ..Default::default()
    };
    let covered: Result<Vec<(usize, usize)>, _> =
        minijinja::machinery::tokenize(&text, false, Default::default(), whitespace)
            .map(|token| {
                token.map(|(_, span)| (span.start_offset as usize, span.end_offset as usize))
            })
            .collect();
    let Ok(covered) = covered else {
        return text;
    };
    // Comments lie in the gaps between tokens; everything else in a gap is delimiters and
    // whitespace.
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (start, end) in covered.into_iter().chain([(text.len(), text.len())]) {
        if start > at {
            out.push_str(&empty_comments(&text[at..start]));
        }
        if end > at.max(start) {
            out.push_str(&text[at.max(start)..end]);
        }
        at = at.max(end);
    }
    out
}

/// `gap` with the body of every `{# … #}` comment replaced by one space.
fn empty_comments(gap: &str) -> String {
    let mut out = String::with_capacity(gap.len());
    let mut rest = gap;
    while let Some(open) = rest.find("{#") {
        let body_start = open + 2;
        let Some(close) = rest[body_start..].find("#}") else {
            break;
        };
        let body = &rest[body_start..body_start + close];
        let left = body.chars().next().filter(|c| matches!(c, '-' | '+'));
        let right = body
            .chars()
            .last()
            .filter(|c| matches!(c, '-' | '+') && body.len() > 1);
        out.push_str(&rest[..body_start]);
        out.extend(left);
        out.push(' ');
        out.extend(right);
        out.push_str("#}");
        rest = &rest[body_start + close + 2..];
    }
    out.push_str(rest);
    out
}

/// Names of the templates `text` includes, imports or extends (string literals only).
fn referenced_templates(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{%") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("%}") else { break };
        let block = after[..end].trim_start_matches(['-', '+']).trim_start();
        let keyword = block.split_whitespace().next().unwrap_or("");
        if matches!(keyword, "include" | "import" | "from" | "extends") {
            let mut parts = block.split(['"', '\'']);
            parts.next();
            if let Some(name) = parts.next()
                && name.ends_with(".j2")
            {
                out.push(name.to_string());
            }
        }
        rest = &after[end + 2..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_found_in_blocks() {
        let text =
            "{%- from \"common/dialogue.j2\" import dialogue -%}{% include 'x/y.j2' %}{{ z }}";
        assert_eq!(
            referenced_templates(text),
            vec!["common/dialogue.j2".to_string(), "x/y.j2".to_string()]
        );
    }

    #[test]
    fn canonical_templates_render_as_the_originals_without_comment_text() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("prompt-templates");
        let original = Templates::open(&dir).expect("templates");
        let mut names = Vec::new();
        for family in [
            "common",
            "harmless",
            "helpful",
            "judge",
            "outlining",
            "rlaif",
        ] {
            for entry in std::fs::read_dir(dir.join(family)).expect("read_dir") {
                let name = format!(
                    "{family}/{}",
                    entry.expect("entry").file_name().to_string_lossy()
                );
                names.push(name);
            }
        }
        let set = original
            .set_of(names.iter().map(String::as_str))
            .expect("set");
        let carried = set.templates();
        let mut emptied = 0;
        for name in names
            .iter()
            .filter(|n| n.ends_with(".j2") && !n.starts_with("common/"))
        {
            let source = original.source(name).expect("source");
            let canonical = &set.0[name];
            assert!(!canonical.contains("Context:"), "{name} keeps comment text");
            emptied += usize::from(canonical.len() < source.len());
            assert_eq!(
                carried.dry_run(name).expect("canonical renders"),
                original.dry_run(name).expect("original renders"),
                "{name}"
            );
        }
        assert!(emptied >= 10, "{emptied} templates lost comment text");
        for text in [
            "a {# x #} b",
            "a\n{#- x -#}\n b",
            "a {#- x #} b",
            "a {# x -#}\n b",
            "{{ '{# no #}' }}",
        ] {
            let env = |t: &str| {
                let mut e = Environment::new();
                e.set_keep_trailing_newline(true);
                e.render_str(t, ()).expect("renders")
            };
            let c = canonical("t.j2", text.to_string());
            assert_eq!(env(&c), env(text), "{text:?} → {c:?}");
        }
        assert_eq!(
            canonical("t.j2", "{{ '{# no #}' }}".into()),
            "{{ '{# no #}' }}"
        );
        assert_eq!(canonical("t.j2", "a {#- x -#} b".into()), "a {#- -#} b");
        assert_eq!(
            canonical("a.toml", "# note\nx = 1 # why\n".into()),
            canonical("a.toml", "x = 1\n".into())
        );
    }

    #[test]
    fn judge_templates_follow_the_axes() {
        let harmless = vec!["harm".to_string(), "help".to_string()];
        assert_eq!(
            judge_template(&harmless, "help"),
            Some("judge/harm_help.j2")
        );
        assert_eq!(
            judge_template(&["help".into()], "help"),
            Some("judge/help.j2")
        );
        assert_eq!(judge_template(&harmless, "style"), None);
    }
}
