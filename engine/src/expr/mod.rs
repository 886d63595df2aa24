//! Vectorized expressions with SQL semantics.
//!
//! Two forms of an expression exist:
//! - [`Expr`], the logical tree: serialisable (it is part of the JobGraph), built by the SQL
//!   planner or the DataStream API with [`col`], [`lit`] and the builder methods on [`Expr`].
//!   It knows column *names* and nothing about types.
//! - [`PhysicalExpr`], the executable tree returned by [`Expr::resolve`] for one input schema.
//!   All name lookups, type checks, implicit casts (coercion), function lookups and literal
//!   conversions happen in `resolve`, once. [`PhysicalExpr::evaluate`] then walks the tree once
//!   per record batch and runs one Arrow kernel per node over whole arrays: no per-row dynamic
//!   dispatch, no per-row allocation, and literals stay one-element [`arrow::array::Scalar`]s
//!   wherever the kernel takes a [`arrow::array::Datum`].
//!
//! Semantics follow SQL as Flink SQL and DuckDB users expect; see [`Expr`] for the per-variant
//! rules (null handling, three-valued logic, coercion, decimal arithmetic, CASE evaluation).
//! Operators (filter, projection, key extraction) are the callers.
//!
//! ```
//! use std::sync::Arc;
//! use arrow::array::{Int64Array, RecordBatch, StringArray};
//! use arrow::datatypes::{DataType, Field, Schema};
//! use sluice_engine::expr::{Function, call, col, lit};
//!
//! let schema = Arc::new(Schema::new(vec![
//!     Field::new("price", DataType::Int64, true),
//!     Field::new("channel", DataType::Utf8, true),
//! ]));
//! let batch = RecordBatch::try_new(
//!     Arc::clone(&schema),
//!     vec![
//!         Arc::new(Int64Array::from(vec![Some(5), None, Some(20)])),
//!         Arc::new(StringArray::from(vec![Some("Web"), Some("app"), Some("WEB")])),
//!     ],
//! )?;
//! // price > 10 AND LOWER(channel) = 'web'
//! let predicate = col("price")
//!     .gt(lit(10_i64))
//!     .and(call(Function::Lower, vec![col("channel")]).eq(lit("web")));
//! let physical = predicate.resolve(&schema)?;
//! let mask = physical.evaluate_predicate(&batch)?;
//! assert_eq!(mask.iter().collect::<Vec<_>>(), vec![Some(false), Some(false), Some(true)]);
//!
//! let err = col("channel").add(lit(1_i64)).resolve(&schema).unwrap_err();
//! assert!(err.to_string().contains("cannot apply '+' to Utf8 'channel' and Int64"));
//! # Ok::<(), anyhow::Error>(())
//! ```

#![warn(missing_docs)]

pub(crate) mod coercion;
mod function;
mod kernels;
mod physical;
mod resolve;
mod scalar;
pub(crate) mod shared;

#[cfg(test)]
mod tests;

use std::fmt;

use arrow::datatypes::{DataType, Schema};
use serde::{Deserialize, Serialize};

pub(crate) use function::closest;
pub use function::{DateField, Function, TimeUnitField};
pub(crate) use physical::CmpOp;
pub use physical::PhysicalExpr;
pub use scalar::ScalarValue;

/// A binary operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BinaryOp {
    /// `+`
    Plus,
    /// `-`
    Minus,
    /// `*`
    Multiply,
    /// `/`: integer division for integers (truncating, as Flink/Postgres), see [`Expr`].
    Divide,
    /// `%` / `MOD`: sign follows the dividend.
    Modulo,
    /// `=`
    Eq,
    /// `<>`
    NotEq,
    /// `<`
    Lt,
    /// `<=`
    LtEq,
    /// `>`
    Gt,
    /// `>=`
    GtEq,
    /// `AND` (three-valued)
    And,
    /// `OR` (three-valued)
    Or,
}

