//! The checks of the training flags' values, shared by the binaries' command line and the web
//! page's URL parameters, so both refuse the same values with the same words.

use engine::ops::gather::Augment;
use engine::ops::optimizer::{Adam, Optimizer, Sgd};
use engine::schedule::{OneCycle, Schedule};
use std::collections::BTreeMap;

/// A whole number of at least 1 (`--batch-size`, `--limit-train`, `--limit-test`).
pub fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("`{s}` is not a whole number")),
    }
}

/// A finite number of at least 0 (`--momentum`, `--weight-decay`).
pub fn non_negative(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
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

/// A finite number above 0 (`--lr`, `--eps`).
pub fn above_zero(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        Ok(v) => Err(format!("must be a finite number above 0, got {v}")),
        Err(_) => Err(format!("`{s}` is not a number")),
    }
}

/// A number from 0 to 1 (`--label-smoothing`).
pub fn probability(s: &str) -> Result<f32, String> {
    match s.trim().parse::<f32>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        Ok(v) => Err(format!("must be from 0 to 1, got {v}")),
        Err(_) => Err(format!("`{s}` is not a number")),
    }
}

/// Adam's two coefficients, `B1,B2`, each in [0, 1) (`--betas 0.9,0.999`).
pub fn betas(s: &str) -> Result<(f64, f64), String> {
    let beta = |v: &str| match v.trim().parse::<f64>() {
        Ok(b) if (0.0..1.0).contains(&b) => Ok(b),
        _ => Err(format!("`{}` is not a number in [0, 1)", v.trim())),
    };
    match s.split_once(',') {
        Some((b1, b2)) => Ok((beta(b1)?, beta(b2)?)),
        None => Err(format!("`{s}` is not two numbers: write B1,B2, as 0.9,0.999")),
    }
}

/// A learning-rate schedule: `constant`, `step,step_size=STEPS[,gamma=G]`,
/// `cosine[,t_max=STEPS][,eta_min=LR]` or `onecycle[,pct_start=P][,div_factor=D]
/// [,final_div_factor=F][,base_momentum=B][,max_momentum=M]` (PyTorch's names and defaults).
pub fn schedule(s: &str) -> Result<Schedule, String> {
    let mut parts = s.split(',').map(str::trim);
    let kind = parts.next().unwrap_or_default();
    let mut settings = key_values(parts)?;
    let mut take = |key: &str| settings.remove(key);
    let steps = |key: &str, v: f64| match v {
        v if v >= 1.0 && v.fract() == 0.0 => Ok(v as u64),
        _ => Err(format!("{key} must be a whole number of steps of at least 1, got {v}")),
    };
    let schedule = match kind {
        "constant" => Schedule::Constant { warmup: 0 },
        "step" => {
            let size = take("step_size").ok_or("the step schedule needs step_size=STEPS")?;
            Schedule::Step { step_size: steps("step_size", size)?, gamma: take("gamma").unwrap_or(0.1), warmup: 0 }
        }
        "cosine" => {
            let t_max = take("t_max").map(|t| steps("t_max", t)).transpose()?;
            Schedule::Cosine { t_max, eta_min: take("eta_min").unwrap_or(0.0), warmup: 0 }
        }
        "onecycle" => {
            let d = OneCycle::default();
            Schedule::OneCycle(OneCycle {
                pct_start: take("pct_start").unwrap_or(d.pct_start),
                div_factor: take("div_factor").unwrap_or(d.div_factor),
                final_div_factor: take("final_div_factor").unwrap_or(d.final_div_factor),
                base_momentum: take("base_momentum").unwrap_or(d.base_momentum),
                max_momentum: take("max_momentum").unwrap_or(d.max_momentum),
            })
        }
        other => return Err(format!("unknown schedule `{other}`: use constant, step, cosine or onecycle")),
    };
    if let Some(key) = settings.keys().next() {
        return Err(format!("the {kind} schedule has no setting `{key}`"));
    }
    schedule.check().map_err(|e| e.to_string())?;
    Ok(schedule)
}

