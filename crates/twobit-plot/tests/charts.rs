//! Each chart writes a real PNG and SVG; bad data is refused with a clear error.
use std::path::Path;
use twobit_plot::{grouped_bars, histogram, line_chart, Bars, Marks, PlotError, Series, SIZE};

/// Width and height from a PNG's IHDR chunk, after checking the signature.
fn png_size(path: &Path) -> (u32, u32) {
    let b = std::fs::read(path).unwrap();
    assert_eq!(
        &b[..8],
        b"\x89PNG\r\n\x1a\n",
        "{} is not a PNG",
        path.display()
    );
    assert_eq!(&b[12..16], b"IHDR");
    let be = |i: usize| u32::from_be_bytes(b[i..i + 4].try_into().unwrap());
    (be(16), be(20))
}

fn svg(path: &Path) -> String {
    let s = std::fs::read_to_string(path).unwrap();
    assert!(s.starts_with("<svg"), "{} is not an SVG", path.display());
    s
}

#[test]
fn line_chart_writes_png_and_svg_with_labels() {
    let dir = tempfile::tempdir().unwrap();
    // Like every twobit output, the directory must exist (nothing creates it).
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    let stem = dir.path().join("sub/acc");
    let series = vec![
        Series {
            name: "quat".into(),
            points: vec![(1.0, 0.80), (2.0, 0.85), (3.0, 0.87)],
            color: None,
        },
        Series {
            name: "twn".into(),
            points: vec![(1.0, 0.79), (2.0, 0.84), (3.0, 0.86)],
            color: None,
        },
    ];
    let out = line_chart(&stem, "test accuracy", "epoch", "accuracy", &series).unwrap();
    assert_eq!(out.len(), 2);
    assert_eq!(png_size(&out[0]), SIZE);
    let s = svg(&out[1]);
    for label in ["test accuracy", "epoch", "quat", "twn"] {
        assert!(s.contains(label), "SVG lacks '{label}'");
    }
    // No temporary files are left behind.
    let names: Vec<_> = std::fs::read_dir(dir.path().join("sub"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

#[test]
fn histogram_marks_levels_and_thresholds() {
    let dir = tempfile::tempdir().unwrap();
    let values: Vec<f32> = (0..5000).map(|i| ((i as f32) * 0.37).sin() * 0.1).collect();
    let marks = Marks {
        levels: vec![-0.08, 0.0, 0.05, 0.3],
        thresholds: vec![-0.04, 0.025, f32::INFINITY],
    };
    let out = histogram(&dir.path().join("h"), "fc1 quat", &values, 60, &marks).unwrap();
    assert_eq!(png_size(&out[0]), SIZE);
    let s = svg(&out[1]);
    assert!(s.contains("levels") && s.contains("thresholds") && s.contains("fc1 quat"));
    // A level outside the data (0.3) widens the axis rather than being dropped: its tick
    // range reaches 0.3.
    assert!(s.contains("0.3"), "axis does not reach the outlying level");
}

#[test]
fn grouped_bars_one_group_per_category() {
    let dir = tempfile::tempdir().unwrap();
    let cats = vec!["conv1".to_string(), "conv2".into(), "fc1".into()];
    let series = vec![
        Bars {
            name: "twn".into(),
            values: vec![0.5, 0.6, 0.55],
            color: None,
        },
        Bars {
            name: "quat".into(),
            values: vec![0.4, 0.45, 0.42],
            // Palette index 3 (Tableau red, #D62728) whatever the position.
            color: Some(3),
        },
    ];
    let out = grouped_bars(
        &dir.path().join("e"),
        "error",
        "relative error",
        &cats,
        &series,
    )
    .unwrap();
    assert_eq!(png_size(&out[0]), SIZE);
    let s = svg(&out[1]);
    for c in &cats {
        assert!(s.contains(c.as_str()), "SVG lacks category {c}");
    }
    assert!(
        s.to_uppercase().contains("#D62728"),
        "fixed colour not used"
    );
    assert!(
        !s.to_uppercase().contains("#FF7F0E"),
        "positional colour used"
    );
}

#[test]
fn bad_data_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let stem = dir.path().join("x");
    let empty = line_chart(&stem, "t", "x", "y", &[]);
    assert!(matches!(empty, Err(PlotError::BadData { .. })));
    let nan = vec![Series {
        name: "a".into(),
        points: vec![(1.0, f64::NAN)],
        color: None,
    }];
    assert!(matches!(
        line_chart(&stem, "t", "x", "y", &nan),
        Err(PlotError::BadData { .. })
    ));
    assert!(matches!(
        histogram(&stem, "t", &[1.0, f32::INFINITY], 10, &Marks::default()),
        Err(PlotError::BadData { .. })
    ));
    let ragged = grouped_bars(
        &stem,
        "t",
        "y",
        &["a".to_string(), "b".to_string()],
        &[Bars {
            name: "s".into(),
            values: vec![1.0],
            color: None,
        }],
    );
    let msg = ragged.unwrap_err().to_string();
    assert!(msg.contains("one value per category"), "{msg}");
    assert!(
        !dir.path().join("x.png").exists(),
        "a refused chart wrote a file"
    );
}
