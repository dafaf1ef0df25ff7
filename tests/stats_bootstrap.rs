//! Tests of the clustered bootstrap: the BCa / percentile formulas against scipy on fixed
//! replicates, reproducibility across thread counts, agreement of the fast ratio path with the
//! generic path, sampling-theory sanity checks and degenerate inputs.

use judge_audit::stats::*;

#[track_caller]
fn close(got: f64, want: f64, tol: f64) {
    assert!(
        (got - want).abs() <= tol * want.abs().max(1.0),
        "got {got:.17}, want {want:.17}"
    );
}

const DATA: [f64; 15] = [
    2.1, 3.4, 1.9, 5.6, 4.4, 3.3, 2.8, 7.9, 3.0, 4.1, 2.2, 6.5, 3.8, 2.9, 4.7,
];
const REPS: [f64; 20] = [
    3.71, 3.95, 4.40, 3.52, 3.88, 4.12, 3.60, 4.05, 3.79, 4.61, 3.44, 3.99, 4.21, 3.67, 3.83, 4.30,
    3.58, 4.02, 3.91, 4.48,
];

fn jackknife_means(data: &[f64]) -> Vec<f64> {
    let total: f64 = data.iter().sum();
    data.iter()
        .map(|x| (total - x) / (data.len() - 1) as f64)
        .collect()
}

#[test]
fn bca_interval_matches_scipy_on_fixed_replicates() {
    // scipy.stats._resampling._bca_interval((DATA,), np.mean, axis=-1, alpha=0.025,
    //     theta_hat_b=REPS, batch=None, xp=np) -> alpha_1 = 0.020462686640231244,
    //     alpha_2 = 0.9686070424722755; np.quantile(REPS, [alpha_1, alpha_2]) =
    //     [3.4711032836931515, 4.532459394906521] (scipy 1.17.1, the same code path as
    //     scipy.stats.bootstrap(method="BCa")).
    let est = mean(&DATA);
    let ci = bca_interval(est, &REPS, &jackknife_means(&DATA), 0.95);
    close(ci.low, 3.4711032836931515, 1e-12);
    close(ci.high, 4.532459394906521, 1e-12);
    // np.quantile(REPS, [0.025, 0.975]) = [3.4779999999999998, 4.54825]
    let pct = percentile_interval(&REPS, 0.95);
    close(pct.low, 3.478, 1e-12);
    close(pct.high, 4.54825, 1e-12);
}

#[test]
fn bca_degenerate_replicates() {
    // All replicates equal to the estimate and no jackknife spread: [θ, θ], no NaN.
    let ci = bca_interval(2.0, &[2.0; 50], &[2.0; 10], 0.95);
    assert_eq!(ci, Interval::new(2.0, 2.0));
    // Estimate below every replicate (proportion 0, where scipy gives NaN): still finite and
    // inside the replicate range.
    let ci = bca_interval(0.0, &REPS, &jackknife_means(&DATA), 0.95);
    assert!(ci.low >= 3.44 && ci.high <= 4.61, "{ci:?}");
    assert!(bca_interval(1.0, &[], &[], 0.95).low.is_nan());
    assert!(bca_interval(1.0, &[f64::NAN], &[], 0.95).low.is_nan());
    assert!(percentile_interval(&REPS, 1.0).low.is_nan());
}

fn config(method: BootstrapMethod, seed: u64, resamples: usize) -> BootstrapConfig {
    BootstrapConfig {
        resamples,
        seed,
        confidence: 0.95,
        method,
    }
}

/// Deterministic pseudo-data: cluster c has `1 + c % 7` observations, values 0/1.
fn clustered_data(n_clusters: usize) -> (Vec<usize>, Vec<f64>) {
    let (mut ids, mut vals) = (Vec::new(), Vec::new());
    for c in 0..n_clusters {
        for j in 0..(1 + c % 7) {
            ids.push(c);
            vals.push(if (c * 31 + j * 17) % 10 < 3 { 1.0 } else { 0.0 });
        }
    }
    (ids, vals)
}

#[test]
fn ratio_path_equals_generic_path_bit_for_bit() {
    let (ids, vals) = clustered_data(300);
    let sums = ClusterSums::from_values(&ids, &vals).unwrap();
    for method in [BootstrapMethod::Percentile, BootstrapMethod::Bca] {
        let cfg = config(method, 42, 500);
        let fast = sums.bootstrap(&cfg).unwrap();
        let generic = cluster_bootstrap_result(
            sums.n_clusters(),
            |idx| {
                let (mut s, mut c) = (0.0, 0.0);
                for &i in idx {
                    s += sums.sums[i];
                    c += sums.counts[i];
                }
                s / c
            },
            &cfg,
        )
        .unwrap();
        assert_eq!(fast.estimate, generic.estimate);
        assert_eq!(fast.resamples, 500);
        // Same (seed, index) streams and the same summation order: identical replicates.
        assert_eq!(fast.interval, generic.interval, "{method:?}");
        assert_eq!(fast.std_error, generic.std_error);
    }
}

