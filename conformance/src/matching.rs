//! Matching rules (docs/conformance.md §3): `*`, `$VAR` binding, comparisons, frame lists.

use std::collections::HashMap;

use stt_conformance_peer::item::parse_num;
use stt_conformance_peer::{Decoded, Item};

use crate::trace::{Field, Op, Spec};

/// Variables bound while a case runs (`$I`), plus the fixed names `peer.id`, `iut.id`, ….
pub type Vars = HashMap<String, String>;

/// Whether `value` is a fixed name: `iut.*`, `peer.*`, `peer2.*`.
fn fixed_name(value: &str) -> bool {
    value.starts_with("iut.")
        || value
            .strip_prefix("peer")
            .is_some_and(|r| r.trim_start_matches(|c: char| c.is_ascii_digit()).starts_with('.'))
}

/// Resolves a value for sending: `$X` and `peer.*`/`peer2.*`/`iut.*` names are replaced.
///
/// # Errors
/// An unbound variable.
pub fn resolve(value: &str, vars: &Vars) -> Result<String, String> {
    if value.starts_with('$') || fixed_name(value) {
        return vars.get(value).cloned().ok_or_else(|| format!("unbound {value}"));
    }
    Ok(value.to_string())
}

/// A spec with variables substituted, as an item for the peer or the adapter.
///
/// # Errors
/// An unbound variable or an operator other than `=`.
pub fn to_item(spec: &Spec, vars: &Vars) -> Result<Item, String> {
    let mut it = Item::new(&spec.name);
    for f in &spec.fields {
        if f.op != Op::Eq {
            return Err(format!("`{}{}` : only = can be sent", f.key, f.op.as_str()));
        }
        it.fields.push((f.key.clone(), resolve(&f.value, vars)?));
    }
    Ok(it)
}

fn cmp_value(f: &Field, actual: &str, vars: &mut Vars) -> Result<(), String> {
    let fail = || format!("{}{}{} but is {actual}", f.key, f.op.as_str(), f.value);
    let expected = if f.value.starts_with('$') {
        match vars.get(&f.value) {
            Some(v) => v.clone(),
            None if f.op == Op::Eq => {
                vars.insert(f.value.clone(), actual.to_string());
                return Ok(());
            }
            None => return Err(format!("unbound {}", f.value)),
        }
    } else if f.value == "*" {
        return Ok(());
    } else {
        resolve(&f.value, vars)?
    };
    let ok = match f.op {
        Op::Eq | Op::Ne => {
            let same = match (parse_num(&expected), parse_num(actual)) {
                (Some(a), Some(b)) => a == b,
                _ => expected == actual,
            };
            same == (f.op == Op::Eq)
        }
        Op::Le | Op::Ge => {
            let (Some(e), Some(a)) = (parse_num(&expected), parse_num(actual)) else { return Err(fail()) };
            if f.op == Op::Le {
                a <= e
            } else {
                a >= e
            }
        }
    };
    if ok {
        Ok(())
    } else {
        Err(fail())
    }
}

/// Matches fields against an item (fields not named are not checked). Bindings are kept
/// only when everything matched.
///
/// # Errors
/// The first mismatch.
pub fn match_fields(fields: &[Field], actual: &Item, vars: &mut Vars) -> Result<(), String> {
    let mut scratch = vars.clone();
    for f in fields {
        match actual.get(&f.key) {
            Some(v) => cmp_value(f, v, &mut scratch)?,
            None if f.op == Op::Ne => {}
            None => return Err(format!("no field {} in `{actual}`", f.key)),
        }
    }
    *vars = scratch;
    Ok(())
}

/// Matches a name and fields.
///
/// # Errors
/// The first mismatch.
pub fn match_item(spec: &Spec, actual: &Item, vars: &mut Vars) -> Result<(), String> {
    if spec.name != actual.name {
        return Err(format!("expected {} but got {}", spec.name, actual.name));
    }
    match_fields(&spec.fields, actual, vars)
}

