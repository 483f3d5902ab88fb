//! All integration tests in one binary (one link), one module per theme.

mod analytic;
mod blocks;
mod cli;
mod common;
mod construction;
mod gpu;
mod networks;
mod output;
mod parity;
mod release;
mod shaders;
mod sonata;
mod synparity;
