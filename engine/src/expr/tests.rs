//! Tests of expression resolution and evaluation.