impl BinaryOp {
    /// The SQL spelling of the operator.
    pub fn symbol(self) -> &'static str {
        match self {
            BinaryOp::Plus => "+",
            BinaryOp::Minus => "-",
            BinaryOp::Multiply => "*",
            BinaryOp::Divide => "/",
            BinaryOp::Modulo => "%",
            BinaryOp::Eq => "=",
            BinaryOp::NotEq => "<>",
            BinaryOp::Lt => "<",
            BinaryOp::LtEq => "<=",
            BinaryOp::Gt => ">",
            BinaryOp::GtEq => ">=",
            BinaryOp::And => "AND",
            BinaryOp::Or => "OR",
        }
    }
}

/// A logical expression.
///
/// # Semantics
/// - **Nulls** propagate through arithmetic, comparisons and functions unless stated otherwise.
/// - **Arithmetic** coerces both sides to a common numeric type: integers widen to the wider
///   integer (signed and unsigned mix to a signed type that holds both, `UInt64` with a signed
///   type to `Int64`), any float makes `Float64` (`Float32` only with `Float32`), an integer
///   next to a decimal becomes `DECIMAL(digits, 0)`, a float next to a decimal makes both
///   `Float64`. Integer overflow and integer division (or `%`) by zero are errors naming the
///   expression; float division follows IEEE 754. `/` on integers truncates (Flink, Postgres).
///   Decimal results: `+`/`-` scale `max(s1, s2)`, precision `max(p1-s1, p2-s2) + scale + 1`;
///   `*` scale `s1 + s2`, precision `p1 + p2 + 1`; `/` scale `s1 + 4` (Postgres/MySQL style,
///   not Flink's `max(6, s1 + p2 + 1)`), precision `p1 - s1 + s2 + scale`; all capped at 38.
///   Timestamps and dates accept `+`/`-` of intervals and `timestamp - timestamp`.
/// - **Comparisons** coerce to a common type: numbers as above (decimal vs int compares as
///   decimals), strings of any Arrow string type, timestamps of different units (to the finer
///   unit), date vs timestamp (as timestamp), and a string against a temporal, numeric or
///   boolean value (the string is cast, so `ts > '2024-01-01 00:00:00'` works).
/// - **AND / OR / NOT** use SQL three-valued logic (Kleene).
/// - **IN** is `x = v1 OR x = v2 ...` under three-valued logic: `1 IN (2, NULL)` is `NULL`.
///   **BETWEEN** is `low <= x AND x <= high` (symmetric bounds are not reordered).
/// - **CASE** evaluates a `WHEN` condition only on rows no earlier branch took, and a `THEN`
///   only on the rows that take it (filter, evaluate, scatter back), so a division by zero in a
///   branch not taken is not an error. Branches that cannot fail (columns, literals,
///   comparisons, boolean logic) skip the filtering and are combined with `zip`. The result
///   type is the common type of all `THEN`/`ELSE` values; no `ELSE` means `NULL`.
///   `COALESCE` evaluates later arguments only while earlier ones left nulls, but then on the
///   whole batch.
/// - **CAST** fails on a value that does not convert, naming the value; **TRY_CAST** yields
///   `NULL` instead.
/// - **LIKE** supports `%` and `_`; without `ESCAPE`, backslash escapes (as Postgres); `ESCAPE`
///   requires a literal pattern.
/// - **EXTRACT** and **FLOOR(ts TO unit)** read timestamps in UTC (the time zone of a
///   `Timestamp(_, Some(tz))` is ignored by `FLOOR`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Expr {
    /// A column of the input, by name.
    Column(String),
    /// A literal.
    Literal(ScalarValue),
    /// `left op right`.
    Binary {
        /// Left operand.
        left: Box<Expr>,
        /// The operator.
        op: BinaryOp,
        /// Right operand.
        right: Box<Expr>,
    },
    /// Unary minus.
    Negative(Box<Expr>),
    /// `NOT x`.
    Not(Box<Expr>),
    /// `x IS NULL`.
    IsNull(Box<Expr>),
    /// `x IS NOT NULL`.
    IsNotNull(Box<Expr>),
    /// `x [NOT] IN (list)`.
    InList {
        /// The probe.
        expr: Box<Expr>,
        /// The candidates.
        list: Vec<Expr>,
        /// `NOT IN`.
        negated: bool,
    },
    /// `x [NOT] BETWEEN low AND high`.
    Between {
        /// The probe.
        expr: Box<Expr>,
        /// Inclusive lower bound.
        low: Box<Expr>,
        /// Inclusive upper bound.
        high: Box<Expr>,
        /// `NOT BETWEEN`.
        negated: bool,
    },
    /// `x [NOT] [I]LIKE pattern [ESCAPE c]`.
    Like {
        /// The string tested.
        expr: Box<Expr>,
        /// The pattern (`%`, `_`).
        pattern: Box<Expr>,
        /// The escape character; `None` means backslash.
        escape: Option<char>,
        /// `NOT LIKE`.
        negated: bool,
        /// `ILIKE`.
        case_insensitive: bool,
    },
    /// `CASE [operand] WHEN .. THEN .. [ELSE ..] END`. With an operand (simple CASE), each
    /// `WHEN` value is compared to it with `=`; without, each `WHEN` is a condition.
    Case {
        /// The operand of a simple CASE.
        operand: Option<Box<Expr>>,
        /// `(WHEN, THEN)` pairs, tried in order.
        when_then: Vec<(Expr, Expr)>,
        /// `ELSE`; `None` means `NULL`.
        else_expr: Option<Box<Expr>>,
    },
    /// `CAST(x AS type)`: an unconvertible value is an error.
    Cast {
        /// The value.
        expr: Box<Expr>,
        /// The target type.
        data_type: DataType,
    },
    /// `TRY_CAST(x AS type)`: an unconvertible value becomes `NULL`.
    TryCast {
        /// The value.
        expr: Box<Expr>,
        /// The target type.
        data_type: DataType,
    },
    /// `EXTRACT(field FROM x)` on a date or timestamp; `BIGINT` result.
    Extract {
        /// What to extract.
        field: DateField,
        /// A `Date32` or `Timestamp` value.
        expr: Box<Expr>,
    },
    /// `FLOOR(x TO unit)`: truncates a date or timestamp, keeping its type.
    FloorTime {
        /// A `Date32` or `Timestamp` value.
        expr: Box<Expr>,
        /// The unit to truncate to.
        unit: TimeUnitField,
    },
    /// A call of a known function.
    Function {
        /// Which function.
        func: Function,
        /// Its arguments.
        args: Vec<Expr>,
    },
}

