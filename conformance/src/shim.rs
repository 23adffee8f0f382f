//! The shim line protocol (docs/conformance.md §5): the runner drives an implementation in
//! another process, one request line on its stdin, answers on its stdout.
//! [`ShimIut`] is the runner's side; [`serve`] is the implementation's side, used by the
//! `stt-shim` binary over [`crate::adapter::ProtoIut`].

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use stt_conformance_peer::item::{hex, unhex};
use stt_conformance_peer::Item;

use crate::iut::{Iut, NodeSpec, Out};
use crate::trace::tokenize;

/// ` key=value key …` (a leading space per field; bare keys for empty values).
pub(crate) fn fields_text(it: &Item) -> String {
    let mut s = String::new();
    for (k, v) in &it.fields {
        s.push(' ');
        s.push_str(k);
        if !v.is_empty() {
            s.push('=');
            s.push_str(v);
        }
    }
    s
}

fn parse_item(name: &str, toks: &[String]) -> Item {
    let mut it = Item::new(name);
    for t in toks {
        match t.split_once('=') {
            Some((k, v)) => it.fields.push((k.into(), v.into())),
            None => it.fields.push((t.clone(), String::new())),
        }
    }
    it
}

/// An implementation in a child process speaking the shim protocol.
pub struct ShimIut {
    child: Child,
    stdin: BufWriter<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl ShimIut {
    /// Starts `command` (run by `sh -c`).
    ///
    /// # Errors
    /// The process cannot be started.
    pub fn spawn(command: &str) -> Result<Self, String> {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(command)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start `{command}`: {e}"))?;
        let stdin = BufWriter::new(child.stdin.take().ok_or("no stdin")?);
        let stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        Ok(Self { child, stdin, stdout })
    }

    fn request(&mut self, line: &str) -> Result<Vec<String>, String> {
        writeln!(self.stdin, "{line}").and_then(|()| self.stdin.flush()).map_err(|e| format!("shim stdin: {e}"))?;
        let mut lines = Vec::new();
        loop {
            let mut l = String::new();
            let n = self.stdout.read_line(&mut l).map_err(|e| format!("shim stdout: {e}"))?;
            if n == 0 {
                return Err(format!("the shim exited during `{}`", line.split(' ').next().unwrap_or("")));
            }
            let l = l.trim_end().to_string();
            if let Some(e) = l.strip_prefix("error ") {
                return Err(format!("shim: {e}"));
            }
            let last = l == "ok" || l.starts_with("ok ") || l.starts_with("refused");
            lines.push(l);
            if last {
                return Ok(lines);
            }
        }
    }

    fn ok(&mut self, line: &str) -> Result<String, String> {
        let mut r = self.request(line)?;
        let last = r.pop().unwrap_or_default();
        Ok(last.strip_prefix("ok").unwrap_or(&last).trim().to_string())
    }
}

impl Drop for ShimIut {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit");
        let _ = self.stdin.flush();
        let _ = self.child.wait();
    }
}

impl Iut for ShimIut {
    fn features(&mut self) -> Result<Vec<String>, String> {
        Ok(self.ok("features")?.split_whitespace().map(String::from).collect())
    }

    fn create(&mut self, node: usize, s: &NodeSpec) -> Result<[u8; 32], String> {
        let mut line = format!(
            "create {node} shared={} seed={} rng={} unix={}",
            hex(&s.shared_seed),
            hex(&s.node_seed),
            s.rng,
            s.unix_ms
        );
        for (k, v) in &s.config {
            line.push_str(&format!(" {k}={v}"));
        }
        let r = self.ok(&line)?;
        r.strip_prefix("id=")
            .and_then(unhex)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| format!("bad create answer `{r}`"))
    }

    fn input(&mut self, node: usize, now_us: u64, from: &str, data: &[u8]) -> Result<(), String> {
        self.ok(&format!("input {node} {now_us} {from} {}", if data.is_empty() { "-".into() } else { hex(data) }))
            .map(|_| ())
    }

    fn timeout(&mut self, node: usize, now_us: u64) -> Result<(), String> {
        self.ok(&format!("timeout {node} {now_us}")).map(|_| ())
    }

    fn deadline(&mut self, node: usize) -> Result<Option<u64>, String> {
        let r = self.ok(&format!("deadline {node}"))?;
        if r == "none" {
            return Ok(None);
        }
        r.parse().map(Some).map_err(|_| format!("bad deadline `{r}`"))
    }

    fn drain(&mut self, node: usize) -> Result<Vec<Out>, String> {
        let mut lines = self.request(&format!("drain {node}"))?;
        lines.pop();
        lines
            .into_iter()
            .map(|l| {
                let toks = tokenize(&l)?;
                match toks.first().map(String::as_str) {
                    Some("send") if toks.len() == 3 => Ok(Out::Send {
                        to: toks[1].clone(),
                        data: if toks[2] == "-" { Vec::new() } else { unhex(&toks[2]).ok_or("bad hex")? },
                    }),
                    Some("event") if toks.len() >= 2 => Ok(Out::Event(parse_item(&toks[1], &toks[2..]))),
                    _ => Err(format!("bad drain line `{l}`")),
                }
            })
            .collect()
    }

    fn app(&mut self, node: usize, now_us: u64, call: &Item) -> Result<Result<Item, String>, String> {
        let mut r = self.request(&format!("app {node} {now_us} {}{}", call.name, fields_text(call)))?;
        let last = r.pop().unwrap_or_default();
        if let Some(e) = last.strip_prefix("refused") {
            return Ok(Err(e.trim().to_string()));
        }
        let toks = tokenize(last.strip_prefix("ok").unwrap_or(""))?;
        Ok(Ok(parse_item("", &toks)))
    }

    fn state(&mut self, node: usize, name: &str) -> Result<Option<i64>, String> {
        let r = self.ok(&format!("state {node} {name}"))?;
        if r == "none" {
            return Ok(None);
        }
        r.parse().map(Some).map_err(|_| format!("bad state `{r}`"))
    }
}

