//! A small hand-written parser for traces; fuzzed by `fuzz_targets/trace_parser.rs`.

use core::fmt;

use super::{Action, Field, Level, Line, Op, Role, Spec, Time, Trace};

/// A parse error with its place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// File.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.message)
    }
}

impl std::error::Error for ParseError {}

/// Splits a line into tokens: whitespace separates; `[`, `]` and `;` stand alone;
/// `"…"` (with `\` escapes) stays inside its token; `#` at a token start begins a comment.
///
/// # Errors
/// An unterminated quote.
pub fn tokenize(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                cur.push('"');
                loop {
                    match chars.next() {
                        None => return Err("unterminated quote".into()),
                        Some('\\') => {
                            cur.push('\\');
                            cur.push(chars.next().ok_or("unterminated escape")?);
                        }
                        Some('"') => {
                            cur.push('"');
                            break;
                        }
                        Some(o) => cur.push(o),
                    }
                }
            }
            '#' if cur.is_empty() => break,
            '[' | ']' | ';' => {
                if !cur.is_empty() {
                    out.push(core::mem::take(&mut cur));
                }
                out.push(c.to_string());
            }
            c if c.is_whitespace() => {
                if !cur.is_empty() {
                    out.push(core::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    Ok(out)
}

/// Parses seconds with up to 6 decimals (`1`, `0.020`, `2.5`) into µs.
pub fn parse_secs(s: &str) -> Option<u64> {
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) || frac.len() > 6 {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let w: u64 = whole.parse().ok()?;
    let mut f: u64 = if frac.is_empty() { 0 } else { frac.parse().ok()? };
    for _ in frac.len()..6 {
        f *= 10;
    }
    w.checked_mul(1_000_000)?.checked_add(f)
}

fn field(tok: &str) -> Result<Field, String> {
    let key_end = tok.find(['=', '!', '<', '>']).unwrap_or(tok.len());
    let key = &tok[..key_end];
    if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') {
        return Err(format!("bad field `{tok}`"));
    }
    let rest = &tok[key_end..];
    if rest.is_empty() {
        return Ok(Field { key: key.into(), op: Op::Eq, value: String::new() });
    }
    let (op, value) = if let Some(v) = rest.strip_prefix("!=") {
        (Op::Ne, v)
    } else if let Some(v) = rest.strip_prefix("<=") {
        (Op::Le, v)
    } else if let Some(v) = rest.strip_prefix(">=") {
        (Op::Ge, v)
    } else if let Some(v) = rest.strip_prefix('=') {
        (Op::Eq, v)
    } else {
        return Err(format!("bad operator in `{tok}`"));
    };
    if value.is_empty() {
        return Err(format!("empty value in `{tok}`"));
    }
    Ok(Field { key: key.into(), op, value: value.into() })
}

/// Parses `NAME fields… [frames]` from `toks[*i..]`, stopping at `;`, `]` or `->`.
fn spec(toks: &[String], i: &mut usize, nested: bool) -> Result<Spec, String> {
    let name = toks.get(*i).ok_or("missing name")?;
    if name.contains('=') || matches!(name.as_str(), "[" | "]" | ";") {
        return Err(format!("expected a name, found `{name}`"));
    }
    let mut s = Spec { name: name.clone(), ..Spec::default() };
    *i += 1;
    while let Some(t) = toks.get(*i) {
        match t.as_str() {
            ";" | "]" if nested => break,
            "->" => break,
            "[" if !nested => {
                *i += 1;
                let mut frames = Vec::new();
                loop {
                    match toks.get(*i).map(String::as_str) {
                        None => return Err("unclosed [".into()),
                        Some("]") => {
                            *i += 1;
                            break;
                        }
                        Some(";") => *i += 1,
                        Some("...") => {
                            s.more_frames = true;
                            *i += 1;
                        }
                        Some(_) => frames.push(spec(toks, i, true)?),
                    }
                }
                s.frames = Some(frames);
            }
            "[" | "]" | ";" => return Err(format!("unexpected `{t}`")),
            _ => {
                s.fields.push(field(t)?);
                *i += 1;
            }
        }
    }
    Ok(s)
}

fn fields_only(toks: &[String]) -> Result<Spec, String> {
    let mut s = Spec::default();
    for t in toks {
        s.fields.push(field(t)?);
    }
    Ok(s)
}

fn kv_list(toks: &[String]) -> Result<Vec<(String, String)>, String> {
    toks.iter()
        .map(|t| {
            t.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).ok_or(format!("`{t}` is not key=value"))
        })
        .collect()
}