/// A reference to the column `name`.
pub fn col(name: &str) -> Expr {
    Expr::Column(name.to_owned())
}

/// A literal.
pub fn lit(value: impl Into<ScalarValue>) -> Expr {
    Expr::Literal(value.into())
}

/// A call of `func` with `args`.
pub fn call(func: Function, args: Vec<Expr>) -> Expr {
    Expr::Function { func, args }
}

/// A searched `CASE WHEN cond THEN value ... [ELSE else_expr] END`.
pub fn case_when(when_then: Vec<(Expr, Expr)>, else_expr: Option<Expr>) -> Expr {
    Expr::Case {
        operand: None,
        when_then,
        else_expr: else_expr.map(Box::new),
    }
}

/// A simple `CASE operand WHEN value THEN result ... [ELSE else_expr] END`.
pub fn simple_case(operand: Expr, when_then: Vec<(Expr, Expr)>, else_expr: Option<Expr>) -> Expr {
    Expr::Case {
        operand: Some(Box::new(operand)),
        when_then,
        else_expr: else_expr.map(Box::new),
    }
}

/// `EXTRACT(field FROM expr)`.
pub fn extract(field: DateField, expr: Expr) -> Expr {
    Expr::Extract {
        field,
        expr: Box::new(expr),
    }
}

