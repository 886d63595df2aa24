//! Subexpressions that several columns of a projection share, computed once per batch.
//!
//! TPC-H Q1 sums `l_extendedprice * (1 - l_discount)` and, as its next column, that product
//! times `(1 + l_tax)`: evaluated as written, the first product is computed twice per row.
//! [`extract`] finds such repeats and moves each into a column of its own, which the
//! projection computes first and the rewritten columns read.
//!
//! Only subexpressions that every row evaluates are taken: arithmetic, comparisons, casts and
//! negation, reached through operators of the same kinds. A subexpression under `CASE`,
//! `AND`/`OR` or a function call may be evaluated for some rows only, and hoisting it could
//! raise an error (a division by zero, a failed cast) that the expression as written avoids.

use arrow::datatypes::Schema;

use super::{BinaryOp, Expr};

/// The shared subexpressions of `columns`, each with the name of the column it becomes (not a
/// column of `input`), in evaluation order: a later one may read an earlier one. Also the
/// columns rewritten to read them. No shared subexpression: no change.
pub(crate) fn extract(columns: &[Expr], input: &Schema) -> (Vec<(String, Expr)>, Vec<Expr>) {
    let mut columns = columns.to_vec();
    let mut shared: Vec<(String, Expr)> = Vec::new();
    let mut next = 0usize;
    loop {
        let mut counts: Vec<(&Expr, usize)> = Vec::new();
        for column in &columns {
            count_hoistable(column, &mut counts);
        }
        let Some(largest) = counts
            .into_iter()
            .filter(|&(_, count)| count >= 2)
            .map(|(expr, _)| expr)
            .max_by_key(|expr| size(expr))
            .cloned()
        else {
            break;
        };
        let name = loop {
            let name = format!("$shared{next}");
            next += 1;
            if input.field_with_name(&name).is_err() {
                break name;
            }
        };
        let replacement = Expr::Column(name.clone());
        for column in &mut columns {
            replace(column, &largest, &replacement);
        }
        shared.push((name, largest));
    }
    (shared, columns)
}

/// Whether every row evaluates `expr`'s operands, so that they may be hoisted out of it.
fn evaluates_operands(expr: &Expr) -> bool {
    match expr {
        Expr::Binary { op, .. } => !matches!(op, BinaryOp::And | BinaryOp::Or),
        Expr::Negative(_) | Expr::Cast { .. } => true,
        _ => false,
    }
}

/// Counts `expr` and its subexpressions that may be hoisted (`counts` compares them by value).
fn count_hoistable<'a>(expr: &'a Expr, counts: &mut Vec<(&'a Expr, usize)>) {
    if !evaluates_operands(expr) {
        return;
    }
    match counts.iter_mut().find(|(seen, _)| *seen == expr) {
        Some((_, count)) => *count += 1,
        None => counts.push((expr, 1)),
    }
    for operand in operands(expr) {
        count_hoistable(operand, counts);
    }
}

/// The operands of a hoistable expression.
fn operands(expr: &Expr) -> Vec<&Expr> {
    match expr {
        Expr::Binary { left, right, .. } => vec![left, right],
        Expr::Negative(e) | Expr::Cast { expr: e, .. } => vec![e],
        _ => Vec::new(),
    }
}

/// Nodes in `expr`.
fn size(expr: &Expr) -> usize {
    1 + operands(expr).into_iter().map(size).sum::<usize>()
}

/// Replaces every occurrence of `target` in `expr`, where hoistable, with `replacement`.
fn replace(expr: &mut Expr, target: &Expr, replacement: &Expr) {
    if expr == target {
        *expr = replacement.clone();
        return;
    }
    match expr {
        Expr::Binary {
            left, op, right, ..
        } if !matches!(op, BinaryOp::And | BinaryOp::Or) => {
            replace(left, target, replacement);
            replace(right, target, replacement);
        }
        Expr::Negative(e) | Expr::Cast { expr: e, .. } => replace(e, target, replacement),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use arrow::datatypes::{DataType, Field};

    use super::*;
    use crate::expr::{col, lit};

    fn schema() -> Schema {
        Schema::new(vec![
            Field::new("price", DataType::Int64, false),
            Field::new("discount", DataType::Int64, false),
            Field::new("tax", DataType::Int64, false),
            Field::new("$shared0", DataType::Int64, false),
        ])
    }

    #[test]
    fn a_repeated_product_is_computed_once() {
        let net = col("price").mul(lit(1i64).sub(col("discount")));
        let charge = net.clone().mul(lit(1i64).add(col("tax")));
        let (shared, columns) = extract(&[col("price"), net.clone(), charge], &schema());
        // `$shared0` is an input column, so the shared product takes the next name.
        assert_eq!(shared, vec![("$shared1".to_string(), net)]);
        assert_eq!(
            columns,
            vec![
                col("price"),
                col("$shared1"),
                col("$shared1").mul(lit(1i64).add(col("tax"))),
            ]
        );
    }

    #[test]
    fn the_largest_repeat_is_taken_first_and_smaller_ones_after() {
        let diff = lit(1i64).sub(col("discount"));
        let net = col("price").mul(diff.clone());
        let (shared, columns) = extract(
            &[net.clone(), net.clone(), diff.clone().negate()],
            &schema(),
        );
        // `1 - discount` also stays inside the first shared product, which computes it; the
        // rewritten columns share it once the product is out.
        assert_eq!(shared[0], ("$shared1".to_string(), net));
        assert_eq!(columns[0], col("$shared1"));
        assert_eq!(columns[2], diff.negate());
        assert_eq!(shared.len(), 1);
    }

    #[test]
    fn conditional_operands_and_bare_columns_stay() {
        let ratio = col("price").div(col("discount"));
        let guarded = Expr::Case {
            operand: None,
            when_then: vec![(col("discount").not_eq(lit(0i64)), ratio.clone())],
            else_expr: None,
        };
        let (shared, columns) = extract(
            &[guarded.clone(), guarded.clone(), col("price"), col("price")],
            &schema(),
        );
        assert!(shared.is_empty());
        assert_eq!(
            columns,
            vec![guarded.clone(), guarded, col("price"), col("price")]
        );
        let either = col("discount")
            .gt(lit(0i64))
            .or(ratio.clone().gt(lit(1i64)));
        let (shared, _) = extract(&[either.clone(), either], &schema());
        assert!(shared.is_empty(), "the operands of OR are not hoisted");
    }
}
