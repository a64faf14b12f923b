//! The error of adapter files and adapter entries: every problem of one read, save or apply.
use super::AdapterProblem;
use crate::names::problem_list;
use thiserror::Error;

/// Adapter files (this library's or PEFT's) or adapter entries are invalid: every problem
/// found is listed. Nothing was written or changed.
#[derive(Debug, Error)]
#[error("{operation}: {} problem(s): {}", problems.len(), problem_list(problems))]
#[non_exhaustive]
pub struct AdapterError {
    /// What was being done: "read adapter `out/adapter`".
    pub operation: String,
    /// Every problem found, in the order found.
    pub problems: Vec<AdapterProblem>,
}
