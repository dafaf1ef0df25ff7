//! A run's committed calls in compact column form, indexed by plan position: what the analysis
//! reads of them and nothing else.
//!
//! The analysis needs, per planned call, whether it has a record, its verdict, its token usage
//! and its label probabilities; everything else of a call (ids, judge, pair, condition) follows
//! from its plan position. So the store hands back one byte per planned call, plus the usage and
//! probabilities of the calls that carry them, instead of a `CallRecord` and four strings per
//! call (≈ 360 bytes): the memory of `report` and of a finished `run` no longer grows with the
//! records.

use crate::analyze::index::code_of;
use crate::judge::{LabelProbs, SlotVerdict, TokenUsage};

/// No committed record (the call is pending). The other codes are the analysis index's
/// (`FAILED` for a failed call's record, then invalid, first, second, tie).
const NO_RECORD: u8 = 0;

/// The committed calls of a plan, one entry per plan position.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CallColumns {
    /// Per plan position: [`NO_RECORD`] or the analysis index's code of the record's verdict.
    codes: Vec<u8>,
    /// Per plan position `[input, output]` tokens, allocated when the first call with usage is
    /// added (simulated judges report none). A count that does not fit 32 bits is kept in
    /// `wide_usage` instead, so no value is ever truncated.
    usage: Option<Vec<[u32; 2]>>,
    /// Usage of calls whose counts do not fit `usage`, by plan position.
    wide_usage: Vec<(u32, TokenUsage)>,
    /// Per plan position `[P(first), P(second), P(tie)]` (NaN when absent), allocated when the
    /// first call with label probabilities is added. `f32`, as the analysis index keeps them.
    probs: Option<Vec<[f32; 3]>>,
}

/// What [`CallColumns::usage`] and the counts of a record read.
const NO_USAGE: [u32; 2] = [u32::MAX, u32::MAX];

impl CallColumns {
    /// Columns for a plan of `planned` calls, none recorded yet.
    pub fn new(planned: usize) -> CallColumns {
        CallColumns {
            codes: vec![NO_RECORD; planned],
            ..CallColumns::default()
        }
    }

    /// Number of plan positions.
    pub fn len(&self) -> usize {
        self.codes.len()
    }

    /// True for an empty plan.
    pub fn is_empty(&self) -> bool {
        self.codes.is_empty()
    }

    /// Number of positions with a record (answered or failed).
    pub fn recorded(&self) -> usize {
        self.codes.iter().filter(|&&c| c != NO_RECORD).count()
    }

    /// Record the call at `position`: its verdict (`None` for a failed call), usage and label
    /// probabilities. Positions outside the plan are ignored.
    pub fn set(
        &mut self,
        position: usize,
        verdict: Option<SlotVerdict>,
        usage: Option<TokenUsage>,
        label_probs: Option<&LabelProbs>,
    ) {
        let len = self.codes.len();
        let Some(code) = self.codes.get_mut(position) else {
            return;
        };
        *code = code_of(verdict);
        if let Some(u) = usage {
            match (
                u32::try_from(u.input_tokens),
                u32::try_from(u.output_tokens),
            ) {
                (Ok(i), Ok(o)) if [i, o] != NO_USAGE => {
                    self.usage.get_or_insert_with(|| vec![NO_USAGE; len])[position] = [i, o];
                }
                _ => self.wide_usage.push((position as u32, u)),
            }
        }
        if let Some(p) = label_probs {
            self.probs.get_or_insert_with(|| vec![[f32::NAN; 3]; len])[position] =
                [p.first as f32, p.second as f32, p.tie as f32];
        }
    }

    /// The analysis index's code of the record at `position`, or `None` when the call has no
    /// record (pending).
    #[inline]
    pub(crate) fn code(&self, position: usize) -> Option<u8> {
        self.codes
            .get(position)
            .copied()
            .filter(|&c| c != NO_RECORD)
    }

    /// Token usage of the record at `position`, when it reported any.
    pub fn usage(&self, position: usize) -> Option<TokenUsage> {
        if let Some(&[i, o]) = self.usage.as_ref().and_then(|u| u.get(position))
            && [i, o] != NO_USAGE
        {
            return Some(TokenUsage {
                input_tokens: u64::from(i),
                output_tokens: u64::from(o),
            });
        }
        self.wide_usage
            .iter()
            .find(|(p, _)| *p as usize == position)
            .map(|&(_, u)| u)
    }

    /// Label probabilities of the record at `position` as the analysis index keeps them
    /// (`f32`), when present.
    pub(crate) fn probs(&self, position: usize) -> Option<[f32; 3]> {
        let p = *self.probs.as_ref()?.get(position)?;
        p[0].is_finite().then_some(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_keep_what_the_analysis_reads() {
        let mut c = CallColumns::new(4);
        assert_eq!(c.code(0), None);
        c.set(
            1,
            Some(SlotVerdict::Tie),
            Some(TokenUsage {
                input_tokens: 7,
                output_tokens: 3,
            }),
            None,
        );
        c.set(
            2,
            None,
            Some(TokenUsage {
                input_tokens: u64::from(u32::MAX) + 5,
                output_tokens: 1,
            }),
            Some(&LabelProbs {
                first: 0.5,
                second: 0.25,
                tie: 0.25,
            }),
        );
        c.set(9, Some(SlotVerdict::First), None, None);
        assert_eq!(c.recorded(), 2);
        assert_eq!(c.code(1), Some(code_of(Some(SlotVerdict::Tie))));
        assert_eq!(c.code(2), Some(code_of(None)));
        assert_eq!(c.usage(1).map(|u| u.input_tokens), Some(7));
        assert_eq!(
            c.usage(2).map(|u| u.input_tokens),
            Some(u64::from(u32::MAX) + 5)
        );
        assert_eq!(c.usage(0), None);
        assert_eq!(c.probs(2), Some([0.5, 0.25, 0.25]));
        assert_eq!(c.probs(1), None);
    }
}
