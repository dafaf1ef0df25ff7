//! Pure statistical functions: intervals, exact tests, bootstrap, multiplicity control, agreement,
//! power and logistic regression. Nothing here knows about judges or artifacts; `analyze` composes
//! these into audit metrics.
//!
//! Every function is deterministic (the bootstrap is seeded explicitly) and free of I/O.
//! Conventions shared by the submodules:
//! - A quantity that is mathematically undefined for the given input (for example κ when both
//!   raters always use one single category) is returned as `f64::NAN` and documented as such;
//!   functions never panic on degenerate data.
//! - Malformed input that indicates a caller bug (length mismatch, label out of range) is
//!   reported as [`StatsError`] by the functions that can detect it.
//! - Confidence levels are fractions in (0, 1), e.g. 0.95.
//!
//! Map of the submodules (all items are re-exported here):
//! - intervals for a proportion: [`wilson`], [`clopper_pearson`], [`jeffreys`];
//! - tests: [`binomial_test`], [`mcnemar_exact`], [`mcnemar_mid_p`], [`sign_test`],
//!   [`stuart_maxwell`];
//! - clustered bootstrap: [`cluster_bootstrap`], [`cluster_bootstrap_result`], the fast
//!   ratio-of-sums path [`ClusterSums`], [`cluster_bootstrap_ratio`],
//!   [`cluster_bootstrap_ratio_diff`], [`cluster_bootstrap_ratios`], and the interval formulas
//!   [`percentile_interval`], [`bca_interval`];
//! - multiplicity: [`holm`], [`benjamini_hochberg`], [`bonferroni`];
//! - agreement: [`cohen_kappa`], [`scott_pi`], [`fleiss_kappa`], [`krippendorff_alpha_nominal`],
//!   [`percent_agreement`];
//! - power: [`sign_test_power`], [`shift_test_power`], [`pairs_needed_for_shift`],
//!   [`minimum_detectable_effect`], [`paired_flip_pairs_needed_normal`];
//! - regression: [`logistic_regression`], [`length_controlled_preference`];
//! - pointwise grades: [`wilcoxon_signed_rank`], [`spearman`], [`kendall_tau_b`],
//!   [`quadratic_weighted_kappa`], [`krippendorff_alpha`] (interval/ordinal),
//!   [`pooled_within_sd`], [`icc1`], [`brier_score`], [`expected_calibration_error`];
//! - sequential: the anytime-valid [`ConfidenceSequence`] and [`bonferroni_alpha`];
//! - distributions: [`binomial_pmf`], [`binomial_cdf`], [`binomial_sf`], [`normal_cdf`],
//!   [`normal_quantile`].

mod agreement;
mod bootstrap;
mod interval;
mod linalg;
mod multiplicity;
mod pointwise;
mod power;
mod regression;
mod sequential;
mod special;
mod tests;

pub use agreement::{
    cohen_kappa, fleiss_kappa, krippendorff_alpha_nominal, percent_agreement, scott_pi,
};
pub use bootstrap::{
    BootstrapConfig, BootstrapMethod, BootstrapResult, ClusterSums, bca_interval,
    bootstrap_replicates, cluster_bootstrap, cluster_bootstrap_ratio, cluster_bootstrap_ratio_diff,
    cluster_bootstrap_ratios, cluster_bootstrap_result, expanded_confidence, percentile_interval,
    quantile_linear,
};
pub use interval::{
    EffectiveInterval, Interval, clopper_pearson, clopper_pearson_fractional,
    effective_clopper_pearson, jeffreys, mover_difference, t_two_sided, wilson,
};
pub use multiplicity::{benjamini_hochberg, bonferroni, holm};
pub use pointwise::{
    AlphaLevel, ReliabilityBin, WILCOXON_EXACT_MAX, Wilcoxon, brier_score,
    expected_calibration_error, icc1, kendall_tau_b, krippendorff_alpha, pooled_within_sd,
    quadratic_weighted_kappa, spearman, wilcoxon_signed_rank,
};
pub use power::{
    minimum_detectable_effect, paired_flip_pairs_needed_normal, paired_flip_power_normal,
    pairs_needed_for_shift, shift_test_power, sign_test_power, sign_test_rejection_bound,
};
pub use regression::{
    LengthControl, LogisticFit, LogisticOptions, length_controlled_preference, logistic_regression,
};
pub use sequential::{
    ConfidenceSequence, bonferroni_alpha, observations_for_half_width, projected_half_width,
};
pub use special::{binomial_cdf, binomial_pmf, binomial_sf, normal_cdf, normal_quantile};
pub use tests::{
    StuartMaxwell, binomial_test, mcnemar_exact, mcnemar_mid_p, sign_test, stuart_maxwell,
};

/// Malformed input to a statistics function (a caller bug, not a degenerate data set).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StatsError {
    /// Two inputs that must have the same length do not.
    #[error("length mismatch: {what} ({left} vs {right})")]
    LengthMismatch {
        /// Which inputs disagree.
        what: &'static str,
        /// Length of the first input.
        left: usize,
        /// Length of the second input.
        right: usize,
    },
    /// A category label is not below the declared number of categories.
    #[error("label {label} at index {index} is out of range for {categories} categories")]
    LabelOutOfRange {
        /// Position of the offending label.
        index: usize,
        /// The label.
        label: usize,
        /// Declared number of categories.
        categories: usize,
    },
    /// A row of a count matrix has a different total or width than the first row.
    #[error("row {row}: {detail}")]
    RaggedRow {
        /// Row index.
        row: usize,
        /// What is wrong with it.
        detail: String,
    },
    /// A value is outside its allowed domain (negative count, non-finite weight, ...).
    #[error("invalid value at index {index}: {detail}")]
    InvalidValue {
        /// Position of the offending value.
        index: usize,
        /// What is wrong with it.
        detail: String,
    },
}

/// Arithmetic mean; `NaN` for an empty slice.
pub fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.iter().sum::<f64>() / values.len() as f64
}
