//! The executable expression tree.
//!
//! A [`PhysicalExpr`] is built only by [`Expr::resolve`](super::Expr::resolve), which guarantees
//! that every node's children already have the types its kernel needs (casts are explicit
//! nodes). Evaluation walks the tree once per batch; each node runs one Arrow kernel (or one of
//! ours in [`kernels`](super::kernels)) over whole arrays. Intermediate results are [`Value`]s: a
//! literal, or anything computed only from literals, stays a one-element
//! [`Scalar`](arrow::array::Scalar) and reaches Datum-aware kernels (comparison, arithmetic,
//! LIKE, zip) without being expanded to the batch length.

use std::fmt;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Datum, RecordBatch, UInt32Array, new_null_array,
};
use arrow::buffer::BooleanBuffer;
use arrow::compute::kernels::{boolean, cast, cmp, comparison, numeric, zip};
use arrow::compute::{filter, filter_record_batch, interleave, nullif, prep_null_mask_filter};
use arrow::datatypes::DataType;
use arrow::error::ArrowError;

use super::kernels::{self, Kernel};
use crate::{Error, Result};

/// An executable, type-checked expression for one input schema.
///
/// `Send + Sync`, and cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct PhysicalExpr {
    node: Arc<Node>,
}

struct Node {
    kind: Kind,
    data_type: DataType,
    nullable: bool,
    /// The SQL text of the logical expression, for error messages.
    display: String,
}

/// Arithmetic operators with an Arrow kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

impl ArithOp {
    /// Arrow's checked kernel for the operator.
    pub(crate) fn arrow_kernel(
        self,
    ) -> fn(&dyn Datum, &dyn Datum) -> std::result::Result<ArrayRef, ArrowError> {
        match self {
            ArithOp::Add => numeric::add,
            ArithOp::Sub => numeric::sub,
            ArithOp::Mul => numeric::mul,
            ArithOp::Div => numeric::div,
            ArithOp::Rem => numeric::rem,
        }
    }
}

/// Comparison operators with an Arrow kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CmpOp {
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
}

impl CmpOp {
    /// `op` when it is a comparison.
    pub(crate) fn of(op: super::BinaryOp) -> Option<CmpOp> {
        use super::BinaryOp;
        Some(match op {
            BinaryOp::Eq => CmpOp::Eq,
            BinaryOp::NotEq => CmpOp::NotEq,
            BinaryOp::Lt => CmpOp::Lt,
            BinaryOp::LtEq => CmpOp::LtEq,
            BinaryOp::Gt => CmpOp::Gt,
            BinaryOp::GtEq => CmpOp::GtEq,
            BinaryOp::Plus
            | BinaryOp::Minus
            | BinaryOp::Multiply
            | BinaryOp::Divide
            | BinaryOp::Modulo
            | BinaryOp::And
            | BinaryOp::Or => return None,
        })
    }

    /// The operator with its operands swapped: `v < c` is `c > v`.
    pub(crate) fn flipped(self) -> CmpOp {
        match self {
            CmpOp::Eq => CmpOp::Eq,
            CmpOp::NotEq => CmpOp::NotEq,
            CmpOp::Lt => CmpOp::Gt,
            CmpOp::LtEq => CmpOp::GtEq,
            CmpOp::Gt => CmpOp::Lt,
            CmpOp::GtEq => CmpOp::LtEq,
        }
    }
}

