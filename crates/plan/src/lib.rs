//! kismatic-plan
