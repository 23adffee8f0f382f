//! `conformance`: run the STT conformance traces.
//!
//! ```text
//! conformance run [--shim CMD] [--break NAME]... [--junit FILE] [--record DIR] [--skip FILE] [-v] [PATH|ID]...
//! conformance coverage [--min PERCENT]
//! conformance list
//! ```
//! Exit status: 0 when nothing failed, 1 when a case failed, 2 on usage or load errors.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;

use conformance::adapter::{Break, ProtoIut};
use conformance::coverage::{coverage, spec_ids};
use conformance::iut::Iut;
use conformance::report::{diff, junit};
use conformance::runner::Verdict;
use conformance::shim::ShimIut;
use conformance::suite::{default_traces, find_traces, load, run_all};
use conformance::trace::Trace;

const USAGE: &str = "usage:
  conformance run [--shim CMD] [--break NAME]... [--junit FILE] [--record DIR] [--skip FILE] [-v] [PATH|CASE-ID]...
  conformance coverage [--min PERCENT]
  conformance list

run        runs every trace under conformance/traces (or the given files, directories or case ids)
           against stt-proto in process, or against `--shim CMD` (docs/conformance.md §5)
--break    a deliberately broken behaviour of the in-process adapter: dup-output, late-timers,
           no-events, echo-input, corrupt-output (to show the suite can fail)
--junit    writes JUnit XML
--record   writes each case's actual transcript, in trace syntax, to DIR/<case>.trace
--skip     a file of `CASE-ID reason` lines: those cases are SKIPPED
-v         prints the transcript of passing cases too
coverage   lists docs/protocol.md requirement ids no case cites; fails below --min (default 90)";

fn load_all(selectors: &[String]) -> Result<Vec<Trace>, String> {
    let root = default_traces();
    let mut paths = Vec::new();
    let mut ids = Vec::new();
    for s in selectors {
        let mut p = PathBuf::from(s);
        if !p.exists() && root.join(s).exists() {
            p = root.join(s);
        }
        if p.exists() {
            paths.extend(find_traces(&p).map_err(|e| format!("{s}: {e}"))?);
        } else {
            ids.push(s.clone());
        }
    }
    if paths.is_empty() {
        paths = find_traces(&root).map_err(|e| format!("{}: {e}", root.display()))?;
    }
    let mut traces = Vec::new();
    for p in paths {
        let t = load(&p, &root).map_err(|e| e.to_string())?;
        if ids.is_empty() || ids.contains(&t.id) {
            traces.push(t);
        }
    }
    let mut seen = BTreeSet::new();
    for t in &traces {
        if !seen.insert(t.id.clone()) {
            return Err(format!("case id {} is used twice", t.id));
        }
    }
    if traces.is_empty() {
        return Err("no traces selected".into());
    }
    Ok(traces)
}