#[derive(Debug)]
pub(crate) enum Kind {
    Column(usize),
    Literal(ScalarArray),
    Arithmetic {
        op: ArithOp,
        left: PhysicalExpr,
        right: PhysicalExpr,
    },
    Negative(PhysicalExpr),
    Compare {
        op: CmpOp,
        left: PhysicalExpr,
        right: PhysicalExpr,
    },
    And(PhysicalExpr, PhysicalExpr),
    Or(PhysicalExpr, PhysicalExpr),
    Not(PhysicalExpr),
    IsNull(PhysicalExpr),
    IsNotNull(PhysicalExpr),
    /// `expr = list[0] OR expr = list[1] ...` (Kleene); `NOT IN` is a `Not` around it.
    InList {
        expr: PhysicalExpr,
        list: Vec<PhysicalExpr>,
    },
    Like {
        expr: PhysicalExpr,
        pattern: PhysicalExpr,
        negated: bool,
        case_insensitive: bool,
    },
    Case {
        branches: Vec<(PhysicalExpr, PhysicalExpr)>,
        else_expr: Option<PhysicalExpr>,
    },
    Cast {
        expr: PhysicalExpr,
        safe: bool,
    },
    Coalesce(Vec<PhysicalExpr>),
    NullIf(PhysicalExpr, PhysicalExpr),
    Call {
        kernel: Kernel,
        args: Vec<PhysicalExpr>,
    },
}

/// A one-element array standing for every row: Arrow's `Scalar`, owned as an `ArrayRef` so
/// the value can be read back without downcasting.
#[derive(Debug, Clone)]
pub(crate) struct ScalarArray(ArrayRef);

impl ScalarArray {
    pub(crate) fn new(array: ArrayRef) -> Self {
        debug_assert_eq!(array.len(), 1, "a scalar is a one-element array");
        ScalarArray(array)
    }

    pub(crate) fn array(&self) -> &ArrayRef {
        &self.0
    }
}

impl Datum for ScalarArray {
    fn get(&self) -> (&dyn Array, bool) {
        (self.0.as_ref(), true)
    }
}

/// An intermediate result: a whole column, or one value standing for every row.
pub(crate) enum Value {
    Array(ArrayRef),
    Scalar(ScalarArray),
}

impl Value {
    pub(crate) fn datum(&self) -> &dyn Datum {
        match self {
            Value::Array(a) => a,
            Value::Scalar(s) => s,
        }
    }

    /// The one-element array of a scalar, or the array.
    pub(crate) fn array(&self) -> &ArrayRef {
        match self {
            Value::Array(a) => a,
            Value::Scalar(s) => s.array(),
        }
    }

    pub(crate) fn is_scalar(&self) -> bool {
        matches!(self, Value::Scalar(_))
    }

    /// A column of `num_rows` rows (a scalar is repeated).
    pub(crate) fn into_array(self, num_rows: usize) -> Result<ArrayRef, ArrowError> {
        match self {
            Value::Array(a) => Ok(a),
            Value::Scalar(s) => repeat_scalar(s.array(), num_rows),
        }
    }

    /// Wraps a kernel result: a scalar when every input was one.
    pub(crate) fn from_result(array: ArrayRef, all_scalar: bool) -> Value {
        if all_scalar {
            Value::Scalar(ScalarArray::new(array))
        } else {
            Value::Array(array)
        }
    }
}

/// `num_rows` copies of the single value of `one`.
pub(crate) fn repeat_scalar(one: &ArrayRef, num_rows: usize) -> Result<ArrayRef, ArrowError> {
    if one.logical_null_count() > 0 {
        return Ok(new_null_array(one.data_type(), num_rows));
    }
    let all = BooleanArray::new(BooleanBuffer::new_set(num_rows), None);
    let s = ScalarArray::new(Arc::clone(one));
    zip::zip(&all, &s, &s)
}

/// Nulls become `false`, so the result has no null buffer.
fn null_as_false(mask: BooleanArray) -> BooleanArray {
    if mask.null_count() == 0 {
        mask
    } else {
        prep_null_mask_filter(&mask)
    }
}

impl PhysicalExpr {
    pub(crate) fn new(kind: Kind, data_type: DataType, nullable: bool, display: String) -> Self {
        PhysicalExpr {
            node: Arc::new(Node {
                kind,
                data_type,
                nullable,
                display,
            }),
        }
    }

    pub(crate) fn kind(&self) -> &Kind {
        &self.node.kind
    }

