//! One module per subcommand; each has `Args` (clap) and `run`.

pub mod bench;
pub mod compress;
pub mod decompress;
pub mod eval;
pub mod experiment;
pub mod inspect;
pub mod plots;
pub mod train;

/// `outer: inner: root`, on one line.
pub fn error_chain(e: &anyhow::Error) -> String {
    e.chain()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(": ")
}
