//! Kismatic plan files (`kismatic-cluster.yaml`): model, defaults, migration, validation.
mod inventory;
pub use inventory::*;