    /// The SQL text of the expression this node was resolved from.
    pub(crate) fn display(&self) -> &str {
        &self.node.display
    }

    /// The type of the values [`evaluate`](Self::evaluate) returns.
    pub fn data_type(&self) -> &DataType {
        &self.node.data_type
    }

    /// `false` when the result can never contain a null.
    pub fn nullable(&self) -> bool {
        self.node.nullable
    }

    /// Evaluates over a whole batch; returns an array of `batch.num_rows()` rows of
    /// [`data_type`](Self::data_type). Errors (overflow, division by zero, a failed cast) name
    /// the expression.
    pub fn evaluate(&self, batch: &RecordBatch) -> Result<ArrayRef> {
        self.eval(batch)?
            .into_array(batch.num_rows())
            .map_err(|e| self.err(e))
    }

    /// Evaluates a Boolean predicate; nulls become `false` (as a filter treats them), so the
    /// result has no null buffer.
    pub fn evaluate_predicate(&self, batch: &RecordBatch) -> Result<BooleanArray> {
        if self.data_type() != &DataType::Boolean && self.data_type() != &DataType::Null {
            return Err(Error::expr(format!(
                "predicate '{}' must be Boolean, not {}",
                self.display(),
                self.data_type()
            )));
        }
        let array = self.evaluate(batch)?;
        let mask = match array.as_boolean_opt() {
            Some(b) => b.clone(),
            // An untyped NULL predicate selects nothing.
            None => BooleanArray::new(BooleanBuffer::new_unset(array.len()), None),
        };
        Ok(null_as_false(mask))
    }

    fn err(&self, e: ArrowError) -> Error {
        Error::arrow(format!("evaluating '{}'", self.display()), e)
    }

    /// The conjuncts of a chain of `AND`s: the expression itself when it is no `AND`.
    pub(crate) fn conjuncts(&self) -> Vec<&PhysicalExpr> {
        match self.kind() {
            Kind::And(left, right) => {
                let mut all = left.conjuncts();
                all.extend(right.conjuncts());
                all
            }
            _ => vec![self],
        }
    }

    /// The input columns the expression reads, each once.
    pub(crate) fn columns(&self) -> Vec<usize> {
        let mut columns = Vec::new();
        let mut pending = vec![self];
        while let Some(expr) = pending.pop() {
            match expr.kind() {
                Kind::Column(i) if !columns.contains(i) => columns.push(*i),
                Kind::Column(_) | Kind::Literal(_) => {}
                Kind::Arithmetic { left, right, .. }
                | Kind::Compare { left, right, .. }
                | Kind::And(left, right)
                | Kind::Or(left, right)
                | Kind::NullIf(left, right)
                | Kind::Like {
                    expr: left,
                    pattern: right,
                    ..
                } => pending.extend([left, right]),
                Kind::Negative(e)
                | Kind::Not(e)
                | Kind::IsNull(e)
                | Kind::IsNotNull(e)
                | Kind::Cast { expr: e, .. } => pending.push(e),
                Kind::InList { expr, list } => {
                    pending.push(expr);
                    pending.extend(list);
                }
                Kind::Case {
                    branches,
                    else_expr,
                } => {
                    pending.extend(branches.iter().flat_map(|(when, then)| [when, then]));
                    pending.extend(else_expr);
                }
                Kind::Coalesce(args) | Kind::Call { args, .. } => pending.extend(args),
            }
        }
        columns
    }

