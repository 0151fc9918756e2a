//! The `locktrace` command.
fn main() {}
