//! The command-line contract of issue 20, one test per defect class: outputs, half-written
//! files, early checks, checkpoints, inputs, pipes and errors, one vocabulary, provenance,
//! labels and warnings. Everything runs in temporary directories (FIFOs, sockets and
//! symlinks are made there; the real `/dev` is never touched).
use std::os::unix::fs::FileTypeExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{
    band_model, dataset, float_model, json, listing, mkfifo, one_error, s, stderr, twobit,
};

/// `twobit train` of the MLP on the tiny dataset in `data`, writing `out`; `extra` flags
/// replace the defaults of the same name.
fn train(data: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let defaults = [
        ("--model", "mlp"),
        ("--dataset", "mnist"),
        ("--scheme", "tern"),
        ("--epochs", "1"),
        ("--batch-size", "32"),
    ];
    let mut a = vec!["train"];
    for (k, v) in defaults {
        if !extra.contains(&k) {
            a.extend([k, v]);
        }
    }
    a.extend(["--data-dir", s(data), "--out", s(out)]);
    a.extend(extra);
    twobit(&a)
}

/// Command-line arguments of a command writing the given output path.
type Writer<'a> = &'a dyn Fn(&Path) -> Vec<String>;

// ---- 1. Outputs ---------------------------------------------------------------------------

#[test]
fn outputs_follow_symlinks_and_refuse_non_regular_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let input = d.join("m.safetensors");
    float_model(&input);
    let packed = d.join("band.twobit");
    band_model(&packed);

    let fifo = d.join("fifo");
    mkfifo(&fifo);
    let sock = d.join("sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let subdir = d.join("subdir");
    std::fs::create_dir(&subdir).unwrap();
    // Every writer: compress, decompress, export-like writers share write_atomic.
    let writers: [Writer; 2] = [
        &|o| {
            vec![
                "compress".into(),
                s(&input).into(),
                s(o).into(),
                "quat".into(),
            ]
        },
        &|o| vec!["decompress".into(), s(&packed).into(), s(o).into()],
    ];
    for w in writers {
        for target in [&fifo, &sock, &subdir] {
            let args = w(target);
            let a: Vec<&str> = args.iter().map(String::as_str).collect();
            let e = one_error(&twobit(&a), &args.join(" "));
            assert!(e.contains("not a regular file"), "{e}");
        }
        // A missing directory is refused by every command alike.
        let args = w(&d.join("no/such/out"));
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let e = one_error(&twobit(&a), &args.join(" "));
        assert!(e.contains("does not exist"), "{e}");
    }
    assert!(std::fs::symlink_metadata(&fifo)
        .unwrap()
        .file_type()
        .is_fifo());
    assert!(std::fs::symlink_metadata(&sock)
        .unwrap()
        .file_type()
        .is_socket());

    // A symlink is written through: the link stays, its target gets the file.
    let real = d.join("real.twobit");
    std::fs::write(&real, b"old").unwrap();
    let link = d.join("link.twobit");
    std::os::unix::fs::symlink("real.twobit", &link).unwrap();
    let out = twobit(&["compress", s(&input), s(&link), "quat"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    twobit_format::Model::load(&real).expect("the target holds the new file");

    // inspect --plot: DIR is created when its parent exists, refused when it does not, and a
    // FIFO where a plot would go is refused like any other output.
    let e = one_error(
        &twobit(&[
            "inspect",
            s(&real),
            "--plot",
            s(&d.join("a/b")),
            "--latent",
            s(&input),
        ]),
        "inspect --plot a/b",
    );
    assert!(e.contains("does not exist"), "{e}");
    assert!(!d.join("a").exists());
    if twobit_plot::find_font().is_ok() {
        let plots = d.join("plots");
        std::fs::create_dir(&plots).unwrap();
        mkfifo(&plots.join("real-fc1.png"));
        let e = one_error(
            &twobit(&[
                "inspect",
                s(&real),
                "--plot",
                s(&plots),
                "--latent",
                s(&input),
            ]),
            "inspect --plot onto a FIFO",
        );
        assert!(e.contains("not a regular file"), "{e}");
        let fresh = d.join("fresh");
        let out = twobit(&[
            "inspect",
            s(&real),
            "--plot",
            s(&fresh),
            "--latent",
            s(&input),
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(fresh.join("real-fc1.png").is_file());
    }
    assert!(
        !listing(d).iter().any(|n| n.contains(".tmp")),
        "{:?}",
        listing(d)
    );
}

// ---- 2. Half-written files ------------------------------------------------------------------

/// Starts a long `twobit train` writing into `run`, sends SIGINT after `ms`, and checks that
/// it stopped by the signal and left either nothing or a complete checkpoint with its log.
fn interrupt_train(data: &Path, run: &Path, batch: &str, ms: u64) {
    std::fs::create_dir(run).unwrap();
    let out = run.join("m.twobit");
    let child = Command::new(env!("CARGO_BIN_EXE_twobit"))
        .args([
            "train",
            "--model",
            "mlp",
            "--dataset",
            "mnist",
            "--scheme",
            "quat",
            "--epochs",
            "500",
            "--lr",
            "0.001",
            "--batch-size",
            batch,
            "--data-dir",
        ])
        .arg(data)
        .arg("--out")
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(ms));
    // SAFETY: signals our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let start = Instant::now();
    let res = child.wait_with_output().unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(60),
        "SIGINT was not acted on"
    );
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(
        res.status.signal() == Some(libc::SIGINT) || res.status.code() == Some(130),
        "{:?} {err}",
        res.status
    );
    assert!(!err.contains("panicked"), "{err}");
    // Only a finished epoch's checkpoint and its log may remain, both complete.
    let left = listing(run);
    if !left.is_empty() {
        assert_eq!(left, ["m.twobit.ckpt", "m.twobit.log.jsonl"], "{err}");
        let log = std::fs::read_to_string(run.join("m.twobit.log.jsonl")).unwrap();
        assert!(!log.is_empty());
        for l in log.lines() {
            serde_json::from_str::<serde_json::Value>(l).expect("complete log lines");
        }
    }
}

#[test]
fn interrupted_or_failed_train_leaves_nothing_half_written() {
    let dir = tempfile::tempdir().unwrap();
    dataset(dir.path(), 6000);
    // Within the first epoch (batch 1: thousands of steps), then after some epochs.
    interrupt_train(dir.path(), &dir.path().join("early"), "1", 800);
    interrupt_train(dir.path(), &dir.path().join("late"), "64", 3000);

    // A checkpoint path that cannot be written is found before training, and nothing
    // (no empty log, no temporary checkpoint) is left.
    let run2 = dir.path().join("run2");
    std::fs::create_dir_all(run2.join("m.twobit.ckpt")).unwrap();
    one_error(
        &train(dir.path(), &run2.join("m.twobit"), &[]),
        "ckpt is a directory",
    );
    assert_eq!(listing(&run2), ["m.twobit.ckpt"]);
    // A failed --resume leaves no empty log either.
    let run3 = dir.path().join("run3");
    std::fs::create_dir(&run3).unwrap();
    one_error(
        &train(dir.path(), &run3.join("m.twobit"), &["--resume"]),
        "resume",
    );
    assert!(listing(&run3).is_empty(), "{:?}", listing(&run3));
}

// ---- 3. Early checks --------------------------------------------------------------------------

#[test]
fn bad_paths_are_refused_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let empty = d.join("empty");
    std::fs::create_dir(&empty).unwrap();
    // --out a directory: refused before the (missing) dataset is even looked at.
    let e = one_error(&train(&empty, d, &[]), "train --out DIR");
    assert!(e.contains("directory"), "{e}");
    let fifo = d.join("fifo");
    mkfifo(&fifo);
    let e = one_error(&train(&empty, &fifo, &[]), "train --out FIFO");
    assert!(e.contains("not a regular file"), "{e}");
    assert_eq!(listing(d), ["empty", "fifo"]);

    // experiment: --pytorch and --reference are checked before the first run.
    let results = d.join("r");
    let e = one_error(
        &twobit(&[
            "experiment",
            "fmnist-smoke",
            "--results",
            s(&results),
            "--pytorch",
            "/no/such/python",
        ]),
        "experiment --pytorch missing",
    );
    assert!(e.contains("--pytorch"), "{e}");
    let fake = |name: &str, code: i32| -> PathBuf {
        let p = d.join(name);
        let script = format!("#!/bin/sh\necho 'No module named torch' >&2\nexit {code}\n");
        std::fs::write(&p, script).unwrap();
        let mut perm = std::fs::metadata(&p).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
        std::fs::set_permissions(&p, perm).unwrap();
        p
    };
    let no_torch = fake("no-torch", 1);
    let e = one_error(
        &twobit(&[
            "experiment",
            "fmnist-smoke",
            "--results",
            s(&results),
            "--pytorch",
            s(&no_torch),
        ]),
        "experiment --pytorch without torch",
    );
    assert!(e.contains("import torch"), "{e}");
    let ok = fake("ok-python", 0);
    let e = one_error(
        &twobit(&[
            "experiment",
            "fmnist-smoke",
            "--results",
            s(&results),
            "--pytorch",
            s(&ok),
            "--reference",
            "/no/such.py",
        ]),
        "experiment --reference missing",
    );
    assert!(e.contains("--reference"), "{e}");
    assert!(
        !results.exists(),
        "nothing may be written before the checks"
    );
    // --dry-run lists the PyTorch runs too, with the repository's script (not ./reference).
    let out = Command::new(env!("CARGO_BIN_EXE_twobit"))
        .args(["experiment", "fmnist", "--dry-run", "--pytorch"])
        .arg(&ok)
        .current_dir(d)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let torch: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("PyTorch reference"))
        .collect();
    assert!(!torch.is_empty(), "{text}");
    assert!(torch[0].contains("lenet5_fmnist.py"), "{text}");
}

