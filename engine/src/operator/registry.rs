//! Turns the operator descriptions of a JobGraph into operator instances, one per subtask.
//!
//! Built-in kinds are constructed directly from their spec; `Custom` kinds are looked up by
//! name among the factories the client registered (the DataStream API registers its batch
//! functions here). Every process that runs a job's tasks must register the same names.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use super::{Filter, KeyedAggregate, Operator, OperatorContext, Project, SinkOperator, Union};
use crate::connector::SinkResources;
use crate::graph::OperatorSpec;
use crate::{Error, Result};

/// Creates an operator instance for one subtask.
pub trait OperatorFactory: Send + Sync {
    fn create(&self, ctx: &OperatorContext) -> Result<Box<dyn Operator>>;
}

impl<F> OperatorFactory for F
where
    F: Fn(&OperatorContext) -> Result<Box<dyn Operator>> + Send + Sync,
{
    fn create(&self, ctx: &OperatorContext) -> Result<Box<dyn Operator>> {
        self(ctx)
    }
}

/// The factories for `Custom` operators, by name.
#[derive(Clone, Default)]
pub struct OperatorRegistry {
    custom: HashMap<String, Arc<dyn OperatorFactory>>,
}

impl fmt::Debug for OperatorRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OperatorRegistry")
            .field("custom", &self.custom.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl OperatorRegistry {
    pub fn register(&mut self, name: impl Into<String>, factory: Arc<dyn OperatorFactory>) {
        self.custom.insert(name.into(), factory);
    }

    pub fn contains(&self, name: &str) -> bool {
        self.custom.contains_key(name)
    }

    /// Whether no custom factory is registered (the JobGraph alone describes the job).
    pub fn is_empty(&self) -> bool {
        self.custom.is_empty()
    }

    /// Builds the operator for a non-source vertex.
    pub fn build(
        &self,
        spec: &OperatorSpec,
        ctx: &OperatorContext,
        resources: &SinkResources,
    ) -> Result<Box<dyn Operator>> {
        let input = ctx.input_schemas.first();
        let need_input = || {
            input.ok_or_else(|| {
                Error::plan(&ctx.vertex, format!("{} needs an input", spec.kind_name()))
            })
        };
        Ok(match spec {
            OperatorSpec::Source { .. } => {
                return Err(Error::Internal(format!(
                    "source vertex '{}' built as an operator",
                    ctx.vertex
                )));
            }
            OperatorSpec::Filter { predicate } => {
                Box::new(Filter::new(predicate.resolve(need_input()?)?))
            }
            OperatorSpec::Project { columns, watermark } => {
                let input = need_input()?;
                let exprs = columns
                    .iter()
                    .map(|(_, expr)| expr.resolve(input))
                    .collect::<Result<Vec<_>>>()?;
                let project = Project::new(exprs, ctx.output_schema.clone());
                Box::new(match watermark {
                    Some(strategy) => project.with_watermarks(strategy.clone()),
                    None => project,
                })
            }
            OperatorSpec::Union => Box::new(Union),
            OperatorSpec::Sort(sort) => Box::new(super::Sort::try_new(
                sort,
                need_input()?,
                ctx.output_schema.clone(),
            )?),
            OperatorSpec::KeyedAggregate(agg) => Box::new(KeyedAggregate::try_new(
                agg,
                need_input()?,
                ctx.output_schema.clone(),
            )?),
            OperatorSpec::WindowAggregate(window) => {
                super::window::build(window, need_input()?, ctx.output_schema.clone())?
            }
            OperatorSpec::Sink { connector } => {
                Box::new(SinkOperator::new(connector.create_sink(resources)?))
            }
            OperatorSpec::Join(join) => super::join::build(join, ctx)?,
            OperatorSpec::LookupJoin(spec) => Box::new(super::LookupJoin::try_new(
                spec,
                need_input()?,
                ctx.output_schema.clone(),
            )?),
            OperatorSpec::Rank(rank) => Box::new(super::rank::Rank::try_new(
                rank,
                need_input()?,
                ctx.output_schema.clone(),
            )?),
            OperatorSpec::Custom { name } => {
                let factory = self.custom.get(name).ok_or_else(|| {
                    Error::plan(
                        &ctx.vertex,
                        format!("no operator factory is registered under '{name}'"),
                    )
                })?;
                factory.create(ctx)?
            }
        })
    }
}