#[test]
fn reproducible_for_a_seed_whatever_the_thread_count() {
    let (ids, vals) = clustered_data(400);
    let sums = ClusterSums::from_values(&ids, &vals).unwrap();
    let cfg = config(BootstrapMethod::Bca, 7, 800);
    let run = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| {
                let a = sums.bootstrap(&cfg).unwrap();
                let b = cluster_bootstrap(
                    sums.n_clusters(),
                    |idx| idx.iter().map(|&i| sums.sums[i]).sum(),
                    &cfg,
                )
                .unwrap();
                (a, b)
            })
    };
    let one = run(1);
    assert_eq!(one, run(3));
    assert_eq!(one, run(8));
    // A different seed moves the interval.
    let other = sums
        .bootstrap(&config(BootstrapMethod::Bca, 8, 800))
        .unwrap();
    assert_ne!(one.0.interval, other.interval);
}

#[test]
fn bootstrap_of_a_mean_agrees_with_sampling_theory() {
    // One observation per cluster: the bootstrap SE of a mean is sd·√((n−1)/n)/√n, and the
    // percentile interval ≈ mean ± 1.96·SE for n = 400. With 4,000 resamples the Monte Carlo
    // error of the SE is about 1/√(2·4000) ≈ 1.1 % relative, so 5 % tolerances cannot fail by chance.
    let n = 400;
    let values: Vec<f64> = (0..n)
        .map(|i| ((i * 37 % 101) as f64 / 10.0).powf(1.5))
        .collect();
    let m = mean(&values);
    let sd = (values.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / (n - 1) as f64).sqrt();
    let se = sd * ((n - 1) as f64 / n as f64).sqrt() / (n as f64).sqrt();
    let ids: Vec<usize> = (0..n).collect();
    let sums = ClusterSums::from_values(&ids, &values).unwrap();
    for method in [BootstrapMethod::Percentile, BootstrapMethod::Bca] {
        let r = sums.bootstrap(&config(method, 1, 4000)).unwrap();
        assert!((r.estimate - m).abs() < 1e-12);
        assert!(
            (r.std_error / se - 1.0).abs() < 0.05,
            "se {} vs {se}",
            r.std_error
        );
        assert!(
            (r.interval.low - (m - 1.96 * se)).abs() < 0.1 * 1.96 * se,
            "{:?}",
            r.interval
        );
        assert!(
            (r.interval.high - (m + 1.96 * se)).abs() < 0.1 * 1.96 * se,
            "{:?}",
            r.interval
        );
    }
}

#[test]
fn clustering_widens_the_interval_for_correlated_clusters() {
    // 100 clusters of 10 identical values: the effective sample size is 100, not 1,000, so the
    // cluster SE must be about √10 ≈ 3.16 times an item-level SE.
    let (mut ids, mut vals) = (Vec::new(), Vec::new());
    for c in 0..100usize {
        let v = if (c * 7919) % 100 < 40 { 1.0 } else { 0.0 };
        for _ in 0..10 {
            ids.push(c);
            vals.push(v);
        }
    }
    let cfg = config(BootstrapMethod::Percentile, 3, 4000);
    let clustered = ClusterSums::from_values(&ids, &vals)
        .unwrap()
        .bootstrap(&cfg)
        .unwrap();
    let item_ids: Vec<usize> = (0..ids.len()).collect();
    let items = ClusterSums::from_values(&item_ids, &vals)
        .unwrap()
        .bootstrap(&cfg)
        .unwrap();
    let ratio = clustered.std_error / items.std_error;
    assert!((ratio - 10f64.sqrt()).abs() < 0.3, "ratio {ratio}");
}