// ---- 4. Checkpoints of completed runs ---------------------------------------------------------

#[test]
fn finished_train_removes_its_checkpoint_unless_kept() {
    let dir = tempfile::tempdir().unwrap();
    dataset(dir.path(), 200);
    let out = dir.path().join("a.twobit");
    let r = train(dir.path(), &out, &[]);
    assert!(r.status.success(), "{}", stderr(&r));
    assert!(out.is_file());
    assert!(!dir.path().join("a.twobit.ckpt").exists());
    assert!(stderr(&r).contains("checkpoint"), "{}", stderr(&r));

    let kept = dir.path().join("k.twobit");
    let r = train(dir.path(), &kept, &["--keep-checkpoint"]);
    assert!(r.status.success(), "{}", stderr(&r));
    assert!(dir.path().join("k.twobit.ckpt").is_file());
    assert!(stderr(&r).contains("k.twobit.ckpt"), "{}", stderr(&r));

    // A run stopped early keeps it for --resume, and says so.
    let part = dir.path().join("p.twobit");
    let r = train(dir.path(), &part, &["--epochs", "2", "--stop-after", "1"]);
    assert!(r.status.success(), "{}", stderr(&r));
    assert!(dir.path().join("p.twobit.ckpt").is_file());
    assert!(stderr(&r).contains("--resume"), "{}", stderr(&r));
}

