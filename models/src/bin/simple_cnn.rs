//! Trains the tutorial's `simple_cnn` network on MNIST: `cargo run --release -p models --bin simple_cnn -- --help`.

fn main() -> std::process::ExitCode {
    models::cli::main(models::Network::SimpleCnn)
}
