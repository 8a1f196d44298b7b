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

/// A finite number (each of `--mean`'s values).
pub fn finite_number(s: &str) -> Result<f32, String> {
    match s.trim().parse::<f32>() {
        Ok(x) if x.is_finite() => Ok(x),
        _ => Err(format!("`{s}` is not a finite number")),
    }
}

/// A finite number above 0 (each of `--std`'s values).
pub fn positive_number(s: &str) -> Result<f32, String> {
    match finite_number(s)? {
        x if x > 0.0 => Ok(x),
        x => Err(format!("{x} is not above 0: a standard deviation must be")),
    }
}

/// A picture size `HxW` (`--resize 32x32`), each side from 1 to 8192.
pub fn size(s: &str) -> Result<(u32, u32), String> {
    let parse = |v: &str| v.trim().parse::<u32>().ok().filter(|n| (1..=crate::picture::MAX_SIDE).contains(n));
    match s.split_once(['x', 'X', '×']) {
        Some((h, w)) => parse(h)
            .zip(parse(w))
            .ok_or_else(|| format!("`{s}`: each side must be a whole number from 1 to {}", crate::picture::MAX_SIDE)),
        None => Err(format!("`{s}` is not a size: write HEIGHTxWIDTH, as 32x32")),
    }
}
