//! A figure over repeated runs or schedules: its median and its range, so a reader sees how
//! much of a difference is noise.

/// Median, min and max of some figures; `None` for none.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(values: impl IntoIterator<Item = f64>) -> Option<Spread> {
        let mut v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let mid = v.len() / 2;
        let median = if v.len() % 2 == 1 {
            v[mid]
        } else {
            (v[mid - 1] + v[mid]) / 2.0
        };
        Some(Spread {
            median,
            min: v[0],
            max: v[v.len() - 1],
        })
    }

    /// "7.3 (6.5–7.4)" with `decimals` places.
    pub fn show(spread: Option<Spread>, decimals: usize) -> String {
        match spread {
            None => "–".into(),
            Some(s) => format!(
                "{:.d$} ({:.d$}–{:.d$})",
                s.median,
                s.min,
                s.max,
                d = decimals
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spread_is_the_median_and_the_range() {
        let s = Spread::of([7.4, 6.5, 7.3]).unwrap();
        assert_eq!((s.median, s.min, s.max), (7.3, 6.5, 7.4));
        let even = Spread::of([1.0, 4.0, 2.0, 3.0]).unwrap();
        assert_eq!((even.median, even.min, even.max), (2.5, 1.0, 4.0));
        assert_eq!(Spread::of([]), None);
        assert_eq!(Spread::show(Spread::of([f64::NAN]), 1), "–");
        assert_eq!(
            Spread::show(Spread::of([2.0, 1.0, 3.0]), 1),
            "2.0 (1.0–3.0)"
        );
    }
}