// ---- 5. Inputs --------------------------------------------------------------------------------

#[test]
fn inputs_are_refused_early_or_kept_as_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let packed = d.join("band.twobit");
    band_model(&packed);
    let out = d.join("again.twobit");
    let e = one_error(
        &twobit(&["compress", s(&packed), s(&out), "quat"]),
        "compress of a packed file",
    );
    assert!(e.contains("already a .twobit file"), "{e}");
    assert!(!out.exists());

    // Integer tensors alone are nothing to compress (they are kept, not quantized).
    let ints = d.join("ints.safetensors");
    let steps = 7i64.to_le_bytes();
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::I64, vec![1], &steps).unwrap();
    std::fs::write(
        &ints,
        safetensors::serialize(vec![("bn.num_batches_tracked", view)], None).unwrap(),
    )
    .unwrap();
    let e = one_error(
        &twobit(&["compress", s(&ints), s(&out), "tern"]),
        "integer-only input",
    );
    assert!(e.contains("no float tensor"), "{e}");
    assert!(!out.exists());

    dataset(d, 100);
    let m = d.join("m.twobit");
    for (flag, value) in [("--test-limit", "0"), ("--stop-after", "0"), ("--lr", "-1")] {
        let e = one_error(&train(d, &m, &[flag, value]), flag);
        assert!(e.contains(flag), "{e}");
    }
    assert!(!m.exists());

    // A trained float .twobit compresses, and keeps its network (so the result runs).
    let fp = d.join("fp.twobit");
    let r = train(d, &fp, &["--scheme", "fp"]);
    assert!(r.status.success(), "{}", stderr(&r));
    let q = d.join("fp-quat.twobit");
    let r = twobit(&["compress", s(&fp), s(&q), "quat"]);
    assert!(r.status.success(), "{}", stderr(&r));
    let m = twobit_format::Model::load(&q).unwrap();
    assert_eq!(m.arch.map(|a| a.name), Some("mlp".to_string()));
}

