//! Gradient (vector-Jacobian product) rules, one arm per primitive in the order of `Op`.