#[test]
fn paired_difference_uses_the_same_clusters() {
    // Side b is side a plus a constant 0.25 on every observation: every resample's difference
    // is exactly −0.25, so the interval collapses, which only happens if both sides are drawn
    // with the same cluster indices.
    let (ids, vals) = clustered_data(200);
    let shifted: Vec<f64> = vals.iter().map(|v| v + 0.25).collect();
    let (a, b) = ClusterSums::paired(&ids, &vals, &shifted).unwrap();
    for method in [BootstrapMethod::Percentile, BootstrapMethod::Bca] {
        let r = cluster_bootstrap_ratio_diff(&a, &b, &config(method, 5, 300)).unwrap();
        close(r.estimate, -0.25, 1e-12);
        close(r.interval.low, -0.25, 1e-12);
        close(r.interval.high, -0.25, 1e-12);
    }
    // Independent-looking sides give a proper interval around the estimate.
    let other: Vec<f64> = vals
        .iter()
        .enumerate()
        .map(|(i, _)| ((i * 13) % 5 == 0) as u8 as f64)
        .collect();
    let (a, b) = ClusterSums::paired(&ids, &vals, &other).unwrap();
    let r = cluster_bootstrap_ratio_diff(&a, &b, &config(BootstrapMethod::Bca, 5, 1000)).unwrap();
    close(r.estimate, a.ratio() - b.ratio(), 1e-12);
    assert!(r.interval.low < r.estimate && r.estimate < r.interval.high);
}

#[test]
fn multi_column_bootstrap_equals_single_column_runs() {
    let (ids, vals) = clustered_data(250);
    let other: Vec<f64> = vals
        .iter()
        .enumerate()
        .map(|(i, v)| if i % 4 == 0 { 1.0 - v } else { *v })
        .collect();
    let (a, b) = ClusterSums::paired(&ids, &vals, &other).unwrap();
    let cfg = config(BootstrapMethod::Bca, 11, 400);
    let both = cluster_bootstrap_ratios(&[a.clone(), b.clone()], &cfg).unwrap();
    assert_eq!(both[0], a.bootstrap(&cfg));
    assert_eq!(both[1], b.bootstrap(&cfg));
    assert_ne!(both[0], both[1]);
    // Degenerate columns come back as None / single-cluster results, alongside valid ones.
    let zero = ClusterSums::new(vec![0.0; a.n_clusters()], vec![0.0; a.n_clusters()]).unwrap();
    let mixed = cluster_bootstrap_ratios(&[zero.clone(), a.clone()], &cfg).unwrap();
    assert_eq!(mixed[0], None);
    assert_eq!(mixed[1], a.bootstrap(&cfg));
    assert!(cluster_bootstrap_ratios(&[], &cfg).unwrap().is_empty());
    assert!(matches!(
        cluster_bootstrap_ratios(
            &[a.clone(), ClusterSums::new(vec![1.0], vec![1.0]).unwrap()],
            &cfg
        ),
        Err(StatsError::RaggedRow { row: 1, .. })
    ));
    let single = ClusterSums::new(vec![2.0], vec![4.0]).unwrap();
    let r = cluster_bootstrap_ratios(&[single.clone(), single], &cfg).unwrap();
    assert_eq!(r[0].unwrap().interval, Interval::new(0.5, 0.5));
}

#[test]
fn cluster_sums_construction() {
    // NaN marks an invalid observation: it is skipped; a cluster with only NaN is dropped.
    let ids = ["p1", "p2", "p1", "p3", "p2"];
    let vals = [1.0, 0.0, f64::NAN, f64::NAN, 1.0];
    let s = ClusterSums::from_values(&ids, &vals).unwrap();
    assert_eq!(s.sums, vec![1.0, 1.0]);
    assert_eq!(s.counts, vec![1.0, 2.0]);
    close(s.ratio(), 2.0 / 3.0, 1e-15);
    // Paired: a cluster stays when either side has data, so both sides stay aligned.
    let (a, b) = ClusterSums::paired(&ids, &vals, &[f64::NAN, 1.0, 1.0, 1.0, f64::NAN]).unwrap();
    assert_eq!(a.counts, vec![1.0, 2.0, 0.0]);
    assert_eq!(b.counts, vec![1.0, 1.0, 1.0]);
    assert!(matches!(
        ClusterSums::from_values(&ids, &[1.0]),
        Err(StatsError::LengthMismatch { .. })
    ));
    assert!(ClusterSums::new(vec![1.0], vec![-1.0]).is_err());
    assert!(ClusterSums::new(vec![1.0, 2.0], vec![1.0]).is_err());
}