fn line_body(toks: &[String]) -> Result<Action, String> {
    let kw = toks.first().ok_or("empty line")?;
    let rest = &toks[1..];
    Ok(match kw.as_str() {
        "recv" => {
            let mut i = 0;
            let s = spec(rest, &mut i, false)?;
            if i != rest.len() {
                return Err("trailing tokens after recv".into());
            }
            Action::Recv(s)
        }
        "app" => {
            let arrow = rest.iter().position(|t| t == "->");
            let (call, result) = match arrow {
                Some(a) => (&rest[..a], Some(fields_only(&rest[a + 1..])?)),
                None => (rest, None),
            };
            let mut i = 0;
            let s = spec(call, &mut i, false)?;
            if i != call.len() {
                return Err("trailing tokens after app call".into());
            }
            Action::App(s, result)
        }
        "tick" if rest.is_empty() => Action::Tick,
        "sim" => {
            let mut i = 0;
            Action::Sim(spec(rest, &mut i, false)?)
        }
        "expect" => {
            let what = rest.first().ok_or("expect what?")?;
            let rest = &rest[1..];
            match what.as_str() {
                "send" => {
                    let mut i = 0;
                    let s = spec(rest, &mut i, false)?;
                    if i != rest.len() {
                        return Err("trailing tokens after expect send".into());
                    }
                    Action::ExpectSend(s)
                }
                "none" => match rest {
                    [] => Action::ExpectNone(None),
                    [f, d] if f == "for" => Action::ExpectNone(Some(parse_secs(d).ok_or("bad duration")?)),
                    _ => return Err("expect none [for SECONDS]".into()),
                },
                "event" => {
                    let mut i = 0;
                    let s = spec(rest, &mut i, false)?;
                    if s.frames.is_some() || i != rest.len() {
                        return Err("events have no frames".into());
                    }
                    Action::ExpectEvent(s)
                }
                "state" => match rest {
                    [name, op, value] => {
                        let op = match op.as_str() {
                            "==" => Op::Eq,
                            "!=" => Op::Ne,
                            "<=" => Op::Le,
                            ">=" => Op::Ge,
                            _ => return Err(format!("unknown comparison `{op}`")),
                        };
                        Action::ExpectState(name.clone(), op, value.clone())
                    }
                    _ => return Err("expect state NAME OP VALUE".into()),
                },
                other => return Err(format!("unknown expectation `{other}`")),
            }
        }
        other => return Err(format!("unknown keyword `{other}`")),
    })
}

/// Parses a trace. `include` loads `@include`d files by the name written.
///
/// # Errors
/// The first malformed line.
pub fn parse(
    text: &str,
    file: &str,
    include: &mut dyn FnMut(&str) -> Result<String, String>,
) -> Result<Trace, ParseError> {
    let mut t = Trace {
        id: String::new(),
        name: String::new(),
        reqs: Vec::new(),
        level: Level::Must,
        role: Role::Responder,
        config: Vec::new(),
        requires: Vec::new(),
        allow: Vec::new(),
        rng: 1,
        link: Vec::new(),
        lines: Vec::new(),
    };
    body(text, file, include, &mut t, 0)?;
    if t.id.is_empty() {
        return Err(ParseError { file: file.into(), line: 1, message: "missing @case".into() });
    }
    Ok(t)
}

