//! Turns the operator descriptions of a JobGraph into operator instances, one per subtask.
//!
//! Built-in kinds are constructed directly from their spec; `Custom` kinds are looked up by
//! name among the factories the client registered (the DataStream API registers its batch
//! functions here). Every process that runs a job's tasks must register the same names.
//! `User` kinds are looked up among the named [`UserFunctions`] of the running binary and get
//! the vertex's config; unlike closures, they can run on a cluster.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use super::{
    Filter, KeyedAggregate, Operator, OperatorContext, Project, SinkOperator, Union, UserFunctions,
};
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

/// The factories for `Custom` operators by vertex name, and the named user functions for
/// `User` operators.
#[derive(Clone, Default)]
pub struct OperatorRegistry {
    custom: HashMap<String, Arc<dyn OperatorFactory>>,
    user: UserFunctions,
}

impl fmt::Debug for OperatorRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OperatorRegistry")
            .field("custom", &self.custom.keys().collect::<Vec<_>>())
            .field("user", &self.user)
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

    /// Whether no custom factory and no user function is registered (the JobGraph and the
    /// built-in operators alone describe the job).
    pub fn is_empty(&self) -> bool {
        self.custom.is_empty() && self.user.is_empty()
    }

    /// A registry of the named user functions `functions` (and no closures): what a
    /// TaskManager builds a deployed job's operators with.
    pub fn with_user_functions(functions: UserFunctions) -> Self {
        OperatorRegistry {
            custom: HashMap::new(),
            user: functions,
        }
    }

    /// Adds named user functions.
    pub fn add_user_functions(&mut self, functions: &UserFunctions) {
        self.user.extend(functions);
    }

    /// The named user functions.
    pub fn user_functions(&self) -> &UserFunctions {
        &self.user
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
            OperatorSpec::Filter { predicate } => Box::new(Filter::new(
                predicate.resolve(need_input()?)?,
                ctx.output_schema.clone(),
            )),
            OperatorSpec::Project { columns, watermark } => {
                let project = Project::try_new(columns, need_input()?, ctx.output_schema.clone())?;
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
            OperatorSpec::User { function, config } => {
                let factory = self.user.get(function).ok_or_else(|| {
                    Error::plan(
                        &ctx.vertex,
                        format!(
                            "user function '{function}' is not registered in this process \
                             (registered: {:?}); run the job where the binary registers it",
                            self.user.names().collect::<Vec<_>>()
                        ),
                    )
                })?;
                factory.create(config, ctx)?
            }
        })
    }
}