fn serve_line(iut: &mut dyn Iut, line: &str, out: &mut dyn Write) -> Result<(), String> {
    let toks = tokenize(line)?;
    let arg = |i: usize| toks.get(i).map(String::as_str).ok_or_else(|| format!("missing argument {i}"));
    let n = |i: usize| -> Result<u64, String> { arg(i)?.parse().map_err(|_| format!("argument {i} is not a number")) };
    let w = |out: &mut dyn Write, s: String| writeln!(out, "{s}").map_err(|e| e.to_string());
    match arg(0)? {
        "features" => w(out, format!("ok {}", iut.features()?.join(" "))),
        "create" => {
            let it = parse_item("", &toks[2..]);
            let seed = |k: &str| -> Result<[u8; 32], String> {
                it.get(k).and_then(unhex).and_then(|b| b.try_into().ok()).ok_or(format!("create needs {k}=HEX"))
            };
            let config = it
                .fields
                .iter()
                .filter(|(k, _)| !matches!(k.as_str(), "shared" | "seed" | "rng" | "unix"))
                .cloned()
                .collect();
            let spec = NodeSpec {
                shared_seed: seed("shared")?,
                node_seed: seed("seed")?,
                rng: it.num("rng")?.unwrap_or(1),
                unix_ms: it.num("unix")?.unwrap_or(0),
                config,
            };
            let id = iut.create(n(1)? as usize, &spec)?;
            w(out, format!("ok id={}", hex(&id)))
        }
        "input" => {
            let data = if arg(4)? == "-" { Vec::new() } else { unhex(arg(4)?).ok_or("bad hex")? };
            iut.input(n(1)? as usize, n(2)?, arg(3)?, &data)?;
            w(out, "ok".into())
        }
        "timeout" => {
            iut.timeout(n(1)? as usize, n(2)?)?;
            w(out, "ok".into())
        }
        "deadline" => w(out, format!("ok {}", iut.deadline(n(1)? as usize)?.map_or("none".into(), |d| d.to_string()))),
        "drain" => {
            for o in iut.drain(n(1)? as usize)? {
                match o {
                    Out::Send { to, data } => {
                        w(out, format!("send {to} {}", if data.is_empty() { "-".into() } else { hex(&data) }))?
                    }
                    Out::Event(e) => w(out, format!("event {}{}", e.name, fields_text(&e)))?,
                }
            }
            w(out, "ok".into())
        }
        "app" => {
            let call = parse_item(arg(3)?, &toks[4..]);
            match iut.app(n(1)? as usize, n(2)?, &call)? {
                Ok(r) => w(out, format!("ok{}", fields_text(&r))),
                Err(e) => w(out, format!("refused {e}")),
            }
        }
        "state" => {
            w(out, format!("ok {}", iut.state(n(1)? as usize, arg(2)?)?.map_or("none".into(), |v| v.to_string())))
        }
        other => Err(format!("unknown request `{other}`")),
    }
}

/// Serves the shim protocol for `iut` until `quit` or end of input.
///
/// # Errors
/// Only I/O errors on the streams; request errors are answered with `error …`.
pub fn serve(iut: &mut dyn Iut, input: impl BufRead, mut output: impl Write) -> std::io::Result<()> {
    for line in input.lines() {
        let line = line?;
        if line.trim() == "quit" {
            break;
        }
        if line.trim().is_empty() {
            continue;
        }
        if let Err(e) = serve_line(iut, &line, &mut output) {
            writeln!(output, "error {}", e.replace('\n', " "))?;
        }
        output.flush()?;
    }
    Ok(())
}
