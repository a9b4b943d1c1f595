//! `qmeta qkd simulate` without the `qmeta` binary:
//! `cargo run --release -p qmeta-bb84 --example simulate -- --plot out.svg`.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(qmeta_bb84::cli_main(&args));
}
