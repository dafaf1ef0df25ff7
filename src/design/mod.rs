//! design stage.
