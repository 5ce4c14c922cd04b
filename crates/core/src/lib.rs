//! kismatic-core
