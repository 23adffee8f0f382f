//! Requirement coverage: which `docs/protocol.md` requirement ids no case cites.

use std::collections::BTreeSet;

/// Sections whose requirements the traces do not drive (the application-level segment
/// codec, storage, endpoints, the WebSocket mapping, and the node's scheduling cost); they
/// are checked by the crates' own tests. Relays and hole punching (RY-, PU-) are in scope:
/// the `ry` traces drive them with a scripted relay and members.
pub const OUT_OF_SCOPE_PREFIXES: [&str; 5] = ["SG-", "EP-", "WS-", "ND-", "BF-"];

/// Requirement ids (`**[HS-4]**`) defined in a spec text, in order of appearance.
pub fn spec_ids(spec: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in spec.lines() {
        if line.contains("such as **[") {
            continue; // the conventions' example
        }
        let mut rest = line;
        while let Some(i) = rest.find("**[") {
            rest = &rest[i + 3..];
            if let Some(j) = rest.find("]**") {
                let id = &rest[..j];
                let valid = id.split_once('-').is_some_and(|(a, n)| {
                    !a.is_empty() && a.chars().all(|c| c.is_ascii_uppercase()) && n.chars().all(|c| c.is_ascii_digit())
                });
                if valid && !out.iter().any(|x| x == id) {
                    out.push(id.to_string());
                }
                rest = &rest[j..];
            }
        }
    }
    out
}

/// Coverage of in-scope ids by the cited ones: `(covered, missing, out_of_scope)`.
pub fn coverage(ids: &[String], cited: &BTreeSet<String>) -> (Vec<String>, Vec<String>, Vec<String>) {
    let (mut covered, mut missing, mut outside) = (Vec::new(), Vec::new(), Vec::new());
    for id in ids {
        if OUT_OF_SCOPE_PREFIXES.iter().any(|p| id.starts_with(p)) {
            outside.push(id.clone());
        } else if cited.contains(id) {
            covered.push(id.clone());
        } else {
            missing.push(id.clone());
        }
    }
    (covered, missing, outside)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_ids_and_gaps() {
        let spec = "ids such as **[HS-3]**\n- a rule **[HS-4]** and **[RL-2]**\n- codec **[SG-1]**\n**[HS-4]** again";
        let ids = spec_ids(spec);
        assert_eq!(ids, vec!["HS-4", "RL-2", "SG-1"]);
        let cited: BTreeSet<String> = ["HS-4".to_string()].into();
        let (c, m, o) = coverage(&ids, &cited);
        assert_eq!((c.len(), m, o.len()), (1, vec!["RL-2".to_string()], 1));
    }
}
