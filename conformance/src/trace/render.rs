//! The one canonical rendering, used for expected lines and the actual transcript alike.

use super::{Action, Line, Op, Spec, Time};

/// Renders µs as seconds: three decimals when whole milliseconds, else six.
pub fn render_time(us: u64) -> String {
    if us % 1000 == 0 {
        format!("{}.{:03}", us / 1_000_000, us % 1_000_000 / 1000)
    } else {
        format!("{}.{:06}", us / 1_000_000, us % 1_000_000)
    }
}

fn render_fields(out: &mut String, s: &Spec) {
    for f in &s.fields {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&f.key);
        if !(f.op == Op::Eq && f.value.is_empty()) {
            out.push_str(f.op.as_str());
            out.push_str(&f.value);
        }
    }
}

/// Renders a spec: `NAME k=v … [FRAME …; FRAME …]`.
pub fn render_spec(s: &Spec) -> String {
    let mut out = s.name.clone();
    render_fields(&mut out, s);
    if let Some(frames) = &s.frames {
        let mut parts: Vec<String> = frames.iter().map(render_spec).collect();
        if s.more_frames {
            parts.push("...".into());
        }
        out.push_str(" [");
        out.push_str(&parts.join("; "));
        out.push(']');
    }
    out
}

/// Renders one line in trace syntax.
pub fn render_line(l: &Line) -> String {
    let time = match l.time {
        Time::Same => String::new(),
        Time::Abs(t) => format!("{} ", render_time(t)),
        Time::Rel(t) => format!("+{} ", render_time(t)),
    };
    let body = match &l.action {
        Action::Recv(s) => format!("recv {}", render_spec(s)),
        Action::App(s, r) => match r {
            Some(r) => {
                let mut res = String::new();
                render_fields(&mut res, r);
                format!("app {} -> {res}", render_spec(s))
            }
            None => format!("app {}", render_spec(s)),
        },
        Action::Tick => "tick".into(),
        Action::ExpectSend(s) => format!("expect send {}", render_spec(s)),
        Action::ExpectNone(None) => "expect none".into(),
        Action::ExpectNone(Some(d)) => format!("expect none for {}", render_time(*d)),
        Action::ExpectEvent(s) => format!("expect event {}", render_spec(s)),
        Action::ExpectState(n, op, v) => {
            let op = if *op == Op::Eq { "==" } else { op.as_str() };
            format!("expect state {n} {op} {v}")
        }
        Action::Sim(s) => format!("sim {}", render_spec(s)),
    };
    format!("{time}{body}")
}
