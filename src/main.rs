use clap::Parser;

use idsync::cli::{self, Cli};

/// jemalloc instead of glibc malloc: the operator holds tens of thousands of
/// small objects in its watch caches and replaces a store wholesale on every
/// re-list; glibc kept the peak resident and fragmented (see benches/operator.rs
/// for the numbers), jemalloc hands freed pages back after a few seconds.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
