use clap::Parser;

use idsync::cli::{self, Cli};

#[tokio::main]
async fn main() {
    // kube and reqwest both use rustls with aws-lc-rs; installing it as the process
    // default up front means no code path can pick a second provider and panic.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();

    let cli = Cli::parse();
    cli::init_tracing(&cli.log, cli.log_format);
    if let Err(e) = cli::run(cli).await {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
