//! Finding and registering the TrueType font plotters draws labels with.
use crate::PlotError;
use plotters::style::{register_font, FontStyle};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Environment variable naming a `.ttf` file to use for chart labels.
pub const FONT_ENV: &str = "TWOBIT_FONT";

/// Well-known font files, most common Linux locations first.
const CANDIDATES: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation-sans/LiberationSans-Regular.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
    "/Library/Fonts/Arial.ttf",
    "C:\\Windows\\Fonts\\arial.ttf",
];

/// The font file charts will use: `$TWOBIT_FONT` if set, else the first well-known file that
/// exists, else the first `.ttf` under `/usr/share/fonts`.
pub fn find_font() -> Result<PathBuf, PlotError> {
    if let Some(p) = std::env::var_os(FONT_ENV) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(PlotError::BadFont {
                path: p,
                reason: format!("named by ${FONT_ENV} but not a file"),
            })
        };
    }
    if let Some(p) = CANDIDATES.iter().map(Path::new).find(|p| p.is_file()) {
        return Ok(p.to_path_buf());
    }
    if let Some(p) = first_ttf(Path::new("/usr/share/fonts"), 4) {
        return Ok(p);
    }
    Err(PlotError::NoFont {
        looked: format!("{}, /usr/share/fonts/**/*.ttf", CANDIDATES.join(", ")),
    })
}

fn first_ttf(dir: &Path, depth: usize) -> Option<PathBuf> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for p in &entries {
        if p.is_file() && p.extension().is_some_and(|e| e.eq_ignore_ascii_case("ttf")) {
            return Some(p.clone());
        }
    }
    if depth == 0 {
        return None;
    }
    entries
        .iter()
        .filter(|p| p.is_dir())
        .find_map(|p| first_ttf(p, depth - 1))
}

/// Registers the font once per process as "sans-serif" (the family the charts ask for).
pub(crate) fn ensure_font() -> Result<(), PlotError> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    let res = DONE.get_or_init(|| {
        let path = find_font().map_err(|e| e.to_string())?;
        let bytes = std::fs::read(&path).map_err(|e| format!("font {}: {e}", path.display()))?;
        // plotters keeps fonts for the whole process and wants 'static bytes: leak one copy.
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        register_font("sans-serif", FontStyle::Normal, bytes)
            .map_err(|_| format!("font {}: not a TrueType/OpenType font", path.display()))
    });
    res.clone().map_err(|reason| match find_font() {
        Err(e) => e,
        Ok(path) => PlotError::BadFont { path, reason },
    })
}
