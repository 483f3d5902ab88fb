//! All integration tests in one binary (one link), one module per theme.

mod analytic;
mod common;
mod networks;
mod output;
mod release;
