//! Loading traces and running a whole suite.

use std::path::{Path, PathBuf};

use crate::iut::Iut;
use crate::runner::{run_case, CaseResult};
use crate::trace::{parse, ParseError, Trace};

/// The suite's default trace directory.
pub fn default_traces() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("traces")
}

/// Every `*.trace` under `root` (recursively, sorted), except those under `common/`.
pub fn find_traces(root: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    if root.is_file() {
        out.push(root.to_path_buf());
        return Ok(out);
    }
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir)? {
            let p = e?.path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n != "common") {
                    stack.push(p);
                }
            } else if p.extension().is_some_and(|x| x == "trace") {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Loads and parses one trace; `@include` names are relative to the traces root.
///
/// # Errors
/// An unreadable file or a parse error.
pub fn load(path: &Path, root: &Path) -> Result<Trace, ParseError> {
    let text = std::fs::read_to_string(path).map_err(|e| ParseError {
        file: path.display().to_string(),
        line: 0,
        message: e.to_string(),
    })?;
    let base = if root.is_dir() { root.to_path_buf() } else { default_traces() };
    parse(&text, &path.display().to_string(), &mut |name| {
        std::fs::read_to_string(base.join(name)).map_err(|e| format!("@include {name}: {e}"))
    })
}

/// Runs `traces` with a fresh IUT per case from `make`.
pub fn run_all(traces: &[Trace], make: &mut dyn FnMut() -> Result<Box<dyn Iut>, String>) -> Vec<CaseResult> {
    traces
        .iter()
        .map(|t| match make() {
            Ok(mut iut) => run_case(t, iut.as_mut()),
            Err(e) => CaseResult {
                verdict: crate::runner::Verdict::Fail,
                message: format!("cannot start the implementation: {e}"),
                transcript: Vec::new(),
                expected: Vec::new(),
            },
        })
        .collect()
}
