//! kismatic-release
