//! `stt-shim`: stt-proto behind the conformance shim line protocol (docs/conformance.md §5).
//!
//! ```sh
//! cargo run -p conformance -- run --shim "target/debug/stt-shim"
//! ```
//! `--break NAME` selects a deliberately broken behaviour (see `conformance run --help`).

use std::io::{stdin, stdout, BufWriter};

use conformance::adapter::{Break, ProtoIut};

fn main() {
    let mut breaks = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match (a.as_str(), args.next()) {
            ("--break", Some(b)) => match b.parse::<Break>() {
                Ok(b) => breaks.push(b),
                Err(e) => {
                    eprintln!("stt-shim: {e}");
                    std::process::exit(2);
                }
            },
            _ => {
                eprintln!("usage: stt-shim [--break NAME]...");
                std::process::exit(2);
            }
        }
    }
    let mut iut = ProtoIut::new(breaks);
    if let Err(e) = conformance::shim::serve(&mut iut, stdin().lock(), BufWriter::new(stdout().lock())) {
        eprintln!("stt-shim: {e}");
        std::process::exit(1);
    }
}
