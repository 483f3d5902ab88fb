//! A number or a distribution, for weights, delays and initial values.

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use std::fmt;

use crate::philox::Stream;

/// A constant (`weight = 1.5`) or a distribution
/// (`weight = { dist = "normal", mean = 1.0, sd = 0.2, min = 0.0 }`,
/// `v_mv = { dist = "uniform", low = -60.0, high = -50.0 }`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Dist {
    /// The same value everywhere.
    Const(f64),
    /// Uniform in [low, high).
    Uniform {
        /// Lower bound.
        low: f64,
        /// Upper bound.
        high: f64,
    },
    /// Normal, optionally clipped to [min, max] (clipping, not redrawing).
    Normal {
        /// Mean.
        mean: f64,
        /// Standard deviation (≥ 0).
        sd: f64,
        /// Lower clip.
        min: Option<f64>,
        /// Upper clip.
        max: Option<f64>,
    },
}

impl Dist {
    /// Draws one value.
    pub fn sample(&self, rng: &mut Stream) -> f64 {
        match *self {
            Dist::Const(v) => v,
            Dist::Uniform { low, high } => low + (high - low) * rng.uniform() as f64,
            Dist::Normal { mean, sd, min, max } => {
                let mut x = mean + sd * rng.normal();
                if let Some(lo) = min {
                    x = x.max(lo);
                }
                if let Some(hi) = max {
                    x = x.min(hi);
                }
                x
            }
        }
    }

    /// Smallest value the distribution can produce (-inf for an unclipped normal).
    pub fn lower_bound(&self) -> f64 {
        match *self {
            Dist::Const(v) => v,
            Dist::Uniform { low, .. } => low,
            Dist::Normal { min, sd, mean, .. } => {
                min.unwrap_or(if sd == 0.0 { mean } else { f64::NEG_INFINITY })
            }
        }
    }

    /// Largest value the distribution can produce (+inf for an unclipped normal).
    pub fn upper_bound(&self) -> f64 {
        match *self {
            Dist::Const(v) => v,
            Dist::Uniform { high, .. } => high,
            Dist::Normal { max, sd, mean, .. } => {
                max.unwrap_or(if sd == 0.0 { mean } else { f64::INFINITY })
            }
        }
    }
}

struct DistVisitor;

const KEYS: &[&str] = &["dist", "low", "high", "mean", "sd", "min", "max"];

impl<'de> Visitor<'de> for DistVisitor {
    type Value = Dist;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a number or a table { dist = \"uniform\" | \"normal\", ... }")
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Dist, E> {
        Ok(Dist::Const(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Dist, E> {
        Ok(Dist::Const(v as f64))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Dist, E> {
        Ok(Dist::Const(v as f64))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Dist, A::Error> {
        let mut kind: Option<String> = None;
        let mut vals: [Option<f64>; 6] = [None; 6];
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "dist" => kind = Some(map.next_value()?),
                k => match KEYS.iter().position(|x| *x == k) {
                    Some(i) => vals[i - 1] = Some(map.next_value()?),
                    None => return Err(de::Error::unknown_field(k, KEYS)),
                },
            }
        }
        let [low, high, mean, sd, min, max] = vals;
        match kind.as_deref() {
            Some("uniform") => Ok(Dist::Uniform {
                low: low.ok_or_else(|| de::Error::missing_field("low"))?,
                high: high.ok_or_else(|| de::Error::missing_field("high"))?,
            }),
            Some("normal") => Ok(Dist::Normal {
                mean: mean.ok_or_else(|| de::Error::missing_field("mean"))?,
                sd: sd.ok_or_else(|| de::Error::missing_field("sd"))?,
                min,
                max,
            }),
            Some(other) => Err(de::Error::unknown_variant(other, &["uniform", "normal"])),
            None => Err(de::Error::missing_field("dist")),
        }
    }
}

impl<'de> Deserialize<'de> for Dist {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(DistVisitor)
    }
}
