//! The trace format (docs/conformance.md): a case header and time-stamped lines.

mod parse;
mod render;

pub use parse::{parse, parse_secs, tokenize, ParseError};
pub use render::{render_line, render_spec, render_time};

/// A comparison in a pattern field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `key=value` (with `*` and `$VAR`).
    Eq,
    /// `key!=value`.
    Ne,
    /// `key<=value` (numbers).
    Le,
    /// `key>=value` (numbers).
    Ge,
}

impl Op {
    /// The operator's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Le => "<=",
            Op::Ge => ">=",
        }
    }
}

/// One field of a spec: `key op value`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    /// Field name.
    pub key: String,
    /// Comparison.
    pub op: Op,
    /// Value text (`*`, `$VAR`, `peer.id`, a number, `"text"`, `hex:…`).
    pub value: String,
}

/// A packet, frame, event or call with fields and, for packets, frames:
/// `NAME k=v … [FRAME k=v; FRAME …; ...]`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Spec {
    /// Name (`HELLO`, `PROT`, `Established`, `read`, …).
    pub name: String,
    /// Fields in written order.
    pub fields: Vec<Field>,
    /// Frames in `[…]`, if given.
    pub frames: Option<Vec<Spec>>,
    /// A trailing `...` inside `[…]`: other frames may come in between and after.
    pub more_frames: bool,
}

impl Spec {
    /// The value of field `key` (any operator).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields.iter().find(|f| f.key == key).map(|f| f.value.as_str())
    }
}

/// When a line happens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Time {
    /// Same instant as the previous line.
    Same,
    /// Absolute virtual time in µs since the case started.
    Abs(u64),
    /// Relative to the previous line, in µs.
    Rel(u64),
}

/// What a line does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// `recv PKT`: the peer sends a datagram to the implementation.
    Recv(Spec),
    /// `app CALL [-> RESULT]`: an application call and its expected result.
    App(Spec, Option<Spec>),
    /// `tick`: advance the clock to this line's time, firing due timers.
    Tick,
    /// `expect send PKT`.
    ExpectSend(Spec),
    /// `expect none [for DUR]`.
    ExpectNone(Option<u64>),
    /// `expect event EVENT`.
    ExpectEvent(Spec),
    /// `expect state NAME OP VALUE`.
    ExpectState(String, Op, String),
    /// `sim SCENARIO`: a seeded two-node simulation (pair cases).
    Sim(Spec),
}

/// One line of a trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    /// 1-based line number in its file.
    pub lineno: usize,
    /// File the line came from (differs for `@include`d lines).
    pub file: String,
    /// Time.
    pub time: Time,
    /// Action or assertion.
    pub action: Action,
}

/// The role the implementation under test plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The scripted peer initiates.
    Responder,
    /// The implementation initiates (`app connect`).
    Initiator,
    /// Two instances of the implementation on a simulated link.
    Pair,
}

/// Requirement level of a case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// A failure is FAIL.
    Must,
    /// A failure is NON-STRICT.
    Should,
}

/// A parsed trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trace {
    /// Case id (`HS-01`).
    pub id: String,
    /// Slug.
    pub name: String,
    /// Requirement ids of docs/protocol.md covered.
    pub reqs: Vec<String>,
    /// Level.
    pub level: Level,
    /// Role of the implementation.
    pub role: Role,
    /// Implementation configuration (`@config key=value …`).
    pub config: Vec<(String, String)>,
    /// Features the case needs (`@requires …`); missing ones make it UNSUPPORTED.
    pub requires: Vec<String>,
    /// Frame names whose packets need no `expect send` (`@allow ACK`).
    pub allow: Vec<String>,
    /// Seed of both sides' randomness.
    pub rng: u64,
    /// Link model for pair cases (`@link …`).
    pub link: Vec<(String, String)>,
    /// The lines.
    pub lines: Vec<Line>,
}