impl Expr {
    fn binary(self, op: BinaryOp, right: Expr) -> Expr {
        Expr::Binary {
            left: Box::new(self),
            op,
            right: Box::new(right),
        }
    }

    /// `self = other`.
    pub fn eq(self, other: Expr) -> Expr {
        self.binary(BinaryOp::Eq, other)
    }
    /// `self <> other`.
    pub fn not_eq(self, other: Expr) -> Expr {
        self.binary(BinaryOp::NotEq, other)
    }
    /// `self < other`.
    pub fn lt(self, other: Expr) -> Expr {
        self.binary(BinaryOp::Lt, other)
    }
    /// `self <= other`.
    pub fn lt_eq(self, other: Expr) -> Expr {
        self.binary(BinaryOp::LtEq, other)
    }
    /// `self > other`.
    pub fn gt(self, other: Expr) -> Expr {
        self.binary(BinaryOp::Gt, other)
    }
    /// `self >= other`.
    pub fn gt_eq(self, other: Expr) -> Expr {
        self.binary(BinaryOp::GtEq, other)
    }
    /// `self AND other`.
    pub fn and(self, other: Expr) -> Expr {
        self.binary(BinaryOp::And, other)
    }
    /// `self OR other`.
    pub fn or(self, other: Expr) -> Expr {
        self.binary(BinaryOp::Or, other)
    }
    /// `NOT self`.
    #[expect(
        clippy::should_implement_trait,
        reason = "SQL builder vocabulary; std::ops::Not is implemented too"
    )]
    pub fn not(self) -> Expr {
        Expr::Not(Box::new(self))
    }
    /// `self + other`.
    #[expect(
        clippy::should_implement_trait,
        reason = "SQL builder vocabulary; std::ops::Add is implemented too"
    )]
    pub fn add(self, other: Expr) -> Expr {
        self.binary(BinaryOp::Plus, other)
    }
    /// `self - other`.
    #[expect(
        clippy::should_implement_trait,
        reason = "SQL builder vocabulary; std::ops::Sub is implemented too"
    )]
    pub fn sub(self, other: Expr) -> Expr {
        self.binary(BinaryOp::Minus, other)
    }
    /// `self * other`.
    #[expect(
        clippy::should_implement_trait,
        reason = "SQL builder vocabulary; std::ops::Mul is implemented too"
    )]
    pub fn mul(self, other: Expr) -> Expr {
        self.binary(BinaryOp::Multiply, other)
    }
    /// `self / other`.
    #[expect(
        clippy::should_implement_trait,
        reason = "SQL builder vocabulary; std::ops::Div is implemented too"
    )]
    pub fn div(self, other: Expr) -> Expr {
        self.binary(BinaryOp::Divide, other)
    }
    /// `self % other`.
    pub fn modulo(self, other: Expr) -> Expr {
        self.binary(BinaryOp::Modulo, other)
    }
    /// `-self`.
    pub fn negate(self) -> Expr {
        Expr::Negative(Box::new(self))
    }
    /// `self IS NULL`.
    pub fn is_null(self) -> Expr {
        Expr::IsNull(Box::new(self))
    }
    /// `self IS NOT NULL`.
    pub fn is_not_null(self) -> Expr {
        Expr::IsNotNull(Box::new(self))
    }
    /// `self [NOT] IN (list)`.
    pub fn in_list(self, list: Vec<Expr>, negated: bool) -> Expr {
        Expr::InList {
            expr: Box::new(self),
            list,
            negated,
        }
    }
    /// `self BETWEEN low AND high`.
    pub fn between(self, low: Expr, high: Expr) -> Expr {
        Expr::Between {
            expr: Box::new(self),
            low: Box::new(low),
            high: Box::new(high),
            negated: false,
        }
    }
    /// `self NOT BETWEEN low AND high`.
    pub fn not_between(self, low: Expr, high: Expr) -> Expr {
        Expr::Between {
            expr: Box::new(self),
            low: Box::new(low),
            high: Box::new(high),
            negated: true,
        }
    }
    /// `self LIKE pattern`.
    pub fn like(self, pattern: Expr) -> Expr {
        self.like_with(pattern, None, false, false)
    }
    /// `self NOT LIKE pattern`.
    pub fn not_like(self, pattern: Expr) -> Expr {
        self.like_with(pattern, None, true, false)
    }
    /// `self [NOT] [I]LIKE pattern [ESCAPE escape]`.
    pub fn like_with(
        self,
        pattern: Expr,
        escape: Option<char>,
        negated: bool,
        case_insensitive: bool,
    ) -> Expr {
        Expr::Like {
            expr: Box::new(self),
            pattern: Box::new(pattern),
            escape,
            negated,
            case_insensitive,
        }
    }
    /// `CAST(self AS data_type)`.
    pub fn cast(self, data_type: DataType) -> Expr {
        Expr::Cast {
            expr: Box::new(self),
            data_type,
        }
    }
    /// `TRY_CAST(self AS data_type)`.
    pub fn try_cast(self, data_type: DataType) -> Expr {
        Expr::TryCast {
            expr: Box::new(self),
            data_type,
        }
    }
    /// `FLOOR(self TO unit)`.
    pub fn floor_to(self, unit: TimeUnitField) -> Expr {
        Expr::FloorTime {
            expr: Box::new(self),
            unit,
        }
    }

    /// Type-checks against `schema` and returns the executable form. All type resolution,
    /// coercion decisions and function lookups happen here, once. An unknown column or a type
    /// mismatch is an [`Error::Expression`](crate::Error::Expression) naming the column or the
    /// operator and both types, e.g. "unknown column 'pricee' (available: auction, bidder,
    /// price; did you mean 'price'?)" or "cannot apply '+' to Utf8 'channel' and Int64".
    pub fn resolve(&self, schema: &Schema) -> crate::Result<PhysicalExpr> {
        resolve::resolve(self, schema)
    }

    /// The operands of the `AND`s at the top of this expression, left to right (the
    /// expression itself when it is no `AND`).
    pub(crate) fn conjuncts(&self) -> Vec<&Expr> {
        match self {
            Expr::Binary {
                left,
                op: BinaryOp::And,
                right,
            } => {
                let mut out = left.conjuncts();
                out.extend(right.conjuncts());
                out
            }
            other => vec![other],
        }
    }

    /// Names of the columns this expression reads, in first-use order, without duplicates.
    pub fn columns(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.collect_columns(&mut out);
        out
    }

    fn collect_columns(&self, out: &mut Vec<String>) {
        match self {
            Expr::Column(name) => {
                if !out.contains(name) {
                    out.push(name.clone());
                }
            }
            Expr::Literal(_) => {}
            Expr::Binary { left, right, .. } => {
                left.collect_columns(out);
                right.collect_columns(out);
            }
            Expr::Negative(e)
            | Expr::Not(e)
            | Expr::IsNull(e)
            | Expr::IsNotNull(e)
            | Expr::Cast { expr: e, .. }
            | Expr::TryCast { expr: e, .. }
            | Expr::Extract { expr: e, .. }
            | Expr::FloorTime { expr: e, .. } => e.collect_columns(out),
            Expr::InList { expr, list, .. } => {
                expr.collect_columns(out);
                list.iter().for_each(|e| e.collect_columns(out));
            }
            Expr::Between {
                expr, low, high, ..
            } => {
                expr.collect_columns(out);
                low.collect_columns(out);
                high.collect_columns(out);
            }
            Expr::Like { expr, pattern, .. } => {
                expr.collect_columns(out);
                pattern.collect_columns(out);
            }
            Expr::Case {
                operand,
                when_then,
                else_expr,
            } => {
                if let Some(e) = operand {
                    e.collect_columns(out);
                }
                for (w, t) in when_then {
                    w.collect_columns(out);
                    t.collect_columns(out);
                }
                if let Some(e) = else_expr {
                    e.collect_columns(out);
                }
            }
            Expr::Function { args, .. } => args.iter().for_each(|e| e.collect_columns(out)),
        }
    }
}