    /// `true` if evaluation may fail on some input (overflow, division by zero, casts,
    /// functions); used to decide whether CASE may evaluate a branch on rows that do not take it.
    pub(crate) fn may_fail(&self) -> bool {
        match self.kind() {
            Kind::Column(_) | Kind::Literal(_) => false,
            Kind::Compare { left, right, .. }
            | Kind::And(left, right)
            | Kind::Or(left, right)
            | Kind::NullIf(left, right) => left.may_fail() || right.may_fail(),
            Kind::Not(e) | Kind::IsNull(e) | Kind::IsNotNull(e) => e.may_fail(),
            Kind::InList { expr, list } => expr.may_fail() || list.iter().any(Self::may_fail),
            Kind::Like { expr, pattern, .. } => expr.may_fail() || pattern.may_fail(),
            Kind::Case {
                branches,
                else_expr,
            } => {
                branches.iter().any(|(w, t)| w.may_fail() || t.may_fail())
                    || else_expr.as_ref().is_some_and(Self::may_fail)
            }
            Kind::Coalesce(args) => args.iter().any(Self::may_fail),
            Kind::Cast { expr, safe } => !safe || expr.may_fail(),
            Kind::Call { kernel, args } => kernel.may_fail() || args.iter().any(Self::may_fail),
            Kind::Arithmetic { .. } | Kind::Negative(_) => true,
        }
    }

