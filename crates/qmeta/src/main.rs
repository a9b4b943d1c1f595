//! `qmeta`: parse arguments, set up logging, install the crypto provider,
//! run the chosen part. Everything else lives in the library crates.

use clap::Parser;

fn main() {
    let cli = qmeta::cli::Cli::parse();
    qmeta::cli::init_logging(&cli);
    qmeta_pki::install_provider();
    let code = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt.block_on(qmeta::cli::run(cli)),
        Err(e) => {
            eprintln!("qmeta: cannot start the async runtime: {e}");
            1
        }
    };
    std::process::exit(code);
}