macro_rules! ops_impl {
    ($($trait:ident :: $method:ident => $op:ident),* $(,)?) => {
        $(impl std::ops::$trait for Expr {
            type Output = Expr;
            fn $method(self, rhs: Expr) -> Expr {
                self.binary(BinaryOp::$op, rhs)
            }
        })*
    };
}

ops_impl!(Add::add => Plus, Sub::sub => Minus, Mul::mul => Multiply, Div::div => Divide,
    Rem::rem => Modulo);

impl std::ops::Neg for Expr {
    type Output = Expr;
    fn neg(self) -> Expr {
        Expr::Negative(Box::new(self))
    }
}

impl std::ops::Not for Expr {
    type Output = Expr;
    fn not(self) -> Expr {
        Expr::Not(Box::new(self))
    }
}

fn write_list(f: &mut fmt::Formatter<'_>, items: &[Expr]) -> fmt::Result {
    for (i, e) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{e}")?;
    }
    Ok(())
}

/// SQL-like rendering, used in error messages.
impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Column(name) => write!(f, "{name}"),
            Expr::Literal(v) => write!(f, "{v}"),
            Expr::Binary { left, op, right } => write!(f, "({left} {} {right})", op.symbol()),
            Expr::Negative(e) => write!(f, "(- {e})"),
            Expr::Not(e) => write!(f, "(NOT {e})"),
            Expr::IsNull(e) => write!(f, "({e} IS NULL)"),
            Expr::IsNotNull(e) => write!(f, "({e} IS NOT NULL)"),
            Expr::InList {
                expr,
                list,
                negated,
            } => {
                write!(f, "({expr} {}IN (", if *negated { "NOT " } else { "" })?;
                write_list(f, list)?;
                f.write_str("))")
            }
            Expr::Between {
                expr,
                low,
                high,
                negated,
            } => write!(
                f,
                "({expr} {}BETWEEN {low} AND {high})",
                if *negated { "NOT " } else { "" }
            ),
            Expr::Like {
                expr,
                pattern,
                escape,
                negated,
                case_insensitive,
            } => {
                write!(
                    f,
                    "({expr} {}{} {pattern}",
                    if *negated { "NOT " } else { "" },
                    if *case_insensitive { "ILIKE" } else { "LIKE" }
                )?;
                if let Some(c) = escape {
                    write!(f, " ESCAPE '{c}'")?;
                }
                f.write_str(")")
            }
            Expr::Case {
                operand,
                when_then,
                else_expr,
            } => {
                f.write_str("CASE")?;
                if let Some(o) = operand {
                    write!(f, " {o}")?;
                }
                for (w, t) in when_then {
                    write!(f, " WHEN {w} THEN {t}")?;
                }
                if let Some(e) = else_expr {
                    write!(f, " ELSE {e}")?;
                }
                f.write_str(" END")
            }
            Expr::Cast { expr, data_type } => write!(f, "CAST({expr} AS {data_type})"),
            Expr::TryCast { expr, data_type } => write!(f, "TRY_CAST({expr} AS {data_type})"),
            Expr::Extract { field, expr } => write!(f, "EXTRACT({field} FROM {expr})"),
            Expr::FloorTime { expr, unit } => write!(f, "FLOOR({expr} TO {unit})"),
            Expr::Function { func, args } => {
                write!(f, "{func}(")?;
                write_list(f, args)?;
                f.write_str(")")
            }
        }
    }
}