    /// Evaluates to a [`Value`]; the per-batch recursion.
    pub(crate) fn eval(&self, batch: &RecordBatch) -> Result<Value> {
        let out = match self.kind() {
            Kind::Column(i) => Value::Array(Arc::clone(batch.column(*i))),
            Kind::Literal(s) => Value::Scalar(ScalarArray::new(Arc::clone(s.array()))),
            Kind::Arithmetic { op, left, right } => {
                let (l, r) = (left.eval(batch)?, right.eval(batch)?);
                if let Some(out) = kernels::decimal_arithmetic(*op, &l, &r, self.data_type()) {
                    return Ok(Value::Array(out));
                }
                let mut out = op.arrow_kernel()(l.datum(), r.datum()).map_err(|e| self.err(e))?;
                // Decimal kernels pick their own precision; align with the resolved type.
                if out.data_type() != self.data_type() {
                    out = cast::cast(&out, self.data_type()).map_err(|e| self.err(e))?;
                }
                Value::from_result(out, l.is_scalar() && r.is_scalar())
            }
            Kind::Negative(e) => {
                let v = e.eval(batch)?;
                let out = numeric::neg(v.array()).map_err(|e| self.err(e))?;
                Value::from_result(out, v.is_scalar())
            }
            Kind::Compare { op, left, right } => {
                let (l, r) = (left.eval(batch)?, right.eval(batch)?);
                let f = match op {
                    CmpOp::Eq => cmp::eq,
                    CmpOp::NotEq => cmp::neq,
                    CmpOp::Lt => cmp::lt,
                    CmpOp::LtEq => cmp::lt_eq,
                    CmpOp::Gt => cmp::gt,
                    CmpOp::GtEq => cmp::gt_eq,
                };
                let out = f(l.datum(), r.datum()).map_err(|e| self.err(e))?;
                Value::from_result(Arc::new(out), l.is_scalar() && r.is_scalar())
            }
            Kind::And(l, r) | Kind::Or(l, r) => {
                let is_and = matches!(self.kind(), Kind::And(..));
                let lv = l.eval(batch)?;
                // Short-circuit on a batch where the left side alone decides every row.
                if let Some(b) = lv.array().as_boolean_opt()
                    && b.null_count() == 0
                    && !lv.is_scalar()
                {
                    let decided = if is_and {
                        b.true_count() == 0
                    } else {
                        b.false_count() == 0
                    };
                    if decided {
                        return Ok(lv);
                    }
                }
                let rv = r.eval(batch)?;
                let n = batch.num_rows();
                let scalar = lv.is_scalar() && rv.is_scalar();
                let (la, ra) = if scalar {
                    (Arc::clone(lv.array()), Arc::clone(rv.array()))
                } else {
                    (
                        lv.into_array(n).map_err(|e| self.err(e))?,
                        rv.into_array(n).map_err(|e| self.err(e))?,
                    )
                };
                let (lb, rb) = (as_bool(&la, l)?, as_bool(&ra, r)?);
                let out = if is_and {
                    boolean::and_kleene(&lb, &rb)
                } else {
                    boolean::or_kleene(&lb, &rb)
                }
                .map_err(|e| self.err(e))?;
                Value::from_result(Arc::new(out), scalar)
            }
            Kind::Not(e) => {
                let v = e.eval(batch)?;
                let b = as_bool(v.array(), e)?;
                let out = boolean::not(&b).map_err(|e| self.err(e))?;
                Value::from_result(Arc::new(out), v.is_scalar())
            }
            Kind::IsNull(e) | Kind::IsNotNull(e) => {
                let v = e.eval(batch)?;
                let out = if matches!(self.kind(), Kind::IsNull(_)) {
                    boolean::is_null(v.array())
                } else {
                    boolean::is_not_null(v.array())
                }
                .map_err(|e| self.err(e))?;
                Value::from_result(Arc::new(out), v.is_scalar())
            }
            Kind::InList { expr, list } => self.eval_in_list(expr, list, batch)?,
            Kind::Like {
                expr,
                pattern,
                negated,
                case_insensitive,
            } => {
                let (s, p) = (expr.eval(batch)?, pattern.eval(batch)?);
                if !case_insensitive
                    && !s.is_scalar()
                    && p.is_scalar()
                    && let (Some(values), Some(pattern)) = (
                        s.array().as_string_opt::<i32>(),
                        p.array().as_string_opt::<i32>(),
                    )
                    && pattern.is_valid(0)
                    && let Some(pieces) = kernels::LikePieces::parse(pattern.value(0))
                {
                    return Ok(Value::Array(Arc::new(pieces.evaluate(values, *negated))));
                }
                let f = match (negated, case_insensitive) {
                    (false, false) => comparison::like,
                    (true, false) => comparison::nlike,
                    (false, true) => comparison::ilike,
                    (true, true) => comparison::nilike,
                };
                let out = f(s.datum(), p.datum()).map_err(|e| self.err(e))?;
                Value::from_result(Arc::new(out), s.is_scalar() && p.is_scalar())
            }
            Kind::Case {
                branches,
                else_expr,
            } => self.eval_case(branches, else_expr.as_ref(), batch)?,
            Kind::Cast { expr, safe } => {
                let v = expr.eval(batch)?;
                let options = cast::CastOptions {
                    safe: *safe,
                    ..Default::default()
                };
                let out = cast::cast_with_options(v.array(), self.data_type(), &options)
                    .map_err(|e| self.err(e))?;
                Value::from_result(out, v.is_scalar())
            }
            Kind::Coalesce(args) => self.eval_coalesce(args, batch)?,
            Kind::NullIf(a, b) => {
                let av = a.eval(batch)?;
                let bv = b.eval(batch)?;
                let eq = cmp::eq(av.datum(), bv.datum()).map_err(|e| self.err(e))?;
                let scalar = av.is_scalar() && bv.is_scalar();
                let n = if scalar { 1 } else { batch.num_rows() };
                let values = if scalar {
                    Arc::clone(av.array())
                } else {
                    av.into_array(n).map_err(|e| self.err(e))?
                };
                let eq = if eq.len() == n {
                    eq
                } else {
                    let one: ArrayRef = Arc::new(eq);
                    repeat_scalar(&one, n)
                        .map_err(|e| self.err(e))?
                        .as_boolean()
                        .clone()
                };
                let out = nullif(&values, &eq).map_err(|e| self.err(e))?;
                Value::from_result(out, scalar)
            }
            Kind::Call { kernel, args } => {
                let values = args
                    .iter()
                    .map(|a| a.eval(batch))
                    .collect::<Result<Vec<_>>>()?;
                kernel
                    .invoke(&values, batch.num_rows(), self.data_type())
                    .map_err(|e| self.err(e))?
            }
        };
        Ok(out)
    }

