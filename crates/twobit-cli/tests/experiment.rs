//! `twobit experiment`: the plan, a real (small) preset end to end on generated CIFAR-format
//! data, and resumption.
mod common;
use common::{s, twobit};

#[test]
fn unknown_preset_is_one_clear_error() {
    let out = twobit(&["experiment", "imagenet"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        !err.contains("panicked") && !err.contains("stack backtrace"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: unknown preset 'imagenet'") && err.contains("fmnist-smoke"));
    let out = twobit(&[
        "experiment",
        "fmnist",
        "--only",
        "nothing-matches",
        "--dry-run",
    ]);
    assert!(!out.status.success());
}

#[test]
fn fmnist_dry_run_plans_every_scheme_and_seed() {
    let dir = tempfile::tempdir().unwrap();
    let out = twobit(&[
        "experiment",
        "fmnist",
        "--dry-run",
        "--results",
        s(dir.path()),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let runs: Vec<&str> = text.lines().filter(|l| l.starts_with("pending")).collect();
    // 4 settings x 7 schemes x 3 seeds.
    assert_eq!(runs.len(), 84, "{text}");
    for scheme in ["fp", "twn", "atn", "ttq", "tern", "quat", "quat-free"] {
        let n = runs
            .iter()
            .filter(|l| l.contains(&format!("--scheme {scheme} ")))
            .count();
        assert_eq!(n, 12, "{scheme}");
    }
    assert!(runs
        .iter()
        .any(|l| l.contains("--quantize-all") && l.contains("--granularity channel")));
    assert!(runs
        .iter()
        .all(|l| !l.contains("--scheme fp") || !l.contains("--quantize-all")));
    assert!(runs
        .iter()
        .filter(|l| l.contains("--scheme ttq"))
        .all(|l| l.contains("--optimizer adam")));
    // A dry run writes nothing.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

/// `fmnist-lenet5-15` runs its target schemes with 3 seeds and the others with one;
/// `--seeds N` gives every scheme N.
#[test]
fn per_scheme_seeds_and_the_seeds_override() {
    let dir = tempfile::tempdir().unwrap();
    let pending = |extra: &[&str]| {
        let mut args = vec!["experiment", "fmnist-lenet5-15", "--dry-run", "--results"];
        args.push(s(dir.path()));
        args.extend_from_slice(extra);
        let out = twobit(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.starts_with("pending"))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let count = |runs: &[String], scheme: &str, seed: u64| {
        runs.iter()
            .filter(|l| {
                l.contains(&format!("--scheme {scheme} ")) && l.contains(&format!("--seed {seed} "))
            })
            .count()
    };
    let runs = pending(&[]);
    assert_eq!(runs.len(), 4 * 3 + 3, "{runs:#?}");
    for scheme in ["fp", "twn", "tern", "quat"] {
        assert!(
            (1..=3).all(|seed| count(&runs, scheme, seed) == 1),
            "{scheme}"
        );
    }
    for scheme in ["atn", "ttq", "quat-free"] {
        assert_eq!(count(&runs, scheme, 1), 1, "{scheme}");
        assert_eq!(count(&runs, scheme, 2), 0, "{scheme}");
    }
    let runs = pending(&["--seeds", "2"]);
    assert_eq!(runs.len(), 7 * 2, "{runs:#?}");
    assert!(runs.iter().all(|l| !l.contains("--seed 3 ")));
}

#[test]
fn cifar_smoke_runs_reports_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path();
    let args = [
        "experiment",
        "cifar10-smoke",
        "--only",
        "resnet20",
        "--results",
        s(results),
        "--json",
    ];
    let out = twobit(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(v["runs"], 4);
    assert_eq!(v["finished"], 4);
    assert!(v["plot_error"].is_null(), "{v}");

    let csv = std::fs::read_to_string(results.join("cifar10-smoke.csv")).unwrap();
    let rows: Vec<&str> = csv.lines().skip(1).collect();
    assert_eq!(rows.len(), 4, "{csv}");
    for r in &rows {
        let f: Vec<&str> = r.split(',').collect();
        let acc: f64 = f[7].parse().unwrap();
        // 10 classes: chance is 0.1. The generated data is easy, so every scheme learns it.
        assert!(acc > 0.2, "{r}");
        assert_eq!(
            f[10], "true",
            "eval from the file differs from training: {r}"
        );
        if f[5] != "fp" {
            let bpw: f64 = f[11].parse().unwrap();
            // ternary codes are stored in base 3 (1.6 bits), quaternary in base 2
            assert!((1.55..2.1).contains(&bpw), "bits/weight {bpw}: {r}");
        }
    }
    let md = std::fs::read_to_string(results.join("cifar10-smoke.md")).unwrap();
    assert!(md.contains("Runs finished: 4 of 4"), "{md}");
    for png in [
        "cifar10-smoke/resnet20-smoke-accuracy.png",
        "cifar10-smoke/resnet20-smoke-qerror.png",
    ] {
        let b = std::fs::read(results.join(png)).unwrap();
        assert!(b.starts_with(b"\x89PNG"), "{png}");
    }
    let hist = std::fs::read_dir(results.join("cifar10-smoke"))
        .unwrap()
        .filter(|e| {
            let n = e.as_ref().unwrap().file_name().into_string().unwrap();
            n.starts_with("hist-") && n.ends_with(".png")
        })
        .count();
    assert!((3..=18).contains(&hist), "{hist} histograms");

    // A second invocation runs nothing and leaves the records as they were.
    let record = results.join("runs/cifar10-smoke/resnet20-e2-all-tensor-quat-s1.json");
    let before = std::fs::read(&record).unwrap();
    let out = twobit(&args);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("4 finished, 0 to run"), "{err}");
    assert_eq!(std::fs::read(&record).unwrap(), before);
}