#[test]
fn degenerate_bootstrap_inputs() {
    let cfg = config(BootstrapMethod::Bca, 0, 100);
    // No clusters.
    assert!(cluster_bootstrap(0, |_| 1.0, &cfg).is_none());
    assert!(cluster_bootstrap_ratio(&[], &[], &cfg).is_none());
    // Single cluster: degenerate [est, est] for both methods.
    for method in [BootstrapMethod::Percentile, BootstrapMethod::Bca] {
        let c = config(method, 0, 100);
        let r = cluster_bootstrap_ratio(&[3.0], &[4.0], &c).unwrap();
        assert_eq!(r.interval, Interval::new(0.75, 0.75));
        assert_eq!(r.std_error, 0.0);
        assert_eq!(
            cluster_bootstrap(1, |idx| idx.len() as f64, &c),
            Some(Interval::new(1.0, 1.0))
        );
    }
    // All ties: every cluster has the same rate, so every replicate equals the estimate.
    let r = cluster_bootstrap_ratio(&[1.0, 2.0, 3.0], &[2.0, 4.0, 6.0], &cfg).unwrap();
    close(r.interval.low, 0.5, 1e-15);
    close(r.interval.high, 0.5, 1e-15);
    // All invalid: total count 0, no estimate.
    assert!(cluster_bootstrap_ratio(&[0.0, 0.0], &[0.0, 0.0], &cfg).is_none());
    // Zero resamples or a bad confidence: nothing to report.
    assert!(
        cluster_bootstrap_ratio(
            &[1.0, 0.0],
            &[1.0, 1.0],
            &config(BootstrapMethod::Bca, 0, 0)
        )
        .is_none()
    );
    let bad = BootstrapConfig {
        confidence: 1.5,
        ..cfg
    };
    assert!(cluster_bootstrap_ratio(&[1.0, 0.0], &[1.0, 1.0], &bad).is_none());
    // Length mismatch.
    assert!(cluster_bootstrap_ratio(&[1.0, 0.0], &[1.0], &cfg).is_none());
    // A statistic that is NaN on some resamples: those replicates are dropped and counted.
    let r = cluster_bootstrap_result(
        5,
        |idx| {
            if idx.iter().all(|&i| i == 0 || i == 1) {
                f64::NAN
            } else {
                idx.iter().sum::<usize>() as f64
            }
        },
        &cfg,
    )
    .unwrap();
    assert!(r.resamples <= 100 && r.interval.low.is_finite());
    // Clusters with zero count: resamples that draw only those have no replicate.
    let r = cluster_bootstrap_ratio(
        &[1.0, 0.0],
        &[1.0, 0.0],
        &config(BootstrapMethod::Percentile, 0, 400),
    )
    .unwrap();
    assert!(r.resamples < 400 && r.resamples > 200, "{}", r.resamples); // P(drop) = 1/4
    assert_eq!(r.interval, Interval::new(1.0, 1.0));
}

#[test]
fn default_config_is_documented_values() {
    let d = BootstrapConfig::default();
    assert_eq!(
        (d.resamples, d.seed, d.confidence, d.method),
        (2000, 0, 0.95, BootstrapMethod::Bca)
    );
}

#[test]
fn variance_df_and_expanded_confidence_match_numpy_and_scipy() {
    use judge_audit::stats::expanded_confidence;
    // Ten pairs of two answers, three of them moved: r̂ = 2/20 = 0.1, residuals e = s − 0.1·2.
    // numpy: k·Σe⁴/(Σe²)² = 4.612456747404845, df = 2k/(κ − 1) = 5.536398467432949.
    let sums = ClusterSums::new(
        vec![0.0, 0.0, 3.0, 0.0, -2.0, 0.0, 0.0, 1.0, 0.0, 0.0],
        vec![2.0; 10],
    )
    .unwrap();
    close(sums.variance_df(), 5.536398467432949, 1e-12);
    // 1 − 2·scipy.stats.norm.cdf(−scipy.stats.t.ppf(0.975, df)·√(k/(k−1))):
    // df 5.5364, k 10 -> 0.9915251370668575; df 199, k 200 -> 0.9519476304587592 (Hesterberg's
    // expanded percentile exactly); df 14, k 200 -> 0.9684581385392894.
    close(
        expanded_confidence(0.95, 5.536398467432949, 10),
        0.9915251370668575,
        1e-9,
    );
    close(
        expanded_confidence(0.95, 199.0, 200),
        0.9519476304587592,
        1e-9,
    );
    close(
        expanded_confidence(0.95, 14.0, 200),
        0.9684581385392894,
        1e-9,
    );
    // Normal-looking spread keeps nearly every cluster (clamped at k − 1); equal |e| has κ = 1.
    let equal = ClusterSums::new(vec![1.0, -1.0, 1.0, -1.0], vec![1.0; 4]).unwrap();
    assert_eq!(equal.variance_df(), 3.0);
    // Degenerate: no spread, one cluster: NaN, and the level is left alone.
    let flat = ClusterSums::new(vec![2.0, 2.0, 2.0], vec![2.0; 3]).unwrap();
    assert!(flat.variance_df().is_nan());
    let one = ClusterSums::new(vec![1.0], vec![1.0]).unwrap();
    assert!(one.variance_df().is_nan());
    assert_eq!(expanded_confidence(0.95, f64::NAN, 200), 0.95);
    assert_eq!(expanded_confidence(0.95, 5.0, 1), 0.95);
}
