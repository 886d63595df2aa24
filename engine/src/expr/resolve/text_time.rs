//! Resolution of the pattern-based string and date functions: `DATE_FORMAT`, `TO_DATE`,
//! `TO_TIMESTAMP`,
//! `REGEXP_EXTRACT`, `REGEXP_REPLACE`, `REGEXP`, `SPLIT_INDEX`, `INITCAP`, `LPAD`, `RPAD`,
//! `TIMESTAMPADD`, `TIMESTAMPDIFF`.
//!
//! Patterns (regular expressions, date patterns, units) must be literals: they are compiled
//! here, once, and a bad one is an error before any data flows.

use std::sync::Arc;

use arrow::datatypes::{DataType, TimeUnit};

use super::{Resolver, check_arity, describe, literal_str};
use crate::expr::Expr;
use crate::expr::function::Function;
use crate::expr::kernels::{CompiledRegex, DatePattern, Kernel, RegexOp, TimestampUnit};
use crate::expr::physical::{Kind, PhysicalExpr};
use crate::{Error, Result};

impl Resolver<'_> {
    /// A literal string argument (a pattern or a unit).
    fn pattern_literal(&self, e: &Expr, func: Function, what: &str) -> Result<String> {
        let c = self.resolve(e)?;
        literal_str(&c).ok_or_else(|| {
            Error::expr(format!(
                "{func} expects a string literal as its {what}, found {}",
                describe(e, c.data_type())
            ))
        })
    }

    /// A timestamp operand: TIMESTAMP / TIMESTAMP_LTZ / DATE as they are, a string cast to
    /// TIMESTAMP(3).
    fn time_operand(&self, e: &Expr, func: Function) -> Result<PhysicalExpr> {
        let c = self.resolve(e)?;
        match c.data_type() {
            DataType::Timestamp(..) | DataType::Date32 => Ok(c),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null => {
                self.coerce(c, &DataType::Timestamp(TimeUnit::Millisecond, None))
            }
            other => Err(Error::expr(format!(
                "{func} needs a TIMESTAMP or DATE argument, got {}",
                describe(e, other)
            ))),
        }
    }

    fn node(
        &self,
        kernel: Kernel,
        args: Vec<PhysicalExpr>,
        t: DataType,
        always_nullable: bool,
        display: String,
    ) -> PhysicalExpr {
        let nullable = always_nullable || args.iter().any(PhysicalExpr::nullable);
        PhysicalExpr::new(Kind::Call { kernel, args }, t, nullable, display)
    }

    pub(super) fn text_time_function(
        &self,
        func: Function,
        args: &[Expr],
        display: String,
    ) -> Result<PhysicalExpr> {
        let name = func.name();
        match func {
            Function::DateFormat => {
                check_arity(func, args, 2, 2)?;
                let ts = self.time_operand(&args[0], func)?;
                let text = self.pattern_literal(&args[1], func, "pattern")?;
                let pattern = DatePattern::parse(&text).map_err(Error::expr)?;
                Ok(self.node(
                    Kernel::DateFormat(Arc::new(pattern)),
                    vec![ts],
                    DataType::Utf8,
                    false,
                    display,
                ))
            }
            Function::ToDate => {
                check_arity(func, args, 1, 2)?;
                let s = self.string_operand(&args[0], name)?;
                let pattern = match args.get(1) {
                    None => None,
                    Some(p) => {
                        let text = self.pattern_literal(p, func, "pattern")?;
                        Some(Arc::new(DatePattern::parse(&text).map_err(Error::expr)?))
                    }
                };
                Ok(self.node(
                    Kernel::ToDate(pattern),
                    vec![s],
                    DataType::Date32,
                    true,
                    display,
                ))
            }
            Function::ToTimestamp => {
                check_arity(func, args, 1, 2)?;
                let s = self.string_operand(&args[0], name)?;
                let text = match args.get(1) {
                    Some(p) => self.pattern_literal(p, func, "pattern")?,
                    None => "yyyy-MM-dd HH:mm:ss".to_string(),
                };
                let pattern = DatePattern::parse(&text).map_err(Error::expr)?;
                Ok(self.node(
                    Kernel::ToTimestamp(Arc::new(pattern)),
                    vec![s],
                    DataType::Timestamp(TimeUnit::Millisecond, None),
                    true,
                    display,
                ))
            }
            Function::RegexpExtract | Function::RegexpReplace | Function::Regexp => {
                let (min, max, op) = match func {
                    Function::RegexpExtract => (2, 3, RegexOp::Extract),
                    Function::RegexpReplace => (3, 3, RegexOp::Replace),
                    _ => (2, 2, RegexOp::Matches),
                };
                check_arity(func, args, min, max)?;
                let s = self.string_operand(&args[0], name)?;
                let text = self.pattern_literal(&args[1], func, "regular expression")?;
                let regex = CompiledRegex::new(&text).map_err(|e| {
                    Error::expr(format!("{func}: invalid regular expression '{text}': {e}"))
                })?;
                let pattern = self.string_operand(&args[1], name)?;
                let mut a = vec![s, pattern];
                let t = match op {
                    RegexOp::Extract => {
                        if let Some(group) = args.get(2) {
                            a.push(self.int_operand(group, name)?);
                        }
                        DataType::Utf8
                    }
                    RegexOp::Replace => {
                        a.push(self.string_operand(&args[2], name)?);
                        DataType::Utf8
                    }
                    RegexOp::Matches => DataType::Boolean,
                };
                Ok(self.node(
                    Kernel::Regex(op, regex),
                    a,
                    t,
                    op == RegexOp::Extract,
                    display,
                ))
            }
            Function::SplitIndex => {
                check_arity(func, args, 3, 3)?;
                let a = vec![
                    self.string_operand(&args[0], name)?,
                    self.string_operand(&args[1], name)?,
                    self.int_operand(&args[2], name)?,
                ];
                Ok(self.node(Kernel::SplitIndex, a, DataType::Utf8, true, display))
            }
            Function::Initcap => {
                check_arity(func, args, 1, 1)?;
                let s = self.string_operand(&args[0], name)?;
                Ok(self.node(Kernel::Initcap, vec![s], DataType::Utf8, false, display))
            }
            Function::Lpad | Function::Rpad => {
                check_arity(func, args, 3, 3)?;
                let a = vec![
                    self.string_operand(&args[0], name)?,
                    self.int_operand(&args[1], name)?,
                    self.string_operand(&args[2], name)?,
                ];
                let kernel = Kernel::Pad {
                    left: func == Function::Lpad,
                };
                Ok(self.node(kernel, a, DataType::Utf8, true, display))
            }
            Function::TimestampAdd | Function::TimestampDiff => {
                check_arity(func, args, 3, 3)?;
                let text = self.pattern_literal(&args[0], func, "unit")?;
                let unit = TimestampUnit::from_name(&text).ok_or_else(|| {
                    Error::expr(format!(
                        "{func}: unknown unit '{text}' (expected SECOND, MINUTE, HOUR, DAY, \
                         WEEK, MONTH, QUARTER or YEAR)"
                    ))
                })?;
                if func == Function::TimestampAdd {
                    let n = self.int_operand(&args[1], name)?;
                    let ts = self.time_operand(&args[2], func)?;
                    let t = ts.data_type().clone();
                    Ok(self.node(Kernel::TimestampAdd(unit), vec![n, ts], t, false, display))
                } else {
                    let a = self.time_operand(&args[1], func)?;
                    let b = self.time_operand(&args[2], func)?;
                    Ok(self.node(
                        Kernel::TimestampDiff(unit),
                        vec![a, b],
                        DataType::Int32,
                        false,
                        display,
                    ))
                }
            }
            other => Err(Error::Internal(format!(
                "{other} is not a pattern-based function"
            ))),
        }
    }
}
