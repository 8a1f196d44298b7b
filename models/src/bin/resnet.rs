//! Trains the tutorial's `resnet` network on MNIST: `cargo run --release -p models --bin resnet -- --help`.

fn main() -> std::process::ExitCode {
    models::cli::main(models::Network::Resnet)
}
