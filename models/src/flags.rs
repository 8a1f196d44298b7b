//! The checks of the training flags' values, shared by the binaries' command line and the web
//! page's URL parameters, so both refuse the same values with the same words.

/// A whole number of at least 1 (`--batch-size`, `--limit-train`, `--limit-test`).
pub fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("`{s}` is not a whole number")),
    }
}

/// A finite number of at least 0 (`--lr`, `--momentum`).
pub fn non_negative(s: &str) -> Result<f32, String> {
    match s.parse::<f32>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        Ok(v) => Err(format!("must be a finite number of at least 0, got {v}")),
        Err(_) => Err(format!("`{s}` is not a number")),
    }
}

/// What to say when `--limit-{what}` asks for more than the `count` images there are (all are used).
pub fn limit_note(what: &str, limit: Option<usize>, count: usize) -> Option<String> {
    limit
        .filter(|&n| n > count)
        .map(|n| format!("note: --limit-{what} {n} is more than the {count} {what} images; using all of them"))
}
