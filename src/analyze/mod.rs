//! analyze stage.
