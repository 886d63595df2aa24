//! The DataStream API.