fn body(
    text: &str,
    file: &str,
    include: &mut dyn FnMut(&str) -> Result<String, String>,
    t: &mut Trace,
    depth: usize,
) -> Result<(), ParseError> {
    for (n, raw) in text.lines().enumerate() {
        let err = |message: String| ParseError { file: file.into(), line: n + 1, message };
        let toks = tokenize(raw).map_err(err)?;
        let Some(first) = toks.first() else { continue };
        if let Some(d) = first.strip_prefix('@') {
            let args = &toks[1..];
            match d {
                "case" => {
                    t.id = args.first().cloned().ok_or_else(|| err("@case ID NAME".into()))?;
                    t.name = args.get(1..).map(|a| a.join(" ")).unwrap_or_default();
                }
                "req" => t.reqs.extend(args.iter().cloned()),
                "level" => {
                    t.level = match args.first().map(String::as_str) {
                        Some("must") => Level::Must,
                        Some("should") => Level::Should,
                        _ => return Err(err("@level must|should".into())),
                    }
                }
                "iut" => {
                    t.role = match args.first().map(String::as_str) {
                        Some("responder") => Role::Responder,
                        Some("initiator") => Role::Initiator,
                        Some("pair") => Role::Pair,
                        _ => return Err(err("@iut responder|initiator|pair".into())),
                    }
                }
                "config" => t.config.extend(kv_list(args).map_err(err)?),
                "link" => t.link.extend(kv_list(args).map_err(err)?),
                "requires" => t.requires.extend(args.iter().cloned()),
                "allow" => t.allow.extend(args.iter().cloned()),
                "rng" => {
                    t.rng = args.first().and_then(|a| a.parse().ok()).ok_or_else(|| err("@rng NUMBER".into()))?;
                }
                "include" => {
                    if depth > 4 {
                        return Err(err("@include nested too deep".into()));
                    }
                    let name = args.first().ok_or_else(|| err("@include FILE".into()))?;
                    let inc = include(name).map_err(err)?;
                    body(&inc, name, include, t, depth + 1)?;
                }
                other => return Err(err(format!("unknown directive @{other}"))),
            }
            continue;
        }
        let (time, rest) = if let Some(rel) = first.strip_prefix('+') {
            (Time::Rel(parse_secs(rel).ok_or_else(|| err(format!("bad time `{first}`")))?), &toks[1..])
        } else if first.starts_with(|c: char| c.is_ascii_digit()) {
            (Time::Abs(parse_secs(first).ok_or_else(|| err(format!("bad time `{first}`")))?), &toks[1..])
        } else {
            (Time::Same, &toks[..])
        };
        let action = line_body(rest).map_err(err)?;
        t.lines.push(Line { lineno: n + 1, file: file.into(), time, action });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::render_line;

    fn no_include(_: &str) -> Result<String, String> {
        Err("no includes".into())
    }

    #[test]
    fn parses_and_renders_canonically() {
        let text = r#"
@case HS-01 basic   # comment
@req HS-1 HS-2
@iut responder
@config idle_timeout_ms=30000
0.000 recv HELLO ts=5 aeads=01,02
      expect send CHALLENGE sid=$I len<=1200 [ACK ranges=0-0; ...]
+0.020 app read id=0 -> len=5 data="a b;c" fin=1
       expect state drops.replay == 1
       expect none for 1.5
"#;
        let t = parse(text, "x.trace", &mut no_include).unwrap();
        assert_eq!(t.id, "HS-01");
        assert_eq!(t.reqs, vec!["HS-1", "HS-2"]);
        assert_eq!(t.lines.len(), 5);
        assert_eq!(t.lines[1].time, Time::Same);
        assert_eq!(t.lines[2].time, Time::Rel(20_000));
        let rendered: Vec<String> = t.lines.iter().map(render_line).collect();
        assert_eq!(rendered[1], "expect send CHALLENGE sid=$I len<=1200 [ACK ranges=0-0; ...]");
        assert_eq!(rendered[2], "+0.020 app read id=0 -> len=5 data=\"a b;c\" fin=1");
        assert_eq!(rendered[4], "expect none for 1.500");
        // Rendering then parsing gives the same lines.
        let again = format!("@case X\n{}", rendered.join("\n"));
        let t2 = parse(&again, "x.trace", &mut no_include).unwrap();
        let a: Vec<_> = t.lines.iter().map(|l| (&l.time, &l.action)).collect();
        let b: Vec<_> = t2.lines.iter().map(|l| (&l.time, &l.action)).collect();
        assert_eq!(a, b);
    }

    #[test]
    fn rejects_garbage_with_a_place() {
        for bad in
            ["@case X\nrecv", "@case X\nfly away", "@case X\n+x recv HELLO", "@case X\nrecv HELLO [FINAL", "recv HELLO"]
        {
            let e = parse(bad, "b.trace", &mut no_include).unwrap_err();
            assert!(e.line >= 1, "{e}");
        }
    }
}
