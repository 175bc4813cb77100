// Automatically generated mod.rs
pub mod payload;