// ---- 6. Pipes and errors ----------------------------------------------------------------------

#[test]
fn closed_pipes_and_errors_are_quiet_single_lines() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let packed = d.join("band.twobit");
    band_model(&packed);
    // stdout is a pipe whose reader is already closed.
    let mut fds = [0; 2];
    // SAFETY: a fresh pipe; the read end is closed before the child writes.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    unsafe { libc::close(fds[0]) };
    let write_end =
        unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fds[1]) };
    let out = Command::new(env!("CARGO_BIN_EXE_twobit"))
        .args(["inspect", s(&packed)])
        .env("RUST_BACKTRACE", "1")
        .stdout(Stdio::from(write_end))
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(err.is_empty(), "{err}");
    assert!(
        out.status.success() || out.status.signal() == Some(libc::SIGPIPE),
        "{:?}",
        out.status
    );

    // Each failure says its cause once, in one line.
    let missing = d.join("missing.twobit");
    let e = one_error(&twobit(&["inspect", s(&missing)]), "missing input");
    assert_eq!(e.matches("missing.twobit").count(), 1, "{e}");
    assert_eq!(e.matches("No such file").count(), 1, "{e}");
    let e = one_error(&twobit(&["inspect", s(d)]), "directory input");
    assert!(e.contains("is a directory"), "{e}");
    let text = d.join("notes.txt");
    std::fs::write(&text, "hello, this is a text file and not a model\n").unwrap();
    for cmd in ["inspect", "compress"] {
        let out = d.join("out.twobit");
        let e = one_error(
            &twobit(&[cmd, s(&text), s(&out), "quat"][..if cmd == "inspect" { 2 } else { 4 }]),
            cmd,
        );
        assert!(
            e.contains("not a safetensors or .twobit file"),
            "{cmd}: {e}"
        );
        assert_eq!(e.matches("safetensors").count(), 1, "{cmd}: {e}");
    }
    one_error(
        &twobit(&["experiment", "fmnist", "--only", "(", "--dry-run"]),
        "bad regex",
    );
    let e = one_error(
        &twobit(&["bench", s(&packed), "--batch-size", "100000000000"]),
        "absurd batch",
    );
    assert!(e.contains("--batch-size"), "{e}");
}

// ---- 7. One vocabulary ------------------------------------------------------------------------

#[test]
fn one_vocabulary_across_commands_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let input = d.join("m.safetensors");
    float_model(&input);
    let out = d.join("m.twobit");
    let c = json(&twobit(&["compress", s(&input), s(&out), "quat", "--json"]));
    let i = json(&twobit(&["inspect", s(&out), "--json"]));
    assert!(c["tensors"].is_array() && i["tensors"].is_array());
    assert_eq!(c["output"], s(&out));
    assert_eq!(i["input"], s(&out));

    let band = d.join("band.twobit");
    band_model(&band);
    for flag in ["--batch-size", "--batch"] {
        let b = json(&twobit(&[
            "bench",
            s(&band),
            flag,
            "4",
            "--iters",
            "1",
            "--json",
        ]));
        assert_eq!(b["batch_size"], 4);
    }
    dataset(d, 50);
    let e = json(&twobit(&[
        "eval",
        s(&band),
        "--dataset",
        "mnist",
        "--data-dir",
        s(d),
        "--test-limit",
        "20",
        "--json",
    ]));
    assert_eq!(e["test_accuracy"], e["accuracy"]);
    assert!(e["batch_size"].is_u64(), "{e}");
    let t = json(&train(d, &d.join("t.twobit"), &["--json"]));
    assert_eq!(t["output"], s(&d.join("t.twobit")));
    assert!(t["test_accuracy"].is_f64());
    let x = json(&twobit(&[
        "decompress",
        s(&band),
        s(&d.join("b.safetensors")),
        "--json",
    ]));
    assert_eq!(x["output"], s(&d.join("b.safetensors")));
}

