//! Predicate push-down into Parquet scans: where the planner filters a table's rows right
//! after its source, the conjuncts of the filter that compare one of the table's columns with
//! constants also go into the source's spec ([`FileSourceSpec::predicate`]), so that the
//! Parquet reader skips the row groups and pages whose statistics rule them out.
//!
//! The filter stays: pruning reads less, it never decides which rows pass. A conjunct is
//! pushed only when the reader can prune with it ([`is_prunable`]) and names no partition
//! column (those are not in the files). Only a source that no other operator reads gets a
//! predicate; the JobGraph's validation checks that the filters after it apply it.
//!
//! Called by the planner wherever it filters a relation: the `WHERE` of a single table and the
//! conditions it pushes to one relation of a join.
//!
//! [`FileSourceSpec::predicate`]: crate::connector::FileSourceSpec::predicate

use crate::Result;
use crate::api::DataStream;
use crate::connector::filesystem::is_prunable;
use crate::connector::{FileFormat, SourceSpec};
use crate::expr::Expr;

/// `stream` filtered by `predicate`; when `stream` is a Parquet source that nothing reads yet,
/// the source gets the conjuncts of `predicate` it can prune with.
pub(super) fn filter(stream: &DataStream, predicate: Expr) -> Result<DataStream> {
    stream.update_unread_source(|spec| {
        let SourceSpec::Filesystem(spec) = spec else {
            return;
        };
        if spec.format != FileFormat::Parquet {
            return;
        }
        let pushed = predicate
            .conjuncts()
            .into_iter()
            .filter(|c| {
                is_prunable(c, &spec.schema)
                    && c.columns().iter().all(|c| !spec.partition_keys.contains(c))
            })
            .cloned()
            .reduce(Expr::and);
        if let Some(pushed) = pushed {
            spec.predicate = Some(match spec.predicate.take() {
                Some(earlier) => earlier.and(pushed),
                None => pushed,
            });
        }
    });
    stream.filter(predicate)
}