/// Matches a packet and its frames. Without `...` the frames must be exactly those given
/// (PADDING is ignored unless named); with `...` they must appear in that order among others.
///
/// # Errors
/// The first mismatch.
pub fn match_packet(spec: &Spec, actual: &Decoded, vars: &mut Vars) -> Result<(), String> {
    let mut scratch = vars.clone();
    match_item(spec, &actual.packet, &mut scratch)?;
    if let Some(want) = &spec.frames {
        let Some(got) = &actual.frames else { return Err("expected frames, the packet did not open".into()) };
        let names_padding = want.iter().any(|w| w.name == "PADDING");
        let got: Vec<&Item> = got.iter().filter(|g| names_padding || g.name != "PADDING").collect();
        if spec.more_frames {
            let mut k = 0;
            for w in want {
                loop {
                    let Some(g) = got.get(k) else { return Err(format!("no frame matching {}", w.name)) };
                    k += 1;
                    let mut try_vars = scratch.clone();
                    if match_item(w, g, &mut try_vars).is_ok() {
                        scratch = try_vars;
                        break;
                    }
                }
            }
        } else {
            if want.len() != got.len() {
                return Err(format!("expected {} frames, got {}", want.len(), got.len()));
            }
            for (w, g) in want.iter().zip(&got) {
                match_item(w, g, &mut scratch)?;
            }
        }
    }
    *vars = scratch;
    Ok(())
}

/// The canonical spec of a decoded datagram, for transcripts.
pub fn decoded_spec(d: &Decoded, to: Option<&str>) -> Spec {
    let mut s = item_spec(&d.packet);
    if let Some(t) = to {
        s.fields.push(Field { key: "to".into(), op: Op::Eq, value: t.into() });
    }
    s.frames = d.frames.as_ref().map(|f| f.iter().map(item_spec).collect());
    s
}

/// An item as a spec with `=` fields.
pub fn item_spec(it: &Item) -> Spec {
    Spec {
        name: it.name.clone(),
        fields: it.fields.iter().map(|(k, v)| Field { key: k.clone(), op: Op::Eq, value: v.clone() }).collect(),
        frames: None,
        more_frames: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::tokenize;

    fn spec(text: &str) -> Spec {
        let t = crate::trace::parse(&format!("@case X\nexpect send {text}"), "t", &mut |_| Err(String::new())).unwrap();
        match &t.lines[0].action {
            crate::trace::Action::ExpectSend(s) => s.clone(),
            _ => unreachable!(),
        }
    }

    #[test]
    fn binding_comparisons_and_frames() {
        assert!(tokenize("a \"b").is_err());
        let d = Decoded {
            packet: Item::new("PROT").with("pn", 3).with("len", 40),
            frames: Some(vec![
                Item::new("ACK").with("largest", 2),
                Item::new("PADDING").with("len", 3),
                Item::new("FINAL"),
            ]),
            relayed: Vec::new(),
        };
        let mut v = Vars::new();
        match_packet(&spec("PROT pn=$P len<=40 [ACK largest=*; FINAL]"), &d, &mut v).unwrap();
        assert_eq!(v["$P"], "3");
        assert!(match_packet(&spec("PROT pn=$P"), &d, &mut v).is_ok());
        assert!(match_packet(&spec("PROT pn=4"), &d, &mut v).is_err());
        assert!(match_packet(&spec("PROT len>=41"), &d, &mut v).is_err());
        assert!(match_packet(&spec("PROT [FINAL]"), &d, &mut v).is_err());
        assert!(match_packet(&spec("PROT [FINAL; ...]"), &d, &mut v).is_ok());
        assert!(match_packet(&spec("PROT [FINAL; ACK; ...]"), &d, &mut v).is_err());
        assert!(match_packet(&spec("PROT kp!=1"), &d, &mut v).is_ok());
        // Fixed names of every scripted peer resolve; other words are literal.
        let mut fixed = Vars::new();
        fixed.insert("peer2.id".into(), "ab".into());
        assert_eq!(resolve("peer2.id", &fixed).unwrap(), "ab");
        assert!(resolve("peer3.id", &fixed).is_err());
        assert_eq!(resolve("peer2", &fixed).unwrap(), "peer2");
        assert_eq!(resolve("peerless.id", &fixed).unwrap(), "peerless.id");
        // A failed match binds nothing.
        let mut w = Vars::new();
        assert!(match_packet(&spec("PROT pn=$Q len=1"), &d, &mut w).is_err());
        assert!(w.is_empty());
    }
}
