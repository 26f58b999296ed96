//! One module per subcommand; each has `Args` (clap) and `run`.

pub mod bench;
pub mod calibrate;
pub mod compress;
pub mod dataset;
pub mod decompress;
pub mod eval;
pub mod experiment;
pub mod export;
pub mod inspect;
pub mod network;
pub mod plots;
pub mod ranges;
pub mod train;

/// `outer: inner: root`, on one line, each piece once: an I/O error that is both a wrapper's
/// text and its source, or a path named by two layers, would otherwise repeat.
pub fn error_chain(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for c in e.chain() {
        let mut msg = c.to_string();
        if line.contains(msg.as_str()) {
            continue;
        }
        // "cannot read X" followed by "X: reason": drop the second "X: ".
        if let Some((head, rest)) = msg.split_once(": ") {
            if !head.is_empty() && line.contains(head) {
                msg = rest.to_string();
                if line.contains(msg.as_str()) {
                    continue;
                }
            }
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        // Multi-line messages (regex syntax errors, ...) become one line.
        line.push_str(&one_line(&msg));
    }
    line
}

/// A message's lines joined, blank ones dropped (an error is one line on stderr).
pub fn one_line(msg: &str) -> String {
    msg.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use anyhow::Context;

    #[test]
    fn chain_says_each_thing_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file");
        let e = Err::<(), _>(twobit_format::FormatError::Io {
            path: "m.twobit".into(),
            source: io,
        })
        .context("cannot read m.twobit")
        .unwrap_err();
        assert_eq!(super::error_chain(&e), "cannot read m.twobit: No such file");
    }
}