fn run(args: &[String]) -> Result<ExitCode, String> {
    let (mut shim, mut breaks, mut junit_path, mut record, mut skip, mut verbose, mut sel) =
        (None, Vec::new(), None, None, None, false, Vec::new());
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().cloned().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--shim" => shim = Some(val()?),
            "--break" => breaks.push(val()?.parse::<Break>()?),
            "--junit" => junit_path = Some(val()?),
            "--record" => record = Some(PathBuf::from(val()?)),
            "--skip" => skip = Some(val()?),
            "-v" | "--verbose" => verbose = true,
            s if s.starts_with('-') => return Err(format!("unknown option {s}\n{USAGE}")),
            s => sel.push(s.to_string()),
        }
    }
    let traces = load_all(&sel)?;
    let skips: Vec<(String, String)> = match &skip {
        Some(f) => std::fs::read_to_string(f)
            .map_err(|e| format!("{f}: {e}"))?
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .map(|l| {
                let (id, why) = l.split_once(' ').unwrap_or((l, "listed"));
                (id.trim().to_string(), why.trim().to_string())
            })
            .collect(),
        None => Vec::new(),
    };
    let (run_these, skipped): (Vec<Trace>, Vec<Trace>) =
        traces.into_iter().partition(|t| !skips.iter().any(|(id, _)| *id == t.id));
    let mut make = || -> Result<Box<dyn Iut>, String> {
        Ok(match &shim {
            Some(cmd) => Box::new(ShimIut::spawn(cmd)?),
            None => Box::new(ProtoIut::new(breaks.clone())),
        })
    };
    let results = run_all(&run_these, &mut make);
    let mut all: Vec<(Trace, conformance::runner::CaseResult)> = run_these.into_iter().zip(results).collect();
    for t in skipped {
        let why = skips.iter().find(|(id, _)| *id == t.id).map(|(_, w)| w.clone()).unwrap_or_default();
        all.push((
            t,
            conformance::runner::CaseResult {
                verdict: Verdict::Skipped,
                message: why,
                transcript: Vec::new(),
                expected: Vec::new(),
            },
        ));
    }
    let mut counts = [0usize; 5];
    for (t, r) in &all {
        counts[r.verdict as usize] += 1;
        println!("{:<11} {} {}  [{}]", r.verdict.as_str(), t.id, t.name, t.reqs.join(" "));
        if !r.message.is_empty() {
            println!("    {}", r.message.replace('\n', "\n    "));
        }
        if matches!(r.verdict, Verdict::Fail | Verdict::NonStrict) {
            println!("    --- expected (trace), +++ actual (transcript):");
            let d = diff(&r.expected, &r.transcript);
            for l in d.iter().skip(d.len().saturating_sub(60)) {
                println!("    {l}");
            }
        } else if verbose {
            for l in &r.transcript {
                println!("    {l}");
            }
        }
        if let Some(dir) = &record {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            let mut text = format!("@case {} {}\n@req {}\n", t.id, t.name, t.reqs.join(" "));
            for (k, v) in &t.config {
                text.push_str(&format!("@config {k}={v}\n"));
            }
            text.push_str(&format!("@rng {}\n", t.rng));
            for l in &r.transcript {
                text.push_str(l);
                text.push('\n');
            }
            let path = dir.join(format!("{}.trace", t.id));
            std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    if let Some(p) = junit_path {
        std::fs::write(&p, junit(&all)).map_err(|e| format!("{p}: {e}"))?;
    }
    println!(
        "{} unsupported, {} skipped, {} non-strict",
        counts[Verdict::Unsupported as usize],
        counts[Verdict::Skipped as usize],
        counts[Verdict::NonStrict as usize]
    );
    println!("{} passed, {} failed", counts[Verdict::Pass as usize], counts[Verdict::Fail as usize]);
    Ok(if counts[Verdict::Fail as usize] > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

fn coverage_cmd(args: &[String]) -> Result<ExitCode, String> {
    let min: f64 = match args {
        [] => 90.0,
        [f, v] if f == "--min" => v.parse().map_err(|_| "--min PERCENT")?,
        _ => return Err(USAGE.into()),
    };
    let spec_path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/protocol.md");
    let spec = std::fs::read_to_string(&spec_path).map_err(|e| format!("{}: {e}", spec_path.display()))?;
    let ids = spec_ids(&spec);
    let traces = load_all(&[])?;
    let cited: BTreeSet<String> = traces.iter().flat_map(|t| t.reqs.iter().cloned()).collect();
    for c in &cited {
        if !ids.contains(c) {
            return Err(format!("a case cites {c}, which docs/protocol.md does not define"));
        }
    }
    let (covered, missing, outside) = coverage(&ids, &cited);
    let pct = 100.0 * covered.len() as f64 / (covered.len() + missing.len()).max(1) as f64;
    for id in &ids {
        let cases: Vec<&str> = traces.iter().filter(|t| t.reqs.contains(id)).map(|t| t.id.as_str()).collect();
        if outside.contains(id) {
            println!("{id:<6} (out of scope: crate tests)");
        } else {
            println!("{id:<6} {}", if cases.is_empty() { "NO CASE".to_string() } else { cases.join(" ") });
        }
    }
    println!("without a case: {}", if missing.is_empty() { "none".to_string() } else { missing.join(" ") });
    println!(
        "coverage {:.1}% ({} of {} requirements; {} out of scope)",
        pct,
        covered.len(),
        covered.len() + missing.len(),
        outside.len()
    );
    Ok(if pct + 1e-9 < min { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let r = match args.first().map(String::as_str) {
        Some("run") => run(&args[1..]),
        Some("coverage") => coverage_cmd(&args[1..]),
        Some("list") => load_all(&[]).map(|ts| {
            for t in ts {
                println!("{} {}  [{}]", t.id, t.name, t.reqs.join(" "));
            }
            ExitCode::SUCCESS
        }),
        _ => Err(USAGE.into()),
    };
    match r {
        Ok(c) => c,
        Err(e) => {
            eprintln!("conformance: {e}");
            ExitCode::from(2)
        }
    }
}
