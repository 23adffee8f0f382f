//! Reports: console lines, a line diff, JUnit XML.

use std::fmt::Write as _;

use crate::runner::{CaseResult, Verdict};
use crate::trace::Trace;

/// A line diff (`-` expected, `+` actual, ` ` both) by longest common subsequence.
pub fn diff(expected: &[String], actual: &[String]) -> Vec<String> {
    let (n, m) = (expected.len(), actual.len());
    if n * m > 4_000_000 {
        return vec!["(too long to diff)".into()];
    }
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if expected[i] == actual[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < n || j < m {
        if i < n && j < m && expected[i] == actual[j] {
            out.push(format!("  {}", expected[i]));
            i += 1;
            j += 1;
        } else if j < m && (i == n || lcs[i][j + 1] >= lcs[i + 1][j]) {
            out.push(format!("+ {}", actual[j]));
            j += 1;
        } else {
            out.push(format!("- {}", expected[i]));
            i += 1;
        }
    }
    out
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// JUnit XML for a run.
pub fn junit(results: &[(Trace, CaseResult)]) -> String {
    let failures = results.iter().filter(|(_, r)| matches!(r.verdict, Verdict::Fail | Verdict::NonStrict)).count();
    let skipped = results.iter().filter(|(_, r)| matches!(r.verdict, Verdict::Unsupported | Verdict::Skipped)).count();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites><testsuite name=\"stt-conformance\" tests=\"{}\" failures=\"{failures}\" skipped=\"{skipped}\">",
        results.len()
    );
    for (t, r) in results {
        let group = t.id.split('-').next().unwrap_or("");
        let _ = write!(out, "  <testcase classname=\"{}\" name=\"{} {}\">", xml(group), xml(&t.id), xml(&t.name));
        match r.verdict {
            Verdict::Pass => {}
            Verdict::Fail | Verdict::NonStrict => {
                let _ = write!(
                    out,
                    "<failure message=\"{}\">{}</failure>",
                    xml(r.verdict.as_str()),
                    xml(&format!("{}\n{}", r.message, r.transcript.join("\n")))
                );
            }
            Verdict::Unsupported | Verdict::Skipped => {
                let _ =
                    write!(out, "<skipped message=\"{}\"/>", xml(&format!("{}: {}", r.verdict.as_str(), r.message)));
            }
        }
        out.push_str("</testcase>\n");
    }
    out.push_str("</testsuite></testsuites>\n");
    out
}
