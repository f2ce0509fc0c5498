//! The `imgdb` command line: argument parsing and printing over the library.

fn main() {
    println!("imgdb {}", env!("CARGO_PKG_VERSION"));
}
