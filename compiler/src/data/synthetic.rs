//! Synthetic 2-D classification sets, generated from fixed seeds (the same rows everywhere).
//!
//! Each generator draws `n` points, then splits them with a seeded permutation: the first `train_len` train.

use super::{Dataset, Shuffle, Split};

/// Seed of every generator's draws; the split uses `DATA_SEED + 1`.
const DATA_SEED: u64 = 0;

/// XOR as four noisy clusters: centres at the corners of the unit square, label `a XOR b` for the corner `(a, b)`,
/// Gaussian noise of standard deviation `noise` on each coordinate. Two classes.
pub fn xor(n: usize, noise: f64, train_len: usize) -> Dataset {
    let mut rng = Shuffle::new(DATA_SEED);
    let points = (0..n).map(|i| {
        let (a, b) = ((i & 1) as f64, ((i >> 1) & 1) as f64);
        let x = [a + noise * rng.normal(), b + noise * rng.normal()];
        (x, ((i & 1) ^ ((i >> 1) & 1)) as i32)
    });
    finish("xor", 2, points.collect(), train_len)
}

/// scikit-learn's `make_moons`: class 0 on the upper half circle `(cos t, sin t)`, class 1 on the lower one
/// `(1 - cos t, 1/2 - sin t)`, `t` uniform in `[0, π]`, plus Gaussian noise of standard deviation `noise`.
pub fn moons(n: usize, noise: f64, train_len: usize) -> Dataset {
    let mut rng = Shuffle::new(DATA_SEED);
    let points = (0..n).map(|i| {
        let t = std::f64::consts::PI * rng.unit();
        let (x, label) = if i % 2 == 0 {
            ([t.cos(), t.sin()], 0)
        } else {
            ([1.0 - t.cos(), 0.5 - t.sin()], 1)
        };
        (
            [x[0] + noise * rng.normal(), x[1] + noise * rng.normal()],
            label,
        )
    });
    finish("moons", 2, points.collect(), train_len)
}

/// CS231n's spirals: `arms` classes of `per_arm` points each; point `i` of arm `k` is at radius `r = i / per_arm`
/// and angle `4 (k + r) + noise · N(0, 1)` (radians), so each arm turns once around the origin.
pub fn spirals(arms: usize, per_arm: usize, noise: f64, train_len: usize) -> Dataset {
    let mut rng = Shuffle::new(DATA_SEED);
    let mut points = Vec::with_capacity(arms * per_arm);
    for k in 0..arms {
        for i in 0..per_arm {
            let r = i as f64 / per_arm as f64;
            let angle = 4.0 * (k as f64 + r) + noise * rng.normal();
            points.push(([r * angle.sin(), r * angle.cos()], k as i32));
        }
    }
    finish("spirals", arms, points, train_len)
}

fn finish(
    name: &'static str,
    classes: usize,
    points: Vec<([f64; 2], i32)>,
    train_len: usize,
) -> Dataset {
    let all = Split {
        x: points
            .iter()
            .flat_map(|(x, _)| x.map(|v| v as f32))
            .collect(),
        y: points.iter().map(|&(_, y)| y).collect(),
        features: 2,
    };
    Dataset::split(name, classes, all, train_len, DATA_SEED + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_have_their_sizes_and_balanced_labels() {
        for (d, classes) in [
            (xor(600, 0.1, 400), 2),
            (moons(1000, 0.1, 800), 2),
            (spirals(3, 300, 0.2, 720), 3),
        ] {
            let all = d.train.len() + d.test.len();
            assert_eq!(d.classes, classes);
            for label in 0..classes as i32 {
                let count = d
                    .train
                    .y
                    .iter()
                    .chain(&d.test.y)
                    .filter(|&&y| y == label)
                    .count();
                assert_eq!(count, all / classes, "{}: label {label}", d.name);
            }
        }
    }

    #[test]
    fn generation_is_deterministic() {
        assert_eq!(moons(100, 0.1, 80), moons(100, 0.1, 80));
    }
}
