//! Verdict parsing: map a judge's raw text to a [`SlotVerdict`](super::SlotVerdict).
