//! kismatic-ops