// ---- 8. Provenance ----------------------------------------------------------------------------

#[test]
fn provenance_reproduces_the_run_and_eval_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    dataset(d, 100);
    let out = d.join("p.twobit");
    let r = train(
        d,
        &out,
        &[
            "--epochs",
            "2",
            "--stop-after",
            "1",
            "--train-limit",
            "80",
            "--test-limit",
            "50",
            "--weight-decay",
            "0.001",
        ],
    );
    assert!(r.status.success(), "{}", stderr(&r));
    let p = twobit_format::Model::load(&out).unwrap().provenance;
    assert_eq!(
        p.get("weight_decay").map(String::as_str),
        Some("0.001"),
        "{p:?}"
    );
    assert_eq!(
        p.get("train_limit").map(String::as_str),
        Some("80"),
        "{p:?}"
    );
    assert_eq!(p.get("test_limit").map(String::as_str), Some("50"), "{p:?}");
    assert_eq!(p.get("epochs").map(String::as_str), Some("2"), "{p:?}");
    assert_eq!(
        p.get("epochs_completed").map(String::as_str),
        Some("1"),
        "{p:?}"
    );
    // eval without --dataset takes the file's; a different one is warned about.
    let e = twobit(&["eval", s(&out), "--data-dir", s(d), "--json"]);
    assert_eq!(json(&e)["dataset"], "mnist");
    let e = twobit(&[
        "eval",
        s(&out),
        "--dataset",
        "fashion-mnist",
        "--data-dir",
        s(d),
    ]);
    assert!(e.status.success(), "{}", stderr(&e));
    assert!(stderr(&e).contains("warning:"), "{}", stderr(&e));
    // eval needs only the test split: the same accuracy without the training files.
    let full = json(&twobit(&["eval", s(&out), "--data-dir", s(d), "--json"]));
    let test_only = d.join("test-only");
    std::fs::create_dir(&test_only).unwrap();
    for f in ["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"] {
        std::fs::copy(d.join(f), test_only.join(f)).unwrap();
    }
    let t = json(&twobit(&[
        "eval",
        s(&out),
        "--data-dir",
        s(&test_only),
        "--json",
    ]));
    assert_eq!(t["test_accuracy"], full["test_accuracy"]);
    assert_eq!(t["images"], full["images"]);
    // ... while a missing test split is still one clear line naming it.
    std::fs::remove_file(test_only.join("t10k-labels-idx1-ubyte")).unwrap();
    let e = one_error(
        &twobit(&["eval", s(&out), "--data-dir", s(&test_only)]),
        "eval without test labels",
    );
    assert!(e.contains("t10k-labels"), "{e}");
}

// ---- 9. Labels and warnings -------------------------------------------------------------------