    fn eval_in_list(
        &self,
        expr: &PhysicalExpr,
        list: &[PhysicalExpr],
        batch: &RecordBatch,
    ) -> Result<Value> {
        let probe = expr.eval(batch)?;
        let mut acc: Option<(BooleanArray, bool)> = None;
        for item in list {
            let v = item.eval(batch)?;
            let scalar = probe.is_scalar() && v.is_scalar();
            let hit = cmp::eq(probe.datum(), v.datum()).map_err(|e| self.err(e))?;
            acc = Some(match acc {
                None => (hit, scalar),
                Some((prev, prev_scalar)) => {
                    let n = batch.num_rows();
                    let (p, h) = if prev_scalar == scalar {
                        (prev, hit)
                    } else {
                        (bool_rows(prev, n, self)?, bool_rows(hit, n, self)?)
                    };
                    let out = boolean::or_kleene(&p, &h).map_err(|e| self.err(e))?;
                    (out, prev_scalar && scalar)
                }
            });
        }
        match acc {
            Some((out, scalar)) => Ok(Value::from_result(Arc::new(out), scalar)),
            None => Err(Error::Internal(format!(
                "IN list of '{}' is empty after resolve",
                self.display()
            ))),
        }
    }

    fn eval_coalesce(&self, args: &[PhysicalExpr], batch: &RecordBatch) -> Result<Value> {
        let mut acc: Option<Value> = None;
        for arg in args {
            let v = arg.eval(batch)?;
            acc = Some(match acc {
                None => v,
                Some(prev) => {
                    let prev_arr = prev.array();
                    if prev.is_scalar() {
                        // A non-null scalar decides everything; a null one defers to `v`.
                        if prev_arr.logical_null_count() > 0 {
                            v
                        } else {
                            prev
                        }
                    } else {
                        let keep = boolean::is_not_null(prev_arr).map_err(|e| self.err(e))?;
                        let out = zip::zip(&keep, prev_arr, v.datum()).map_err(|e| self.err(e))?;
                        Value::Array(out)
                    }
                }
            });
            if let Some(a) = &acc
                && a.array().null_count() == 0
            {
                break;
            }
        }
        acc.ok_or_else(|| {
            Error::Internal(format!("COALESCE '{}' has no arguments", self.display()))
        })
    }