/// The random affine augmentation: `shift=PIXELS,rotate=DEGREES,scale=FRACTION`, each optional
/// (0 when absent), or `none`.
pub fn augment(s: &str) -> Result<Augment, String> {
    if s.trim() == "none" {
        return Ok(Augment::default());
    }
    let mut settings = key_values(s.split(',').map(str::trim))?;
    let mut take = |key: &str| settings.remove(key).unwrap_or(0.0) as f32;
    let augment = Augment { shift: take("shift"), rotate: take("rotate"), scale: take("scale") };
    if let Some(key) = settings.keys().next() {
        return Err(format!("no setting `{key}`: use shift, rotate and scale (e.g. shift=2,rotate=10,scale=0.1)"));
    }
    augment.check().map_err(|e| e.to_string())?;
    Ok(augment)
}

/// `KEY=VALUE` settings, each a finite number, each given once.
fn key_values<'a>(parts: impl Iterator<Item = &'a str>) -> Result<BTreeMap<String, f64>, String> {
    let mut settings = BTreeMap::new();
    for part in parts {
        let (key, value) = part.split_once('=').ok_or_else(|| format!("`{part}` is not KEY=VALUE"))?;
        let value = value.trim().parse::<f64>().map_err(|_| format!("{key}: `{value}` is not a number"))?;
        if !value.is_finite() {
            return Err(format!("{key}: `{value}` is not a finite number"));
        }
        if settings.insert(key.trim().to_string(), value).is_some() {
            return Err(format!("{key} is given twice"));
        }
    }
    Ok(settings)
}

/// The optimizer's settings as given, by the binaries' flags or the page's fields (`None`: the
/// optimizer's default).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct OptimizerFlags {
    /// `--lr` (0.01 for sgd, 0.001 for adam and adamw).
    pub lr: Option<f64>,
    /// `--momentum` (sgd: 0.5, the tutorial's).
    pub momentum: Option<f64>,
    /// `--nesterov` (sgd).
    pub nesterov: bool,
    /// `--weight-decay` (0; 0.01 for adamw).
    pub weight_decay: Option<f64>,
    /// `--betas` (adam and adamw: 0.9, 0.999).
    pub betas: Option<(f64, f64)>,
    /// `--eps` (adam and adamw: 1e-8).
    pub eps: Option<f64>,
}

impl OptimizerFlags {
    /// The optimizer `name` (sgd, adam or adamw) with these settings; refuses a setting it does
    /// not have.
    pub fn optimizer(&self, name: &str) -> Result<Optimizer, String> {
        let not_for = |flag: &str, given: bool| match given {
            true => Err(format!("{flag} does not apply to --optimizer {name}")),
            false => Ok(()),
        };
        match name {
            "sgd" => {
                not_for("--betas", self.betas.is_some())?;
                not_for("--eps", self.eps.is_some())?;
                let mut sgd = Sgd::new(self.lr.unwrap_or(0.01), self.momentum.unwrap_or(0.5));
                sgd.weight_decay = self.weight_decay.unwrap_or(0.0);
                sgd.nesterov = self.nesterov;
                if sgd.nesterov && sgd.momentum == 0.0 {
                    return Err("--nesterov needs a --momentum above 0".into());
                }
                Ok(Optimizer::Sgd(sgd))
            }
            "adam" | "adamw" => {
                not_for("--momentum", self.momentum.is_some())?;
                not_for("--nesterov", self.nesterov)?;
                let lr = self.lr.unwrap_or(0.001);
                let mut adam = if name == "adamw" { Adam::adamw(lr) } else { Adam::adam(lr) };
                adam.betas = self.betas.unwrap_or(adam.betas);
                adam.eps = self.eps.unwrap_or(adam.eps);
                adam.weight_decay = self.weight_decay.unwrap_or(adam.weight_decay);
                Ok(Optimizer::Adam(adam))
            }
            other => Err(format!("`{other}` is not one of sgd, adam, adamw")),
        }
    }
}
