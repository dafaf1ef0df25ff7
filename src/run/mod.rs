//! run stage.
