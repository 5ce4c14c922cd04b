//! kismatic-fleet