#[test]
fn labels_and_warnings_say_what_happened() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let input = d.join("m.safetensors");
    float_model(&input);
    let out = d.join("m.twobit");
    let r = twobit(&[
        "compress",
        s(&input),
        s(&out),
        "quat",
        "--keep",
        "nothing-matches-this",
    ]);
    assert!(r.status.success(), "{}", stderr(&r));
    assert!(stderr(&r).contains("warning: --keep"), "{}", stderr(&r));
    let text = String::from_utf8_lossy(&twobit(&["inspect", s(&out)]).stdout).into_owned();
    assert!(!text.contains(" 1 tensors"), "{text}");
    // A per-channel histogram names the channel whose weights and levels it draws. The
    // layer is wide enough (64x512) for per-channel tables to pay for themselves: narrower
    // layers fall back to per tensor (issue 16's rule).
    if twobit_plot::find_font().is_ok() {
        let wide = d.join("wide.safetensors");
        let w: Vec<u8> = (0..64 * 512)
            .flat_map(|i| (((i * 37 % 101) as f32 - 50.0) / 100.0).to_le_bytes())
            .collect();
        let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![64, 512], &w)
            .unwrap();
        std::fs::write(
            &wide,
            safetensors::serialize(vec![("fc1.weight", view)], None).unwrap(),
        )
        .unwrap();
        let input = wide;
        let ch = d.join("ch.twobit");
        let r = twobit(&[
            "compress",
            s(&input),
            s(&ch),
            "quat",
            "--granularity",
            "channel",
        ]);
        assert!(r.status.success(), "{}", stderr(&r));
        let plots = d.join("plots");
        let r = twobit(&[
            "inspect",
            s(&ch),
            "--plot",
            s(&plots),
            "--latent",
            s(&input),
        ]);
        assert!(r.status.success(), "{}", stderr(&r));
        let svg = std::fs::read_to_string(plots.join("ch-fc1.svg")).unwrap();
        assert!(svg.contains("channel 0 of 64"), "per-channel title");
        assert!(!svg.contains(">-0.0"), "negative zero tick");
    }

    dataset(d, 100);
    let fp = d.join("fp.twobit");
    let r = train(d, &fp, &["--scheme", "fp", "--granularity", "channel"]);
    assert!(r.status.success(), "{}", stderr(&r));
    let (o, e) = (String::from_utf8_lossy(&r.stdout).into_owned(), stderr(&r));
    assert!(e.contains("warning:") && e.contains("--granularity"), "{e}");
    assert!(!o.contains("1.0x smaller") && !o.contains("2-bit"), "{o}");
    let r = train(d, &d.join("ttq.twobit"), &["--scheme", "ttq"]);
    assert!(
        stderr(&r).contains("warning:") && stderr(&r).contains("ttq"),
        "{}",
        stderr(&r)
    );
    // stderr is not a terminal here: the epoch still shows progress lines.
    assert!(stderr(&r).contains("epoch 1/1"), "{}", stderr(&r));
    // ... and a step line every few seconds within it (0 s here, so every step).
    let mut a: Vec<String> = ["train", "--model", "mlp", "--dataset", "mnist", "--scheme"]
        .map(String::from)
        .to_vec();
    a.extend(["tern", "--epochs", "1", "--batch-size", "10", "--data-dir"].map(String::from));
    a.extend([
        s(d).to_string(),
        "--out".into(),
        s(&d.join("tick.twobit")).to_string(),
    ]);
    a.extend(["--keep", "^no-such-layer$"].map(String::from));
    let r = Command::new(env!("CARGO_BIN_EXE_twobit"))
        .args(&a)
        .env("TWOBIT_PROGRESS_SECONDS", "0")
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", stderr(&r));
    let e = stderr(&r);
    let steps = e.lines().filter(|l| l.contains(": step ")).count();
    assert!(steps >= 5, "expected a progress line per step: {e}");
    assert!(e.contains("epoch 1/1: step 1/"), "{e}");
    // a --keep that matches no weight of the network is said before training
    let warn = e.find("warning: --keep '^no-such-layer$' matches no tensor");
    assert!(warn.is_some_and(|w| w < e.find(": step ").unwrap()), "{e}");
    // the same run with --keep naming a real layer says nothing about it
    let r = train(d, &d.join("kept.twobit"), &["--keep", "^fc1\\."]);
    assert!(r.status.success(), "{}", stderr(&r));
    assert!(!stderr(&r).contains("warning: --keep"), "{}", stderr(&r));
    let b = twobit(&["bench", s(&fp), "--iters", "1", "--batch-size", "2"]);
    let bt = String::from_utf8_lossy(&b.stdout).into_owned();
    assert!(b.status.success(), "{}", stderr(&b));
    assert!(!bt.contains("2-bit"), "{bt}");
}
