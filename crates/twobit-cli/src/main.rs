//! `twobit`: compress, train, inspect and run 2-bit neural networks.

mod cmd;
mod signals;
mod util;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in `mi_option_e` of mimalloc 3, which libmimalloc-sys 0.1.49 builds
/// (the crates are pinned exactly; a test checks the index).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Keeps freed memory instead of returning it to the OS: a training step frees and
/// re-allocates the same large activation buffers, and giving them back each time cost a
/// third of LeNet-5's training time in page faults. The price is that the process keeps
/// its peak memory until exit.
fn keep_freed_memory() {
    // SAFETY: sets a process-wide allocator option (an integer) before any thread starts;
    // mimalloc reads options atomically.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
}

/// Compress deep neural networks to 2-bit weights and run them.
#[derive(Parser)]
#[command(name = "twobit", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Quantize a safetensors model into a packed 2-bit .twobit file.
    Compress(cmd::compress::Args),
    /// Expand a .twobit file back to a float safetensors file.
    Decompress(cmd::decompress::Args),
    /// Print the per-tensor table of a .twobit file.
    Inspect(cmd::inspect::Args),
    /// Quantization-aware training; writes a .twobit file.
    // Boxed: its many flags make it far larger than the other variants.
    Train(Box<cmd::train::Args>),
    /// Test accuracy of a .twobit file or an ONNX model, on the 2-bit runtime.
    Eval(cmd::eval::Args),
    /// Write a network as a standard ONNX model (dequantized weights).
    Export(cmd::export::Args),
    /// Time the 2-bit runtime against fp32 on a .twobit file.
    Bench(cmd::bench::Args),
    /// Measure each layer's input range on training images and store it in the file (for
    /// int8 activations with calibrated scales).
    Calibrate(cmd::ranges::Args),
    /// Every scheme, several seeds: the comparison report with plots (resumable).
    Experiment(cmd::experiment::Args),
}

fn main() -> ExitCode {
    keep_freed_memory();
    signals::install();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Compress(a) => cmd::compress::run(a),
        Command::Decompress(a) => cmd::decompress::run(a),
        Command::Inspect(a) => cmd::inspect::run(a),
        Command::Train(a) => cmd::train::run(*a),
        Command::Eval(a) => cmd::eval::run(a),
        Command::Export(a) => cmd::export::run(a),
        Command::Bench(a) => cmd::bench::run(a),
        Command::Calibrate(a) => cmd::ranges::run(a),
        Command::Experiment(a) => cmd::experiment::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Print the chain ourselves: returning an anyhow error from main would print a
            // backtrace under RUST_BACKTRACE=1.
            eprintln!("error: {}", cmd::error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::MI_OPTION_PURGE_DELAY;

    /// The hard-coded option index is mimalloc's purge delay: mimalloc 3's defaults around it
    /// are (deprecated) eager_commit_delay 1, purge_delay 1000 ms, use_numa_nodes 0; a shifted
    /// enum would not give this sequence.
    #[test]
    fn purge_delay_index_names_the_purge_delay() {
        let vars = ["EAGER_COMMIT_DELAY", "PURGE_DELAY", "USE_NUMA_NODES"];
        if vars
            .iter()
            .any(|v| std::env::var_os(format!("MIMALLOC_{v}")).is_some())
        {
            eprintln!("WARNING: a MIMALLOC_* option is set; the defaults cannot be checked");
            return;
        }
        let get = |i| unsafe { libmimalloc_sys::mi_option_get(i) }; // SAFETY: reads an option.
        let i = MI_OPTION_PURGE_DELAY;
        assert_eq!([get(i - 1), get(i), get(i + 1)], [1, 1000, 0]);
    }
}
