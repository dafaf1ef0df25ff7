//! Prompt templates for pairwise judging (Chen's safety template, MT-Bench pairwise, user files).

/// A pairwise judge prompt template with its verdict labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    /// Template name (built-in name or file stem).
    pub name: String,
    /// Optional system message.
    pub system: Option<String>,
    /// User message with `{{prompt}}`, `{{first}}`, `{{second}}` placeholders.
    pub user: String,
    /// Default regexes for the three labels.
    pub first_label: String,
    /// See `first_label`.
    pub second_label: String,
    /// See `first_label`.
    pub tie_label: String,
    /// Default pick rule (`first`, `last`, `unique`).
    pub pick: String,
}

/// The rendered chat messages of one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedPrompt {
    /// System message, if any.
    pub system: Option<String>,
    /// User message.
    pub user: String,
}