    fn eval_case(
        &self,
        branches: &[(PhysicalExpr, PhysicalExpr)],
        else_expr: Option<&PhysicalExpr>,
        batch: &RecordBatch,
    ) -> Result<Value> {
        let n = batch.num_rows();
        let null = ScalarArray::new(new_null_array(self.data_type(), 1));
        if !self.may_fail() {
            // Nothing can fail: evaluate everything on the whole batch, fold from the last branch.
            let mut acc = match else_expr {
                Some(e) => e.eval(batch)?,
                None => Value::Scalar(null),
            };
            for (when, then) in branches.iter().rev() {
                let cond = when.eval(batch)?.into_array(n).map_err(|e| self.err(e))?;
                let mask = null_as_false(as_bool(&cond, when)?);
                let t = then.eval(batch)?;
                let out = zip::zip(&mask, t.datum(), acc.datum()).map_err(|e| self.err(e))?;
                acc = Value::Array(out);
            }
            return Ok(acc);
        }

        // Filter-evaluate-scatter: each WHEN sees only rows no earlier branch took, each THEN
        // only the rows that take it. `sources[0]` is a null, row `i` of the result is
        // `sources[take[i].0][take[i].1]`.
        let mut sources: Vec<ArrayRef> = vec![Arc::clone(null.array())];
        let mut take: Vec<(usize, usize)> = vec![(0, 0); n];
        let mut rest = batch.clone();
        // Original row numbers of `rest`; `None` while `rest` is the whole batch.
        let mut rest_rows: Option<UInt32Array> = None;
        let mut record = |values: ArrayRef, rows: &mut dyn Iterator<Item = usize>| {
            let src = sources.len();
            for (j, row) in rows.enumerate() {
                take[row] = (src, j);
            }
            sources.push(values);
        };
        let mut done = false;
        for (when, then) in branches {
            if rest.num_rows() == 0 {
                done = true;
                break;
            }
            let cond = when
                .eval(&rest)?
                .into_array(rest.num_rows())
                .map_err(|e| self.err(e))?;
            let mask = null_as_false(as_bool(&cond, when)?);
            let hits = mask.true_count();
            if hits == 0 {
                continue;
            }
            if hits == rest.num_rows() {
                let values = then
                    .eval(&rest)?
                    .into_array(rest.num_rows())
                    .map_err(|e| self.err(e))?;
                match &rest_rows {
                    None => return Ok(Value::Array(values)),
                    Some(rows) => record(values, &mut rows.values().iter().map(|r| *r as usize)),
                }
                done = true;
                break;
            }
            let taken = filter_record_batch(&rest, &mask).map_err(|e| self.err(e))?;
            let values = then
                .eval(&taken)?
                .into_array(taken.num_rows())
                .map_err(|e| self.err(e))?;
            match &rest_rows {
                None => record(values, &mut mask.values().set_indices()),
                Some(rows) => {
                    let picked = filter(rows, &mask).map_err(|e| self.err(e))?;
                    let picked = picked.as_primitive::<arrow::datatypes::UInt32Type>();
                    record(values, &mut picked.values().iter().map(|r| *r as usize));
                }
            }
            let keep = boolean::not(&mask).map_err(|e| self.err(e))?;
            let all_rows;
            let rows = match &rest_rows {
                Some(rows) => rows,
                None => {
                    all_rows = UInt32Array::from_iter_values(0..n as u32);
                    &all_rows
                }
            };
            let next_rows = filter(rows, &keep).map_err(|e| self.err(e))?;
            rest_rows = Some(
                next_rows
                    .as_primitive::<arrow::datatypes::UInt32Type>()
                    .clone(),
            );
            rest = filter_record_batch(&rest, &keep).map_err(|e| self.err(e))?;
        }
        if !done
            && rest.num_rows() > 0
            && let Some(e) = else_expr
        {
            let values = e
                .eval(&rest)?
                .into_array(rest.num_rows())
                .map_err(|e| self.err(e))?;
            match &rest_rows {
                None => return Ok(Value::Array(values)),
                Some(rows) => record(values, &mut rows.values().iter().map(|r| *r as usize)),
            }
        }
        let refs: Vec<&dyn Array> = sources.iter().map(|a| a.as_ref()).collect();
        let out = interleave(&refs, &take).map_err(|e| self.err(e))?;
        Ok(Value::Array(out))
    }
}

/// Widens a one-element Boolean result to `n` rows when mixing with a full column.
fn bool_rows(b: BooleanArray, n: usize, at: &PhysicalExpr) -> Result<BooleanArray> {
    if b.len() == n {
        return Ok(b);
    }
    let one: ArrayRef = Arc::new(b);
    Ok(repeat_scalar(&one, n)
        .map_err(|e| at.err(e))?
        .as_boolean()
        .clone())
}

/// Views `array` as Boolean; an untyped NULL becomes an all-null Boolean array.
fn as_bool(array: &ArrayRef, at: &PhysicalExpr) -> Result<BooleanArray> {
    if let Some(b) = array.as_boolean_opt() {
        return Ok(b.clone());
    }
    if array.data_type() == &DataType::Null {
        return Ok(BooleanArray::new_null(array.len()));
    }
    Err(Error::Internal(format!(
        "'{}' evaluated to {} where Boolean was resolved",
        at.display(),
        array.data_type()
    )))
}

impl fmt::Debug for PhysicalExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PhysicalExpr")
            .field("expr", &self.node.display)
            .field("data_type", &self.node.data_type)
            .field("nullable", &self.node.nullable)
            .finish()
    }
}

impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display)
    }
}
