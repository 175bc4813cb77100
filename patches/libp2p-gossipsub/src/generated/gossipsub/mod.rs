// Automatically generated mod.rs
pub mod pb;
