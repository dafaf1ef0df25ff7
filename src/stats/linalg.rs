//! Minimal dense linear algebra for the small symmetric positive-definite systems used here
//! (Stuart–Maxwell covariance, logistic-regression information matrix). Matrices are row-major
//! `n × n` slices. A dependency such as nalgebra is not worth it for matrices of size ≤ 10.

/// Cholesky factor L (lower triangular, row-major) of a symmetric positive-definite matrix, or
/// `None` if a pivot is not clearly positive (singular or indefinite up to rounding).
pub(crate) fn cholesky(a: &[f64], n: usize) -> Option<Vec<f64>> {
    debug_assert_eq!(a.len(), n * n);
    let mut l = vec![0.0; n * n];
    // A pivot that has lost all but ~12 digits of its own diagonal entry means the matrix is
    // singular to working precision; comparing per column keeps the test scale-invariant (a
    // design column measured in millions next to one in millionths is not singular).
    for i in 0..n {
        for j in 0..=i {
            let mut s = a[i * n + j];
            for k in 0..j {
                s -= l[i * n + k] * l[j * n + k];
            }
            if i == j {
                let tol = a[i * n + i].abs() * 1e-12;
                if s.is_nan() || s <= tol || s.is_infinite() {
                    return None;
                }
                l[i * n + i] = s.sqrt();
            } else {
                l[i * n + j] = s / l[j * n + j];
            }
        }
    }
    Some(l)
}

/// Solves L Lᵀ x = b given the Cholesky factor L.
pub(crate) fn cholesky_solve(l: &[f64], n: usize, b: &[f64]) -> Vec<f64> {
    let mut y = vec![0.0; n];
    for i in 0..n {
        let mut s = b[i];
        for k in 0..i {
            s -= l[i * n + k] * y[k];
        }
        y[i] = s / l[i * n + i];
    }
    let mut x = vec![0.0; n];
    for i in (0..n).rev() {
        let mut s = y[i];
        for k in i + 1..n {
            s -= l[k * n + i] * x[k];
        }
        x[i] = s / l[i * n + i];
    }
    x
}

/// Inverse of an SPD matrix from its Cholesky factor (column by column).
pub(crate) fn cholesky_inverse(l: &[f64], n: usize) -> Vec<f64> {
    let mut inv = vec![0.0; n * n];
    let mut e = vec![0.0; n];
    for j in 0..n {
        e.iter_mut().for_each(|v| *v = 0.0);
        e[j] = 1.0;
        let col = cholesky_solve(l, n, &e);
        for i in 0..n {
            inv[i * n + j] = col[i];
        }
    }
    inv
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn solves_a_known_system() {
        // [[4,2],[2,3]] x = [2,1] -> x = [0.5, 0]; inverse = [[3,-2],[-2,4]]/8.
        let a = [4.0, 2.0, 2.0, 3.0];
        let l = cholesky(&a, 2).unwrap();
        let x = cholesky_solve(&l, 2, &[2.0, 1.0]);
        assert!((x[0] - 0.5).abs() < 1e-15 && x[1].abs() < 1e-15);
        let inv = cholesky_inverse(&l, 2);
        let want = [0.375, -0.25, -0.25, 0.5];
        for (g, w) in inv.iter().zip(want) {
            assert!((g - w).abs() < 1e-15);
        }
    }

    #[test]
    fn badly_scaled_but_regular_matrix_is_accepted() {
        // diag(1e12, 1e-12) is perfectly conditioned after column scaling.
        let l = cholesky(&[1e12, 0.0, 0.0, 1e-12], 2).expect("regular");
        let x = cholesky_solve(&l, 2, &[1e12, 1e-12]);
        assert!((x[0] - 1.0).abs() < 1e-12 && (x[1] - 1.0).abs() < 1e-12);
    }

    #[test]
    fn rejects_singular() {
        assert!(cholesky(&[1.0, 1.0, 1.0, 1.0], 2).is_none());
        assert!(cholesky(&[0.0], 1).is_none());
    }
}
