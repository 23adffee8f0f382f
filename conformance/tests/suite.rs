//! The suite passes against stt-proto, in process and through the shim, and it can fail:
//! deliberately broken behaviours and mutated traces make the named cases fail.

use conformance::adapter::{Break, ProtoIut};
use conformance::iut::Iut;
use conformance::runner::{run_case, Verdict};
use conformance::shim::ShimIut;
use conformance::suite::{default_traces, find_traces, load};
use conformance::trace::{parse, Trace};

fn all() -> Vec<Trace> {
    let root = default_traces();
    find_traces(&root).unwrap().iter().map(|p| load(p, &root).unwrap()).collect()
}

fn case(id: &str) -> Trace {
    all().into_iter().find(|t| t.id == id).unwrap_or_else(|| panic!("no case {id}"))
}

fn verdicts(traces: &[Trace], make: &mut dyn FnMut() -> Box<dyn Iut>) -> Vec<(String, Verdict, String)> {
    traces
        .iter()
        .map(|t| {
            let r = run_case(t, make().as_mut());
            (t.id.clone(), r.verdict, r.message)
        })
        .collect()
}

#[test]
fn at_least_84_cases_in_six_groups() {
    let ts = all();
    assert!(ts.len() >= 84, "{} cases", ts.len());
    for g in ["HS-", "RL-", "SF-", "LP-", "LC-", "RY-"] {
        assert!(ts.iter().any(|t| t.id.starts_with(g)), "no {g} case");
    }
    for t in &ts {
        assert!(!t.reqs.is_empty(), "{} cites no requirement", t.id);
    }
}

#[test]
fn every_case_passes_in_process() {
    let failed: Vec<_> = verdicts(&all(), &mut || Box::new(ProtoIut::default()))
        .into_iter()
        .filter(|(_, v, _)| *v != Verdict::Pass)
        .collect();
    assert!(failed.is_empty(), "{failed:#?}");
}

#[test]
fn every_case_passes_through_the_shim() {
    let shim = env!("CARGO_BIN_EXE_stt-shim");
    let failed: Vec<_> = verdicts(&all(), &mut || Box::new(ShimIut::spawn(shim).unwrap()))
        .into_iter()
        .filter(|(_, v, _)| *v != Verdict::Pass)
        .collect();
    assert!(failed.is_empty(), "{failed:#?}");
}

/// Each broken behaviour, chosen at run time, makes the named cases fail.
#[test]
fn broken_behaviours_fail_the_named_cases() {
    let expectations: [(Break, &[&str]); 5] = [
        (Break::DupOutput, &["HS-01", "HS-10", "RL-01"]),
        (Break::LateTimers, &["HS-12", "LC-01", "LC-02"]),
        (Break::NoEvents, &["HS-01", "HS-18", "LC-01"]),
        (Break::EchoInput, &["HS-03", "HS-14", "LC-05"]),
        (Break::CorruptOutput, &["HS-01", "RL-01", "SF-05"]),
    ];
    for (b, ids) in expectations {
        for id in ids {
            let r = run_case(&case(id), &mut ProtoIut::new(vec![b]));
            assert_eq!(r.verdict, Verdict::Fail, "{id} should fail with {b:?}");
            assert!(!r.message.is_empty());
        }
    }
    // The same through the shim's own --break flag.
    let shim = format!("{} --break echo-input", env!("CARGO_BIN_EXE_stt-shim"));
    let r = run_case(&case("HS-03"), &mut ShimIut::spawn(&shim).unwrap());
    assert_eq!(r.verdict, Verdict::Fail);
    assert!(r.message.contains("unexpected datagram"), "{}", r.message);
}

fn mutated(id: &str, from: &str, to: &str) -> Trace {
    let root = default_traces();
    let path = find_traces(&root).unwrap().into_iter().find(|p| load(p, &root).unwrap().id == id).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{id} has no `{from}`");
    let text = text.replacen(from, to, 1);
    parse(&text, "mutated.trace", &mut |name| std::fs::read_to_string(root.join(name)).map_err(|e| e.to_string()))
        .unwrap()
}

/// Mutated traces fail: a wrong field value, a missing expectation, a shifted time, a
/// tighter bound, a wrong event, a wrong counter; a wait past the widened loss threshold,
/// a run of losses no acknowledged packet breaks (persistent congestion); in relay cases a
/// forwarded datagram that keeps the destination's id, a 30-byte datagram (forwarded, not
/// junk), more probe credit (a sixth probe goes out), an answer expected from the wrong peer,
/// and a fallback
/// expected to a direct address.
#[test]
fn mutated_traces_fail() {
    let mutations = [
        ("HS-17", "aead=02", "aead=01"),
        ("HS-01", "       expect send PROT pn=1 [ACK largest=0 ranges=0-0]\n", ""),
        ("HS-12", "0.900 expect send HELLO", "0.901 expect send HELLO"),
        ("HS-05", "len<=1500", "len<=100"),
        ("LC-01", "reason=IdleTimeout", "reason=NodeClosed"),
        ("HS-03", "drops.auth_failed == 1", "drops.auth_failed == 0"),
        ("SF-04", "data=\"hello world\"", "data=\"hello_world\""),
        ("LP-02", "sim.complete == 1", "sim.complete == 0"),
        ("LP-12", "expect none for 0.012", "expect none for 0.020"),
        ("LP-16", "recv PROT pn=1 [ACK ranges=7-7,4-4,0-0]", "recv PROT pn=1 [ACK ranges=7-7,0-0]"),
        (
            "RY-04",
            "[RELAY_DATA id=peer.id len=30 data=\"a relayed datagram of 30 bytes\"]",
            "[RELAY_DATA id=peer2.id len=30 data=\"a relayed datagram of 30 bytes\"]",
        ),
        ("RY-04", "data=\"a datagram of 29 bytes: junk!\"", "data=\"a datagram of 30 bytes: junk!!\""),
        ("RY-08", "PADDING len=29]", "PADDING len=76]"),
        ("RY-06", "expect send CHALLENGE via=peer rsid=peer2.sid", "expect send CHALLENGE via=peer rsid=peer.sid"),
        ("RY-11", "expect event PathChanged remote=relay peer=peer2.id", "expect event PathChanged remote=peer2.addr"),
        (
            "RL-10",
            "label=\"conformance\" len=32 -> data=peer.export",
            "label=\"conformancf\" len=32 -> data=peer.export",
        ),
    ];
    for (id, from, to) in mutations {
        let original = run_case(&case(id), &mut ProtoIut::default());
        assert_eq!(original.verdict, Verdict::Pass, "{id} unmutated");
        let r = run_case(&mutated(id, from, to), &mut ProtoIut::default());
        assert_eq!(r.verdict, Verdict::Fail, "{id} with `{from}` -> `{to}` should fail");
    }
}

/// Record mode's transcript is itself a trace that parses and passes when replayed.
#[test]
fn a_recorded_transcript_replays() {
    let t = case("HS-02");
    let r = run_case(&t, &mut ProtoIut::default());
    assert_eq!(r.verdict, Verdict::Pass);
    let text = format!("@case HS-02R recorded\n@req HS-1\n@iut initiator\n{}\n", r.transcript.join("\n"));
    let replay = parse(&text, "recorded.trace", &mut |_| Err("no includes".into())).unwrap();
    let again = run_case(&replay, &mut ProtoIut::default());
    assert_eq!(again.verdict, Verdict::Pass, "{}", again.message);
}
