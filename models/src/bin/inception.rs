//! Trains the tutorial's `inception` network on MNIST: `cargo run --release -p models --bin inception -- --help`.

fn main() -> std::process::ExitCode {
    models::cli::main(models::Network::Inception)
}
